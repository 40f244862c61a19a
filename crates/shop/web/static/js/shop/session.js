// The signed-in shopper, kept in sessionStorage (this tab only, gone when it closes;
// a reload keeps them signed in): `{userId, name, token, refreshToken?,
// accessExpiresAt?}`. A session from `POST /sessions` is refreshed shortly before its
// access token expires, and once on a 401 (a refresh token works once: a second use
// ends the session, so refreshes never overlap).

import { createClient } from '../lib/api.js';

const KEY = 'shop.session';
const listeners = new Set();
let timer = null;

function read() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

export const session = {
  user: read,
  onChange(fn) {
    listeners.add(fn);
  },
  set(value) {
    if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
    else sessionStorage.removeItem(KEY);
    schedule();
    listeners.forEach((fn) => fn(value));
  },
};

/** The client of the storefront: the shopper's token, refreshed once on a 401. */
export const client = createClient({
  token: () => read()?.token ?? null,
  refresh: (failed) => refresh(failed),
});

let inflight = null;

/**
 * Trades the refresh token for a new pair; false (and signed out) when it fails.
 * `failed`, the access token a request was refused with: when the stored one is
 * already another, a refresh has happened since and the request just tries again.
 * Concurrent callers share one refresh.
 */
export function refresh(failed) {
  const now = read();
  if (!now?.refreshToken) return Promise.resolve(false);
  if (failed && now.token !== failed) return Promise.resolve(true);
  inflight ??= (async () => {
    try {
      const pair = await client.post('/api/v1/sessions/refresh', { refreshToken: now.refreshToken }, { auth: false });
      session.set({ ...read(), token: pair.accessToken, refreshToken: pair.refreshToken, accessExpiresAt: pair.accessExpiresAt });
      return true;
    } catch (e) {
      if (e.status === 401 || e.status === 403) session.set(null);
      return false;
    }
  })().finally(() => { inflight = null; });
  return inflight;
}

function schedule() {
  clearTimeout(timer);
  const s = read();
  if (!s?.refreshToken || !s.accessExpiresAt) return;
  const left = Date.parse(s.accessExpiresAt) - Date.now();
  // a minute early, or halfway through a short-lived token
  const wait = Math.max(1000, left > 120_000 ? left - 60_000 : left / 2);
  timer = setTimeout(() => refresh(), wait);
}

schedule();
