#!/usr/bin/env node
// bench/fanout-latency.mjs: enhanced fan-out push latency of eddy, measured with the AWS SDK for JavaScript v3.
//
// One process: it starts eddy (`serve --port 0 --durability $DURABILITY --shard-limits off --state-delay-ms 0`)
// on a fresh temporary data folder, creates a stream of $SHARDS shards and enough consumers for
// $SUBSCRIPTIONS concurrent SubscribeToShard subscriptions (subscription i reads shard i % SHARDS as consumer
// floor(i / SHARDS); at most 20 consumers per stream), opens them all from LATEST, then one writer does
// PutRecord one call at a time ($RECORDS records, record j to shard j % SHARDS by ExplicitHashKey; the data
// starts with the record's id). For every (record, subscription) delivery:
//   ack latency  = time the event holding the record reached that subscriber - time its PutRecord resolved
//   sent latency = the same - time its PutRecord was sent
// both with performance.now() in this process. The first $WARMUP records are left out. A record may reach a
// subscriber before the writer sees its acknowledgement (eddy wakes subscriptions just before it replies), so
// ack latencies can be negative. Also reported: CPU time of this node process and of eddy over the measured
// phase (/proc), as a share of one core.
//
// Usage (build a Release binary first):
//   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEDDY_TESTS=OFF -DEDDY_BENCH=ON
//   cmake --build build-release -j2 --target eddy
//   node bench/fanout-latency.mjs                          # 100 subscriptions, 10 shards, 2000 records, none
//   DURABILITY=fsync node bench/fanout-latency.mjs
//   SUBSCRIPTIONS=10 SHARDS=10 RECORDS=2000 node bench/fanout-latency.mjs
// Environment: SUBSCRIPTIONS (100), SHARDS (10), RECORDS (2000), DURABILITY (none; fsync, interval),
//   WARMUP (100 records), RECORD_BYTES (100), EDDY_BIN (build-release/eddy), EDDY_THREADS (eddy's default),
//   TMPDIR (where the data folder goes; keep it on a real disk for fsync),
//   RATE (0): PutRecord calls per second, paced; 0 sends the next call as soon as the last one returned,
//   QUIET_WAIT (0): seconds to wait first for the machine to be 90 % idle (then warn and go on),
//   CLIENT (sdk): `raw` replaces the SDK, for the subscribers and the writer, by plain node:http2 requests and a
//   minimal event-stream parser (eddy does not check signatures), to tell SDK cost from server latency.
// Output: stdout gets one markdown table row and one JSON line (the table header goes to stderr).
// The SDK comes from tests/integration/js/node_modules (run `npm ci` there once). The server and its folder
// are removed on exit, also on Ctrl-C.

import { spawn } from 'node:child_process';
import http2 from 'node:http2';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PerformanceObserver } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const jsDir = path.join(root, 'tests/integration/js');
const require = createRequire(path.join(jsDir, 'package.json'));
const sdk = require('@aws-sdk/client-kinesis');

const env = (name, dflt) => (process.env[name] === undefined || process.env[name] === '' ? dflt : process.env[name]);
const SUBSCRIPTIONS = Number(env('SUBSCRIPTIONS', 100));
const SHARDS = Number(env('SHARDS', 10));
const RECORDS = Number(env('RECORDS', 2000));
const WARMUP = Number(env('WARMUP', 100));
const RECORD_BYTES = Number(env('RECORD_BYTES', 100));
const DURABILITY = env('DURABILITY', 'none');
const EDDY_BIN = path.resolve(env('EDDY_BIN', path.join(root, 'build-release/eddy')));
const EDDY_THREADS = env('EDDY_THREADS', '');
const CLIENT = env('CLIENT', 'sdk');
const RATE = Number(env('RATE', 0));
const QUIET_WAIT = Number(env('QUIET_WAIT', 0));
const CONSUMERS_MAX = 20;
const READY_MS = 10_000;
const DELIVERY_DEADLINE_MS = 60_000;

function fail(msg) {
  process.stderr.write(`fanout-latency: ${msg}\n`);
  process.exit(2);
}
for (const [k, v] of Object.entries({ SUBSCRIPTIONS, SHARDS, RECORDS, RECORD_BYTES })) {
  if (!Number.isInteger(v) || v < 1) fail(`${k} must be a positive integer`);
}
if (!Number.isInteger(WARMUP) || WARMUP < 0 || WARMUP >= RECORDS) fail('WARMUP must be in 0..RECORDS-1');
if (SUBSCRIPTIONS > SHARDS * CONSUMERS_MAX) fail(`SUBSCRIPTIONS is at most SHARDS * ${CONSUMERS_MAX}`);
if (CLIENT !== 'sdk' && CLIENT !== 'raw') fail('CLIENT is sdk or raw');
if (!(RATE >= 0) || !(QUIET_WAIT >= 0)) fail('RATE and QUIET_WAIT must be >= 0');
if (!existsSync(EDDY_BIN)) fail(`no eddy binary at ${EDDY_BIN} (build it or set EDDY_BIN)`);

// ---- the server and its cleanup ----

const dataDir = mkdtempSync(path.join(tmpdir(), 'eddy-fanout-'));
let server = null;
let serverExited = false;

function cleanup() {
  if (server !== null && !serverExited) {
    try {
      server.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    process.stderr.write(`fanout-latency: ${sig}, stopping\n`);
    process.exit(130);
  });
}

function startServer() {
  const args = ['serve', '--port', '0', '--data', dataDir, '--durability', DURABILITY, '--shard-limits', 'off'];
  args.push('--state-delay-ms', '0', '--log-level', 'warn');
  if (EDDY_THREADS) args.push('--threads', EDDY_THREADS);
  server = spawn(EDDY_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  server.once('exit', () => {
    serverExited = true;
  });
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`eddy not listening after ${READY_MS} ms:\n${stderr}`)), READY_MS);
    server.stderr.setEncoding('utf8');
    server.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /eddy listening on (http:\/\/\S+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
      if (stderr.length > 1 << 20) stderr = stderr.slice(-4096);
    });
    server.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`eddy exited (code ${code}, signal ${signal}):\n${stderr}`));
    });
  });
}

// ---- CPU accounting from /proc ----

const CLK_TCK = 100; // Linux USER_HZ
function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime
}
function cpuSnapshot() {
  return { wall: performance.now(), node: procCpuSeconds(process.pid), eddy: procCpuSeconds(server.pid) };
}

/** Share of CPU time the whole machine spent idle over the next second (/proc/stat), in %. */
async function machineIdlePercent() {
  const sample = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return { idle: f[3] + (f[4] || 0), total: f.reduce((a, b) => a + b, 0) };
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, 1000));
  const b = sample();
  return Math.round((100 * (b.idle - a.idle)) / Math.max(1, b.total - a.total));
}

/** Garbage collection pauses of this process: [start, duration] in performance.now() ms. */
const gcPauses = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcPauses.push([e.startTime, e.duration]);
}).observe({ entryTypes: ['gc'] });

// ---- statistics ----

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}
function summarize(values) {
  const s = Float64Array.from(values).sort();
  const r = (x) => Math.round(x * 1000) / 1000;
  return {
    count: s.length,
    p50: r(percentile(s, 50)),
    p90: r(percentile(s, 90)),
    p99: r(percentile(s, 99)),
    'p99.9': r(percentile(s, 99.9)),
    max: r(s[s.length - 1]),
    min: r(s[0]),
  };
}

// ---- CLIENT=raw: AWS JSON 1.1 over node:http2 without the SDK ----

const TARGET = 'Kinesis_20131202.';
const rawHeaders = (op) => ({
  ':method': 'POST',
  ':path': '/',
  'content-type': 'application/x-amz-json-1.1',
  'x-amz-target': TARGET + op,
});

/** One request on `session`; resolves with the parsed JSON reply (rejects on a non-200 status). */
function rawCall(session, op, input) {
  return new Promise((resolve, reject) => {
    const req = session.request(rawHeaders(op));
    let status = 0;
    const chunks = [];
    req.on('response', (h) => {
      status = h[':status'];
    });
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      if (status !== 200) reject(new Error(`${op}: HTTP ${status}: ${body}`));
      else resolve(body ? JSON.parse(body) : {});
    });
    req.on('error', reject);
    req.end(JSON.stringify(input));
  });
}

/** Event-stream header values: returns [value, next offset] for the header value at `o` of type `t`. */
function headerValue(buf, o, t) {
  const fixed = { 0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16 };
  if (t in fixed) return [null, o + fixed[t]];
  const len = buf.readUInt16BE(o);
  return [buf.toString('utf8', o + 2, o + 2 + len), o + 2 + len];
}

/**
 * Opens a SubscribeToShard stream on its own HTTP/2 connection; calls onRecords(now, recordsJson) per
 * SubscribeToShardEvent. Resolves once the initial response arrived; returns { close() }.
 */
function rawSubscribe(endpoint, input, onRecords, onError) {
  return new Promise((resolve, reject) => {
    const session = http2.connect(endpoint);
    session.on('error', onError);
    const req = session.request(rawHeaders('SubscribeToShard'));
    let buf = Buffer.alloc(0);
    let started = false;
    const handle = { close: () => session.destroy() };
    req.on('response', (h) => {
      if (h[':status'] !== 200) reject(new Error(`SubscribeToShard: HTTP ${h[':status']}`));
    });
    req.on('data', (chunk) => {
      const now = performance.now();
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 12 && buf.length >= buf.readUInt32BE(0)) {
        const total = buf.readUInt32BE(0);
        const headersEnd = 12 + buf.readUInt32BE(4);
        let type = '';
        let messageType = '';
        for (let o = 12; o < headersEnd; ) {
          const nameLen = buf[o];
          const name = buf.toString('utf8', o + 1, o + 1 + nameLen);
          const [value, next] = headerValue(buf, o + 2 + nameLen, buf[o + 1 + nameLen]);
          if (name === ':event-type' || name === ':exception-type') type = value;
          if (name === ':message-type') messageType = value;
          o = next;
        }
        const payload = buf.subarray(headersEnd, total - 4);
        buf = buf.subarray(total);
        if (messageType !== 'event') {
          onError(new Error(`${type}: ${payload.toString()}`));
        } else if (type === 'initial-response') {
          started = true;
          resolve(handle);
        } else if (type === 'SubscribeToShardEvent') {
          onRecords(now, JSON.parse(payload.toString()).Records);
        }
      }
    });
    req.on('error', (err) => (started ? onError(err) : reject(err)));
    req.end(JSON.stringify(input));
  });
}

// ---- the run ----

async function main() {
  // Other work on the machine skews every number: wait up to QUIET_WAIT seconds for it to be 90 % idle.
  const quietEnd = Date.now() + QUIET_WAIT * 1000;
  let idleBefore = await machineIdlePercent();
  while (idleBefore < 90 && Date.now() < quietEnd) idleBefore = await machineIdlePercent();
  if (idleBefore < 90) process.stderr.write(`fanout-latency: warning: the machine was only ${idleBefore} % idle\n`);
  const endpoint = await startServer();
  const clientConfig = { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 };
  const control = new sdk.KinesisClient(clientConfig);
  const stream = 'fanout';
  await control.send(new sdk.CreateStreamCommand({ StreamName: stream, ShardCount: SHARDS }));
  const shards = (await control.send(new sdk.ListShardsCommand({ StreamName: stream }))).Shards;
  const streamArn = (await control.send(new sdk.DescribeStreamSummaryCommand({ StreamName: stream })))
    .StreamDescriptionSummary.StreamARN;
  const consumerCount = Math.ceil(SUBSCRIPTIONS / SHARDS);
  const consumers = [];
  for (let c = 0; c < consumerCount; c += 1) {
    const out = await control.send(new sdk.RegisterStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: `c${c}` }));
    consumers.push(out.Consumer.ConsumerARN);
  }

  // arrival[sub][id]: performance.now() when the event with record `id` reached subscription `sub`.
  const subs = Array.from({ length: SUBSCRIPTIONS }, (_, i) => ({
    shard: i % SHARDS,
    consumer: Math.floor(i / SHARDS),
    arrival: new Float64Array(RECORDS).fill(NaN),
    received: 0,
    controller: new AbortController(),
    error: null,
  }));
  // Each subscription has its own HTTP/2 connection (the SDK isolates event streams); one client serves all.
  const subscriber = new sdk.KinesisClient(clientConfig);
  const decoder = new TextDecoder();
  const note = (sub, now, id) => {
    if (Number.isNaN(sub.arrival[id])) sub.received += 1;
    sub.arrival[id] = now;
  };
  await Promise.all(
    subs.map(async (sub) => {
      if (CLIENT === 'raw') {
        const input = {
          ConsumerARN: consumers[sub.consumer],
          ShardId: shards[sub.shard].ShardId,
          StartingPosition: { Type: 'LATEST' },
        };
        const onRecords = (now, records) => {
          for (const r of records) note(sub, now, Number.parseInt(Buffer.from(r.Data.slice(0, 16), 'base64').toString(), 10));
        };
        const h = await rawSubscribe(endpoint, input, onRecords, (err) => (sub.error ??= err));
        sub.controller.signal.addEventListener('abort', () => h.close());
        sub.done = Promise.resolve();
        return;
      }
      const out = await subscriber.send(
        new sdk.SubscribeToShardCommand({
          ConsumerARN: consumers[sub.consumer],
          ShardId: shards[sub.shard].ShardId,
          StartingPosition: { Type: 'LATEST' },
        }),
        { abortSignal: sub.controller.signal },
      );
      sub.done = (async () => {
        try {
          for await (const ev of out.EventStream) {
            const now = performance.now();
            const records = ev.SubscribeToShardEvent?.Records ?? [];
            for (const r of records) note(sub, now, Number.parseInt(decoder.decode(r.Data.subarray(0, 12)), 10));
          }
        } catch (err) {
          if (err.name !== 'AbortError') sub.error = err;
        }
      })();
    }),
  );

  // One writer on one reused HTTP/2 connection, one PutRecord at a time.
  const Http2Handler = control.config.requestHandler.constructor;
  const writer = new sdk.KinesisClient({ ...clientConfig, requestHandler: new Http2Handler({ disableConcurrentStreams: false }) });
  const rawSession = CLIENT === 'raw' ? http2.connect(endpoint) : null;
  const put = (input) =>
    CLIENT === 'raw'
      ? rawCall(rawSession, 'PutRecord', { ...input, Data: input.Data.toString('base64') })
      : writer.send(new sdk.PutRecordCommand(input));
  const sent = new Float64Array(RECORDS);
  const acked = new Float64Array(RECORDS);
  const filler = 'x'.repeat(Math.max(0, RECORD_BYTES - 12));
  const subsPerShard = Array.from({ length: SHARDS }, (_, s) => subs.filter((x) => x.shard === s).length);
  const expectedDeliveries = Array.from({ length: RECORDS }, (_, j) => subsPerShard[j % SHARDS]).reduce((a, b) => a + b, 0);

  let cpu0 = null;
  for (let j = 0; j < RECORDS; j += 1) {
    if (j === WARMUP) cpu0 = cpuSnapshot();
    const shard = shards[j % SHARDS];
    const data = Buffer.from(String(j).padStart(12, '0') + filler);
    if (RATE > 0 && j > 0) {
      const due = sent[0] + (j * 1000) / RATE; // pacing, not synchronisation
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    sent[j] = performance.now();
    const out = await put({ StreamName: stream, Data: data, PartitionKey: 'p', ExplicitHashKey: shard.HashKeyRange.StartingHashKey });
    acked[j] = performance.now();
    if (out.ShardId !== shard.ShardId) throw new Error(`record ${j} went to ${out.ShardId}, not ${shard.ShardId}`);
  }
  const writeEnd = performance.now();

  // Wait (polled, with a deadline) for every delivery.
  const deadline = performance.now() + DELIVERY_DEADLINE_MS;
  const total = () => subs.reduce((n, s) => n + s.received, 0);
  while (total() < expectedDeliveries && performance.now() < deadline && !subs.some((s) => s.error)) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const cpu1 = cpuSnapshot();
  const failed = subs.find((s) => s.error);
  if (failed) throw new Error(`a subscription failed: ${failed.error.name}: ${failed.error.message}`);
  const delivered = total();

  const fromAck = [];
  const fromSent = [];
  let missing = 0;
  for (const sub of subs) {
    for (let j = WARMUP; j < RECORDS; j += 1) {
      if (j % SHARDS !== sub.shard) continue;
      const t = sub.arrival[j];
      if (Number.isNaN(t)) {
        missing += 1;
        continue;
      }
      fromAck.push(t - acked[j]);
      fromSent.push(t - sent[j]);
    }
  }
  const puts = [];
  for (let j = WARMUP; j < RECORDS; j += 1) puts.push(acked[j] - sent[j]);
  const wall = (cpu1.wall - cpu0.wall) / 1000;
  const gcs = gcPauses.filter(([t]) => t >= cpu0.wall && t <= cpu1.wall).map(([, d]) => d);
  const result = {
    durability: DURABILITY,
    client: CLIENT,
    rate: RATE,
    machine_idle_before_percent: idleBefore,
    subscriptions: SUBSCRIPTIONS,
    shards: SHARDS,
    consumers: consumerCount,
    records: RECORDS,
    warmup: WARMUP,
    record_bytes: RECORD_BYTES,
    deliveries_expected: expectedDeliveries,
    deliveries: delivered,
    missing,
    ack_to_delivery_ms: summarize(fromAck),
    sent_to_delivery_ms: summarize(fromSent),
    put_roundtrip_ms: summarize(puts),
    write_seconds: Math.round((writeEnd - sent[WARMUP]) / 10) / 100,
    cpu: {
      wall_seconds: Math.round(wall * 100) / 100,
      node_core_share: Math.round(((cpu1.node - cpu0.node) / wall) * 100) / 100,
      eddy_core_share: Math.round(((cpu1.eddy - cpu0.eddy) / wall) * 100) / 100,
    },
    // the subscribers' and the writer's event loop stalls while these run
    node_gc: {
      pauses: gcs.length,
      over_2ms: gcs.filter((d) => d > 2).length,
      total_ms: Math.round(gcs.reduce((a, b) => a + b, 0)),
      max_ms: Math.round(Math.max(0, ...gcs) * 10) / 10,
    },
  };

  for (const sub of subs) sub.controller.abort();
  await Promise.all(subs.map((s) => s.done));
  writer.destroy();
  rawSession?.close();
  subscriber.destroy();
  control.destroy();
  server.kill('SIGTERM');
  await new Promise((resolve) => {
    if (serverExited) return resolve();
    const timer = setTimeout(resolve, 5_000); // cleanup() kills it past this
    server.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });

  const a = result.ack_to_delivery_ms;
  const s = result.sent_to_delivery_ms;
  const header =
    '| durability | client | subs | shards | records | deliveries | ack p50 | ack p90 | ack p99 | ack p99.9 | ack max |' +
    ' sent p50 | sent p90 | sent p99 | sent p99.9 | sent max | put p50 | node CPU | eddy CPU | node GC max |';
  process.stderr.write(`${header}\n${header.replace(/[^|]+/g, '---')}\n`);
  const ms = (x) => x.toFixed(2);
  const row = [
    DURABILITY,
    CLIENT,
    SUBSCRIPTIONS,
    SHARDS,
    RECORDS - WARMUP,
    `${a.count}${missing ? ` (${missing} missing)` : ''}`,
    ms(a.p50),
    ms(a.p90),
    ms(a.p99),
    ms(a['p99.9']),
    ms(a.max),
    ms(s.p50),
    ms(s.p90),
    ms(s.p99),
    ms(s['p99.9']),
    ms(s.max),
    ms(result.put_roundtrip_ms.p50),
    `${Math.round(result.cpu.node_core_share * 100)} %`,
    `${Math.round(result.cpu.eddy_core_share * 100)} %`,
    ms(result.node_gc.max_ms),
  ];
  process.stdout.write(`| ${row.join(' | ')} |\n${JSON.stringify(result)}\n`);
  if (missing > 0) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`fanout-latency: ${err.stack ?? err}\n`);
  process.exit(1);
});
