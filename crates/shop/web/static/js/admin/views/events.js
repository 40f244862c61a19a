// Data-platform events that wait: undelivered or parked (failed), with attempts and
// the last error; retry one, or every parked one.

import { Action, withQuery } from '../../lib/api.js';
import { field, h, replace } from '../../lib/dom.js';
import { dateTime, t } from '../../lib/i18n.js';

export async function render(ctx) {
  const status = ctx.params.get('status') === 'failed' ? 'failed' : 'undelivered';
  const select = h('select', { name: 'status', id: 'event-status' },
    ['undelivered', 'failed'].map((s) => h('option', { value: s, selected: s === status }, t(`events.${s}`))));
  select.addEventListener('change', () => ctx.navigate('/events', { status: select.value }));
  const body = h('tbody', {});
  const message = h('div', { class: 'form-message' });
  const empty = h('p', { hidden: true, id: 'events-empty' }, t('events.none'));
  const retryAll = h('button', { type: 'button', id: 'retry-all' }, t('events.retryAll'));
  const refresh = h('button', { type: 'button' }, t('events.refresh'));
  refresh.addEventListener('click', () => ctx.refresh());
  const allAction = new Action();
  retryAll.addEventListener('click', async () => {
    retryAll.disabled = true;
    try {
      const r = await ctx.client.post('/api/v1/admin/events/retry', undefined, { action: allAction });
      ctx.notify(t('events.retried', { n: r.retried }));
      ctx.refresh();
    } catch (e) {
      message.replaceChildren(ctx.errorBox(e));
      retryAll.disabled = false;
    }
  });
  replace(ctx.root, h('h1', {}, t('events.title')),
    h('div', { class: 'inline-form' }, field(t('events.show'), select), refresh, retryAll),
    message,
    h('table', { class: 'grid', id: 'event-table' },
      h('thead', {}, h('tr', {}, ['events.type', 'events.order', 'events.status', 'events.attempts', 'events.created', 'events.next', 'events.error', 'admin.actions']
        .map((k) => h('th', { scope: 'col' }, t(k))))),
      body),
    empty);

  const page = await ctx.client.get(withQuery('/api/v1/admin/events', { status, limit: 100 }));
  if (!ctx.live()) return;
  body.append(...page.items.map((ev) => {
    const retry = h('button', { type: 'button', 'aria-label': t('events.retryOf', { type: ev.type, order: ev.orderId }) }, t('events.retry'));
    const action = new Action();
    retry.addEventListener('click', async () => {
      retry.disabled = true;
      try {
        await ctx.client.post(`/api/v1/admin/events/${encodeURIComponent(ev.id)}/retry`, undefined, { action });
        ctx.notify(t('events.retried', { n: 1 }));
        ctx.refresh();
      } catch (e) {
        message.replaceChildren(ctx.errorBox(e));
        retry.disabled = false;
      }
    });
    return h('tr', { data: { eventId: ev.id } },
      h('td', {}, ev.type), h('td', {}, String(ev.orderId)),
      h('td', {}, t(`delivery.${ev.status}`, {}, ev.status)),
      h('td', { class: 'num' }, String(ev.attempts)),
      h('td', {}, dateTime(ev.createdAt)), h('td', {}, dateTime(ev.nextAttemptAt)),
      h('td', { class: 'error-text' }, ev.lastError ?? ''),
      h('td', {}, retry));
  }));
  empty.hidden = page.items.length > 0;
  retryAll.disabled = status === 'undelivered' && !page.items.some((e) => e.status === 'FAILED');
}
