// Interoperability of libeddy's aggregation codec (include/eddy/agg.h) with npm aws-kinesis-agg, the AWS
// library that Lambda functions use to (de)aggregate KPL records. libeddy is driven through the small
// tests/tools/agg_tool program ($AGG_TOOL): `encode` turns JSON lines of user records into aggregates,
// `decode` turns aggregates into user records with the KCL's semantics.
//
// What "KCL-correct" means here (the spec's §1.5): each user record keeps its own partition key, has an
// explicit hash key only if it was given one, its effective hash key is that key or MD5(partition key)
// big-endian, and its sub-sequence number is its index. aws-kinesis-agg's own quirks, which the checks
// expect rather than hide:
//   - de-aggregating, a record with no explicit hash key gets the aggregate's first one (protobufjs reads
//     the missing index as 0), or undefined when the aggregate has none;
//   - a bad checksum is an error ("Invalid record checksum") where the KCL passes the record through;
//   - aggregating, its key tables are JavaScript objects, whose keys come out integer-like first
//     (Object.keys order), so keys such as "7" after "user" get the wrong index: the blob itself names the
//     wrong key. The random records below avoid integer-like keys; one test pins the quirk down.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import agg from 'aws-kinesis-agg';

const here = path.dirname(fileURLToPath(import.meta.url));
const AGG_TOOL = process.env.AGG_TOOL
  ? path.resolve(process.env.AGG_TOOL)
  : path.resolve(here, '../../../build/tests/agg_tool');
const HASH_MAX = (1n << 128n) - 1n;

function tool(args, input) {
  if (!existsSync(AGG_TOOL)) {
    throw new Error(`agg_tool not found at ${AGG_TOOL}: build the agg_tool target or set AGG_TOOL`);
  }
  const r = spawnSync(AGG_TOOL, args, { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, `agg_tool ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

/** libeddy: user records -> aggregates ({data, partitionKey, explicitHashKey, count, size}). */
const eddyEncode = (records, maxBytes = 51200) =>
  tool(
    ['encode', '--max-bytes', String(maxBytes)],
    records.map((r) => JSON.stringify({ pk: r.pk, ehk: r.ehk ?? null, data: r.data.toString('base64') })).join('\n'),
  );

/** libeddy: one Kinesis record -> {result, records}. */
const eddyDecode = (data, pk, ehk) => {
  const args = ['decode', '--pk', pk];
  if (ehk) args.push('--ehk', ehk);
  return tool(args, data.toString('base64'))[0];
};

/** aws-kinesis-agg: one Kinesis record -> {err, records}. */
function awsDecode(data, pk, ehk, computeChecksums = true) {
  let out;
  agg.deaggregateSync(
    { partitionKey: pk, explicitPartitionKey: ehk, sequenceNumber: '49590338271490256608559692538361571095921575989136588898', data: data.toString('base64') },
    computeChecksums,
    (err, records) => {
      out = { err, records };
    },
  );
  return out;
}

const md5HashKey = (pk) => BigInt(`0x${createHash('md5').update(pk, 'utf8').digest('hex')}`);
const hashKeyOf = (r) => (r.ehk !== undefined ? BigInt(r.ehk) : md5HashKey(r.pk));

/** A seeded generator for the shape of the records (keys, sizes, which have explicit hash keys); the bytes
 * of data and of random hash keys come from randomBytes. */
function rng(seed) {
  let s = BigInt(seed) | 1n;
  return (n) => {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    return Number(s % BigInt(n));
  };
}

const ALPHABET = ['a', 'b', 'k', 'Z', '-', '_', '.', '0', '9', ' ', 'é', 'ß', '中', '文', '😀', '\u0001'];

/** Random user records: keys reused a third of the time, ASCII and non-ASCII keys (never integer-like,
 * see the file comment), explicit hash keys on a third (2^128-1, random ones, and 0 unless zeroKey is
 * false: "0" is integer-like), binary data. */
function randomRecords(n, seed, { zeroKey = true } = {}) {
  const rand = rng(seed);
  const records = [];
  for (let i = 0; i < n; i++) {
    let pk;
    let ehk;
    if (records.length > 0 && rand(3) === 0) {
      const e = records[rand(records.length)];
      pk = e.pk;
      ehk = e.ehk;
    } else {
      const len = rand(10) === 0 ? 256 : 1 + rand(24);
      pk = 'p';
      while ([...pk].length < len) pk += ALPHABET[rand(ALPHABET.length)];
      if (rand(3) === 0) {
        const pick = rand(6);
        const random = BigInt(`0x${randomBytes(16).toString('hex')}`);
        const key = pick === 0 && zeroKey ? 0n : pick === 1 ? HASH_MAX : random;
        ehk = key.toString();
      }
    }
    const size = rand(20) === 0 ? 4000 + rand(4000) : rand(300);
    records.push({ pk, ehk, data: randomBytes(size) });
  }
  return records;
}

describe('aggregation interop with aws-kinesis-agg 4.2.8', () => {
  it('aggregates made by libeddy de-aggregate with aws-kinesis-agg to the same user records', () => {
    const records = randomRecords(400, 7);
    const aggregates = eddyEncode(records);
    assert.ok(aggregates.length > 1, 'expected several aggregates of at most 51200 bytes');
    let next = 0;
    for (const a of aggregates) {
      const blob = Buffer.from(a.data, 'base64');
      assert.equal(blob.length, a.size);
      assert.ok(a.size <= 51200 || a.count === 1);
      const group = records.slice(next, next + a.count);
      next += a.count;

      // The KPL's outer key: "a", and the first record's hash key.
      assert.equal(a.partitionKey, 'a');
      assert.equal(a.explicitHashKey, hashKeyOf(group[0]).toString());

      const { err, records: got } = awsDecode(blob, a.partitionKey, a.explicitHashKey);
      assert.equal(err, undefined, `aws-kinesis-agg: ${err}`);
      assert.equal(got.length, group.length);
      const firstEhk = group.find((r) => r.ehk !== undefined)?.ehk;
      group.forEach((want, i) => {
        const r = got[i];
        assert.equal(r.subSequenceNumber, i);
        assert.equal(r.partitionKey, want.pk);
        assert.equal(r.data, want.data.toString('base64'));
        // aws-kinesis-agg quirk: no explicit hash key reads as the first one of the aggregate.
        assert.equal(r.explicitPartitionKey, want.ehk ?? firstEhk);
      });

      // And libeddy's own decoder gives the KCL's view of the same bytes.
      const mine = eddyDecode(blob, a.partitionKey, a.explicitHashKey);
      assert.equal(mine.result, 0);
      assert.equal(mine.records.length, group.length);
      group.forEach((want, i) => {
        const r = mine.records[i];
        assert.equal(r.subSequenceNumber, i);
        assert.equal(r.aggregated, true);
        assert.equal(r.partitionKey, want.pk);
        assert.equal(r.explicitHashKey, want.ehk ?? null);
        assert.equal(r.hashKey, hashKeyOf(want).toString());
        assert.equal(r.data, want.data.toString('base64'));
      });
    }
    assert.equal(next, records.length);
  });

  it('aggregates made by aws-kinesis-agg de-aggregate with libeddy (explicit hash keys, binary data)', () => {
    const records = randomRecords(400, 11, { zeroKey: false });
    const aggregates = [];
    const aggregator = new agg.RecordAggregator();
    const groups = [];
    let group = [];
    const flush = () => {
      aggregates.push(aggregator.build());
      groups.push(group);
      group = [];
    };
    for (const r of records) {
      const user = { partitionKey: r.pk, data: r.data };
      if (r.ehk !== undefined) user.explicitHashKey = r.ehk;
      // Small aggregates (aws-kinesis-agg only knows 1 MiB): about 40 records each.
      if (group.length === 40) flush();
      aggregator.addUserRecord(user);
      group.push(r);
    }
    flush();
    assert.ok(aggregates.length >= 10);

    aggregates.forEach((a, k) => {
      // aws-kinesis-agg's outer keys: the first partition key, and the first explicit hash key under a
      // capitalised property (it does not group by shard, unlike the KPL).
      assert.equal(a.partitionKey, groups[k][0].pk);
      const mine = eddyDecode(a.data, a.partitionKey, a.ExplicitHashKey);
      assert.equal(mine.result, 0);
      assert.equal(mine.records.length, groups[k].length);
      groups[k].forEach((want, i) => {
        const r = mine.records[i];
        assert.equal(r.subSequenceNumber, i);
        assert.equal(r.aggregated, true);
        assert.equal(r.partitionKey, want.pk);
        assert.equal(r.explicitHashKey, want.ehk ?? null, `record ${i}: the KCL gives null when there is none`);
        assert.equal(r.hashKey, hashKeyOf(want).toString());
        assert.equal(r.data, want.data.toString('base64'));
      });
    });
  });

  it('the encodings agree byte for byte when the tables come out in the same order', () => {
    const records = randomRecords(60, 23, { zeroKey: false }).map((r) => ({ ...r, data: r.data.subarray(0, 200) }));
    const aggregator = new agg.RecordAggregator();
    for (const r of records) {
      const user = { partitionKey: r.pk, data: r.data };
      if (r.ehk !== undefined) user.explicitHashKey = r.ehk;
      aggregator.addUserRecord(user);
    }
    const theirs = aggregator.build();
    assert.ok(records.some((r) => r.ehk !== undefined) && new Set(records.map((r) => r.pk)).size < records.length);
    const [mine] = eddyEncode(records, 1024 * 1024);
    assert.equal(mine.count, records.length);
    assert.equal(Buffer.from(mine.data, 'base64').toString('hex'), theirs.data.toString('hex'));
  });

  it('a lone record is still an aggregate for aws-kinesis-agg, and libeddy reads it as one', () => {
    const aggregator = new agg.RecordAggregator();
    aggregator.addUserRecord({ partitionKey: 'only', data: Buffer.from('single payload') });
    const a = aggregator.build();
    const mine = eddyDecode(a.data, a.partitionKey);
    assert.equal(mine.result, 0);
    assert.deepEqual(mine.records, [
      {
        partitionKey: 'only',
        explicitHashKey: null,
        hashKey: '131062541079177480868901109767593905514',
        subSequenceNumber: 0,
        aggregated: true,
        data: Buffer.from('single payload').toString('base64'),
      },
    ]);
  });

  it('a bad checksum: aws-kinesis-agg fails, libeddy passes the record through as the KCL does', () => {
    const [a] = eddyEncode([
      { pk: 'pk-1', data: Buffer.from('hello') },
      { pk: 'pk-2', data: Buffer.from('world') },
    ]);
    const blob = Buffer.from(a.data, 'base64');
    blob[blob.length - 1] ^= 0xff;
    const theirs = awsDecode(blob, 'a', a.explicitHashKey);
    assert.match(String(theirs.err), /Invalid record checksum/);
    const mine = eddyDecode(blob, 'a', a.explicitHashKey);
    assert.equal(mine.result, 0);
    assert.equal(mine.records.length, 1);
    assert.equal(mine.records[0].aggregated, false);
    assert.equal(mine.records[0].subSequenceNumber, 0);
    assert.equal(mine.records[0].partitionKey, 'a');
    assert.equal(mine.records[0].explicitHashKey, a.explicitHashKey);
    assert.equal(mine.records[0].data, blob.toString('base64'));
  });

  it('aws-kinesis-agg quirk: integer-like keys go first in its tables, so the blob names the wrong key', () => {
    const aggregator = new agg.RecordAggregator();
    aggregator.addUserRecord({ partitionKey: 'user', data: Buffer.from('first') });
    aggregator.addUserRecord({ partitionKey: '7', data: Buffer.from('second') });
    const a = aggregator.build();
    // Both decoders read the same (wrong) thing from the bytes: the table is ["7", "user"], indexes 0, 1.
    const theirs = awsDecode(a.data, a.partitionKey);
    const mine = eddyDecode(a.data, a.partitionKey);
    assert.deepEqual(
      theirs.records.map((r) => r.partitionKey),
      ['7', 'user'],
    );
    assert.deepEqual(
      mine.records.map((r) => r.partitionKey),
      ['7', 'user'],
    );
    // libeddy's encoding of the same records keeps each key with its record.
    const [ours] = eddyEncode([
      { pk: 'user', data: Buffer.from('first') },
      { pk: '7', data: Buffer.from('second') },
    ]);
    assert.deepEqual(
      awsDecode(Buffer.from(ours.data, 'base64'), 'a').records.map((r) => r.partitionKey),
      ['user', '7'],
    );
  });
});
