// Orders: every order newest first, filtered by status and user; ship (with a
// tracking number) and deliver. No cancel: the contract has no admin route for it
// (cancelling is the shopper's own `POST /orders/{id}/cancel`).

import { Action, isMissingRoute, withQuery } from '../../lib/api.js';
import { field, formValues, h, replace } from '../../lib/dom.js';
import { dateTime, t, won } from '../../lib/i18n.js';

const STATUSES = ['', 'PENDING', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'EXPIRED'];

export async function render(ctx) {
  const status = ctx.params.get('status') || '';
  const userId = ctx.params.get('userId') || '';
  const filter = h('form', { class: 'inline-form', id: 'order-filter', 'aria-label': t('admin.filter') },
    field(t('orders.status'), h('select', { name: 'status' },
      STATUSES.map((s) => h('option', { value: s, selected: s === status }, s ? t(`status.${s}`) : t('admin.all'))))),
    field(t('orders.user'), h('input', { name: 'userId', type: 'number', min: 1, value: userId })),
    h('button', { type: 'submit' }, t('admin.apply')));
  filter.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate('/orders', formValues(filter));
  });
  const body = h('tbody', {});
  const message = h('div', { class: 'form-message' });
  const more = h('button', { type: 'button', class: 'more', hidden: true }, t('list.more'));
  replace(ctx.root, h('h1', {}, t('orders.admin')), filter, message,
    h('table', { class: 'grid', id: 'order-table' },
      h('thead', {}, h('tr', {}, ['orders.id', 'orders.user', 'orders.date', 'orders.status', 'orders.amount', 'admin.actions']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      body),
    more);

  let cursor = null;
  async function load() {
    let page;
    try {
      page = await ctx.client.get(withQuery('/api/v1/admin/orders', { status, userId, limit: 50, cursor }));
    } catch (e) {
      if (!isMissingRoute(e)) throw e;
      replace(message, h('p', { class: 'muted' }, t('orders.unsupported')));
      return;
    }
    if (!ctx.live()) return;
    body.append(...page.items.map((o) => row(ctx, o, message)));
    cursor = page.nextCursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => load().catch((e) => message.replaceChildren(ctx.errorBox(e))));
  await load();
}

function row(ctx, o, message) {
  const tracking = h('input', { name: 'tracking', maxlength: 100, 'aria-label': t('orders.trackingOf', { id: o.id }) });
  const ship = h('button', { type: 'button', 'aria-label': t('orders.shipOf', { id: o.id }) }, t('orders.ship'));
  const deliver = h('button', { type: 'button', 'aria-label': t('orders.deliverOf', { id: o.id }) }, t('orders.deliver'));
  const actions = { ship: new Action(), deliver: new Action() };
  const run = async (button, path, body, action, done) => {
    message.replaceChildren();
    button.disabled = true;
    try {
      await ctx.client.post(path, body, { action });
      ctx.notify(done);
      ctx.refresh();
    } catch (e) {
      message.replaceChildren(ctx.errorBox(e));
      button.disabled = false;
    }
  };
  ship.addEventListener('click', () => run(ship, `/api/v1/admin/orders/${o.id}/ship`,
    tracking.value.trim() ? { trackingNumber: tracking.value.trim() } : {}, actions.ship, t('orders.shipped', { id: o.id })));
  deliver.addEventListener('click', () => run(deliver, `/api/v1/admin/orders/${o.id}/deliver`, undefined, actions.deliver, t('orders.delivered', { id: o.id })));
  return h('tr', { data: { orderId: o.id } },
    h('td', {}, String(o.id)), h('td', {}, String(o.userId)), h('td', {}, dateTime(o.createdAt)),
    h('td', { class: 'order-status' }, t(`status.${o.status}`), o.trackingNumber ? h('div', { class: 'muted' }, o.trackingNumber) : null),
    h('td', { class: 'num' }, won(o.finalAmount)),
    h('td', { class: 'row-actions' },
      o.status === 'PAID' ? [tracking, ship] : null,
      o.status === 'SHIPPED' ? deliver : null));
}
