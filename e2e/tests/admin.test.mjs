// The admin console in headless Chromium against a real server whose data platform is
// a closed port (SHOP_E2E_WEBHOOK_PORT) and whose events park after one failed
// attempt: every step checks what the page shows and what the API answers afterwards.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { ADMIN_TOKEN, BASE, admin, api, axe, eventually, go, launch, ok, open, product, unique, user } from '../lib/harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A page signed in to the console. */
async function console_(lang = 'en') {
  const page = await open(browser, { lang });
  await go(page, '/admin');
  await page.getByLabel(lang === 'en' ? 'Admin token' : '관리자 토큰').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: lang === 'en' ? 'Sign in' : '로그인', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: lang === 'en' ? 'Dashboard' : '대시보드' }).waitFor();
  return page;
}

test('signing in: a wrong token is refused; the right one is kept for this tab only', async () => {
  const page = await open(browser, { lang: 'en' });
  await go(page, '/admin');
  await page.getByLabel('Admin token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('alert').filter({ hasText: 'That token is not right.' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('shop.adminToken')), null);
  await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('shop.adminToken')), ADMIN_TOKEN);
  assert.equal(await page.evaluate((t) => Object.values(localStorage).some((v) => v.includes(t)), ADMIN_TOKEN), false);
  assert.ok(!page.url().includes(ADMIN_TOKEN));
  // a new tab must sign in again
  const other = await page.context().newPage();
  await other.goto(`${BASE}/admin`);
  await other.getByLabel('Admin token').waitFor();
  await other.close();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Admin token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('shop.adminToken')), null);
  await page.done();
});

test('the admin creates a product, edits it and its stock, and shoppers see it', async () => {
  const page = await console_('en');
  await page.getByRole('link', { name: 'Products' }).click();
  await page.getByRole('heading', { level: 1, name: 'Products' }).waitFor();
  const name = unique('admin lamp');
  await page.getByText('New product').first().click();
  const form = page.locator('#product-create');
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Price (won)').fill('15900');
  await form.getByLabel('Stock').fill('7');
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { level: 1, name: new RegExp(`Product #\\d+ ${name}`) }).waitFor();
  const id = Number(page.url().match(/#\/products\/(\d+)/)[1]);
  let p = await ok('GET', `/api/v1/products/${id}`);
  assert.deepEqual([p.name, p.price, p.stock], [name, 15900, 7]);

  // rename and reprice: only the changed fields are sent
  const patch = page.waitForRequest((r) => r.method() === 'PATCH');
  await page.locator('#product-edit').getByLabel('Name').fill(`${name} v2`);
  await page.locator('#product-edit').getByLabel('Price (won)').fill('14900');
  await page.locator('#product-edit').getByRole('button', { name: 'Save' }).click();
  assert.deepEqual(JSON.parse((await patch).postData()), { name: `${name} v2`, price: 14900 });
  await page.getByRole('heading', { level: 1, name: `Product #${id} ${name} v2` }).waitFor();
  // stock: +5
  await page.getByLabel('Stock change', { exact: true }).fill('5');
  await page.getByRole('form', { name: 'Stock:' }).getByRole('button', { name: 'Apply stock' }).click();
  await page.getByRole('heading', { level: 2, name: 'Stock: 12' }).waitFor();
  p = await ok('GET', `/api/v1/products/${id}`);
  assert.deepEqual([p.name, p.price, p.stock], [`${name} v2`, 14900, 12]);
  // a delta below zero is refused with the contract's code, in words
  await page.getByLabel('Stock change', { exact: true }).fill('-100');
  await page.getByRole('form', { name: 'Stock:' }).getByRole('button', { name: 'Apply stock' }).click();
  await page.getByRole('alert').filter({ hasText: 'Stock would go below zero.' }).waitFor();
  assert.equal((await ok('GET', `/api/v1/products/${id}`)).stock, 12);

  // the list shows it
  await page.getByRole('link', { name: 'Back to products' }).click();
  await page.locator(`#product-table tr[data-product-id="${id}"]`, { hasText: `${name} v2` }).waitFor();

  // the storefront shows it
  const shop = await open(browser, { lang: 'en' });
  await go(shop, '/');
  await shop.getByRole('link', { name: `${name} v2` }).click();
  await shop.locator('#price', { hasText: '₩14,900' }).waitFor();
  assert.equal(await shop.locator('#stock').innerText(), '12 in stock');
  await shop.done();
  await page.done();
});

test('the admin creates a product with options and variants; the storefront picks among them', async () => {
  const page = await console_('en');
  await page.getByRole('link', { name: 'Products' }).click();
  await page.getByRole('heading', { level: 1, name: 'Products' }).waitFor();
  const name = unique('admin tee');
  await page.getByText('New product').first().click();
  const form = page.locator('#product-create');
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Description').fill('Organic cotton');
  await form.getByLabel('Price (won)').fill('20000');
  await form.getByLabel('Images').fill('/static/img/tshirt.svg front view');
  await form.getByRole('button', { name: 'Add option' }).click();
  await form.getByLabel('Option name').fill('size');
  await form.getByLabel('Values').fill('M, L');
  await form.getByRole('button', { name: 'Make variants' }).click();
  await form.getByLabel('Price of size: M').fill('20000');
  await form.getByLabel('Stock of size: M').fill('4');
  const sku = `AT-${name.split(' ').pop()}-M`;
  await form.getByLabel('SKU of size: M').fill(sku);
  await form.getByLabel('Price of size: L').fill('22000');
  await form.getByLabel('Stock of size: L').fill('0');
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { level: 1, name: new RegExp(`Product #\\d+ ${name}`) }).waitFor();
  const id = Number(page.url().match(/#\/products\/(\d+)/)[1]);
  let p = await ok('GET', `/api/v1/products/${id}`);
  assert.deepEqual(p.options, [{ name: 'size', values: ['M', 'L'] }]);
  assert.deepEqual(p.variants.map((v) => [v.options.size, v.price, v.stock, v.sku ?? null]).sort(),
    [['L', 22000, 0, null], ['M', 20000, 4, sku]].sort());
  assert.deepEqual(p.images, [{ url: '/static/img/tshirt.svg', alt: 'front view' }]);
  assert.equal(p.description, 'Organic cotton');

  // variant price and stock from the console
  const large = p.variants.find((v) => v.options.size === 'L');
  const row = page.locator(`tr[data-variant-id="${large.id}"]`);
  await row.getByLabel('Stock change of size: L').fill('3');
  await row.getByRole('button', { name: 'Apply stock' }).click();
  await page.locator(`tr[data-variant-id="${large.id}"] td.num`, { hasText: '3' }).waitFor();
  await page.locator(`tr[data-variant-id="${large.id}"]`).getByLabel('Price of size: L').fill('23000');
  await page.locator(`tr[data-variant-id="${large.id}"]`).getByRole('button', { name: 'Save' }).click();
  await eventually(async () => (await ok('GET', `/api/v1/products/${id}`)).variants.find((v) => v.id === large.id).price === 23000, 5000, 'the new price');
  await page.locator(`tr[data-variant-id="${large.id}"] td.num`, { hasText: '3' }).waitFor();
  p = await ok('GET', `/api/v1/products/${id}`);
  assert.deepEqual([p.variants.find((v) => v.id === large.id).stock, p.variants.find((v) => v.id === large.id).price], [3, 23000]);

  // the storefront lists it and offers both sizes with their own price and stock
  const shop = await open(browser, { lang: 'en' });
  await go(shop, `/#/?q=${encodeURIComponent(name)}`);
  await shop.getByRole('link', { name }).click();
  await shop.locator('#price', { hasText: '₩20,000' }).waitFor();
  assert.equal(await shop.locator('#stock').innerText(), '4 in stock');
  assert.equal(await shop.locator('.description').innerText(), 'Organic cotton');
  await shop.getByLabel('size', { exact: true }).selectOption('L');
  await shop.locator('#price', { hasText: '₩23,000' }).waitFor();
  assert.equal(await shop.locator('#stock').innerText(), '3 in stock');

  // made INACTIVE, it leaves the list but its page says it is not on sale
  await page.locator('#product-edit').getByLabel('Status').selectOption('INACTIVE');
  await page.locator('#product-edit').getByRole('button', { name: 'Save' }).click();
  await eventually(async () => (await ok('GET', `/api/v1/products/${id}`)).status === 'INACTIVE');
  assert.equal((await ok('GET', `/api/v1/products?q=${encodeURIComponent(name)}`)).items.length, 0);
  await shop.locator('#availability', { hasText: 'This product is not on sale' }).waitFor({ timeout: 5000 });
  assert.equal(await shop.getByRole('button', { name: 'Buy now' }).isDisabled(), true);
  await shop.done();
  await page.done();
});

test('the admin ships and delivers an order; the shopper sees it shipped, then delivered', async () => {
  const p = await product(unique('parcel'), 8000, 5);
  const buyer = await user(unique('parcel fan'), 20000);
  const order = await ok('POST', '/api/v1/orders', { body: { userId: buyer.id, items: [{ productId: p.id, quantity: 1 }], pay: true }, token: buyer.token });
  const shop = await open(browser, { lang: 'ko', session: buyer.session });
  await go(shop, `/#/orders/${order.id}`);
  await shop.locator('#order-status', { hasText: '결제 완료' }).waitFor();

  const page = await console_('en');
  await page.getByRole('link', { name: 'Orders' }).click();
  await page.getByLabel('Status').selectOption('PAID');
  await page.getByLabel('User').fill(String(buyer.id));
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/status=PAID/);
  await page.waitForSelector('main:not([aria-busy]) #order-table');
  const row = page.locator(`#order-table tr[data-order-id="${order.id}"]`);
  await row.waitFor();
  assert.equal(await page.locator('#order-table tbody tr').count(), 1);
  // no cancel button: the contract has no admin cancel route
  assert.equal(await row.getByRole('button', { name: /cancel/i }).count(), 0);
  await row.getByLabel(`Tracking number of order #${order.id}`).fill('CJ-1234-5678');
  await row.getByRole('button', { name: `Ship: order #${order.id}` }).click();
  await page.getByText(`Order #${order.id} is shipped.`).waitFor();
  let now = await ok('GET', `/api/v1/orders/${order.id}`, { token: buyer.token });
  assert.equal(now.status, 'SHIPPED');
  assert.equal(now.trackingNumber, 'CJ-1234-5678');
  // the filter still says PAID: the shipped order has left the list
  await page.locator('#order-table tbody tr').first().waitFor({ state: 'detached' });
  await shop.locator('#order-status', { hasText: '발송됨' }).waitFor({ timeout: 8000 });
  assert.equal(await shop.locator('#tracking').innerText(), 'CJ-1234-5678');
  assert.equal(await shop.getByRole('button', { name: '주문 취소' }).count(), 0);

  await page.getByLabel('Status').selectOption('SHIPPED');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.waitForURL(/status=SHIPPED/);
  await page.locator(`#order-table tr[data-order-id="${order.id}"]`).getByRole('button', { name: `Mark delivered: order #${order.id}` }).click();
  await page.getByText(`Order #${order.id} is delivered.`).waitFor();
  now = await ok('GET', `/api/v1/orders/${order.id}`, { token: buyer.token });
  assert.equal(now.status, 'DELIVERED');
  await shop.locator('#order-status', { hasText: '배송 완료' }).waitFor({ timeout: 8000 });
  await go(shop, '/#/orders');
  await shop.locator(`tr[data-order-id="${order.id}"]`, { hasText: '배송 완료' }).waitFor();
  // a second delivery is refused with the contract's code, in words
  assert.equal((await api('POST', `/api/v1/admin/orders/${order.id}/deliver`, { token: ADMIN_TOKEN })).status, 409);
  await shop.done();
  await page.done();
});

test('the admin suspends a user (whose token then opens nothing) and reactivates them', async () => {
  const victim = await user(unique('suspect'), 1000);
  const page = await console_('en');
  await page.getByRole('link', { name: 'Users' }).click();
  await page.getByLabel('User').fill(String(victim.id));
  await page.getByRole('button', { name: 'Suspend' }).click();
  await page.locator('#user-result', { hasText: 'Suspended' }).waitFor();
  const refused = await api('GET', `/api/v1/users/${victim.id}/balance`, { token: victim.token });
  assert.deepEqual([refused.status, refused.body.code], [403, 'USER_SUSPENDED']);
  await page.getByRole('button', { name: 'Reactivate' }).click();
  await page.locator('#user-result', { hasText: 'Active' }).waitFor();
  assert.equal((await ok('GET', `/api/v1/users/${victim.id}/balance`, { token: victim.token })).balance, 1000);
  await page.done();
});

test('the admin creates a coupon and shoppers can get it', async () => {
  const page = await console_('ko');
  await page.getByRole('link', { name: '쿠폰' }).click();
  await page.getByRole('heading', { level: 1, name: '쿠폰' }).waitFor();
  await page.getByText('쿠폰 만들기').first().click();
  const form = page.locator('#coupon-create');
  const name = unique('welcome');
  await form.getByLabel('이름').fill(name);
  await form.getByLabel('할인 방식').selectOption('FIXED');
  await form.getByLabel('할인 값').fill('2000');
  await form.getByLabel('총 수량').fill('3');
  await form.getByLabel('최소 주문 금액').fill('10000');
  await form.getByRole('button', { name: '만들기' }).click();
  await page.getByRole('heading', { level: 1, name: new RegExp(`쿠폰 #\\d+ ${name}`) }).waitFor();
  const id = Number(page.url().match(/#\/coupons\/(\d+)/)[1]);
  const c = await ok('GET', `/api/v1/coupons/${id}`);
  assert.deepEqual([c.name, c.discountType, c.discountValue, c.totalQuantity, c.minOrderAmount, c.issuedQuantity], [name, 'FIXED', 2000, 3, 10000, 0]);
  assert.equal(await page.locator('#coupon-issued').innerText(), '0 / 3');
  const buyer = await user(unique('coupon fan'));
  await ok('POST', `/api/v1/coupons/${id}/issue`, { body: { userId: buyer.id }, token: buyer.token });
  await page.reload();
  await page.locator('#coupon-issued', { hasText: '1 / 3' }).waitFor();

  // more of them: the total quantity, never below what is issued
  const edit = page.locator('#coupon-edit');
  await edit.getByLabel('총 수량').fill('10');
  await edit.getByRole('button', { name: '저장' }).click();
  await page.locator('#coupon-issued', { hasText: '1 / 10' }).waitFor();
  assert.equal((await ok('GET', `/api/v1/coupons/${id}`)).totalQuantity, 10);
  assert.equal(await edit.getByLabel('총 수량').getAttribute('min'), '1', 'never below the 1 issued');

  // stopped from the list: shoppers can no longer get it
  await page.getByRole('link', { name: '쿠폰 목록으로' }).click();
  const row = page.locator(`#coupon-table tr[data-coupon-id="${id}"]`);
  await row.getByRole('button', { name: `${name} 발급 중지` }).click();
  await page.getByText(`“${name}” 발급을 중지했습니다.`).waitFor();
  assert.equal((await ok('GET', `/api/v1/coupons/${id}`)).status, 'INACTIVE');
  assert.ok(!(await ok('GET', '/api/v1/coupons?limit=100')).items.some((x) => x.id === id));
  const late = await user(unique('late'));
  const refused = await api('POST', `/api/v1/coupons/${id}/issue`, { body: { userId: late.id }, token: late.token });
  assert.deepEqual([refused.status, refused.body.code], [409, 'COUPON_INACTIVE']);
  await row.getByRole('button', { name: `${name} 발급 중지` }).waitFor({ state: 'detached' });
  await page.done();
});

test('a parked event shows its last error, and a retry delivers it', async () => {
  const port = Number(process.env.SHOP_E2E_WEBHOOK_PORT);
  assert.ok(port > 0, 'SHOP_E2E_WEBHOOK_PORT is set');
  const p = await product(unique('event'), 1000, 5);
  const buyer = await user(unique('events'), 10000);
  const order = await ok('POST', '/api/v1/orders', { body: { userId: buyer.id, items: [{ productId: p.id, quantity: 1 }], pay: true }, token: buyer.token });
  const parked = await eventually(async () => {
    const page = await admin('GET', '/api/v1/admin/events?status=failed');
    return page.items.find((e) => e.orderId === order.id);
  }, 10000, 'the event parks');

  const page = await console_('en');
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByLabel('Show').selectOption('failed');
  const row = page.locator(`#event-table tr[data-event-id="${parked.id}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /order\.paid/);
  assert.match(await row.innerText(), /Parked/);
  assert.equal(await row.locator('.error-text').innerText(), parked.lastError);
  assert.ok(parked.lastError.length > 0);

  // the data platform comes back; the retry delivers the event to it
  const received = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      received.push({ id: req.headers['shop-event-id'], body: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  try {
    await row.getByRole('button', { name: `Retry order.paid of order ${order.id}` }).click();
    await eventually(() => received.some((e) => e.id === parked.id), 10000, 'the webhook receives the event');
    const delivered = received.find((e) => e.id === parked.id).body;
    assert.equal(delivered.type, 'order.paid');
    assert.equal(delivered.data.id, order.id);
    await eventually(async () => !(await admin('GET', '/api/v1/admin/events')).items.some((e) => e.id === parked.id), 10000, 'the event leaves the backlog');
    await page.getByRole('button', { name: 'Refresh' }).click();
    // other tests' events may still be parked: this one has left the list
    await row.waitFor({ state: 'detached' });
  } finally {
    await new Promise((r) => server.close(r));
  }
  await page.done();
});

test('the dashboard charts /metrics as orders are paid and coupons issued', async () => {
  const page = await console_('en');
  await page.locator('#dash-status', { hasText: 'Updated' }).waitFor();
  const p = await product(unique('dash'), 100, 100);
  const buyer = await user(unique('dash'), 100000);
  const coupon = await admin('POST', '/api/v1/admin/coupons', { name: unique('dash'), discountType: 'FIXED', discountValue: 10, totalQuantity: 10 });
  await ok('POST', `/api/v1/coupons/${coupon.id}/issue`, { body: { userId: buyer.id }, token: buyer.token });
  for (let i = 0; i < 5; i++) {
    await ok('POST', '/api/v1/orders', { body: { userId: buyer.id, items: [{ productId: p.id, quantity: 1 }], pay: true }, token: buyer.token });
  }
  // a reading after the orders shows a positive rate; p99 and batch size have values
  await eventually(async () => Number((await page.locator('#dash-ordersPerSec').innerText()).replace(/[^0-9.]/g, '')) > 0, 6000, 'orders per second above 0');
  await eventually(async () => Number((await page.locator('#dash-couponsPerSec').innerText()).replace(/[^0-9.]/g, '')) > 0, 6000, 'coupons per second above 0');
  assert.match(await page.locator('#dash-p99Ms').innerText(), /\d ms$/);
  assert.match(await page.locator('#dash-backlog').innerText(), /^\d+$/);
  assert.match(await page.locator('#dash-extra').innerText(), /paid in total/);
  assert.equal(await page.locator('.dashboard canvas').count(), 6);
  // the chart is drawn: some pixels are not blank
  const drawn = await page.locator('figure[data-metric="ordersPerSec"] canvas').evaluate((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;
  });
  assert.ok(drawn > 100, `chart pixels: ${drawn}`);
  await page.done();
});

test('every admin page passes axe (no serious or critical violations)', async () => {
  const p = await product(unique('axe admin'), 2000, 3);
  const c = await admin('POST', '/api/v1/admin/coupons', { name: unique('axe'), discountType: 'RATE', discountValue: 5, totalQuantity: 9 });
  const signin = await open(browser, { lang: 'ko' });
  await go(signin, '/admin');
  await axe(signin, '/admin sign-in');
  await signin.done();
  for (const lang of ['ko', 'en']) {
    const page = await console_(lang);
    for (const path of ['#/dashboard', '#/products', `#/products/${p.id}`, '#/coupons', `#/coupons/${c.id}`, '#/orders', '#/users', '#/events', '#/events?status=failed']) {
      await page.goto(`${BASE}/admin${path}`);
      await page.waitForSelector('main:not([aria-busy]) h1');
      await axe(page, `/admin${path} (${lang})`);
    }
    await page.done();
  }
});
