// Sensitivity labels and join policies, explained in plain words. Every screen that shows a
// label shows what it means, from the label catalog the services hold.

import { get } from './api.js';
import { h } from './dom.js';

let cache = null;

/** The label catalog, fetched once per sign-in. */
export async function labels() {
  if (!cache) {
    cache = get('/control/v1/labels')
      .then((r) => r.data || [])
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

const JOIN = {
  open: { name: 'Open', explain: 'Anyone the label admits joins at once.' },
  approval: {
    name: 'Ask an owner',
    explain: "People ask to join and an owner approves. Asking shows the person's name and e-mail to the owners.",
  },
  invite: { name: 'Invite only', explain: 'Only people with an invite code from an owner can join.' },
};

const SENDERS = {
  anyone: 'Anyone in the company may mail the group.',
  members: 'Only members may mail the group.',
  owners: 'Only owners may mail the group.',
};

/** The display name of a join policy. */
export const joinName = (p) => (JOIN[p] ? JOIN[p].name : p);
/** One sentence on what a join policy means. */
export const joinExplain = (p) => (JOIN[p] ? JOIN[p].explain : '');
/** One sentence on a sender policy. */
export const senderExplain = (p) => SENDERS[p] || '';

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

/** The plain-language rules of a label's policy, as list items. */
export function policyPoints(label) {
  const p = label.policy || {};
  const ways = (p.join_policies || []).map(joinName).join(', ');
  return [
    p.guests_allowed ? 'Guests may join.' : 'No guests.',
    p.agents_allowed ? 'AI agents may join.' : 'No AI agents.',
    `Ways to join: ${ways || 'none'}.`,
    senderExplain(p.sender_policy),
  ].filter(Boolean);
}

/** A label shown with what it means: badge, description and rules. */
export function labelExplained(label, { compact = false } = {}) {
  if (!label) return null;
  return h(
    'div',
    { class: compact ? 'label-explain compact' : 'label-explain' },
    h('div', { class: 'label-head' }, badge(label.name), h('span', { class: 'label-desc' }, label.description)),
    compact ? null : h('ul', { class: 'rules' }, policyPoints(label).map((t) => h('li', null, t))),
  );
}

/** Finds a label by name, ignoring case. */
export function findLabel(all, name) {
  const n = String(name).toLowerCase();
  return all.find((l) => String(l.name).toLowerCase() === n) || null;
}
