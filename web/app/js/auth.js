// Who is signed in, and how they sign in.
//
// The tokens live in sessionStorage only (never localStorage, never a cookie): they are gone
// when the tab closes, and no other tab or site can read them. In dev mode the edge mints a
// token for a chosen dev user (POST /dev/token); otherwise the app runs the OIDC authorization
// code flow with PKCE against the company IdP, as a public client with no secret, at the
// endpoints the edge discovered (/config.json). With a refresh token from the IdP the app
// refreshes the token a minute before it expires, and once when a service refuses it (401);
// one refresh at a time, shared by every request that needs it. Signing out forgets the
// tokens and, when the IdP has an end-session endpoint, ends the session there too
// (id_token_hint, post_logout_redirect_uri = this origin + '/').

import { t } from './i18n.js';

const SESSION_KEY = 'hush.session';
const PKCE_KEY = 'hush.pkce';
const ENDED_KEY = 'hush.ended';
const LOGOUT_KEY = 'hush.logout';

/** How long before its expiry a token is refreshed. */
const REFRESH_MARGIN_MS = 60_000;

/**
 * Why the last session ended without the person signing out ('expired'), once: the sign-in
 * page says so instead of appearing with no explanation.
 */
export function takeEnded() {
  const why = sessionStorage.getItem(ENDED_KEY);
  sessionStorage.removeItem(ENDED_KEY);
  return why;
}

let config = null;

/** The edge's /config.json: how to sign in. */
export async function loadConfig() {
  if (config) return config;
  const res = await fetch('/config.json', { cache: 'no-store', credentials: 'omit' });
  if (!res.ok) throw new Error(t('auth.no_config'));
  config = await res.json();
  return config;
}

function b64urlDecode(s) {
  const padded = s.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(s.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(bytes = 32) {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/**
 * The claims of a JWT, read without checking the signature: only to greet the person and to
 * hide buttons they could not use. The services check the token on every call.
 */
function claimsOf(token) {
  try {
    return JSON.parse(b64urlDecode(token.split('.')[1]));
  } catch {
    return {};
  }
}

function userOf(token) {
  const c = claimsOf(token);
  const roles = Array.isArray(c.roles) ? c.roles : typeof c.roles === 'string' ? c.roles.split(' ') : [];
  return {
    sub: typeof c.sub === 'string' ? c.sub : '',
    email: typeof c.email === 'string' ? c.email : '',
    name: typeof c.name === 'string' ? c.name : '',
    kind: ['member', 'guest', 'agent'].includes(c.hush_kind) ? c.hush_kind : 'member',
    roles,
    exp: typeof c.exp === 'number' ? c.exp : 0,
  };
}

function read() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    return s && typeof s.token === 'string' ? s : null;
  } catch {
    return null;
  }
}

/**
 * The current session, or null when signed out or expired. A session whose token expired but
 * that holds a refresh token is still current: the next call refreshes it first.
 */
export function current() {
  const s = read();
  if (!s) return null;
  const user = userOf(s.token);
  if (user.exp && user.exp * 1000 < Date.now() + 10_000 && !s.refresh_token) {
    forget();
    sessionStorage.setItem(ENDED_KEY, 'expired');
    return null;
  }
  return { token: s.token, user };
}

/** Keeps a token endpoint's (or the dev issuer's) answer. */
function save(token, body = {}, previous = {}) {
  sessionStorage.setItem(
    SESSION_KEY,
    JSON.stringify({
      token,
      id_token: typeof body.id_token === 'string' ? body.id_token : previous.id_token,
      // Rotating IdPs send a new refresh token each time; others keep the first one valid.
      refresh_token: typeof body.refresh_token === 'string' ? body.refresh_token : previous.refresh_token,
    }),
  );
  scheduleRefresh();
}

let timer = null;

/** Refreshes a minute before the token expires (when there is a refresh token to do it with). */
export function scheduleRefresh() {
  clearTimeout(timer);
  timer = null;
  const s = read();
  if (!s || !s.refresh_token) return;
  const exp = userOf(s.token).exp;
  if (!exp) return;
  const wait = Math.max(0, exp * 1000 - REFRESH_MARGIN_MS - Date.now());
  timer = setTimeout(() => {
    refresh();
  }, wait);
}

let inflight = null;

/**
 * Asks the IdP for a new token with the refresh token. One at a time: callers that come while
 * a refresh is under way share its answer (a rotating IdP would refuse the same refresh token
 * twice). Resolves to true when there is a new token; when the IdP refuses, the session ends.
 */
export function refresh() {
  if (!inflight) {
    inflight = refreshOnce().finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

async function refreshOnce() {
  const s = read();
  if (!s || !s.refresh_token) return false;
  const cfg = (await loadConfig()).auth;
  if (cfg.mode !== 'oidc') return false;
  let res;
  try {
    res = await fetch(cfg.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      credentials: 'omit',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: s.refresh_token, client_id: cfg.client_id }),
    });
  } catch {
    // The IdP is unreachable: keep the session; a later call tries again.
    return false;
  }
  const body = await res.json().catch(() => ({}));
  const token = res.ok ? body[cfg.token || 'access_token'] : null;
  // A new token must be for the same person.
  if (typeof token !== 'string' || userOf(token).sub !== userOf(s.token).sub) {
    forget();
    sessionStorage.setItem(ENDED_KEY, 'expired');
    return false;
  }
  save(token, body, s);
  return true;
}

/** The token to send: refreshed first when it expires within a minute. */
export async function freshToken() {
  const s = read();
  if (!s) return null;
  const exp = userOf(s.token).exp;
  if (s.refresh_token && exp && exp * 1000 < Date.now() + REFRESH_MARGIN_MS) await refresh();
  const now = current();
  return now ? now.token : null;
}

function forget() {
  clearTimeout(timer);
  timer = null;
  sessionStorage.removeItem(SESSION_KEY);
}

/**
 * Signs out: forgets the tokens and, when the IdP has an end-session endpoint, sends the
 * browser there to end the IdP's session too (it comes back to this origin). Returns true
 * when the browser is on its way to the IdP.
 */
export function signOut() {
  const s = read();
  forget();
  const cfg = config && config.auth;
  if (!s || !cfg || cfg.mode !== 'oidc' || !cfg.end_session_endpoint) return false;
  const state = randomString(24);
  sessionStorage.setItem(LOGOUT_KEY, state);
  const url = new URL(cfg.end_session_endpoint);
  if (s.id_token) url.searchParams.set('id_token_hint', s.id_token);
  url.searchParams.set('post_logout_redirect_uri', redirectUri());
  url.searchParams.set('client_id', cfg.client_id);
  url.searchParams.set('state', state);
  location.assign(url.toString());
  return true;
}

/** Forgets the tokens without leaving (a refused token, a new sign-in). */
export function dropSession() {
  forget();
}

/**
 * When the IdP sent the browser back after signing out (our state in the address), clears
 * the address and returns true, once.
 */
export function completeSignOut() {
  const params = new URLSearchParams(location.search);
  const expected = sessionStorage.getItem(LOGOUT_KEY);
  if (!expected || params.has('code') || params.get('state') !== expected) return false;
  sessionStorage.removeItem(LOGOUT_KEY);
  history.replaceState(null, '', '/#/signin');
  return true;
}

/** Dev mode: asks the edge for a token for this dev user. */
export async function devSignIn({ sub, email, kind, roles }) {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    credentials: 'omit',
    body: JSON.stringify({ sub, email: email || null, kind, roles }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    throw new Error(body.detail || body.title || t('auth.dev_refused'));
  }
  save(body.access_token);
}

function redirectUri() {
  return `${location.origin}/`;
}

/** OIDC: sends the browser to the IdP, remembering where to come back to. */
export async function beginOidc(returnTo) {
  const cfg = (await loadConfig()).auth;
  const verifier = randomString(48);
  const state = randomString(24);
  const nonce = randomString(24);
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, nonce, returnTo }));
  const url = new URL(cfg.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: cfg.client_id,
    redirect_uri: redirectUri(),
    scope: cfg.scope || 'openid',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  if (cfg.audience) params.audience = cfg.audience;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.toString());
}

/**
 * OIDC: when the IdP sent the browser back with a code, exchanges it (with the PKCE verifier)
 * for a token. Returns where to go next, or null when this load is not a sign-in return.
 */
export async function completeOidc() {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return null;
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || 'null');
  } catch {
    saved = null;
  }
  sessionStorage.removeItem(PKCE_KEY);
  // Take the code out of the address bar and history at once.
  history.replaceState(null, '', `/${saved?.returnTo || '#/'}`);
  if (params.has('error')) {
    throw new Error(t('auth.idp_said', { detail: params.get('error_description') || params.get('error') }));
  }
  if (!saved || params.get('state') !== saved.state) {
    throw new Error(t('auth.wrong_tab'));
  }
  const cfg = (await loadConfig()).auth;
  const res = await fetch(cfg.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    credentials: 'omit',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: redirectUri(),
      client_id: cfg.client_id,
      code_verifier: saved.verifier,
    }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error_description || t('auth.code_refused'));
  if (body.id_token && claimsOf(body.id_token).nonce !== saved.nonce) {
    throw new Error(t('auth.nonce_mismatch'));
  }
  const token = body[cfg.token || 'access_token'];
  if (typeof token !== 'string') throw new Error(t('auth.no_token', { name: cfg.token }));
  save(token, body);
  return saved.returnTo || '#/';
}
