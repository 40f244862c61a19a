// The signed-in shopper, kept in localStorage so a reload keeps them signed in:
// `{userId, name, token, refreshToken?, accessExpiresAt?}`. A session from
// `POST /sessions` is refreshed shortly before its access token expires (one tab at a
// time: a refresh token works once, and a second use ends the session).

import { createClient } from '../lib/api.js';

const KEY = 'shop.session';
const listeners = new Set();
let timer = null;

function read() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || null;
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
    if (value) localStorage.setItem(KEY, JSON.stringify(value));
    else localStorage.removeItem(KEY);
    schedule();
    listeners.forEach((fn) => fn(value));
  },
};

/** The client of the storefront: the shopper's token, refreshed on a 401. */
export const client = createClient({
  token: () => read()?.token ?? null,
  refresh: () => refresh(),
});

/** Trades the refresh token for a new pair; false (and signed out) when it fails. */
export async function refresh() {
  const run = async () => {
    const before = read();
    if (!before?.refreshToken) return false;
    // Another tab may have refreshed while this one waited for the lock.
    if (before.token !== stale) return true;
    try {
      const pair = await client.post('/api/v1/sessions/refresh', { refreshToken: before.refreshToken }, { auth: false });
      session.set({ ...before, token: pair.accessToken, refreshToken: pair.refreshToken, accessExpiresAt: pair.accessExpiresAt });
      return true;
    } catch (e) {
      if (e.status === 401 || e.status === 403) session.set(null);
      return false;
    }
  };
  const stale = read()?.token;
  return navigator.locks ? navigator.locks.request('shop.session.refresh', run) : run();
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

window.addEventListener('storage', (e) => {
  if (e.key === KEY) {
    schedule();
    listeners.forEach((fn) => fn(read()));
  }
});
schedule();
