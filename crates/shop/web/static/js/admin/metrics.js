// Reading `/metrics` (Prometheus text format 0.0.4) and turning two readings into the
// dashboard's figures: rates of counters, p99 latency from histogram buckets (or a
// summary's 0.99 quantile), mean batch size, outbox backlog and age. No DOM: the unit
// tests run it in Node.

/** `[{name, labels: {k: v}, value}]` for every sample line. */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    let i = 0;
    while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i++;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === '{') {
      i++;
      while (i < line.length && line[i] !== '}') {
        while (line[i] === ' ' || line[i] === ',') i++;
        if (line[i] === '}') break;
        const eq = line.indexOf('=', i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim();
        i = eq + 1;
        if (line[i] !== '"') break;
        i++;
        let value = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            const next = line[i + 1];
            value += next === 'n' ? '\n' : next;
            i += 2;
          } else {
            value += line[i++];
          }
        }
        i++; // closing quote
        labels[key] = value;
      }
      i++; // closing brace
    }
    const [valueText] = line.slice(i).trim().split(/\s+/);
    const value = parseValue(valueText);
    if (name && !Number.isNaN(value)) samples.push({ name, labels, value });
  }
  return samples;
}

function parseValue(s) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === undefined || s === '') return NaN;
  return Number(s);
}

const byName = (samples, name, keep = () => true) => samples.filter((s) => s.name === name && keep(s.labels));
const sum = (list) => list.reduce((a, s) => a + s.value, 0);

/** The sum of a metric over all its series (0 when absent), or null when absent. */
export function total(samples, name, keep) {
  const list = byName(samples, name, keep);
  return list.length ? sum(list) : null;
}

/** The largest value of a gauge over its series, or null when absent. */
export function gauge(samples, name) {
  const list = byName(samples, name);
  return list.length ? Math.max(...list.map((s) => s.value)) : null;
}

/** Cumulative bucket counts `[[le, count]]` of a histogram, summed over its series. */
export function buckets(samples, name, keep = () => true) {
  const per = new Map();
  for (const s of byName(samples, `${name}_bucket`, keep)) {
    const le = parseValue(s.labels.le);
    per.set(le, (per.get(le) ?? 0) + s.value);
  }
  return [...per.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile of cumulative buckets, interpolated linearly inside the bucket that
 * holds it, as Prometheus's histogram_quantile does. Null without observations.
 */
export function quantileFromBuckets(q, bucketList) {
  if (!bucketList.length) return null;
  const count = bucketList[bucketList.length - 1][1];
  if (!(count > 0)) return null;
  const rank = q * count;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of bucketList) {
    if (c >= rank) {
      if (le === Infinity) return prevLe; // beyond the last finite bound: its bound
      if (c === prevCount) return le;
      return prevLe + (le - prevLe) * ((rank - prevCount) / (c - prevCount));
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

/** Bucket counts of `now` minus those of `before` (a counter reset counts from 0). */
export function bucketDelta(now, before) {
  const old = new Map(before);
  const out = now.map(([le, c]) => [le, c - (old.get(le) ?? 0)]);
  return out.some(([, c]) => c < 0) ? now : out;
}

const notScrape = (labels) => labels.route !== '/metrics';

/**
 * Keeps the previous reading and answers the dashboard's figures for the interval
 * since then. Rates are per second; latency in milliseconds; null means "no data".
 */
export class Sampler {
  constructor() {
    this.prev = null;
  }

  step(text, atMs) {
    const samples = parsePrometheus(text);
    const now = {
      at: atMs,
      paid: total(samples, 'shop_orders_paid_total'),
      issued: total(samples, 'shop_coupons_issued_total'),
      requests: total(samples, 'http_requests_total', notScrape),
      latency: buckets(samples, 'http_request_duration_seconds', notScrape),
      batchSum: total(samples, 'shop_batch_size_sum'),
      batchCount: total(samples, 'shop_batch_size_count'),
      batchBuckets: buckets(samples, 'shop_batch_size'),
    };
    const prev = this.prev;
    this.prev = now;
    const seconds = prev ? (now.at - prev.at) / 1000 : 0;
    const rate = (key) => {
      if (!prev || seconds <= 0 || now[key] === null) return null;
      const d = now[key] - (prev[key] ?? 0);
      return (d < 0 ? now[key] : d) / seconds;
    };
    let p99 = null;
    if (now.latency.length) {
      const window = prev && prev.latency.length ? bucketDelta(now.latency, prev.latency) : now.latency;
      const s = quantileFromBuckets(0.99, window);
      p99 = s === null ? null : s * 1000;
    } else {
      // a summary instead of a histogram: its own 0.99 quantile, the worst route's
      const q = byName(samples, 'http_request_duration_seconds', (l) => l.quantile === '0.99' && notScrape(l))
        .map((s) => s.value).filter(Number.isFinite);
      p99 = q.length ? Math.max(...q) * 1000 : null;
    }
    let batch = null;
    if (prev && now.batchCount !== null) {
      const n = now.batchCount - (prev.batchCount ?? 0);
      const s = now.batchSum - (prev.batchSum ?? 0);
      batch = n > 0 ? s / n : 0;
    }
    const batchP99 = now.batchBuckets.length
      ? quantileFromBuckets(0.99, prev ? bucketDelta(now.batchBuckets, prev.batchBuckets) : now.batchBuckets)
      : gaugeQuantile(samples, 'shop_batch_size', '0.99');
    return {
      ordersPerSec: rate('paid'),
      couponsPerSec: rate('issued'),
      requestsPerSec: rate('requests'),
      p99Ms: p99,
      batchMean: batch,
      batchP99,
      backlog: gauge(samples, 'shop_outbox_backlog'),
      oldestAgeSec: gauge(samples, 'shop_outbox_oldest_age_seconds'),
      paidTotal: now.paid,
      issuedTotal: now.issued,
    };
  }
}

function gaugeQuantile(samples, name, q) {
  const list = byName(samples, name, (l) => l.quantile === q).map((s) => s.value).filter(Number.isFinite);
  return list.length ? Math.max(...list) : null;
}
