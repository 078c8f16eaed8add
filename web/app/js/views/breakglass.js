// Break-glass in the browser: privacy officers judge the requests waiting for them (approve or
// decline), auditors file requests, follow them and redeem an approved grant once. The rules
// live in the isolated tenant (two distinct officers, expiries, single use); these screens only
// show what the services answer. Each screen is for its role: without it, it says so and shows
// nothing else (the services refuse the calls anyway).

import { h, field, note, actionButton, when } from '../dom.js';
import { get, post, seg, ApiError } from '../api.js';

export const OFFICER = 'privacy-officer';
export const AUDITOR = 'auditor';

/** What a scope asks, in words. */
export function scopeWords(scope) {
  return scope === 'member-check' ? 'Is one person a member?' : 'The whole member list';
}

const STATES = {
  pending: 'Waiting for approvals',
  approved: 'Approved: ready to see once',
  redeemed: 'Answered (the grant is used)',
  declined: 'Declined by a privacy officer',
  expired: 'Expired',
};

/** A request's state, in words. */
export const stateWords = (s) => STATES[s] || s;

/** A person a request names: their address, and their user id when it adds something. */
function personWords(p) {
  if (!p) return '';
  if (p.email && p.subject) return `${p.email} (user id ${p.subject})`;
  return p.email || `user id ${p.subject}`;
}

/** The screen a person without `role` gets. */
export function notYourScreen(title, role) {
  return {
    title,
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, title),
      note('info', `This screen is for people with the ${role} role. Your sign-in does not carry it; ask your IT team if you need it.`),
    ),
  };
}

/** The public names of the groups `ids` (a courtesy: a group that does not answer keeps its id). */
async function groupNames(ids) {
  const unique = [...new Set(ids)];
  const pairs = await Promise.all(unique.map((gid) => get(`/control/v1/groups/${seg(gid)}`)
    .then((r) => [gid, r.data.name], () => [gid, null])));
  return new Map(pairs);
}

function groupLink(names, gid) {
  return h('a', { href: `#/groups/${seg(gid)}` }, names.get(gid) || `Group ${gid.slice(0, 8)}`);
}

function fact(k, v) {
  return v ? [h('dt', null, k), h('dd', null, v)] : [];
}

// ---- Privacy officers -------------------------------------------------------------------

function officerCard(r, names, ctx) {
  const out = h('div');
  const reason = h('textarea', { rows: 3, maxlength: 500, name: 'reason' });
  const declineForm = h(
    'div',
    { class: 'decline', hidden: true },
    field({ label: 'Reason for the auditor (optional)', control: reason, hint: 'Up to 500 characters. The auditor who filed the request sees it; nobody else does.' }),
    h('div', { class: 'actions' },
      actionButton('Decline the request', async () => {
        try {
          await post(`/control/v1/break-glass/requests/${seg(r.id)}/decline`, reason.value.trim() ? { reason: reason.value.trim() } : {});
          ctx.flash('ok', `You declined the request about ${names.get(r.group_id) || 'the group'}. The auditor will see your reason.`);
          ctx.go('#/breakglass');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
        }
      }, { class: 'danger' })),
  );
  const approve = actionButton(r.approved_by_you ? 'You approved this' : 'Approve', async () => {
    try {
      const { data } = await post(`/control/v1/break-glass/requests/${seg(r.id)}/approve`);
      ctx.flash('ok', data.state === 'approved'
        ? 'Approved. That was the second approval: the auditor may now see the answer once.'
        : 'Approved. A second privacy officer must approve before the auditor sees anything.');
      ctx.go('#/breakglass');
    } catch (e) {
      out.replaceChildren(note('error', e.message));
    }
  }, { class: 'primary', disabled: r.approved_by_you });
  const showDecline = h('button', {
    type: 'button',
    onclick: () => {
      declineForm.hidden = false;
      reason.focus();
    },
  }, 'Decline…');
  return h(
    'li',
    { class: 'panel request', 'data-request': r.id },
    h('h2', null, groupLink(names, r.group_id), ' — ', scopeWords(r.scope)),
    h('dl', { class: 'facts' },
      fact('Filed by', personWords(r.requester) || 'an auditor'),
      fact('Person asked about', r.scope === 'member-check' ? personWords(r.person) : ''),
      fact('Filed', when(r.filed_at)),
      fact('Expires', when(r.expires_at)),
      fact('Approvals', `${r.approvals} of 2`),
      fact('Answer', r.encrypted ? 'Encrypted to the auditor’s own key' : 'Shown to the auditor once'),
    ),
    h('h3', null, 'Justification'),
    h('blockquote', { class: 'pre justification' }, r.justification),
    r.approved_by_you ? note('info', 'You approved this request. A second, different privacy officer must approve it.') : null,
    h('div', { class: 'actions' }, approve, r.approved_by_you ? null : showDecline),
    declineForm,
    out,
  );
}

export async function officerView(ctx) {
  const title = 'Break-glass requests';
  if (!ctx.user.roles.includes(OFFICER)) return notYourScreen(title, OFFICER);
  let body;
  try {
    const { data } = await get('/control/v1/break-glass/requests?view=waiting');
    const names = await groupNames(data.requests.map((r) => r.group_id));
    body = data.requests.length
      ? h('ul', { class: 'plain requests' }, data.requests.map((r) => officerCard(r, names, ctx)))
      : h('p', { class: 'empty' }, 'No request is waiting for your approval.');
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    body = note('error', e.message);
  }
  return {
    title,
    node: h(
      'section',
      null,
      h('h1', null, title),
      h('p', { class: 'lead' }, 'Auditors ask to see one group’s membership: whether one person is a member, or the whole list. Two different privacy officers must approve before the auditor sees the answer, once; one officer’s no ends a request. The group’s owners and members are not told.'),
      body,
    ),
  };
}

// ---- Auditors ---------------------------------------------------------------------------

/** Saves `text` as a file named `name` (the browser's download). */
function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/octet-stream' }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The answer of a redeemed grant, shown this once. */
function answerNode(answer, person) {
  const keep = note('warn', 'This answer is shown once. Hush does not keep it: leave or reload this page and it is gone.');
  if (answer.encrypted) {
    return h('div', { class: 'answer' }, keep,
      h('p', null, 'The answer is encrypted to the key you gave. Save it, then open it with your private key:'),
      h('pre', { class: 'code' }, 'age -d -i key.txt answer.age'),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => download('answer.age', answer.encrypted) }, 'Save answer.age')),
      h('textarea', { class: 'armored', rows: 8, readonly: true, 'aria-label': 'The encrypted answer' }, answer.encrypted));
  }
  if (answer.scope === 'member-check') {
    return h('div', { class: 'answer' }, keep,
      h('p', { class: 'status-line' }, answer.member
        ? `Yes: ${personWords(person) || 'the person'} is a member.`
        : `No: ${personWords(person) || 'the person'} is not a member.`));
  }
  const members = answer.members || [];
  return h('div', { class: 'answer' }, keep,
    h('p', { class: 'status-line' }, `${members.length} member${members.length === 1 ? '' : 's'}.`),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, h('th', null, 'E-mail address'), h('th', null, 'User id'), h('th', null, 'Note'))),
      h('tbody', null, members.map((m) => h('tr', null,
        h('td', null, m.email || ''), h('td', null, m.subject || ''),
        h('td', null, m.disabled ? 'Suspended: gets none of the group’s mail' : ''))))))
    ,
    h('div', { class: 'actions' }, h('button', {
      type: 'button',
      onclick: () => download('members.csv', ['email,subject,disabled',
        ...members.map((m) => [m.email || '', m.subject || '', m.disabled ? 'yes' : 'no']
          .map((v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)).join(','))].join('\n')),
    }, 'Save as CSV')));
}

function auditorRow(r, names) {
  const out = h('div');
  const redeem = r.state === 'approved'
    ? actionButton('See the answer (once)', async (button) => {
      try {
        const { data } = await post(`/control/v1/break-glass/requests/${seg(r.id)}/redeem`);
        button.remove();
        out.replaceChildren(answerNode(data, r.person));
      } catch (e) {
        out.replaceChildren(note('error', e.message));
      }
    }, { class: 'primary' })
    : null;
  return h(
    'li',
    { class: 'panel request', 'data-request': r.id },
    h('h3', null, groupLink(names, r.group_id), ' — ', scopeWords(r.scope)),
    h('p', { class: 'status-line' }, stateWords(r.state), r.state === 'pending' ? ` (${r.approvals} of 2 approvals)` : ''),
    h('dl', { class: 'facts' },
      fact('Person asked about', r.scope === 'member-check' ? personWords(r.person) : ''),
      fact('Filed', when(r.filed_at)),
      fact(r.state === 'approved' ? 'See it before' : 'Expires', r.expires_at ? when(r.expires_at) : ''),
      fact('Reason given', r.state === 'declined' ? (r.decline_reason || 'No reason was given.') : ''),
      fact('Answer', r.encrypted ? 'Encrypted to your key' : 'Shown here once'),
    ),
    h('details', null, h('summary', null, 'Justification'), h('p', { class: 'pre' }, r.justification)),
    redeem ? h('div', { class: 'actions' }, redeem) : null,
    out,
  );
}

function fileForm(ctx) {
  const out = h('div');
  const q = h('input', { type: 'search', name: 'group-q', autocomplete: 'off', maxlength: 200, placeholder: 'Name of the group' });
  const group = h('select', { name: 'group', required: true, 'aria-label': 'The group' }, h('option', { value: '' }, 'Search, then pick a group'));
  const find = h('button', {
    type: 'button',
    onclick: async () => {
      try {
        const params = new URLSearchParams({ limit: '20' });
        if (q.value.trim()) params.set('q', q.value.trim());
        const { data } = await get(`/control/v1/groups?${params}`);
        group.replaceChildren(...(data.groups.length
          ? data.groups.map((g) => h('option', { value: g.id }, `${g.name} (${g.label})`))
          : [h('option', { value: '' }, 'No group has that name')]));
        group.focus();
      } catch (e) {
        out.replaceChildren(note('error', e.message));
      }
    },
  }, 'Find');
  const scopeCheck = h('input', { type: 'radio', name: 'scope', value: 'member-check', checked: true });
  const scopeList = h('input', { type: 'radio', name: 'scope', value: 'full-list' });
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'off', maxlength: 254 });
  const personField = field({ label: 'The person’s e-mail address', control: email, hint: 'Only the privacy officers who judge the request and you see whom you asked about.' });
  const syncScope = () => {
    personField.hidden = !scopeCheck.checked;
  };
  scopeCheck.addEventListener('change', syncScope);
  scopeList.addEventListener('change', syncScope);
  const justification = h('textarea', { name: 'justification', rows: 4, minlength: 10, maxlength: 2000, required: true });
  const recipient = h('input', { name: 'recipient', autocomplete: 'off', spellcheck: 'false', maxlength: 200, placeholder: 'age1…' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'File the request');
  return h(
    'form',
    {
      class: 'stack panel',
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        const body = {
          group_id: group.value,
          scope: scopeCheck.checked ? 'member-check' : 'full-list',
          justification: justification.value.trim(),
        };
        if (!body.group_id) {
          out.replaceChildren(note('error', 'Search for the group and pick it.'));
          q.focus();
          return;
        }
        if (body.scope === 'member-check') {
          if (!email.value.trim()) {
            out.replaceChildren(note('error', 'Give the e-mail address of the person you ask about.'));
            email.focus();
            return;
          }
          body.email = email.value.trim();
        }
        if (body.justification.length < 10) {
          out.replaceChildren(note('error', 'Say why, in at least 10 characters: the case and its legal basis.'));
          justification.focus();
          return;
        }
        if (recipient.value.trim()) body.recipient = recipient.value.trim();
        submit.disabled = true;
        try {
          await post('/control/v1/break-glass/requests', body);
          ctx.flash('ok', 'Your request is filed. Two privacy officers must approve it before you can see the answer.');
          ctx.go('#/audit');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          submit.disabled = false;
        }
      },
    },
    h('h2', null, 'File a request'),
    h('div', { class: 'field' }, h('label', { for: 'bg-group-q' }, 'Group'),
      h('div', { class: 'search-row' }, Object.assign(q, { id: 'bg-group-q' }), find), group),
    h('fieldset', { class: 'field' }, h('legend', { class: 'field-title' }, 'What do you need to know?'),
      h('label', { class: 'check' }, scopeCheck, ' Whether one person is a member (yes or no)'),
      h('label', { class: 'check' }, scopeList, ' The whole member list')),
    personField,
    field({ label: 'Justification', control: justification, hint: 'The case and its legal basis, 10 to 2000 characters. The privacy officers read it; it is kept sealed.' }),
    field({
      label: 'Encrypt the answer to your key (recommended)',
      control: recipient,
      hint: 'An age public key. With one, the answer never appears on this screen: you save an encrypted file that only your private key opens. Make a key pair on your own computer with “age-keygen -o key.txt”; it prints the public key (age1…) to paste here. Keep key.txt to yourself.',
    }),
    out,
    h('div', { class: 'actions' }, submit),
  );
}

export async function auditView(ctx) {
  const title = 'Break-glass access';
  if (!ctx.user.roles.includes(AUDITOR)) return notYourScreen(title, AUDITOR);
  let list;
  try {
    const { data } = await get('/control/v1/break-glass/requests?view=mine');
    const names = await groupNames(data.requests.map((r) => r.group_id));
    list = data.requests.length
      ? h('ul', { class: 'plain requests' }, data.requests.map((r) => auditorRow(r, names)))
      : h('p', { class: 'empty' }, 'You have filed no request in the last 90 days.');
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    list = note('error', e.message);
  }
  return {
    title,
    node: h(
      'section',
      null,
      h('h1', null, title),
      h('p', { class: 'lead' }, 'Lawful access to one group’s membership, and nothing more. You file a request; two different privacy officers must approve it; you then see the answer once, while the grant is open (an hour by default). Every step is written to the tamper-evident audit trail. The group’s owners and members are not told.'),
      fileForm(ctx),
      h('h2', null, 'Your requests'),
      list,
    ),
  };
}
