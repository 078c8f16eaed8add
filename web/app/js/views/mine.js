// "My groups": the caller's own memberships and requests — only the caller's (INV-2).

import { h, note, actionButton, when } from '../dom.js';
import { get, post, del, seg } from '../api.js';
import { badge } from '../labels.js';
import { myRequests } from './group.js';

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
          h('div', { class: 'card-head' }, h('h3', null, h('a', { href: `#/groups/${seg(g.id)}` }, g.name)), badge(g.label)),
          h('p', { class: 'meta' }, h('span', { class: 'k' }, 'Group address: '), h('code', null, g.contact_address)),
          h(
            'div',
            { class: 'actions' },
            actionButton(`Leave ${g.name}`, async () => {
              try {
                await post(`/membership/v1/groups/${seg(g.id)}/leave`);
                ctx.flash('ok', `You left ${g.name}.`);
                ctx.go('#/mine');
              } catch (e) {
                out.replaceChildren(note('error', e.message));
              }
            }, { class: 'danger small' }),
          ),
        ),
      ),
    )
    : h('p', { class: 'empty' }, owned.length ? 'You are not a member of any group. (Owning a group does not make you a member.) ' : 'You are not in any group yet. ', h('a', { href: '#/' }, 'Discover groups'), ' to join one.');

  const ownedSection = owned.length
    ? h(
      'section',
      { class: 'panel', 'aria-labelledby': 'groups-you-own' },
      h('h2', { id: 'groups-you-own' }, 'Groups you own'),
      h(
        'ul',
        { class: 'plain rows' },
        owned.map((g) =>
          h(
            'li',
            { class: 'row' },
            h('span', null, h('a', { href: `#/groups/${seg(g.id)}` }, g.name), ' ', badge(g.label)),
            h('a', { class: 'button small', href: `#/groups/${seg(g.id)}/manage`, 'aria-label': `Manage ${g.name}` }, 'Manage'),
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
      h('h2', { id: 'my-requests' }, 'Your requests to join'),
      h(
        'ul',
        { class: 'plain rows' },
        pending.map((r) =>
          h(
            'li',
            { class: 'row' },
            h('span', null, h('a', { href: `#/groups/${seg(r.group_id)}` }, names.get(r.group_id) || 'A group'), ' — ',
              r.status === 'pending' ? `asked ${when(r.created_at)}, waiting for an owner` : 'declined by an owner'),
            actionButton(r.status === 'pending' ? 'Withdraw' : 'Dismiss', async () => {
              try {
                await del(`/membership/v1/me/requests/${seg(r.id)}`);
                ctx.flash('ok', r.status === 'pending' ? 'Your request is withdrawn.' : 'Dismissed.');
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
    title: 'My groups',
    node: h(
      'section',
      null,
      h('h1', null, 'My groups'),
      h('p', { class: 'lead' }, 'Only you can see this list. Group owners and administrators cannot.'),
      out,
      list,
      ownedSection,
      reqSection,
    ),
  };
}
