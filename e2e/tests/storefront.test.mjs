// The storefront in headless Chromium against a real server: every step checks what
// the page shows and what the API answers afterwards.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ADMIN_TOKEN, BASE, admin, api, axe, eventually, go, launch, ok, open, product, unique, user } from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const session = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('shop.session')));
const text = (page, selector) => page.locator(selector).innerText();

test('sign up, charge, search, open a product, buy it, see it paid, cancel it', async () => {
  const mug = await product(unique('e2e mug'), 12900, 10);
  const page = await open(browser, { lang: 'ko' });

  // sign up
  await go(page, '/#/account');
  const name = unique('kim');
  await page.getByLabel('이름').fill(name);
  await page.getByRole('button', { name: '가입하기' }).click();
  await page.getByRole('heading', { level: 1, name: `${name}님의 계정` }).waitFor();
  const me = await session(page);
  assert.equal(me.name, name);
  assert.equal(await page.locator('#account-link').innerText(), `${name}님`);
  assert.equal((await ok('GET', `/api/v1/users/${me.userId}/balance`, { token: me.token })).balance, 0);

  // charge
  await page.getByLabel('충전 금액 (원)').fill('50000');
  await page.getByRole('button', { name: '충전하기' }).click();
  await page.locator('#balance', { hasText: '50,000원' }).waitFor();
  await page.locator('.ledger tbody tr', { hasText: '충전' }).waitFor();
  assert.equal((await ok('GET', `/api/v1/users/${me.userId}/balance`, { token: me.token })).balance, 50000);

  // search from the header: the list asks the API with q
  const listed = page.waitForRequest((r) => r.url().includes('/api/v1/products?') && new URL(r.url()).searchParams.get('q') === mug.name);
  await page.getByRole('searchbox', { name: '상품 검색' }).fill(mug.name);
  await page.getByRole('button', { name: '검색' }).click();
  await listed;
  await page.getByRole('heading', { level: 1, name: `“${mug.name}” 검색 결과` }).waitFor();
  assert.match(page.url(), /#\/\?q=/);

  // open the product: price and stock
  await page.getByRole('link', { name: mug.name }).click();
  await page.getByRole('heading', { level: 1, name: mug.name }).waitFor();
  assert.equal(await text(page, '#price'), '12,900원');
  assert.equal(await text(page, '#stock'), '재고 10개');

  // live stock: a change made elsewhere shows within the polling interval
  await admin('POST', `/api/v1/admin/products/${mug.id}/stock`, { delta: 5 });
  await page.locator('#stock', { hasText: '재고 15개' }).waitFor({ timeout: 5000 });

  // buy now: checkout, pay
  await page.getByLabel('수량').fill('2');
  await page.getByRole('button', { name: '바로 구매' }).click();
  await page.getByRole('heading', { level: 1, name: '주문/결제' }).waitFor();
  assert.equal(await text(page, '#total'), '25,800원');
  assert.equal(await text(page, '#to-pay'), '25,800원');
  assert.equal(await text(page, '#balance'), '50,000원');
  await page.getByRole('button', { name: '결제하기' }).click();
  await page.locator('#order-status', { hasText: '결제 완료' }).waitFor();
  const orderId = Number(page.url().match(/#\/orders\/(\d+)/)[1]);
  const order = await ok('GET', `/api/v1/orders/${orderId}`, { token: me.token });
  assert.equal(order.status, 'PAID');
  assert.equal(order.finalAmount, 25800);
  assert.deepEqual(order.items.map((i) => [i.productId, i.quantity]), [[mug.id, 2]]);
  assert.equal((await ok('GET', `/api/v1/users/${me.userId}/balance`, { token: me.token })).balance, 24200);
  assert.equal((await ok('GET', `/api/v1/products/${mug.id}`)).stock, 13);

  // my orders lists it as paid; the account shows the lower balance
  await page.getByRole('link', { name: '주문 내역' }).first().click();
  await page.locator(`tr[data-order-id="${orderId}"]`, { hasText: '결제 완료' }).waitFor();
  await page.locator('#account-link').click();
  await page.locator('#balance', { hasText: '24,200원' }).waitFor();
  await page.locator('.ledger tbody tr', { hasText: '결제' }).first().waitFor();

  // cancel: refunded, stock back
  await go(page, `/#/orders/${orderId}`);
  await page.getByRole('button', { name: '주문 취소' }).click();
  await page.locator('#order-status', { hasText: '취소됨' }).waitFor();
  assert.equal((await ok('GET', `/api/v1/orders/${orderId}`, { token: me.token })).status, 'CANCELLED');
  assert.equal((await ok('GET', `/api/v1/users/${me.userId}/balance`, { token: me.token })).balance, 50000);
  assert.equal((await ok('GET', `/api/v1/products/${mug.id}`)).stock, 15);
  await page.done();
});

test('a refused payment changes nothing and says why', async () => {
  const p = await product(unique('pricey'), 90000, 3);
  const buyer = await user(unique('poor'), 1000);
  const page = await open(browser, { lang: 'en', session: buyer.session });
  await go(page, `/#/checkout?product=${p.id}&qty=1`);
  assert.equal(await text(page, '#to-pay'), '₩90,000');
  await page.locator('#balance-warning', { hasText: 'Your balance is too low.' }).waitFor();
  await page.getByRole('button', { name: 'Pay' }).click();
  await page.getByRole('alert').filter({ hasText: 'Your balance is too low. Charge it and try again.' }).waitFor();
  const orders = await ok('GET', `/api/v1/users/${buyer.id}/orders`, { token: buyer.token });
  assert.equal(orders.items.length, 0);
  assert.equal((await ok('GET', `/api/v1/products/${p.id}`)).stock, 3);
  await page.done();
});

test('English: won as ₩12,900, and the choice is remembered', async () => {
  const p = await product(unique('cap'), 12900, 4);
  const page = await open(browser, { lang: 'ko' });
  await go(page, `/#/product/${p.id}`);
  assert.equal(await text(page, '#price'), '12,900원');
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'ko');
  await page.getByRole('button', { name: 'English' }).click();
  await page.locator('#price', { hasText: '₩12,900' }).waitFor();
  assert.equal(await text(page, '#stock'), '4 in stock');
  assert.equal(await page.evaluate(() => localStorage.getItem('shop.lang')), 'en');
  await page.reload();
  await page.locator('#price', { hasText: '₩12,900' }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
  assert.equal(await page.locator('#lang').innerText(), '한국어');
  assert.equal(await page.locator('#lang').getAttribute('lang'), 'ko');
  await page.done();
});

test('a coupon from its page: the count left falls, a rush shows, and checkout applies it', async () => {
  const coupon = await admin('POST', '/api/v1/admin/coupons', { name: unique('10% off'), discountType: 'RATE', discountValue: 10, totalQuantity: 5 });
  const shopper = await user(unique('lee'), 100000);
  const p = await product(unique('hoodie'), 30000, 5);
  const page = await open(browser, { lang: 'ko', session: shopper.session });
  await go(page, `/#/coupons/${coupon.id}`);
  const left = page.locator(`p.left[data-coupon-id="${coupon.id}"]`);
  assert.equal(await left.innerText(), '5장 중 5장 남음');
  await page.getByRole('button', { name: '쿠폰 받기' }).click();
  await page.getByRole('status').filter({ hasText: `“${coupon.name}” 쿠폰을 받았습니다.` }).waitFor();
  await left.filter({ hasText: '5장 중 4장 남음' }).waitFor();
  const mine = await ok('GET', `/api/v1/users/${shopper.id}/coupons`, { token: shopper.token });
  assert.deepEqual(mine.items.map((c) => [c.couponId, c.status]), [[coupon.id, 'AVAILABLE']]);

  // a second request for the same coupon is refused, and the page says so
  await page.getByRole('button', { name: '쿠폰 받기' }).click();
  await page.getByRole('alert').filter({ hasText: '이미 받은 쿠폰입니다.' }).waitFor();

  // others rush: the page follows
  for (let i = 0; i < 4; i++) {
    const other = await user(unique('rush'));
    await ok('POST', `/api/v1/coupons/${coupon.id}/issue`, { body: { userId: other.id }, token: other.token });
  }
  await left.filter({ hasText: '모두 소진되었습니다' }).waitFor({ timeout: 5000 });
  assert.equal(await page.getByRole('button', { name: '쿠폰 받기' }).isDisabled(), true);
  const after = await ok('GET', `/api/v1/coupons/${coupon.id}`);
  assert.equal(after.issuedQuantity, 5);

  // checkout with the coupon: 10% off 30,000 won
  await go(page, `/#/checkout?product=${p.id}&qty=1`);
  await page.getByLabel('쿠폰').selectOption({ label: `${coupon.name} · 10% 할인` });
  assert.equal(await text(page, '#discount'), '−3,000원');
  assert.equal(await text(page, '#to-pay'), '27,000원');
  await page.getByRole('button', { name: '결제하기' }).click();
  await page.locator('#order-status', { hasText: '결제 완료' }).waitFor();
  const orderId = Number(page.url().match(/#\/orders\/(\d+)/)[1]);
  const order = await ok('GET', `/api/v1/orders/${orderId}`, { token: shopper.token });
  assert.equal(order.status, 'PAID');
  assert.equal(order.discountAmount, 3000);
  assert.equal(order.finalAmount, 27000);
  assert.equal(order.userCouponId, mine.items[0].id);
  assert.equal((await ok('GET', `/api/v1/users/${shopper.id}/balance`, { token: shopper.token })).balance, 73000);
  await go(page, '/#/my-coupons');
  await page.locator('.coupon', { hasText: coupon.name }).filter({ hasText: '사용됨' }).waitFor();
  await page.done();
});

test('text from the API is shown as text, never run as HTML', async () => {
  const evil = '<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=2</script>';
  const p = await product(evil, 1000, 2);
  const buyer = await user('<b>bold</b> "quoted" & <i>', 10000);
  const page = await open(browser, { lang: 'en', session: buyer.session });
  await go(page, '/');
  await page.locator(`li[data-product-id="${p.id}"]`).waitFor();
  assert.equal(await page.locator(`li[data-product-id="${p.id}"] .card-name`).innerText(), evil);
  await go(page, `/#/product/${p.id}`);
  assert.equal(await page.locator('main h1').innerText(), evil);
  assert.equal(await page.locator('#account-link').innerText(), '<b>bold</b> "quoted" & <i>');
  await page.getByRole('button', { name: 'Buy now' }).click();
  await page.getByRole('button', { name: 'Pay' }).click();
  await page.locator('#order-status', { hasText: 'Paid' }).waitFor();
  assert.equal(await page.locator('.lines tbody td a').first().innerText(), evil);
  assert.equal(await page.locator('main img[src="x"]').count(), 0);
  assert.equal(await page.locator('main b, main script, main i').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await page.done();
});

test('a purchase with the keyboard only', async () => {
  const p = await product(unique('keyboard buy'), 5000, 3);
  const buyer = await user(unique('tab'), 20000);
  const page = await open(browser, { lang: 'en', session: buyer.session });
  await go(page, `/#/?q=${encodeURIComponent(p.name)}`);
  await page.locator(`li[data-product-id="${p.id}"]`).waitFor();

  /** Presses Tab until the focused element matches, at most `n` times. */
  async function tabTo(describe, match, n = 60) {
    for (let i = 0; i < n; i++) {
      await page.keyboard.press('Tab');
      const here = await page.evaluate(() => {
        const el = document.activeElement;
        return { tag: el.tagName, text: (el.innerText || el.value || '').trim(), label: el.getAttribute('aria-label') };
      });
      if (match(here)) return;
    }
    assert.fail(`Tab never reached ${describe}`);
  }
  // the skip link is the first stop
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
  await tabTo('the product link', (el) => el.tag === 'A' && el.text === p.name);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: p.name }).waitFor();
  // the new view takes the focus, so Tab goes on from its heading
  await page.waitForFunction(() => document.activeElement.tagName === 'H1', null, { timeout: 5000 });
  await tabTo('the quantity', (el) => el.tag === 'INPUT');
  await page.keyboard.press('ArrowUp');
  await tabTo('Buy now', (el) => el.tag === 'BUTTON' && el.text === 'Buy now');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Checkout' }).waitFor();
  await page.waitForFunction(() => document.activeElement.tagName === 'H1', null, { timeout: 5000 });
  assert.equal(await text(page, '#to-pay'), '₩10,000');
  await tabTo('Pay', (el) => el.tag === 'BUTTON' && el.text === 'Pay');
  await page.keyboard.press('Enter');
  await page.locator('#order-status', { hasText: 'Paid' }).waitFor();
  const orders = await ok('GET', `/api/v1/users/${buyer.id}/orders`, { token: buyer.token });
  assert.deepEqual(orders.items.map((o) => [o.status, o.finalAmount, o.items[0].quantity]), [['PAID', 10000, 2]]);
  await page.done();
});

test('the first page weighs under 150 KB, and how soon it is interactive', async () => {
  const page = await open(browser, { lang: 'ko' });
  const sizes = [];
  page.on('requestfinished', async (r) => {
    const s = await r.sizes();
    sizes.push({ url: r.url(), bytes: s.responseBodySize + s.responseHeadersSize, type: r.resourceType() });
  });
  const started = Date.now();
  await page.goto(`${BASE}/`, { waitUntil: 'networkidle' });
  await page.waitForSelector('html[data-ready]');
  const wall = Date.now() - started;
  const interactive = await page.evaluate(() => performance.getEntriesByName('shop-interactive')[0]?.startTime);
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd };
  });
  await eventually(() => sizes.length >= 3);
  const total = sizes.reduce((s, r) => s + r.bytes, 0);
  const documents = sizes.filter((r) => !r.url.includes('/api/'));
  console.log(`first page: ${total} bytes in ${sizes.length} responses (${documents.length} files, ${sizes.length - documents.length} API answers); ` +
    `interactive at ${Math.round(interactive)} ms after navigation start (DOMContentLoaded ${Math.round(nav.domContentLoaded)} ms, load ${Math.round(nav.load)} ms; ${wall} ms wall clock to idle)`);
  for (const r of sizes) console.log(`  ${String(r.bytes).padStart(6)}  ${r.type.padEnd(10)} ${r.url.replace(BASE, '')}`);
  assert.ok(total < 150 * 1024, `first page is ${total} bytes`);
  assert.ok(Number.isFinite(interactive), 'the page marks when it is interactive');
  // the search box works at that point
  await page.getByRole('searchbox').fill('x');
  await page.done();
});

test('every storefront page passes axe (no serious or critical violations)', async () => {
  const p = await product(unique('axe'), 3000, 5);
  const buyer = await user(unique('axe'), 10000);
  const coupon = await admin('POST', '/api/v1/admin/coupons', { name: unique('axe coupon'), discountType: 'FIXED', discountValue: 500, totalQuantity: 10 });
  const placed = await ok('POST', '/api/v1/orders', { body: { userId: buyer.id, items: [{ productId: p.id, quantity: 1 }], pay: true }, token: buyer.token });
  await ok('POST', `/api/v1/coupons/${coupon.id}/issue`, { body: { userId: buyer.id }, token: buyer.token });
  await ok('POST', '/api/v1/orders', { body: { userId: buyer.id, items: [{ productId: p.id, quantity: 1 }], pay: true }, token: buyer.token });

  const anonymous = await open(browser, { lang: 'ko' });
  for (const path of ['/', `/#/?q=${encodeURIComponent(p.name)}&sort=price_asc`, `/#/product/${p.id}`, '/#/account', '/#/coupons', `/#/coupons/${coupon.id}`, '/#/cart', '/#/nowhere']) {
    await go(anonymous, path);
    await axe(anonymous, path);
  }
  await anonymous.done();
  const signedIn = ['/', `/#/product/${p.id}`, '/#/account', '/#/cart', `/#/checkout?product=${p.id}&qty=1`, '/#/orders',
    `/#/orders/${placed.id}`, '/#/coupons', `/#/coupons/${coupon.id}`, '/#/my-coupons'];
  // every page in Korean; in English the pages with the most text
  for (const [lang, paths] of [['ko', signedIn], ['en', signedIn.slice(0, 5)]]) {
    const page = await open(browser, { lang, session: buyer.session });
    for (const path of paths) {
      await go(page, path);
      await axe(page, `${path} (${lang})`);
    }
    await page.done();
  }
});

test('a lost answer is retried with the same Idempotency-Key, so the work happens once', async () => {
  const buyer = await user(unique('retry'), 0);
  const page = await open(browser, { lang: 'en', session: buyer.session });
  const seen = [];
  let first = true;
  await page.route('**/api/v1/users/*/balance/charge', async (route) => {
    const headers = route.request().headers();
    seen.push({ key: headers['idempotency-key'], auth: headers.authorization });
    if (first) {
      // the server does the work, but its answer never arrives
      first = false;
      await route.fetch();
      return route.abort('connectionreset');
    }
    return route.continue();
  });
  await go(page, '/#/account');
  await page.getByLabel('Amount (won)').fill('7000');
  await page.getByRole('button', { name: 'Charge', exact: true }).click();
  await page.locator('#balance', { hasText: '₩7,000' }).waitFor();
  assert.equal(seen.length, 2);
  assert.match(seen[0].key, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(seen[1].key, seen[0].key);
  assert.equal(seen[0].auth, `Bearer ${buyer.token}`);
  assert.equal((await ok('GET', `/api/v1/users/${buyer.id}/balance`, { token: buyer.token })).balance, 7000);
  const history = await ok('GET', `/api/v1/users/${buyer.id}/balance/history`, { token: buyer.token });
  assert.equal(history.items.length, 1);
  // the next charge is another action: another key
  await page.getByLabel('Amount (won)').fill('1000');
  await page.getByRole('button', { name: 'Charge', exact: true }).click();
  await page.locator('#balance', { hasText: '₩8,000' }).waitFor();
  assert.equal(seen.length, 3);
  assert.notEqual(seen[2].key, seen[0].key);
  await page.done();
});

test('the pages carry their security headers', async () => {
  for (const path of ['/', '/admin']) {
    const res = await fetch(`${BASE}${path}`);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
    assert.doesNotMatch(res.headers.get('content-security-policy'), /unsafe/);
  }
  // nothing on the page reaches another origin or carries a token in a URL
  const buyer = await user(unique('urls'), 0);
  const page = await open(browser, { lang: 'en', session: buyer.session });
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));
  await go(page, '/#/account');
  await go(page, '/#/orders');
  assert.ok(urls.length > 5);
  for (const u of urls) {
    assert.ok(u.startsWith(BASE), `request to another origin: ${u}`);
    assert.ok(!u.includes(buyer.token) && !u.includes(ADMIN_TOKEN), `a token in a URL: ${u}`);
  }
  await page.done();
  assert.equal((await api('GET', '/static/js/nope.js')).status, 404);
});
