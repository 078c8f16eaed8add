// Calls to the services, through the edge (same origin), with the session's bearer token.
// Every error the services send is problem+json (RFC 9457); it becomes an ApiError whose
// `message` is a sentence a person can act on.

import { freshToken, refresh, dropSession } from './auth.js';
import { t } from './i18n.js';

/** An answer that is not 2xx. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(explain(status, problem, retryAfter));
    this.status = status;
    this.type = (problem && problem.type) || '';
    this.slug = this.type.replace('urn:hush:problem:', '');
    this.detail = (problem && problem.detail) || '';
    this.problem = problem || {};
  }

  /** The route does not exist on this server (a feature it does not offer yet). */
  get unsupported() {
    return this.status === 405 || (this.status === 404 && this.detail === 'no such resource'); // i18n-ok: the server's words
  }
}

function sentence(s) {
  if (!s) return '';
  const text = String(s).trim();
  const cap = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(cap) ? cap : `${cap}.`;
}

/**
 * Problem details are the services' English. The app says the problems it knows in its own
 * words, in the language shown; any other one shows the server's detail, introduced in
 * languages other than English as what the service said (in English), so nothing is lost.
 */
function explain(status, problem, retryAfter) {
  const slug = ((problem && problem.type) || '').replace('urn:hush:problem:', '');
  const detail = problem && problem.detail;
  switch (slug) {
    case 'label-refused':
      return detail ? t('problem.label_refused', { detail }) : t('problem.label_refused_bare');
    case 'rate-limited': {
      const wait = Number(retryAfter);
      return wait > 0 ? t('problem.rate_limited_wait', { count: wait }) : t('problem.rate_limited');
    }
    case 'unauthorized':
      return t('app.expired');
    // Refusals whose kind the app can name; the service's detail says what exactly.
    case 'not-owner':
      if (detail) return t('problem.not_owner', { detail: sentence(detail) });
      break;
    case 'forbidden':
      if (detail) return t('problem.forbidden', { detail: sentence(detail) });
      break;
    case 'payload-too-large':
      if (detail) return t('problem.too_large', { detail: sentence(detail) });
      break;
    default:
      break;
  }
  if (status === 0) return t('problem.unreachable');
  if (status === 502 || status === 503 || status === 504) {
    return detail ? t('problem.unavailable_detail', { detail: sentence(detail) }) : t('problem.unavailable');
  }
  if (status >= 500) return t('problem.internal');
  const said = sentence(detail) || sentence(problem && problem.title);
  return said ? t('problem.server_said', { detail: said }) : t('problem.failed', { status: String(status) });
}

let onUnauthorized = () => {};

/** What to do when a token is refused (the app sends the person to sign in). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * Sends one request; resolves with `{ status, data }` or rejects with an ApiError. `body` is
 * sent as JSON, unless `raw` gives a body (a File, streamed by the browser) and its type.
 */
export async function api(method, path, body, raw) {
  const token = await freshToken();
  const first = await send(method, path, body, raw, token);
  // A refused token may have been revoked or signed with a key the IdP has since retired:
  // refresh once (shared with any other request doing the same) and try again once.
  if (first.status === 401 && token && (await refresh())) {
    return settle(await send(method, path, body, raw, await freshToken()));
  }
  return settle(first);
}

async function send(method, path, body, raw, token) {
  const headers = { accept: 'application/json, application/problem+json' };
  if (token) headers.authorization = `Bearer ${token}`; // i18n-ok: a header
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (raw) {
    headers['content-type'] = raw.type;
    Object.assign(headers, raw.headers || {});
    init.body = raw.body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, null, null);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  return { status: res.status, ok: res.ok, data, retryAfter: res.headers.get('retry-after') };
}

function settle({ status, ok, data, retryAfter }) {
  if (!ok) {
    const err = new ApiError(status, data, retryAfter);
    if (status === 401) {
      dropSession();
      onUnauthorized();
    }
    throw err;
  }
  return { status, data };
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);
export const upload = (path, body, type, headers) => api('POST', path, undefined, { body, type, headers });

/** A path segment, encoded. */
export const seg = (s) => encodeURIComponent(String(s));
