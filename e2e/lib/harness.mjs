// What every browser test shares: the server under test (SHOP_E2E_BASE, started by
// crates/shop/tests/api/web.rs), headless Chromium (Debian's, through playwright-core),
// an API client to check what the pages did, and an axe-core scan.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const BASE = process.env.SHOP_E2E_BASE ?? assert.fail('SHOP_E2E_BASE is not set (run through cargo nextest)');
export const ADMIN_TOKEN = process.env.SHOP_E2E_ADMIN_TOKEN ?? assert.fail('SHOP_E2E_ADMIN_TOKEN is not set');
const CHROMIUM = process.env.SHOP_TEST_CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
}

/**
 * A page in a fresh context (its own storage) in `lang`. Console errors, page errors
 * and CSP violations are collected: `done()` asserts there were none. Failed
 * resource loads (a 404 from a feature probe) are not errors of the page.
 */
export async function open(browser, { lang = 'ko', session = null, viewport = { width: 1200, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport, locale: lang === 'ko' ? 'ko-KR' : 'en-US' });
  await context.addInitScript(([l, s]) => {
    if (!sessionStorage.getItem('e2e.init')) {
      sessionStorage.setItem('e2e.init', '1');
      localStorage.setItem('shop.lang', l);
      if (s) sessionStorage.setItem('shop.session', JSON.stringify(s));
    }
  }, [lang, session]);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if ((m.type() === 'error' || m.type() === 'warning') && !/Failed to load resource/.test(m.text())) {
      problems.push(`${m.type()}: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    d.dismiss();
  });
  page.done = async () => {
    await context.close();
    assert.deepEqual(problems, [], 'the page logged errors');
  };
  page.problems = problems;
  return page;
}

/** Goes to `path` and waits until the view has rendered. */
export async function go(page, path) {
  await page.goto(`${BASE}${path}`);
  await page.waitForSelector('html[data-ready]');
  await page.waitForSelector('main:not([aria-busy])');
}

/** The API, for setting up and for checking what the pages did. */
export async function api(method, path, { body, token, key } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  if (key) headers['idempotency-key'] = key;
  const res = await fetch(`${BASE}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: res.status, body: json ?? text };
}

/** As `api`, asserting the status. */
export async function ok(method, path, opts = {}, status = [200, 201, 204]) {
  const r = await api(method, path, opts);
  assert.ok([].concat(status).includes(r.status), `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export const admin = (method, path, body) => ok(method, path, { body, token: ADMIN_TOKEN });

export const unique = (prefix) => `${prefix} ${randomUUID().slice(0, 8)}`;

/** A user made through the API, with `balance` won, as the storefront keeps a session. */
export async function user(name = unique('buyer'), balance = 0, extra = {}) {
  const u = await ok('POST', '/api/v1/users', { body: { name, ...extra } });
  if (balance) await ok('POST', `/api/v1/users/${u.id}/balance/charge`, { body: { amount: balance }, token: u.token });
  return { id: u.id, name: u.name, token: u.token, session: { userId: u.id, name: u.name, token: u.token } };
}

export async function product(name = unique('product'), price = 12900, stock = 10) {
  return admin('POST', '/api/v1/admin/products', { name, price, stock });
}

/** Polls `fn` until it returns a truthy value (or fails after `ms`). */
export async function eventually(fn, ms = 8000, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) assert.fail(`${what} never held (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on the page (evaluated through the DevTools protocol, which the page's
 * CSP does not govern) and asserts no serious or critical violation.
 */
export async function axe(page, label) {
  await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe on ${label}: ${JSON.stringify(bad, null, 1)}`);
  return violations;
}
