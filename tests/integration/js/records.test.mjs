// Data-plane integration tests for eddy (PutRecord, PutRecords, GetShardIterator, GetRecords), driven
// through the AWS SDK for JavaScript v3 (HTTP/2 to http:// endpoints). Expected values follow the AWS
// Kinesis API reference; where eddy differs, the test keeps the AWS expectation and is marked `todo` with
// the reason.
//
// Per-shard throughput limits are on by default, so the functional tests each use their own stream and
// read through getRecords(), which retries (with a deadline) only on ProvisionedThroughputExceededException.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  CreateStreamCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  UpdateMaxRecordSizeCommand,
} from '@aws-sdk/client-kinesis';
import {
  ACCOUNT,
  evenHashRanges,
  expectAwsError,
  makeClient,
  pollUntil,
  shardId,
  startEddy,
  streamArn,
  uniqueName,
} from './helpers.mjs';

const MIB = 1024 * 1024;
const HASH_MAX = (1n << 128n) - 1n;
const SEQUENCE = /^\d{56,57}$/;
const THROTTLED = 'ProvisionedThroughputExceededException';

/** MD5 of the UTF-8 partition key as a big-endian 128-bit integer: the Kinesis hash key. */
const md5HashKey = (pk) => BigInt(`0x${createHash('md5').update(pk, 'utf8').digest('hex')}`);

/** The ShardId whose HashKeyRange contains `key`, among `shards` (ListShards output). */
function shardOf(shards, key) {
  const sh = shards.find(
    (s) => BigInt(s.HashKeyRange.StartingHashKey) <= key && key <= BigInt(s.HashKeyRange.EndingHashKey),
  );
  assert.ok(sh, `no shard covers hash key ${key}`);
  return sh.ShardId;
}

/** Asserts byte equality without dumping megabytes on failure. */
function assertBytes(actual, expected, what = 'Data') {
  assert.ok(actual instanceof Uint8Array, `${what}: expected a Uint8Array, got ${actual?.constructor?.name}`);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (!a.equals(e)) {
    let i = 0;
    while (i < a.length && i < e.length && a[i] === e[i]) i += 1;
    assert.fail(`${what}: got ${a.length} bytes, expected ${e.length}; first difference at byte ${i}`);
  }
}

function assertIncreasing(seqs, what = 'sequence numbers') {
  for (const s of seqs) assert.match(s, SEQUENCE, `${what}: ${s} is not a 56-57 digit decimal`);
  for (let i = 1; i < seqs.length; i += 1) {
    assert.ok(BigInt(seqs[i]) > BigInt(seqs[i - 1]), `${what}: #${i} ${seqs[i]} is not above ${seqs[i - 1]}`);
  }
}

function assertTimeBetween(date, fromMs, toMs) {
  assert.ok(date instanceof Date, `expected a Date, got ${date}`);
  const t = date.getTime();
  assert.ok(t >= fromMs - 1000 && t <= toMs + 1000, `${date.toISOString()} not within the call window`);
}

/** Data-plane shortcuts bound to one client. */
function dataPlane(client) {
  const send = (cmd) => client.send(cmd);
  const dp = {
    send,
    async create(name, ShardCount = 1, extra = {}) {
      await send(new CreateStreamCommand({ StreamName: name, ShardCount, ...extra }));
      return name;
    },
    async shards(name) {
      return (await send(new ListShardsCommand({ StreamName: name }))).Shards;
    },
    put(name, Data, PartitionKey, extra = {}) {
      return send(new PutRecordCommand({ StreamName: name, Data, PartitionKey, ...extra }));
    },
    puts(name, Records, extra = {}) {
      return send(new PutRecordsCommand({ StreamName: name, Records, ...extra }));
    },
    async iterator(name, ShardId, ShardIteratorType, extra = {}) {
      const out = await send(new GetShardIteratorCommand({ StreamName: name, ShardId, ShardIteratorType, ...extra }));
      return out.ShardIterator;
    },
    /** GetRecords; retries only on throttling (5 calls/s per shard), with a deadline. */
    async getRecords(ShardIterator, Limit, extra = {}) {
      const end = Date.now() + 5_000;
      for (;;) {
        try {
          return await send(new GetRecordsCommand({ ShardIterator, Limit, ...extra }));
        } catch (err) {
          if (err.name !== THROTTLED || Date.now() > end) throw err;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    /** Every record from `type` on, following NextShardIterator until a read returns nothing. */
    async readAll(name, ShardId, type = 'TRIM_HORIZON', extra = {}) {
      let it = await dp.iterator(name, ShardId, type, extra);
      const records = [];
      for (let pages = 0; pages < 100; pages += 1) {
        const out = await dp.getRecords(it);
        records.push(...out.Records);
        if (out.Records.length === 0) return records;
        it = out.NextShardIterator;
      }
      throw new Error('readAll: too many pages');
    },
  };
  return dp;
}

describe('eddy data plane through @aws-sdk/client-kinesis (default server: shard limits on, fsync)', () => {
  let eddy;
  let kinesis;
  let dp;

  before(async () => {
    eddy = await startEddy();
    kinesis = makeClient(eddy.endpoint);
    dp = dataPlane(kinesis);
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });

  describe('PutRecord and PutRecords', () => {
    it('PutRecord returns ShardId, a SequenceNumber and EncryptionType NONE, by StreamName or StreamARN', async () => {
      const name = await dp.create(uniqueName('put1'), 1);
      const a = await dp.put(name, Buffer.from('hello'), 'pk');
      assert.equal(a.$metadata.httpStatusCode, 200);
      assert.equal(a.ShardId, shardId(0));
      assert.match(a.SequenceNumber, SEQUENCE);
      assert.equal(a.EncryptionType, 'NONE');
      const b = await dp.send(
        new PutRecordCommand({ StreamARN: streamArn(name), Data: Buffer.from('world'), PartitionKey: 'pk' }),
      );
      assert.equal(b.ShardId, shardId(0));
      assert.equal(b.EncryptionType, 'NONE');
      assertIncreasing([a.SequenceNumber, b.SequenceNumber]);
      const got = await dp.readAll(name, shardId(0));
      assert.deepEqual(
        got.map((r) => [r.SequenceNumber, Buffer.from(r.Data).toString(), r.PartitionKey]),
        [
          [a.SequenceNumber, 'hello', 'pk'],
          [b.SequenceNumber, 'world', 'pk'],
        ],
      );
    });

    it('PutRecords returns one result per record, in request order, and FailedRecordCount 0', async () => {
      const name = await dp.create(uniqueName('puts'), 2);
      const records = Array.from({ length: 20 }, (_, i) => ({
        Data: Buffer.from(`r${i}`),
        PartitionKey: `key-${i}`,
      }));
      const out = await dp.puts(name, records);
      assert.equal(out.$metadata.httpStatusCode, 200);
      assert.equal(out.FailedRecordCount, 0);
      assert.equal(out.EncryptionType, 'NONE');
      assert.equal(out.Records.length, records.length);
      for (const r of out.Records) {
        assert.match(r.SequenceNumber, SEQUENCE);
        assert.match(r.ShardId, /^shardId-00000000000[01]$/);
        assert.equal(r.ErrorCode, undefined);
        assert.equal(r.ErrorMessage, undefined);
      }
      // Each result names the record at its index: read both shards back and match by sequence number.
      const bySeq = new Map();
      for (const sh of [shardId(0), shardId(1)]) {
        for (const r of await dp.readAll(name, sh)) bySeq.set(r.SequenceNumber, { ...r, shard: sh });
      }
      assert.equal(bySeq.size, records.length);
      out.Records.forEach((res, i) => {
        const stored = bySeq.get(res.SequenceNumber);
        assert.ok(stored, `record ${i} not found by its sequence number`);
        assert.equal(stored.shard, res.ShardId);
        assert.equal(Buffer.from(stored.Data).toString(), `r${i}`);
        assert.equal(stored.PartitionKey, `key-${i}`);
      });
    });

    it('PutRecords accepts StreamARN instead of StreamName', async () => {
      const name = await dp.create(uniqueName('putsarn'), 1);
      const out = await dp.send(
        new PutRecordsCommand({ StreamARN: streamArn(name), Records: [{ Data: Buffer.from('x'), PartitionKey: 'p' }] }),
      );
      assert.equal(out.FailedRecordCount, 0);
      assert.equal(out.Records[0].ShardId, shardId(0));
    });

    it('sequence numbers are 56-57 digit decimals, strictly increasing within a shard across and within calls', async () => {
      const name = await dp.create(uniqueName('seq'), 1);
      const seqs = [];
      for (let i = 0; i < 5; i += 1) {
        seqs.push((await dp.put(name, Buffer.from(`single-${i}`), `pk-${i}`)).SequenceNumber);
      }
      for (let call = 0; call < 3; call += 1) {
        const out = await dp.puts(
          name,
          Array.from({ length: 50 }, (_, i) => ({ Data: Buffer.from(`batch-${call}-${i}`), PartitionKey: `k${i}` })),
        );
        assert.equal(out.FailedRecordCount, 0);
        assertIncreasing(
          out.Records.map((r) => r.SequenceNumber),
          `within PutRecords call ${call}`,
        );
        seqs.push(...out.Records.map((r) => r.SequenceNumber));
      }
      assertIncreasing(seqs, 'across calls');
      const stored = await dp.readAll(name, shardId(0));
      assert.deepEqual(
        stored.map((r) => r.SequenceNumber),
        seqs,
        'GetRecords returns the records in sequence order with the numbers PutRecord(s) returned',
      );
    });

    it('SequenceNumberForOrdering: the new record gets a larger sequence number than the one given', async () => {
      const name = await dp.create(uniqueName('ordering'), 1);
      let prev = (await dp.put(name, Buffer.from('0'), 'same')).SequenceNumber;
      for (let i = 1; i < 5; i += 1) {
        const out = await dp.put(name, Buffer.from(String(i)), 'same', { SequenceNumberForOrdering: prev });
        assert.ok(BigInt(out.SequenceNumber) > BigInt(prev));
        prev = out.SequenceNumber;
      }
    });
  });

  describe('routing by hash key', () => {
    for (const n of [3, 4]) {
      it(`ExplicitHashKey at every shard boundary of a ${n}-shard stream (and 0, 2^128-1) picks the covering shard`, async () => {
        const name = await dp.create(uniqueName(`ehk${n}`), n);
        const shards = await dp.shards(name);
        assert.deepEqual(
          shards.map((s) => s.HashKeyRange),
          evenHashRanges(n),
        );
        const cases = [];
        for (const [i, s] of shards.entries()) {
          cases.push({ key: s.HashKeyRange.StartingHashKey, shard: shardId(i) });
          cases.push({ key: s.HashKeyRange.EndingHashKey, shard: shardId(i) });
        }
        cases.push({ key: '0', shard: shardId(0) }, { key: HASH_MAX.toString(), shard: shardId(n - 1) });

        // One PutRecord per boundary ...
        for (const c of cases) {
          const out = await dp.put(name, Buffer.from(`single ${c.key}`), 'ignored-by-ehk', { ExplicitHashKey: c.key });
          assert.equal(out.ShardId, c.shard, `PutRecord ExplicitHashKey ${c.key}`);
        }
        // ... and all of them in one PutRecords.
        const out = await dp.puts(
          name,
          cases.map((c) => ({ Data: Buffer.from(`batch ${c.key}`), PartitionKey: 'ignored-by-ehk', ExplicitHashKey: c.key })),
        );
        assert.equal(out.FailedRecordCount, 0);
        assert.deepEqual(
          out.Records.map((r) => r.ShardId),
          cases.map((c) => c.shard),
        );
        // The records really are stored in those shards.
        for (let i = 0; i < n; i += 1) {
          const keys = cases.filter((c) => c.shard === shardId(i)).map((c) => c.key);
          const stored = await dp.readAll(name, shardId(i));
          assert.deepEqual(
            stored.map((r) => Buffer.from(r.Data).toString()),
            [...keys.map((k) => `single ${k}`), ...keys.map((k) => `batch ${k}`)],
            `contents of ${shardId(i)}`,
          );
        }
      });
    }

    it('partition keys route by MD5 (big-endian 128-bit) to the shard whose range contains the hash', async () => {
      const name = await dp.create(uniqueName('md5'), 4);
      const shards = await dp.shards(name);
      const keys = [
        ...Array.from({ length: 200 }, (_, i) => `user-${i}`),
        'a',
        'é',
        'ключ',
        '键值',
        '😀 emoji key',
        ' leading and trailing spaces ',
        'x'.repeat(256),
      ];
      const expected = keys.map((k) => shardOf(shards, md5HashKey(k)));
      assert.equal(new Set(expected).size, 4, 'the keys cover every shard');
      const out = await dp.puts(
        name,
        keys.map((k, i) => ({ Data: Buffer.from(String(i)), PartitionKey: k })),
      );
      assert.equal(out.FailedRecordCount, 0);
      out.Records.forEach((r, i) => assert.equal(r.ShardId, expected[i], `PutRecords partition key ${JSON.stringify(keys[i])}`));
      for (const i of [0, 1, 200, 201, 202, 203, 204, 205, 206]) {
        const single = await dp.put(name, Buffer.from('single'), keys[i]);
        assert.equal(single.ShardId, expected[i], `PutRecord partition key ${JSON.stringify(keys[i])}`);
      }
      for (const s of shards) {
        for (const r of await dp.readAll(name, s.ShardId)) {
          assert.equal(s.ShardId, shardOf(shards, md5HashKey(r.PartitionKey)), `stored ${JSON.stringify(r.PartitionKey)}`);
        }
      }
    });

    it('ExplicitHashKey overrides the partition key hash', async () => {
      const name = await dp.create(uniqueName('override'), 4);
      const shards = await dp.shards(name);
      const pk = 'always-the-same-key';
      const natural = shardOf(shards, md5HashKey(pk));
      for (const s of shards) {
        const out = await dp.put(name, Buffer.from('x'), pk, { ExplicitHashKey: s.HashKeyRange.StartingHashKey });
        assert.equal(out.ShardId, s.ShardId);
      }
      assert.equal((await dp.put(name, Buffer.from('x'), pk)).ShardId, natural);
    });
  });

  describe('request limits', () => {
    it('PartitionKey must be 1..256 characters (ValidationException otherwise)', async () => {
      const name = await dp.create(uniqueName('pklen'), 1);
      const data = Buffer.from('d');
      assert.equal((await dp.put(name, data, 'k')).ShardId, shardId(0));
      assert.equal((await dp.put(name, data, 'k'.repeat(256))).ShardId, shardId(0));
      await expectAwsError(dp.put(name, data, ''), 'ValidationException');
      await expectAwsError(dp.put(name, data, 'k'.repeat(257)), 'ValidationException');
      await expectAwsError(dp.puts(name, [{ Data: data, PartitionKey: '' }]), 'ValidationException');
      await expectAwsError(
        dp.puts(name, [
          { Data: data, PartitionKey: 'ok' },
          { Data: data, PartitionKey: 'k'.repeat(257) },
        ]),
        'ValidationException',
      );
      assert.equal((await dp.readAll(name, shardId(0))).length, 2, 'rejected requests store nothing');
    });

    it('the PartitionKey limit counts characters, not UTF-8 bytes (256 × "é" is accepted)', async () => {
      const name = await dp.create(uniqueName('pkchars'), 1);
      const out = await dp.put(name, Buffer.from('d'), 'é'.repeat(256));
      assert.equal(out.ShardId, shardId(0));
      const [stored] = await dp.readAll(name, shardId(0));
      assert.equal(stored.PartitionKey, 'é'.repeat(256));
    });

    it('Data larger than the 1 MiB default maximum record size is a ValidationException', async () => {
      const name = await dp.create(uniqueName('toobig'), 1);
      const big = Buffer.alloc(MIB + 1, 7);
      await expectAwsError(dp.put(name, big, 'k'), 'ValidationException');
      await expectAwsError(dp.puts(name, [{ Data: big, PartitionKey: 'k' }]), 'ValidationException');
      assert.equal((await dp.readAll(name, shardId(0))).length, 0);
    });

    it('a record of exactly 1 MiB (data + partition key) is accepted and round-trips', async () => {
      const name = await dp.create(uniqueName('onemib'), 1);
      const pk = 'one-mib';
      const data = randomBytes(MIB - pk.length);
      const out = await dp.put(name, data, pk);
      const [stored, ...rest] = await dp.readAll(name, shardId(0));
      assert.equal(rest.length, 0);
      assert.equal(stored.SequenceNumber, out.SequenceNumber);
      assert.equal(stored.PartitionKey, pk);
      assertBytes(stored.Data, data);
    });

    it(
      'UpdateMaxRecordSize raises the record limit (a 1.5 MiB record is accepted, 2 MiB + 1 is not)',
      async () => {
        const name = await dp.create(uniqueName('maxsize'), 1);
        await dp.send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 2048 }));
        const data = randomBytes(1.5 * MIB);
        const out = await dp.put(name, data, 'big');
        assert.equal(out.ShardId, shardId(0));
        await expectAwsError(dp.put(name, Buffer.alloc(2 * MIB + 1), 'big'), 'ValidationException');
        const [stored] = await dp.readAll(name, shardId(0));
        assertBytes(stored.Data, data);
      },
    );

    it('PutRecords takes 1..500 records (ValidationException for 0 or 501)', async () => {
      const name = await dp.create(uniqueName('count'), 1);
      const rec = (i) => ({ Data: Buffer.from(String(i)), PartitionKey: `p${i}` });
      await expectAwsError(dp.puts(name, []), 'ValidationException');
      await expectAwsError(
        dp.puts(name, Array.from({ length: 501 }, (_, i) => rec(i))),
        'ValidationException',
      );
      const out = await dp.puts(name, Array.from({ length: 500 }, (_, i) => rec(i)));
      assert.equal(out.Records.length, 500);
      assert.equal(out.FailedRecordCount, 0);
    });

    it('a PutRecords payload above 5 MiB is an InvalidArgumentException and stores nothing', async () => {
      const name = await dp.create(uniqueName('fivemib'), 6);
      const shards = await dp.shards(name);
      // Six records of just under 1 MiB, one per shard (so no shard budget is involved).
      const records = shards.map((s, i) => ({
        Data: Buffer.alloc(MIB - 16, i),
        PartitionKey: `p${i}`,
        ExplicitHashKey: s.HashKeyRange.StartingHashKey,
      }));
      await expectAwsError(dp.puts(name, records), 'InvalidArgumentException');
      for (const s of shards) assert.equal((await dp.readAll(name, s.ShardId)).length, 0);
    });

    it('a PutRecords payload of exactly 5 MiB (data + partition keys) is accepted', async () => {
      const name = await dp.create(uniqueName('exact5'), 5);
      const shards = await dp.shards(name);
      const records = shards.map((s, i) => ({
        Data: Buffer.alloc(MIB - 2, i + 1),
        PartitionKey: `p${i}`,
        ExplicitHashKey: s.HashKeyRange.StartingHashKey,
      }));
      const out = await dp.puts(name, records);
      assert.equal(out.FailedRecordCount, 0);
      assert.deepEqual(
        out.Records.map((r) => r.ShardId),
        shards.map((s) => s.ShardId),
      );
    });

    it('ExplicitHashKey above 2^128-1 is an InvalidArgumentException', async () => {
      const name = await dp.create(uniqueName('ehkbig'), 2);
      const tooBig = (HASH_MAX + 1n).toString();
      await expectAwsError(dp.put(name, Buffer.from('x'), 'k', { ExplicitHashKey: tooBig }), 'InvalidArgumentException');
      await expectAwsError(
        dp.puts(name, [
          { Data: Buffer.from('x'), PartitionKey: 'k' },
          { Data: Buffer.from('y'), PartitionKey: 'k', ExplicitHashKey: tooBig },
        ]),
        'InvalidArgumentException',
      );
      for (const s of [shardId(0), shardId(1)]) assert.equal((await dp.readAll(name, s)).length, 0);
    });

    it('an ExplicitHashKey that is not a decimal number is a ValidationException (service model pattern)', async () => {
      const name = await dp.create(uniqueName('ehkpat'), 1);
      await expectAwsError(dp.put(name, Buffer.from('x'), 'k', { ExplicitHashKey: 'abc' }), 'ValidationException');
      await expectAwsError(dp.put(name, Buffer.from('x'), 'k', { ExplicitHashKey: '-1' }), 'ValidationException');
    });

    it('an unknown stream is a ResourceNotFoundException for PutRecord, PutRecords and GetShardIterator', async () => {
      const name = uniqueName('missing');
      await expectAwsError(dp.put(name, Buffer.from('x'), 'k'), 'ResourceNotFoundException');
      await expectAwsError(dp.puts(name, [{ Data: Buffer.from('x'), PartitionKey: 'k' }]), 'ResourceNotFoundException');
      await expectAwsError(dp.iterator(name, shardId(0), 'TRIM_HORIZON'), 'ResourceNotFoundException');
      await expectAwsError(
        dp.send(new PutRecordCommand({ StreamARN: streamArn(name), Data: Buffer.from('x'), PartitionKey: 'k' })),
        'ResourceNotFoundException',
      );
    });
  });

  describe('GetShardIterator and GetRecords', () => {
    /** A 1-shard stream holding `n` records r0..r(n-1); returns the name and the PutRecords results. */
    async function streamWith(prefix, n) {
      const name = await dp.create(uniqueName(prefix), 1);
      const t0 = Date.now();
      const out = await dp.puts(
        name,
        Array.from({ length: n }, (_, i) => ({ Data: Buffer.from(`r${i}`), PartitionKey: `pk${i}` })),
      );
      const t1 = Date.now();
      assert.equal(out.FailedRecordCount, 0);
      return { name, seqs: out.Records.map((r) => r.SequenceNumber), t0, t1 };
    }
    const texts = (records) => records.map((r) => Buffer.from(r.Data).toString());

    it('TRIM_HORIZON returns every record with SequenceNumber, ApproximateArrivalTimestamp, Data, PartitionKey', async () => {
      const { name, seqs, t0, t1 } = await streamWith('trim', 5);
      const it0 = await dp.iterator(name, shardId(0), 'TRIM_HORIZON');
      assert.equal(typeof it0, 'string');
      const out = await dp.getRecords(it0);
      assert.equal(out.$metadata.httpStatusCode, 200);
      assert.equal(out.Records.length, 5);
      out.Records.forEach((r, i) => {
        assert.equal(r.SequenceNumber, seqs[i]);
        assertTimeBetween(r.ApproximateArrivalTimestamp, t0, t1);
        assertBytes(r.Data, Buffer.from(`r${i}`));
        assert.equal(r.PartitionKey, `pk${i}`);
      });
      assert.equal(typeof out.NextShardIterator, 'string');
      assert.equal(out.MillisBehindLatest, 0, 'caught up with the tip');
    });

    it('NextShardIterator continues exactly after the last record returned (Limit paging)', async () => {
      const { name, seqs } = await streamWith('paging', 7);
      let it = await dp.iterator(name, shardId(0), 'TRIM_HORIZON');
      const pages = [];
      for (;;) {
        const out = await dp.getRecords(it, 2);
        assert.ok(out.Records.length <= 2);
        assert.equal(typeof out.MillisBehindLatest, 'number');
        assert.ok(out.MillisBehindLatest >= 0);
        if (out.Records.length === 0) {
          assert.equal(out.MillisBehindLatest, 0);
          break;
        }
        pages.push(out.Records.map((r) => r.SequenceNumber));
        it = out.NextShardIterator;
      }
      assert.deepEqual(pages, [seqs.slice(0, 2), seqs.slice(2, 4), seqs.slice(4, 6), seqs.slice(6)]);
    });

    it('AT_SEQUENCE_NUMBER starts at that record, AFTER_SEQUENCE_NUMBER just after it', async () => {
      const { name, seqs } = await streamWith('atseq', 6);
      const at = await dp.iterator(name, shardId(0), 'AT_SEQUENCE_NUMBER', { StartingSequenceNumber: seqs[2] });
      assert.deepEqual(texts((await dp.getRecords(at)).Records), ['r2', 'r3', 'r4', 'r5']);
      const afterIt = await dp.iterator(name, shardId(0), 'AFTER_SEQUENCE_NUMBER', { StartingSequenceNumber: seqs[2] });
      assert.deepEqual(texts((await dp.getRecords(afterIt)).Records), ['r3', 'r4', 'r5']);
      const atFirst = await dp.iterator(name, shardId(0), 'AT_SEQUENCE_NUMBER', { StartingSequenceNumber: seqs[0] });
      assert.deepEqual(texts((await dp.getRecords(atFirst)).Records), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
      const afterLast = await dp.iterator(name, shardId(0), 'AFTER_SEQUENCE_NUMBER', { StartingSequenceNumber: seqs[5] });
      const out = await dp.getRecords(afterLast);
      assert.deepEqual(out.Records, []);
      assert.equal(out.MillisBehindLatest, 0);
    });

    it('a LATEST iterator returns nothing at first, then the records put after it was taken', async () => {
      const { name } = await streamWith('latest', 3);
      const latest = await dp.iterator(name, shardId(0), 'LATEST');
      const first = await dp.getRecords(latest);
      assert.deepEqual(first.Records, []);
      assert.equal(first.MillisBehindLatest, 0);
      await dp.put(name, Buffer.from('after-1'), 'k');
      await dp.puts(name, [
        { Data: Buffer.from('after-2'), PartitionKey: 'k' },
        { Data: Buffer.from('after-3'), PartitionKey: 'k' },
      ]);
      assert.deepEqual(texts((await dp.getRecords(latest)).Records), ['after-1', 'after-2', 'after-3']);
      assert.deepEqual(
        texts((await dp.getRecords(first.NextShardIterator)).Records),
        ['after-1', 'after-2', 'after-3'],
        'the NextShardIterator of the empty read also continues there',
      );
    });

    it('AT_TIMESTAMP returns the records that arrived at or after the timestamp', async () => {
      const name = await dp.create(uniqueName('attime'), 1);
      const longAgo = new Date(Date.now() - 60_000);
      await dp.put(name, Buffer.from('A'), 'k');
      const [a] = await dp.readAll(name, shardId(0));
      const tA = a.ApproximateArrivalTimestamp.getTime();
      // Let the clock pass tA + 1 ms so that later records arrive strictly after A.
      await pollUntil(() => Date.now() > tA + 1, { timeoutMs: 1_000, intervalMs: 1, what: 'the clock to pass tA' });
      await dp.put(name, Buffer.from('B'), 'k');
      await dp.put(name, Buffer.from('C'), 'k');
      const read = async (Timestamp) =>
        texts((await dp.getRecords(await dp.iterator(name, shardId(0), 'AT_TIMESTAMP', { Timestamp }))).Records);
      assert.deepEqual(await read(longAgo), ['A', 'B', 'C']);
      assert.deepEqual(await read(new Date(tA)), ['A', 'B', 'C'], 'a record arriving exactly at the timestamp is included');
      assert.deepEqual(await read(new Date(tA + 1)), ['B', 'C']);
    });

    it('GetShardIterator accepts StreamARN and GetRecords accepts the matching StreamARN', async () => {
      const { name } = await streamWith('itarn', 2);
      const out = await dp.send(
        new GetShardIteratorCommand({ StreamARN: streamArn(name), ShardId: shardId(0), ShardIteratorType: 'TRIM_HORIZON' }),
      );
      const recs = await dp.getRecords(out.ShardIterator, undefined, { StreamARN: streamArn(name) });
      assert.deepEqual(texts(recs.Records), ['r0', 'r1']);
    });

    it('GetShardIterator errors: missing or foreign sequence number, unknown shard, bad type', async () => {
      const name = await dp.create(uniqueName('iterr'), 2);
      const shards = await dp.shards(name);
      const on1 = await dp.put(name, Buffer.from('x'), 'k', { ExplicitHashKey: shards[1].HashKeyRange.StartingHashKey });
      assert.equal(on1.ShardId, shardId(1));
      for (const type of ['AT_SEQUENCE_NUMBER', 'AFTER_SEQUENCE_NUMBER']) {
        await expectAwsError(dp.iterator(name, shardId(0), type), 'InvalidArgumentException');
        await expectAwsError(
          dp.iterator(name, shardId(0), type, { StartingSequenceNumber: on1.SequenceNumber }),
          'InvalidArgumentException',
        );
        await expectAwsError(
          dp.iterator(name, shardId(0), type, { StartingSequenceNumber: '12345' }),
          'InvalidArgumentException',
        );
      }
      // The sequence number is fine on its own shard.
      await dp.iterator(name, shardId(1), 'AT_SEQUENCE_NUMBER', { StartingSequenceNumber: on1.SequenceNumber });
      await expectAwsError(dp.iterator(name, shardId(99), 'TRIM_HORIZON'), 'ResourceNotFoundException');
      await expectAwsError(dp.iterator(name, shardId(0), 'SOMETIMES'), 'ValidationException');
      await expectAwsError(dp.iterator(name, shardId(0), 'AT_TIMESTAMP'), 'InvalidArgumentException');
    });

    it('GetRecords Limit must be 1..10000 (ValidationException otherwise)', async () => {
      const { name } = await streamWith('limit', 3);
      const it0 = await dp.iterator(name, shardId(0), 'TRIM_HORIZON');
      await expectAwsError(dp.send(new GetRecordsCommand({ ShardIterator: it0, Limit: 0 })), 'ValidationException');
      await expectAwsError(dp.send(new GetRecordsCommand({ ShardIterator: it0, Limit: 10001 })), 'ValidationException');
      assert.equal((await dp.getRecords(it0, 10000)).Records.length, 3);
      assert.equal((await dp.getRecords(it0, 1)).Records.length, 1);
    });

    it('an invalid or tampered shard iterator is an InvalidArgumentException', async () => {
      const { name } = await streamWith('tamper', 1);
      const good = await dp.iterator(name, shardId(0), 'TRIM_HORIZON');
      const mid = Math.floor(good.length / 2);
      const tampered = good.slice(0, mid) + (good[mid] === 'A' ? 'B' : 'A') + good.slice(mid + 1);
      await expectAwsError(dp.send(new GetRecordsCommand({ ShardIterator: tampered })), 'InvalidArgumentException');
      await expectAwsError(dp.send(new GetRecordsCommand({ ShardIterator: 'not-an-iterator' })), 'InvalidArgumentException');
      assert.equal((await dp.getRecords(good)).Records.length, 1, 'the untouched iterator still works');
    });
  });

  describe('binary data', () => {
    it('random bytes, every byte value and runs of zeros round-trip exactly (PutRecord and PutRecords)', async () => {
      const name = await dp.create(uniqueName('binary'), 1);
      const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const zeros = Buffer.alloc(1000);
      const mixed = Buffer.concat([Buffer.alloc(3), randomBytes(4093), Buffer.alloc(7), Buffer.from([0xff, 0, 0xfe])]);
      const payloads = [every, zeros, mixed, randomBytes(1), randomBytes(2), randomBytes(3), randomBytes(65536)];
      for (const p of payloads.slice(0, 4)) await dp.put(name, p, 'bin');
      const out = await dp.puts(
        name,
        payloads.slice(4).map((p) => ({ Data: p, PartitionKey: 'bin' })),
      );
      assert.equal(out.FailedRecordCount, 0);
      const stored = await dp.readAll(name, shardId(0));
      assert.equal(stored.length, payloads.length);
      stored.forEach((r, i) => assertBytes(r.Data, payloads[i], `payload ${i}`));
    });

    it('an empty Data blob round-trips', async () => {
      const name = await dp.create(uniqueName('empty'), 1);
      await dp.put(name, new Uint8Array(0), 'e');
      const [stored] = await dp.readAll(name, shardId(0));
      assertBytes(stored.Data, new Uint8Array(0));
      assert.equal(stored.PartitionKey, 'e');
    });
  });

  describe('per-shard throughput limits (on by default)', () => {
    it('a burst of more than 1000 records/s to one shard gets per-record ProvisionedThroughputExceededException', async () => {
      const name = await dp.create(uniqueName('burst'), 1);
      const calls = Array.from({ length: 6 }, (_, c) =>
        dp.puts(
          name,
          Array.from({ length: 500 }, (_, i) => ({ Data: Buffer.from(`${c}-${i}`), PartitionKey: 'burst' })),
        ),
      );
      const results = await Promise.all(calls);
      const ok = new Map(); // sequence number -> payload
      let failed = 0;
      results.forEach((out, c) => {
        assert.equal(out.Records.length, 500);
        const here = out.Records.filter((r) => r.ErrorCode !== undefined).length;
        assert.equal(out.FailedRecordCount, here, 'FailedRecordCount counts the failed entries');
        failed += here;
        out.Records.forEach((r, i) => {
          if (r.ErrorCode === undefined) {
            assert.match(r.SequenceNumber, SEQUENCE);
            assert.equal(r.ShardId, shardId(0));
            ok.set(r.SequenceNumber, `${c}-${i}`);
          } else {
            assert.equal(r.ErrorCode, THROTTLED);
            assert.equal(r.SequenceNumber, undefined);
            assert.equal(r.ShardId, undefined);
            // The reference: the message "includes the account ID, stream name, and shard ID".
            for (const part of [ACCOUNT, name, shardId(0)]) assert.ok(r.ErrorMessage.includes(part), r.ErrorMessage);
          }
        });
      });
      assert.ok(failed > 0, 'some of the 3000 records were throttled');
      assert.ok(ok.size >= 1000, `the first 1000 records fit the budget (${ok.size} stored)`);
      const stored = await dp.readAll(name, shardId(0));
      assert.equal(stored.length, ok.size, 'exactly the acknowledged records are stored');
      for (const r of stored) assert.equal(Buffer.from(r.Data).toString(), ok.get(r.SequenceNumber));
      assertIncreasing(stored.map((r) => r.SequenceNumber));
    });

    it('PutRecord past the 1 MiB/s shard budget is a ProvisionedThroughputExceededException, and recovers', async () => {
      const name = await dp.create(uniqueName('bytes'), 2);
      const shards = await dp.shards(name);
      const on0 = { ExplicitHashKey: shards[0].HashKeyRange.StartingHashKey };
      await dp.put(name, Buffer.alloc(MIB - 1), 'k', on0); // spends the whole byte budget of shard 0
      // Refilling 512 KiB takes ~500 ms, far longer than the next call.
      await expectAwsError(dp.put(name, Buffer.alloc(MIB / 2), 'k', on0), THROTTLED, { message: /^Rate exceeded/ });
      // The other shard has its own budget.
      const other = await dp.put(name, Buffer.alloc(MIB / 2), 'k', { ExplicitHashKey: shards[1].HashKeyRange.StartingHashKey });
      assert.equal(other.ShardId, shardId(1));
      // The budget refills: a small record gets through again soon.
      await pollUntil(
        async () => {
          try {
            return await dp.put(name, Buffer.alloc(1024), 'k', on0);
          } catch (e) {
            if (e.name === THROTTLED) return null;
            throw e;
          }
        },
        { timeoutMs: 3_000, intervalMs: 50, what: 'shard 0 to accept writes again' },
      );
    });

    it('more than 5 GetRecords calls per second on one shard get ProvisionedThroughputExceededException', async () => {
      const name = await dp.create(uniqueName('reads'), 2);
      const it0 = await dp.iterator(name, shardId(0), 'TRIM_HORIZON');
      const it1 = await dp.iterator(name, shardId(1), 'TRIM_HORIZON');
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, () => dp.send(new GetRecordsCommand({ ShardIterator: it0 }))),
      );
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      const throttled = results.filter((r) => r.status === 'rejected');
      for (const r of throttled) {
        assert.equal(r.reason.name, THROTTLED, `unexpected ${r.reason.name}: ${r.reason.message}`);
        assert.equal(r.reason.$metadata.httpStatusCode, 400);
      }
      assert.ok(ok >= 5, `the first 5 calls fit the budget (${ok} succeeded)`);
      assert.ok(throttled.length > 0, 'some of the 12 calls were throttled');
      // Shard 1 has its own budget.
      await dp.send(new GetRecordsCommand({ ShardIterator: it1 }));
    });
  });
});

describe('eddy data plane with --shard-limits off', () => {
  let eddy;
  let kinesis;
  let dp;

  before(async () => {
    eddy = await startEddy({ args: ['--shard-limits', 'off'] });
    kinesis = makeClient(eddy.endpoint);
    dp = dataPlane(kinesis);
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });

  it('3000 records at once to one shard are all accepted', async () => {
    const name = await dp.create(uniqueName('noburst'), 1);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, c) =>
        dp.puts(
          name,
          Array.from({ length: 500 }, (_, i) => ({ Data: Buffer.from(`${c}-${i}`), PartitionKey: 'burst' })),
        ),
      ),
    );
    for (const out of results) assert.equal(out.FailedRecordCount, 0);
    assert.equal((await dp.readAll(name, shardId(0))).length, 3000);
  });

  it('PutRecord beyond 1 MiB/s on one shard is accepted', async () => {
    const name = await dp.create(uniqueName('nobytes'), 1);
    for (let i = 0; i < 4; i += 1) {
      assert.equal((await dp.put(name, Buffer.alloc(MIB - 1, i), 'k')).ShardId, shardId(0));
    }
  });

  it('12 GetRecords calls at once on one shard all succeed', async () => {
    const name = await dp.create(uniqueName('noreads'), 1);
    await dp.put(name, Buffer.from('x'), 'k');
    const it0 = await dp.iterator(name, shardId(0), 'TRIM_HORIZON');
    const results = await Promise.all(
      Array.from({ length: 12 }, () => dp.send(new GetRecordsCommand({ ShardIterator: it0 }))),
    );
    for (const out of results) assert.equal(out.Records.length, 1);
  });

  it('UpdateMaxRecordSize raises the record limit (a 1.5 MiB record round-trips, 2 MiB + 1 is refused)', async () => {
    const name = await dp.create(uniqueName('maxsize'), 1);
    const data = randomBytes(1.5 * MIB);
    await expectAwsError(dp.put(name, data, 'big'), 'ValidationException');
    await dp.send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 2048 }));
    const out = await dp.put(name, data, 'big');
    assert.equal(out.ShardId, shardId(0));
    await expectAwsError(dp.put(name, Buffer.alloc(2 * MIB + 1), 'big'), 'ValidationException');
    const stored = await dp.readAll(name, shardId(0));
    assert.equal(stored.length, 1);
    assertBytes(stored[0].Data, data);
  });
});

describe('durability (--durability fsync, the default)', () => {
  let eddy;
  let kinesis;

  before(async () => {
    eddy = await startEddy();
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });

  it('records acknowledged before SIGKILL are all readable after restart, in order, with the same sequence numbers', async () => {
    kinesis = makeClient(eddy.endpoint);
    let dp = dataPlane(kinesis);
    const name = await dp.create(uniqueName('durable'), 2);
    const acked = []; // {seq, shard, data, pk}
    const attempted = new Set();
    let stopping = false;
    // Four writers put continuously (PutRecord and PutRecords alternately) until the server is killed.
    const writer = async (w) => {
      for (let i = 0; !stopping; i += 1) {
        try {
          if (i % 2 === 0) {
            const data = `w${w}-${i}`;
            attempted.add(data);
            const out = await dp.put(name, Buffer.from(data), `pk-${w}-${i}`);
            acked.push({ seq: out.SequenceNumber, shard: out.ShardId, data, pk: `pk-${w}-${i}` });
          } else {
            const batch = Array.from({ length: 10 }, (_, k) => ({
              Data: Buffer.from(`w${w}-${i}-${k}`),
              PartitionKey: `pk-${w}-${i}-${k}`,
            }));
            for (const b of batch) attempted.add(Buffer.from(b.Data).toString());
            const out = await dp.puts(name, batch);
            out.Records.forEach((r, k) => {
              if (r.ErrorCode === undefined) {
                acked.push({ seq: r.SequenceNumber, shard: r.ShardId, data: `w${w}-${i}-${k}`, pk: batch[k].PartitionKey });
              }
            });
          }
        } catch {
          return; // the server is gone
        }
      }
    };
    const writers = Array.from({ length: 4 }, (_, w) => writer(w));
    await pollUntil(() => acked.length >= 400, { timeoutMs: 10_000, what: '400 acknowledged records' });
    const ackedAtKill = acked.length;
    const exit = await eddy.kill9();
    stopping = true;
    assert.equal(exit.signal, 'SIGKILL');
    await Promise.allSettled(writers);
    assert.ok(acked.length >= ackedAtKill);

    kinesis.destroy();
    await eddy.restart();
    kinesis = makeClient(eddy.endpoint);
    dp = dataPlane(kinesis);
    for (const sh of [shardId(0), shardId(1)]) {
      const stored = await dp.readAll(name, sh);
      assertIncreasing(
        stored.map((r) => r.SequenceNumber),
        `${sh} after restart`,
      );
      const bySeq = new Map(stored.map((r) => [r.SequenceNumber, r]));
      const mine = acked.filter((a) => a.shard === sh).sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
      for (const a of mine) {
        const r = bySeq.get(a.seq);
        assert.ok(r, `acknowledged record ${a.data} (${a.seq}) on ${sh} is missing after restart`);
        assert.equal(Buffer.from(r.Data).toString(), a.data);
        assert.equal(r.PartitionKey, a.pk);
      }
      // Anything else stored was at least sent (an unacknowledged in-flight write may or may not survive).
      for (const r of stored) assert.ok(attempted.has(Buffer.from(r.Data).toString()), 'no invented records');
      // New writes continue the sequence.
      const shards = await dp.shards(name);
      const next = await dp.put(name, Buffer.from('after-restart'), 'k', {
        ExplicitHashKey: shards.find((s) => s.ShardId === sh).HashKeyRange.StartingHashKey,
      });
      assert.equal(next.ShardId, sh);
      if (stored.length > 0) assert.ok(BigInt(next.SequenceNumber) > BigInt(stored.at(-1).SequenceNumber));
    }
  });
});
