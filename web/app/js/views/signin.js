// Sign-in. In dev mode: pick a dev user (the dev issuer signs whatever it is asked, so this is
// for trying Hush out only). Otherwise: the company account, through the IdP.

import { h, field, note } from '../dom.js';
import * as auth from '../auth.js';
import { forgetLabels } from '../labels.js';
import { t } from '../i18n.js';

/** Dev users to try Hush with. */
const DEV_USERS = [
  { sub: 'alice', email: 'alice@corp.example', kind: 'member', roles: [], who: () => t('signin.dev.alice') },
  { sub: 'bob', email: 'bob@corp.example', kind: 'member', roles: [], who: () => t('signin.dev.bob') },
  { sub: 'gina', email: 'gina@partner.example', kind: 'guest', roles: [], who: () => t('signin.dev.gina') },
  { sub: 'olivia', email: 'olivia@corp.example', kind: 'member', roles: ['operator'], who: () => t('signin.dev.olivia') },
  { sub: 'audrey', email: 'audrey@corp.example', kind: 'member', roles: ['auditor'], who: () => t('signin.dev.audrey') },
  { sub: 'pat', email: 'pat@corp.example', kind: 'member', roles: ['privacy-officer'], who: () => t('signin.dev.pat') },
  { sub: 'quinn', email: 'quinn@corp.example', kind: 'member', roles: ['privacy-officer'], who: () => t('signin.dev.quinn') },
  { sub: 'lena', email: 'lena@corp.example', kind: 'member', roles: ['label-admin'], who: () => t('signin.dev.lena') },
  { sub: 'leo', email: 'leo@corp.example', kind: 'member', roles: ['label-admin'], who: () => t('signin.dev.leo') },
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
          h('span', { class: 'user-name' }, t('signin.as', { user: u.sub })),
          h('span', { class: 'user-meta' }, `${u.email} · ${u.who()}`),
        ),
      ),
    ),
  );

  const sub = h('input', { name: 'sub', required: true, autocomplete: 'off', maxlength: 255, spellcheck: 'false' });
  const email = h('input', { name: 'email', type: 'email', autocomplete: 'off', spellcheck: 'false' });
  const kind = h(
    'select',
    { name: 'kind' },
    h('option', { value: 'member' }, t('signin.kind.member')),
    h('option', { value: 'guest' }, t('signin.kind.guest')),
    h('option', { value: 'agent' }, t('signin.kind.agent')),
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
    field({ label: t('signin.subject'), control: sub, hint: t('signin.subject_hint') }),
    field({ label: t('signin.email'), control: email, hint: t('signin.email_hint') }),
    field({ label: t('signin.kind'), control: kind }),
    h('fieldset', null, h('legend', null, t('signin.roles')), roleBoxes),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t('signin.submit'))),
  );

  return h(
    'div',
    null,
    note('warn', t('signin.dev_warning')),
    errorBox,
    h('h2', null, t('signin.pick')),
    presets,
    h('details', { class: 'panel' }, h('summary', null, t('signin.someone_else')), form),
  );
}

function oidcPanel(ctx) {
  const a = ctx.config.auth;
  const errorBox = h('div');
  return h(
    'div',
    null,
    errorBox,
    h('p', null, t('signin.oidc_intro')),
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
              errorBox.replaceChildren(note('error', e.message || t('signin.oidc_failed')));
            }
          },
        },
        t('signin.oidc_button'),
      ),
    ),
    a.issuer ? h('p', { class: 'hint' }, t('signin.oidc_at', { issuer: a.issuer })) : null,
  );
}

export async function signInView(ctx) {
  const dev = ctx.config.auth && ctx.config.auth.mode === 'dev';
  return {
    title: t('signin.title'),
    node: h(
      'section',
      { class: 'narrow' },
      h('h1', null, t('signin.heading')),
      h('p', { class: 'lead' }, t('signin.lead')),
      dev ? devPanel(ctx) : oidcPanel(ctx),
    ),
  };
}
