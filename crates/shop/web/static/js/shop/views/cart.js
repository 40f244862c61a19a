// The cart: lines at current prices, quantity changes (PUT), removal (DELETE), and on
// to checkout. Holds no stock; `available` false marks a line that cannot be ordered now.

import { Action, isMissingRoute } from '../../lib/api.js';
import { h, replace } from '../../lib/dom.js';
import { t, won } from '../../lib/i18n.js';
import { href } from '../../lib/router.js';

export async function render(ctx) {
  const user = ctx.requireUser(t('cart.title'));
  if (!user) return;
  const base = `/api/v1/users/${user.userId}/cart`;
  let cart;
  try {
    cart = await ctx.client.get(base);
  } catch (e) {
    if (!isMissingRoute(e)) throw e;
    replace(ctx.root, h('h1', {}, t('cart.title')), h('p', {}, t('cart.unsupported')));
    return;
  }
  if (!ctx.live()) return;
  const message = h('div', { class: 'form-message' });
  const action = new Action();

  async function change(fn) {
    message.replaceChildren();
    try {
      cart = await fn();
      ctx.cartChanged(cart);
      draw();
    } catch (e) {
      message.replaceChildren(ctx.errorBox(e));
    }
  }

  function draw() {
    if (!cart.items.length) {
      replace(ctx.root, h('h1', {}, t('cart.title')), h('p', {}, t('cart.empty')),
        h('p', {}, h('a', { href: '#/' }, t('cart.shop'))), message);
      return;
    }
    const rows = cart.items.map((line) => {
      const qty = h('input', {
        type: 'number', min: 1, max: 1000, value: line.quantity, class: 'qty',
        'aria-label': t('cart.quantityOf', { name: line.name }),
      });
      qty.addEventListener('change', () => {
        const n = Number(qty.value);
        if (Number.isInteger(n) && n >= 1 && n <= 1000) {
          change(() => ctx.client.put(`${base}/items/${line.variantId}`, { quantity: n }, { action }));
        }
      });
      const remove = h('button', { type: 'button', class: 'link', 'aria-label': t('cart.removeOf', { name: line.name }) }, t('cart.remove'));
      remove.addEventListener('click', () => change(() => ctx.client.del(`${base}/items/${line.variantId}`)));
      return h('tr', { class: line.available === false ? 'unavailable' : null },
        h('td', {}, line.image ? h('img', { src: line.image, alt: '', width: 48, height: 48 }) : null),
        h('td', {}, h('a', { href: href(`/product/${line.productId}`) }, line.name),
          optionsText(line.options) ? h('div', { class: 'muted' }, optionsText(line.options)) : null,
          line.available === false ? h('div', { class: 'error' }, t('cart.unavailable')) : null),
        h('td', { class: 'num' }, won(line.unitPrice)),
        h('td', {}, qty),
        h('td', { class: 'num' }, won(line.amount)),
        h('td', {}, remove));
    });
    const clear = h('button', { type: 'button' }, t('cart.clear'));
    clear.addEventListener('click', () => change(() => ctx.client.del(base)));
    replace(ctx.root,
      h('h1', {}, t('cart.title')),
      h('table', { class: 'lines' },
        h('caption', { class: 'sr-only' }, t('cart.title')),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, t('cart.image'))),
          ['cart.product', 'cart.unitPrice', 'cart.quantity', 'cart.amount'].map((k) => h('th', { scope: 'col' }, t(k))),
          h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, t('cart.actions'))))),
        h('tbody', {}, rows)),
      h('p', { class: 'total' }, t('cart.total'), ' ', h('strong', {}, won(cart.totalAmount))),
      h('div', { class: 'actions' },
        h('a', { class: 'button primary', href: href('/checkout', { cart: 1 }) }, t('cart.checkout')), clear),
      message);
  }
  draw();
}

export function optionsText(options) {
  return Object.entries(options ?? {}).map(([k, v]) => `${k}: ${v}`).join(', ');
}
