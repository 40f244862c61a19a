// The storefront's first page: bytes transferred and time to interactive, in headless
// Chromium (Debian's, through playwright-core), each load in a fresh browser context
// (empty cache, no service worker), against a running server:
//
//   node e2e/measure.mjs http://127.0.0.1:8080 [RUNS]
//
// "Interactive" is the page's own `shop-interactive` performance mark: the first view
// (front page with its product list and top 5) is rendered and every control works.
// Bytes are what the network carried (headers and bodies) for every response up to
// network idle, API answers and images included. Prints one line per run, then the
// median and the worst.

import { chromium } from 'playwright-core';

const [base = 'http://127.0.0.1:8080', runsArg = '15'] = process.argv.slice(2);
const runs = Number(runsArg);
const browser = await chromium.launch({
  executablePath: process.env.SHOP_TEST_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});

const results = [];
for (let i = 0; i <= runs; i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'ko-KR' });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  let bytes = 0;
  let responses = 0;
  cdp.on('Network.loadingFinished', (e) => {
    bytes += e.encodedDataLength;
    responses += 1;
  });
  await page.goto(`${base}/`, { waitUntil: 'networkidle' });
  await page.waitForSelector('html[data-ready]');
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    return {
      interactive: performance.getEntriesByName('shop-interactive')[0]?.startTime,
      domContentLoaded: nav.domContentLoadedEventEnd,
      load: nav.loadEventEnd,
    };
  });
  await context.close();
  // the first run warms the server (and the OS file cache) and is not counted
  if (i === 0) continue;
  results.push({ bytes, responses, ...t });
  console.log(`run ${i}: ${bytes} bytes in ${responses} responses; interactive ${t.interactive.toFixed(0)} ms, ` +
    `DOMContentLoaded ${t.domContentLoaded.toFixed(0)} ms, load ${t.load.toFixed(0)} ms`);
}
await browser.close();

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const worst = (xs) => Math.max(...xs);
for (const key of ['bytes', 'interactive', 'domContentLoaded', 'load']) {
  const xs = results.map((r) => r[key]);
  console.log(`${key.padEnd(16)} median ${median(xs).toFixed(0).padStart(7)}   worst ${worst(xs).toFixed(0).padStart(7)}`);
}
