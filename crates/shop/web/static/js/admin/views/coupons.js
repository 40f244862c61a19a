// Coupons: the list (or, on an older server without it, one coupon by number),
// creating one, editing name, status, quantity and end of issue, and stopping one
// (status INACTIVE).

import { Action, isMissingRoute, withQuery } from '../../lib/api.js';
import { busy, field, formValues, h, replace } from '../../lib/dom.js';
import { dateTime, t, won } from '../../lib/i18n.js';
import { href } from '../../lib/router.js';

const discount = (c) => (c.discountType === 'RATE' ? `${c.discountValue}%` : won(c.discountValue));

/** datetime-local value (local time) → RFC 3339 UTC; empty → undefined. */
function toIso(local) {
  return local ? new Date(local).toISOString() : undefined;
}
function toLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function render(ctx) {
  if (ctx.match[1]) return edit(ctx, Number(ctx.match[1]));
  const body = h('tbody', {});
  const note = h('div', {});
  replace(ctx.root, h('h1', {}, t('coupons.admin')), createForm(ctx), h('h2', {}, t('coupons.list')), note,
    h('table', { class: 'grid', id: 'coupon-table' },
      h('thead', {}, h('tr', {}, ['products.id', 'coupons.name', 'products.status', 'coupons.discount', 'coupons.issuedOf', 'coupons.window', 'admin.actions']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      body));
  let page;
  try {
    page = await ctx.client.get(withQuery('/api/v1/admin/coupons', { limit: 100 }));
  } catch (e) {
    if (!isMissingRoute(e)) throw e;
    const input = h('input', { name: 'id', type: 'number', min: 1, required: true });
    const form = h('form', { class: 'inline-form' }, field(t('coupons.number'), input), h('button', { type: 'submit' }, t('coupons.open')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      ctx.navigate(`/coupons/${Number(input.value)}`);
    });
    replace(note, h('p', { class: 'muted' }, t('coupons.noList')), form);
    return;
  }
  if (!ctx.live()) return;
  body.append(...page.items.map((c) => row(ctx, c)));
}

function row(ctx, c) {
  const stop = h('button', { type: 'button', 'aria-label': t('coupons.stopOf', { name: c.name }) }, t('coupons.stop'));
  const action = new Action();
  stop.addEventListener('click', async () => {
    stop.disabled = true;
    try {
      await ctx.client.patch(`/api/v1/admin/coupons/${c.id}`, { status: 'INACTIVE' }, { action });
      ctx.notify(t('coupons.stopped', { name: c.name }));
      ctx.refresh();
    } catch (e) {
      stop.disabled = false;
      stop.after(ctx.errorBox(e));
    }
  });
  return h('tr', { data: { couponId: c.id } },
    h('td', {}, String(c.id)), h('td', {}, c.name),
    h('td', {}, c.status ? t(`productStatus.${c.status}`) : '—'),
    h('td', {}, discount(c)),
    h('td', { class: 'num' }, `${c.issuedQuantity} / ${c.totalQuantity}`),
    h('td', {}, `${c.issueStartsAt ? dateTime(c.issueStartsAt) : '…'} – ${c.issueEndsAt ? dateTime(c.issueEndsAt) : '…'}`),
    h('td', {}, h('a', { href: href(`/coupons/${c.id}`), 'aria-label': t('admin.editOf', { name: c.name }) }, t('admin.edit')), ' ',
      c.status !== 'INACTIVE' ? stop : null));
}

function createForm(ctx) {
  const message = h('div', { class: 'form-message' });
  const form = h('form', { class: 'panel', id: 'coupon-create', 'aria-labelledby': 'coupon-create-title' },
    h('h2', { id: 'coupon-create-title' }, t('coupons.create')),
    field(t('coupons.name'), h('input', { name: 'name', required: true, maxlength: 200 })),
    field(t('coupons.type'), h('select', { name: 'discountType' },
      h('option', { value: 'FIXED' }, t('coupons.fixed')), h('option', { value: 'RATE' }, t('coupons.rate')))),
    field(t('coupons.value'), h('input', { name: 'discountValue', type: 'number', min: 1, required: true }), t('coupons.valueHint')),
    field(t('coupons.quantity'), h('input', { name: 'totalQuantity', type: 'number', min: 1, required: true })),
    field(t('coupons.minOrder'), h('input', { name: 'minOrderAmount', type: 'number', min: 0 })),
    field(t('coupons.starts'), h('input', { name: 'issueStartsAt', type: 'datetime-local' })),
    field(t('coupons.ends'), h('input', { name: 'issueEndsAt', type: 'datetime-local' })),
    field(t('coupons.validDays'), h('input', { name: 'validDays', type: 'number', min: 1, max: 3650 })),
    field(t('coupons.product'), h('input', { name: 'productId', type: 'number', min: 1 }), t('coupons.productHint')),
    h('button', { type: 'submit', class: 'primary' }, t('coupons.createButton')),
    message);
  const action = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = { name: v.name, discountType: v.discountType, discountValue: Number(v.discountValue), totalQuantity: Number(v.totalQuantity) };
    if (v.minOrderAmount) body.minOrderAmount = Number(v.minOrderAmount);
    if (v.issueStartsAt) body.issueStartsAt = toIso(v.issueStartsAt);
    if (v.issueEndsAt) body.issueEndsAt = toIso(v.issueEndsAt);
    if (v.validDays) body.validDays = Number(v.validDays);
    if (v.productId) body.productId = Number(v.productId);
    busy(form, async () => {
      message.replaceChildren();
      try {
        const c = await ctx.client.post('/api/v1/admin/coupons', body, { action });
        ctx.notify(t('coupons.created', { id: c.id, name: c.name }));
        ctx.navigate(`/coupons/${c.id}`);
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  return h('details', { class: 'create' }, h('summary', {}, t('coupons.create')), form);
}

async function edit(ctx, id) {
  const c = await ctx.client.get(`/api/v1/coupons/${id}`);
  if (!ctx.live()) return;
  const message = h('div', { class: 'form-message' });
  const form = h('form', { class: 'panel', id: 'coupon-edit', 'aria-labelledby': 'coupon-edit-title' },
    h('h2', { id: 'coupon-edit-title' }, t('admin.edit')),
    field(t('coupons.name'), h('input', { name: 'name', required: true, maxlength: 200, value: c.name })),
    field(t('products.status'), h('select', { name: 'status' },
      ['ACTIVE', 'INACTIVE'].map((s) => h('option', { value: s, selected: (c.status ?? 'ACTIVE') === s }, t(`productStatus.${s}`))))),
    field(t('coupons.quantity'), h('input', { name: 'totalQuantity', type: 'number', min: c.issuedQuantity, value: c.totalQuantity }), t('coupons.quantityHint', { n: c.issuedQuantity })),
    field(t('coupons.ends'), h('input', { name: 'issueEndsAt', type: 'datetime-local', value: toLocal(c.issueEndsAt) })),
    h('button', { type: 'submit', class: 'primary' }, t('admin.save')),
    message);
  const action = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = {};
    if (v.name !== c.name) body.name = v.name;
    if (v.status !== (c.status ?? 'ACTIVE')) body.status = v.status;
    if (Number(v.totalQuantity) !== c.totalQuantity) body.totalQuantity = Number(v.totalQuantity);
    if (v.issueEndsAt !== toLocal(c.issueEndsAt)) body.issueEndsAt = toIso(v.issueEndsAt) ?? null;
    if (!Object.keys(body).length) return;
    busy(form, async () => {
      message.replaceChildren();
      try {
        await ctx.client.patch(`/api/v1/admin/coupons/${id}`, body, { action });
        ctx.notify(t('admin.saved'));
        ctx.refresh();
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  replace(ctx.root,
    h('h1', {}, t('coupons.editTitle', { id, name: c.name })),
    h('p', {}, h('a', { href: '#/coupons' }, t('coupons.back')), ' · ', h('a', { href: `/#/coupons/${id}` }, t('products.inStore'))),
    h('dl', { class: 'summary' },
      h('dt', {}, t('coupons.discount')), h('dd', {}, discount(c)),
      h('dt', {}, t('coupons.issuedOf')), h('dd', { id: 'coupon-issued' }, `${c.issuedQuantity} / ${c.totalQuantity}`),
      h('dt', {}, t('coupons.minOrder')), h('dd', {}, won(c.minOrderAmount ?? 0)),
      h('dt', {}, t('coupons.validDays')), h('dd', {}, String(c.validDays))),
    form);
}
