// Sensitivity labels and join policies, explained in plain words. Every screen that shows a
// label shows what it means, from the label catalog the services hold.

import { get } from './api.js';
import { h, id as newId } from './dom.js';

let cache = null;

/**
 * How much a label lets in: guests, AI agents, ways to join and who may mail. Used to list
 * labels from the loosest to the strictest, so pickers start on the least restrictive one
 * (General) rather than on whichever sorts first by name.
 */
function looseness(label) {
  const p = label.policy || {};
  return (p.guests_allowed ? 8 : 0) + (p.agents_allowed ? 8 : 0)
    + 2 * (p.join_policies || []).length + senderBreadth(p.sender_policy);
}

/** The label catalog, loosest first, fetched once per sign-in. */
export async function labels() {
  if (!cache) {
    cache = get('/control/v1/labels')
      .then((r) => (r.data || []).map((l, i) => ({ l, i }))
        .sort((a, b) => looseness(b.l) - looseness(a.l) || a.i - b.i)
        .map((x) => x.l))
      .catch((e) => {
        cache = null;
        throw e;
      });
  }
  return cache;
}

/** Forgets the catalog (on sign-out). */
export function forgetLabels() {
  cache = null;
}

export const JOIN_POLICIES = ['open', 'approval', 'invite'];

/** What a group's owners see of a request to join: said the same on every screen. */
export const REQUEST_SHOWS = 'user id, e-mail address and kind of account (employee, guest or AI agent)';

const JOIN = {
  open: { name: 'Open', explain: 'Anyone the label admits joins at once.' },
  approval: {
    name: 'Ask an owner',
    explain: `People ask to join and an owner approves. Asking shows the person’s ${REQUEST_SHOWS} to the owners.`,
  },
  invite: { name: 'Invite only', explain: 'Only people with an invite code from an owner can join.' },
};

const SENDERS = {
  anyone: { name: 'Anyone in the company', explain: 'Anyone in the company may mail the group.' },
  members: { name: 'Members only', explain: 'Only members may mail the group.' },
  owners: { name: 'Owners only', explain: 'Only owners may mail the group.' },
};

/** What a label's sender policy lets its groups choose. */
const LABEL_SENDERS = {
  anyone: 'Each group’s owners decide who may mail it: anyone in the company, members or owners.',
  members: 'Only members may mail its groups (owners may narrow that to owners).',
  owners: 'Only owners may mail its groups.',
};

/** Who may mail a group, from the widest circle to the narrowest. */
export const SENDER_POLICIES = ['anyone', 'members', 'owners'];

/** How wide a sender policy is (owners 0 < members 1 < anyone 2). */
export function senderBreadth(p) {
  const i = SENDER_POLICIES.indexOf(p);
  return i < 0 ? 0 : SENDER_POLICIES.length - 1 - i;
}

/** The display name of a join policy. */
export const joinName = (p) => (JOIN[p] ? JOIN[p].name : p);
/** One sentence on what a join policy means. */
export const joinExplain = (p) => (JOIN[p] ? JOIN[p].explain : '');
/** One sentence on a sender policy. */
export const senderExplain = (p) => (SENDERS[p] ? SENDERS[p].explain : '');
/** The display name of a sender policy. */
export const senderName = (p) => (SENDERS[p] ? SENDERS[p].name : p);

/** The colour family of a label's badge (known default labels; others neutral). */
function tone(name) {
  const n = String(name).toLowerCase();
  if (n === 'general') return 'general';
  if (n === 'confidential') return 'confidential';
  if (n.includes('highly')) return 'highly';
  return 'other';
}

/** A label's badge. */
export function badge(name) {
  return h('span', { class: `badge badge-${tone(name)}` }, name);
}

/**
 * The plain-language rules of a label's policy, as list items. `who` alone gives only who the
 * label admits: a group's page states the group's own way to join and senders beside it.
 */
export function policyPoints(label, { who = false } = {}) {
  const p = label.policy || {};
  const ways = (p.join_policies || []).map(joinName).join(', ');
  const admits = [
    p.guests_allowed ? 'Guests may join.' : 'No guests.',
    p.agents_allowed ? 'AI agents may join.' : 'No AI agents.',
  ];
  if (who) return admits;
  return [
    ...admits,
    `Ways to join: ${ways || 'none'}.`,
    LABEL_SENDERS[p.sender_policy] || '',
    p.anonymous_posting ? 'Members may post anonymously through a group’s anonymous address.' : '',
  ].filter(Boolean);
}

/** A label shown with what it means: badge, description and rules. */
export function labelExplained(label, { compact = false, who = false } = {}) {
  if (!label) return null;
  return h(
    'div',
    { class: compact ? 'label-explain compact' : 'label-explain' },
    h('div', { class: 'label-head' }, badge(label.name), h('span', { class: 'label-desc' }, label.description)),
    compact ? null : h('ul', { class: 'rules' }, policyPoints(label, { who }).map((t) => h('li', null, t))),
  );
}

/** Finds a label by name, ignoring case. */
export function findLabel(all, name) {
  const n = String(name).toLowerCase();
  return all.find((l) => String(l.name).toLowerCase() === n) || null;
}

/**
 * "Who may mail the group": one radio per sender policy the label allows (none wider than its
 * own), `current` checked, or the label's own rule when `current` is not among them.
 */
export function senderChoices(label, current) {
  const most = (label && label.policy && label.policy.sender_policy) || 'owners';
  const allowed = SENDER_POLICIES.filter((p) => senderBreadth(p) <= senderBreadth(most));
  const checked = allowed.includes(current) ? current : most;
  return h(
    'fieldset',
    { class: 'choices senders' },
    h('legend', null, 'Who may mail the group'),
    allowed.length < SENDER_POLICIES.length
      ? h('p', { class: 'hint' }, `${label.name} allows no wider circle of senders than this.`)
      : null,
    allowed.map((p) => {
      const rid = newId('sp');
      return h(
        'div',
        { class: 'choice' },
        h('input', { type: 'radio', name: 'sender_policy', id: rid, value: p, checked: p === checked }),
        h('label', { for: rid }, h('strong', null, senderName(p)), h('span', { class: 'choice-text' }, senderExplain(p))),
      );
    }),
  );
}
