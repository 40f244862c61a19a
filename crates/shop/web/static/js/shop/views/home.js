// The front page and search results: top-5 popular products (front page only), the
// product list with search (`q`), sort and "more" paging (`nextCursor`).

import { withQuery } from '../../lib/api.js';
import { h, replace } from '../../lib/dom.js';
import { t, won } from '../../lib/i18n.js';
import { href } from '../../lib/router.js';

export const SORTS = ['newest', 'price_asc', 'price_desc', 'name'];
const PAGE = 20;

export async function render(ctx) {
  const q = ctx.params.get('q') || '';
  const sort = SORTS.includes(ctx.params.get('sort')) ? ctx.params.get('sort') : 'newest';
  const list = h('ul', { class: 'products', id: 'product-list' });
  const more = h('button', { type: 'button', class: 'more', hidden: true }, t('list.more'));
  const status = h('p', { class: 'list-status', role: 'status' });
  const popular = h('section', { class: 'popular', 'aria-labelledby': 'popular-title', hidden: true });

  const sortSelect = h('select', { id: 'sort', name: 'sort' },
    SORTS.map((s) => h('option', { value: s, selected: s === sort }, t(`sort.${s}`))));
  sortSelect.addEventListener('change', () => ctx.navigate('/', { q, sort: sortSelect.value }));

  replace(ctx.root,
    h('h1', {}, q ? t('list.results', { q }) : t('list.title')),
    popular,
    h('section', { class: 'catalog', 'aria-labelledby': 'catalog-title' },
      h('div', { class: 'toolbar' },
        h('h2', { id: 'catalog-title' }, t('list.all')),
        h('div', { class: 'field inline' }, h('label', { for: 'sort' }, t('sort.label')), sortSelect)),
      list, status, more));

  let cursor = null;
  async function load() {
    const page = await ctx.client.get(withQuery('/api/v1/products', {
      limit: PAGE, q, sort: sort === 'newest' ? undefined : sort, cursor,
    }));
    if (!ctx.live()) return;
    list.append(...page.items.map(productCard));
    cursor = page.nextCursor;
    more.hidden = !cursor;
    status.textContent = list.children.length ? '' : t('list.empty');
  }
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      const before = list.children.length;
      await load();
      list.children[before]?.querySelector('a')?.focus();
    } catch (e) {
      status.replaceChildren(ctx.errorBox(e));
    } finally {
      more.disabled = false;
    }
  });

  await Promise.all([
    load(),
    q ? null : loadPopular(ctx, popular),
  ]);
}

async function loadPopular(ctx, section) {
  let top;
  try {
    top = await ctx.client.get('/api/v1/products/popular');
  } catch {
    return; // the list still works without the ranking
  }
  if (!ctx.live() || !top.items.length) return;
  replace(section,
    h('h2', { id: 'popular-title' }, t('popular.title')),
    h('ol', { class: 'popular-list' }, top.items.map((p) => h('li', {},
      h('span', { class: 'rank', 'aria-hidden': 'true' }, String(p.rank)),
      h('a', { href: href(`/product/${p.productId}`) }, p.name),
      h('span', { class: 'price' }, won(p.price)),
      h('span', { class: 'muted' }, t('popular.sold', { n: p.soldQuantity }))))));
  section.hidden = false;
}

/** A product card of the list. `image` (the main image) and `soldOut` may be absent. */
export function productCard(p) {
  const soldOut = p.soldOut ?? p.stock === 0;
  return h('li', { class: 'card', data: { productId: p.id } },
    p.image
      ? h('img', { src: p.image, alt: '', width: 160, height: 160, loading: 'lazy', decoding: 'async' })
      : h('div', { class: 'noimage', 'aria-hidden': 'true' }),
    h('a', { class: 'card-name', href: href(`/product/${p.id}`) }, p.name),
    h('p', { class: 'price' }, won(p.price)),
    soldOut ? h('p', { class: 'badge soldout' }, t('product.soldout')) : null);
}
