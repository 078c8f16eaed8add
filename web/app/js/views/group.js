// A group's page: what it is for, its owners, its label (explained) and join policy, and the
// caller's own membership — join, ask to join, use an invite, or leave. Nothing here can show
// who else is in the group: no service answers that (INV-1).

import { h, note, field, actionButton, when } from '../dom.js';
import { get, post, del, seg, ApiError } from '../api.js';
import { labels, labelExplained, findLabel, joinName, joinExplain, senderExplain, REQUEST_SHOWS } from '../labels.js';

const STATE_TEXT = {
  provisioning: 'Being set up. It can take members in a moment.',
  active: 'Active.',
  archiving: 'Being archived.',
  archived: 'Archived. It has no members and receives no mail.',
};

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
    title: 'Group not available',
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, 'This group is not available to you'),
      note(
        'warn',
        'Hush cannot show you this group. Either it does not exist, or its sensitivity label does not admit your kind of account (for example, many labels do not admit guests or AI agents).',
      ),
      h('p', null, 'If an owner gave you an invite code, you can ', h('a', { href: '#/redeem' }, 'use the invite'), '.'),
      h('p', null, h('a', { href: '#/' }, 'Back to Discover')),
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
    field({ label: 'Invite code', control: code }),
    h('button', { type: 'submit', class: 'primary' }, 'Join with this code'),
  );
  return h('div', null, form, out);
}

/** What to say when an invite code does not work. */
export function redeemError(e) {
  if (e instanceof ApiError && e.status === 404 && !e.unsupported) {
    return 'This invite code cannot be used. It may be mistyped, used up, expired or revoked. Ask the owner who sent it for a new one.';
  }
  if (e instanceof ApiError && e.unsupported) return 'Invites are not available on this server yet.';
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
  const actions = h('div', { class: 'panel membership' }, h('h2', null, 'Your membership'));
  if (group.state !== 'active') {
    actions.append(h('p', null, STATE_TEXT[group.state] || group.state));
  } else if (member) {
    actions.append(
      h('p', { class: 'status-line yes' }, 'You are a member of this group.'),
      h('p', { class: 'hint' }, 'Leaving is private: nobody is told, and the answer is the same whether or not you were a member.'),
      group.anonymous_address ? anonymousPosting(group) : null,
      h(
        'div',
        { class: 'actions' },
        actionButton('Leave group', async () => {
          try {
            await post(`/membership/v1/groups/${seg(id)}/leave`);
            ctx.flash('ok', `You left ${group.name}.`);
            again();
          } catch (e) {
            out.replaceChildren(note('error', e.message));
          }
        }, { class: 'danger' }),
      ),
    );
  } else {
    actions.append(h('p', { class: 'status-line' }, 'You are not a member of this group.'));
    if (group.join_policy === 'open') {
      actions.append(
        h('p', { class: 'hint' }, 'Joining is private: only you can see that you are a member.'),
        h(
          'div',
          { class: 'actions' },
          actionButton('Join group', async () => {
            try {
              await post(`/membership/v1/groups/${seg(id)}/join`);
              ctx.flash('ok', `You joined ${group.name}. Its mail will reach ${ctx.user.email || 'you'}.`);
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
          note('info', `You asked to join on ${when(myRequest.created_at)}. An owner has not answered yet.`),
          h(
            'div',
            { class: 'actions' },
            actionButton('Withdraw my request', async () => {
              try {
                await del(`/membership/v1/me/requests/${seg(myRequest.id)}`);
                ctx.flash('ok', 'Your request is withdrawn.');
                again();
              } catch (e) {
                out.replaceChildren(note('error', e.message));
              }
            }),
          ),
        );
      } else {
        if (denied) actions.append(note('info', 'An owner declined your earlier request. You may ask again.'));
        actions.append(
          note('warn', `Asking to join shows your ${REQUEST_SHOWS} to this group’s owners. Nobody else sees it.`),
          h(
            'div',
            { class: 'actions' },
            actionButton('Ask to join', async () => {
              try {
                const { status, data } = await post(`/membership/v1/groups/${seg(id)}/join`);
                if (status === 202 || (data && data.member === false)) {
                  ctx.flash('ok', `Your request is sent. The group’s owners see your ${REQUEST_SHOWS} so they can decide; nobody else does. Follow it, or withdraw it, under My groups.`);
                } else {
                  ctx.flash('ok', `You joined ${group.name}: you meet the owners’ conditions for joining at once.`);
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
        h('p', null, 'This group is joined by invite only. If an owner sent you an invite code, enter it here.'),
        redeemForm(ctx, () => {
          ctx.flash('ok', `You joined ${group.name}.`);
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
    h('dt', null, 'Label'),
    h('dd', null, labelExplained(label || { name: group.label, description: '', policy: {} }, { who: true })),
    h('dt', null, 'How to join'),
    h('dd', null, h('strong', null, joinName(group.join_policy)), ' — ', joinExplain(group.join_policy)),
    h('dt', null, 'Who may send mail'),
    h('dd', null, senderExplain(group.sender_policy)),
    h('dt', null, 'Group address'),
    h('dd', null, h('code', null, group.contact_address)),
    h('dt', null, 'Anonymous posting'),
    h('dd', null, group.anonymous_address
      ? 'Allowed by its label: members may post without their name on the message.'
      : 'Not allowed by its label.'),
    h('dt', null, group.owners.length === 1 ? 'Owner' : 'Owners'),
    h('dd', null, h('ul', { class: 'plain' }, ownerContacts(group).map((o) => h('li', null, o)))),
    h('dt', null, 'State'),
    h('dd', null, STATE_TEXT[group.state] || group.state),
  );

  return {
    title: group.name,
    node: h(
      'section',
      { class: 'group-page' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Discover'), ' / ', group.name),
      h('div', { class: 'title-row' }, h('h1', null, group.name), group.is_owner
        ? h('a', { class: 'button', href: `#/groups/${seg(id)}/manage` }, 'Manage group')
        : null),
      group.description ? h('p', { class: 'lead pre' }, group.description) : null,
      group.invited_to_own ? ownershipInvitation(ctx, group, again) : null,
      actions,
      h('h2', null, 'About this group'),
      facts,
    ),
  };
}

/** For a member, where the group's label allows it: how to post anonymously, and what it hides. */
function anonymousPosting(group) {
  return h(
    'div',
    { class: 'anonymous-posting' },
    h('p', null, 'To post anonymously, write to ', h('code', null, group.anonymous_address), '.'),
    h('p', { class: 'hint' }, `Every member receives it from “Anonymous member of ${group.name}”, and replies come back to the same address. No header of the copies names or traces you. Your message’s text and attachments are sent as you wrote them: leave out your signature and anything else that would identify you.`),
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
    h('h2', null, 'You are invited to own this group'),
    h('p', { class: 'hint' }, 'Owners are the group’s public contacts: they answer requests to join and hand out invite codes. Owning does not make you a member. The group’s label decides who may own it.'),
    h(
      'div',
      { class: 'actions' },
      actionButton('Accept', answer('accept', `You now own ${group.name}.`), { class: 'primary' }),
      actionButton('Decline', answer('decline', 'You declined the invitation.')),
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
