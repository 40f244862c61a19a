// Both languages carry every message, with the same placeholders; every message a
// script names literally exists.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { MESSAGES } from '../../crates/shop/web/static/js/lib/messages.js';

const WEB = new URL('../../crates/shop/web/', import.meta.url).pathname;

function files(dir, ext) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path, ext) : path.endsWith(ext) ? [path] : [];
  });
}

test('Korean and English have the same keys and placeholders', () => {
  const ko = Object.keys(MESSAGES.ko).sort();
  const en = Object.keys(MESSAGES.en).sort();
  assert.deepEqual(ko, en);
  const holes = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  for (const key of ko) assert.deepEqual(holes(MESSAGES.ko[key]), holes(MESSAGES.en[key]), key);
});

test('every key named in the pages and scripts exists', () => {
  const used = new Set();
  for (const path of files(WEB, '.js')) {
    const src = readFileSync(path, 'utf8');
    for (const m of src.matchAll(/\bt\('([\w.]+)'/g)) used.add(m[1]);
    // keys listed for table headers and panels: 'area.name' strings in arrays
    for (const m of src.matchAll(/\[\s*((?:'[\w]+\.[\w]+',?\s*)+)\]/g)) {
      for (const k of m[1].matchAll(/'([\w]+\.[\w]+)'/g)) used.add(k[1]);
    }
    for (const m of src.matchAll(/\['\w+', '([\w]+\.[\w]+)'/g)) used.add(m[1]);
  }
  for (const path of files(WEB, '.html')) {
    for (const m of readFileSync(path, 'utf8').matchAll(/data-i18n(?:-[\w-]+)?="([\w.]+)"/g)) used.add(m[1]);
  }
  const missing = [...used].filter((k) => !(k in MESSAGES.ko) && !/\.(js|css|svg)$/.test(k));
  assert.deepEqual(missing, []);
  assert.ok(used.size > 150, `found ${used.size} keys`);
});
