// The storefront: header (search, menu, language), the routed views, the shopper's
// session. Views live in ./views/ and are loaded when first shown.

import { ApiError, isMissingRoute } from '../lib/api.js';
import { h, replace } from '../lib/dom.js';
import { applyI18n, getLang, onLangChange, setLang, t, errorText } from '../lib/i18n.js';
import { currentRoute, navigate, startRouter } from '../lib/router.js';
import { client, session } from './session.js';

const main = document.getElementById('main');
const notice = document.getElementById('notice');

const routes = [
  [/^\/$/, () => import('./views/home.js')],
  [/^\/product\/(\d+)$/, () => import('./views/product.js')],
  [/^\/cart$/, () => import('./views/cart.js')],
  [/^\/checkout$/, () => import('./views/checkout.js')],
  [/^\/orders$/, () => import('./views/orders.js')],
  [/^\/orders\/(\d+)$/, () => import('./views/orders.js')],
  [/^\/coupons$/, () => import('./views/coupons.js')],
  [/^\/coupons\/(\d+)$/, () => import('./views/coupons.js')],
  [/^\/my-coupons$/, () => import('./views/coupons.js')],
  [/^\/account$/, () => import('./views/account.js')],
];

let noticeTimer = null;
function notify(message, kind = 'ok') {
  clearTimeout(noticeTimer);
  replace(notice, message ? h('p', { class: `notice-${kind}` }, message) : null);
  noticeTimer = setTimeout(() => replace(notice), 6000);
}

/** An inline error message (role=alert) for a failed request. */
function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, errorText(e));
}

function makeContext(base) {
  const ctx = {
    ...base,
    client,
    session,
    notify,
    errorBox,
    navigate,
    user: () => session.user(),
    /** The signed-in shopper, or null after showing a sign-in prompt in the view. */
    requireUser(title) {
      const user = session.user();
      if (user) return user;
      const next = location.hash.replace(/^#/, '');
      replace(base.root,
        h('h1', {}, title),
        h('p', {}, t('signin.needed')),
        h('p', {}, h('a', { class: 'button primary', href: `#/account?next=${encodeURIComponent(next)}` }, t('nav.signin'))));
      return null;
    },
    fail(e) {
      if (!(e instanceof ApiError)) console.error(e);
      replace(base.root, h('h1', {}, t('error.title')), errorBox(e));
    },
    cartChanged: updateCartCount,
  };
  return ctx;
}

function updateCartCount(cart) {
  const badge = document.getElementById('cart-count');
  const n = cart?.items?.length ?? 0;
  badge.hidden = n === 0;
  badge.textContent = n ? String(n) : '';
  badge.setAttribute('aria-label', t('cart.count', { n }));
}

async function loadCartCount() {
  const user = session.user();
  if (!user) return updateCartCount(null);
  try {
    updateCartCount(await client.get(`/api/v1/users/${user.userId}/cart`));
  } catch (e) {
    if (!isMissingRoute(e)) console.warn('cart', e.code);
    updateCartCount(null);
  }
}

function renderHeader() {
  const user = session.user();
  const account = document.getElementById('account-link');
  account.textContent = user ? t('nav.account', { name: user.name }) : t('nav.signin');
  const lang = document.getElementById('lang');
  const other = getLang() === 'ko' ? 'en' : 'ko';
  lang.textContent = other === 'en' ? 'English' : '한국어';
  lang.lang = other;
  document.getElementById('q').value = currentRoute().params.get('q') || '';
}

const router = startRouter({
  routes,
  main,
  makeContext,
  notFound(ctx) {
    replace(ctx.root, h('h1', {}, t('notfound.title')), h('p', {}, h('a', { href: '#/' }, t('notfound.home'))));
  },
});

document.getElementById('search').addEventListener('submit', (e) => {
  e.preventDefault();
  const q = document.getElementById('q').value.trim();
  const { path, params } = currentRoute();
  navigate('/', { q, sort: path === '/' ? params.get('sort') : undefined });
});
document.getElementById('lang').addEventListener('click', () => setLang(getLang() === 'ko' ? 'en' : 'ko'));
document.querySelector('a.skip').addEventListener('click', (e) => {
  e.preventDefault();
  (main.querySelector('h1') || main).focus();
});
window.addEventListener('hashchange', renderHeader);
onLangChange(() => {
  applyI18n(document);
  renderHeader();
  router.refresh();
});
session.onChange(() => {
  renderHeader();
  loadCartCount();
});

applyI18n(document);
renderHeader();
document.addEventListener('view-ready', () => {
  if (!document.documentElement.dataset.ready) {
    performance.mark('shop-interactive');
    document.documentElement.dataset.ready = 'true';
  }
});
router.show({ focus: false });
loadCartCount();
