// A product: images, the variant picker (one select per option; the chosen values
// name one variant), price and stock of that variant, refreshed every 1.5 s, and
// "add to cart" / "buy now". A product without `variants` (an older server) is bought
// as itself.
//
// Sold-out choices are disabled the way shoppers expect from Shopify-like stores: a
// value of the first option is disabled when no variant with it has stock; a value of
// a later option, when no variant with it and the values chosen before it has stock.
// Changing an option moves the later ones to a value in stock, so every variant in
// stock can be reached and the picker never gets stuck.

import { Action } from '../../lib/api.js';
import { field, h, replace, safeUrl } from '../../lib/dom.js';
import { t, won } from '../../lib/i18n.js';
import { poll } from '../../lib/router.js';

const MAX_QUANTITY = 1000;

export async function render(ctx) {
  const id = Number(ctx.match[1]);
  let product = await ctx.client.get(`/api/v1/products/${id}`);
  if (!ctx.live()) return;
  const options = product.options ?? [];
  const selected = initialSelection(product);

  const price = h('p', { class: 'price big', id: 'price' });
  const stock = h('p', { class: 'stock', id: 'stock' });
  const availability = h('p', { class: 'badge', id: 'availability', hidden: true });
  const quantity = h('input', { id: 'quantity', name: 'quantity', type: 'number', min: 1, max: MAX_QUANTITY, value: 1, required: true, inputmode: 'numeric' });
  const message = h('div', { class: 'form-message' });
  const selects = options.map((o, i) => {
    const select = h('select', { name: `option-${o.name}`, data: { option: o.name } },
      o.values.map((v) => h('option', { value: v, selected: selected[o.name] === v }, v)));
    select.addEventListener('change', () => {
      selected[o.name] = select.value;
      settle(i + 1);
      update();
    });
    return field(o.name, select);
  });
  const addToCart = h('button', { type: 'button', id: 'add-to-cart' }, t('product.addToCart'));
  const buyNow = h('button', { type: 'submit', class: 'primary', id: 'buy-now' }, t('product.buyNow'));
  const form = h('form', { class: 'buy', id: 'buy-form', 'aria-label': t('product.buyForm') },
    selects, field(t('product.quantity'), quantity), h('div', { class: 'actions' }, buyNow, addToCart), message);

  replace(ctx.root, h('article', { class: 'product' },
    gallery(product),
    h('div', { class: 'info' },
      h('h1', {}, product.name),
      price, stock, availability,
      product.description ? h('p', { class: 'description' }, product.description) : null,
      form)));

  function variant() {
    const vs = product.variants;
    if (!vs?.length) return null;
    return vs.find((v) => options.every((o) => (v.options ?? {})[o.name] === selected[o.name])) ?? null;
  }

  function update() {
    const v = variant();
    const hasVariants = Boolean(product.variants?.length);
    const inactive = product.status === 'INACTIVE';
    const left = hasVariants ? (v ? v.stock : 0) : product.stock;
    price.textContent = won(v ? v.price : product.price);
    stock.textContent = left > 0 ? t('product.stock', { n: left }) : t('product.soldout');
    stock.classList.toggle('soldout', left <= 0);
    const unavailable = inactive ? t('product.inactive') : hasVariants && !v ? t('product.noVariant') : null;
    availability.hidden = !unavailable;
    availability.textContent = unavailable ?? '';
    buyNow.disabled = Boolean(unavailable) || left <= 0;
    // the cart holds variants: an older server without them has no cart either
    addToCart.disabled = buyNow.disabled || !v;
    quantity.max = String(Math.max(1, Math.min(MAX_QUANTITY, left)));
    options.forEach((o, i) => {
      const s = form.querySelector(`select[data-option="${CSS.escape(o.name)}"]`);
      if (s.value !== selected[o.name]) s.value = selected[o.name];
      for (const opt of s.options) {
        const open = !hasVariants || inStock(i, opt.value);
        const label = open ? opt.value : `${opt.value} (${t('product.soldout')})`;
        if (opt.textContent !== label) opt.textContent = label;
        // the chosen value stays enabled, so the select always shows what is chosen
        opt.disabled = !open && opt.value !== selected[o.name];
      }
    });
  }

  /** Some variant with stock has the values chosen before option `i` and `value` for it. */
  function inStock(i, value) {
    return (product.variants ?? []).some((x) => x.stock > 0 &&
      options.slice(0, i).every((o) => x.options?.[o.name] === selected[o.name]) &&
      x.options?.[options[i].name] === value);
  }

  /** Options from `from` on move to a value in stock when theirs is not. */
  function settle(from) {
    for (let i = from; i < options.length; i++) {
      const o = options[i];
      if (!inStock(i, selected[o.name])) {
        const next = o.values.find((v) => inStock(i, v));
        if (next !== undefined) selected[o.name] = next;
      }
    }
  }
  update();

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!form.reportValidity()) return;
    const v = variant();
    ctx.navigate('/checkout', { product: product.id, variant: v?.id, qty: quantity.value });
  });

  const adding = new Action();
  addToCart.addEventListener('click', async () => {
    const user = ctx.user();
    if (!user) return ctx.navigate('/account', { next: `/product/${id}` });
    if (!form.reportValidity()) return;
    const v = variant();
    addToCart.disabled = true;
    message.replaceChildren();
    try {
      const cart = await ctx.client.get(`/api/v1/users/${user.userId}/cart`);
      const have = cart.items.find((l) => l.variantId === v.id)?.quantity ?? 0;
      const next = Math.min(MAX_QUANTITY, have + Number(quantity.value));
      const after = await ctx.client.put(`/api/v1/users/${user.userId}/cart/items/${v.id}`, { quantity: next }, { action: adding });
      ctx.cartChanged(after);
      message.replaceChildren(h('p', { class: 'ok', role: 'status' }, t('product.added'), ' ', h('a', { href: '#/cart' }, t('product.toCart'))));
    } catch (e) {
      message.replaceChildren(ctx.errorBox(e));
    } finally {
      update();
    }
  });

  poll(ctx, 1500, async () => {
    const fresh = await ctx.client.get(`/api/v1/products/${id}`);
    if (!ctx.live()) return;
    product = fresh;
    update();
  });
}

/** The first in-stock variant's values (else the first variant's, else each option's first). */
function initialSelection(product) {
  const vs = product.variants ?? [];
  const v = vs.find((x) => x.stock > 0) ?? vs[0];
  const out = {};
  for (const o of product.options ?? []) out[o.name] = v?.options?.[o.name] ?? o.values[0];
  return out;
}

function gallery(product) {
  const images = product.images ?? [];
  if (!images.length) return h('div', { class: 'gallery' }, h('div', { class: 'noimage big', 'aria-hidden': 'true' }));
  const main = h('img', { src: images[0].url, alt: images[0].alt || product.name, width: 480, height: 480 });
  const thumbs = images.length > 1
    ? h('ul', { class: 'thumbs' }, images.map((img, i) => h('li', {},
      h('button', {
        type: 'button',
        'aria-label': t('product.image', { n: i + 1 }),
        on: { click: () => { main.src = safeUrl(img.url) ?? ''; main.alt = img.alt || product.name; } },
      }, h('img', { src: img.url, alt: '', width: 64, height: 64 })))))
    : null;
  return h('div', { class: 'gallery' }, main, thumbs);
}
