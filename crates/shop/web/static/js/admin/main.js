// The admin console. The admin token is asked for once per tab and kept only in
// sessionStorage (gone when the tab closes); it travels only in the Authorization
// header. Views live in ./views/ and are loaded when first shown.

import { ApiError, createClient } from '../lib/api.js';
import { field, h, replace } from '../lib/dom.js';
import { applyI18n, errorText, getLang, onLangChange, setLang, t } from '../lib/i18n.js';
import { currentRoute, navigate, startRouter } from '../lib/router.js';

const KEY = 'shop.adminToken';
const main = document.getElementById('main');
const notice = document.getElementById('notice');
const nav = document.getElementById('admin-nav');
const signoutButton = document.getElementById('signout');

const client = createClient({ token: () => sessionStorage.getItem(KEY) });

const routes = [
  [/^\/dashboard$/, () => import('./views/dashboard.js')],
  [/^\/products$/, () => import('./views/products.js')],
  [/^\/products\/(\d+)$/, () => import('./views/products.js')],
  [/^\/coupons$/, () => import('./views/coupons.js')],
  [/^\/coupons\/(\d+)$/, () => import('./views/coupons.js')],
  [/^\/orders$/, () => import('./views/orders.js')],
  [/^\/users$/, () => import('./views/users.js')],
  [/^\/events$/, () => import('./views/events.js')],
];

let noticeTimer = null;
function notify(message) {
  clearTimeout(noticeTimer);
  replace(notice, h('p', { class: 'notice-ok' }, message));
  noticeTimer = setTimeout(() => replace(notice), 6000);
}

const errorBox = (e) => h('p', { class: 'error', role: 'alert' }, errorText(e));

let router;
function makeContext(base) {
  return {
    ...base,
    client,
    notify,
    errorBox,
    navigate,
    refresh: () => router.refresh(),
    fail(e) {
      if (e instanceof ApiError && e.status === 401) return signOut(t('admin.expired'));
      if (!(e instanceof ApiError)) console.error(e);
      replace(base.root, h('h1', {}, t('error.title')), errorBox(e));
    },
  };
}

function signedIn() {
  return Boolean(sessionStorage.getItem(KEY));
}

let signOutReason = null;
function signOut(reason) {
  sessionStorage.removeItem(KEY);
  signOutReason = reason ?? null;
  router.show(); // stops the current view; the guard then asks for the token
}

function showSignIn(reason) {
  nav.hidden = true;
  signoutButton.hidden = true;
  const token = h('input', { name: 'token', type: 'password', required: true, autocomplete: 'off', id: 'admin-token' });
  const message = h('div', { class: 'form-message' }, reason ? h('p', { class: 'error', role: 'alert' }, reason) : null);
  const form = h('form', { class: 'panel signin', id: 'admin-signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, t('admin.signin')),
    h('p', { class: 'muted' }, t('admin.tokenHelp')),
    field(t('admin.token'), token),
    h('button', { type: 'submit', class: 'primary' }, t('admin.signinButton')),
    message);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    message.replaceChildren();
    const value = token.value.trim();
    try {
      // any admin read of the contract tells whether the token opens the admin routes
      await createClient({ token: () => value }).get('/api/v1/admin/orders?limit=1');
      sessionStorage.setItem(KEY, value);
      signOutReason = null;
      start();
    } catch (err) {
      message.replaceChildren(h('p', { class: 'error', role: 'alert' },
        err.status === 401 || err.status === 403 ? t('admin.badToken') : errorText(err)));
      token.focus();
    }
  });
  replace(main, form);
  token.focus();
}

function start() {
  if (!routes.some(([re]) => re.test(currentRoute().path))) navigate('/dashboard');
  else router.show();
}

function renderHeader() {
  const lang = document.getElementById('lang');
  const other = getLang() === 'ko' ? 'en' : 'ko';
  lang.textContent = other === 'en' ? 'English' : '한국어';
  lang.lang = other;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#${currentRoute().path.replace(/\/\d+$/, '')}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

router = startRouter({
  routes,
  main,
  makeContext,
  notFound: () => navigate('/dashboard'),
  // no view without a token
  guard() {
    if (!signedIn()) {
      showSignIn(signOutReason);
      return false;
    }
    nav.hidden = false;
    signoutButton.hidden = false;
    return true;
  },
});

document.getElementById('lang').addEventListener('click', () => setLang(getLang() === 'ko' ? 'en' : 'ko'));
signoutButton.addEventListener('click', () => signOut());
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
applyI18n(document);
renderHeader();
if (signedIn()) start();
else showSignIn();
document.documentElement.dataset.ready = 'true';
