// Products: the list (status and name filters), creating one (with options and
// variants, images, description), and editing one: content, status, price, variants'
// prices, SKUs and stock. Every body carries only the fields the admin filled in, so
// an older server that knows only name, price and stock still takes a simple product.

import { Action, isMissingRoute, withQuery } from '../../lib/api.js';
import { busy, field, formValues, h, replace } from '../../lib/dom.js';
import { t, won } from '../../lib/i18n.js';
import { href } from '../../lib/router.js';

export async function render(ctx) {
  if (ctx.match[1]) return edit(ctx, Number(ctx.match[1]));
  const status = ctx.params.get('status') || '';
  const q = ctx.params.get('q') || '';
  const filter = h('form', { class: 'inline-form', id: 'product-filter', 'aria-label': t('admin.filter') },
    field(t('products.status'), h('select', { name: 'status' },
      ['', 'ACTIVE', 'INACTIVE'].map((s) => h('option', { value: s, selected: s === status }, s ? t(`productStatus.${s}`) : t('admin.all'))))),
    field(t('products.search'), h('input', { name: 'q', type: 'search', value: q })),
    h('button', { type: 'submit' }, t('admin.apply')));
  filter.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate('/products', formValues(filter));
  });
  const body = h('tbody', {});
  const note = h('p', { class: 'muted', hidden: true });
  const more = h('button', { type: 'button', class: 'more', hidden: true }, t('list.more'));
  replace(ctx.root,
    h('h1', {}, t('products.title')),
    createForm(ctx),
    h('h2', {}, t('products.list')),
    filter, note,
    h('table', { class: 'grid', id: 'product-table' },
      h('thead', {}, h('tr', {}, ['products.id', 'products.name', 'products.status', 'products.price', 'products.stock', 'admin.actions']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      body),
    more);

  let cursor = null;
  let fallback = false;
  async function load() {
    let page;
    const params = { status, q, limit: 50, cursor };
    if (!fallback) {
      try {
        page = await ctx.client.get(withQuery('/api/v1/admin/products', params));
      } catch (e) {
        if (!isMissingRoute(e)) throw e;
        fallback = true;
        note.hidden = false;
        note.textContent = t('products.publicList');
      }
    }
    if (fallback) page = await ctx.client.get(withQuery('/api/v1/products', { q, limit: 50, cursor }));
    if (!ctx.live()) return;
    body.append(...page.items.map((p) => h('tr', { data: { productId: p.id } },
      h('td', {}, String(p.id)),
      h('td', {}, p.name),
      h('td', {}, p.status ? t(`productStatus.${p.status}`) : '—'),
      h('td', { class: 'num' }, won(p.price)),
      h('td', { class: 'num' }, String(p.stock)),
      h('td', {}, h('a', { href: href(`/products/${p.id}`), 'aria-label': t('admin.editOf', { name: p.name }) }, t('admin.edit'))))));
    cursor = page.nextCursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => load().catch((e) => more.after(ctx.errorBox(e))));
  await load();
}

/** Lines `url alt text` → [{url, alt}]. */
function parseImages(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const [url, ...alt] = l.split(/\s+/);
    return { url, alt: alt.join(' ') };
  });
}
const imagesText = (images) => (images ?? []).map((i) => `${i.url} ${i.alt ?? ''}`.trim()).join('\n');

/** Every combination of the options' values. */
function combinations(options) {
  return options.reduce((acc, o) => acc.flatMap((c) => o.values.map((v) => ({ ...c, [o.name]: v }))), [{}]);
}

function createForm(ctx) {
  const message = h('div', { class: 'form-message' });
  const optionRows = h('div', { class: 'option-rows' });
  const variantRows = h('tbody', {});
  const variantTable = h('table', { class: 'grid', hidden: true },
    h('caption', {}, t('products.variants')),
    h('thead', {}, h('tr', {}, ['products.options', 'products.price', 'products.stock', 'products.sku'].map((k) => h('th', { scope: 'col' }, t(k))))),
    variantRows);
  function addOption() {
    const n = optionRows.children.length + 1;
    const row = h('fieldset', { class: 'option-row' },
      h('legend', {}, t('products.optionN', { n })),
      field(t('products.optionName'), h('input', { name: 'optionName', placeholder: 'size' })),
      field(t('products.optionValues'), h('input', { name: 'optionValues', placeholder: 'S, M, L' }), t('products.valuesHint')));
    optionRows.append(row);
    // with options, price and stock are the variants'
    for (const f of productOnly) f.hidden = true;
    row.querySelector('input').focus();
  }
  function readOptions() {
    return [...optionRows.children].map((row) => ({
      name: row.querySelector('[name=optionName]').value.trim(),
      values: row.querySelector('[name=optionValues]').value.split(',').map((v) => v.trim()).filter(Boolean),
    })).filter((o) => o.name && o.values.length);
  }
  function makeVariants() {
    const options = readOptions();
    variantRows.replaceChildren(...combinations(options).map((combo) => {
      const label = Object.entries(combo).map(([k, v]) => `${k}: ${v}`).join(', ');
      return h('tr', { data: { options: JSON.stringify(combo) } },
        h('th', { scope: 'row' }, label),
        h('td', {}, h('input', { name: 'vprice', type: 'number', min: 1, required: true, 'aria-label': t('products.priceOf', { name: label }) })),
        h('td', {}, h('input', { name: 'vstock', type: 'number', min: 0, value: 0, required: true, 'aria-label': t('products.stockOf', { name: label }) })),
        h('td', {}, h('input', { name: 'vsku', 'aria-label': t('products.skuOf', { name: label }) })));
    }));
    variantTable.hidden = options.length === 0;
  }
  const priceInput = h('input', { name: 'price', type: 'number', min: 1 });
  const productOnly = [
    field(t('products.price'), priceInput, t('products.priceHint')),
    field(t('products.stock'), h('input', { name: 'stock', type: 'number', min: 0, value: 0 })),
  ];
  const form = h('form', { class: 'panel', id: 'product-create', 'aria-labelledby': 'create-title' },
    h('h2', { id: 'create-title' }, t('products.create')),
    field(t('products.name'), h('input', { name: 'name', required: true, maxlength: 200 })),
    field(t('products.description'), h('textarea', { name: 'description', rows: 2 })),
    productOnly,
    field(t('products.images'), h('textarea', { name: 'images', rows: 2, placeholder: '/static/img/mug.svg Mug' }), t('products.imagesHint')),
    optionRows,
    h('div', { class: 'actions' },
      h('button', { type: 'button', on: { click: addOption } }, t('products.addOption')),
      h('button', { type: 'button', on: { click: makeVariants } }, t('products.makeVariants'))),
    variantTable,
    h('button', { type: 'submit', class: 'primary' }, t('products.createButton')),
    message);
  const action = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = { name: v.name };
    if (v.description) body.description = v.description;
    const images = parseImages(v.images || '');
    if (images.length) body.images = images;
    const options = readOptions();
    if (options.length) {
      if (!variantRows.children.length) makeVariants();
      body.options = options;
      body.variants = [...variantRows.children].map((row) => {
        const variant = {
          options: JSON.parse(row.dataset.options),
          price: Number(row.querySelector('[name=vprice]').value),
          stock: Number(row.querySelector('[name=vstock]').value),
        };
        const sku = row.querySelector('[name=vsku]').value.trim();
        if (sku) variant.sku = sku;
        return variant;
      });
    } else {
      for (const f of productOnly) f.hidden = false;
      priceInput.required = true;
      if (!form.reportValidity()) return;
      body.price = Number(v.price);
      body.stock = Number(v.stock || 0);
    }
    busy(form, async () => {
      message.replaceChildren();
      try {
        const p = await ctx.client.post('/api/v1/admin/products', body, { action });
        ctx.notify(t('products.created', { id: p.id, name: p.name }));
        ctx.navigate(`/products/${p.id}`);
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  return h('details', { class: 'create', open: ctx.params.has('new') }, h('summary', {}, t('products.create')), form);
}

async function edit(ctx, id) {
  let product = await ctx.client.get(`/api/v1/products/${id}`);
  if (!ctx.live()) return;
  const variants = product.variants ?? [];
  const single = variants.length <= 1;
  const message = h('div', { class: 'form-message', id: 'edit-message' });
  const form = h('form', { class: 'panel', id: 'product-edit', 'aria-labelledby': 'edit-title' },
    h('h2', { id: 'edit-title' }, t('products.details')),
    field(t('products.name'), h('input', { name: 'name', required: true, maxlength: 200, value: product.name })),
    field(t('products.description'), h('textarea', { name: 'description', rows: 3 }, product.description ?? '')),
    field(t('products.images'), h('textarea', { name: 'images', rows: 3 }, imagesText(product.images)), t('products.imagesHint')),
    field(t('products.status'), h('select', { name: 'status' },
      ['ACTIVE', 'INACTIVE'].map((s) => h('option', { value: s, selected: (product.status ?? 'ACTIVE') === s }, t(`productStatus.${s}`))))),
    single ? field(t('products.price'), h('input', { name: 'price', type: 'number', min: 1, required: true, value: product.price })) : null,
    h('button', { type: 'submit', class: 'primary' }, t('admin.save')));
  const saving = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = {};
    if (v.name !== product.name) body.name = v.name;
    if (v.description !== (product.description ?? '')) body.description = v.description;
    if (v.images !== imagesText(product.images)) body.images = parseImages(v.images);
    if (v.status !== (product.status ?? 'ACTIVE')) body.status = v.status;
    if (single && Number(v.price) !== product.price) body.price = Number(v.price);
    if (!Object.keys(body).length) return;
    busy(form, async () => {
      message.replaceChildren();
      try {
        product = await ctx.client.patch(`/api/v1/admin/products/${id}`, body, { action: saving });
        ctx.notify(t('admin.saved'));
        ctx.refresh();
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });

  replace(ctx.root,
    h('h1', {}, t('products.editTitle', { id, name: product.name })),
    h('p', {}, h('a', { href: '#/products' }, t('products.back')), ' · ',
      h('a', { href: `/#/product/${id}` }, t('products.inStore'))),
    message, form,
    stockPanel(ctx, product, variants),
    variants.length ? variantsPanel(ctx, product, variants, message) : null,
    product.options?.length ? addVariantForm(ctx, product, message) : null);
}

/** Stock of a one-variant product (or one from an older server without variants). */
function stockPanel(ctx, product, variants) {
  if (variants.length > 1) return null;
  const message = h('div', { class: 'form-message' });
  const delta = h('input', { name: 'delta', type: 'number', required: true });
  const form = h('form', { class: 'panel inline-form', id: 'stock-form', 'aria-labelledby': 'stock-title' },
    h('h2', { id: 'stock-title' }, t('products.stockNow', { n: product.stock })),
    field(t('products.delta'), delta, t('products.deltaHint')),
    h('button', { type: 'submit' }, t('products.applyStock')), message);
  const action = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const path = variants.length === 1
      ? `/api/v1/admin/variants/${variants[0].id}/stock`
      : `/api/v1/admin/products/${product.id}/stock`;
    busy(form, async () => {
      message.replaceChildren();
      try {
        await ctx.client.post(path, { delta: Number(delta.value) }, { action });
        ctx.notify(t('admin.saved'));
        ctx.refresh();
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  return form;
}

function variantsPanel(ctx, product, variants, message) {
  const rows = variants.map((v) => {
    const label = Object.entries(v.options ?? {}).map(([k, x]) => `${k}: ${x}`).join(', ') || t('products.defaultVariant');
    const price = h('input', { type: 'number', min: 1, value: v.price, 'aria-label': t('products.priceOf', { name: label }) });
    const sku = h('input', { value: v.sku ?? '', 'aria-label': t('products.skuOf', { name: label }) });
    const delta = h('input', { type: 'number', 'aria-label': t('products.deltaOf', { name: label }) });
    const save = h('button', { type: 'button' }, t('admin.save'));
    const add = h('button', { type: 'button' }, t('products.applyStock'));
    const saving = new Action();
    const stocking = new Action();
    const run = async (button, fn) => {
      message.replaceChildren();
      button.disabled = true;
      try {
        await fn();
        ctx.notify(t('admin.saved'));
        ctx.refresh();
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
        button.disabled = false;
      }
    };
    save.addEventListener('click', () => {
      const body = {};
      if (Number(price.value) !== v.price) body.price = Number(price.value);
      if (sku.value.trim() !== (v.sku ?? '')) body.sku = sku.value.trim();
      if (Object.keys(body).length) run(save, () => ctx.client.patch(`/api/v1/admin/variants/${v.id}`, body, { action: saving }));
    });
    add.addEventListener('click', () => {
      if (delta.value) run(add, () => ctx.client.post(`/api/v1/admin/variants/${v.id}/stock`, { delta: Number(delta.value) }, { action: stocking }));
    });
    return h('tr', { data: { variantId: v.id } },
      h('th', { scope: 'row' }, label), h('td', {}, price), h('td', {}, sku), h('td', { class: 'num' }, String(v.stock)),
      h('td', {}, delta), h('td', {}, save, ' ', add));
  });
  return h('section', { 'aria-labelledby': 'variants-title' },
    h('h2', { id: 'variants-title' }, t('products.variants')),
    h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['products.options', 'products.price', 'products.sku', 'products.stock', 'products.delta', 'admin.actions']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, rows)));
}

function addVariantForm(ctx, product, message) {
  const form = h('form', { class: 'panel inline-form', id: 'variant-add', 'aria-labelledby': 'variant-add-title' },
    h('h2', { id: 'variant-add-title' }, t('products.addVariant')),
    product.options.map((o) => field(o.name, h('input', { name: `option:${o.name}`, required: true }),
      t('products.valuesOf', { values: o.values.join(', ') }))),
    field(t('products.price'), h('input', { name: 'price', type: 'number', min: 1, required: true })),
    field(t('products.stock'), h('input', { name: 'stock', type: 'number', min: 0, value: 0, required: true })),
    field(t('products.sku'), h('input', { name: 'sku' })),
    h('button', { type: 'submit' }, t('products.addVariant')));
  const action = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const options = Object.fromEntries(product.options.map((o) => [o.name, v[`option:${o.name}`]]));
    const body = { options, price: Number(v.price), stock: Number(v.stock) };
    if (v.sku) body.sku = v.sku;
    busy(form, async () => {
      message.replaceChildren();
      try {
        await ctx.client.post(`/api/v1/admin/products/${product.id}/variants`, body, { action });
        ctx.notify(t('admin.saved'));
        ctx.refresh();
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  return form;
}
