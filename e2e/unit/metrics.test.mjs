// The dashboard's reading of /metrics, without a browser.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Sampler, bucketDelta, buckets, parsePrometheus, quantileFromBuckets, total } from '../../crates/shop/web/static/js/admin/metrics.js';

const histogram = (counts, extra = '') => {
  const les = ['0.001', '0.01', '0.1', '1', '+Inf'];
  return les.map((le, i) => `http_request_duration_seconds_bucket{method="GET",route="/api/v1/products",status="200",le="${le}"${extra}} ${counts[i]}`).join('\n');
};

test('parses names, labels with escapes, values and special floats', () => {
  const s = parsePrometheus([
    '# HELP shop_orders_paid_total Orders paid.',
    '# TYPE shop_orders_paid_total counter',
    'shop_orders_paid_total 42',
    'http_requests_total{method="POST",route="/api/v1/orders",status="201"} 7 1700000000000',
    'weird{a="x\\"y,z}",b="line\\nbreak",c="back\\\\slash"} 1.5e3',
    'up{le="+Inf"} +Inf',
    'nan NaN',
    '',
  ].join('\n'));
  assert.deepEqual(s[0], { name: 'shop_orders_paid_total', labels: {}, value: 42 });
  assert.deepEqual(s[1].labels, { method: 'POST', route: '/api/v1/orders', status: '201' });
  assert.equal(s[1].value, 7);
  assert.deepEqual(s[2].labels, { a: 'x"y,z}', b: 'line\nbreak', c: 'back\\slash' });
  assert.equal(s[2].value, 1500);
  assert.equal(s[3].value, Infinity);
  assert.equal(s.length, 4, 'NaN samples are dropped');
  assert.equal(total(s, 'missing'), null);
});

test('p99 from cumulative buckets interpolates inside the bucket, as histogram_quantile does', () => {
  // 100 observations: 50 under 1 ms, 40 more under 10 ms, 10 more under 100 ms
  const b = [[0.001, 50], [0.01, 90], [0.1, 100], [Infinity, 100]];
  assert.equal(quantileFromBuckets(0.5, b), 0.001);
  assert.ok(Math.abs(quantileFromBuckets(0.99, b) - (0.01 + 0.09 * 0.9)) < 1e-12);
  assert.equal(quantileFromBuckets(0.99, [[0.1, 0], [Infinity, 0]]), null);
  // everything beyond the last finite bound: that bound
  assert.equal(quantileFromBuckets(0.99, [[0.1, 0], [Infinity, 5]]), 0.1);
  assert.deepEqual(bucketDelta([[1, 10], [Infinity, 12]], [[1, 4], [Infinity, 5]]), [[1, 6], [Infinity, 7]]);
  // a reset (restart) counts from zero
  assert.deepEqual(bucketDelta([[1, 1], [Infinity, 1]], [[1, 4], [Infinity, 5]]), [[1, 1], [Infinity, 1]]);
});

test('buckets are summed over series, leaving out the scrapes of /metrics', () => {
  const text = `${histogram([1, 2, 3, 4, 4])}\n${histogram([10, 10, 10, 10, 10]).replaceAll('/api/v1/products', '/metrics')}`;
  const s = parsePrometheus(text);
  assert.deepEqual(buckets(s, 'http_request_duration_seconds', (l) => l.route !== '/metrics'),
    [[0.001, 1], [0.01, 2], [0.1, 3], [1, 4], [Infinity, 4]]);
});

test('the sampler turns two readings into rates, p99 of the interval, batch size and backlog', () => {
  const reading = (paid, issued, counts, batchSum, batchCount, backlog) => [
    `shop_orders_paid_total ${paid}`,
    `shop_coupons_issued_total ${issued}`,
    histogram(counts),
    `shop_batch_size{quantile="0.99"} 12`,
    `shop_batch_size_sum ${batchSum}`,
    `shop_batch_size_count ${batchCount}`,
    `shop_outbox_backlog ${backlog}`,
    'shop_outbox_oldest_age_seconds 2.5',
  ].join('\n');
  const sampler = new Sampler();
  const first = sampler.step(reading(10, 0, [0, 0, 0, 0, 0], 0, 0, 3), 1000);
  assert.equal(first.ordersPerSec, null, 'no rate from one reading');
  assert.equal(first.p99Ms, null);
  assert.equal(first.backlog, 3);
  assert.equal(first.batchP99, 12);
  const second = sampler.step(reading(30, 5, [0, 0, 99, 100, 100], 60, 6, 0), 3000);
  assert.equal(second.ordersPerSec, 10);
  assert.equal(second.couponsPerSec, 2.5);
  assert.ok(second.p99Ms > 10 && second.p99Ms <= 100, `p99 ${second.p99Ms}`);
  assert.equal(second.batchMean, 10);
  assert.equal(second.backlog, 0);
  assert.equal(second.oldestAgeSec, 2.5);
  // no orders in the next interval: a rate of 0, and no latency without requests
  const third = sampler.step(reading(30, 5, [0, 0, 99, 100, 100], 60, 6, 0), 4000);
  assert.equal(third.ordersPerSec, 0);
  assert.equal(third.p99Ms, null);
  assert.equal(third.batchMean, 0);
});

test('a summary instead of a histogram: its 0.99 quantile, the worst route', () => {
  const sampler = new Sampler();
  const m = sampler.step([
    'http_request_duration_seconds{route="/a",quantile="0.5"} 0.001',
    'http_request_duration_seconds{route="/a",quantile="0.99"} 0.004',
    'http_request_duration_seconds{route="/b",quantile="0.99"} 0.02',
    'http_request_duration_seconds{route="/metrics",quantile="0.99"} 9',
    'http_request_duration_seconds_sum{route="/a"} 1',
    'http_request_duration_seconds_count{route="/a"} 100',
  ].join('\n'), 0);
  assert.equal(m.p99Ms, 20);
  assert.equal(m.ordersPerSec, null);
  assert.equal(m.backlog, null);
});
