// "My groups": the caller's own memberships and requests — only the caller's (INV-2).

import { h, note, actionButton, when, field } from '../dom.js';
import { get, post, del, seg } from '../api.js';
import { dropSession } from '../auth.js';
import { forgetLabels } from '../labels.js';
import { badge, typeTag, typeExplain } from '../labels.js';
import { myRequests } from './group.js';
import { t } from '../i18n.js';

export async function myGroupsView(ctx) {
  const [{ data }, requests, owned] = await Promise.all([
    get('/membership/v1/me/groups'),
    myRequests().catch(() => []),
    get('/control/v1/owned-groups').then((r) => r.data.groups || [], () => []),
  ]);
  const groups = data.groups || [];
  const out = h('div');

  const list = groups.length
    ? h(
      'ul',
      { class: 'cards' },
      groups.map((g) =>
        h(
          'li',
          { class: 'card' },
          h('div', { class: 'card-head' }, h('h3', null, h('a', { href: `#/groups/${seg(g.id)}` }, g.name)), badge(g.label), typeTag(g.type)),
          g.contact_address
            ? h('p', { class: 'meta' }, h('span', { class: 'k' }, t('mine.address')), ' ', h('code', null, g.contact_address))
            : h('p', { class: 'meta' }, typeExplain(g.type)),
          h(
            'div',
            { class: 'actions' },
            actionButton(t('mine.leave', { name: g.name }), async () => {
              try {
                await post(`/membership/v1/groups/${seg(g.id)}/leave`);
                ctx.flash('ok', t('group.left', { name: g.name }));
                ctx.go('#/mine');
              } catch (e) {
                out.replaceChildren(note('error', e.message));
              }
            }, { class: 'danger small' }),
          ),
        ),
      ),
    )
    : h('p', { class: 'empty' }, owned.length ? t('mine.none_owner') : t('mine.none'), ' ', h('a', { href: '#/' }, t('mine.discover_link')), t('mine.discover_after'));

  const ownedSection = owned.length
    ? h(
      'section',
      { class: 'panel', 'aria-labelledby': 'groups-you-own' },
      h('h2', { id: 'groups-you-own' }, t('mine.owned')),
      h(
        'ul',
        { class: 'plain rows' },
        owned.map((g) =>
          h(
            'li',
            { class: 'row' },
            h('span', null, h('a', { href: `#/groups/${seg(g.id)}` }, g.name), ' ', badge(g.label)),
            h('a', { class: 'button small', href: `#/groups/${seg(g.id)}/manage`, 'aria-label': t('manage.title', { name: g.name }) }, t('mine.manage')),
          ),
        ),
      ),
    )
    : null;

  const pending = requests.filter((r) => r.status === 'pending' || r.status === 'denied');
  // Requests carry a group id only; the names come from the catalog.
  const names = new Map(await Promise.all(pending.map((r) => get(`/control/v1/groups/${seg(r.group_id)}`)
    .then((g) => [r.group_id, g.data.name], () => [r.group_id, null]))));
  const reqSection = pending.length
    ? h(
      'section',
      { class: 'panel', 'aria-labelledby': 'my-requests' },
      h('h2', { id: 'my-requests' }, t('mine.requests')),
      h(
        'ul',
        { class: 'plain rows' },
        pending.map((r) =>
          h(
            'li',
            { class: 'row' },
            h('span', null, h('a', { href: `#/groups/${seg(r.group_id)}` }, names.get(r.group_id) || t('mine.a_group')), ' — ',
              r.status === 'pending' ? t('mine.waiting', { date: when(r.created_at) }) : t('mine.declined')),
            actionButton(r.status === 'pending' ? t('mine.withdraw') : t('mine.dismiss'), async () => {
              try {
                await del(`/membership/v1/me/requests/${seg(r.id)}`);
                ctx.flash('ok', r.status === 'pending' ? t('group.withdrawn') : t('mine.dismissed'));
                ctx.go('#/mine');
              } catch (e) {
                out.replaceChildren(note('error', e.message));
              }
            }, { class: 'small' }),
          ),
        ),
      ),
    )
    : null;

  return {
    title: t('nav.mine'),
    node: h(
      'section',
      null,
      h('h1', null, t('nav.mine')),
      h('p', { class: 'lead' }, t('mine.lead')),
      out,
      list,
      ownedSection,
      reqSection,
      forgetPanel(ctx, owned),
    ),
  };
}

/**
 * The confirmation the service wants. The person types the catalog's words for it in the
 * language shown (mine.forget.words); the app sends this.
 */
const CONFIRM = 'forget me'; // i18n-ok: the API's word, never shown

/**
 * Forget me: leave every group and have your identity erased, in one step, after typing the
 * confirmation. Signs out afterwards: every token of the person is void.
 */
function forgetPanel(ctx, owned) {
  const out = h('div');
  const typed = h('input', { name: 'confirm', autocomplete: 'off', spellcheck: 'false', maxlength: 40 });
  const words = t('mine.forget.words');
  const button = h('button', { type: 'submit', class: 'danger', disabled: true }, t('mine.forget.title'));
  const confirmed = () => typed.value.trim().toLowerCase() === words.toLowerCase();
  typed.addEventListener('input', () => {
    button.disabled = !confirmed();
  });
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (!confirmed()) return;
        button.disabled = true;
        try {
          await post('/membership/v1/me/forget', { confirm: CONFIRM });
          dropSession();
          forgetLabels();
          ctx.flash('ok', t('mine.forget.done'));
          ctx.go('#/signin');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          button.disabled = false;
        }
      },
    },
    field({ label: t('mine.forget.type', { words }), control: typed }),
    h('div', { class: 'actions' }, button),
    out,
  );
  return h(
    'details',
    { class: 'panel forget' },
    h('summary', null, t('mine.forget.title')),
    h('p', null, t('mine.forget.intro')),
    h('ul', { class: 'rules' },
      h('li', null, t('mine.forget.leave')),
      h('li', null, t('mine.forget.requests')),
      h('li', null, t('mine.forget.signed_out')),
      owned.length
        ? h('li', null, h('strong', null, t('mine.forget.owned', { count: owned.length })), ' ', t('mine.forget.owned_hint'))
        : null),
    form,
  );
}
