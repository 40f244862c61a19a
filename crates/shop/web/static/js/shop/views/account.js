// Signing up (name, email and password) and logging in: both end with a session from
// `POST /sessions` (access and refresh tokens, kept in sessionStorage by session.js);
// logging out ends it on the server. The profile (name, email), the balance, charging
// it, and its history.

import { Action, withQuery } from '../../lib/api.js';
import { busy, field, formValues, h, replace } from '../../lib/dom.js';
import { dateTime, t, won } from '../../lib/i18n.js';
import { href } from '../../lib/router.js';

export async function render(ctx) {
  const user = ctx.user();
  if (!user) return signedOut(ctx);
  return signedIn(ctx, user);
}

function afterSignIn(ctx) {
  const next = ctx.params.get('next');
  if (next && next.startsWith('/')) ctx.navigate(next);
  else ctx.navigate('/account');
}

function signedOut(ctx) {
  const signupMessage = h('div', { class: 'form-message' });
  const loginMessage = h('div', { class: 'form-message' });
  const signup = h('form', { id: 'signup-form', class: 'panel', 'aria-labelledby': 'signup-title' },
    h('h2', { id: 'signup-title' }, t('account.signup')),
    field(t('account.name'), h('input', { name: 'name', required: true, maxlength: 100, autocomplete: 'nickname' })),
    field(t('account.email'), h('input', { name: 'email', type: 'email', required: true, maxlength: 254, autocomplete: 'email' }), t('account.emailHint')),
    field(t('account.password'), h('input', { name: 'password', type: 'password', required: true, minlength: 8, maxlength: 128, autocomplete: 'new-password' })),
    h('button', { type: 'submit', class: 'primary' }, t('account.signup')),
    signupMessage);
  const login = h('form', { id: 'login-form', class: 'panel', 'aria-labelledby': 'login-title' },
    h('h2', { id: 'login-title' }, t('account.login')),
    field(t('account.email'), h('input', { name: 'email', type: 'email', required: true, autocomplete: 'username' })),
    field(t('account.password'), h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' })),
    h('button', { type: 'submit', class: 'primary' }, t('account.login')),
    loginMessage);

  /** Logs in with `email` and `password`: the session is the token pair. */
  const loggingIn = new Action();
  async function logIn(email, password, name) {
    const s = await ctx.client.post('/api/v1/sessions', { email, password }, { action: loggingIn, auth: false });
    const value = { userId: s.userId, name: name ?? `#${s.userId}`, token: s.accessToken, refreshToken: s.refreshToken, accessExpiresAt: s.accessExpiresAt };
    ctx.session.set(value);
    if (name === undefined) {
      try {
        const me = await ctx.client.get(`/api/v1/users/${s.userId}`);
        ctx.session.set({ ...ctx.session.user(), name: me.name });
      } catch { /* the name is only for the header */ }
    }
  }

  const signingUp = new Action();
  signup.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(signup);
    busy(signup, async () => {
      signupMessage.replaceChildren();
      try {
        const created = await ctx.client.post('/api/v1/users', { name: v.name, email: v.email, password: v.password }, { action: signingUp, auth: false });
        await logIn(v.email, v.password, created.name);
        ctx.notify(t('account.welcome', { name: created.name }));
        afterSignIn(ctx);
      } catch (err) {
        signupMessage.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  login.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(login);
    busy(login, async () => {
      loginMessage.replaceChildren();
      try {
        await logIn(v.email, v.password);
        afterSignIn(ctx);
      } catch (err) {
        loginMessage.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  replace(ctx.root, h('h1', {}, t('account.title')), h('div', { class: 'columns' }, signup, login));
}

async function signedIn(ctx, user) {
  const base = `/api/v1/users/${user.userId}`;
  const [balance, me] = await Promise.all([
    ctx.client.get(`${base}/balance`),
    ctx.client.get(base).catch(() => null),
  ]);
  if (!ctx.live()) return;
  const balanceEl = h('p', { class: 'balance', id: 'balance' }, won(balance.balance));
  const amount = h('input', { name: 'amount', type: 'number', min: 1, max: 1000000, step: 1, required: true, inputmode: 'numeric' });
  const chargeMessage = h('div', { class: 'form-message' });
  const charge = h('form', { id: 'charge-form', class: 'panel', 'aria-labelledby': 'charge-title' },
    h('h2', { id: 'charge-title' }, t('account.charge')),
    field(t('account.amount'), amount),
    h('div', { class: 'quick' }, [10000, 50000, 100000].map((n) => h('button', {
      type: 'button', on: { click: () => { amount.value = String(n); amount.focus(); } },
    }, `+${won(n)}`))),
    h('button', { type: 'submit', class: 'primary' }, t('account.chargeButton')),
    chargeMessage);
  const history = h('tbody', {});
  const more = h('button', { type: 'button', class: 'more', hidden: true }, t('list.more'));
  const logout = h('button', { type: 'button', id: 'logout' }, t('account.logout'));

  replace(ctx.root,
    h('h1', {}, t('account.hello', { name: user.name })),
    h('section', { class: 'panel', 'aria-labelledby': 'balance-title' },
      h('h2', { id: 'balance-title' }, t('account.balance')), balanceEl),
    charge,
    me ? profileForm(ctx, base, me) : null,
    h('section', { 'aria-labelledby': 'history-title' },
      h('h2', { id: 'history-title' }, t('account.history')),
      h('table', { class: 'ledger' },
        h('thead', {}, h('tr', {}, ['account.when', 'account.type', 'account.change', 'account.after', 'account.order']
          .map((k) => h('th', { scope: 'col' }, t(k))))),
        history),
      more),
    h('nav', { class: 'links', 'aria-label': t('account.links') },
      h('a', { href: '#/orders' }, t('nav.orders')), ' · ',
      h('a', { href: '#/my-coupons' }, t('coupons.mine'))),
    h('p', {}, logout));

  let cursor = null;
  async function loadHistory(reset) {
    if (reset) {
      cursor = null;
      history.replaceChildren();
    }
    const page = await ctx.client.get(withQuery(`${base}/balance/history`, { limit: 20, cursor }));
    if (!ctx.live()) return;
    history.append(...page.items.map((e) => h('tr', {},
      h('td', {}, dateTime(e.createdAt)),
      h('td', {}, t(`ledger.${e.type}`)),
      h('td', { class: ['num', e.amount < 0 ? 'minus' : 'plus'] }, `${e.amount > 0 ? '+' : ''}${won(e.amount)}`),
      h('td', { class: 'num' }, won(e.balanceAfter)),
      h('td', {}, e.orderId ? h('a', { href: href(`/orders/${e.orderId}`) }, t('orders.number', { id: e.orderId })) : ''))));
    cursor = page.nextCursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => loadHistory(false).catch((e) => more.after(ctx.errorBox(e))));

  const charging = new Action();
  charge.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(charge, async () => {
      chargeMessage.replaceChildren();
      try {
        const after = await ctx.client.post(`${base}/balance/charge`, { amount: Number(amount.value) }, { action: charging });
        balanceEl.textContent = won(after.balance);
        chargeMessage.replaceChildren(h('p', { class: 'ok', role: 'status' }, t('account.charged', { amount: won(Number(amount.value)) })));
        amount.value = '';
        await loadHistory(true);
      } catch (err) {
        chargeMessage.replaceChildren(ctx.errorBox(err));
      }
    });
  });

  logout.addEventListener('click', async () => {
    const s = ctx.session.user();
    if (s?.refreshToken) {
      try {
        await ctx.client.del('/api/v1/sessions/current');
      } catch { /* signed out here whatever the server says */ }
    }
    ctx.session.set(null);
    ctx.notify(t('account.loggedOut'));
    ctx.navigate('/');
  });

  await loadHistory(true);
}

/** Name and email (`PATCH /users/{id}`): only what changed is sent. */
function profileForm(ctx, base, me) {
  const message = h('div', { class: 'form-message' });
  const form = h('form', { id: 'profile-form', class: 'panel', 'aria-labelledby': 'profile-title' },
    h('h2', { id: 'profile-title' }, t('account.profile')),
    field(t('account.name'), h('input', { name: 'name', required: true, maxlength: 100, value: me.name, autocomplete: 'nickname' })),
    field(t('account.email'), h('input', { name: 'email', type: 'email', maxlength: 254, value: me.email ?? '', autocomplete: 'email' })),
    h('button', { type: 'submit' }, t('account.save')),
    message);
  const action = new Action();
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = {};
    if (v.name !== me.name) body.name = v.name;
    if (v.email && v.email !== (me.email ?? '')) body.email = v.email;
    if (!Object.keys(body).length) return;
    busy(form, async () => {
      message.replaceChildren();
      try {
        Object.assign(me, await ctx.client.patch(base, body, { action }));
        ctx.session.set({ ...ctx.session.user(), name: me.name });
        message.replaceChildren(h('p', { class: 'ok', role: 'status' }, t('account.saved')));
      } catch (err) {
        message.replaceChildren(ctx.errorBox(err));
      }
    });
  });
  return form;
}
