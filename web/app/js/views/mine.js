// "My groups": the caller's own memberships and requests — only the caller's (INV-2).

import { h, note, actionButton, when, field } from '../dom.js';
import { get, post, del, seg } from '../api.js';
import { signOut } from '../auth.js';
import { forgetLabels } from '../labels.js';
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
      forgetPanel(ctx, owned),
    ),
  };
}

/** The words a person types to confirm that Hush should forget them. */
const CONFIRM = 'forget me';

/**
 * Forget me: leave every group and have your identity erased, in one step, after typing the
 * confirmation. Signs out afterwards: every token of the person is void.
 */
function forgetPanel(ctx, owned) {
  const out = h('div');
  const typed = h('input', { name: 'confirm', autocomplete: 'off', spellcheck: 'false', maxlength: 40 });
  const button = h('button', { type: 'submit', class: 'danger', disabled: true }, 'Forget me');
  typed.addEventListener('input', () => {
    button.disabled = typed.value.trim().toLowerCase() !== CONFIRM;
  });
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (typed.value.trim().toLowerCase() !== CONFIRM) return;
        button.disabled = true;
        try {
          await post('/membership/v1/me/forget', { confirm: CONFIRM });
          signOut();
          forgetLabels();
          ctx.flash('ok', 'Hush has forgotten you: you are in no group, and your requests to join are deleted. Signing in again starts afresh.');
          ctx.go('#/signin');
        } catch (e) {
          out.replaceChildren(note('error', e.message));
          button.disabled = false;
        }
      },
    },
    field({ label: `Type “${CONFIRM}” to confirm`, control: typed }),
    h('div', { class: 'actions' }, button),
    out,
  );
  return h(
    'details',
    { class: 'panel forget' },
    h('summary', null, 'Forget me'),
    h('p', null, 'Leave every group and have Hush erase what it holds about you, in one step. This cannot be undone.'),
    h('ul', { class: 'rules' },
      h('li', null, 'You leave every group at once, and no group mail reaches you any more.'),
      h('li', null, 'Your requests to join are deleted, so owners no longer see them.'),
      h('li', null, 'You are signed out everywhere. Nobody is told; the audit records that someone was forgotten, without your name.'),
      owned.length
        ? h('li', null, h('strong', null, `You own ${owned.length} group${owned.length === 1 ? '' : 's'}. `),
          'Owning is public and is not handed over: hand your groups to another owner first if you do not want your user id on them.')
        : null),
    form,
  );
}
