// Hush in the browser: boot, sign-in and a small hash router. Each screen is a module under
// views/ that returns { title, node }; the router swaps it into <main>, sets the title and moves
// focus to the new heading so keyboard and screen-reader users land on the new page.

import { h, note } from './dom.js';
import { setUnauthorizedHandler } from './api.js';
import * as auth from './auth.js';
import { forgetLabels } from './labels.js';
import { t, translateStatic, onLocaleChange, setLocale, locale, LANGUAGE_NAMES } from './i18n.js';
import { signInView } from './views/signin.js';
import { discoverView } from './views/discover.js';
import { groupView } from './views/group.js';
import { myGroupsView } from './views/mine.js';
import { createView } from './views/create.js';
import { manageView } from './views/manage.js';
import { redeemView } from './views/redeem.js';
import { jobsView, jobView } from './views/jobs.js';
import { officerView, auditView } from './views/breakglass.js';
import { labelAdminView } from './views/labeladmin.js';
import { offboardView } from './views/offboard.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const lang = document.getElementById('lang');

const routes = [
  { re: /^\/?$/, name: 'discover', view: discoverView },
  { re: /^\/discover$/, name: 'discover', view: discoverView },
  { re: /^\/mine$/, name: 'mine', view: myGroupsView },
  { re: /^\/new$/, name: 'new', view: createView },
  { re: /^\/redeem$/, name: 'redeem', view: redeemView },
  { re: /^\/groups\/([0-9a-fA-F-]{36})$/, name: 'group', view: groupView },
  { re: /^\/groups\/([0-9a-fA-F-]{36})\/manage$/, name: 'manage', view: manageView },
  { re: /^\/jobs$/, name: 'jobs', view: jobsView },
  { re: /^\/jobs\/([0-9a-fA-F-]{36})$/, name: 'jobs', view: jobView },
  { re: /^\/breakglass$/, name: 'breakglass', view: officerView },
  { re: /^\/audit$/, name: 'audit', view: auditView },
  { re: /^\/labels$/, name: 'labels', view: labelAdminView },
  { re: /^\/offboard$/, name: 'offboard', view: offboardView },
  { re: /^\/signin$/, name: 'signin', view: signInView, open: true },
];

let pending = [];
let renderSeq = 0;

/** Shows a message at the top of the next screen rendered. */
export function flash(kind, message) {
  // Two calls refused at once (one screen's requests) say it once.
  if (!pending.some((m) => m.kind === kind && m.message === message)) pending.push({ kind, message });
}

/** Goes to `hash` (e.g. `#/mine`), re-rendering even when it is the current one. */
export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

function showChrome(session) {
  nav.hidden = !session;
  who.hidden = !session;
  who.replaceChildren();
  if (!session) return;
  const u = session.user;
  // Only employees create groups; guests and agents do not see the way to.
  nav.querySelector('[data-route="new"]').parentElement.hidden = u.kind !== 'member';
  // The bulk jobs screen is for operators (the services check the role on every call).
  nav.querySelector('[data-route="jobs"]').parentElement.hidden = !u.roles.includes('operator');
  // Each role's own screen shows in the menu only with the role (the services check it too).
  nav.querySelector('[data-route="breakglass"]').parentElement.hidden = !u.roles.includes('privacy-officer');
  nav.querySelector('[data-route="audit"]').parentElement.hidden = !u.roles.includes('auditor');
  nav.querySelector('[data-route="labels"]').parentElement.hidden = !u.roles.includes('label-admin');
  nav.querySelector('[data-route="offboard"]').parentElement.hidden = !u.roles.includes('operator');
  // Employees are the usual case; guests, agents and roles are worth a mark.
  const marks = [...(u.kind === 'member' ? [] : [kindMark(u.kind)]), ...u.roles.filter(Boolean).map(roleMark)];
  who.append(
    h('span', { class: 'who-name', title: u.email || u.sub }, u.name || u.email || u.sub),
    ...marks.map((m) => h('span', { class: 'who-kind' }, m)),
    h('button', {
      type: 'button',
      class: 'link',
      onclick: () => {
        forgetLabels();
        // On to the IdP's end-session page when it has one; it sends the browser back.
        if (auth.signOut()) return;
        flash('ok', t('app.signed_out'));
        go('#/signin');
      },
    }, t('app.sign_out')),
  );
}

function markNav(name) {
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Renders the screen the address names. */
export async function render() {
  const seq = ++renderSeq;
  const { path, query } = parseHash();
  const session = auth.current();
  let route = null;
  let params = [];
  for (const r of routes) {
    const m = path.match(r.re);
    if (m) {
      route = r;
      params = m.slice(1);
      break;
    }
  }
  showChrome(session);
  if (!session && auth.takeEnded() === 'expired') {
    flash('warn', t('app.expired'));
  }
  if (!session && !(route && route.open)) {
    sessionStorage.setItem('hush.return', location.hash || '#/');
    location.replace('#/signin');
    return;
  }
  markNav(route ? route.name : '');
  main.setAttribute('aria-busy', 'true');
  const messages = pending;
  pending = [];
  const ctx = {
    params,
    query,
    user: session && session.user,
    config: await auth.loadConfig(),
    flash,
    go,
    stillHere: () => seq === renderSeq,
  };
  let result;
  try {
    result = route
      ? await route.view(ctx)
      : { title: t('app.not_found.title'), node: h('section', null, h('h1', null, t('app.not_found.heading')), h('p', null, h('a', { href: '#/' }, t('app.not_found.back')))) };
  } catch (e) {
    result = {
      title: t('app.error.title'),
      node: h('section', null, h('h1', null, t('app.error.title')), note('error', e.message || String(e))),
    };
  }
  if (seq !== renderSeq) return; // a newer navigation won
  const flashes = messages.map((m) => note(m.kind, m.message));
  const node = result.node;
  const heading = node.querySelector('h1');
  if (heading && flashes.length) {
    // Right under the heading (or under the row that holds it).
    const anchor = heading.parentElement === node ? heading : heading.parentElement;
    anchor.after(...flashes);
  } else node.prepend(...flashes);
  main.replaceChildren(node);
  main.removeAttribute('aria-busy');
  document.title = `${result.title} · Hush`; // i18n-ok: the name
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

/** The mark beside a guest's or an AI agent's name. */
function kindMark(kind) {
  if (kind === 'guest') return t('kind.guest');
  if (kind === 'agent') return t('kind.agent');
  return kind;
}

/** The mark for a role: the known ones in words, others as the IdP names them. */
function roleMark(role) {
  const known = {
    operator: t('role.operator'),
    'label-admin': t('role.label_admin'),
    auditor: t('role.auditor'),
    'privacy-officer': t('role.privacy_officer'),
  };
  return Object.hasOwn(known, role) ? known[role] : role;
}

/** The language switcher in the header: each language named in its own words. */
function setUpLanguages() {
  lang.replaceChildren(...Object.entries(LANGUAGE_NAMES).map(([code, name]) => h('option', { value: code, lang: code }, name)));
  lang.value = locale();
  lang.addEventListener('change', () => setLocale(lang.value));
  // A switch redraws the fixed markup and the screen shown (its form input is lost, as on any
  // navigation; the address, and with it the screen, stays).
  onLocaleChange(() => {
    lang.value = locale();
    translateStatic();
    render();
  });
}

async function boot() {
  translateStatic();
  setUpLanguages();
  setUnauthorizedHandler(() => {
    flash('warn', t('app.refused'));
    sessionStorage.setItem('hush.return', location.hash || '#/');
    location.replace('#/signin');
  });
  try {
    await auth.loadConfig();
    if (auth.completeSignOut()) flash('ok', t('auth.signed_out_idp'));
    const next = await auth.completeOidc();
    if (next) location.replace(next);
    auth.scheduleRefresh();
  } catch (e) {
    flash('error', e.message || String(e));
  }
  window.addEventListener('hashchange', render);
  document.getElementById('skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });
  await render();
}

boot();
