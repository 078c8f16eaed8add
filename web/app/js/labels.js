// Sensitivity labels and join policies, explained in plain words. Every screen that shows a
// label shows what it means, from the label catalog the services hold.

import { get } from './api.js';
import { h, id as newId } from './dom.js';
import { t, locale } from './i18n.js';

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
export const requestShows = () => t('labels.request_shows');

const JOIN = {
  open: { name: () => t('join.open.name'), explain: () => t('join.open.explain') },
  approval: {
    name: () => t('join.approval.name'),
    explain: () => t('join.approval.explain', { shows: requestShows() }),
  },
  invite: { name: () => t('join.invite.name'), explain: () => t('join.invite.explain') },
};

const SENDERS = {
  anyone: { name: () => t('senders.anyone.name'), explain: () => t('senders.anyone.explain') },
  members: { name: () => t('senders.members.name'), explain: () => t('senders.members.explain') },
  owners: { name: () => t('senders.owners.name'), explain: () => t('senders.owners.explain') },
};

/** What a label's sender policy lets its groups choose. */
const LABEL_SENDERS = {
  anyone: () => t('labels.senders.anyone'),
  members: () => t('labels.senders.members'),
  owners: () => t('labels.senders.owners'),
};

/** Who may mail a group, from the widest circle to the narrowest. */
/** The two group types, in the order the create form offers them. */
export const GROUP_TYPES = ['mail', 'security'];

/** A group type's name ("Mail group", "Security group"). */
export const typeName = (g) => (g === 'security' ? t('group.type.security') : t('group.type.mail'));

/** What a group type means, in a sentence. */
export const typeExplain = (g) => (g === 'security' ? t('group.type.security_explain') : t('group.type.mail_explain'));

/** A small tag naming a group's type, beside its name. */
export function typeTag(g) {
  return h('span', { class: 'pill pill-type', 'data-type': g === 'security' ? 'security' : 'mail' }, typeName(g));
}

export const SENDER_POLICIES = ['anyone', 'members', 'owners'];

/** How wide a sender policy is (owners 0 < members 1 < anyone 2). */
export function senderBreadth(p) {
  const i = SENDER_POLICIES.indexOf(p);
  return i < 0 ? 0 : SENDER_POLICIES.length - 1 - i;
}

/** The display name of a join policy. */
export const joinName = (p) => (Object.hasOwn(JOIN, p) ? JOIN[p].name() : p);
/** One sentence on what a join policy means. */
export const joinExplain = (p) => (Object.hasOwn(JOIN, p) ? JOIN[p].explain() : '');
/** One sentence on a sender policy. */
export const senderExplain = (p) => (Object.hasOwn(SENDERS, p) ? SENDERS[p].explain() : '');
/** The display name of a sender policy. */
export const senderName = (p) => (Object.hasOwn(SENDERS, p) ? SENDERS[p].name() : p);

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
  const ways = new Intl.ListFormat(locale(), { type: 'unit', style: 'long' }).format((p.join_policies || []).map(joinName));
  const admits = [
    p.guests_allowed ? t('labels.guests_yes') : t('labels.guests_no'),
    p.agents_allowed ? t('labels.agents_yes') : t('labels.agents_no'),
  ];
  if (who) return admits;
  return [
    ...admits,
    t('labels.ways', { ways: ways || t('labels.ways_none') }),
    Object.hasOwn(LABEL_SENDERS, p.sender_policy) ? LABEL_SENDERS[p.sender_policy]() : '',
    p.anonymous_posting ? t('labels.anonymous') : '',
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
    h('legend', null, t('senders.legend')),
    allowed.length < SENDER_POLICIES.length
      ? h('p', { class: 'hint' }, t('senders.narrowed', { label: label.name }))
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
