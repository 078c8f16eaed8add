// Managing a group (owners): edit it, invite codes, requests to join (with the warning that
// looking shows who asked), claim rules, adding and removing people by address (one identical
// acknowledgement whatever the outcome, INV-3) and the coarse member count (INV-4).

import { h, field, note, actionButton, when, id as newId } from '../dom.js';
import { get, post, put, patch, del, seg, ApiError } from '../api.js';
import { labels, labelExplained, findLabel, JOIN_POLICIES, joinName, joinExplain, senderChoices, REQUEST_SHOWS } from '../labels.js';

const INVITE_STATE = { active: 'Active', revoked: 'Revoked', expired: 'Expired', 'used-up': 'Used up' };

const COUNT_TEXT = {
  '<10': 'fewer than 10',
  '10-49': '10 to 49',
  '50-249': '50 to 249',
  '250-999': '250 to 999',
  '1000+': '1,000 or more',
};

/** A titled panel whose body is filled by `load` (errors shown inside, not breaking the page). */
function panel(title, intro, load) {
  const headingId = newId('h');
  const body = h('div', { class: 'panel-body' }, h('p', { class: 'loading' }, 'Loading…'));
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
      const msg = e instanceof ApiError && e.unsupported ? 'Not available on this server yet.' : e.message;
      body.replaceChildren(note(e instanceof ApiError && e.unsupported ? 'info' : 'error', msg));
    });
  return node;
}

function membersPanel(group) {
  return panel(
    'Members',
    h('p', { class: 'hint' }, 'Hush shows owners a rough count only, never a number or a list of who is in the group.'),
    () => {
      if (group.state !== 'active') return h('p', null, 'The count appears once the group is active.');
      if (!group.member_count) return h('p', null, 'The count is not available right now.');
      return h(
        'p',
        { class: 'bucket' },
        h('span', { class: 'bucket-value' }, group.member_count),
        h('span', null, ` members (${COUNT_TEXT[group.member_count] || group.member_count})`),
      );
    },
  );
}

function editPanel(ctx, group, label) {
  return panel('Edit group', null, () => {
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
      h('legend', null, 'How people join'),
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
            out.replaceChildren(note('info', 'Nothing to save: no changes.'));
            return;
          }
          try {
            const { data } = await patch(`/control/v1/groups/${seg(group.id)}`, body);
            ctx.flash('ok', 'Your changes are saved.');
            ctx.go(data.is_owner ? `#/groups/${seg(group.id)}/manage` : `#/groups/${seg(group.id)}`);
          } catch (e) {
            out.replaceChildren(note('error', e.message));
          }
        },
      },
      h(
        'div',
        { class: 'field' },
        h('span', { class: 'field-title' }, 'Label'),
        labelExplained(label || { name: group.label, description: '' }, { compact: true }),
        h('p', { class: 'hint' }, 'The label is not changed here. A move to a stricter label applies at once and removes the people it bars; a move to a looser one needs a label-admin’s approval (API: PUT /control/v1/groups/{id}/label).'),
      ),
      field({ label: 'What is it for?', control: description }),
      joinSet,
      senderSet,
      field({
        label: 'Owners',
        control: owners,
        hint: 'One user id per line. Owners are the group’s public contacts; owning does not make anyone a member. Under a label that bars guests or AI agents, someone you add is invited: they become an owner when they accept, if the label admits them.'
          + ((group.invited_owners || []).length ? ` Invited, not yet accepted: ${group.invited_owners.join(', ')}.` : ''),
      }),
      out,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save changes')),
    );
    return form;
  });
}

function invitesPanel(group) {
  return panel(
    'Invite codes',
    h('p', { class: 'hint' }, 'Send a code to the person you want in the group. Hush keeps only a fingerprint of each code and never records who used it.'),
    async () => {
      const fresh = h('div');
      const listBox = h('div');
      const maxUses = h('input', { type: 'number', name: 'max_uses', min: 1, max: 10000, inputmode: 'numeric', placeholder: '1' });
      const hours = h('input', { type: 'number', name: 'expires_in_hours', min: 1, max: 2160, inputmode: 'numeric', placeholder: '168' });

      async function refresh() {
        const { data } = await get(`/membership/v1/groups/${seg(group.id)}/invites`);
        const invites = (data && (data.invites || data)) || [];
        if (!invites.length) {
          listBox.replaceChildren(h('p', { class: 'empty' }, 'No invite codes yet.'));
          return;
        }
        const rows = invites.map((inv) => {
          const expired = inv.expires_at && new Date(inv.expires_at) < new Date();
          const used = inv.max_uses != null && inv.uses >= inv.max_uses;
          const derived = inv.revoked ? 'revoked' : expired ? 'expired' : used ? 'used-up' : 'active';
          const state = INVITE_STATE[inv.state || derived] || inv.state;
          return h(
            'tr',
            null,
            h('td', null, h('code', null, String(inv.id).slice(0, 8))),
            h('td', null, `${inv.uses ?? 0}${inv.max_uses != null ? ` of ${inv.max_uses}` : ''}`),
            h('td', null, inv.expires_at ? when(inv.expires_at) : 'Never'),
            h('td', null, state),
            h('td', null, state === 'Active'
              ? actionButton('Revoke', async () => {
                try {
                  await del(`/membership/v1/groups/${seg(group.id)}/invites/${seg(inv.id)}`);
                  await refresh();
                  fresh.replaceChildren(note('ok', 'The invite code is revoked: it no longer works.'));
                } catch (e) {
                  fresh.replaceChildren(note('error', e.message));
                }
              }, { class: 'small danger', 'aria-label': `Revoke invite ${String(inv.id).slice(0, 8)}` })
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
              h('caption', { class: 'sr-only' }, 'Invite codes of this group'),
              h('thead', null, h('tr', null, ['Invite', 'Used', 'Expires', 'Status', ''].map((c) => h('th', { scope: 'col' }, c)))),
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
                  ev2.target.textContent = `${what} copied`;
                } catch {
                  ev2.target.textContent = 'Select and copy it by hand';
                }
              };
              fresh.replaceChildren(
                h(
                  'div',
                  { class: 'note note-ok', role: 'status' },
                  h('p', null, h('strong', null, 'New invite code. '), 'Copy it now: it is shown only once.'),
                  h('p', null, h('output', { class: 'code', 'aria-label': 'Invite code', 'data-testid': 'invite-code' }, data.code)),
                  h(
                    'div',
                    { class: 'actions' },
                    h('button', { type: 'button', class: 'small', onclick: copy(data.code, 'Code') }, 'Copy code'),
                    h('button', { type: 'button', class: 'small', onclick: copy(link, 'Link') }, 'Copy invite link'),
                  ),
                  h('p', { class: 'hint' }, [
                    data.max_uses != null ? `Works ${data.max_uses} time${data.max_uses === 1 ? '' : 's'}` : 'Works until revoked',
                    data.expires_at ? `, until ${when(data.expires_at)}.` : '.',
                  ].join('')),
                ),
              );
              await refresh();
            } catch (e) {
              fresh.replaceChildren(note('error', e.message));
            }
          },
        },
        field({ label: 'Uses allowed', control: maxUses, hint: 'Default: 1.' }),
        field({ label: 'Valid for, in hours', control: hours, hint: 'Default: a week.' }),
        h('button', { type: 'submit', class: 'primary' }, 'Create invite code'),
      );
      await refresh();
      return [form, fresh, h('h3', null, 'Codes'), listBox];
    },
  );
}

function requestsPanel(group) {
  return panel(
    'Requests to join',
    note(
      'warn',
      h('strong', null, 'Looking at requests shows you who asked. '),
      `Each request shows the person’s ${REQUEST_SHOWS}. Approving adds them to the group; declining tells them no. Keep what you see to yourself.`,
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
            more.append(actionButton('Show more requests', () => load(data.next_cursor)));
          }
          if (!reqs.length && !cursor) {
            box.replaceChildren(h('p', { class: 'empty' }, 'No pending requests.'));
            return;
          }
          const decide = (r, verb, row) => async () => {
            try {
              await post(`/membership/v1/groups/${seg(group.id)}/requests/${seg(r.id)}/${verb}`);
              row.remove();
              if (!box.querySelector('tbody tr')) box.replaceChildren(h('p', { class: 'empty' }, 'No pending requests.'));
              out.replaceChildren(note('ok', verb === 'approve' ? 'Approved: they are in the group.' : 'Declined.'));
            } catch (e) {
              out.replaceChildren(note('error', e.message));
            }
          };
          const rows = reqs.map((r) => {
            const row = h('tr', null,
              h('td', null, r.subject),
              h('td', null, r.email || '—'),
              h('td', null, r.kind === 'member' ? 'employee' : r.kind),
              h('td', null, when(r.created_at)));
            row.append(h('td', { class: 'row-actions' },
              actionButton('Approve', decide(r, 'approve', row), { class: 'small primary', 'aria-label': `Approve ${r.subject}` }),
              actionButton('Decline', decide(r, 'deny', row), { class: 'small', 'aria-label': `Decline ${r.subject}` })));
            return row;
          });
          const tbody = box.querySelector('tbody');
          if (cursor && tbody) {
            tbody.append(...rows);
            return;
          }
          box.replaceChildren(h('div', { class: 'table-wrap' }, h('table', null,
            h('caption', { class: 'sr-only' }, 'Pending requests to join'),
            h('thead', null, h('tr', null, ['Person', 'E-mail', 'Account', 'Asked', ''].map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', null, rows))));
        } catch (e) {
          out.replaceChildren(note(e.unsupported ? 'info' : 'error', e.unsupported ? 'Not available on this server yet.' : e.message));
        }
      };
      const show = actionButton('Show pending requests', () => load(null));
      return [h('div', { class: 'actions' }, show), out, box, more];
    },
  );
}

function conditionRow(cond = { claim: '', equals: '' }) {
  const claim = h('input', { name: 'claim', value: cond.claim || '', autocomplete: 'off', spellcheck: 'false', required: true });
  const op = h('select', { name: 'op' }, h('option', { value: 'equals' }, 'is'), h('option', { value: 'in' }, 'is one of'));
  op.value = Array.isArray(cond.in) ? 'in' : 'equals';
  const value = h('input', {
    name: 'value',
    value: Array.isArray(cond.in) ? cond.in.join(', ') : (cond.equals ?? ''),
    autocomplete: 'off',
    required: true,
  });
  value.setAttribute('title', 'For “is one of”, separate the values with commas');
  value.setAttribute('placeholder', 'e.g. Legal, HR');
  const row = h('div', { class: 'cond' },
    field({ label: 'Claim', control: claim }),
    field({ label: 'Test', control: op }),
    field({ label: 'Value', control: value }),
    h('button', { type: 'button', class: 'small link', onclick: () => row.remove() }, 'Remove condition'));
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
  const box = h('fieldset', { class: 'rule' }, h('legend', null, 'Rule: all of these match'), conds,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'small', onclick: () => conds.append(conditionRow()) }, 'Add condition'),
      h('button', { type: 'button', class: 'small link', onclick: () => box.remove() }, 'Remove rule')));
  box.read = () => ({ all: [...conds.children].map((c) => c.read()) });
  return box;
}

function claimRulesPanel(group) {
  return panel(
    'Join at once by sign-in details (claim rules)',
    h('p', { class: 'hint' }, 'Someone who asks to join and whose company sign-in details (the claims of their token) match every condition of at least one rule joins at once, for example: department is one of Legal, HR. No request is recorded for them, so no owner sees who joined this way. With no rules, an owner answers every request.'),
    async () => {
      const { data } = await get(`/membership/v1/groups/${seg(group.id)}/claim-rules`);
      const rules = h('div', { class: 'rules-list' }, ((data && data.rules) || []).map(ruleBox));
      const out = h('div');
      const save = actionButton('Save rules', async () => {
        out.replaceChildren();
        const body = { rules: [...rules.children].map((r) => r.read()).filter((r) => r.all.length) };
        try {
          await put(`/membership/v1/groups/${seg(group.id)}/claim-rules`, body);
          out.replaceChildren(note('ok', body.rules.length ? 'The rules are saved.' : 'There are no rules now: owners answer every request.'));
        } catch (e) {
          out.replaceChildren(note('error', e.message));
        }
      }, { class: 'primary' });
      return [rules, h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => rules.append(ruleBox()) }, 'Add rule'), save), out];
    },
  );
}

function addRemovePanel(group) {
  return panel(
    'Add or remove someone',
    h('p', { class: 'hint' }, 'Hush answers the same way whether or not the person was already a member, so nobody can use this to find out who is in the group.'),
    () => {
      const email = h('input', { type: 'email', name: 'email', autocomplete: 'off', spellcheck: 'false', required: true });
      const out = h('div', { 'aria-live': 'polite' });
      const send = (verb) => async () => {
        out.replaceChildren();
        const address = email.value.trim();
        if (!email.checkValidity() || !address) {
          out.replaceChildren(note('error', 'Enter an e-mail address.'));
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
            ? `Request accepted: add ${address}. Hush does not say whether this person was already a member. The group's label still applies: someone it does not admit (a guest or an AI agent, under a label without them) is not added.`
            : `Request accepted: remove ${address}. Hush does not say whether this person was a member.`));
        } catch (e) {
          out.replaceChildren(note(e.unsupported ? 'info' : 'error', e.unsupported ? 'Not available on this server yet.' : e.message));
        }
      };
      return [
        field({ label: 'E-mail address', control: email }),
        h('div', { class: 'actions' },
          actionButton('Add to group', send('add'), { class: 'primary' }),
          actionButton('Remove from group', send('remove'))),
        out,
      ];
    },
  );
}

function archivePanel(ctx, group) {
  return panel('Archive group', null, () => {
    const confirmBox = h('div');
    const start = h('button', {
      type: 'button',
      class: 'danger',
      onclick: () => {
        start.hidden = true;
        confirmBox.replaceChildren(
          note('warn', `Archiving ${group.name} removes it and all its membership for good. Its address stops working.`),
          h('div', { class: 'actions' },
            actionButton('Archive now', async () => {
              try {
                await post(`/control/v1/groups/${seg(group.id)}/archive`);
                ctx.flash('ok', `${group.name} is being archived.`);
                ctx.go('#/');
              } catch (e) {
                confirmBox.append(note('error', e.message));
              }
            }, { class: 'danger' }),
            h('button', { type: 'button', onclick: () => { confirmBox.replaceChildren(); start.hidden = false; start.focus(); } }, 'Cancel')),
        );
        confirmBox.querySelector('button').focus();
      },
    }, 'Archive group…');
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
      return { title: 'Not available', node: h('section', null, h('h1', null, 'This group is not available to you'), h('p', null, h('a', { href: '#/' }, 'Back to Discover'))) };
    }
    throw e;
  }
  const back = h('a', { href: `#/groups/${seg(id)}` }, 'Group page');
  if (!group.is_owner) {
    return {
      title: `Manage ${group.name}`,
      node: h('section', null, h('h1', null, `Manage ${group.name}`), note('info', 'Only the group’s owners can manage it.'), h('p', null, back)),
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
    title: `Manage ${group.name}`,
    node: h(
      'section',
      { class: 'manage' },
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Discover'), ' / ', back, ' / Manage'),
      h('h1', null, `Manage ${group.name}`),
      group.state !== 'active'
        ? note('info', group.state === 'provisioning' ? 'The group is being set up. This page updates when it is ready.' : `The group is ${group.state}.`)
        : null,
      h('div', { class: 'grid' },
        membersPanel(group),
        editable ? editPanel(ctx, group, label) : null,
        active && group.join_policy === 'invite' ? invitesPanel(group) : null,
        active && group.join_policy === 'approval' ? requestsPanel(group) : null,
        active && group.join_policy === 'approval' ? claimRulesPanel(group) : null,
        active ? addRemovePanel(group) : null,
        editable ? archivePanel(ctx, group) : null),
    ),
  };
}
