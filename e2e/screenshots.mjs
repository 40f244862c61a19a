// Screenshots for the docs: the storefront, a product page (the demo T-shirt with its
// variant picker), the cart and the admin dashboard under load, 1280×800 PNGs, from a
// running server with its demo data (a fresh database):
//
//   node e2e/screenshots.mjs http://127.0.0.1:8080 "$(cat shop.db.admin-token)" docs/screenshots ko
//
// Korean text needs a Korean font on the machine (Debian: fonts-nanum or fonts-noto-cjk).

import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [base = 'http://127.0.0.1:8080', adminToken, out = 'docs/screenshots', lang = 'ko'] = process.argv.slice(2);
if (!adminToken) throw new Error('usage: node e2e/screenshots.mjs BASE ADMIN_TOKEN [OUT_DIR] [ko|en]');
mkdirSync(out, { recursive: true });

async function api(method, path, body, token) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json().catch(() => null);
}

const browser = await chromium.launch({ executablePath: process.env.SHOP_TEST_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
const shopper = await api('POST', '/api/v1/users', { name: lang === 'ko' ? '김민지' : 'Minji Kim' });
await api('POST', `/api/v1/users/${shopper.id}/balance/charge`, { amount: 1000000 }, shopper.token);
const products = (await api('GET', '/api/v1/products?limit=5')).items;
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
await context.addInitScript(([l, s]) => {
  localStorage.setItem('shop.lang', l);
  sessionStorage.setItem('shop.session', JSON.stringify(s));
}, [lang, { userId: shopper.id, name: shopper.name, token: shopper.token }]);
const page = await context.newPage();
async function shot(path, file) {
  await page.goto(`${base}${path}`);
  await page.waitForSelector('html[data-ready]');
  await page.waitForSelector('main:not([aria-busy])');
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${out}/${file}` });
  console.log(`${out}/${file}`);
}
// a few paid orders first, so the front page has its top 5
for (const [i, p] of products.entries()) {
  const detail = await api('GET', `/api/v1/products/${p.id}`);
  const variant = detail.variants?.find((v) => v.stock > 0);
  await api('POST', '/api/v1/orders', { userId: shopper.id, items: [{ productId: p.id, variantId: variant?.id, quantity: 5 - i }], pay: true }, shopper.token);
}
await shot('/', 'storefront.png');
// the product with the most options (the demo T-shirt), in the cart with another one
const withOptions = (await Promise.all(products.map((p) => api('GET', `/api/v1/products/${p.id}`))))
  .sort((a, b) => (b.options?.length ?? 0) - (a.options?.length ?? 0))[0];
if (withOptions) {
  await shot(`/#/product/${withOptions.id}`, 'product.png');
  const inStock = withOptions.variants.filter((v) => v.stock > 0);
  await api('PUT', `/api/v1/users/${shopper.id}/cart/items/${inStock[inStock.length - 1].id}`, { quantity: 2 }, shopper.token);
  const other = products.find((p) => p.id !== withOptions.id);
  const otherVariant = other && (await api('GET', `/api/v1/products/${other.id}`)).variants?.[0];
  if (otherVariant) await api('PUT', `/api/v1/users/${shopper.id}/cart/items/${otherVariant.id}`, { quantity: 1 }, shopper.token);
}
await shot('/#/cart', 'cart.png');

// the dashboard while buyers order and pay
await page.goto(`${base}/admin`);
await page.evaluate((t) => sessionStorage.setItem('shop.adminToken', t), adminToken);
await page.goto(`${base}/admin#/dashboard`);
await page.reload();
await page.waitForSelector('#dash-status');
const hot = await api('POST', '/api/v1/admin/products', { name: 'load test', price: 1000, stock: 1000000 }, adminToken);
const buyers = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
  const u = await api('POST', '/api/v1/users', { name: `load ${i}` });
  await api('POST', `/api/v1/users/${u.id}/balance/charge`, { amount: 1000000 }, u.token);
  return u;
}));
// a coupon rush beside the orders: new users each take one
const rush = await api('POST', '/api/v1/admin/coupons', { name: 'rush', discountType: 'FIXED', discountValue: 1000, totalQuantity: 100000 }, adminToken);
const until = Date.now() + 30000;
const load = Promise.all([
  ...buyers.map(async (u) => {
    while (Date.now() < until) {
      await api('POST', '/api/v1/orders', { userId: u.id, items: [{ productId: hot.id, quantity: 1 }], pay: true }, u.token);
    }
  }),
  ...Array.from({ length: 4 }, async () => {
    while (Date.now() < until) {
      const u = await api('POST', '/api/v1/users', { name: 'rusher' });
      await api('POST', `/api/v1/coupons/${rush.id}/issue`, { userId: u.id }, u.token);
    }
  }),
]);
await new Promise((r) => setTimeout(r, 27000));
await page.screenshot({ path: `${out}/dashboard.png` });
console.log(`${out}/dashboard.png`);
await load;
await browser.close();
