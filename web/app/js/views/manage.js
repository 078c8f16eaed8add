// Managing a group (owners): edit it, invite codes, requests to join (with the warning that
// looking shows who asked), claim rules, adding and removing people by address (one identical
// acknowledgement whatever the outcome, INV-3) and the coarse member count (INV-4).

import { h, field, note, actionButton, when, id as newId } from '../dom.js';
import { get, post, put, patch, del, seg, ApiError } from '../api.js';
import { labels, labelExplained, findLabel, JOIN_POLICIES, joinName, joinExplain, senderChoices, requestShows, typeTag, typeExplain } from '../labels.js';
import { t, formatNumber } from '../i18n.js';

const INVITE_STATE = {
  active: () => t('invites.state.active'),
  revoked: () => t('invites.state.revoked'),
  expired: () => t('invites.state.expired'),
  'used-up': () => t('invites.state.used_up'),
};

/** The coarse member count (INV-4) in words: the service's buckets. */
const COUNT_TEXT = {
  '<10': () => t('members.bucket.under', { n: 10 }),
  '10-49': () => t('members.bucket.range', { from: 10, to: 49 }),
  '50-249': () => t('members.bucket.range', { from: 50, to: 249 }),
  '250-999': () => t('members.bucket.range', { from: 250, to: 999 }),
  '1000+': () => t('members.bucket.over', { n: 1000 }),
};

/** What the manage page says of a group that is not active. */
function stateNote(state) {
  if (state === 'provisioning') return t('manage.provisioning');
  if (state === 'archiving') return t('manage.state.archiving');
  if (state === 'archived') return t('manage.state.archived');
  return t('manage.state', { state });
}

/** What Hush calls each kind of account. */
function kindWord(kind) {
  if (kind === 'member') return t('kind.member');
  if (kind === 'guest') return t('kind.guest');
  if (kind === 'agent') return t('kind.agent');
  return kind;
}

/** How long and how often a new invite code works. */
function worksText(data) {
  const max = data.max_uses != null ? Number(data.max_uses) : null;
  if (data.expires_at) {
    const until = when(data.expires_at);
    return max != null ? t('invites.works_n_until', { count: max, until }) : t('invites.works_until', { until });
  }
  return max != null ? t('invites.works_n', { count: max }) : t('invites.works');
}

/** A titled panel whose body is filled by `load` (errors shown inside, not breaking the page). */
function panel(title, intro, load) {
  const headingId = newId('h');
  const body = h('div', { class: 'panel-body' }, h('p', { class: 'loading' }, t('common.loading')));
  const node = h(
    'section',
    { class: 'panel', 'aria-labelledby': headingId },
    h('h2', { id: headingId }, title),
    intro,
    body,
  );
  Promise.resolve()
    .then(load)
    .then((content) => body.replaceChildren(...[].concat(content).filter(Boolean)))
    .catch((e) => {
      const msg = e instanceof ApiError && e.unsupported ? t('common.unsupported') : e.message;
      body.replaceChildren(note(e instanceof ApiError && e.unsupported ? 'info' : 'error', msg));
    });
  return node;
}

function membersPanel(group) {
  return panel(
    t('members.heading'),
    h('p', { class: 'hint' }, t('members.hint')),
    () => {
      if (group.state !== 'active') return h('p', null, t('members.not_yet'));
      if (!group.member_count) return h('p', null, t('members.unavailable'));
      const words = Object.hasOwn(COUNT_TEXT, group.member_count) ? COUNT_TEXT[group.member_count]() : group.member_count;
      return h(
        'p',
        { class: 'bucket' },
        h('span', { class: 'bucket-value' }, group.member_count),
        h('span', null, t('members.count', { words })),
      );
    },
  );
}

function editPanel(ctx, group, label) {
  return panel(t('edit.heading'), null, () => {
    const out = h('div');
    const description = h('textarea', { name: 'description', rows: 4, maxlength: 2000 });
    description.value = group.description || '';
    const owners = h('textarea', { name: 'owners', rows: 3, spellcheck: 'false' });
    const named = [...group.owners, ...(group.invited_owners || [])];
    owners.value = named.join('\n');
    const allowed = (label && label.policy.join_policies) || [group.join_policy];
    const joinSet = h(
      'fieldset',
      { class: 'choices' },
      h('legend', null, t('create.join')),
      JOIN_POLICIES.filter((p) => allowed.includes(p)).map((p) => {
        const rid = newId('jp');
        return h(
          'div',
          { class: 'choice' },
          h('input', { type: 'radio', name: 'join_policy', id: rid, value: p, checked: p === group.join_policy }),
          h('label', { for: rid }, h('strong', null, joinName(p)), h('span', { class: 'choice-text' }, joinExplain(p))),
        );
      }),
    );
    const senderSet = senderChoices(label, group.sender_policy);
    // A security group takes no mail: who may send is not a question for it.
    senderSet.hidden = group.type === 'security';
    const form = h(
      'form',
      {
        class: 'stack',
        onsubmit: async (ev) => {
          ev.preventDefault();
          out.replaceChildren();
          const body = {};
          if (description.value !== (group.description || '')) body.description = description.value;
          const jp = joinSet.querySelector('input:checked');
          if (jp && jp.value !== group.join_policy) body.join_policy = jp.value;
          const sp = senderSet.querySelector('input:checked');
          if (sp && sp.value !== group.sender_policy) body.sender_policy = sp.value;
          const list = owners.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
          if (list.join('\n') !== named.join('\n')) body.owners = list;
          if (!Object.keys(body).length) {
            out.replaceChildren(note('info', t('edit.no_changes')));
            return;
          }
          try {
            const { data } = await patch(`/control/v1/groups/${seg(group.id)}`, body);
            ctx.flash('ok', t('edit.saved'));
            ctx.go(data.is_owner ? `#/groups/${seg(group.id)}/manage` : `#/groups/${seg(group.id)}`);
          } catch (e) {
            out.replaceChildren(note('error', e.message));
          }
        },
      },
      h(
        'div',
        { class: 'field' },
        h('span', { class: 'field-title' }, t('group.fact.label')),
        labelExplained(label || { name: group.label, description: '' }, { compact: true }),
        h('p', { class: 'hint' }, t('edit.label_hint', { route: 'PUT /control/v1/groups/{id}/label' })),
      ),
      field({ label: t('edit.description'), control: description }),
      joinSet,
      senderSet,
      field({
        label: t('edit.owners'),
        control: owners,
        hint: t('edit.owners_hint')
          + ((group.invited_owners || []).length ? ` ${t('edit.invited', { ids: group.invited_owners.join(', ') })}` : ''),
      }),
      out,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('edit.save'))),
    );
    return form;
  });
}

function invitesPanel(group) {
  return panel(
    t('invites.heading'),
    h('p', { class: 'hint' }, t('invites.hint')),
    async () => {
      const fresh = h('div');
      const listBox = h('div');
      const maxUses = h('input', { type: 'number', name: 'max_uses', min: 1, max: 10000, inputmode: 'numeric', placeholder: '1' });
      const hours = h('input', { type: 'number', name: 'expires_in_hours', min: 1, max: 2160, inputmode: 'numeric', placeholder: '168' });

      async function refresh() {
        const { data } = await get(`/membership/v1/groups/${seg(group.id)}/invites`);
        const invites = (data && (data.invites || data)) || [];
        if (!invites.length) {
          listBox.replaceChildren(h('p', { class: 'empty' }, t('invites.none')));
          return;
        }
        const rows = invites.map((inv) => {
          const expired = inv.expires_at && new Date(inv.expires_at) < new Date();
          const used = inv.max_uses != null && inv.uses >= inv.max_uses;
          const derived = inv.revoked ? 'revoked' : expired ? 'expired' : used ? 'used-up' : 'active';
          const key = inv.state || derived;
          const state = Object.hasOwn(INVITE_STATE, key) ? INVITE_STATE[key]() : inv.state;
          const uses = Number(inv.uses ?? 0);
          return h(
            'tr',
            null,
            h('td', null, h('code', null, String(inv.id).slice(0, 8))),
            h('td', null, inv.max_uses != null ? t('invites.uses_of', { uses, max: Number(inv.max_uses) }) : formatNumber(uses)),
            h('td', null, inv.expires_at ? when(inv.expires_at) : t('invites.never')),
            h('td', null, state),
            h('td', null, key === 'active'
              ? actionButton(t('invites.revoke'), async () => {
                try {
                  await del(`/membership/v1/groups/${seg(group.id)}/invites/${seg(inv.id)}`);
                  await refresh();
                  fresh.replaceChildren(note('ok', t('invites.revoked')));
                } catch (e) {
                  fresh.replaceChildren(note('error', e.message));
                }
              }, { class: 'small danger', 'aria-label': t('invites.revoke_label', { id: String(inv.id).slice(0, 8) }) })
              : null),
          );
        });
        listBox.replaceChildren(
          h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              null,
              h('caption', { class: 'sr-only' }, t('invites.caption')),
              h('thead', null, h('tr', null, [t('invites.col.invite'), t('invites.col.used'), t('invites.col.expires'), t('invites.col.status'), ''].map((c) => h('th', { scope: 'col' }, c)))),
              h('tbody', null, rows),
            ),
          ),
        );
      }

      const form = h(
        'form',
        {
          class: 'inline-form',
          onsubmit: async (ev) => {
            ev.preventDefault();
            fresh.replaceChildren();
            const body = {};
            if (maxUses.value) body.max_uses = Number(maxUses.value);
            if (hours.value) body.expires_in_hours = Number(hours.value);
            try {
              const { data } = await post(`/membership/v1/groups/${seg(group.id)}/invites`, body);
              const link = `${location.origin}/#/redeem?code=${encodeURIComponent(data.code)}`;
              const copy = (text, what) => async (ev2) => {
                try {
                  await navigator.clipboard.writeText(text);
                  ev2.target.textContent = what;
                } catch {
                  ev2.target.textContent = t('invites.copy_failed');
                }
              };
              fresh.replaceChildren(
                h(
                  'div',
                  { class: 'note note-ok', role: 'status' },
                  h('p', null, h('strong', null, t('invites.new')), ' ', t('invites.copy_now')),
                  h('p', null, h('output', { class: 'code', 'aria-label': t('redeem.code'), 'data-testid': 'invite-code' }, data.code)),
                  h(
                    'div',
                    { class: 'actions' },
                    h('button', { type: 'button', class: 'small', onclick: copy(data.code, t('invites.code_copied')) }, t('invites.copy_code')),
                    h('button', { type: 'button', class: 'small', onclick: copy(link, t('invites.link_copied')) }, t('invites.copy_link')),
                  ),
                  h('p', { class: 'hint' }, worksText(data)),
                ),
              );
              await refresh();
            } catch (e) {
              fresh.replaceChildren(note('error', e.message));
            }
          },
        },
        field({ label: t('invites.max_uses'), control: maxUses, hint: t('invites.max_uses_hint', { n: 1 }) }),
        field({ label: t('invites.hours'), control: hours, hint: t('invites.hours_hint') }),
        h('button', { type: 'submit', class: 'primary' }, t('invites.create')),
      );
      await refresh();
      return [form, fresh, h('h3', null, t('invites.codes')), listBox];
    },
  );
}

function requestsPanel(group) {
  return panel(
    t('requests.heading'),
    note(
      'warn',
      h('strong', null, t('requests.warning_lead')),
      ' ',
      t('requests.warning', { shows: requestShows() }),
    ),
    () => {
      const box = h('div');
      const out = h('div');
      const more = h('div', { class: 'actions' });
      const load = async (cursor) => {
        out.replaceChildren();
        try {
          const q = cursor ? `?cursor=${encodeURIComponent(cursor)}` : '';
          const { data } = await get(`/membership/v1/groups/${seg(group.id)}/requests${q}`);
          const reqs = (data && (data.requests || data)) || [];
          more.replaceChildren();
          if (data && data.next_cursor) {
            more.append(actionButton(t('requests.more'), () => load(data.next_cursor)));
          }
          if (!reqs.length && !cursor) {
            box.replaceChildren(h('p', { class: 'empty' }, t('requests.none')));
            return;
          }
          const decide = (r, verb, row) => async () => {
            try {
              await post(`/membership/v1/groups/${seg(group.id)}/requests/${seg(r.id)}/${verb}`);
              row.remove();
              if (!box.querySelector('tbody tr')) box.replaceChildren(h('p', { class: 'empty' }, t('requests.none')));
              out.replaceChildren(note('ok', verb === 'approve' ? t('requests.approved') : t('requests.declined')));
            } catch (e) {
              out.replaceChildren(note('error', e.message));
            }
          };
          const rows = reqs.map((r) => {
            const row = h('tr', null,
              h('td', null, r.subject),
              h('td', null, r.email || '—'),
              h('td', null, kindWord(r.kind)),
              h('td', null, when(r.created_at)));
            row.append(h('td', { class: 'row-actions' },
              actionButton(t('requests.approve'), decide(r, 'approve', row), { class: 'small primary', 'aria-label': t('requests.approve_label', { who: r.subject }) }),
              actionButton(t('requests.decline'), decide(r, 'deny', row), { class: 'small', 'aria-label': t('requests.decline_label', { who: r.subject }) })));
            return row;
          });
          const tbody = box.querySelector('tbody');
          if (cursor && tbody) {
            tbody.append(...rows);
            return;
          }
          box.replaceChildren(h('div', { class: 'table-wrap' }, h('table', null,
            h('caption', { class: 'sr-only' }, t('requests.caption')),
            h('thead', null, h('tr', null, [t('requests.col.person'), t('requests.col.email'), t('requests.col.account'), t('requests.col.asked'), ''].map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', null, rows))));
        } catch (e) {
          out.replaceChildren(note(e.unsupported ? 'info' : 'error', e.unsupported ? t('common.unsupported') : e.message));
        }
      };
      const show = actionButton(t('requests.show'), () => load(null));
      return [h('div', { class: 'actions' }, show), out, box, more];
    },
  );
}

function conditionRow(cond = { claim: '', equals: '' }) {
  const claim = h('input', { name: 'claim', value: cond.claim || '', autocomplete: 'off', spellcheck: 'false', required: true });
  const op = h('select', { name: 'op' }, h('option', { value: 'equals' }, t('rules.is')), h('option', { value: 'in' }, t('rules.in')));
  op.value = Array.isArray(cond.in) ? 'in' : 'equals';
  const value = h('input', {
    name: 'value',
    value: Array.isArray(cond.in) ? cond.in.join(', ') : (cond.equals ?? ''),
    autocomplete: 'off',
    required: true,
  });
  value.setAttribute('title', t('rules.value_title', { in: t('rules.in') }));
  value.setAttribute('placeholder', t('rules.value_placeholder'));
  const row = h('div', { class: 'cond' },
    field({ label: t('rules.claim'), control: claim }),
    field({ label: t('rules.test'), control: op }),
    field({ label: t('rules.value'), control: value }),
    h('button', { type: 'button', class: 'small link', onclick: () => row.remove() }, t('rules.remove_condition')));
  row.read = () => {
    const c = { claim: claim.value.trim() };
    if (op.value === 'in') c.in = value.value.split(',').map((s) => s.trim()).filter(Boolean);
    else c.equals = value.value.trim();
    return c;
  };
  return row;
}

function ruleBox(rule = { all: [{ claim: '', equals: '' }] }) {
  const conds = h('div', { class: 'conds' }, (rule.all || []).map(conditionRow));
  const box = h('fieldset', { class: 'rule' }, h('legend', null, t('rules.rule')), conds,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'small', onclick: () => conds.append(conditionRow()) }, t('rules.add_condition')),
      h('button', { type: 'button', class: 'small link', onclick: () => box.remove() }, t('rules.remove_rule'))));
  box.read = () => ({ all: [...conds.children].map((c) => c.read()) });
  return box;
}

function claimRulesPanel(group) {
  return panel(
    t('rules.heading'),
    h('p', { class: 'hint' }, t('rules.hint')),
    async () => {
      const { data } = await get(`/membership/v1/groups/${seg(group.id)}/claim-rules`);
      const rules = h('div', { class: 'rules-list' }, ((data && data.rules) || []).map(ruleBox));
      const out = h('div');
      const save = actionButton(t('rules.save'), async () => {
        out.replaceChildren();
        const body = { rules: [...rules.children].map((r) => r.read()).filter((r) => r.all.length) };
        try {
          await put(`/membership/v1/groups/${seg(group.id)}/claim-rules`, body);
          out.replaceChildren(note('ok', body.rules.length ? t('rules.saved') : t('rules.saved_none')));
        } catch (e) {
          out.replaceChildren(note('error', e.message));
        }
      }, { class: 'primary' });
      return [rules, h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => rules.append(ruleBox()) }, t('rules.add_rule')), save), out];
    },
  );
}

function addRemovePanel(group) {
  return panel(
    t('addremove.heading'),
    h('p', { class: 'hint' }, t('addremove.hint')),
    () => {
      const email = h('input', { type: 'email', name: 'email', autocomplete: 'off', spellcheck: 'false', required: true });
      const out = h('div', { 'aria-live': 'polite' });
      const send = (verb) => async () => {
        out.replaceChildren();
        const address = email.value.trim();
        if (!email.checkValidity() || !address) {
          out.replaceChildren(note('error', t('addremove.empty')));
          email.focus();
          return;
        }
        const path = verb === 'add'
          ? `/membership/v1/groups/${seg(group.id)}/members`
          : `/membership/v1/groups/${seg(group.id)}/members/remove`;
        try {
          await post(path, { email: address });
          // One acknowledgement, built from what was asked, never from the answer (INV-3).
          out.replaceChildren(note('ok', verb === 'add'
            ? t('addremove.added', { address })
            : t('addremove.removed', { address })));
        } catch (e) {
          out.replaceChildren(note(e.unsupported ? 'info' : 'error', e.unsupported ? t('common.unsupported') : e.message));
        }
      };
      return [
        field({ label: t('signin.email'), control: email }),
        h('div', { class: 'actions' },
          actionButton(t('addremove.add'), send('add'), { class: 'primary' }),
          actionButton(t('addremove.remove'), send('remove'))),
        out,
      ];
    },
  );
}

/**
 * Moving the group to another label. A stricter label applies at once and ends the memberships
 * it bars (a count bucket only); a looser one waits for a label-admin.
 */
function labelPanel(ctx, group, all) {
  return panel(t('relabel.heading'), h('p', { class: 'hint' }, t('relabel.intro')), () => {
    const out = h('div');
    const pick = h('select', { name: 'new-label', 'aria-label': t('relabel.pick') },
      all.filter((l) => l.name !== group.label).map((l) => h('option', { value: l.name }, l.name)));
    const move = actionButton(t('relabel.move'), async () => {
      out.replaceChildren();
      try {
        const { status, data } = await put(`/control/v1/groups/${seg(group.id)}/label`, { label: pick.value });
        ctx.flash('ok', status === 202
          ? t('relabel.waits', { label: pick.value })
          : t('relabel.moved', { label: data.label, ended: data.memberships_ended }));
        ctx.go(`#/groups/${seg(group.id)}/manage`);
      } catch (e) {
        out.replaceChildren(note('error', e.message));
      }
    }, { class: 'primary' });
    return [h('div', { class: 'inline-form' }, field({ label: t('relabel.pick'), control: pick }), move), out];
  });
}

function archivePanel(ctx, group) {
  return panel(t('archive.heading'), null, () => {
    const confirmBox = h('div');
    const start = h('button', {
      type: 'button',
      class: 'danger',
      onclick: () => {
        start.hidden = true;
        confirmBox.replaceChildren(
          note('warn', t('archive.warning', { name: group.name })),
          h('div', { class: 'actions' },
            actionButton(t('archive.now'), async () => {
              try {
                await post(`/control/v1/groups/${seg(group.id)}/archive`);
                ctx.flash('ok', t('archive.started', { name: group.name }));
                ctx.go('#/');
              } catch (e) {
                confirmBox.append(note('error', e.message));
              }
            }, { class: 'danger' }),
            h('button', { type: 'button', onclick: () => { confirmBox.replaceChildren(); start.hidden = false; start.focus(); } }, t('common.cancel'))),
        );
        confirmBox.querySelector('button').focus();
      },
    }, t('archive.start'));
    return [start, confirmBox];
  });
}

export async function manageView(ctx) {
  const [id] = ctx.params;
  let group;
  try {
    group = (await get(`/control/v1/groups/${seg(id)}`)).data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      return { title: t('manage.unavailable'), node: h('section', null, h('h1', null, t('group.unavailable.heading')), h('p', null, h('a', { href: '#/' }, t('common.back_to_discover')))) };
    }
    throw e;
  }
  const back = h('a', { href: `#/groups/${seg(id)}` }, t('manage.group_page'));
  if (!group.is_owner) {
    return {
      title: t('manage.title', { name: group.name }),
      node: h('section', null, h('h1', null, t('manage.title', { name: group.name })), note('info', t('manage.owners_only')), h('p', null, back)),
    };
  }
  const label = findLabel(await labels(), group.label);
  if (group.state === 'provisioning') {
    setTimeout(() => {
      if (ctx.stillHere()) ctx.go(`#/groups/${seg(id)}/manage`);
    }, 1000);
  }
  const editable = group.state === 'provisioning' || group.state === 'active';
  const active = group.state === 'active';
  return {
    title: t('manage.title', { name: group.name }),
    node: h(
      'section',
      { class: 'manage' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, t('nav.discover')), ' / ', back, ' / ', t('manage.crumb')),
      h('h1', null, t('manage.title', { name: group.name })),
      h('p', { class: 'meta' }, typeTag(group.type), ' ', typeExplain(group.type)),
      group.state !== 'active'
        ? note('info', stateNote(group.state))
        : null,
      h('div', { class: 'grid' },
        membersPanel(group),
        editable ? editPanel(ctx, group, label) : null,
        active && group.join_policy === 'invite' ? invitesPanel(group) : null,
        active && group.join_policy === 'approval' ? requestsPanel(group) : null,
        active && group.join_policy === 'approval' ? claimRulesPanel(group) : null,
        active ? addRemovePanel(group) : null,
        active ? labelPanel(ctx, group, await labels()) : null,
        editable ? archivePanel(ctx, group) : null),
    ),
  };
}
