// The dashboard (src/server/ui): the embedded page's HTTP answers, then the page itself in headless Chromium
// (playwright-core driving /usr/bin/chromium; it never downloads a browser) against the real eddy under live
// traffic: two streams, a split and a merge (so the lineage tree has children), an enhanced fan-out consumer
// with an active subscription, PutRecords in a loop and a GetRecords reader that lags behind.
//
// Every wait is a poll with a deadline (playwright's waitFor/waitForFunction, pollUntil); the traffic loops
// pace themselves but nothing sleeps to synchronise. A screenshot is saved to $EDDY_ARTIFACTS/dashboard.png
// (default build-test/artifacts/dashboard.png), also when an assertion fails. The browser part is skipped
// only when /usr/bin/chromium is missing and EDDY_REQUIRE_BROWSER is unset. EDDY_DASHBOARD_POINTS (default
// 8) is how many seconds of chart history to wait for before the screenshot (docs/dashboard.png uses 45).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  CreateStreamCommand,
  DescribeStreamConsumerCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  MergeShardsCommand,
  PutRecordsCommand,
  RegisterStreamConsumerCommand,
  SplitShardCommand,
  SubscribeToShardCommand,
} from '@aws-sdk/client-kinesis';
import { makeClient, pollUntil, shardId, startEddy } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = process.env.EDDY_ARTIFACTS
  ? path.resolve(process.env.EDDY_ARTIFACTS)
  : path.resolve(here, '../../../build-test/artifacts');
const POINTS = Number(process.env.EDDY_DASHBOARD_POINTS ?? 8);
const PAGE_TIMEOUT_MS = 20_000 + POINTS * 1500;
const skipBrowser =
  !existsSync(CHROMIUM) && !process.env.EDDY_REQUIRE_BROWSER
    ? `${CHROMIUM} is missing (Debian: apt-get install chromium, or scripts/deps.sh test); ` +
      'set EDDY_REQUIRE_BROWSER=1 to make this a failure'
    : false;

const QUARTER = 1n << 126n;

describe('dashboard assets over HTTP', () => {
  let eddy;
  before(async () => {
    eddy = await startEddy();
  });
  after(async () => {
    await eddy?.cleanup();
  });

  it('serves the page on /, /ui and /ui/, its assets with their types, a strict CSP and no-cache', async () => {
    for (const p of ['/', '/ui', '/ui/', '/ui/?tab=1']) {
      const res = await fetch(eddy.endpoint + p);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8', p);
      assert.match(await res.text(), /^<!doctype html>/, p);
    }
    const types = {
      '/ui/app.js': 'text/javascript; charset=utf-8',
      '/ui/style.css': 'text/css; charset=utf-8',
      '/ui/favicon.svg': 'image/svg+xml',
    };
    for (const [p, type] of Object.entries(types)) {
      const res = await fetch(eddy.endpoint + p);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers.get('content-type'), type, p);
      assert.equal(res.headers.get('cache-control'), 'no-cache', p);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', p);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'self'/, p);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, p);
      assert.ok((await res.arrayBuffer()).byteLength > 0, p);
    }
    const head = await fetch(`${eddy.endpoint}/ui/app.js`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-type'), types['/ui/app.js']);
    assert.equal(await head.text(), '');
    for (const p of ['/ui/nope.js', '/ui/app.js/', '/app.js', '/uix']) {
      const res = await fetch(eddy.endpoint + p);
      await res.arrayBuffer();
      assert.equal(res.status, 404, p);
    }
  });
});

describe('dashboard in headless Chromium under live traffic', { skip: skipBrowser }, () => {
  let eddy;
  let kinesis;
  let browser;
  let stopping = false;
  const loops = []; // traffic promises, awaited in after()
  const subscription = new AbortController();

  /** Runs `step` every `everyMs` until the test ends; errors other than throttling fail the test in after(). */
  const repeat = (everyMs, step) =>
    loops.push(
      (async () => {
        while (!stopping) {
          try {
            await step();
          } catch (err) {
            if (stopping) break;
            if (!/ThroughputExceeded|LimitExceeded/.test(err.name)) throw err;
          }
          await delay(everyMs);
        }
      })(),
    );

  const put = (stream, n, size) =>
    kinesis.send(
      new PutRecordsCommand({
        StreamName: stream,
        Records: Array.from({ length: n }, (_, i) => ({
          PartitionKey: `pk-${Math.random()}-${i}`,
          Data: new Uint8Array(size).fill(97 + (i % 26)),
        })),
      }),
    );

  before(async () => {
    eddy = await startEddy();
    kinesis = makeClient(eddy.endpoint);
    await kinesis.send(new CreateStreamCommand({ StreamName: 'orders', ShardCount: 2 }));
    await kinesis.send(
      new CreateStreamCommand({ StreamName: 'clicks', StreamModeDetails: { StreamMode: 'ON_DEMAND' } }),
    );
    // orders: shard 0 [0, 2^127) splits at 2^126 into 2 and 3; 3 and shard 1 merge into 4.
    await kinesis.send(
      new SplitShardCommand({ StreamName: 'orders', ShardToSplit: shardId(0), NewStartingHashKey: String(QUARTER) }),
    );
    await kinesis.send(
      new MergeShardsCommand({ StreamName: 'orders', ShardToMerge: shardId(3), AdjacentShardToMerge: shardId(1) }),
    );
    const { Consumer } = await kinesis.send(
      new RegisterStreamConsumerCommand({
        StreamARN: `arn:aws:kinesis:us-east-1:000000000000:stream/orders`,
        ConsumerName: 'billing',
      }),
    );
    await pollUntil(
      async () =>
        (await kinesis.send(new DescribeStreamConsumerCommand({ ConsumerARN: Consumer.ConsumerARN })))
          .ConsumerDescription.ConsumerStatus === 'ACTIVE',
      { timeoutMs: 10_000, what: 'consumer billing ACTIVE' },
    );

    // Traffic: steady puts to both streams, a larger burst now and then, a push subscriber that keeps up on
    // shard 4 and a GetRecords reader on shard 2 that reads 5 records at a time from the beginning (so it lags).
    repeat(100, () => put('orders', 25, 200));
    repeat(150, () => put('clicks', 15, 600));
    repeat(4000, () => put('orders', 400, 5000)); // 2 MB at once: more than two shards take in a second
    const sub = await kinesis.send(
      new SubscribeToShardCommand({
        ConsumerARN: Consumer.ConsumerARN,
        ShardId: shardId(4),
        StartingPosition: { Type: 'LATEST' },
      }),
      { abortSignal: subscription.signal },
    );
    loops.push(
      (async () => {
        try {
          for await (const event of sub.EventStream) {
            if (stopping) break;
            assert.ok(event.SubscribeToShardEvent, `unexpected event ${Object.keys(event)}`);
          }
        } catch (err) {
          if (!stopping) throw err;
        }
      })(),
    );
    let iterator = (
      await kinesis.send(
        new GetShardIteratorCommand({ StreamName: 'orders', ShardId: shardId(2), ShardIteratorType: 'TRIM_HORIZON' }),
      )
    ).ShardIterator;
    repeat(300, async () => {
      const out = await kinesis.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 5 }));
      iterator = out.NextShardIterator;
    });
  });

  after(async () => {
    stopping = true;
    subscription.abort();
    await browser?.close();
    const results = await Promise.allSettled(loops);
    kinesis?.destroy();
    await eddy?.cleanup();
    for (const r of results) {
      if (r.status === 'rejected') throw r.reason;
    }
  });

  it('shows both streams, the shard lineage, the consumer and live charts', async () => {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(PAGE_TIMEOUT_MS);
    const problems = []; // script errors and console errors (a CSP violation is one)
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => msg.type() === 'error' && problems.push(`console: ${msg.text()}`));
    await mkdir(ARTIFACTS, { recursive: true });
    try {
      const res = await page.goto(`${eddy.endpoint}/`);
      assert.equal(res.status(), 200);
      await page.waitForSelector('body[data-state="live"]');

      const orders = page.locator('[data-stream="orders"]');
      const clicks = page.locator('[data-stream="clicks"]');
      await orders.locator('h2', { hasText: 'orders' }).waitFor();
      await clicks.locator('h2', { hasText: 'clicks' }).waitFor();
      await clicks.getByText('ON_DEMAND').waitFor();

      // The lineage tree: 0 -> 2, 3; 3 + 1 -> 4 (parent and adjacent parent).
      const tree = orders.locator('svg.lineage');
      for (const [child, parent] of [[2, 0], [3, 0], [4, 3]]) {
        await tree.locator(`[data-shard="${shardId(child)}"][data-parent="${shardId(parent)}"]`).waitFor();
      }
      await tree.locator(`[data-shard="${shardId(4)}"][data-adjacent-parent="${shardId(1)}"]`).waitFor();
      assert.equal(await tree.locator('rect.shard.open').count(), 2, 'open shards of orders: 2 and 4');
      assert.equal(await tree.locator('rect.shard.closed').count(), 3, 'closed shards of orders: 0, 1 and 3');

      await orders.locator('[data-consumer="billing"]', { hasText: 'ACTIVE' }).waitFor();
      await orders.locator('[data-consumer="billing"] .sub', { hasText: '#4' }).waitFor();

      // Charts fill in from the counters' deltas: incoming records of both streams, iterator age of shard 2.
      await page.waitForFunction(
        (points) => {
          const fig = document.querySelector('[data-chart="records"]');
          const series = [...fig.querySelectorAll('[data-series]')].map((g) => g.dataset.series);
          const path = fig.querySelector('[data-series="orders"] path')?.getAttribute('d') ?? '';
          return (
            Number(fig.dataset.points) >= points &&
            Number(fig.dataset.max) > 0 &&
            series.includes('orders') &&
            series.includes('clicks') &&
            (path.match(/L/g) ?? []).length >= points - 1
          );
        },
        POINTS,
        { polling: 250 },
      );
      await page.waitForFunction(() => {
        const fig = document.querySelector('[data-chart="shard-age"]');
        return Number(fig.dataset.max) > 0 && fig.querySelector('[data-series="orders #2"]') !== null;
      });
      await page.waitForFunction(
        () => Number(document.querySelector('[data-chart="bytes"]').dataset.max) > 0,
      );
      assert.deepEqual(problems, [], 'the page logged errors');
    } finally {
      // Also after a failure; a failed screenshot must not hide the assertion that failed.
      await page
        .screenshot({ path: path.join(ARTIFACTS, 'dashboard.png') })
        .catch((err) => console.error(`dashboard screenshot failed: ${err.message}`));
    }
  });
});
