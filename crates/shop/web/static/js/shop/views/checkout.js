// Checkout: the lines (one product from "buy now", or the cart), an optional coupon of
// the shopper's, the balance, and "pay": an order placed and paid in one step
// (`pay: true`), so either a PAID order exists after it or nothing changed.

import { Action, isMissingRoute } from '../../lib/api.js';
import { field, h, replace } from '../../lib/dom.js';
import { t, won } from '../../lib/i18n.js';
import { optionsText } from './cart.js';

export async function render(ctx) {
  const user = ctx.requireUser(t('checkout.title'));
  if (!user) return;
  const fromCart = ctx.params.has('cart');
  const [lines, coupons, balance] = await Promise.all([
    fromCart ? cartLines(ctx, user) : productLines(ctx),
    ctx.client.get(`/api/v1/users/${user.userId}/coupons?limit=100`).then((p) => p.items).catch(() => []),
    ctx.client.get(`/api/v1/users/${user.userId}/balance`),
  ]);
  if (!ctx.live()) return;
  if (!lines) {
    replace(ctx.root, h('h1', {}, t('checkout.title')), h('p', {}, t('cart.unsupported')));
    return;
  }
  const total = lines.reduce((s, l) => s + l.unitPrice * l.quantity, 0);
  const usable = coupons.filter((c) => c.status === 'AVAILABLE' && Date.parse(c.expiresAt) > Date.now());
  const couponSelect = h('select', { id: 'coupon', name: 'coupon' },
    h('option', { value: '' }, t('checkout.noCoupon')),
    usable.map((c) => h('option', { value: c.id, disabled: total < (c.minOrderAmount ?? 0) },
      `${c.name} · ${discountText(c)}${c.minOrderAmount ? ` · ${t('coupon.min', { amount: won(c.minOrderAmount) })}` : ''}`)));
  const discountEl = h('dd', { id: 'discount' });
  const payEl = h('dd', { id: 'to-pay' });
  const warning = h('p', { class: 'warning', id: 'balance-warning', hidden: true });
  const message = h('div', { class: 'form-message' });
  const payButton = h('button', { type: 'submit', class: 'primary', id: 'pay' }, t('checkout.pay'));
  const form = h('form', { class: 'checkout', id: 'checkout-form' },
    field(t('checkout.coupon'), couponSelect, usable.length ? null : t('checkout.noCoupons')),
    h('dl', { class: 'summary' },
      h('dt', {}, t('checkout.total')), h('dd', { id: 'total' }, won(total)),
      h('dt', {}, t('checkout.discount')), discountEl,
      h('dt', {}, t('checkout.toPay')), payEl,
      h('dt', {}, t('checkout.balance')), h('dd', { id: 'balance' }, won(balance.balance))),
    warning,
    h('div', { class: 'actions' }, payButton),
    message);

  // a cart line that cannot be ordered now would refuse the whole checkout
  const blocked = lines.filter((l) => l.available === false);
  if (blocked.length) {
    payButton.disabled = true;
    message.replaceChildren(h('p', { class: 'error', role: 'alert', id: 'unavailable' },
      t('checkout.unavailable', { names: blocked.map((l) => l.name).join(', ') }), ' ',
      h('a', { href: '#/cart' }, t('checkout.toCart'))));
  }

  function update() {
    const c = usable.find((x) => String(x.id) === couponSelect.value);
    const discount = c ? estimateDiscount(c, lines) : 0;
    discountEl.textContent = discount ? `−${won(discount)}` : won(0);
    payEl.textContent = won(total - discount);
    const short = total - discount > balance.balance;
    warning.hidden = !short;
    replace(warning, short ? [t('checkout.short'), ' ', h('a', { href: '#/account' }, t('checkout.charge'))] : null);
  }
  couponSelect.addEventListener('change', update);
  update();

  replace(ctx.root,
    h('h1', {}, t('checkout.title')),
    h('ul', { class: 'checkout-lines' }, lines.map((l) => h('li', { class: l.available === false ? 'unavailable' : null },
      h('span', {}, l.name, optionsText(l.options) ? ` (${optionsText(l.options)})` : ''),
      h('span', { class: 'muted' }, ` × ${l.quantity}`),
      h('span', { class: 'num' }, won(l.unitPrice * l.quantity))))),
    form);

  const action = new Action();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    message.replaceChildren();
    payButton.disabled = true;
    const userCouponId = couponSelect.value ? Number(couponSelect.value) : undefined;
    try {
      const order = fromCart
        ? await ctx.client.post(`/api/v1/users/${user.userId}/cart/checkout`, { userCouponId, pay: true }, { action })
        : await ctx.client.post('/api/v1/orders', {
          userId: user.userId,
          items: lines.map((l) => ({ productId: l.productId, variantId: l.variantId, quantity: l.quantity })),
          userCouponId,
          pay: true,
        }, { action });
      ctx.notify(t('checkout.paid', { id: order.id }));
      if (fromCart) ctx.cartChanged(null);
      ctx.navigate(`/orders/${order.id}`);
    } catch (err) {
      message.replaceChildren(ctx.errorBox(err));
      payButton.disabled = false;
    }
  });
}

async function productLines(ctx) {
  const id = Number(ctx.params.get('product'));
  const qty = Number(ctx.params.get('qty') || 1);
  const p = await ctx.client.get(`/api/v1/products/${id}`);
  const variantId = ctx.params.get('variant') ? Number(ctx.params.get('variant')) : undefined;
  const v = (p.variants ?? []).find((x) => x.id === variantId);
  return [{ productId: p.id, variantId: v?.id, name: p.name, options: v?.options, unitPrice: v ? v.price : p.price, quantity: qty }];
}

async function cartLines(ctx, user) {
  try {
    const cart = await ctx.client.get(`/api/v1/users/${user.userId}/cart`);
    return cart.items;
  } catch (e) {
    if (isMissingRoute(e)) return null;
    throw e;
  }
}

export function discountText(c) {
  return c.discountType === 'RATE' ? t('coupon.rate', { n: c.discountValue }) : t('coupon.fixed', { amount: won(c.discountValue) });
}

/** What the server will take off (the contract's rule), to show before paying. */
export function estimateDiscount(c, lines) {
  const total = lines.reduce((s, l) => s + l.unitPrice * l.quantity, 0);
  if (total < (c.minOrderAmount ?? 0)) return 0;
  const base = c.productId ? lines.filter((l) => l.productId === c.productId).reduce((s, l) => s + l.unitPrice * l.quantity, 0) : total;
  return c.discountType === 'RATE' ? Math.floor((base * c.discountValue) / 100) : Math.min(c.discountValue, base);
}
