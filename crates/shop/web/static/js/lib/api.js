// The HTTP client both pages use: JSON in and out, the contract's error shape, bearer
// tokens in the Authorization header only, and an Idempotency-Key on every mutation
// (fresh per user action, reused on that action's retries).

/** An error answer of the API: `{code, message}` with the HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** True when the server has no such route yet (a feature it does not implement). */
export function isMissingRoute(err) {
  return err instanceof ApiError &&
    ((err.status === 404 && err.code === 'NOT_FOUND') || err.status === 405);
}

/** A random UUID; `crypto.randomUUID` exists only in secure contexts. */
export function newKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * One user action (a form, a button): its Idempotency-Key lives until the action gets
 * a definite answer, so pressing the button again after a lost answer repeats the
 * same request instead of doing the work twice. A changed request gets a new key.
 */
export class Action {
  constructor() {
    this.key = null;
    this.fingerprint = null;
  }
  keyFor(fingerprint) {
    if (!this.key || this.fingerprint !== fingerprint) {
      this.key = newKey();
      this.fingerprint = fingerprint;
    }
    return this.key;
  }
  settle() {
    this.key = null;
    this.fingerprint = null;
  }
}

const MUTATION = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Answers after which the outcome is unknown or nothing happened: retried with the same key. */
function retriable(status, code) {
  return status === 503 || status === 504 || status === 429 ||
    (status === 409 && code === 'IDEMPOTENCY_KEY_IN_PROGRESS');
}

/**
 * A client. `token()` gives the bearer token (or null); `refresh(failedToken)`, when
 * given, is tried once on a 401 and answers whether a new token is there.
 */
export function createClient({ token = () => null, refresh = null } = {}) {
  async function request(method, path, { body, action, auth = true, attempts = 4 } = {}) {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const mutation = MUTATION.has(method);
    const key = mutation ? (action ? action.keyFor(`${method} ${path} ${text ?? ''}`) : newKey()) : null;
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      const headers = { accept: 'application/json' };
      if (text !== undefined) headers['content-type'] = 'application/json';
      if (key) headers['idempotency-key'] = key;
      const bearer = auth ? token() : null;
      if (bearer) headers.authorization = `Bearer ${bearer}`;
      let res;
      try {
        res = await fetch(path, { method, headers, body: text, credentials: 'omit', cache: 'no-store' });
      } catch (e) {
        if (attempt < attempts) {
          await sleep(250 * 2 ** attempt);
          continue;
        }
        throw new ApiError(0, 'NETWORK', e.message || 'network error');
      }
      const data = await readBody(res);
      if (res.ok) {
        action?.settle();
        return data;
      }
      const code = (data && data.code) || `HTTP_${res.status}`;
      if (res.status === 401 && bearer && refresh && !refreshed) {
        refreshed = true;
        if (await refresh(bearer)) continue;
      }
      if (retriable(res.status, code) && attempt < attempts) {
        const after = Number(res.headers.get('retry-after'));
        await sleep(after > 0 ? Math.min(after, 5) * 1000 : 250 * 2 ** attempt);
        continue;
      }
      if (!retriable(res.status, code)) action?.settle();
      throw new ApiError(res.status, code, data && data.message, data);
    }
  }
  return {
    request,
    get: (path, opts) => request('GET', path, opts),
    post: (path, body, opts) => request('POST', path, { ...opts, body }),
    put: (path, body, opts) => request('PUT', path, { ...opts, body }),
    patch: (path, body, opts) => request('PATCH', path, { ...opts, body }),
    del: (path, opts) => request('DELETE', path, opts),
  };
}

async function readBody(res) {
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  if (type.includes('json')) {
    try {
      return await res.json();
    } catch {
      return null;
    }
  }
  return res.text();
}

/** `path?k=v&...` without the empty values. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
