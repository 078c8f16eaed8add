// A group's page: what it is for, its owners, its label (explained) and join policy, and the
// caller's own membership — join, ask to join, use an invite, or leave. Nothing here can show
// who else is in the group: no service answers that (INV-1).

import { h, note, field, actionButton, when } from '../dom.js';
import { get, post, del, seg, ApiError } from '../api.js';
import { labels, labelExplained, findLabel, joinName, joinExplain, senderExplain, requestShows, typeName, typeExplain } from '../labels.js';
import { t } from '../i18n.js';

const STATE_TEXT = {
  provisioning: () => t('group.state.provisioning'),
  active: () => t('group.state.active'),
  archiving: () => t('group.state.archiving'),
  archived: () => t('group.state.archived'),
};

/** A group's state in words. */
const stateText = (s) => (Object.hasOwn(STATE_TEXT, s) ? STATE_TEXT[s]() : s);

/** The caller's own requests (pending or denied), or [] where the server has none to offer. */
export async function myRequests() {
  try {
    const { data } = await get('/membership/v1/me/requests');
    return (data && (data.requests || data)) || [];
  } catch (e) {
    if (e instanceof ApiError && e.unsupported) return [];
    throw e;
  }
}

function unavailable() {
  return {
    title: t('group.unavailable.title'),
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, t('group.unavailable.heading')),
      note('warn', t('group.unavailable.why')),
      h('p', null, t('group.unavailable.invite_before'), h('a', { href: '#/redeem' }, t('group.unavailable.invite_link')), t('group.unavailable.invite_after')),
      h('p', null, h('a', { href: '#/' }, t('common.back_to_discover'))),
    ),
  };
}

function redeemForm(ctx, onDone) {
  const code = h('input', { name: 'code', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: 200 });
  const out = h('div');
  const form = h(
    'form',
    {
      class: 'inline-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const btn = form.querySelector('button');
        btn.disabled = true;
        out.replaceChildren();
        try {
          await post('/membership/v1/invites/redeem', { code: code.value.trim() });
          onDone();
        } catch (e) {
          out.replaceChildren(note('error', redeemError(e)));
        } finally {
          btn.disabled = false;
        }
      },
    },
    field({ label: t('redeem.code'), control: code }),
    h('button', { type: 'submit', class: 'primary' }, t('redeem.submit')),
  );
  return h('div', null, form, out);
}

/** What to say when an invite code does not work. */
export function redeemError(e) {
  if (e instanceof ApiError && e.status === 404 && !e.unsupported) {
    return t('redeem.unusable');
  }
  if (e instanceof ApiError && e.unsupported) return t('redeem.unsupported');
  return e.message;
}

export async function groupView(ctx) {
  const [id] = ctx.params;
  let group;
  try {
    group = (await get(`/control/v1/groups/${seg(id)}`)).data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return unavailable();
    throw e;
  }
  const [all, me, requests] = await Promise.all([
    labels(),
    get(`/membership/v1/groups/${seg(id)}/me`).then((r) => r.data).catch(() => null),
    myRequests().catch(() => []),
  ]);
  const label = findLabel(all, group.label);
  const member = Boolean(me && me.member);
  const myRequest = requests.find((r) => r.group_id === group.id && r.status === 'pending');
  const denied = requests.find((r) => r.group_id === group.id && r.status === 'denied');
  const out = h('div', { class: 'outcome' });
  const again = () => ctx.go(`#/groups/${seg(id)}`);

  // What the caller can do, given their membership and the join policy.
  const actions = h('div', { class: 'panel membership' }, h('h2', null, t('group.membership')));
  if (group.state !== 'active') {
    actions.append(h('p', null, stateText(group.state)));
  } else if (member) {
    actions.append(
      h('p', { class: 'status-line yes' }, t('group.is_member')),
      h('p', { class: 'hint' }, t('group.leave_hint')),
      group.anonymous_address ? anonymousPosting(group) : null,
      h(
        'div',
        { class: 'actions' },
        actionButton(t('group.leave'), async () => {
          try {
            await post(`/membership/v1/groups/${seg(id)}/leave`);
            ctx.flash('ok', t('group.left', { name: group.name }));
            again();
          } catch (e) {
            out.replaceChildren(note('error', e.message));
          }
        }, { class: 'danger' }),
      ),
    );
  } else {
    actions.append(h('p', { class: 'status-line' }, t('group.not_member')));
    if (group.join_policy === 'open') {
      actions.append(
        h('p', { class: 'hint' }, t('group.join_hint')),
        h(
          'div',
          { class: 'actions' },
          actionButton(t('group.join'), async () => {
            try {
              await post(`/membership/v1/groups/${seg(id)}/join`);
              ctx.flash('ok', ctx.user.email
                ? t('group.joined_mail', { name: group.name, email: ctx.user.email })
                : t('group.joined_mail_you', { name: group.name }));
              again();
            } catch (e) {
              out.replaceChildren(note('error', e.message));
            }
          }, { class: 'primary' }),
        ),
      );
    } else if (group.join_policy === 'approval') {
      if (myRequest) {
        actions.append(
          note('info', t('group.asked_on', { date: when(myRequest.created_at) })),
          h(
            'div',
            { class: 'actions' },
            actionButton(t('group.withdraw'), async () => {
              try {
                await del(`/membership/v1/me/requests/${seg(myRequest.id)}`);
                ctx.flash('ok', t('group.withdrawn'));
                again();
              } catch (e) {
                out.replaceChildren(note('error', e.message));
              }
            }),
          ),
        );
      } else {
        if (denied) actions.append(note('info', t('group.denied')));
        actions.append(
          note('warn', t('group.ask_warning', { shows: requestShows() })),
          h(
            'div',
            { class: 'actions' },
            actionButton(t('group.ask'), async () => {
              try {
                const { status, data } = await post(`/membership/v1/groups/${seg(id)}/join`);
                if (status === 202 || (data && data.member === false)) {
                  ctx.flash('ok', t('group.asked', { shows: requestShows() }));
                } else {
                  ctx.flash('ok', t('group.joined_by_rule', { name: group.name }));
                }
                again();
              } catch (e) {
                out.replaceChildren(note('error', e.message));
              }
            }, { class: 'primary' }),
          ),
        );
      }
    } else {
      actions.append(
        h('p', null, t('group.invite_only')),
        redeemForm(ctx, () => {
          ctx.flash('ok', t('group.joined', { name: group.name }));
          again();
        }),
      );
    }
  }
  actions.append(out);

  if (group.state === 'provisioning' || group.state === 'archiving') {
    // Look again shortly, while the page is still the one shown.
    setTimeout(() => {
      if (ctx.stillHere()) again();
    }, 1000);
  }

  const facts = h(
    'dl',
    { class: 'facts' },
    h('dt', null, t('group.fact.label')),
    h('dd', null, labelExplained(label || { name: group.label, description: '', policy: {} }, { who: true })),
    h('dt', null, t('group.fact.join')),
    h('dd', null, h('strong', null, joinName(group.join_policy)), ' — ', joinExplain(group.join_policy)),
    h('dt', null, t('group.fact.type')),
    h('dd', null, h('strong', null, typeName(group.type)), ' — ', typeExplain(group.type)),
    // A security group has no address and takes no mail: no mail facts to show.
    ...(group.type === 'security'
      ? []
      : [
        h('dt', null, t('group.fact.senders')),
        h('dd', null, senderExplain(group.sender_policy)),
        h('dt', null, t('group.fact.address')),
        h('dd', null, h('code', null, group.contact_address)),
        h('dt', null, t('group.fact.anonymous')),
        h('dd', null, group.anonymous_address ? t('group.anonymous_allowed') : t('group.anonymous_not_allowed')),
      ]),
    h('dt', null, t('group.fact.owners', { count: group.owners.length })),
    h('dd', null, h('ul', { class: 'plain' }, ownerContacts(group).map((o) => h('li', null, o)))),
    h('dt', null, t('group.fact.state')),
    h('dd', null, stateText(group.state)),
  );

  return {
    title: group.name,
    node: h(
      'section',
      { class: 'group-page' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, t('nav.discover')), ' / ', group.name),
      h('div', { class: 'title-row' }, h('h1', null, group.name), group.is_owner
        ? h('a', { class: 'button', href: `#/groups/${seg(id)}/manage` }, t('group.manage'))
        : null),
      group.description ? h('p', { class: 'lead pre' }, group.description) : null,
      group.invited_to_own ? ownershipInvitation(ctx, group, again) : null,
      actions,
      h('h2', null, t('group.about')),
      facts,
    ),
  };
}

/** For a member, where the group's label allows it: how to post anonymously, and what it hides. */
function anonymousPosting(group) {
  return h(
    'div',
    { class: 'anonymous-posting' },
    h('p', null, t('group.anonymous_write'), ' ', h('code', null, group.anonymous_address)),
    h('p', { class: 'hint' }, t('group.anonymous_hint', { group: group.name })),
  );
}

/** An owner named the caller as a co-owner: they accept (their kind must be one the label admits) or decline. */
function ownershipInvitation(ctx, group, again) {
  const out = h('div', { class: 'outcome' });
  const answer = (what, done) => async () => {
    try {
      await post(`/control/v1/groups/${seg(group.id)}/ownership/${what}`);
      ctx.flash('ok', done);
      again();
    } catch (e) {
      out.replaceChildren(note('error', e.message));
    }
  };
  return h(
    'div',
    { class: 'panel' },
    h('h2', null, t('group.own.heading')),
    h('p', { class: 'hint' }, t('group.own.hint')),
    h(
      'div',
      { class: 'actions' },
      actionButton(t('group.own.accept'), answer('accept', t('group.own.accepted', { name: group.name })), { class: 'primary' }),
      actionButton(t('group.own.decline'), answer('decline', t('group.own.declined'))),
    ),
    out,
  );
}

/** Each owner as a person would recognise them: name and e-mail address when their token gave them, else their user id. */
export function ownerContacts(group) {
  const contacts = new Map((group.owner_contacts || []).map((c) => [c.id, c]));
  return group.owners.map((id) => {
    const c = contacts.get(id) || {};
    if (c.name && c.email) return `${c.name} <${c.email}>`;
    return c.name || c.email || id;
  });
}
