// Calls to the services, through the edge (same origin), with the session's bearer token.
// Every error the services send is problem+json (RFC 9457); it becomes an ApiError whose
// `message` is a sentence a person can act on.

import { current, signOut } from './auth.js';

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
    return this.status === 405 || (this.status === 404 && this.detail === 'no such resource');
  }
}

function sentence(s) {
  if (!s) return '';
  const t = String(s).trim();
  const cap = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(cap) ? cap : `${cap}.`;
}

function explain(status, problem, retryAfter) {
  const slug = ((problem && problem.type) || '').replace('urn:hush:problem:', '');
  const detail = problem && problem.detail;
  switch (slug) {
    case 'label-refused':
      return `This group's label does not admit your kind of account: ${detail || 'refused'}. Nothing was changed.`;
    case 'rate-limited': {
      const wait = Number(retryAfter);
      return wait > 0 ? `Too many attempts. Try again in ${wait} seconds.` : 'Too many attempts. Try again shortly.';
    }
    case 'unauthorized':
      return 'Your sign-in has expired. Please sign in again.';
    default:
      break;
  }
  if (status === 0) return 'Hush could not be reached. Check your connection and try again.';
  if (status === 502 || status === 503 || status === 504) {
    return `${sentence(detail) || 'A Hush service is not answering.'} Try again in a moment.`;
  }
  if (status >= 500) return 'Something went wrong on our side. Try again; if it keeps happening, tell your IT team.';
  return sentence(detail) || sentence(problem && problem.title) || `The request failed (${status}).`;
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
  const headers = { accept: 'application/json, application/problem+json' };
  const session = current();
  if (session) headers.authorization = `Bearer ${session.token}`;
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
  if (!res.ok) {
    const err = new ApiError(res.status, data, res.headers.get('retry-after'));
    if (res.status === 401) {
      signOut();
      onUnauthorized();
    }
    throw err;
  }
  return { status: res.status, data };
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const patch = (path, body) => api('PATCH', path, body);
export const del = (path) => api('DELETE', path);
export const upload = (path, body, type, headers) => api('POST', path, undefined, { body, type, headers });

/** A path segment, encoded. */
export const seg = (s) => encodeURIComponent(String(s));
