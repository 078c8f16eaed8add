// Who is signed in, and how they sign in.
//
// The token lives in sessionStorage only (never localStorage, never a cookie): it is gone when
// the tab closes, and no other tab or site can read it. In dev mode the edge mints a token
// for a chosen dev user (POST /dev/token); otherwise the app runs the OIDC authorization code
// flow with PKCE against the company IdP, as a public client with no secret.

import { t } from './i18n.js';

const SESSION_KEY = 'hush.session';
const PKCE_KEY = 'hush.pkce';
const ENDED_KEY = 'hush.ended';

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

/** The current session, or null when signed out or expired. */
export function current() {
  let s;
  try {
    s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    s = null;
  }
  if (!s || typeof s.token !== 'string') return null;
  const user = userOf(s.token);
  if (user.exp && user.exp * 1000 < Date.now() + 10_000) {
    signOut();
    sessionStorage.setItem(ENDED_KEY, 'expired');
    return null;
  }
  return { token: s.token, user };
}

function save(token) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token }));
}

/** Forgets the token. */
export function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
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
  save(token);
  return saved.returnTo || '#/';
}
