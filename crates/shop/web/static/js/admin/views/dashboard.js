// The live dashboard: `/metrics` read every second, charted for the last 90 readings.

import { h, replace } from '../../lib/dom.js';
import { number, t } from '../../lib/i18n.js';
import { poll } from '../../lib/router.js';
import { LineChart } from '../chart.js';
import { Sampler } from '../metrics.js';

const fmt = {
  rate: (v) => number(v, 1),
  ms: (v) => `${number(v, v < 10 ? 1 : 0)} ms`,
  count: (v) => number(v, 0),
  size: (v) => number(v, 1),
  seconds: (v) => `${number(v, 1)} s`,
};

const PANELS = [
  ['ordersPerSec', 'dash.orders', fmt.rate, '#0b5cad'],
  ['p99Ms', 'dash.p99', fmt.ms, '#a4262c'],
  ['batchMean', 'dash.batch', fmt.size, '#5c2d91'],
  ['backlog', 'dash.backlog', fmt.count, '#8a4b00'],
  ['oldestAgeSec', 'dash.oldest', fmt.seconds, '#6b5a00'],
  ['couponsPerSec', 'dash.coupons', fmt.rate, '#0f6b3a'],
];

export async function render(ctx) {
  const sampler = new Sampler();
  const status = h('p', { class: 'muted', id: 'dash-status' }, t('dash.waiting'));
  const extra = h('p', { class: 'muted', id: 'dash-extra' });
  const charts = new Map();
  const grid = h('div', { class: 'dashboard' }, PANELS.map(([key, label, format, color]) => {
    const value = h('span', { class: 'figure', id: `dash-${key}` }, '—');
    const canvas = h('canvas', { width: 300, height: 120 });
    charts.set(key, { chart: new LineChart(canvas, { format, color }), value, format });
    return h('figure', { class: 'panel chart', data: { metric: key } },
      h('figcaption', {}, h('span', {}, t(label)), ' ', value), canvas);
  }));
  replace(ctx.root, h('h1', {}, t('dash.title')), status, grid, extra);

  async function tick() {
    const text = await ctx.client.get('/metrics', { auth: false });
    if (!ctx.live()) return;
    const m = sampler.step(text, performance.now());
    for (const [key, { chart, value, format }] of charts) {
      const v = m[key];
      chart.push(v);
      value.textContent = v === null || v === undefined ? '—' : format(v);
    }
    status.textContent = t('dash.updated', { time: new Date().toLocaleTimeString() });
    extra.textContent = [
      m.requestsPerSec !== null ? t('dash.requests', { n: fmt.rate(m.requestsPerSec) }) : null,
      m.batchP99 !== null ? t('dash.batchP99', { n: fmt.size(m.batchP99) }) : null,
      m.paidTotal !== null ? t('dash.paidTotal', { n: fmt.count(m.paidTotal) }) : null,
    ].filter(Boolean).join(' · ');
  }
  await tick();
  poll(ctx, 1000, tick);
}
