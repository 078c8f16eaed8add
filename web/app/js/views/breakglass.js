// Break-glass in the browser: privacy officers judge the requests waiting for them (approve or
// decline), auditors file requests, follow them and redeem an approved grant once. The rules
// live in the isolated tenant (two distinct officers, expiries, single use); these screens only
// show what the services answer. Each screen is for its role: without it, it says so and shows
// nothing else (the services refuse the calls anyway).

import { h, field, note, actionButton, when } from '../dom.js';
import { get, post, seg, ApiError } from '../api.js';
import { t } from '../i18n.js';

export const OFFICER = 'privacy-officer';
export const AUDITOR = 'auditor';

/** What a scope asks, in words. */
export function scopeWords(scope) {
  return scope === 'member-check' ? t('breakglass.scope.check') : t('breakglass.scope.list');
}

const STATES = {
  pending: () => t('breakglass.state.pending'),
  approved: () => t('breakglass.state.approved'),
  redeemed: () => t('breakglass.state.redeemed'),
  declined: () => t('breakglass.state.declined'),
  expired: () => t('breakglass.state.expired'),
};

/** A request's state, in words. */
export const stateWords = (s) => (STATES[s] ? STATES[s]() : s);

/** A person a request names: their address, and their user id when it adds something. */
function personWords(p) {
  if (!p) return '';
  if (p.email && p.subject) return t('breakglass.person_both', { email: p.email, subject: p.subject });
  return p.email || t('breakglass.person_subject', { subject: p.subject });
}

/** The screen a person without `role` gets. */
export function notYourScreen(title, role) {
  return {
    title,
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, title),
      note('info', t('roles.not_yours', { role })),
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
  return h('a', { href: `#/groups/${seg(gid)}` }, names.get(gid) || t('breakglass.group_id', { id: gid.slice(0, 8) }));
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
    field({ label: t('officer.reason'), control: reason, hint: t('officer.reason_hint') }),
    h('div', { class: 'actions' },
      actionButton(t('officer.decline_confirm'), async () => {
        try {
          await post(`/control/v1/break-glass/requests/${seg(r.id)}/decline`, reason.value.trim() ? { reason: reason.value.trim() } : {});
          ctx.flash('ok', t('officer.declined', { group: names.get(r.group_id) || r.group_id.slice(0, 8) }));
          ctx.go('#/breakglass');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
        }
      }, { class: 'danger' })),
  );
  const approve = actionButton(r.approved_by_you ? t('officer.approved_by_you_button') : t('officer.approve'), async () => {
    try {
      const { data } = await post(`/control/v1/break-glass/requests/${seg(r.id)}/approve`);
      ctx.flash('ok', data.state === 'approved' ? t('officer.approved_second') : t('officer.approved_first'));
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
  }, t('officer.decline'));
  return h(
    'li',
    { class: 'panel request', 'data-request': r.id },
    h('h2', null, groupLink(names, r.group_id), ' — ', scopeWords(r.scope)),
    h('dl', { class: 'facts' },
      fact(t('breakglass.filed_by'), personWords(r.requester) || t('breakglass.an_auditor')),
      fact(t('breakglass.person'), r.scope === 'member-check' ? personWords(r.person) : ''),
      fact(t('breakglass.filed'), when(r.filed_at)),
      fact(t('breakglass.expires'), when(r.expires_at)),
      fact(t('breakglass.approvals'), t('breakglass.approvals_of', { count: r.approvals })),
      fact(t('breakglass.answer'), r.encrypted ? t('officer.answer_encrypted') : t('officer.answer_once')),
    ),
    h('h3', null, t('breakglass.justification')),
    h('blockquote', { class: 'pre justification' }, r.justification),
    r.approved_by_you ? note('info', t('officer.approved_by_you')) : null,
    h('div', { class: 'actions' }, approve, r.approved_by_you ? null : showDecline),
    declineForm,
    out,
  );
}

export async function officerView(ctx) {
  const title = t('officer.title');
  if (!ctx.user.roles.includes(OFFICER)) return notYourScreen(title, OFFICER);
  let body;
  try {
    const { data } = await get('/control/v1/break-glass/requests?view=waiting');
    const names = await groupNames(data.requests.map((r) => r.group_id));
    body = data.requests.length
      ? h('ul', { class: 'plain requests' }, data.requests.map((r) => officerCard(r, names, ctx)))
      : h('p', { class: 'empty' }, t('officer.none'));
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
      h('p', { class: 'lead' }, t('officer.lead')),
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
  const keep = note('warn', t('auditor.answer_once'));
  if (answer.encrypted) {
    return h('div', { class: 'answer' }, keep,
      h('p', null, t('auditor.encrypted_intro')),
      h('pre', { class: 'code' }, 'age -d -i key.txt answer.age'), // i18n-ok: a command
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => download('answer.age', answer.encrypted) }, t('auditor.save_age'))),
      h('textarea', { class: 'armored', rows: 8, readonly: true, 'aria-label': t('auditor.encrypted_label') }, answer.encrypted));
  }
  if (answer.scope === 'member-check') {
    return h('div', { class: 'answer' }, keep,
      h('p', { class: 'status-line' }, answer.member
        ? t('auditor.is_member', { person: personWords(person) })
        : t('auditor.not_member', { person: personWords(person) })));
  }
  const members = answer.members || [];
  return h('div', { class: 'answer' }, keep,
    h('p', { class: 'status-line' }, t('auditor.member_count', { count: members.length })),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, h('th', null, t('auditor.col_email')), h('th', null, t('auditor.col_subject')), h('th', null, t('auditor.col_note')))),
      h('tbody', null, members.map((m) => h('tr', null,
        h('td', null, m.email || ''), h('td', null, m.subject || ''),
        h('td', null, m.disabled ? t('auditor.suspended') : ''))))))
    ,
    h('div', { class: 'actions' }, h('button', {
      type: 'button',
      onclick: () => download('members.csv', ['email,subject,disabled', // i18n-ok: CSV header
        ...members.map((m) => [m.email || '', m.subject || '', m.disabled ? 'yes' : 'no']
          .map((v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)).join(','))].join('\n')),
    }, t('auditor.save_csv'))));
}

function auditorRow(r, names) {
  const out = h('div');
  const redeem = r.state === 'approved'
    ? actionButton(t('auditor.redeem'), async (button) => {
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
    h('p', { class: 'status-line' }, r.state === 'pending'
      ? t('auditor.pending_with', { count: r.approvals })
      : stateWords(r.state)),
    h('dl', { class: 'facts' },
      fact(t('breakglass.person'), r.scope === 'member-check' ? personWords(r.person) : ''),
      fact(t('breakglass.filed'), when(r.filed_at)),
      fact(r.state === 'approved' ? t('auditor.see_before') : t('breakglass.expires'), r.expires_at ? when(r.expires_at) : ''),
      fact(t('auditor.reason'), r.state === 'declined' ? (r.decline_reason || t('auditor.no_reason')) : ''),
      fact(t('breakglass.answer'), r.encrypted ? t('auditor.answer_encrypted') : t('auditor.answer_here')),
    ),
    h('details', null, h('summary', null, t('breakglass.justification')), h('p', { class: 'pre' }, r.justification)),
    redeem ? h('div', { class: 'actions' }, redeem) : null,
    out,
  );
}

function fileForm(ctx) {
  const out = h('div');
  const q = h('input', { type: 'search', name: 'group-q', autocomplete: 'off', maxlength: 200, placeholder: t('auditor.group_placeholder') });
  const group = h('select', { name: 'group', required: true, 'aria-label': t('auditor.group_pick_label') }, h('option', { value: '' }, t('auditor.group_pick')));
  const find = h('button', {
    type: 'button',
    onclick: async () => {
      try {
        const params = new URLSearchParams({ limit: '20' });
        if (q.value.trim()) params.set('q', q.value.trim());
        const { data } = await get(`/control/v1/groups?${params}`);
        group.replaceChildren(...(data.groups.length
          ? data.groups.map((g) => h('option', { value: g.id }, `${g.name} (${g.label})`))
          : [h('option', { value: '' }, t('auditor.group_none'))]));
        group.focus();
      } catch (e) {
        out.replaceChildren(note('error', e.message));
      }
    },
  }, t('auditor.find'));
  const scopeCheck = h('input', { type: 'radio', name: 'scope', value: 'member-check', checked: true });
  const scopeList = h('input', { type: 'radio', name: 'scope', value: 'full-list' });
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'off', maxlength: 254 });
  const personField = field({ label: t('auditor.email'), control: email, hint: t('auditor.email_hint') });
  const syncScope = () => {
    personField.hidden = !scopeCheck.checked;
  };
  scopeCheck.addEventListener('change', syncScope);
  scopeList.addEventListener('change', syncScope);
  const justification = h('textarea', { name: 'justification', rows: 4, minlength: 10, maxlength: 2000, required: true });
  const recipient = h('input', { name: 'recipient', autocomplete: 'off', spellcheck: 'false', maxlength: 200, placeholder: 'age1…' });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('auditor.file'));
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
          out.replaceChildren(note('error', t('auditor.need_group')));
          q.focus();
          return;
        }
        if (body.scope === 'member-check') {
          if (!email.value.trim()) {
            out.replaceChildren(note('error', t('auditor.need_email')));
            email.focus();
            return;
          }
          body.email = email.value.trim();
        }
        if (body.justification.length < 10) {
          out.replaceChildren(note('error', t('auditor.need_why')));
          justification.focus();
          return;
        }
        if (recipient.value.trim()) body.recipient = recipient.value.trim();
        submit.disabled = true;
        try {
          await post('/control/v1/break-glass/requests', body);
          ctx.flash('ok', t('auditor.filed'));
          ctx.go('#/audit');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          submit.disabled = false;
        }
      },
    },
    h('h2', null, t('auditor.file_heading')),
    h('div', { class: 'field' }, h('label', { for: 'bg-group-q' }, t('auditor.group')),
      h('div', { class: 'search-row' }, Object.assign(q, { id: 'bg-group-q' }), find), group),
    h('fieldset', { class: 'field' }, h('legend', { class: 'field-title' }, t('auditor.scope')),
      h('label', { class: 'check' }, scopeCheck, ' ', t('auditor.scope_check')),
      h('label', { class: 'check' }, scopeList, ' ', t('auditor.scope_list'))),
    personField,
    field({ label: t('breakglass.justification'), control: justification, hint: t('auditor.justification_hint') }),
    field({ label: t('auditor.recipient'), control: recipient, hint: t('auditor.recipient_hint') }),
    out,
    h('div', { class: 'actions' }, submit),
  );
}

export async function auditView(ctx) {
  const title = t('auditor.title');
  if (!ctx.user.roles.includes(AUDITOR)) return notYourScreen(title, AUDITOR);
  let list;
  try {
    const { data } = await get('/control/v1/break-glass/requests?view=mine');
    const names = await groupNames(data.requests.map((r) => r.group_id));
    list = data.requests.length
      ? h('ul', { class: 'plain requests' }, data.requests.map((r) => auditorRow(r, names)))
      : h('p', { class: 'empty' }, t('auditor.none'));
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
      h('p', { class: 'lead' }, t('auditor.lead')),
      fileForm(ctx),
      h('h2', null, t('auditor.yours')),
      list,
    ),
  };
}
