// Label-admins' screen: the sensitivity labels with what each allows, a form to change one or
// add one, and the changes waiting for a second label-admin. A change that lets more people in
// (guests, AI agents, another way to join, a wider circle of senders) is not applied at once:
// control-api files it, and another label-admin approves or rejects it here. A change that
// tightens a label applies at once and ends the memberships it now bars (a count bucket only).

import { h, field, note, actionButton, when, id as newId } from '../dom.js';
import { get, post, put, del, seg, ApiError } from '../api.js';
import { t } from '../i18n.js';
import { badge, labelExplained, policyPoints, forgetLabels, JOIN_POLICIES, SENDER_POLICIES, joinName, senderName } from '../labels.js';
import { notYourScreen } from './breakglass.js';

export const LABEL_ADMIN = 'label-admin';

/**
 * The policy fields a label-admin edits. Fields this screen does not know are kept as they are
 * (`...base`), so a label saved here loses nothing a newer service added.
 */
function policyForm(base) {
  const p = base || { guests_allowed: false, agents_allowed: false, join_policies: ['approval'], sender_policy: 'members' };
  const box = (name, checked, text) => {
    const cid = newId('lp');
    const input = h('input', { type: 'checkbox', id: cid, name, checked });
    return { input, node: h('div', { class: 'check' }, input, h('label', { for: cid }, text)) };
  };
  const guests = box('guests_allowed', !!p.guests_allowed, t('labeladmin.guests'));
  const agents = box('agents_allowed', !!p.agents_allowed, t('labeladmin.agents'));
  const anonymous = box('anonymous_posting', !!p.anonymous_posting, t('labeladmin.anonymous'));
  const ways = JOIN_POLICIES.map((j) => ({ j, ...box(`join-${j}`, (p.join_policies || []).includes(j), joinName(j)) }));
  const sender = h('select', { name: 'sender_policy' },
    SENDER_POLICIES.map((s) => h('option', { value: s, selected: s === p.sender_policy }, senderName(s))));
  return {
    nodes: [
      h('fieldset', { class: 'field' }, h('legend', { class: 'field-title' }, t('labeladmin.who')), guests.node, agents.node),
      h('fieldset', { class: 'field' }, h('legend', { class: 'field-title' }, t('labeladmin.ways')), ways.map((w) => w.node)),
      field({ label: t('labeladmin.senders'), control: sender }),
      h('fieldset', { class: 'field' }, h('legend', { class: 'field-title' }, t('labeladmin.anonymous_heading')), anonymous.node),
    ],
    value: () => ({
      ...p,
      guests_allowed: guests.input.checked,
      agents_allowed: agents.input.checked,
      join_policies: ways.filter((w) => w.input.checked).map((w) => w.j),
      sender_policy: sender.value,
      anonymous_posting: anonymous.input.checked,
    }),
  };
}

function editForm(label, ctx, close) {
  const out = h('div');
  const description = h('textarea', { name: 'description', rows: 2, maxlength: 2000 }, label.description);
  const policy = policyForm(label.policy);
  const save = h('button', { type: 'submit', class: 'primary' }, t('labeladmin.save'));
  return h(
    'form',
    {
      class: 'stack edit-label',
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        const body = { description: description.value.trim(), policy: policy.value() };
        if (!body.policy.join_policies.length) {
          out.replaceChildren(note('error', t('labeladmin.need_way')));
          return;
        }
        save.disabled = true;
        try {
          const { status, data } = await put(`/control/v1/labels/${seg(label.name)}`, body);
          forgetLabels();
          ctx.flash('ok', status === 202
            ? t('labeladmin.waits', { label: label.name })
            : t('labeladmin.saved', { label: label.name, ended: data.memberships_ended }));
          ctx.go('#/labels');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          save.disabled = false;
        }
      },
    },
    field({ label: t('labeladmin.description'), control: description, hint: t('labeladmin.description_hint') }),
    policy.nodes,
    note('info', t('labeladmin.tighten_loosen')),
    out,
    h('div', { class: 'actions' }, save, h('button', { type: 'button', onclick: close }, t('common.cancel'))),
  );
}

function labelCard(label, ctx) {
  const slot = h('div');
  const out = h('div');
  const edit = h('button', {
    type: 'button',
    onclick: () => {
      edit.hidden = true;
      slot.replaceChildren(editForm(label, ctx, () => {
        slot.replaceChildren();
        edit.hidden = false;
      }));
    },
  }, t('labeladmin.change'));
  const remove = actionButton(t('labeladmin.delete'), async () => {
    if (!window.confirm(t('labeladmin.delete_confirm', { label: label.name }))) return;
    try {
      await del(`/control/v1/labels/${seg(label.name)}`);
      forgetLabels();
      ctx.flash('ok', t('labeladmin.deleted', { label: label.name }));
      ctx.go('#/labels');
    } catch (e) {
      out.replaceChildren(note('error', e.message));
    }
  }, { class: 'danger' });
  return h(
    'li',
    { class: 'panel', 'data-label': label.name },
    labelExplained(label),
    h('div', { class: 'actions' }, edit, remove),
    out,
    slot,
  );
}

/** What a pending change does, rule by rule: before → after. */
function diff(before, after) {
  const lines = [];
  const yn = (v) => (v ? t('labeladmin.yes') : t('labeladmin.no'));
  if (before.guests_allowed !== after.guests_allowed) lines.push(t('labeladmin.diff_guests', { from: yn(before.guests_allowed), to: yn(after.guests_allowed) }));
  if (before.agents_allowed !== after.agents_allowed) lines.push(t('labeladmin.diff_agents', { from: yn(before.agents_allowed), to: yn(after.agents_allowed) }));
  const ways = (p) => (p.join_policies || []).map(joinName).join(', ') || t('labeladmin.none');
  if (ways(before) !== ways(after)) lines.push(t('labeladmin.diff_ways', { from: ways(before), to: ways(after) }));
  if (!!before.anonymous_posting !== !!after.anonymous_posting) lines.push(t('labeladmin.diff_anonymous', { from: yn(before.anonymous_posting), to: yn(after.anonymous_posting) }));
  if (before.sender_policy !== after.sender_policy) lines.push(t('labeladmin.diff_senders', { from: senderName(before.sender_policy), to: senderName(after.sender_policy) }));
  return lines.length ? lines : [t('labeladmin.diff_description')];
}

/**
 * Approve and Reject for a change waiting at `path` (`…/{id}`); its proposer (`mine`) may only
 * reject. `said` holds the flash for each.
 */
function decisions(ctx, path, mine, out, said) {
  const button = (verb) => actionButton(verb === 'approve' ? t('labeladmin.approve') : t('labeladmin.reject'), async () => {
    try {
      await post(`${path}/${verb}`);
      forgetLabels();
      ctx.flash('ok', said[verb]);
      ctx.go('#/labels');
    } catch (e) {
      out.replaceChildren(note('error', e.message));
    }
  }, { class: verb === 'approve' ? 'primary' : 'danger', disabled: verb === 'approve' && mine });
  return h('div', { class: 'actions' }, button('approve'), button('reject'));
}

function changeCard(c, ctx) {
  const out = h('div');
  const mine = c.proposed_by === ctx.user.sub;
  const decide = decisions(ctx, `/control/v1/label-changes/${seg(c.id)}`, mine, out, {
    approve: t('labeladmin.applied', { label: c.label }),
    reject: t('labeladmin.dropped', { label: c.label }),
  });
  return h(
    'li',
    { class: 'panel', 'data-change': c.id },
    h('h3', null, badge(c.label), ' ', t('labeladmin.proposed', { when: when(c.proposed_at) })),
    h('ul', { class: 'rules' }, diff(c.before, c.policy).map((t) => h('li', null, t))),
    mine ? note('info', t('labeladmin.yours')) : null,
    decide,
    out,
  );
}

/** A group's move to a looser label, waiting for a label-admin (never its proposer). */
function relabelCard(m, ctx) {
  const out = h('div');
  const mine = m.proposed_by === ctx.user.sub;
  const decide = decisions(ctx, `/control/v1/relabels/${seg(m.id)}`, mine, out, {
    approve: t('labeladmin.relabel_applied', { group: m.group_name, label: m.to }),
    reject: t('labeladmin.relabel_dropped', { group: m.group_name }),
  });
  return h(
    'li',
    { class: 'panel', 'data-relabel': m.id },
    h('h3', null, h('a', { href: `#/groups/${seg(m.group)}` }, m.group_name)),
    h('p', null, badge(m.from), ' → ', badge(m.to), ' ', t('labeladmin.proposed', { when: when(m.proposed_at) })),
    h('ul', { class: 'rules' }, policyPoints({ name: m.to, policy: m.to_policy }).map((x) => h('li', null, x))),
    mine ? note('info', t('labeladmin.yours')) : null,
    decide,
    out,
  );
}

function newLabelForm(ctx) {
  const out = h('div');
  const name = h('input', { name: 'name', required: true, maxlength: 64, autocomplete: 'off' });
  const description = h('textarea', { name: 'description', rows: 2, maxlength: 2000 });
  const policy = policyForm(null);
  const submit = h('button', { type: 'submit', class: 'primary' }, t('labeladmin.add'));
  return h(
    'details',
    { class: 'panel' },
    h('summary', null, t('labeladmin.add_heading')),
    h('form', {
      class: 'stack',
      onsubmit: async (ev) => {
        ev.preventDefault();
        out.replaceChildren();
        const body = { name: name.value.trim(), description: description.value.trim(), policy: policy.value() };
        if (!body.name) {
          out.replaceChildren(note('error', t('labeladmin.need_name')));
          name.focus();
          return;
        }
        submit.disabled = true;
        try {
          await post('/control/v1/labels', body);
          forgetLabels();
          ctx.flash('ok', t('labeladmin.added', { label: body.name }));
          ctx.go('#/labels');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          submit.disabled = false;
        }
      },
    },
    field({ label: t('labeladmin.name'), control: name, hint: t('labeladmin.name_hint') }),
    field({ label: t('labeladmin.description'), control: description }),
    policy.nodes,
    out,
    h('div', { class: 'actions' }, submit)),
  );
}

export async function labelAdminView(ctx) {
  const title = t('labeladmin.title');
  if (!ctx.user.roles.includes(LABEL_ADMIN)) return notYourScreen(title, LABEL_ADMIN);
  let labels = [];
  let changes = [];
  let moves = [];
  let error = null;
  try {
    [labels, changes, moves] = await Promise.all([
      get('/control/v1/labels').then((r) => r.data || []),
      get('/control/v1/label-changes').then((r) => r.data || []),
      get('/control/v1/relabels').then((r) => r.data || []),
    ]);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    error = note('error', e.message);
  }
  return {
    title,
    node: h(
      'section',
      null,
      h('h1', null, title),
      h('p', { class: 'lead' }, t('labeladmin.lead')),
      error,
      h('h2', null, t('labeladmin.waiting')),
      changes.length
        ? h('ul', { class: 'plain' }, changes.map((c) => changeCard(c, ctx)))
        : h('p', { class: 'empty' }, t('labeladmin.none_waiting')),
      h('h2', null, t('labeladmin.moves')),
      moves.length
        ? h('ul', { class: 'plain' }, moves.map((m) => relabelCard(m, ctx)))
        : h('p', { class: 'empty' }, t('labeladmin.no_moves')),
      h('h2', null, t('labeladmin.labels')),
      h('ul', { class: 'plain' }, labels.map((l) => labelCard(l, ctx))),
      newLabelForm(ctx),
    ),
  };
}
