// The web app and the services against a real OIDC provider: `oidc-provider` from npm (pinned in
// package.json), served over HTTPS on loopback with a certificate from a CA this test makes with
// openssl. The Hush services and the edge run as their own processes (`hush serve …`,
// `hush edge`) on SQLite, configured by the issuer alone (discovery) plus the CA file. Then:
//
// - the edge's /config.json holds the discovered endpoints, its CSP lets the app reach the
//   token endpoint's origin and nothing else, and an edge that does not trust the CA says why;
// - the browser signs in through the app, on the provider's own login and consent pages
//   (authorization code + PKCE), and the app calls the APIs: discover groups, create one, and a
//   second person joins it;
// - the provider rotates its signing key (the old one withdrawn): the app's refreshed token,
//   signed with the new key, works, while the token signed with the removed key is refused;
// - a refused token (401) makes the app refresh once and retry; concurrent calls share one
//   refresh; signing out ends the provider's session (end_session_endpoint with
//   id_token_hint and post_logout_redirect_uri), after which the refresh token is refused and
//   signing in asks for the password again.
//
// run.sh runs it after flows.mjs (HUSH_BIN set); alone: `HUSH_BIN=… node web/tests/oidc.mjs`.
// The last line it prints is `N passed, M failed`.

import Provider from 'oidc-provider';
import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HUSH = process.env.HUSH_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.HUSH_SCREENSHOTS || 'screenshots';
const TIMEOUT = 20_000;
const CLIENT_ID = 'hush-web';
const AUDIENCE = 'hush';

if (!HUSH) {
  console.error('HUSH_BIN is not set (run.sh sets it)');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });
const DIR = mkdtempSync(join(tmpdir(), 'hush-oidc-'));

// ------------------------------------------------------------------------------------------
// A test CA and the provider's certificate for 127.0.0.1, made with openssl.

function openssl(...args) {
  execFileSync('openssl', args, { cwd: DIR, stdio: ['ignore', 'ignore', 'pipe'] });
}
openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
  '-subj', '/CN=Hush OIDC test CA', '-keyout', 'ca.key', '-out', 'ca.pem',
  '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1',
  '-keyout', 'idp.key', '-out', 'idp.csr');
writeFileSync(join(DIR, 'idp.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
openssl('x509', '-req', '-in', 'idp.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
  '-extfile', 'idp.ext', '-out', 'idp.pem');
const CA_FILE = join(DIR, 'ca.pem');
// Chromium trusts the provider's certificate by its public key alone (the services check the
// whole chain against CA_FILE, which is what this test is about).
const IDP_SPKI = createHash('sha256')
  .update(new X509Certificate(readFileSync(join(DIR, 'idp.pem'))).publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');

async function freePort() {
  const s = createServer();
  await new Promise((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address();
  await new Promise((ok) => s.close(ok));
  return port;
}

// ------------------------------------------------------------------------------------------
// The provider. Its signing keys are fixed when it is made, so a key rotation makes a new
// Provider with the new key set; sessions, grants and refresh tokens live in one store that
// every instance in this process shares (oidc-provider's own in-memory adapter is per
// instance), so they survive the swap as they would survive a rotation at a real IdP.

const STORE = new Map(); // `${model}:${id}` -> { payload, expiresAt }
class SharedAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    STORE.set(this.key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
  }

  async find(id) {
    const hit = STORE.get(this.key(id));
    if (!hit || hit.expiresAt < Date.now()) return undefined;
    return hit.payload;
  }

  async findByUid(uid) {
    for (const [k, v] of STORE) if (k.startsWith(`${this.model}:`) && v.payload.uid === uid) return v.payload;
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [k, v] of STORE) if (k.startsWith(`${this.model}:`) && v.payload.userCode === userCode) return v.payload;
    return undefined;
  }

  async consume(id) {
    const hit = STORE.get(this.key(id));
    if (hit) hit.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    STORE.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [k, v] of STORE) if (v.payload.grantId === grantId) STORE.delete(k);
  }
}

const PEOPLE = {
  olive: { email: 'olive@corp.example', name: 'Olive Owner', hush_kind: 'member', roles: [] },
  jon: { email: 'jon@corp.example', name: 'Jon Joiner', hush_kind: 'member', roles: [] },
};

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
}

const idpPort = await freePort();
const ISSUER = `https://127.0.0.1:${idpPort}`;
const ports = {
  tenant: await freePort(),
  control: await freePort(),
  membership: await freePort(),
  bulk: await freePort(),
  edge: await freePort(),
};
const WEB = `http://127.0.0.1:${ports.edge}`;
const counts = { refresh: 0 };

function makeProvider(keys) {
  const provider = new Provider(ISSUER, {
    clients: [{
      client_id: CLIENT_ID,
      token_endpoint_auth_method: 'none',
      application_type: 'web',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [`${WEB}/`],
      post_logout_redirect_uris: [`${WEB}/`],
    }],
    jwks: { keys },
    adapter: SharedAdapter,
    cookies: { keys: ['hush-oidc-test-cookie-key'] },
    findAccount: (ctx, id) => (PEOPLE[id] ? {
      accountId: id,
      claims: () => ({ sub: id, email: PEOPLE[id].email, name: PEOPLE[id].name }),
    } : undefined),
    claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
    // Access tokens are JWTs for the API (audience `hush`), carrying the claims Hush maps.
    features: {
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:hush:api',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'openid email profile',
          audience: AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
      rpInitiatedLogout: { enabled: true },
    },
    extraTokenClaims: (ctx, token) => {
      const who = PEOPLE[token.accountId];
      return who ? { email: who.email, name: who.name, hush_kind: who.hush_kind, roles: who.roles } : undefined;
    },
    issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
    ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
    clientBasedCORS: (ctx, origin) => origin === WEB,
    enabledJWA: { idTokenSigningAlgValues: ['ES256'] },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
  });
  // The provider's own reasons, for a failing run (stderr).
  for (const event of ['grant.error', 'server_error', 'end_session.error', 'authorization.error']) {
    provider.on(event, (ctx, err) => console.error(`provider ${event}: ${err && (err.error_description || err.message)} ${err && err.error_detail}`));
  }
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params.grant_type === 'refresh_token') counts.refresh += 1;
  });
  return provider;
}

const keyA = signingKey('key-a');
const keyB = signingKey('key-b');
let handler = makeProvider([keyA]).callback();
const idp = createHttpsServer(
  { key: readFileSync(join(DIR, 'idp.key')), cert: readFileSync(join(DIR, 'idp.pem')) },
  (req, res) => handler(req, res),
);
await new Promise((ok) => idp.listen(idpPort, '127.0.0.1', ok));

// ------------------------------------------------------------------------------------------
// Hush: keys from `hush deploy-init`, one process per service, SQLite.

execFileSync(HUSH, ['deploy-init', '--out', DIR], { stdio: 'ignore' });
const S = join(DIR, 'secrets');
const idpEnv = {
  HUSH_OIDC_ISSUER: ISSUER,
  HUSH_OIDC_CA_FILE: CA_FILE,
  HUSH_JWT_AUDIENCE: AUDIENCE,
  // Fast enough for the test to see a rotation at once; production keeps the default (10 s).
  HUSH_JWKS_MIN_REFETCH_SECS: '1',
};
const url = (name) => `http://127.0.0.1:${ports[name]}`;
const db = (name) => `sqlite://${join(DIR, `${name}.db`)}`;
const trusted = (...names) => names.map((n) => `${n}=${join(S, `${n}.pub.pem`)}`).join(',');
const SERVICES = {
  tenant: ['serve', 'isolated-tenant', {
    HUSH_LISTEN: `127.0.0.1:${ports.tenant}`,
    HUSH_DATABASE_URL: db('tenant'),
    HUSH_TRUSTED_SERVICE_KEYS: trusted('control-api', 'membership-api', 'bulk-api'),
    HUSH_TENANT_SEAL_KEYS_FILE: join(S, 'tenant-seal.keys'),
    HUSH_AUDIT_SIGNING_KEY_FILE: join(S, 'audit-signing.key'),
    HUSH_AUDIT_CHECKPOINTS_FILE: join(DIR, 'audit-checkpoints.jsonl'),
    HUSH_CORPORATE_DOMAINS: 'corp.example',
  }],
  control: ['serve', 'control-api', {
    HUSH_LISTEN: `127.0.0.1:${ports.control}`,
    HUSH_DATABASE_URL: db('control'),
    HUSH_TENANT_URL: url('tenant'),
    HUSH_MAIL_DOMAIN: 'groups.corp.example',
    HUSH_TRUSTED_SERVICE_KEYS: trusted('membership-api', 'bulk-api'),
    HUSH_SERVICE_KEY_FILE: join(S, 'control-api.key.pem'),
    HUSH_CONTROL_SEAL_KEY_FILE: join(S, 'control-seal.key'),
    ...idpEnv,
  }],
  membership: ['serve', 'membership-api', {
    HUSH_LISTEN: `127.0.0.1:${ports.membership}`,
    HUSH_DATABASE_URL: db('membership'),
    HUSH_TENANT_URL: url('tenant'),
    HUSH_CONTROL_URL: url('control'),
    HUSH_SERVICE_KEY_FILE: join(S, 'membership-api.key.pem'),
    HUSH_MEMBERSHIP_SEAL_KEY_FILE: join(S, 'membership-seal.key'),
    HUSH_DECISION_KEY_FILE: join(S, 'decision.key.pem'),
    ...idpEnv,
  }],
  bulk: ['serve', 'bulk-api', {
    HUSH_LISTEN: `127.0.0.1:${ports.bulk}`,
    HUSH_DATABASE_URL: db('bulk'),
    HUSH_TENANT_URL: url('tenant'),
    HUSH_CONTROL_URL: url('control'),
    HUSH_SERVICE_KEY_FILE: join(S, 'bulk-api.key.pem'),
    HUSH_BULK_SEAL_KEY_FILE: join(S, 'bulk-seal.key'),
    ...idpEnv,
  }],
  edge: ['edge', null, {
    HUSH_EDGE_LISTEN: `127.0.0.1:${ports.edge}`,
    HUSH_CONTROL_URL: url('control'),
    HUSH_MEMBERSHIP_URL: url('membership'),
    HUSH_BULK_URL: url('bulk'),
    HUSH_OIDC_ISSUER: ISSUER,
    HUSH_OIDC_CA_FILE: CA_FILE,
    HUSH_OIDC_CLIENT_ID: CLIENT_ID,
  }],
};

const procs = [];
const logs = {};
function start(name, [cmd, service, env]) {
  const args = service ? [cmd, service] : [cmd];
  const child = spawn(HUSH, args, {
    env: { PATH: process.env.PATH, RUST_LOG: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  logs[name] = '';
  child.stdout.on('data', (d) => { logs[name] += d; });
  child.stderr.on('data', (d) => { logs[name] += d; });
  procs.push(child);
  return child;
}
function stopAll() {
  for (const p of procs) if (p.exitCode === null) p.kill();
}
process.on('exit', stopAll);

async function until(what, fn, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await fn().catch(() => false);
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const ready = (base) => fetch(`${base}/readyz`).then((r) => r.ok);

// ------------------------------------------------------------------------------------------
// The runner.

const tests = [];
const test = (name, fn) => tests.push({ name, fn });
function assert(cond, message) {
  if (!cond) throw new Error(message);
}
const state = {};

test('every service and the edge start configured by the issuer alone (discovery over HTTPS on the test CA)', async () => {
  for (const [name, spec] of Object.entries(SERVICES)) start(name, spec);
  for (const name of ['tenant', 'control', 'membership', 'bulk']) await until(`${name} to be ready`, () => ready(url(name)), 120_000);
  await until('the edge to be ready', () => ready(WEB), 60_000);
  for (const name of ['control', 'membership', 'bulk']) {
    await until(`${name} to load the provider's keys`, async () => logs[name].includes("signing keys are loaded"), 30_000);
  }
  const cfg = await (await fetch(`${WEB}/config.json`)).json();
  assert(cfg.auth.mode === 'oidc', 'OIDC mode');
  assert(cfg.auth.issuer === ISSUER, `the issuer: ${cfg.auth.issuer}`);
  assert(cfg.auth.authorization_endpoint === `${ISSUER}/auth`, `discovered authorization endpoint: ${cfg.auth.authorization_endpoint}`);
  assert(cfg.auth.token_endpoint === `${ISSUER}/token`, `discovered token endpoint: ${cfg.auth.token_endpoint}`);
  assert(cfg.auth.end_session_endpoint === `${ISSUER}/session/end`, `discovered end-session endpoint: ${cfg.auth.end_session_endpoint}`);
  const csp = (await fetch(`${WEB}/`)).headers.get('content-security-policy');
  assert(csp.includes(`connect-src 'self' ${ISSUER};`), `connect-src is the edge and the token endpoint's origin, exactly: ${csp}`);
  assert(csp.includes("script-src 'self';") && csp.includes("default-src 'none'"), `the rest of the CSP stays strict: ${csp}`);
});

test('an edge that does not trust the test CA cannot read the discovery document and says why, retrying', async () => {
  const port = await freePort();
  const [, , env] = SERVICES.edge;
  const untrusting = { ...env, HUSH_EDGE_LISTEN: `127.0.0.1:${port}` };
  delete untrusting.HUSH_OIDC_CA_FILE;
  const child = start('untrusting-edge', ['edge', null, untrusting]);
  try {
    await until('the edge to log the failed discovery twice', async () => (logs['untrusting-edge'].match(/cannot read the identity provider's discovery document/g) || []).length >= 2, 15_000);
    assert(/certificate|UnknownIssuer|invalid peer/i.test(logs['untrusting-edge']), `the log names the certificate problem:\n${logs['untrusting-edge']}`);
    assert(child.exitCode === null, 'it keeps retrying rather than exiting');
  } finally {
    child.kill();
  }
});

async function signIn(page, who, { password = true } = {}) {
  await page.goto(`${WEB}/#/discover`);
  await page.getByRole('heading', { level: 1, name: 'Sign in to Hush' }).waitFor();
  await page.getByRole('button', { name: 'Sign in with your company account' }).click();
  if (password) {
    await page.locator('input[name=login]').waitFor();
    assert(page.url().startsWith(ISSUER), `on the provider's login page: ${page.url()}`);
    await page.locator('input[name=login]').fill(who);
    await page.locator('input[name=password]').fill('any password');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    const consent = page.getByRole('button', { name: 'Continue' });
    const discover = page.getByRole('heading', { level: 1, name: 'Discover groups' });
    await consent.or(discover).first().waitFor();
    if (await consent.isVisible()) await consent.click();
  }
  await page.getByRole('heading', { level: 1, name: 'Discover groups' }).waitFor();
  assert((await page.locator('#who').innerText()).includes(PEOPLE[who].name), `signed in as ${who}`);
}

/** Calls an API through the app's own module (its token, its refresh), from the page. */
function call(page, method, path, body) {
  return page.evaluate(async ([m, p, b]) => {
    const api = await import('/js/api.js');
    try {
      const res = await api.api(m, p, b);
      return { status: res.status, data: res.data };
    } catch (e) {
      return { status: e.status, error: e.message, slug: e.slug };
    }
  }, [method, path, body]);
}
const session = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('hush.session') || 'null'));
const kidOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString()).kid;
const withToken = (token, path, init = {}) => fetch(`${WEB}${path}`, { ...init, headers: { ...(init.headers || {}), authorization: `Bearer ${token}` } });

/** A tab of its own browser context (its own cookies at the provider) for one person. */
async function personPage(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (err) => console.log(`page error: ${err.message}`));
  return page;
}

test('a person signs in on the provider\'s own pages and the app calls the APIs: discover, create a group, another person joins', async (browser) => {
  const olive = await personPage(browser);
  state.olive = olive;
  await signIn(olive, 'olive');
  await olive.screenshot({ path: join(SHOTS, 'oidc-01-signed-in.png'), fullPage: true });
  const s = await session(olive);
  assert(s.token && s.id_token && s.refresh_token, 'the app keeps the access, ID and refresh tokens (sessionStorage)');
  assert(kidOf(s.token) === 'key-a', `signed with the first key: ${kidOf(s.token)}`);
  assert(!olive.url().includes('code='), 'the code is gone from the address bar');

  const listed = await call(olive, 'GET', '/control/v1/groups?limit=5');
  assert(listed.status === 200, `discover: ${JSON.stringify(listed)}`);
  const created = await call(olive, 'POST', '/control/v1/groups', {
    name: 'Rotation Readers', description: 'keys come and go', label: 'General', join_policy: 'open',
  });
  assert(created.status === 201 || created.status === 202, `create: ${JSON.stringify(created)}`);
  state.group = created.data.id;
  await until('the group to be active', async () => {
    const g = await call(olive, 'GET', `/control/v1/groups/${state.group}`);
    return g.status === 200 && g.data.state === 'active';
  });

  const jon = await personPage(browser);
  state.jon = jon;
  await signIn(jon, 'jon');
  const joined = await call(jon, 'POST', `/membership/v1/groups/${state.group}/join`, {});
  assert(joined.status === 200, `join: ${JSON.stringify(joined)}`);
  const mine = await call(jon, 'GET', '/membership/v1/me/groups');
  assert(mine.status === 200 && JSON.stringify(mine.data).includes(state.group), `jon's groups: ${JSON.stringify(mine)}`);
  state.oldToken = (await session(olive)).token;
});

test('the provider rotates its key: a new token works, a token signed with the removed key is refused', async () => {
  const before = await withToken(state.oldToken, '/control/v1/groups?limit=1');
  assert(before.status === 200, `the old token works before the rotation (${before.status})`);
  handler = makeProvider([keyB]).callback(); // key-a withdrawn
  const olive = state.olive;
  const refreshes = counts.refresh;
  assert(await olive.evaluate(async () => (await import('/js/auth.js')).refresh()), 'the app refreshes its token');
  assert(counts.refresh === refreshes + 1, 'one refresh at the provider');
  const s = await session(olive);
  assert(kidOf(s.token) === 'key-b', `the new token is signed with the new key: ${kidOf(s.token)}`);
  // The first call with the new key's token makes the services refetch the key set (at most
  // once a second here); it is accepted then, not merely eventually.
  const fresh = await call(olive, 'GET', `/control/v1/groups/${state.group}`);
  assert(fresh.status === 200, `the new token works: ${JSON.stringify(fresh)}`);
  const join = await withToken(s.token, `/membership/v1/groups/${state.group}/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert(join.status === 200, `membership-api takes the new key too (${join.status})`);
  for (const path of ['/control/v1/groups?limit=1', '/membership/v1/me/groups']) {
    const old = await withToken(state.oldToken, path);
    assert(old.status === 401, `${path}: the removed key's token is refused (${old.status})`);
    const problem = await old.json();
    assert(/does not know|signing key/.test(problem.detail), `says why: ${problem.detail}`);
  }
});

test('a refused token makes the app refresh once and retry, and concurrent calls share that one refresh', async () => {
  const olive = state.olive;
  // Put the withdrawn key's token back, as if the tab had slept through the rotation.
  await olive.evaluate((old) => {
    const s = JSON.parse(sessionStorage.getItem('hush.session'));
    sessionStorage.setItem('hush.session', JSON.stringify({ ...s, token: old }));
  }, state.oldToken);
  const refreshes = counts.refresh;
  const results = await olive.evaluate(async (group) => {
    const api = await import('/js/api.js');
    return Promise.all([1, 2, 3].map(() => api.get(`/control/v1/groups/${group}`).then((r) => r.status, (e) => e.status)));
  }, state.group);
  assert(results.every((s) => s === 200), `every call succeeds after the refresh: ${results}`);
  assert(counts.refresh === refreshes + 1, `one refresh for three refused calls (${counts.refresh - refreshes})`);
  assert(kidOf((await session(olive)).token) === 'key-b', 'the app holds a token signed with the current key');
});

test('signing out ends the session at the provider: back on the app, the refresh token is dead and signing in asks for the password', async () => {
  const olive = state.olive;
  const before = await session(olive);
  await olive.getByRole('button', { name: 'Sign out' }).click();
  // The provider's own confirmation page, then back to the app.
  const yes = olive.getByRole('button', { name: 'Yes, sign me out' });
  await yes.waitFor();
  assert(olive.url().startsWith(`${ISSUER}/session/end`), `at the provider's end-session endpoint: ${olive.url()}`);
  await yes.click();
  await olive.getByRole('heading', { level: 1, name: 'Sign in to Hush' }).waitFor();
  await olive.getByText('You are signed out of Hush and of your company account.').waitFor();
  assert(olive.url() === `${WEB}/#/signin`, `back at the app, address cleaned: ${olive.url()}`);
  assert((await session(olive)) === null, 'no tokens left in the tab');
  // From the app's origin, as the app would (the provider allows it CORS).
  const refreshed = await olive.evaluate(async ([endpoint, rt, clientId]) => {
    const res = await fetch(endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt, client_id: clientId }),
    });
    return { status: res.status, body: await res.json().catch(() => ({})) };
  }, [`${ISSUER}/token`, before.refresh_token, CLIENT_ID]);
  assert(refreshed.status === 400 && refreshed.body.error === 'invalid_grant', `the refresh token no longer works at the provider: ${JSON.stringify(refreshed)}`);
  await olive.getByRole('button', { name: 'Sign in with your company account' }).click();
  await olive.locator('input[name=login]').waitFor();
  await olive.screenshot({ path: join(SHOTS, 'oidc-02-signed-out-login-again.png'), fullPage: true });
});

let passed = 0;
let failed = 0;
let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${IDP_SPKI}`],
  });
  for (const t of tests) {
    const started = Date.now();
    try {
      await t.fn(browser);
      passed += 1;
      console.log(`ok - oidc: ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`not ok - oidc: ${t.name}\n  ${String(e && e.stack ? e.stack : e).split('\n').join('\n  ')}`);
      for (const who of ['olive', 'jon']) {
        if (state[who]) await state[who].screenshot({ path: join(SHOTS, `oidc-failed-${passed + failed}-${who}.png`), fullPage: true }).catch(() => {});
      }
      if (failed === 1) {
        for (const [name, log] of Object.entries(logs)) console.log(`--- ${name} (last lines)\n${log.split('\n').slice(-15).join('\n')}`);
      }
    }
  }
} catch (e) {
  failed += 1;
  console.log(`not ok - oidc: the browser could not start: ${e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  stopAll();
  idp.close();
  idp.closeAllConnections?.();
  rmSync(DIR, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
