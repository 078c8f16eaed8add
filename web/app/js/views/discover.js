// Discover: search and browse the groups the caller may join (the service lists only groups
// whose label admits the caller's kind of account), each with its label shown and explained.

import { h, note } from '../dom.js';
import { get, ApiError } from '../api.js';
import { labels, badge, findLabel, joinName, policyPoints } from '../labels.js';

const PAGE = 20;

function card(g, all, mine) {
  const label = findLabel(all, g.label);
  return h(
    'li',
    { class: 'card' },
    h(
      'div',
      { class: 'card-head' },
      h('h3', null, h('a', { href: `#/groups/${encodeURIComponent(g.id)}` }, g.name)),
      mine.has(g.id) ? h('span', { class: 'pill pill-member' }, 'You are a member') : null,
      g.is_owner ? h('span', { class: 'pill' }, 'You own this') : null,
    ),
    g.description ? h('p', { class: 'desc' }, g.description) : null,
    h(
      'p',
      { class: 'meta' },
      badge(g.label),
      h('span', null, label ? label.description : ''),
    ),
    h('p', { class: 'meta' }, h('span', { class: 'k' }, 'How to join: '), joinName(g.join_policy)),
  );
}

function legend(all) {
  return h(
    'details',
    { class: 'panel legend' },
    h('summary', null, 'What the labels mean'),
    h(
      'p',
      { class: 'hint' },
      'Every group has a sensitivity label, chosen when it is created and never changed. The label decides who may join and how.',
    ),
    h(
      'dl',
      { class: 'label-list' },
      all.map((l) => [
        h('dt', null, badge(l.name)),
        h('dd', null, h('p', null, l.description), h('ul', { class: 'rules' }, policyPoints(l).map((t) => h('li', null, t)))),
      ]),
    ),
  );
}

export async function discoverView(ctx) {
  const q = (ctx.query.get('q') || '').trim();
  // The caller's own groups (INV-2: only theirs), to mark the ones they are already in.
  const [all, mine] = await Promise.all([
    labels(),
    get('/membership/v1/me/groups').then((r) => new Set((r.data.groups || []).map((g) => g.id)), () => new Set()),
  ]);
  const results = h('ul', { class: 'cards' });
  const status = h('p', { class: 'count', role: 'status' });
  const more = h('div', { class: 'actions' });
  let shown = 0;

  async function load(cursor) {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (q) params.set('q', q);
    if (cursor) params.set('cursor', cursor);
    const { data } = await get(`/control/v1/groups?${params}`);
    for (const g of data.groups) results.append(card(g, all, mine));
    shown += data.groups.length;
    status.textContent = shown === 0
      ? (q ? `No groups match “${q}”.` : 'There are no groups you can join yet.')
      : `${shown}${data.next_cursor ? '+' : ''} group${shown === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}`;
    more.replaceChildren();
    if (data.next_cursor) {
      const btn = h('button', { type: 'button' }, 'Show more groups');
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        try {
          await load(data.next_cursor);
        } catch (e) {
          more.replaceChildren(note('error', e.message));
        }
      });
      more.append(btn);
    }
  }

  let error = null;
  try {
    await load(null);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    error = note('error', e.message);
  }

  const input = h('input', {
    type: 'search',
    id: 'q',
    name: 'q',
    value: q,
    placeholder: 'Name or topic',
    autocomplete: 'off',
    maxlength: 200,
  });
  const form = h(
    'form',
    {
      class: 'search',
      role: 'search',
      onsubmit: (ev) => {
        ev.preventDefault();
        const v = input.value.trim();
        ctx.go(v ? `#/discover?q=${encodeURIComponent(v)}` : '#/discover');
      },
    },
    h('label', { for: 'q' }, 'Search groups'),
    h('div', { class: 'search-row' }, input, h('button', { type: 'submit', class: 'primary' }, 'Search')),
  );

  return {
    title: q ? `Discover: ${q}` : 'Discover groups',
    node: h(
      'section',
      null,
      h('h1', null, 'Discover groups'),
      h('p', { class: 'lead' }, 'Groups you can join. Joining is private: nobody can see who is in a group.'),
      form,
      legend(all),
      error,
      status,
      results,
      more,
    ),
  };
}
