// Users: suspend or reactivate one by id (`PATCH /admin/users/{id}`).

import { Action } from '../../lib/api.js';
import { field, h, replace } from '../../lib/dom.js';
import { t } from '../../lib/i18n.js';

export async function render(ctx) {
  const id = h('input', { name: 'userId', type: 'number', min: 1, required: true, id: 'user-id' });
  const result = h('div', { id: 'user-result' });
  const suspend = h('button', { type: 'submit', value: 'SUSPENDED', class: 'danger' }, t('users.suspend'));
  const reactivate = h('button', { type: 'submit', value: 'ACTIVE' }, t('users.reactivate'));
  const form = h('form', { class: 'panel inline-form', id: 'user-form', 'aria-labelledby': 'users-form-title' },
    h('h2', { id: 'users-form-title' }, t('users.status')),
    field(t('orders.user'), id), suspend, reactivate);
  const action = new Action();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const status = e.submitter?.value || 'SUSPENDED';
    result.replaceChildren();
    try {
      const user = await ctx.client.patch(`/api/v1/admin/users/${Number(id.value)}`, { status }, { action });
      replace(result, h('p', { class: 'ok', role: 'status' },
        t('users.now', { id: user.id, name: user.name, status: t(`userStatus.${user.status}`) })));
    } catch (err) {
      result.replaceChildren(ctx.errorBox(err));
    }
  });
  replace(ctx.root, h('h1', {}, t('users.title')), h('p', { class: 'muted' }, t('users.help')), form, result);
}
