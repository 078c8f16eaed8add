// Discover: search and browse the groups the caller may join (the service lists only groups
// whose label admits the caller's kind of account), each with its label shown and explained.

import { h, note } from '../dom.js';
import { get, ApiError } from '../api.js';
import { labels, badge, findLabel, joinName, policyPoints, typeTag } from '../labels.js';
import { t } from '../i18n.js';

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
      mine.has(g.id) ? h('span', { class: 'pill pill-member' }, t('discover.member')) : null,
      g.is_owner ? h('span', { class: 'pill' }, t('discover.owner')) : null,
      typeTag(g.type),
    ),
    g.description ? h('p', { class: 'desc' }, g.description) : null,
    h(
      'p',
      { class: 'meta' },
      badge(g.label),
      h('span', null, label ? label.description : ''),
    ),
    h('p', { class: 'meta' }, h('span', { class: 'k' }, t('discover.how_to_join')), ' ', joinName(g.join_policy)),
  );
}

function legend(all) {
  return h(
    'details',
    { class: 'panel legend' },
    h('summary', null, t('discover.legend')),
    h(
      'p',
      { class: 'hint' },
      t('discover.legend_intro'),
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
    // "20+ groups" while there are more to show.
    const n = { count: shown, q };
    let count;
    if (shown === 0) count = q ? t('discover.none_match', n) : t('discover.none');
    else if (data.next_cursor) count = q ? t('discover.count_q_more', n) : t('discover.count_more', n);
    else count = q ? t('discover.count_q', n) : t('discover.count', n);
    status.textContent = count;
    more.replaceChildren();
    if (data.next_cursor) {
      const btn = h('button', { type: 'button' }, t('discover.more'));
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
    placeholder: t('discover.placeholder'),
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
    h('label', { for: 'q' }, t('discover.search_label')),
    h('div', { class: 'search-row' }, input, h('button', { type: 'submit', class: 'primary' }, t('discover.search'))),
  );

  return {
    title: q ? t('discover.title_q', { q }) : t('discover.heading'),
    node: h(
      'section',
      null,
      h('h1', null, t('discover.heading')),
      h('p', { class: 'lead' }, t('discover.lead')),
      form,
      legend(all),
      error,
      status,
      results,
      more,
    ),
  };
}
