// My orders (newest first, "more" paging) and one order: items, amounts, status, pay
// (PENDING), cancel (PENDING or PAID), and its payment attempts.

import { Action, isMissingRoute, withQuery } from '../../lib/api.js';
import { h, replace } from '../../lib/dom.js';
import { dateTime, t, won } from '../../lib/i18n.js';
import { href, poll } from '../../lib/router.js';
import { optionsText } from './cart.js';

export async function render(ctx) {
  const user = ctx.requireUser(t('orders.title'));
  if (!user) return;
  if (ctx.match[1]) return detail(ctx, Number(ctx.match[1]));
  const body = h('tbody', {});
  const more = h('button', { type: 'button', class: 'more', hidden: true }, t('list.more'));
  const empty = h('p', { hidden: true }, t('orders.empty'));
  replace(ctx.root, h('h1', {}, t('orders.title')),
    h('table', { class: 'orders' },
      h('caption', { class: 'sr-only' }, t('orders.title')),
      h('thead', {}, h('tr', {}, ['orders.id', 'orders.date', 'orders.items', 'orders.status', 'orders.amount']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      body),
    empty, more);
  let cursor = null;
  async function load() {
    const page = await ctx.client.get(withQuery(`/api/v1/users/${user.userId}/orders`, { limit: 20, cursor }));
    if (!ctx.live()) return;
    body.append(...page.items.map((o) => h('tr', { data: { orderId: o.id } },
      h('td', {}, h('a', { href: href(`/orders/${o.id}`) }, t('orders.number', { id: o.id }))),
      h('td', {}, dateTime(o.createdAt)),
      h('td', {}, itemsSummary(o)),
      h('td', {}, statusBadge(o.status)),
      h('td', { class: 'num' }, won(o.finalAmount)))));
    cursor = page.nextCursor;
    more.hidden = !cursor;
    empty.hidden = body.children.length > 0;
  }
  more.addEventListener('click', () => load().catch((e) => more.after(ctx.errorBox(e))));
  await load();
}

function itemsSummary(o) {
  const [first, ...rest] = o.items;
  if (!first) return '';
  return rest.length ? t('orders.andMore', { name: first.name, n: rest.length }) : first.name;
}

export function statusBadge(status) {
  return h('span', { class: `status status-${String(status).toLowerCase()}` }, t(`status.${status}`));
}

async function detail(ctx, id) {
  let order = await ctx.client.get(`/api/v1/orders/${id}`);
  if (!ctx.live()) return;
  const section = h('div', {});
  const payments = h('section', { 'aria-labelledby': 'payments-title' });
  const message = h('div', { class: 'form-message' });
  replace(ctx.root, h('h1', {}, t('orders.number', { id })), section, message, payments,
    h('p', {}, h('a', { href: '#/orders' }, t('orders.back'))));
  const paying = new Action();
  const cancelling = new Action();

  async function act(button, fn, done) {
    message.replaceChildren();
    button.disabled = true;
    try {
      order = await fn();
      ctx.notify(done);
      draw();
      loadPayments();
      section.querySelector('.status')?.focus();
    } catch (e) {
      message.replaceChildren(ctx.errorBox(e));
      button.disabled = false;
      loadPayments();
    }
  }

  function draw() {
    const pay = h('button', { type: 'button', class: 'primary', id: 'pay-order' }, t('orders.pay'));
    pay.addEventListener('click', () => act(pay, () => ctx.client.post(`/api/v1/orders/${id}/payment`, undefined, { action: paying }), t('orders.paidNotice')));
    const cancel = h('button', { type: 'button', id: 'cancel-order' }, t('orders.cancel'));
    cancel.addEventListener('click', () => act(cancel, () => ctx.client.post(`/api/v1/orders/${id}/cancel`, undefined, { action: cancelling }), t('orders.cancelledNotice')));
    const status = statusBadge(order.status);
    status.id = 'order-status';
    status.tabIndex = -1;
    replace(section,
      h('p', {}, t('orders.status'), ' ', status),
      h('table', { class: 'lines' },
        h('caption', { class: 'sr-only' }, t('orders.items')),
        h('thead', {}, h('tr', {}, ['cart.product', 'cart.unitPrice', 'cart.quantity', 'cart.amount'].map((k) => h('th', { scope: 'col' }, t(k))))),
        h('tbody', {}, order.items.map((i) => h('tr', {},
          h('td', {}, h('a', { href: href(`/product/${i.productId}`) }, i.name),
            optionsText(i.options) ? h('div', { class: 'muted' }, optionsText(i.options)) : null),
          h('td', { class: 'num' }, won(i.unitPrice)),
          h('td', { class: 'num' }, String(i.quantity)),
          h('td', { class: 'num' }, won(i.amount)))))),
      h('dl', { class: 'summary' },
        h('dt', {}, t('checkout.total')), h('dd', {}, won(order.totalAmount)),
        h('dt', {}, t('checkout.discount')), h('dd', {}, order.discountAmount ? `−${won(order.discountAmount)}` : won(0)),
        h('dt', {}, t('orders.final')), h('dd', { id: 'final-amount' }, won(order.finalAmount)),
        h('dt', {}, t('orders.date')), h('dd', {}, dateTime(order.createdAt)),
        order.paidAt ? [h('dt', {}, t('orders.paidAt')), h('dd', {}, dateTime(order.paidAt))] : null,
        order.status === 'PENDING' ? [h('dt', {}, t('orders.expiresAt')), h('dd', {}, dateTime(order.expiresAt))] : null,
        order.shippedAt ? [h('dt', {}, t('orders.shippedAt')), h('dd', {}, dateTime(order.shippedAt))] : null,
        order.trackingNumber ? [h('dt', {}, t('orders.tracking')), h('dd', { id: 'tracking' }, order.trackingNumber)] : null,
        order.deliveredAt ? [h('dt', {}, t('orders.deliveredAt')), h('dd', {}, dateTime(order.deliveredAt))] : null),
      h('div', { class: 'actions' },
        order.status === 'PENDING' ? pay : null,
        order.status === 'PENDING' || order.status === 'PAID' ? cancel : null));
  }

  async function loadPayments() {
    let list;
    try {
      list = await ctx.client.get(`/api/v1/orders/${id}/payments`);
    } catch (e) {
      replace(payments, h('h2', { id: 'payments-title' }, t('payments.title')),
        h('p', { class: 'muted' }, isMissingRoute(e) ? t('payments.unsupported') : e.message));
      return;
    }
    const items = Array.isArray(list) ? list : list.items ?? [];
    replace(payments, h('h2', { id: 'payments-title' }, t('payments.title')),
      items.length ? h('ul', { class: 'payments' }, items.map((p) => h('li', {},
        h('span', { class: `status status-${p.status.toLowerCase()}` }, t(`payment.${p.status}`)), ' ',
        won(p.amount), ' · ', dateTime(p.at),
        p.failureCode ? [' · ', t(`err.${p.failureCode}`, {}, p.failureCode)] : null)))
        : h('p', { class: 'muted' }, t('payments.none')));
  }

  draw();
  await loadPayments();
  // a PENDING order may expire, a PAID one be shipped: keep the status current
  poll(ctx, 3000, async () => {
    const fresh = await ctx.client.get(`/api/v1/orders/${id}`);
    if (ctx.live() && fresh.status !== order.status) {
      order = fresh;
      draw();
    }
  });
}
