// Coupons: the open ones (`GET /coupons`) or one campaign (`#/coupons/{id}`), each with
// the number left, refreshed every second so a rush is visible, and an "issue" button;
// and the shopper's own coupons (`#/my-coupons`).

import { Action, isMissingRoute, withQuery } from '../../lib/api.js';
import { field, h, replace } from '../../lib/dom.js';
import { dateTime, t, won } from '../../lib/i18n.js';
import { href, poll } from '../../lib/router.js';
import { discountText } from './checkout.js';

export async function render(ctx) {
  if (ctx.path === '/my-coupons') return mine(ctx);
  const single = ctx.match[1] ? Number(ctx.match[1]) : null;
  const list = h('ul', { class: 'coupons', id: 'coupon-list' });
  const message = h('div', { class: 'form-message' });
  const cards = new Map();
  const user = ctx.user();

  const fetchAll = async () => {
    if (single) return [await ctx.client.get(`/api/v1/coupons/${single}`)];
    return (await ctx.client.get('/api/v1/coupons?limit=100')).items;
  };
  let coupons;
  try {
    coupons = await fetchAll();
  } catch (e) {
    if (single || !isMissingRoute(e)) throw e;
    return lookupOnly(ctx);
  }
  if (!ctx.live()) return;
  replace(ctx.root,
    h('h1', {}, single ? t('coupons.one') : t('coupons.title')),
    user ? h('p', {}, h('a', { href: '#/my-coupons' }, t('coupons.mine'))) : h('p', {}, t('coupons.signin'), ' ', h('a', { href: `#/account?next=${encodeURIComponent(ctx.path)}` }, t('nav.signin'))),
    message, list,
    single ? h('p', {}, h('a', { href: '#/coupons' }, t('coupons.all'))) : null);

  function card(c) {
    const left = h('p', { class: 'left', data: { couponId: c.id } });
    const button = h('button', { type: 'button', class: 'primary issue', 'aria-describedby': `coupon-${c.id}-name` }, t('coupons.issue'));
    const action = new Action();
    button.addEventListener('click', async () => {
      if (!ctx.user()) return ctx.navigate('/account', { next: ctx.path });
      message.replaceChildren();
      button.disabled = true;
      try {
        await ctx.client.post(`/api/v1/coupons/${c.id}/issue`, { userId: ctx.user().userId }, { action });
        message.replaceChildren(h('p', { class: 'ok', role: 'status' }, t('coupons.issued', { name: c.name })));
        await refresh();
      } catch (e) {
        message.replaceChildren(ctx.errorBox(e));
      } finally {
        button.disabled = false;
        update(c.id);
      }
    });
    const el = h('li', { class: 'card coupon', data: { couponId: c.id } },
      h('h2', { id: `coupon-${c.id}-name` }, c.name),
      h('p', { class: 'discount' }, discountText(c)),
      c.minOrderAmount ? h('p', { class: 'muted' }, t('coupon.min', { amount: won(c.minOrderAmount) })) : null,
      c.issueEndsAt ? h('p', { class: 'muted' }, t('coupons.until', { at: dateTime(c.issueEndsAt) })) : null,
      left, button);
    cards.set(c.id, { el, left, button, coupon: c });
    return el;
  }

  function update(id) {
    const entry = cards.get(id);
    if (!entry) return;
    const c = entry.coupon;
    const remaining = Math.max(0, c.totalQuantity - c.issuedQuantity);
    entry.left.textContent = remaining > 0 ? t('coupons.left', { n: remaining, total: c.totalQuantity }) : t('coupons.soldout');
    entry.left.classList.toggle('soldout', remaining === 0);
    if (remaining === 0) entry.button.disabled = true;
  }

  async function refresh() {
    const fresh = await fetchAll();
    if (!ctx.live()) return;
    for (const c of fresh) {
      if (!cards.has(c.id)) list.append(card(c));
      cards.get(c.id).coupon = c;
      update(c.id);
    }
  }

  list.append(...coupons.map(card));
  coupons.forEach((c) => update(c.id));
  if (!coupons.length) list.after(h('p', {}, t('coupons.none')));
  poll(ctx, 1000, refresh);
}

/** An older server has no public list: open a coupon by its number instead. */
function lookupOnly(ctx) {
  const input = h('input', { name: 'coupon', type: 'number', min: 1, required: true, inputmode: 'numeric' });
  const form = h('form', { class: 'inline-form' }, field(t('coupons.number'), input), h('button', { type: 'submit' }, t('coupons.open')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/coupons/${Number(input.value)}`);
  });
  replace(ctx.root, h('h1', {}, t('coupons.title')), h('p', {}, t('coupons.unsupported')), form);
}

async function mine(ctx) {
  const user = ctx.requireUser(t('coupons.mine'));
  if (!user) return;
  const page = await ctx.client.get(withQuery(`/api/v1/users/${user.userId}/coupons`, { limit: 100 }));
  if (!ctx.live()) return;
  replace(ctx.root, h('h1', {}, t('coupons.mine')),
    page.items.length
      ? h('ul', { class: 'coupons mine' }, page.items.map((c) => h('li', { class: 'card coupon' },
        h('h2', {}, c.name),
        h('p', { class: 'discount' }, discountText(c)),
        h('p', {}, h('span', { class: `status status-${c.status.toLowerCase()}` }, t(`couponStatus.${c.status}`))),
        c.minOrderAmount ? h('p', { class: 'muted' }, t('coupon.min', { amount: won(c.minOrderAmount) })) : null,
        h('p', { class: 'muted' }, t('coupons.expires', { at: dateTime(c.expiresAt) })),
        c.orderId ? h('p', {}, h('a', { href: href(`/orders/${c.orderId}`) }, t('orders.number', { id: c.orderId }))) : null)))
      : h('p', {}, t('coupons.noneMine')),
    h('p', {}, h('a', { href: '#/coupons' }, t('coupons.all'))));
}
