// Resharding (SplitShard, MergeShards, UpdateShardCount) and enhanced fan-out (stream consumers and
// SubscribeToShard event streams over cleartext HTTP/2) through @aws-sdk/client-kinesis, against the real eddy
// binary. Expected values follow the AWS Kinesis API reference; where eddy differs, the test keeps the AWS
// expectation and is marked `todo` with the reason.
//
// Timing facts of eddy that the waits below rely on (src/server/api/subscribe.c): SubscribeToShard answers with
// an initial-response event at once; records are pushed as soon as their put is acknowledged; an idle
// subscription gets an empty heartbeat event after 5 s (checked once a second), so a subscription learns that
// its shard was closed at that wake-up at the latest. Every wait is a poll or an event with a deadline.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DeregisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  ListStreamConsumersCommand,
  MergeShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  RegisterStreamConsumerCommand,
  SplitShardCommand,
  SubscribeToShardCommand,
  UpdateShardCountCommand,
} from '@aws-sdk/client-kinesis';
import {
  evenHashRanges,
  expectAwsError,
  makeClient,
  pollUntil,
  shardId,
  startEddy,
  streamArn,
  uniqueName,
  withDeadline,
} from './helpers.mjs';

const HASH_MAX = (1n << 128n) - 1n;
const HALF = 1n << 127n;
const SEQUENCE = /^\d{56,57}$/;
/** How long a subscription may stay idle before eddy sends a heartbeat, plus the 1 s tick and slack. */
const HEARTBEAT_DEADLINE_MS = 10_000;
const text = (data) => Buffer.from(data).toString();
const big = (s) => BigInt(s);

/** Shortcuts bound to one client. */
function kinesisOps(client) {
  const send = (cmd, opts) => client.send(cmd, opts);
  const ops = {
    send,
    async create(name, ShardCount = 1, extra = {}) {
      await send(new CreateStreamCommand({ StreamName: name, ShardCount, ...extra }));
      return name;
    },
    async summary(name) {
      return (await send(new DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary;
    },
    async waitActive(name) {
      return pollUntil(async () => (await ops.summary(name)).StreamStatus === 'ACTIVE', {
        timeoutMs: 10_000,
        what: `stream ${name} ACTIVE`,
      });
    },
    /** Every shard of the stream (ListShards, following NextToken). */
    async shards(name) {
      const out = [];
      let page = await send(new ListShardsCommand({ StreamName: name }));
      out.push(...page.Shards);
      while (page.NextToken) {
        page = await send(new ListShardsCommand({ NextToken: page.NextToken }));
        out.push(...page.Shards);
      }
      return out;
    },
    put(name, data, PartitionKey = 'pk', extra = {}) {
      return send(new PutRecordCommand({ StreamName: name, Data: Buffer.from(data), PartitionKey, ...extra }));
    },
    /** Reads a shard from TRIM_HORIZON until a reply has ChildShards (closed shard) or no records (open). */
    async readShard(name, ShardId) {
      let it = (await send(new GetShardIteratorCommand({ StreamName: name, ShardId, ShardIteratorType: 'TRIM_HORIZON' })))
        .ShardIterator;
      const records = [];
      for (let pages = 0; pages < 100; pages += 1) {
        const out = await send(new GetRecordsCommand({ ShardIterator: it }));
        records.push(...out.Records);
        if (out.ChildShards !== undefined || out.Records.length === 0) {
          return { records, last: out };
        }
        it = out.NextShardIterator;
      }
      throw new Error('readShard: too many pages');
    },
    async register(name, ConsumerName) {
      const out = await send(new RegisterStreamConsumerCommand({ StreamARN: streamArn(name), ConsumerName }));
      return out.Consumer;
    },
  };
  return ops;
}

const isOpen = (s) => s.SequenceNumberRange.EndingSequenceNumber === undefined;
const byId = (shards) => new Map(shards.map((s) => [s.ShardId, s]));
const range = (s) => [big(s.HashKeyRange.StartingHashKey), big(s.HashKeyRange.EndingHashKey)];

/**
 * AWS's lineage invariants: the open shards tile the hash key space; every parent is closed and has an
 * EndingSequenceNumber; a child lies inside its parent (split) or is the union of its two adjacent parents
 * (merge); a child's StartingSequenceNumber is above its parents' EndingSequenceNumber.
 */
function assertLineage(shards) {
  const ids = byId(shards);
  const open = shards.filter(isOpen).map(range).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  assert.equal(open[0][0], 0n, 'the open shards start at hash key 0');
  assert.equal(open.at(-1)[1], HASH_MAX, 'the open shards end at 2^128-1');
  for (let i = 1; i < open.length; i += 1) assert.equal(open[i][0], open[i - 1][1] + 1n, 'open shards tile the space');
  for (const s of shards) {
    if (!isOpen(s)) {
      assert.match(s.SequenceNumberRange.EndingSequenceNumber, SEQUENCE);
      assert.ok(big(s.SequenceNumberRange.EndingSequenceNumber) >= big(s.SequenceNumberRange.StartingSequenceNumber));
    }
    const parentIds = [s.ParentShardId, s.AdjacentParentShardId].filter(Boolean);
    if (parentIds.length === 0) continue;
    const parents = parentIds.map((id) => {
      assert.ok(ids.has(id), `${s.ShardId} names unknown parent ${id}`);
      return ids.get(id);
    });
    for (const p of parents) {
      assert.ok(!isOpen(p), `${p.ShardId}, parent of ${s.ShardId}, is still open`);
      assert.ok(
        big(s.SequenceNumberRange.StartingSequenceNumber) > big(p.SequenceNumberRange.EndingSequenceNumber),
        `${s.ShardId} starts at ${s.SequenceNumberRange.StartingSequenceNumber}, not above the end of ${p.ShardId}`,
      );
    }
    const [lo, hi] = range(s);
    if (parents.length === 1) {
      const [plo, phi] = range(parents[0]);
      assert.ok(plo <= lo && hi <= phi, `${s.ShardId} is not inside its parent ${parents[0].ShardId}`);
    } else {
      const [a, b] = parents.map(range).sort((x, y) => (x[0] < y[0] ? -1 : 1));
      assert.equal(a[1] + 1n, b[0], `the parents of ${s.ShardId} are not adjacent`);
      assert.deepEqual([lo, hi], [a[0], b[1]], `${s.ShardId} is not the union of its parents`);
    }
  }
}

/** The ChildShard entries AWS reports at the end of `parent`, derived from a ListShards result. */
function expectedChildShards(shards, parent) {
  return shards
    .filter((s) => s.ParentShardId === parent || s.AdjacentParentShardId === parent)
    .map((s) => ({
      ShardId: s.ShardId,
      ParentShards: [s.ParentShardId, s.AdjacentParentShardId].filter(Boolean),
      HashKeyRange: s.HashKeyRange,
    }));
}

/**
 * One SubscribeToShard call, read by pulling events with deadlines. `registry` collects every open
 * subscription so that a describe block can cancel what its tests left open.
 */
class Subscription {
  static async open(client, input, registry) {
    const controller = new AbortController();
    const started = performance.now();
    const output = await client.send(new SubscribeToShardCommand(input), { abortSignal: controller.signal });
    const sub = new Subscription(output, controller, performance.now() - started);
    registry?.add(sub);
    return sub;
  }

  constructor(output, controller, sendMs) {
    this.output = output;
    this.sendMs = sendMs;
    this.controller = controller;
    this.iterator = output.EventStream[Symbol.asyncIterator]();
    this.events = []; // SubscribeToShardEvent payloads, in arrival order
    this.records = [];
    this.ended = false;
  }

  /** The next SubscribeToShardEvent, or null when the stream ended; rejects with the stream's exception. */
  async next(ms = 10_000) {
    const { value, done } = await withDeadline(this.iterator.next(), ms, 'the next SubscribeToShard event');
    if (done) {
      this.ended = true;
      return null;
    }
    const ev = value.SubscribeToShardEvent;
    assert.ok(ev, `unexpected event ${JSON.stringify(Object.keys(value))}`);
    this.events.push(ev);
    this.records.push(...ev.Records);
    return ev;
  }

  /** Reads events until at least n records arrived in all; returns the records. */
  async untilRecords(n, ms = 10_000) {
    const end = Date.now() + ms;
    while (this.records.length < n) {
      const ev = await this.next(Math.max(1, end - Date.now()));
      if (ev === null) assert.fail(`the subscription ended after ${this.records.length} of ${n} records`);
    }
    return this.records;
  }

  /** Reads events until one satisfies `pred`; returns it. */
  async until(pred, ms, what) {
    const end = Date.now() + ms;
    for (;;) {
      const ev = await this.next(Math.max(1, end - Date.now()));
      if (ev === null) assert.fail(`the subscription ended before ${what}`);
      if (pred(ev)) return ev;
    }
  }

  /** Reads to the end of the stream; returns the exception it ended with, or null for a clean end. */
  async drain(ms = 10_000) {
    const end = Date.now() + ms;
    try {
      while ((await this.next(Math.max(1, end - Date.now()))) !== null);
      return null;
    } catch (err) {
      if (/^timed out/.test(err.message)) throw err;
      return err;
    }
  }

  close() {
    this.controller.abort();
  }
}

/** Consumer ARN as eddy and AWS form it: ...:stream/NAME/consumer/CONSUMER:CREATION_SECONDS. */
const CONSUMER_ARN = (stream, consumer) =>
  new RegExp(`^arn:aws:kinesis:us-east-1:000000000000:stream/${stream}/consumer/${consumer}:\\d+$`);

function assertEventRecords(sub, expected, what = 'records') {
  assert.deepEqual(
    sub.records.map((r) => [r.SequenceNumber, text(r.Data), r.PartitionKey]),
    expected.map((e) => [e.seq, e.data, e.pk]),
    what,
  );
}

describe('resharding (shard limits off, instant state changes)', () => {
  let eddy;
  let client;
  let k;

  before(async () => {
    eddy = await startEddy({ args: ['--shard-limits', 'off'] });
    client = makeClient(eddy.endpoint);
    k = kinesisOps(client);
  });
  after(async () => {
    client?.destroy();
    await eddy?.cleanup();
  });

  it('SplitShard closes the parent and creates two children with AWS lineage and sequence ranges', async () => {
    const name = await k.create(uniqueName('split'), 1);
    const before = [];
    for (let i = 0; i < 5; i += 1) before.push((await k.put(name, `b${i}`, `pk${i}`)).SequenceNumber);
    const out = await k.send(
      new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(0), NewStartingHashKey: HALF.toString() }),
    );
    assert.equal(out.$metadata.httpStatusCode, 200);

    const shards = await k.shards(name);
    assert.deepEqual(
      shards.map((s) => s.ShardId),
      [shardId(0), shardId(1), shardId(2)],
    );
    const [parent, left, right] = shards;
    assert.equal(parent.ParentShardId, undefined);
    assert.ok(!isOpen(parent), 'the parent has an EndingSequenceNumber');
    for (const seq of before) {
      assert.ok(big(seq) <= big(parent.SequenceNumberRange.EndingSequenceNumber), 'parent records are within its range');
    }
    for (const child of [left, right]) {
      assert.equal(child.ParentShardId, shardId(0));
      assert.equal(child.AdjacentParentShardId, undefined);
      assert.ok(isOpen(child));
      assert.match(child.SequenceNumberRange.StartingSequenceNumber, SEQUENCE);
    }
    assert.deepEqual(left.HashKeyRange, { StartingHashKey: '0', EndingHashKey: (HALF - 1n).toString() });
    assert.deepEqual(right.HashKeyRange, { StartingHashKey: HALF.toString(), EndingHashKey: HASH_MAX.toString() });
    assertLineage(shards);

    // New writes go to the children, above the parent's end.
    const low = await k.put(name, 'low', 'x', { ExplicitHashKey: '0' });
    const high = await k.put(name, 'high', 'x', { ExplicitHashKey: HASH_MAX.toString() });
    assert.equal(low.ShardId, shardId(1));
    assert.equal(high.ShardId, shardId(2));
    for (const r of [low, high]) {
      assert.ok(big(r.SequenceNumber) > big(parent.SequenceNumberRange.EndingSequenceNumber));
    }
    const summary = await k.summary(name);
    assert.equal(summary.OpenShardCount, 2);
    assert.equal(summary.StreamStatus, 'ACTIVE');
  });

  it('MergeShards closes both parents; the child names both and covers their union', async () => {
    const name = await k.create(uniqueName('merge'), 3);
    await k.put(name, 'in-1', 'x', { ExplicitHashKey: evenHashRanges(3)[1].StartingHashKey });
    // Either order of the adjacent pair is accepted; the child names ShardToMerge as ParentShardId.
    await k.send(
      new MergeShardsCommand({ StreamARN: streamArn(name), ShardToMerge: shardId(2), AdjacentShardToMerge: shardId(1) }),
    );
    const shards = await k.shards(name);
    const ids = byId(shards);
    const child = ids.get(shardId(3));
    assert.ok(child, 'the merge created shardId-000000000003');
    assert.equal(child.ParentShardId, shardId(2));
    assert.equal(child.AdjacentParentShardId, shardId(1));
    assert.deepEqual(child.HashKeyRange, {
      StartingHashKey: evenHashRanges(3)[1].StartingHashKey,
      EndingHashKey: HASH_MAX.toString(),
    });
    assert.ok(!isOpen(ids.get(shardId(1))) && !isOpen(ids.get(shardId(2))), 'both parents are closed');
    assert.ok(isOpen(ids.get(shardId(0))), 'the other shard stays open');
    assertLineage(shards);
    assert.equal((await k.summary(name)).OpenShardCount, 2);
  });

  it('GetRecords at the end of a closed parent returns ChildShards and no NextShardIterator', async () => {
    const name = await k.create(uniqueName('children'), 1);
    const puts = [];
    for (let i = 0; i < 3; i += 1) puts.push(await k.put(name, `p${i}`, `k${i}`));
    await k.send(new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(0), NewStartingHashKey: HALF.toString() }));
    await k.send(new MergeShardsCommand({ StreamName: name, ShardToMerge: shardId(1), AdjacentShardToMerge: shardId(2) }));
    const shards = await k.shards(name);
    assertLineage(shards);

    const parent = await k.readShard(name, shardId(0));
    assert.deepEqual(
      parent.records.map((r) => [r.SequenceNumber, text(r.Data)]),
      puts.map((p, i) => [p.SequenceNumber, `p${i}`]),
      'the closed parent still serves its records',
    );
    assert.equal(parent.last.NextShardIterator, undefined);
    assert.deepEqual(parent.last.ChildShards, expectedChildShards(shards, shardId(0)));
    assert.equal(parent.last.ChildShards.length, 2);

    // Both parents of the merge lead to the same child, which lists both as ParentShards.
    for (const p of [shardId(1), shardId(2)]) {
      const { records, last } = await k.readShard(name, p);
      assert.deepEqual(records, []);
      assert.equal(last.NextShardIterator, undefined);
      assert.deepEqual(last.ChildShards, [
        {
          ShardId: shardId(3),
          ParentShards: [shardId(1), shardId(2)],
          HashKeyRange: { StartingHashKey: '0', EndingHashKey: HASH_MAX.toString() },
        },
      ]);
    }
    // An open shard has a next iterator and no ChildShards.
    const open = await k.readShard(name, shardId(3));
    assert.equal(open.last.ChildShards, undefined);
    assert.ok(open.last.NextShardIterator);
  });

  it('UpdateShardCount replies with StreamARN, CurrentShardCount and TargetShardCount and leaves even shards', async () => {
    const name = await k.create(uniqueName('usc'), 2);
    for (const [from, to] of [
      [2, 3],
      [3, 6],
      [6, 3],
    ]) {
      const out = await k.send(
        new UpdateShardCountCommand({ StreamName: name, TargetShardCount: to, ScalingType: 'UNIFORM_SCALING' }),
      );
      assert.equal(out.$metadata.httpStatusCode, 200);
      assert.equal(out.StreamName, name);
      assert.equal(out.StreamARN, streamArn(name));
      assert.equal(out.CurrentShardCount, from);
      assert.equal(out.TargetShardCount, to);
      const shards = await k.shards(name);
      assertLineage(shards);
      assert.deepEqual(
        shards
          .filter(isOpen)
          .sort((a, b) => (range(a)[0] < range(b)[0] ? -1 : 1))
          .map((s) => s.HashKeyRange),
        evenHashRanges(to),
        `the open shards after scaling to ${to} have even hash key ranges`,
      );
      assert.equal((await k.summary(name)).OpenShardCount, to);
    }
    // By StreamARN too.
    const out = await k.send(
      new UpdateShardCountCommand({ StreamARN: streamArn(name), TargetShardCount: 4, ScalingType: 'UNIFORM_SCALING' }),
    );
    assert.equal(out.CurrentShardCount, 3);
    assert.equal(out.TargetShardCount, 4);
    assert.equal(out.StreamARN, streamArn(name));
  });

  it('SplitShard and MergeShards errors: bad hash key, unknown or closed shards, non-adjacent shards, ON_DEMAND', async () => {
    const name = await k.create(uniqueName('rserr'), 3);
    const ranges = evenHashRanges(3);
    const split = (ShardToSplit, NewStartingHashKey, StreamName = name) =>
      k.send(new SplitShardCommand({ StreamName, ShardToSplit, NewStartingHashKey }));
    const merge = (ShardToMerge, AdjacentShardToMerge, StreamName = name) =>
      k.send(new MergeShardsCommand({ StreamName, ShardToMerge, AdjacentShardToMerge }));
    const start1 = big(ranges[1].StartingHashKey);
    const end1 = big(ranges[1].EndingHashKey);

    // NewStartingHashKey must be greater than StartingHashKey + 1 and less than EndingHashKey.
    for (const key of [start1, start1 + 1n, end1, end1 + 1n, 0n]) {
      await expectAwsError(split(shardId(1), key.toString()), 'InvalidArgumentException', {
        message: /NewStartingHashKey/,
      });
    }
    await expectAwsError(merge(shardId(0), shardId(2)), 'InvalidArgumentException', { message: /adjacent/ });
    await expectAwsError(split(shardId(9), ranges[0].EndingHashKey), 'ResourceNotFoundException');
    await expectAwsError(merge(shardId(0), shardId(9)), 'ResourceNotFoundException');
    await expectAwsError(split(shardId(0), '5', uniqueName('nope')), 'ResourceNotFoundException');
    await expectAwsError(merge(shardId(0), shardId(1), uniqueName('nope')), 'ResourceNotFoundException');
    assert.equal((await k.shards(name)).length, 3, 'nothing changed');

    // A shard that was already split or merged is not eligible again.
    await split(shardId(1), (start1 + 2n).toString());
    await expectAwsError(split(shardId(1), (start1 + 5n).toString()), 'ResourceInUseException', {
      message: /already been merged or split/,
    });
    await expectAwsError(merge(shardId(0), shardId(1)), 'ResourceInUseException', {
      message: /already been merged or split/,
    });

    // Resharding an ON_DEMAND stream is refused (the API reference lists ValidationException for these calls).
    const od = await k.create(uniqueName('od'), undefined, { StreamModeDetails: { StreamMode: 'ON_DEMAND' } });
    await expectAwsError(split(shardId(0), '5', od), 'ValidationException');
    await expectAwsError(merge(shardId(0), shardId(1), od), 'ValidationException');
    await expectAwsError(
      k.send(new UpdateShardCountCommand({ StreamName: od, TargetShardCount: 5, ScalingType: 'UNIFORM_SCALING' })),
      'ValidationException',
    );
  });

  it('UpdateShardCount limits: at most double, at least half, ten scalings per 24 h; unknown streams', async () => {
    const name = await k.create(uniqueName('usclim'), 4);
    const update = (TargetShardCount, StreamName = name) =>
      k.send(new UpdateShardCountCommand({ StreamName, TargetShardCount, ScalingType: 'UNIFORM_SCALING' }));
    await expectAwsError(update(9), 'LimitExceededException', { message: /more than double/ });
    await expectAwsError(update(1), 'LimitExceededException', { message: /less than half/ });
    await expectAwsError(update(4, uniqueName('nope')), 'ResourceNotFoundException');
    assert.equal((await k.summary(name)).OpenShardCount, 4);

    const small = await k.create(uniqueName('usc10'), 1);
    for (let i = 0; i < 10; i += 1) {
      const out = await update(i % 2 === 0 ? 2 : 1, small);
      assert.equal(out.TargetShardCount, i % 2 === 0 ? 2 : 1);
    }
    await expectAwsError(update(2, small), 'LimitExceededException', { message: /UpdateShardCount/ });
    assertLineage(await k.shards(small));
  });
});

describe('resharding while UPDATING and against the account shard limit (1 s state delay, --shard-limit 3)', () => {
  let eddy;
  let client;
  let k;

  before(async () => {
    eddy = await startEddy({ stateDelayMs: 1000, args: ['--shard-limits', 'off', '--shard-limit', '3'] });
    client = makeClient(eddy.endpoint);
    k = kinesisOps(client);
  });
  after(async () => {
    client?.destroy();
    await eddy?.cleanup();
  });

  it('a stream that is not ACTIVE refuses resharding with ResourceInUseException; past the limit LimitExceededException', async () => {
    const name = await k.create(uniqueName('busy'), 2);
    await expectAwsError(
      k.send(new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(0), NewStartingHashKey: '100' })),
      'ResourceInUseException',
      { message: /CREATING/ },
    );
    await k.waitActive(name);
    await k.send(new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(0), NewStartingHashKey: '100' }));
    assert.equal((await k.summary(name)).StreamStatus, 'UPDATING');
    await expectAwsError(
      k.send(new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(1), NewStartingHashKey: (HALF + 12345n).toString() })),
      'ResourceInUseException',
      { message: /UPDATING/ },
    );
    await expectAwsError(
      k.send(new MergeShardsCommand({ StreamName: name, ShardToMerge: shardId(2), AdjacentShardToMerge: shardId(3) })),
      'ResourceInUseException',
      { message: /UPDATING/ },
    );
    await expectAwsError(
      k.send(new UpdateShardCountCommand({ StreamName: name, TargetShardCount: 2, ScalingType: 'UNIFORM_SCALING' })),
      'ResourceInUseException',
      { message: /UPDATING/ },
    );
    // Writes keep working while UPDATING.
    assert.equal((await k.put(name, 'during', 'x', { ExplicitHashKey: '0' })).ShardId, shardId(2));
    await k.waitActive(name);
    assertLineage(await k.shards(name));

    // 3 open shards now, at the account limit of 3: growing further is refused.
    await expectAwsError(
      k.send(new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(1), NewStartingHashKey: (HALF + 12345n).toString() })),
      'LimitExceededException',
      { message: /shard limit/ },
    );
    await expectAwsError(
      k.send(new UpdateShardCountCommand({ StreamName: name, TargetShardCount: 4, ScalingType: 'UNIFORM_SCALING' })),
      'LimitExceededException',
      { message: /shard limit/ },
    );
    // Shrinking is allowed.
    const out = await k.send(
      new MergeShardsCommand({ StreamName: name, ShardToMerge: shardId(2), AdjacentShardToMerge: shardId(3) }),
    );
    assert.equal(out.$metadata.httpStatusCode, 200);
    await k.waitActive(name);
    assert.equal((await k.summary(name)).OpenShardCount, 2);
  });
});

describe('stream consumers (instant state changes)', () => {
  let eddy;
  let client;
  let k;

  before(async () => {
    eddy = await startEddy({ args: ['--shard-limits', 'off'] });
    client = makeClient(eddy.endpoint);
    k = kinesisOps(client);
  });
  after(async () => {
    client?.destroy();
    await eddy?.cleanup();
  });

  it('RegisterStreamConsumer, DescribeStreamConsumer (by ARN, by StreamARN and name), ListStreamConsumers, Deregister', async () => {
    const name = await k.create(uniqueName('cons'), 1);
    const t0 = Date.now();
    const c1 = await k.register(name, 'app-1');
    const t1 = Date.now();
    assert.equal(c1.ConsumerName, 'app-1');
    assert.match(c1.ConsumerARN, CONSUMER_ARN(name, 'app-1'));
    assert.equal(c1.ConsumerStatus, 'ACTIVE');
    assert.ok(c1.ConsumerCreationTimestamp instanceof Date);
    const created = c1.ConsumerCreationTimestamp.getTime();
    assert.ok(created >= t0 - 1000 && created <= t1 + 1000, 'creation time within the call');
    assert.equal(Number(c1.ConsumerARN.split(':').at(-1)), Math.floor(created / 1000), 'the ARN ends in creation secs');

    const byArn = (await k.send(new DescribeStreamConsumerCommand({ ConsumerARN: c1.ConsumerARN }))).ConsumerDescription;
    const expected = { ...c1, StreamARN: streamArn(name) };
    assert.deepEqual(byArn, expected);
    const byName = await k.send(new DescribeStreamConsumerCommand({ StreamARN: streamArn(name), ConsumerName: 'app-1' }));
    assert.deepEqual(byName.ConsumerDescription, expected);

    const others = [await k.register(name, 'app-2'), await k.register(name, 'app.3_x-y')];
    const all = [c1, ...others];
    const listed = await k.send(new ListStreamConsumersCommand({ StreamARN: streamArn(name) }));
    assert.equal(listed.NextToken, undefined);
    const sortByName = (list) => [...list].sort((a, b) => a.ConsumerName.localeCompare(b.ConsumerName));
    assert.deepEqual(sortByName(listed.Consumers), sortByName(all));

    // Paging with MaxResults and NextToken.
    const paged = [];
    let page = await k.send(new ListStreamConsumersCommand({ StreamARN: streamArn(name), MaxResults: 2 }));
    paged.push(...page.Consumers);
    assert.equal(page.Consumers.length, 2);
    assert.ok(page.NextToken);
    page = await k.send(
      new ListStreamConsumersCommand({ StreamARN: streamArn(name), MaxResults: 2, NextToken: page.NextToken }),
    );
    paged.push(...page.Consumers);
    assert.equal(page.NextToken, undefined);
    assert.deepEqual(sortByName(paged), sortByName(all));

    // Deregister by ARN and by StreamARN + name.
    await k.send(new DeregisterStreamConsumerCommand({ ConsumerARN: c1.ConsumerARN }));
    await k.send(new DeregisterStreamConsumerCommand({ StreamARN: streamArn(name), ConsumerName: 'app-2' }));
    await expectAwsError(k.send(new DescribeStreamConsumerCommand({ ConsumerARN: c1.ConsumerARN })), 'ResourceNotFoundException');
    await expectAwsError(
      k.send(new DescribeStreamConsumerCommand({ StreamARN: streamArn(name), ConsumerName: 'app-2' })),
      'ResourceNotFoundException',
    );
    const left = await k.send(new ListStreamConsumersCommand({ StreamARN: streamArn(name) }));
    assert.deepEqual(left.Consumers, [others[1]]);

    // A name can be registered again after deregistration; it is a new consumer.
    const again = await k.register(name, 'app-2');
    assert.equal(again.ConsumerStatus, 'ACTIVE');
  });

  it(
    'DescribeStreamSummary ConsumerCount counts the registered consumers',
    async () => {
      const name = await k.create(uniqueName('ccount'), 1);
      await k.register(name, 'a');
      await k.register(name, 'b');
      assert.equal((await k.summary(name)).ConsumerCount, 2);
    },
  );

  it('consumer errors: duplicate name, unknown stream or consumer, missing identifiers, 20 per stream', async () => {
    const name = await k.create(uniqueName('conserr'), 1);
    const first = await k.register(name, 'dup');
    await expectAwsError(k.register(name, 'dup'), 'ResourceInUseException', { message: /already exists/ });
    await expectAwsError(k.register(uniqueName('nope'), 'c'), 'ResourceNotFoundException');
    await expectAwsError(
      k.send(new DescribeStreamConsumerCommand({ StreamARN: streamArn(name), ConsumerName: 'missing' })),
      'ResourceNotFoundException',
    );
    // An ARN with the right name but another creation time names a consumer that no longer exists.
    const secs = Number(first.ConsumerARN.split(':').at(-1));
    const stale = first.ConsumerARN.replace(/:\d+$/, `:${secs - 100}`);
    await expectAwsError(k.send(new DescribeStreamConsumerCommand({ ConsumerARN: stale })), 'ResourceNotFoundException');
    await expectAwsError(k.send(new DeregisterStreamConsumerCommand({ ConsumerARN: stale })), 'ResourceNotFoundException');
    await expectAwsError(
      k.send(new DeregisterStreamConsumerCommand({ StreamARN: streamArn(name), ConsumerName: 'missing' })),
      'ResourceNotFoundException',
    );
    await expectAwsError(k.send(new DescribeStreamConsumerCommand({})), 'InvalidArgumentException');
    await expectAwsError(k.send(new DeregisterStreamConsumerCommand({ ConsumerName: 'dup' })), 'InvalidArgumentException');
    await expectAwsError(
      k.send(new ListStreamConsumersCommand({ StreamARN: streamArn(uniqueName('nope')) })),
      'ResourceNotFoundException',
    );

    for (let i = 1; i < 20; i += 1) await k.register(name, `c${i}`);
    await expectAwsError(k.register(name, 'c20'), 'LimitExceededException');
    const listed = await k.send(new ListStreamConsumersCommand({ StreamARN: streamArn(name) }));
    assert.equal(listed.Consumers.length, 20);

    // A stream with consumers is deleted only with EnforceConsumerDeletion, which removes them too.
    await expectAwsError(k.send(new DeleteStreamCommand({ StreamName: name })), 'ResourceInUseException');
    await k.send(new DeleteStreamCommand({ StreamName: name, EnforceConsumerDeletion: true }));
    await expectAwsError(k.send(new DescribeStreamConsumerCommand({ ConsumerARN: first.ConsumerARN })), 'ResourceNotFoundException');
  });
});

describe('consumer states (1 s state delay)', () => {
  let eddy;
  let client;
  let k;
  const subs = new Set();

  before(async () => {
    eddy = await startEddy({ stateDelayMs: 1000, args: ['--shard-limits', 'off'] });
    client = makeClient(eddy.endpoint);
    k = kinesisOps(client);
  });
  after(async () => {
    for (const s of subs) s.close();
    client?.destroy();
    await eddy?.cleanup();
  });

  const describeConsumer = async (ConsumerARN) =>
    (await k.send(new DescribeStreamConsumerCommand({ ConsumerARN }))).ConsumerDescription;

  it('a consumer is CREATING, then ACTIVE; SubscribeToShard meanwhile fails; Deregister makes it DELETING, then gone', async () => {
    const name = await k.create(uniqueName('states'), 1);
    await k.waitActive(name);
    const c = await k.register(name, 'slow');
    assert.equal(c.ConsumerStatus, 'CREATING');
    assert.equal((await describeConsumer(c.ConsumerARN)).ConsumerStatus, 'CREATING');
    await expectAwsError(
      Subscription.open(
        client,
        { ConsumerARN: c.ConsumerARN, ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } },
        subs,
      ),
      'ResourceInUseException',
      { message: /not in ACTIVE state/ },
    );
    await pollUntil(async () => (await describeConsumer(c.ConsumerARN)).ConsumerStatus === 'ACTIVE', {
      timeoutMs: 10_000,
      what: 'consumer ACTIVE',
    });
    const sub = await Subscription.open(
      client,
      { ConsumerARN: c.ConsumerARN, ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } },
      subs,
    );
    const put = await k.put(name, 'hello');
    await sub.untilRecords(1);
    assert.equal(sub.records[0].SequenceNumber, put.SequenceNumber);

    await k.send(new DeregisterStreamConsumerCommand({ ConsumerARN: c.ConsumerARN }));
    assert.equal((await describeConsumer(c.ConsumerARN)).ConsumerStatus, 'DELETING');
    await pollUntil(
      async () => {
        try {
          await describeConsumer(c.ConsumerARN);
          return false;
        } catch (err) {
          if (err.name === 'ResourceNotFoundException') return true;
          throw err;
        }
      },
      { timeoutMs: 10_000, what: 'the consumer to disappear' },
    );
    // The subscription of a consumer that is gone ends (a put wakes it at once).
    await k.put(name, 'after');
    const err = await sub.drain();
    if (err !== null) assert.equal(err.name, 'ResourceNotFoundException');
  });

  it(
    'a sixth registration while five consumers are CREATING fails with LimitExceededException',
    async () => {
      const name = await k.create(uniqueName('five'), 1);
      await k.waitActive(name);
      for (let i = 0; i < 5; i += 1) assert.equal((await k.register(name, `c${i}`)).ConsumerStatus, 'CREATING');
      await expectAwsError(k.register(name, 'c5'), 'LimitExceededException');
    },
  );
});

describe('SubscribeToShard over HTTP/2 (shard limits off, fsync)', () => {
  let eddy;
  let client;
  let k;
  const subs = new Set();
  const open = (input) => Subscription.open(client, input, subs);
  /** A stream of `shards` shards and `consumers` ACTIVE consumers; returns {name, arns}. */
  const setup = async (prefix, shards, consumers) => {
    const name = await k.create(uniqueName(prefix), shards);
    const arns = [];
    for (let i = 0; i < consumers; i += 1) arns.push((await k.register(name, `c${i}`)).ConsumerARN);
    return { name, arns };
  };
  /** Puts data `${prefix}${i}` for i in [from, to) one at a time; returns [{seq, data, pk, shard}]. */
  const putMany = async (name, prefix, from, to, extra = {}) => {
    const out = [];
    for (let i = from; i < to; i += 1) {
      const r = await k.put(name, `${prefix}${i}`, `pk${i}`, extra);
      out.push({ seq: r.SequenceNumber, data: `${prefix}${i}`, pk: `pk${i}`, shard: r.ShardId });
    }
    return out;
  };

  before(async () => {
    eddy = await startEddy({ args: ['--shard-limits', 'off'] });
    client = makeClient(eddy.endpoint);
    k = kinesisOps(client);
  });
  after(async () => {
    for (const s of subs) s.close();
    client?.destroy();
    await eddy?.cleanup();
  });

  it('send() resolves at once with the initial response on an HTTP/2 stream, before any record exists', async () => {
    const { arns } = await setup('initial', 1, 1);
    const seen = [];
    const observed = makeClient(eddy.endpoint);
    try {
      observed.middlewareStack.add(
        (next) => async (args) => {
          const result = await next(args);
          const body = result.response?.body;
          seen.push({
            kind: body?.constructor?.name,
            alpn: body?.session?.alpnProtocol,
            status: result.response?.statusCode,
            type: result.response?.headers?.['content-type'],
          });
          return result;
        },
        { step: 'deserialize', priority: 'low', name: 'fanoutObserveTransport' },
      );
      const sub = await Subscription.open(
        observed,
        { ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'TRIM_HORIZON' } },
        subs,
      );
      // The heartbeat comes only after 5 s: resolving well before proves the initial-response event.
      assert.ok(sub.sendMs < 2_000, `send() took ${sub.sendMs.toFixed(0)} ms`);
      assert.equal(sub.output.$metadata.httpStatusCode, 200);
      assert.deepEqual(seen, [
        { kind: 'ClientHttp2Stream', alpn: 'h2c', status: 200, type: 'application/vnd.amazon.eventstream' },
      ]);
      sub.close();
    } finally {
      observed.destroy();
    }
  });

  it('records put after subscribing arrive in order with ContinuationSequenceNumber and MillisBehindLatest', async () => {
    const { name, arns } = await setup('order', 1, 1);
    const sub = await open({ ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } });
    const t0 = Date.now();
    const expected = await putMany(name, 'r', 0, 20);
    const batch = await k.send(
      new PutRecordsCommand({
        StreamName: name,
        Records: Array.from({ length: 10 }, (_, i) => ({ Data: Buffer.from(`b${i}`), PartitionKey: `bk${i}` })),
      }),
    );
    assert.equal(batch.FailedRecordCount, 0);
    batch.Records.forEach((r, i) => expected.push({ seq: r.SequenceNumber, data: `b${i}`, pk: `bk${i}` }));
    const t1 = Date.now();

    await sub.untilRecords(expected.length);
    assertEventRecords(sub, expected, 'every record once, in sequence order');
    for (const r of sub.records) {
      assert.ok(r.ApproximateArrivalTimestamp instanceof Date);
      const at = r.ApproximateArrivalTimestamp.getTime();
      assert.ok(at >= t0 - 1000 && at <= t1 + 1000, 'arrival time within the puts');
    }
    for (const ev of sub.events) {
      assert.ok(ev.Records.length > 0, 'no empty events while records flow');
      assert.equal(ev.ContinuationSequenceNumber, ev.Records.at(-1).SequenceNumber);
      assert.ok(Number.isInteger(ev.MillisBehindLatest) && ev.MillisBehindLatest >= 0);
      assert.equal(ev.ChildShards, undefined);
    }
    assert.equal(sub.events.at(-1).MillisBehindLatest, 0, 'caught up at the end');
    sub.close();
  });

  it('StartingPosition TRIM_HORIZON, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP and LATEST', async () => {
    const { name, arns } = await setup('startpos', 1, 5);
    const recs = await putMany(name, 's', 0, 6);
    const stored = (await k.readShard(name, shardId(0))).records;
    const at = stored[3].ApproximateArrivalTimestamp;
    // AT_TIMESTAMP starts at the first record that arrived at or after the timestamp.
    const fromTime = stored.findIndex((r) => r.ApproximateArrivalTimestamp.getTime() >= at.getTime());
    const cases = [
      [{ Type: 'TRIM_HORIZON' }, 0],
      [{ Type: 'AT_SEQUENCE_NUMBER', SequenceNumber: recs[2].seq }, 2],
      [{ Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: recs[2].seq }, 3],
      [{ Type: 'AT_TIMESTAMP', Timestamp: at }, fromTime],
    ];
    const opened = await Promise.all(
      cases.map(([StartingPosition], i) => open({ ConsumerARN: arns[i], ShardId: shardId(0), StartingPosition })),
    );
    const latest = await open({ ConsumerARN: arns[4], ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } });
    const more = await putMany(name, 's', 6, 7);
    const all = [...recs, ...more];
    for (const [i, [pos, from]] of cases.entries()) {
      await opened[i].untilRecords(all.length - from);
      assertEventRecords(opened[i], all.slice(from), `${pos.Type}`);
    }
    await latest.untilRecords(1);
    assertEventRecords(latest, more, 'LATEST delivers only what was put after subscribing');
    for (const s of [...opened, latest]) s.close();
  });

  it('SubscribeToShard errors: unknown consumer or shard, a second call within 5 s, bad starting positions', async () => {
    const { name, arns } = await setup('suberr', 2, 2);
    const rec = await k.put(name, 'x', 'p', { ExplicitHashKey: '0' });
    const input = (extra) => ({ ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'LATEST' }, ...extra });
    const unknownArn = arns[0].replace('/consumer/c0:', '/consumer/nobody:');
    await expectAwsError(open(input({ ConsumerARN: unknownArn })), 'ResourceNotFoundException');
    await expectAwsError(open(input({ ShardId: shardId(7) })), 'ResourceNotFoundException');
    await expectAwsError(
      open(input({ StartingPosition: { Type: 'AT_SEQUENCE_NUMBER' } })),
      'InvalidArgumentException',
    );
    await expectAwsError(
      open(input({ StartingPosition: { Type: 'LATEST', SequenceNumber: rec.SequenceNumber } })),
      'InvalidArgumentException',
    );
    await expectAwsError(
      open(input({ StartingPosition: { Type: 'AT_TIMESTAMP' } })),
      'InvalidArgumentException',
    );
    // A sequence number of shard 0 used on shard 1.
    await expectAwsError(
      open(input({ ShardId: shardId(1), StartingPosition: { Type: 'AT_SEQUENCE_NUMBER', SequenceNumber: rec.SequenceNumber } })),
      'InvalidArgumentException',
    );

    const first = await open(input());
    await expectAwsError(open(input()), 'ResourceInUseException', { message: /5 seconds/ });
    // Other consumers and other shards of the same consumer are independent.
    const otherConsumer = await open(input({ ConsumerARN: arns[1] }));
    const otherShard = await open(input({ ShardId: shardId(1) }));
    for (const s of [first, otherConsumer, otherShard]) s.close();
  });

  it(
    'within 5 s of a successful call a new subscription is refused even when the client cancelled the first',
    async () => {
      const { arns } = await setup('cancel', 1, 1);
      const input = { ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } };
      const first = await open(input);
      const firstAt = Date.now();
      first.close();
      // Every attempt in the next second must be refused (polled: the cancel reaches the server at some point).
      let attempts = 0;
      while (Date.now() - firstAt < 1_000) {
        attempts += 1;
        await expectAwsError(open(input), 'ResourceInUseException', { message: /5 seconds/ });
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(attempts >= 2);
    },
  );

  it('continuing from the last ContinuationSequenceNumber in a second subscription loses and duplicates nothing', async () => {
    const { name, arns } = await setup('cont', 1, 1);
    const input = { ConsumerARN: arns[0], ShardId: shardId(0) };
    const first = await open({ ...input, StartingPosition: { Type: 'TRIM_HORIZON' } });
    const firstAt = Date.now();
    const expected = await putMany(name, 'c', 0, 30);
    // Process part of the stream, then stop reading the first subscription (it stays open).
    await first.untilRecords(15);
    const processed = [...first.records];
    const cont = first.events.at(-1).ContinuationSequenceNumber;
    assert.equal(cont, processed.at(-1).SequenceNumber);
    expected.push(...(await putMany(name, 'c', 30, 60)));

    // Within 5 s of the first call a new one is refused; poll until it takes over.
    let refused = 0;
    const second = await pollUntil(
      async () => {
        try {
          return await open({ ...input, StartingPosition: { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: cont } });
        } catch (err) {
          if (err.name !== 'ResourceInUseException') throw err;
          refused += 1;
          return null;
        }
      },
      { timeoutMs: 10_000, intervalMs: 200, what: 'the second subscription to be accepted' },
    );
    assert.ok(refused > 0, 'a call within 5 s of the first was refused');
    assert.ok(Date.now() - firstAt >= 4_000, 'the second subscription was accepted only after the 5 s window');
    await second.untilRecords(expected.length - processed.length);
    const seqs = [...processed, ...second.records].map((r) => r.SequenceNumber);
    assert.equal(new Set(seqs).size, seqs.length, 'no record twice');
    assert.deepEqual(
      [...processed, ...second.records].map((r) => [r.SequenceNumber, text(r.Data)]),
      expected.map((e) => [e.seq, e.data]),
      'both subscriptions together deliver every record once, in order',
    );
    // The older subscription ends (cleanly or with ResourceInUseException, as the API reference allows).
    const err = await first.drain();
    if (err !== null) assert.equal(err.name, 'ResourceInUseException');
    second.close();
  });

  /** Set by the heartbeat test for the todo test after it. */
  let idle = null;

  it('an idle subscription gets a heartbeat event: no records, MillisBehindLatest 0, a ContinuationSequenceNumber', async () => {
    const { name, arns } = await setup('idle', 1, 1);
    const sub = await open({ ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'TRIM_HORIZON' } });
    const ev = await sub.next(HEARTBEAT_DEADLINE_MS);
    assert.ok(ev, 'the subscription is still open');
    assert.deepEqual(ev.Records, []);
    assert.equal(ev.MillisBehindLatest, 0);
    assert.match(ev.ContinuationSequenceNumber, SEQUENCE);
    assert.equal(ev.ChildShards, undefined);
    idle = { name, arn: arns[0], cont: ev.ContinuationSequenceNumber, sub };
  });

  it(
    'AFTER_SEQUENCE_NUMBER = the heartbeat ContinuationSequenceNumber of an empty shard loses no later record',
    async () => {
      assert.ok(idle, 'the heartbeat test ran');
      const [rec] = await putMany(idle.name, 'first', 0, 1);
      await idle.sub.untilRecords(1);
      idle.sub.close();
      // The first subscription began more than 5 s ago: a new one takes over at once.
      const sub = await open({
        ConsumerARN: idle.arn,
        ShardId: shardId(0),
        StartingPosition: { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: idle.cont },
      });
      // Records already there are pushed right after the initial response.
      const ev = await sub.next(3_000);
      sub.close();
      assert.deepEqual(
        ev.Records.map((r) => r.SequenceNumber),
        [rec.seq],
      );
    },
  );

  it('a split while subscribed: the records, then an event with ChildShards, then the end of the stream', async () => {
    const { name, arns } = await setup('splitsub', 1, 2);
    const sub = await open({ ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } });
    const expected = await putMany(name, 'x', 0, 5);
    await sub.untilRecords(5);
    await k.send(new SplitShardCommand({ StreamName: name, ShardToSplit: shardId(0), NewStartingHashKey: HALF.toString() }));
    const shards = await k.shards(name);
    const children = expectedChildShards(shards, shardId(0));
    assert.equal(children.length, 2);

    const last = await sub.until((ev) => ev.ChildShards !== undefined, HEARTBEAT_DEADLINE_MS, 'ChildShards');
    assert.deepEqual(last.ChildShards, children);
    assert.deepEqual(last.Records, []);
    assert.equal(last.MillisBehindLatest, 0);
    assertEventRecords(sub, expected, 'the records of the parent, once each');
    assert.equal(await sub.next(5_000), null, 'the subscription ends after the ChildShards event');
    assert.ok(big(last.ContinuationSequenceNumber) <= big(shards[0].SequenceNumberRange.EndingSequenceNumber));

    // A new subscription to the closed parent delivers its records and the ChildShards at once.
    const replay = await open({ ConsumerARN: arns[1], ShardId: shardId(0), StartingPosition: { Type: 'TRIM_HORIZON' } });
    const end = await replay.until((ev) => ev.ChildShards !== undefined, 5_000, 'ChildShards');
    assertEventRecords(replay, expected, 'the closed parent replays its records');
    assert.deepEqual(end.ChildShards, children);
    assert.equal(await replay.next(5_000), null);

    // The children carry on: a child subscription from TRIM_HORIZON gets the new writes.
    const child = await open({ ConsumerARN: arns[1], ShardId: shardId(2), StartingPosition: { Type: 'TRIM_HORIZON' } });
    const [after] = await putMany(name, 'child', 0, 1, { ExplicitHashKey: HASH_MAX.toString() });
    assert.equal(after.shard, shardId(2));
    await child.untilRecords(1);
    assertEventRecords(child, [after]);
    child.close();
  });

  it('50 concurrent subscriptions (5 consumers x 10 shards) each receive their shard records in order', async () => {
    const shards = 10;
    const { name, arns } = await setup('fifty', shards, 5);
    const pairs = arns.flatMap((arn) => Array.from({ length: shards }, (_, s) => ({ arn, shard: s })));
    const opened = await Promise.all(
      pairs.map(({ arn, shard }) =>
        open({ ConsumerARN: arn, ShardId: shardId(shard), StartingPosition: { Type: 'LATEST' } }),
      ),
    );
    assert.equal(opened.length, 50);
    const ranges = evenHashRanges(shards);
    const perShard = Array.from({ length: shards }, () => []);
    const puts = [];
    for (let round = 0; round < 3; round += 1) {
      for (let s = 0; s < shards; s += 1) {
        puts.push(
          k.put(name, `s${s}-r${round}`, `pk${s}`, { ExplicitHashKey: ranges[s].StartingHashKey }).then((r) => {
            assert.equal(r.ShardId, shardId(s));
            return { s, round, seq: r.SequenceNumber };
          }),
        );
      }
      // Rounds are sequential so that each shard's order is known; shards within a round run concurrently.
      for (const p of await Promise.all(puts.splice(0))) perShard[p.s][p.round] = p.seq;
    }
    await Promise.all(opened.map((sub) => sub.untilRecords(3, 20_000)));
    opened.forEach((sub, i) => {
      const s = pairs[i].shard;
      assert.deepEqual(
        sub.records.map((r) => [r.SequenceNumber, text(r.Data)]),
        [0, 1, 2].map((round) => [perShard[s][round], `s${s}-r${round}`]),
        `subscription ${i} (consumer ${pairs[i].arn.split('/').at(-1)}, shard ${s})`,
      );
    });
    for (const sub of opened) sub.close();
  });

  it('SIGTERM with subscriptions open: eddy exits with status 0 and no sanitizer report', async () => {
    const { name, arns } = await setup('stop', 2, 1);
    const a = await open({ ConsumerARN: arns[0], ShardId: shardId(0), StartingPosition: { Type: 'LATEST' } });
    await open({ ConsumerARN: arns[0], ShardId: shardId(1), StartingPosition: { Type: 'LATEST' } });
    await k.put(name, 'last', 'p', { ExplicitHashKey: '0' });
    await a.untilRecords(1);
    const exit = await eddy.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, eddy.stderr);
    assert.doesNotMatch(eddy.stderr, /ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:/);
  });
});
