// Sign-in. In dev mode: pick a dev user (the dev issuer signs whatever it is asked, so this is
// for trying Hush out only). Otherwise: the company account, through the IdP.

import { h, field, note } from '../dom.js';
import * as auth from '../auth.js';
import { forgetLabels } from '../labels.js';

/** Dev users to try Hush with. */
const DEV_USERS = [
  { sub: 'alice', email: 'alice@corp.example', kind: 'member', roles: [], who: 'Employee; creates and owns groups' },
  { sub: 'bob', email: 'bob@corp.example', kind: 'member', roles: [], who: 'Employee' },
  { sub: 'gina', email: 'gina@partner.example', kind: 'guest', roles: [], who: 'Guest from a partner company' },
  { sub: 'olivia', email: 'olivia@corp.example', kind: 'member', roles: ['operator'], who: 'Employee with the operator role' },
  { sub: 'audrey', email: 'audrey@corp.example', kind: 'member', roles: ['auditor'], who: 'Auditor: files break-glass requests' },
  { sub: 'pat', email: 'pat@corp.example', kind: 'member', roles: ['privacy-officer'], who: 'Privacy officer: approves break-glass' },
  { sub: 'quinn', email: 'quinn@corp.example', kind: 'member', roles: ['privacy-officer'], who: 'A second privacy officer' },
  { sub: 'lena', email: 'lena@corp.example', kind: 'member', roles: ['label-admin'], who: 'Label-admin: manages labels' },
  { sub: 'leo', email: 'leo@corp.example', kind: 'member', roles: ['label-admin'], who: 'A second label-admin' },
];

function returnTo() {
  const r = sessionStorage.getItem('hush.return');
  sessionStorage.removeItem('hush.return');
  return r && r !== '#/signin' ? r : '#/';
}

function devPanel(ctx) {
  const errorBox = h('div');
  const signIn = async (user) => {
    errorBox.replaceChildren();
    try {
      await auth.devSignIn(user);
      forgetLabels();
      ctx.go(returnTo());
    } catch (e) {
      errorBox.replaceChildren(note('error', e.message));
    }
  };

  const presets = h(
    'ul',
    { class: 'user-list' },
    DEV_USERS.map((u) =>
      h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: 'user-pick', onclick: () => signIn(u) },
          h('span', { class: 'user-name' }, `Sign in as ${u.sub}`),
          h('span', { class: 'user-meta' }, `${u.email} · ${u.who}`),
        ),
      ),
    ),
  );

  const sub = h('input', { name: 'sub', required: true, autocomplete: 'off', maxlength: 255, spellcheck: 'false' });
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'off', spellcheck: 'false' });
  const kind = h(
    'select',
    { name: 'kind' },
    h('option', { value: 'member' }, 'Employee (member)'),
    h('option', { value: 'guest' }, 'Guest'),
    h('option', { value: 'agent' }, 'AI agent'),
  );
  const roleBoxes = ['operator', 'label-admin', 'auditor', 'privacy-officer'].map((r) => {
    const box = h('input', { type: 'checkbox', name: 'roles', value: r, id: `role-${r}` });
    return h('div', { class: 'check' }, box, h('label', { for: box.id }, r));
  });
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: (ev) => {
        ev.preventDefault();
        const roles = [...form.querySelectorAll('input[name=roles]:checked')].map((b) => b.value);
        signIn({ sub: sub.value.trim(), email: email.value.trim(), kind: kind.value, roles });
      },
    },
    field({ label: 'Subject (user id)', control: sub, hint: 'Any id, e.g. carol. The same id is the same person.' }),
    field({ label: 'E-mail address', control: email, hint: 'Needed to receive the groups’ mail.' }),
    field({ label: 'Kind of account', control: kind }),
    h('fieldset', null, h('legend', null, 'Roles'), roleBoxes),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')),
  );

  return h(
    'div',
    null,
    note('warn', 'Development mode: anyone can sign in as anyone here. Never use this for real groups.'),
    errorBox,
    h('h2', null, 'Pick a dev user'),
    presets,
    h('details', { class: 'panel' }, h('summary', null, 'Sign in as someone else'), form),
  );
}

function oidcPanel(ctx) {
  const a = ctx.config.auth;
  const errorBox = h('div');
  return h(
    'div',
    null,
    errorBox,
    h('p', null, 'Sign in with your company account. You will come back here afterwards.'),
    h(
      'div',
      { class: 'actions' },
      h(
        'button',
        {
          type: 'button',
          class: 'primary',
          onclick: async () => {
            try {
              await auth.beginOidc(returnTo());
            } catch (e) {
              errorBox.replaceChildren(note('error', e.message || 'Sign-in could not start.'));
            }
          },
        },
        'Sign in with your company account',
      ),
    ),
    a.issuer ? h('p', { class: 'hint' }, `Signing in at ${a.issuer}`) : null,
  );
}

export async function signInView(ctx) {
  const dev = ctx.config.auth && ctx.config.auth.mode === 'dev';
  return {
    title: 'Sign in',
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, 'Sign in to Hush'),
      h('p', { class: 'lead' }, 'Find and join groups whose membership stays private: nobody can list who is in them.'),
      dev ? devPanel(ctx) : oidcPanel(ctx),
    ),
  };
}
