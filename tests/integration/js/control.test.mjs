// Control-plane integration tests for eddy, driven through the AWS SDK for JavaScript v3 (which talks
// HTTP/2 to http:// endpoints). Expected values follow the AWS Kinesis API reference; where eddy differs,
// the test keeps the AWS expectation and is marked `todo` with the reason.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  AddTagsToStreamCommand,
  CreateStreamCommand,
  DecreaseStreamRetentionPeriodCommand,
  DeleteStreamCommand,
  DescribeAccountSettingsCommand,
  DescribeLimitsCommand,
  DescribeStreamCommand,
  DescribeStreamSummaryCommand,
  DisableEnhancedMonitoringCommand,
  EnableEnhancedMonitoringCommand,
  IncreaseStreamRetentionPeriodCommand,
  ListShardsCommand,
  ListStreamsCommand,
  ListTagsForResourceCommand,
  ListTagsForStreamCommand,
  RemoveTagsFromStreamCommand,
  StartStreamEncryptionCommand,
  StopStreamEncryptionCommand,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateAccountSettingsCommand,
  UpdateMaxRecordSizeCommand,
  UpdateStreamModeCommand,
  paginateListStreams,
} from '@aws-sdk/client-kinesis';
import {
  ACCOUNT,
  REGION,
  evenHashRanges,
  expectAwsError,
  makeClient,
  shardId,
  startEddy,
  streamArn,
  uniqueName,
} from './helpers.mjs';

const MAX_HASH = '340282366920938463463374607431768211455';
// The hash key ranges AWS gives new streams, written out (not computed) for 1, 2, 3 and 5 shards.
const EXPECTED_RANGES = {
  1: [['0', MAX_HASH]],
  2: [
    ['0', '170141183460469231731687303715884105727'],
    ['170141183460469231731687303715884105728', MAX_HASH],
  ],
  3: [
    ['0', '113427455640312821154458202477256070484'],
    ['113427455640312821154458202477256070485', '226854911280625642308916404954512140969'],
    ['226854911280625642308916404954512140970', MAX_HASH],
  ],
  4: [
    ['0', '85070591730234615865843651857942052863'],
    ['85070591730234615865843651857942052864', '170141183460469231731687303715884105727'],
    ['170141183460469231731687303715884105728', '255211775190703847597530955573826158591'],
    ['255211775190703847597530955573826158592', MAX_HASH],
  ],
  5: [
    ['0', '68056473384187692692674921486353642290'],
    ['68056473384187692692674921486353642291', '136112946768375385385349842972707284581'],
    ['136112946768375385385349842972707284582', '204169420152563078078024764459060926872'],
    ['204169420152563078078024764459060926873', '272225893536750770770699685945414569163'],
    ['272225893536750770770699685945414569164', MAX_HASH],
  ],
};
const SEQUENCE_NUMBER = /^(0|[1-9]\d{0,128})$/; // the SequenceNumber pattern of the service model
const ALL_METRICS = [
  'IncomingBytes',
  'IncomingRecords',
  'OutgoingBytes',
  'OutgoingRecords',
  'WriteProvisionedThroughputExceeded',
  'ReadProvisionedThroughputExceeded',
  'IteratorAgeMilliseconds',
];
const notFound = (name, account = ACCOUNT) => `Stream ${name} under account ${account} not found.`;
const sorted = (a) => [...a].sort();
const byKey = (a, b) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0);

/** Checks the shards of a stream just created with n shards (no resharding yet). */
function assertNewShards(shards, n, firstIndex = 0) {
  const ranges = evenHashRanges(n);
  for (const [k, sh] of shards.entries()) {
    const i = firstIndex + k;
    assert.equal(sh.ShardId, shardId(i));
    assert.deepEqual(sh.HashKeyRange, ranges[i], `hash key range of ${sh.ShardId}`);
    assert.equal(sh.ParentShardId, undefined);
    assert.equal(sh.AdjacentParentShardId, undefined);
    assert.match(sh.SequenceNumberRange.StartingSequenceNumber, SEQUENCE_NUMBER);
    assert.equal(sh.SequenceNumberRange.EndingSequenceNumber, undefined, 'open shards have no ending sequence');
  }
}

/** Asserts that a Date lies within [fromMs - 1 s, toMs + 1 s] (the server stores milliseconds). */
function assertTimeBetween(date, fromMs, toMs) {
  assert.ok(date instanceof Date, `expected a Date, got ${date}`);
  const t = date.getTime();
  assert.ok(t >= fromMs - 1000 && t <= toMs + 1000, `${date.toISOString()} not within the call window`);
}

/** Adds a middleware that records, for each successful response, the HTTP/2 stream it arrived on. */
function observeTransport(client) {
  const seen = [];
  client.middlewareStack.add(
    (next) => async (args) => {
      const result = await next(args);
      const body = result.response?.body;
      seen.push({
        kind: body?.constructor?.name,
        session: body?.session,
        alpn: body?.session?.alpnProtocol,
        status: result.response?.statusCode,
      });
      return result;
    },
    // Low priority in the deserialize step: runs inside the deserializer, before the body is read.
    { step: 'deserialize', priority: 'low', name: 'eddyObserveTransport' },
  );
  return seen;
}

describe('eddy control plane through @aws-sdk/client-kinesis', () => {
  let eddy;
  let kinesis;
  const send = (cmd) => kinesis.send(cmd);
  const create = (StreamName, ShardCount, extra = {}) =>
    send(new CreateStreamCommand({ StreamName, ShardCount, ...extra }));
  const summary = async (name) =>
    (await send(new DescribeStreamSummaryCommand({ StreamName: name }))).StreamDescriptionSummary;
  const tagsOf = async (name) =>
    (await send(new ListTagsForStreamCommand({ StreamName: name, Limit: 50 }))).Tags.sort(byKey);

  before(async () => {
    eddy = await startEddy();
    kinesis = makeClient(eddy.endpoint);
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });

  describe('CreateStream and the stream descriptions', () => {
    for (const n of [1, 2, 3, 4, 5]) {
      it(`a PROVISIONED stream of ${n} shard(s) gets shardId-00000000000i and the AWS hash key boundaries`, async () => {
        const name = uniqueName(`shards${n}`);
        assert.deepEqual(
          evenHashRanges(n).map((r) => [r.StartingHashKey, r.EndingHashKey]),
          EXPECTED_RANGES[n],
          'helper formula agrees with the literal table',
        );
        await create(name, n);
        const { StreamDescription: d } = await send(new DescribeStreamCommand({ StreamName: name }));
        assert.deepEqual(
          d.Shards.map((s) => s.ShardId),
          Array.from({ length: n }, (_, i) => shardId(i)),
        );
        assert.deepEqual(
          d.Shards.map((s) => [s.HashKeyRange.StartingHashKey, s.HashKeyRange.EndingHashKey]),
          EXPECTED_RANGES[n],
        );
        assertNewShards(d.Shards, n);
        assert.equal(d.HasMoreShards, false);
        const { Shards, NextToken } = await send(new ListShardsCommand({ StreamName: name }));
        assert.deepEqual(Shards, d.Shards, 'ListShards returns the same shards as DescribeStream');
        assert.equal(NextToken, undefined);
      });
    }

    it('DescribeStream returns the full StreamDescription of a new stream', async () => {
      const name = uniqueName('describe');
      const t0 = Date.now();
      const out = await create(name, 2);
      const t1 = Date.now();
      assert.equal(out.$metadata.httpStatusCode, 200);
      const { StreamDescription: d } = await send(new DescribeStreamCommand({ StreamName: name }));
      assert.equal(d.StreamName, name);
      assert.equal(d.StreamARN, `arn:aws:kinesis:${REGION}:${ACCOUNT}:stream/${name}`);
      assert.equal(d.StreamStatus, 'ACTIVE');
      assert.deepEqual(d.StreamModeDetails, { StreamMode: 'PROVISIONED' });
      assert.equal(d.HasMoreShards, false);
      assert.equal(d.RetentionPeriodHours, 24);
      assertTimeBetween(d.StreamCreationTimestamp, t0, t1);
      assert.deepEqual(d.EnhancedMonitoring, [{ ShardLevelMetrics: [] }]);
      assert.equal(d.EncryptionType, 'NONE');
      assert.equal(d.KeyId, undefined);
      assert.equal(d.Shards.length, 2);
    });

    it('DescribeStreamSummary returns every summary member, MaxRecordSizeInKiB 1024 by default', async () => {
      const name = uniqueName('summary');
      const t0 = Date.now();
      await create(name, 3);
      const t1 = Date.now();
      const s = await summary(name);
      assert.equal(s.StreamName, name);
      assert.equal(s.StreamARN, streamArn(name));
      assert.equal(s.StreamStatus, 'ACTIVE');
      assert.deepEqual(s.StreamModeDetails, { StreamMode: 'PROVISIONED' });
      assert.equal(s.RetentionPeriodHours, 24);
      assertTimeBetween(s.StreamCreationTimestamp, t0, t1);
      assert.deepEqual(s.EnhancedMonitoring, [{ ShardLevelMetrics: [] }]);
      assert.equal(s.EncryptionType, 'NONE');
      assert.equal(s.KeyId, undefined);
      assert.equal(s.OpenShardCount, 3);
      assert.equal(s.ConsumerCount, 0);
      assert.equal(s.MaxRecordSizeInKiB, 1024);
      assert.equal(s.Shards, undefined, 'the summary has no shard list');
    });

    it('CreateStream keeps MaxRecordSizeInKiB', async () => {
      const name = uniqueName('maxrec');
      await create(name, 1, { MaxRecordSizeInKiB: 4096 });
      assert.equal((await summary(name)).MaxRecordSizeInKiB, 4096);
      const big = uniqueName('maxrec');
      await create(big, 1, { MaxRecordSizeInKiB: 10240 });
      assert.equal((await summary(big)).MaxRecordSizeInKiB, 10240);
    });

    it('an ON_DEMAND stream gets 4 shards and reports its mode', async () => {
      const name = uniqueName('ondemand');
      const before = (await send(new DescribeLimitsCommand({}))).OnDemandStreamCount;
      await send(new CreateStreamCommand({ StreamName: name, StreamModeDetails: { StreamMode: 'ON_DEMAND' } }));
      const s = await summary(name);
      assert.deepEqual(s.StreamModeDetails, { StreamMode: 'ON_DEMAND' });
      assert.equal(s.OpenShardCount, 4);
      assert.equal(s.StreamStatus, 'ACTIVE');
      const { Shards } = await send(new ListShardsCommand({ StreamName: name }));
      assert.equal(Shards.length, 4);
      assertNewShards(Shards, 4);
      assert.deepEqual(
        Shards.map((x) => [x.HashKeyRange.StartingHashKey, x.HashKeyRange.EndingHashKey]),
        EXPECTED_RANGES[4],
      );
      const limits = await send(new DescribeLimitsCommand({}));
      assert.equal(limits.OnDemandStreamCount, before + 1);
    });

    it('CreateStream with Tags stores them', async () => {
      const name = uniqueName('tagged');
      await create(name, 1, { Tags: { team: 'data', 'cost-center': '42', empty: '' } });
      assert.deepEqual(await tagsOf(name), [
        { Key: 'cost-center', Value: '42' },
        { Key: 'empty', Value: '' },
        { Key: 'team', Value: 'data' },
      ]);
    });

    it('CreateStream of an existing name fails with ResourceInUseException', async () => {
      const name = uniqueName('dup');
      await create(name, 1);
      await expectAwsError(create(name, 1), 'ResourceInUseException', {
        message: `Stream ${name} under account ${ACCOUNT} already exists.`,
      });
      // The existing stream is untouched.
      assert.equal((await summary(name)).OpenShardCount, 1);
    });

    it('CreateStream input validation uses the AWS ValidationException format', async () => {
      await expectAwsError(create('bad name!', 1), 'ValidationException', {
        message:
          "1 validation error detected: Value 'bad name!' at 'streamName' failed to satisfy constraint: " +
          'Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+',
      });
      const long = 'a'.repeat(129);
      await expectAwsError(create(long, 1), 'ValidationException', {
        message:
          `1 validation error detected: Value '${long}' at 'streamName' failed to satisfy constraint: ` +
          'Member must have length less than or equal to 128',
      });
      await expectAwsError(create(uniqueName('zero'), 0), 'ValidationException', {
        message:
          "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: " +
          'Member must have value greater than or equal to 1',
      });
      await expectAwsError(create('x y', 0), 'ValidationException', {
        message:
          "2 validation errors detected: Value 'x y' at 'streamName' failed to satisfy constraint: " +
          'Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; ' +
          "Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1",
      });
      await expectAwsError(
        create(uniqueName('mode'), 1, { StreamModeDetails: { StreamMode: 'SOMETIMES' } }),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value 'SOMETIMES' at 'streamModeDetails.streamMode' failed to satisfy " +
            'constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]',
        },
      );
      await expectAwsError(create(uniqueName('rec'), 1, { MaxRecordSizeInKiB: 1023 }), 'ValidationException', {
        message:
          "1 validation error detected: Value '1023' at 'maxRecordSizeInKiB' failed to satisfy constraint: " +
          'Member must have value greater than or equal to 1024',
      });
      await expectAwsError(create(uniqueName('rec'), 1, { MaxRecordSizeInKiB: 10241 }), 'ValidationException', {
        message:
          "1 validation error detected: Value '10241' at 'maxRecordSizeInKiB' failed to satisfy constraint: " +
          'Member must have value less than or equal to 10240',
      });
      await expectAwsError(send(new CreateStreamCommand({ ShardCount: 1 })), 'ValidationException', {
        message:
          "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null",
      });
    });
  });

  describe('DeleteStream', () => {
    it('deletes by StreamName; later calls get ResourceNotFoundException', async () => {
      const name = uniqueName('del');
      await create(name, 2);
      const out = await send(new DeleteStreamCommand({ StreamName: name }));
      assert.equal(out.$metadata.httpStatusCode, 200);
      const { StreamNames } = await send(new ListStreamsCommand({ ExclusiveStartStreamName: name.slice(0, -1) }));
      assert.ok(!StreamNames.includes(name));
      await expectAwsError(summary(name), 'ResourceNotFoundException', { message: notFound(name) });
      await expectAwsError(send(new DescribeStreamCommand({ StreamName: name })), 'ResourceNotFoundException', {
        message: notFound(name),
      });
      await expectAwsError(send(new DeleteStreamCommand({ StreamName: name })), 'ResourceNotFoundException', {
        message: notFound(name),
      });
    });

    it('deletes by StreamARN, with EnforceConsumerDeletion', async () => {
      const name = uniqueName('delarn');
      await create(name, 1);
      await send(new DeleteStreamCommand({ StreamARN: streamArn(name), EnforceConsumerDeletion: true }));
      await expectAwsError(summary(name), 'ResourceNotFoundException', { message: notFound(name) });
    });

    it('a stream re-created under a deleted name is a new stream without the old tags', async () => {
      const name = uniqueName('recreate');
      await create(name, 3, { Tags: { old: 'yes' } });
      const first = await summary(name);
      await send(new DeleteStreamCommand({ StreamName: name }));
      await create(name, 1);
      const second = await summary(name);
      assert.equal(second.OpenShardCount, 1);
      assert.ok(second.StreamCreationTimestamp >= first.StreamCreationTimestamp);
      assert.deepEqual(await tagsOf(name), []);
      const { Shards } = await send(
        new ListShardsCommand({ StreamName: name, StreamCreationTimestamp: second.StreamCreationTimestamp }),
      );
      assertNewShards(Shards, 1);
      assert.equal(Shards.length, 1);
    });
  });

  describe('ListShards', () => {
    let name;
    let created;
    before(async () => {
      name = uniqueName('ls5');
      await create(name, 5);
      created = (await summary(name)).StreamCreationTimestamp;
    });

    const list = (input) => send(new ListShardsCommand(input));
    const ids = (shards) => shards.map((s) => s.ShardId);
    const range = (from, to) => Array.from({ length: to - from }, (_, i) => shardId(from + i));

    it('pages with MaxResults and NextToken until exhausted', async () => {
      const pages = [];
      let out = await list({ StreamName: name, MaxResults: 2 });
      pages.push(ids(out.Shards));
      while (out.NextToken) {
        out = await list({ NextToken: out.NextToken, MaxResults: 2 });
        pages.push(ids(out.Shards));
      }
      assert.deepEqual(pages, [range(0, 2), range(2, 4), range(4, 5)]);
      // A page size that divides the shard count exactly still ends with no NextToken.
      out = await list({ StreamName: name, MaxResults: 5 });
      assert.deepEqual(ids(out.Shards), range(0, 5));
      assert.equal(out.NextToken, undefined);
      // The token keeps its stream; MaxResults may change between pages.
      out = await list({ StreamARN: streamArn(name), MaxResults: 1 });
      assert.deepEqual(ids(out.Shards), range(0, 1));
      out = await list({ NextToken: out.NextToken, MaxResults: 3 });
      assert.deepEqual(ids(out.Shards), range(1, 4));
      out = await list({ NextToken: out.NextToken });
      assert.deepEqual(ids(out.Shards), range(4, 5));
      assertNewShards(out.Shards, 5, 4);
      assert.equal(out.NextToken, undefined);
    });

    it('ExclusiveStartShardId lists the shards after that id', async () => {
      assert.deepEqual(ids((await list({ StreamName: name, ExclusiveStartShardId: shardId(1) })).Shards), range(2, 5));
      assert.deepEqual(
        ids((await list({ StreamName: name, ExclusiveStartShardId: shardId(1), MaxResults: 2 })).Shards),
        range(2, 4),
      );
      assert.deepEqual((await list({ StreamName: name, ExclusiveStartShardId: shardId(4) })).Shards, []);
    });

    it('StreamCreationTimestamp of the stream is accepted', async () => {
      const out = await list({ StreamName: name, StreamCreationTimestamp: created });
      assert.deepEqual(ids(out.Shards), range(0, 5));
    });

    it('ShardFilter AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST', async () => {
      const f = (ShardFilter) => list({ StreamName: name, ShardFilter }).then((o) => ids(o.Shards));
      assert.deepEqual(await f({ Type: 'AFTER_SHARD_ID', ShardId: shardId(2) }), range(3, 5));
      assert.deepEqual(await f({ Type: 'AFTER_SHARD_ID', ShardId: shardId(4) }), []);
      assert.deepEqual(await f({ Type: 'AT_TRIM_HORIZON' }), range(0, 5));
      assert.deepEqual(await f({ Type: 'FROM_TRIM_HORIZON' }), range(0, 5));
      assert.deepEqual(await f({ Type: 'AT_LATEST' }), range(0, 5));
    });

    it('ShardFilter AT_TIMESTAMP and FROM_TIMESTAMP', async () => {
      const f = (ShardFilter) => list({ StreamName: name, ShardFilter }).then((o) => ids(o.Shards));
      const later = new Date(created.getTime() + 60_000);
      const earlier = new Date(created.getTime() - 3_600_000);
      // AT_TIMESTAMP: shards whose start is <= the timestamp and that are open or end at/after it.
      assert.deepEqual(await f({ Type: 'AT_TIMESTAMP', Timestamp: later }), range(0, 5));
      assert.deepEqual(await f({ Type: 'AT_TIMESTAMP', Timestamp: earlier }), []);
      // FROM_TIMESTAMP: every open shard, whatever the timestamp.
      assert.deepEqual(await f({ Type: 'FROM_TIMESTAMP', Timestamp: earlier }), range(0, 5));
      assert.deepEqual(await f({ Type: 'FROM_TIMESTAMP', Timestamp: later }), range(0, 5));
    });

    it('ShardFilter paging: the filter carries over in NextToken', async () => {
      let out = await list({
        StreamName: name,
        MaxResults: 1,
        ShardFilter: { Type: 'AFTER_SHARD_ID', ShardId: shardId(2) },
      });
      assert.deepEqual(ids(out.Shards), [shardId(3)]);
      out = await list({ NextToken: out.NextToken });
      assert.deepEqual(ids(out.Shards), [shardId(4)]);
      assert.equal(out.NextToken, undefined);
    });

    it('ShardFilter errors', async () => {
      await expectAwsError(
        list({ StreamName: name, ShardFilter: { Type: 'AFTER_SHARD_ID' } }),
        'InvalidArgumentException',
      );
      await expectAwsError(
        list({ StreamName: name, ShardFilter: { Type: 'AT_TIMESTAMP' } }),
        'InvalidArgumentException',
      );
      await expectAwsError(
        list({ StreamName: name, ShardFilter: { Type: 'FROM_TIMESTAMP' } }),
        'InvalidArgumentException',
      );
      await expectAwsError(list({ StreamName: name, ShardFilter: { Type: 'SIDEWAYS' } }), 'ValidationException', {
        message:
          "1 validation error detected: Value 'SIDEWAYS' at 'shardFilter.type' failed to satisfy constraint: " +
          'Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, ' +
          'AT_TIMESTAMP, FROM_TIMESTAMP]',
      });
    });

    it('argument errors: NextToken with StreamName/ExclusiveStartShardId, no stream, unknown stream, bad token', async () => {
      const { NextToken } = await list({ StreamName: name, MaxResults: 1 });
      assert.ok(NextToken);
      await expectAwsError(list({ StreamName: name, NextToken }), 'InvalidArgumentException');
      await expectAwsError(list({ StreamARN: streamArn(name), NextToken }), 'InvalidArgumentException');
      await expectAwsError(list({ NextToken, ExclusiveStartShardId: shardId(0) }), 'InvalidArgumentException');
      await expectAwsError(list({}), 'InvalidArgumentException');
      await expectAwsError(list({ NextToken: 'not-a-token' }), 'InvalidArgumentException');
      const missing = uniqueName('missing');
      await expectAwsError(list({ StreamName: missing }), 'ResourceNotFoundException', { message: notFound(missing) });
      await expectAwsError(list({ StreamARN: streamArn(missing) }), 'ResourceNotFoundException', {
        message: notFound(missing),
      });
      await expectAwsError(list({ StreamName: name, MaxResults: 0 }), 'ValidationException', {
        message:
          "1 validation error detected: Value '0' at 'maxResults' failed to satisfy constraint: " +
          'Member must have value greater than or equal to 1',
      });
    });

    it(
      'NextToken together with StreamCreationTimestamp is rejected with InvalidArgumentException',
      async () => {
        const { NextToken } = await list({ StreamName: name, MaxResults: 1 });
        await expectAwsError(list({ NextToken, StreamCreationTimestamp: created }), 'InvalidArgumentException');
      },
    );
  });

  describe('DescribeStream paging', () => {
    it('pages with Limit and ExclusiveStartShardId until HasMoreShards is false', async () => {
      const name = uniqueName('ds5');
      await create(name, 5);
      const pages = [];
      let start;
      for (;;) {
        const { StreamDescription: d } = await send(
          new DescribeStreamCommand({ StreamName: name, Limit: 2, ExclusiveStartShardId: start }),
        );
        pages.push(d.Shards.map((s) => s.ShardId));
        assertNewShards(d.Shards, 5, pages.flat().length - d.Shards.length);
        if (!d.HasMoreShards) break;
        start = d.Shards.at(-1).ShardId;
        assert.ok(pages.length < 10, 'paging did not end');
      }
      assert.deepEqual(pages, [[shardId(0), shardId(1)], [shardId(2), shardId(3)], [shardId(4)]]);
      const { StreamDescription: last } = await send(
        new DescribeStreamCommand({ StreamARN: streamArn(name), ExclusiveStartShardId: shardId(4) }),
      );
      assert.deepEqual(last.Shards, []);
      assert.equal(last.HasMoreShards, false);
      await expectAwsError(send(new DescribeStreamCommand({ StreamName: name, Limit: 0 })), 'ValidationException', {
        message:
          "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: " +
          'Member must have value greater than or equal to 1',
      });
    });
  });

  describe('tags', () => {
    it('AddTagsToStream adds and overwrites; ListTagsForStream pages; RemoveTagsFromStream ignores unknown keys', async () => {
      const name = uniqueName('tags');
      await create(name, 1);
      assert.deepEqual(
        await send(new ListTagsForStreamCommand({ StreamName: name })).then((o) => [o.Tags, o.HasMoreTags]),
        [[], false],
      );
      await send(new AddTagsToStreamCommand({ StreamName: name, Tags: { a: '1', b: '2', c: '3' } }));
      await send(new AddTagsToStreamCommand({ StreamARN: streamArn(name), Tags: { b: 'two', d: '4', e: '5' } }));
      assert.deepEqual(await tagsOf(name), [
        { Key: 'a', Value: '1' },
        { Key: 'b', Value: 'two' },
        { Key: 'c', Value: '3' },
        { Key: 'd', Value: '4' },
        { Key: 'e', Value: '5' },
      ]);
      // Paging with Limit and ExclusiveStartTagKey.
      const seen = [];
      let start;
      for (;;) {
        const out = await send(
          new ListTagsForStreamCommand({ StreamName: name, Limit: 2, ExclusiveStartTagKey: start }),
        );
        assert.ok(out.Tags.length <= 2);
        seen.push(...out.Tags);
        if (!out.HasMoreTags) break;
        start = out.Tags.at(-1).Key;
        assert.ok(seen.length <= 5, 'paging did not end');
      }
      assert.deepEqual(
        seen.map((t) => t.Key),
        ['a', 'b', 'c', 'd', 'e'],
      );
      const tail = await send(new ListTagsForStreamCommand({ StreamName: name, ExclusiveStartTagKey: 'c' }));
      assert.deepEqual(tail.Tags.sort(byKey), [
        { Key: 'd', Value: '4' },
        { Key: 'e', Value: '5' },
      ]);
      assert.equal(tail.HasMoreTags, false);

      await send(new RemoveTagsFromStreamCommand({ StreamName: name, TagKeys: ['a', 'nope'] }));
      await send(new RemoveTagsFromStreamCommand({ StreamARN: streamArn(name), TagKeys: ['e'] }));
      assert.deepEqual(await tagsOf(name), [
        { Key: 'b', Value: 'two' },
        { Key: 'c', Value: '3' },
        { Key: 'd', Value: '4' },
      ]);
    });

    it('a stream holds at most 50 tags (InvalidArgumentException past that)', async () => {
      const name = uniqueName('tag50');
      const fifty = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`k${i}`, `v${i}`]));
      await create(name, 1, { Tags: fifty });
      assert.equal((await tagsOf(name)).length, 50);
      // Overwriting existing keys does not count as new tags.
      await send(new AddTagsToStreamCommand({ StreamName: name, Tags: { k0: 'again' } }));
      await expectAwsError(
        send(new AddTagsToStreamCommand({ StreamName: name, Tags: { extra: 'x' } })),
        'InvalidArgumentException',
      );
      await expectAwsError(
        send(new TagResourceCommand({ ResourceARN: streamArn(name), Tags: { extra: 'x' } })),
        'InvalidArgumentException',
      );
      const tooMany = { ...fifty, k50: 'v50' };
      const other = uniqueName('tag51');
      await expectAwsError(create(other, 1, { Tags: tooMany }), 'InvalidArgumentException');
      await expectAwsError(summary(other), 'ResourceNotFoundException');
    });

    it('tag validation: invalid characters, reserved prefix, key length', async () => {
      const name = uniqueName('tagbad');
      await create(name, 1);
      await expectAwsError(
        send(new AddTagsToStreamCommand({ StreamName: name, Tags: { 'bad*key': 'v' } })),
        'InvalidArgumentException',
      );
      await expectAwsError(
        send(new AddTagsToStreamCommand({ StreamName: name, Tags: { key: 'bad#value' } })),
        'InvalidArgumentException',
      );
      // Keys starting with aws: are reserved for AWS; the exact exception is not documented.
      const reserved = await send(new AddTagsToStreamCommand({ StreamName: name, Tags: { 'aws:mine': 'v' } })).catch(
        (e) => e,
      );
      assert.equal(reserved.$metadata?.httpStatusCode, 400, 'aws: prefixed tag keys are refused');
      await expectAwsError(
        send(new AddTagsToStreamCommand({ StreamName: name, Tags: { ['k'.repeat(129)]: 'v' } })),
        'ValidationException',
        {
          message:
            /^1 validation error detected: Value '.*' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: \[.*Member must have length less than or equal to 128/,
        },
      );
      await expectAwsError(
        send(new AddTagsToStreamCommand({ StreamName: name, Tags: { k: 'v'.repeat(257) } })),
        'ValidationException',
        {
          message:
            /at 'tags' failed to satisfy constraint: Map value must satisfy constraint: \[.*Member must have length less than or equal to 256/,
        },
      );
      // Letters of any script, digits, white space and _ . : / = + - @ are fine.
      await send(
        new AddTagsToStreamCommand({ StreamName: name, Tags: { 'Ünïcødé key_.:/=+-@': 'välue with spaces 1' } }),
      );
      assert.deepEqual(await tagsOf(name), [{ Key: 'Ünïcødé key_.:/=+-@', Value: 'välue with spaces 1' }]);
    });

    it('TagResource, UntagResource and ListTagsForResource with a stream ARN', async () => {
      const name = uniqueName('res');
      await create(name, 1, { Tags: { a: '1' } });
      const arn = streamArn(name);
      await send(new TagResourceCommand({ ResourceARN: arn, Tags: { b: '2', c: '3' } }));
      let out = await send(new ListTagsForResourceCommand({ ResourceARN: arn }));
      assert.deepEqual(out.Tags.sort(byKey), [
        { Key: 'a', Value: '1' },
        { Key: 'b', Value: '2' },
        { Key: 'c', Value: '3' },
      ]);
      await send(new UntagResourceCommand({ ResourceARN: arn, TagKeys: ['a', 'c', 'missing'] }));
      out = await send(new ListTagsForResourceCommand({ ResourceARN: arn }));
      assert.deepEqual(out.Tags, [{ Key: 'b', Value: '2' }]);
      assert.deepEqual(await tagsOf(name), [{ Key: 'b', Value: '2' }], 'same tags as ListTagsForStream');

      const missing = streamArn(uniqueName('nores'));
      await expectAwsError(send(new ListTagsForResourceCommand({ ResourceARN: missing })), 'ResourceNotFoundException');
      await expectAwsError(
        send(new TagResourceCommand({ ResourceARN: missing, Tags: { a: 'b' } })),
        'ResourceNotFoundException',
      );
      await expectAwsError(
        send(new UntagResourceCommand({ ResourceARN: missing, TagKeys: ['a'] })),
        'ResourceNotFoundException',
      );
      await expectAwsError(send(new ListTagsForResourceCommand({ ResourceARN: 'not-an-arn' })), 'ValidationException', {
        message:
          /^1 validation error detected: Value 'not-an-arn' at 'resourceARN' failed to satisfy constraint: Member must satisfy regular expression pattern: /,
      });
    });

    it('ListTagsForStream Limit must be 1..50', async () => {
      const name = uniqueName('taglim');
      await create(name, 1);
      await expectAwsError(send(new ListTagsForStreamCommand({ StreamName: name, Limit: 51 })), 'ValidationException', {
        message:
          "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: " +
          'Member must have value less than or equal to 50',
      });
    });
  });

  describe('retention period', () => {
    it('increases and decreases within 24..8760 hours, by StreamName and by StreamARN', async () => {
      const name = uniqueName('ret');
      await create(name, 1);
      await send(new IncreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 48 }));
      assert.equal((await summary(name)).RetentionPeriodHours, 48);
      await send(new IncreaseStreamRetentionPeriodCommand({ StreamARN: streamArn(name), RetentionPeriodHours: 8760 }));
      assert.equal((await summary(name)).RetentionPeriodHours, 8760);
      const { StreamDescription } = await send(new DescribeStreamCommand({ StreamName: name }));
      assert.equal(StreamDescription.RetentionPeriodHours, 8760);
      await send(new DecreaseStreamRetentionPeriodCommand({ StreamARN: streamArn(name), RetentionPeriodHours: 168 }));
      assert.equal((await summary(name)).RetentionPeriodHours, 168);
      await send(new DecreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 24 }));
      assert.equal((await summary(name)).RetentionPeriodHours, 24);
    });

    it('out-of-range or wrong-direction values fail with InvalidArgumentException', async () => {
      const name = uniqueName('retbad');
      await create(name, 1);
      await send(new IncreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 72 }));
      await expectAwsError(
        send(new IncreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 8761 })),
        'InvalidArgumentException',
        {
          message:
            'Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long.',
        },
      );
      await expectAwsError(
        send(new DecreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 23 })),
        'InvalidArgumentException',
        {
          message: 'Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.',
        },
      );
      await expectAwsError(
        send(new IncreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 48 })),
        'InvalidArgumentException',
        {
          message:
            `Requested retention period (48 hours) for stream ${name} can not be shorter than existing ` +
            'retention period (72 hours). Use DecreaseRetentionPeriod API.',
        },
      );
      await expectAwsError(
        send(new DecreaseStreamRetentionPeriodCommand({ StreamName: name, RetentionPeriodHours: 96 })),
        'InvalidArgumentException',
        {
          message:
            `Requested retention period (96 hours) for stream ${name} can not be longer than existing ` +
            'retention period (72 hours). Use IncreaseRetentionPeriod API.',
        },
      );
      assert.equal((await summary(name)).RetentionPeriodHours, 72, 'failed calls change nothing');
      await expectAwsError(
        send(new IncreaseStreamRetentionPeriodCommand({ StreamName: name })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value null at 'retentionPeriodHours' failed to satisfy constraint: " +
            'Member must not be null',
        },
      );
    });
  });

  describe('enhanced monitoring', () => {
    it('EnableEnhancedMonitoring / DisableEnhancedMonitoring report current and desired metrics', async () => {
      const name = uniqueName('mon');
      await create(name, 1);
      let out = await send(
        new EnableEnhancedMonitoringCommand({
          StreamName: name,
          ShardLevelMetrics: ['IncomingBytes', 'OutgoingBytes'],
        }),
      );
      assert.equal(out.StreamName, name);
      assert.equal(out.StreamARN, streamArn(name));
      assert.deepEqual(out.CurrentShardLevelMetrics, []);
      assert.deepEqual(sorted(out.DesiredShardLevelMetrics), ['IncomingBytes', 'OutgoingBytes']);
      const { StreamDescription: d } = await send(new DescribeStreamCommand({ StreamName: name }));
      assert.deepEqual(sorted(d.EnhancedMonitoring[0].ShardLevelMetrics), ['IncomingBytes', 'OutgoingBytes']);

      out = await send(new EnableEnhancedMonitoringCommand({ StreamARN: streamArn(name), ShardLevelMetrics: ['ALL'] }));
      assert.deepEqual(sorted(out.CurrentShardLevelMetrics), ['IncomingBytes', 'OutgoingBytes']);
      assert.deepEqual(sorted(out.DesiredShardLevelMetrics), sorted(ALL_METRICS));
      assert.deepEqual(sorted((await summary(name)).EnhancedMonitoring[0].ShardLevelMetrics), sorted(ALL_METRICS));

      out = await send(
        new DisableEnhancedMonitoringCommand({ StreamName: name, ShardLevelMetrics: ['IteratorAgeMilliseconds'] }),
      );
      assert.deepEqual(sorted(out.CurrentShardLevelMetrics), sorted(ALL_METRICS));
      assert.deepEqual(
        sorted(out.DesiredShardLevelMetrics),
        sorted(ALL_METRICS.filter((m) => m !== 'IteratorAgeMilliseconds')),
      );
      out = await send(
        new DisableEnhancedMonitoringCommand({ StreamARN: streamArn(name), ShardLevelMetrics: ['ALL'] }),
      );
      assert.equal(out.StreamARN, streamArn(name));
      assert.deepEqual(out.DesiredShardLevelMetrics, []);
      assert.deepEqual((await summary(name)).EnhancedMonitoring, [{ ShardLevelMetrics: [] }]);
    });

    it('unknown metric names fail validation', async () => {
      const name = uniqueName('monbad');
      await create(name, 1);
      await expectAwsError(
        send(new EnableEnhancedMonitoringCommand({ StreamName: name, ShardLevelMetrics: ['Nope'] })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value '[Nope]' at 'shardLevelMetrics' failed to satisfy constraint: " +
            'Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, IncomingRecords, ' +
            'OutgoingBytes, OutgoingRecords, WriteProvisionedThroughputExceeded, ReadProvisionedThroughputExceeded, ' +
            'IteratorAgeMilliseconds, ALL]]',
        },
      );
      await expectAwsError(
        send(new EnableEnhancedMonitoringCommand({ StreamName: name, ShardLevelMetrics: [] })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value '[]' at 'shardLevelMetrics' failed to satisfy constraint: " +
            'Member must have length greater than or equal to 1',
        },
      );
    });
  });

  describe('stream encryption (control plane)', () => {
    it('StartStreamEncryption / StopStreamEncryption switch EncryptionType and KeyId', async () => {
      const name = uniqueName('enc');
      await create(name, 1);
      await send(
        new StartStreamEncryptionCommand({ StreamName: name, EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' }),
      );
      let s = await summary(name);
      assert.equal(s.EncryptionType, 'KMS');
      assert.equal(s.KeyId, 'alias/aws/kinesis');
      assert.equal(s.StreamStatus, 'ACTIVE');
      const { StreamDescription: d } = await send(new DescribeStreamCommand({ StreamName: name }));
      assert.equal(d.EncryptionType, 'KMS');
      assert.equal(d.KeyId, 'alias/aws/kinesis');

      await send(
        new StopStreamEncryptionCommand({
          StreamARN: streamArn(name),
          EncryptionType: 'KMS',
          KeyId: 'alias/aws/kinesis',
        }),
      );
      s = await summary(name);
      assert.equal(s.EncryptionType, 'NONE');
      assert.equal(s.KeyId, undefined);

      // a key that exists (unknown keys are KMSNotFoundException; see test_encryption.py)
      const key = 'arn:aws:kms:us-east-1:000000000000:alias/aws/kinesis';
      await send(new StartStreamEncryptionCommand({ StreamARN: streamArn(name), EncryptionType: 'KMS', KeyId: key }));
      s = await summary(name);
      assert.equal(s.EncryptionType, 'KMS');
      assert.equal(s.KeyId, key);
      await send(new StopStreamEncryptionCommand({ StreamName: name, EncryptionType: 'KMS', KeyId: key }));
      assert.equal((await summary(name)).EncryptionType, 'NONE');

      await expectAwsError(
        send(new StartStreamEncryptionCommand({ StreamName: name, EncryptionType: 'AES', KeyId: key })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value 'AES' at 'encryptionType' failed to satisfy constraint: " +
            'Member must satisfy enum value set: [NONE, KMS]',
        },
      );
    });
  });

  describe('UpdateStreamMode', () => {
    it('switches PROVISIONED <-> ON_DEMAND by StreamARN and keeps the shards', async () => {
      const name = uniqueName('mode');
      await create(name, 2);
      const limits0 = await send(new DescribeLimitsCommand({}));
      await send(
        new UpdateStreamModeCommand({ StreamARN: streamArn(name), StreamModeDetails: { StreamMode: 'ON_DEMAND' } }),
      );
      let s = await summary(name);
      assert.deepEqual(s.StreamModeDetails, { StreamMode: 'ON_DEMAND' });
      assert.equal(s.StreamStatus, 'ACTIVE');
      assert.equal(s.OpenShardCount, 2);
      const limits1 = await send(new DescribeLimitsCommand({}));
      assert.equal(limits1.OnDemandStreamCount, limits0.OnDemandStreamCount + 1);
      const { StreamDescription: d } = await send(new DescribeStreamCommand({ StreamName: name }));
      assert.deepEqual(d.StreamModeDetails, { StreamMode: 'ON_DEMAND' });
      assertNewShards(d.Shards, 2);
      const { StreamSummaries } = await send(new ListStreamsCommand({ ExclusiveStartStreamName: name.slice(0, -1) }));
      assert.deepEqual(StreamSummaries.find((x) => x.StreamName === name).StreamModeDetails, {
        StreamMode: 'ON_DEMAND',
      });

      await send(
        new UpdateStreamModeCommand({ StreamARN: streamArn(name), StreamModeDetails: { StreamMode: 'PROVISIONED' } }),
      );
      s = await summary(name);
      assert.deepEqual(s.StreamModeDetails, { StreamMode: 'PROVISIONED' });
      const limits2 = await send(new DescribeLimitsCommand({}));
      assert.equal(limits2.OnDemandStreamCount, limits0.OnDemandStreamCount);
      assert.equal(limits2.OpenShardCount, limits0.OpenShardCount);
    });

    it('requires StreamARN and StreamModeDetails; unknown streams are not found', async () => {
      await expectAwsError(
        send(new UpdateStreamModeCommand({ StreamModeDetails: { StreamMode: 'ON_DEMAND' } })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null",
        },
      );
      const name = uniqueName('modegone');
      await expectAwsError(
        send(
          new UpdateStreamModeCommand({ StreamARN: streamArn(name), StreamModeDetails: { StreamMode: 'ON_DEMAND' } }),
        ),
        'ResourceNotFoundException',
        { message: notFound(name) },
      );
      await expectAwsError(
        send(
          new UpdateStreamModeCommand({
            StreamARN: 'arn:aws:kinesis:us-east-1:000000000000:nostream',
            StreamModeDetails: { StreamMode: 'ON_DEMAND' },
          }),
        ),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value 'arn:aws:kinesis:us-east-1:000000000000:nostream' at 'streamARN' " +
            'failed to satisfy constraint: Member must satisfy regular expression pattern: ' +
            'arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+',
        },
      );
    });
  });

  describe('UpdateMaxRecordSize', () => {
    it('updates MaxRecordSizeInKiB by StreamARN within 1024..10240', async () => {
      const name = uniqueName('maxsize');
      await create(name, 1);
      await send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 10240 }));
      let s = await summary(name);
      assert.equal(s.MaxRecordSizeInKiB, 10240);
      assert.equal(s.StreamStatus, 'ACTIVE');
      await send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 1024 }));
      s = await summary(name);
      assert.equal(s.MaxRecordSizeInKiB, 1024);
      await send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 5000 }));
      assert.equal((await summary(name)).MaxRecordSizeInKiB, 5000);

      await expectAwsError(
        send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 10241 })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value '10241' at 'maxRecordSizeInKiB' failed to satisfy constraint: " +
            'Member must have value less than or equal to 10240',
        },
      );
      await expectAwsError(
        send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name), MaxRecordSizeInKiB: 1000 })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value '1000' at 'maxRecordSizeInKiB' failed to satisfy constraint: " +
            'Member must have value greater than or equal to 1024',
        },
      );
      await expectAwsError(
        send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(name) })),
        'ValidationException',
        {
          message:
            "1 validation error detected: Value null at 'maxRecordSizeInKiB' failed to satisfy constraint: " +
            'Member must not be null',
        },
      );
      assert.equal((await summary(name)).MaxRecordSizeInKiB, 5000, 'failed calls change nothing');
      const gone = uniqueName('maxgone');
      await expectAwsError(
        send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn(gone), MaxRecordSizeInKiB: 2048 })),
        'ResourceNotFoundException',
        { message: notFound(gone) },
      );
    });
  });

  describe('StreamARN addressing', () => {
    // Each entry: operation name, and a function from the stream selector ({StreamName} or {StreamARN}) to a
    // command. Every call must succeed by ARN alone, by name and ARN together, and fail with
    // ResourceNotFoundException for an ARN of a stream that does not exist.
    const ops = [
      ['DescribeStream', (sel) => new DescribeStreamCommand({ ...sel })],
      ['DescribeStreamSummary', (sel) => new DescribeStreamSummaryCommand({ ...sel })],
      ['ListShards', (sel) => new ListShardsCommand({ ...sel })],
      ['AddTagsToStream', (sel) => new AddTagsToStreamCommand({ ...sel, Tags: { k: 'v' } })],
      ['ListTagsForStream', (sel) => new ListTagsForStreamCommand({ ...sel })],
      ['RemoveTagsFromStream', (sel) => new RemoveTagsFromStreamCommand({ ...sel, TagKeys: ['k'] })],
      [
        'IncreaseStreamRetentionPeriod',
        (sel) => new IncreaseStreamRetentionPeriodCommand({ ...sel, RetentionPeriodHours: 48 }),
      ],
      [
        'DecreaseStreamRetentionPeriod',
        (sel) => new DecreaseStreamRetentionPeriodCommand({ ...sel, RetentionPeriodHours: 24 }),
      ],
      [
        'EnableEnhancedMonitoring',
        (sel) => new EnableEnhancedMonitoringCommand({ ...sel, ShardLevelMetrics: ['IncomingBytes'] }),
      ],
      [
        'DisableEnhancedMonitoring',
        (sel) => new DisableEnhancedMonitoringCommand({ ...sel, ShardLevelMetrics: ['IncomingBytes'] }),
      ],
      [
        'StartStreamEncryption',
        (sel) => new StartStreamEncryptionCommand({ ...sel, EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' }),
      ],
      [
        'StopStreamEncryption',
        (sel) => new StopStreamEncryptionCommand({ ...sel, EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' }),
      ],
      [
        'UpdateMaxRecordSize',
        (sel) => new UpdateMaxRecordSizeCommand({ StreamARN: sel.StreamARN, MaxRecordSizeInKiB: 2048 }),
      ],
      [
        'UpdateStreamMode (to ON_DEMAND)',
        (sel) =>
          new UpdateStreamModeCommand({ StreamARN: sel.StreamARN, StreamModeDetails: { StreamMode: 'ON_DEMAND' } }),
      ],
      [
        'UpdateStreamMode (to PROVISIONED)',
        (sel) =>
          new UpdateStreamModeCommand({ StreamARN: sel.StreamARN, StreamModeDetails: { StreamMode: 'PROVISIONED' } }),
      ],
      ['TagResource', (sel) => new TagResourceCommand({ ResourceARN: sel.StreamARN, Tags: { r: '1' } })],
      ['ListTagsForResource', (sel) => new ListTagsForResourceCommand({ ResourceARN: sel.StreamARN })],
      ['UntagResource', (sel) => new UntagResourceCommand({ ResourceARN: sel.StreamARN, TagKeys: ['r'] })],
      ['DeleteStream', (sel) => new DeleteStreamCommand({ ...sel })],
    ];

    it('every stream operation works with StreamARN alone', async () => {
      const name = uniqueName('byarn');
      await create(name, 2);
      const arn = streamArn(name);
      for (const [op, make] of ops) {
        const out = await send(make({ StreamARN: arn })).catch((e) =>
          assert.fail(`${op} by ARN: ${e.name}: ${e.message}`),
        );
        assert.equal(out.$metadata.httpStatusCode, 200, op);
        if (op === 'DescribeStream') assert.equal(out.StreamDescription.StreamName, name);
        if (op === 'DescribeStreamSummary') assert.equal(out.StreamDescriptionSummary.StreamARN, arn);
        if (op === 'ListShards') assert.equal(out.Shards.length, 2);
        if (op === 'ListTagsForStream') assert.deepEqual(out.Tags, [{ Key: 'k', Value: 'v' }]);
        if (op === 'IncreaseStreamRetentionPeriod') assert.equal((await summary(name)).RetentionPeriodHours, 48);
        if (op === 'StartStreamEncryption') assert.equal((await summary(name)).EncryptionType, 'KMS');
        if (op === 'UpdateMaxRecordSize') assert.equal((await summary(name)).MaxRecordSizeInKiB, 2048);
        if (op === 'UpdateStreamMode (to ON_DEMAND)') {
          assert.deepEqual((await summary(name)).StreamModeDetails, { StreamMode: 'ON_DEMAND' });
        }
        if (op === 'ListTagsForResource') assert.deepEqual(out.Tags, [{ Key: 'r', Value: '1' }]);
      }
      await expectAwsError(summary(name), 'ResourceNotFoundException', { message: notFound(name) });
    });

    it('every stream operation works with StreamName and the matching StreamARN together', async () => {
      const name = uniqueName('both');
      await create(name, 1);
      const sel = { StreamName: name, StreamARN: streamArn(name) };
      for (const [op, make] of ops) {
        const out = await send(make(sel)).catch((e) => assert.fail(`${op} by name+ARN: ${e.name}: ${e.message}`));
        assert.equal(out.$metadata.httpStatusCode, 200, op);
      }
      await expectAwsError(summary(name), 'ResourceNotFoundException');
    });

    it('every stream operation fails with ResourceNotFoundException for the ARN of a missing stream', async () => {
      const name = uniqueName('ghost');
      for (const [op, make] of ops) {
        const err = await expectAwsError(send(make({ StreamARN: streamArn(name) })), 'ResourceNotFoundException').catch(
          (e) => assert.fail(`${op}: ${e.message}`),
        );
        if (!op.endsWith('Resource')) assert.equal(err.message, notFound(name), op);
      }
    });

    it('every stream operation fails with ResourceNotFoundException for the name of a missing stream', async () => {
      const name = uniqueName('ghostname');
      for (const [op, make] of ops) {
        if (op.startsWith('Update') || op.endsWith('Resource')) continue; // ARN-only operations
        await expectAwsError(send(make({ StreamName: name })), 'ResourceNotFoundException', {
          message: notFound(name),
        }).catch((e) => assert.fail(`${op}: ${e.message}`));
      }
    });

    it('a call naming no stream at all is refused with a 400', async () => {
      for (const cmd of [
        new DescribeStreamSummaryCommand({}),
        new DescribeStreamCommand({}),
        new DeleteStreamCommand({}),
        new AddTagsToStreamCommand({ Tags: { a: 'b' } }),
      ]) {
        const err = await send(cmd).then(
          () => assert.fail('succeeded without a stream'),
          (e) => e,
        );
        assert.equal(err.$metadata?.httpStatusCode, 400);
        assert.ok(['ValidationException', 'InvalidArgumentException'].includes(err.name), err.name);
      }
    });
  });
});

describe('ListStreams (fresh server)', () => {
  let eddy;
  let kinesis;
  // Created in this order; listed in lexicographic order.
  const names = ['m-stream', 'a-stream', 'z.stream', 'B_stream', 'b-stream', 'a-stream-2', '0stream'];
  const expected = [...names].sort();
  const created = new Map();

  before(async () => {
    eddy = await startEddy();
    kinesis = makeClient(eddy.endpoint);
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });

  it('lists nothing on an empty server', async () => {
    const out = await kinesis.send(new ListStreamsCommand({}));
    assert.deepEqual(out.StreamNames, []);
    assert.equal(out.HasMoreStreams, false);
    assert.deepEqual(out.StreamSummaries ?? [], []);
    assert.equal(out.NextToken, undefined);
  });

  it('lists every stream in name order with exact StreamSummaries', async () => {
    for (const [i, name] of names.entries()) {
      const t0 = Date.now();
      if (i % 3 === 2) {
        await kinesis.send(
          new CreateStreamCommand({ StreamName: name, StreamModeDetails: { StreamMode: 'ON_DEMAND' } }),
        );
      } else {
        await kinesis.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1 + (i % 2) }));
      }
      created.set(name, { t0, t1: Date.now(), mode: i % 3 === 2 ? 'ON_DEMAND' : 'PROVISIONED' });
    }
    const out = await kinesis.send(new ListStreamsCommand({}));
    assert.deepEqual(out.StreamNames, expected);
    assert.equal(out.HasMoreStreams, false);
    assert.equal(out.NextToken, undefined);
    assert.equal(out.StreamSummaries.length, expected.length);
    for (const [i, s] of out.StreamSummaries.entries()) {
      const c = created.get(expected[i]);
      assert.equal(s.StreamName, expected[i]);
      assert.equal(s.StreamARN, streamArn(expected[i]));
      assert.equal(s.StreamStatus, 'ACTIVE');
      assert.deepEqual(s.StreamModeDetails, { StreamMode: c.mode });
      assertTimeBetween(s.StreamCreationTimestamp, c.t0, c.t1);
    }
  });

  it('pages with Limit and ExclusiveStartStreamName until exhausted', async () => {
    const seen = [];
    let start;
    for (;;) {
      const out = await kinesis.send(new ListStreamsCommand({ Limit: 3, ExclusiveStartStreamName: start }));
      assert.ok(out.StreamNames.length <= 3);
      assert.deepEqual(
        out.StreamSummaries.map((s) => s.StreamName),
        out.StreamNames,
      );
      seen.push(out.StreamNames);
      if (!out.HasMoreStreams) break;
      start = out.StreamNames.at(-1);
      assert.ok(seen.length < 10, 'paging did not end');
    }
    assert.deepEqual(seen, [expected.slice(0, 3), expected.slice(3, 6), expected.slice(6)]);
    // A start name that is not a stream still lists the names after it.
    const out = await kinesis.send(new ListStreamsCommand({ ExclusiveStartStreamName: 'a-stream-1' }));
    assert.deepEqual(
      out.StreamNames,
      expected.filter((n) => n > 'a-stream-1'),
    );
  });

  it('pages with Limit and NextToken until exhausted', async () => {
    const seen = [];
    let out = await kinesis.send(new ListStreamsCommand({ Limit: 2 }));
    seen.push(out.StreamNames);
    while (out.NextToken) {
      assert.equal(out.HasMoreStreams, true);
      out = await kinesis.send(new ListStreamsCommand({ Limit: 2, NextToken: out.NextToken }));
      seen.push(out.StreamNames);
      assert.ok(seen.length < 10, 'paging did not end');
    }
    assert.equal(out.HasMoreStreams, false);
    assert.deepEqual(seen, [expected.slice(0, 2), expected.slice(2, 4), expected.slice(4, 6), expected.slice(6)]);
  });

  it('paginateListStreams walks every page', async () => {
    const pages = [];
    for await (const page of paginateListStreams({ client: kinesis, pageSize: 3 }, {})) {
      pages.push(page.StreamNames);
      assert.ok(pages.length < 10, 'paging did not end');
    }
    assert.deepEqual(pages.flat(), expected);
    assert.deepEqual(
      pages.map((p) => p.length),
      [3, 3, 1],
    );
  });

  it('validates Limit and rejects a bad NextToken', async () => {
    await expectAwsError(kinesis.send(new ListStreamsCommand({ Limit: 0 })), 'ValidationException', {
      message:
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: " +
        'Member must have value greater than or equal to 1',
    });
    await expectAwsError(kinesis.send(new ListStreamsCommand({ NextToken: 'garbage' })), 'InvalidArgumentException');
  });
});

describe('limits and large streams', () => {
  it('CreateStream past the shard limit fails with LimitExceededException; DescribeLimits counts', async (t) => {
    const eddy = await startEddy({ args: ['--shard-limit', '5'] });
    const kinesis = makeClient(eddy.endpoint);
    t.after(async () => {
      kinesis.destroy();
      await eddy.cleanup();
    });
    const fresh = await kinesis.send(new DescribeLimitsCommand({}));
    assert.equal(fresh.ShardLimit, 5);
    assert.equal(fresh.OpenShardCount, 0);
    assert.equal(fresh.OnDemandStreamCount, 0);
    assert.equal(fresh.OnDemandStreamCountLimit, 50);

    await kinesis.send(new CreateStreamCommand({ StreamName: 'three', ShardCount: 3 }));
    await expectAwsError(
      kinesis.send(new CreateStreamCommand({ StreamName: 'three-more', ShardCount: 3 })),
      'LimitExceededException',
      {
        message:
          `This request would exceed the shard limit for the account ${ACCOUNT} in ${REGION}. Current shard count ` +
          'for the account: 3. Limit: 5. Number of additional shards that would have resulted from this request: 3. ' +
          'Refer to the AWS Service Limits page (https://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) ' +
          'for current limits and how to request higher limits.',
      },
    );
    await expectAwsError(
      kinesis.send(new DescribeStreamSummaryCommand({ StreamName: 'three-more' })),
      'ResourceNotFoundException',
    );
    await kinesis.send(new CreateStreamCommand({ StreamName: 'two', ShardCount: 2 }));
    const full = await kinesis.send(new DescribeLimitsCommand({}));
    assert.equal(full.OpenShardCount, 5);
    await kinesis.send(new DeleteStreamCommand({ StreamName: 'three' }));
    assert.equal((await kinesis.send(new DescribeLimitsCommand({}))).OpenShardCount, 2);
    await kinesis.send(new CreateStreamCommand({ StreamName: 'three-again', ShardCount: 3 }));
  });

  describe('a stream of 1001 shards', () => {
    let eddy;
    let kinesis;
    const name = 'wide';
    before(async () => {
      eddy = await startEddy({ args: ['--shard-limit', '1100'] });
      kinesis = makeClient(eddy.endpoint);
      await kinesis.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1001 }));
    });
    after(async () => {
      kinesis?.destroy();
      await eddy?.cleanup();
    });

    it('ListShards returns 1000 shards by default, then the rest via NextToken', async () => {
      const first = await kinesis.send(new ListShardsCommand({ StreamName: name }));
      assert.equal(first.Shards.length, 1000);
      assertNewShards(first.Shards, 1001);
      assert.ok(first.NextToken);
      const second = await kinesis.send(new ListShardsCommand({ NextToken: first.NextToken }));
      assert.deepEqual(
        second.Shards.map((s) => s.ShardId),
        [shardId(1000)],
      );
      assertNewShards(second.Shards, 1001, 1000);
      assert.equal(second.Shards[0].HashKeyRange.EndingHashKey, MAX_HASH);
      assert.equal(second.NextToken, undefined);
    });

    it(
      'ListShards returns at most 1000 shards when MaxResults is larger',
      async () => {
        const out = await kinesis.send(new ListShardsCommand({ StreamName: name, MaxResults: 5000 }));
        assert.equal(out.Shards.length, 1000);
        assert.ok(out.NextToken);
      },
    );

    it('DescribeStream returns 100 shards by default and pages through all 1001', async () => {
      const seen = [];
      let start;
      let pages = 0;
      for (;;) {
        const { StreamDescription: d } = await kinesis.send(
          new DescribeStreamCommand({ StreamName: name, ExclusiveStartShardId: start }),
        );
        pages += 1;
        assertNewShards(d.Shards, 1001, seen.length);
        seen.push(...d.Shards.map((s) => s.ShardId));
        if (!d.HasMoreShards) break;
        assert.equal(d.Shards.length, 100);
        start = d.Shards.at(-1).ShardId;
        assert.ok(pages < 20, 'paging did not end');
      }
      assert.equal(pages, 11);
      assert.equal(seen.length, 1001);
      assert.equal(new Set(seen).size, 1001);
    });

    it(
      'DescribeStream returns at most 100 shards when Limit is larger',
      async () => {
        const { StreamDescription: d } = await kinesis.send(
          new DescribeStreamCommand({ StreamName: name, Limit: 10000 }),
        );
        assert.equal(d.Shards.length, 100);
        assert.equal(d.HasMoreShards, true);
      },
    );

    it('DescribeStreamSummary and DescribeLimits count 1001 open shards', async () => {
      const { StreamDescriptionSummary: s } = await kinesis.send(
        new DescribeStreamSummaryCommand({ StreamName: name }),
      );
      assert.equal(s.OpenShardCount, 1001);
      assert.equal((await kinesis.send(new DescribeLimitsCommand({}))).OpenShardCount, 1001);
    });
  });

  describe('101 streams', () => {
    let eddy;
    let kinesis;
    const names = Array.from({ length: 101 }, (_, i) => `many-${String(i).padStart(3, '0')}`);
    before(async () => {
      eddy = await startEddy();
      kinesis = makeClient(eddy.endpoint);
      for (const StreamName of names) {
        await kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 1 }));
      }
    });
    after(async () => {
      kinesis?.destroy();
      await eddy?.cleanup();
    });

    it('ListStreams returns 100 names by default and the last one on the next page', async () => {
      const first = await kinesis.send(new ListStreamsCommand({}));
      assert.deepEqual(first.StreamNames, names.slice(0, 100));
      assert.equal(first.HasMoreStreams, true);
      assert.ok(first.NextToken);
      const second = await kinesis.send(new ListStreamsCommand({ NextToken: first.NextToken }));
      assert.deepEqual(second.StreamNames, names.slice(100));
      assert.equal(second.HasMoreStreams, false);
    });

    it(
      'ListStreams returns at most 100 names when Limit is larger',
      async () => {
        const out = await kinesis.send(new ListStreamsCommand({ Limit: 1000 }));
        assert.equal(out.StreamNames.length, 100);
        assert.equal(out.HasMoreStreams, true);
      },
    );
  });
});

describe('account operations (fresh server)', () => {
  let eddy;
  let kinesis;
  before(async () => {
    eddy = await startEddy();
    kinesis = makeClient(eddy.endpoint);
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });

  it('DescribeLimits reports the defaults and follows creates, mode changes and deletes', async () => {
    assert.deepEqual(await kinesis.send(new DescribeLimitsCommand({})).then(({ $metadata, ...rest }) => rest), {
      ShardLimit: 500,
      OpenShardCount: 0,
      OnDemandStreamCount: 0,
      OnDemandStreamCountLimit: 50,
    });
    await kinesis.send(new CreateStreamCommand({ StreamName: 'p', ShardCount: 7 }));
    let l = await kinesis.send(new DescribeLimitsCommand({}));
    assert.equal(l.OpenShardCount, 7);
    assert.equal(l.OnDemandStreamCount, 0);
    await kinesis.send(new CreateStreamCommand({ StreamName: 'od', StreamModeDetails: { StreamMode: 'ON_DEMAND' } }));
    l = await kinesis.send(new DescribeLimitsCommand({}));
    assert.equal(l.OnDemandStreamCount, 1);
    assert.equal(l.OnDemandStreamCountLimit, 50);
    await kinesis.send(new DeleteStreamCommand({ StreamName: 'od' }));
    await kinesis.send(new DeleteStreamCommand({ StreamName: 'p' }));
    l = await kinesis.send(new DescribeLimitsCommand({}));
    assert.equal(l.OpenShardCount, 0);
    assert.equal(l.OnDemandStreamCount, 0);
  });

  it('DescribeAccountSettings / UpdateAccountSettings round-trip MinimumThroughputBillingCommitment', async () => {
    const initial = await kinesis.send(new DescribeAccountSettingsCommand({}));
    assert.equal(initial.MinimumThroughputBillingCommitment.Status, 'DISABLED');

    const t0 = Date.now();
    const enabled = await kinesis.send(
      new UpdateAccountSettingsCommand({ MinimumThroughputBillingCommitment: { Status: 'ENABLED' } }),
    );
    const t1 = Date.now();
    assert.equal(enabled.MinimumThroughputBillingCommitment.Status, 'ENABLED');
    assertTimeBetween(enabled.MinimumThroughputBillingCommitment.StartedAt, t0, t1);
    const described = await kinesis.send(new DescribeAccountSettingsCommand({}));
    assert.equal(described.MinimumThroughputBillingCommitment.Status, 'ENABLED');
    assert.deepEqual(
      described.MinimumThroughputBillingCommitment.StartedAt,
      enabled.MinimumThroughputBillingCommitment.StartedAt,
    );

    // Ending the commitment: AWS may keep it until the earliest allowed end.
    const disabled = await kinesis.send(
      new UpdateAccountSettingsCommand({ MinimumThroughputBillingCommitment: { Status: 'DISABLED' } }),
    );
    assert.ok(
      ['DISABLED', 'ENABLED_UNTIL_EARLIEST_ALLOWED_END'].includes(disabled.MinimumThroughputBillingCommitment.Status),
    );
    const after = await kinesis.send(new DescribeAccountSettingsCommand({}));
    assert.equal(after.MinimumThroughputBillingCommitment.Status, disabled.MinimumThroughputBillingCommitment.Status);

    await expectAwsError(
      kinesis.send(new UpdateAccountSettingsCommand({ MinimumThroughputBillingCommitment: { Status: 'MAYBE' } })),
      'ValidationException',
      {
        message:
          "1 validation error detected: Value 'MAYBE' at 'minimumThroughputBillingCommitment.status' failed to " +
          'satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]',
      },
    );
    await expectAwsError(kinesis.send(new UpdateAccountSettingsCommand({})), 'ValidationException', {
      message:
        "1 validation error detected: Value null at 'minimumThroughputBillingCommitment' failed to satisfy " +
        'constraint: Member must not be null',
    });
  });
});

describe('HTTP/2 transport', () => {
  let eddy;
  before(async () => {
    eddy = await startEddy();
  });
  after(async () => {
    await eddy?.cleanup();
  });

  it('the SDK uses its NodeHttp2Handler and every response arrives on a cleartext HTTP/2 stream', async (t) => {
    const kinesis = makeClient(eddy.endpoint);
    t.after(() => kinesis.destroy());
    const handler = kinesis.config.requestHandler;
    assert.equal(handler.constructor.name, 'NodeHttp2Handler');
    assert.equal(handler.metadata?.handlerProtocol, 'h2');
    const seen = observeTransport(kinesis);
    await kinesis.send(new CreateStreamCommand({ StreamName: 'h2', ShardCount: 2 }));
    await kinesis.send(new ListStreamsCommand({}));
    assert.equal(seen.length, 2);
    for (const s of seen) {
      assert.equal(s.kind, 'ClientHttp2Stream');
      assert.equal(s.alpn, 'h2c');
      assert.equal(s.status, 200);
    }
  });

  it('50 concurrent calls (one HTTP/2 connection each, the SDK default) all succeed', async (t) => {
    const kinesis = makeClient(eddy.endpoint);
    t.after(() => kinesis.destroy());
    const seen = observeTransport(kinesis);
    const names = Array.from({ length: 25 }, (_, i) => `par-${String(i).padStart(2, '0')}`);
    const results = await Promise.all([
      ...names.map((StreamName, i) => kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 1 + (i % 3) }))),
      ...names.map(() => kinesis.send(new DescribeLimitsCommand({}))),
    ]);
    assert.equal(results.length, 50);
    assert.ok(results.every((r) => r.$metadata.httpStatusCode === 200));
    assert.equal(seen.length, 50);
    assert.ok(seen.every((s) => s.kind === 'ClientHttp2Stream' && s.alpn === 'h2c'));
    const summaries = await Promise.all(
      names.map((StreamName) => kinesis.send(new DescribeStreamSummaryCommand({ StreamName }))),
    );
    summaries.forEach(({ StreamDescriptionSummary: s }, i) => {
      assert.equal(s.StreamName, names[i]);
      assert.equal(s.OpenShardCount, 1 + (i % 3));
    });
    const { StreamNames } = await kinesis.send(new ListStreamsCommand({ ExclusiveStartStreamName: 'par-' }));
    assert.deepEqual(StreamNames, names);
  });

  it('50 concurrent calls multiplexed on shared HTTP/2 sessions all succeed', async (t) => {
    const Http2Handler = makeClient(eddy.endpoint).config.requestHandler.constructor;
    const kinesis = makeClient(eddy.endpoint, {
      requestHandler: new Http2Handler({ disableConcurrentStreams: false }),
    });
    t.after(() => kinesis.destroy());
    const seen = observeTransport(kinesis);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0
          ? kinesis.send(new ListShardsCommand({ StreamName: 'par-00' }))
          : kinesis.send(new DescribeStreamSummaryCommand({ StreamName: `par-${String(i % 25).padStart(2, '0')}` })),
      ),
    );
    assert.equal(results.length, 50);
    results.forEach((r, i) => {
      if (i % 2 === 0)
        assert.deepEqual(
          r.Shards.map((s) => s.ShardId),
          [shardId(0)],
        );
      else assert.equal(r.StreamDescriptionSummary.StreamName, `par-${String(i % 25).padStart(2, '0')}`);
    });
    assert.equal(seen.length, 50);
    assert.ok(seen.every((s) => s.kind === 'ClientHttp2Stream' && s.alpn === 'h2c'));
    const sessions = new Set(seen.map((s) => s.session));
    assert.ok(sessions.size < 50, `expected streams to share sessions, got ${sessions.size} sessions`);
    // Errors multiplexed on the same session keep their own status and body.
    const errors = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        kinesis.send(new DescribeStreamSummaryCommand({ StreamName: `nope-${i}` })).catch((e) => e),
      ),
    );
    errors.forEach((e, i) => {
      assert.equal(e.name, 'ResourceNotFoundException');
      assert.equal(e.$metadata.httpStatusCode, 400);
      assert.equal(e.message, notFound(`nope-${i}`));
    });
  });

  it('the same port still answers HTTP/1.1', async () => {
    const body = JSON.stringify({ StreamName: 'par-00' });
    const res = await new Promise((resolve, reject) => {
      const req = http.request(
        new URL('/', eddy.endpoint),
        {
          method: 'POST',
          agent: false,
          headers: {
            'content-type': 'application/x-amz-json-1.1',
            'x-amz-target': 'Kinesis_20131202.DescribeStreamSummary',
            'content-length': Buffer.byteLength(body),
          },
        },
        (r) => {
          let data = '';
          r.setEncoding('utf8');
          r.on('data', (c) => (data += c));
          r.on('end', () => resolve({ status: r.statusCode, version: r.httpVersion, headers: r.headers, data }));
          r.on('error', reject);
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('HTTP/1.1 request timed out')));
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(res.status, 200);
    assert.equal(res.version, '1.1');
    assert.match(res.headers['content-type'], /^application\/x-amz-json-1\.1/);
    assert.match(
      res.headers['x-amzn-requestid'],
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.equal(JSON.parse(res.data).StreamDescriptionSummary.StreamName, 'par-00');
  });
});

describe('persistence and shutdown', () => {
  let eddy;
  let kinesis;
  before(async () => {
    eddy = await startEddy();
    kinesis = makeClient(eddy.endpoint);
  });
  after(async () => {
    kinesis?.destroy();
    await eddy?.cleanup();
  });
  // Each test starts from a running server even when an earlier one failed half-way.
  const ensureRunning = async () => {
    if (!eddy.running) await eddy.restart();
  };

  const state = async (name) => {
    const { StreamDescriptionSummary: s } = await kinesis.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    const { Tags } = await kinesis.send(new ListTagsForStreamCommand({ StreamName: name }));
    const { Shards } = await kinesis.send(new ListShardsCommand({ StreamName: name }));
    const { StreamDescription: d } = await kinesis.send(new DescribeStreamCommand({ StreamName: name }));
    return { s, tags: Tags.sort(byKey), shards: Shards, monitoring: d.EnhancedMonitoring };
  };

  it('streams and their settings survive a graceful restart (SIGTERM)', async () => {
    await ensureRunning();
    await kinesis.send(new CreateStreamCommand({ StreamName: 'kept', ShardCount: 3, Tags: { a: '1' } }));
    await kinesis.send(new IncreaseStreamRetentionPeriodCommand({ StreamName: 'kept', RetentionPeriodHours: 100 }));
    await kinesis.send(
      new EnableEnhancedMonitoringCommand({ StreamName: 'kept', ShardLevelMetrics: ['IncomingBytes'] }),
    );
    await kinesis.send(
      // a key that exists (unknown keys are KMSNotFoundException)
      new StartStreamEncryptionCommand({ StreamName: 'kept', EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' }),
    );
    await kinesis.send(new UpdateMaxRecordSizeCommand({ StreamARN: streamArn('kept'), MaxRecordSizeInKiB: 3000 }));
    await kinesis.send(new CreateStreamCommand({ StreamName: 'gone', ShardCount: 1 }));
    await kinesis.send(new DeleteStreamCommand({ StreamName: 'gone' }));
    const before = await state('kept');
    assert.equal(before.s.RetentionPeriodHours, 100);
    assert.equal(before.s.EncryptionType, 'KMS');
    assert.equal(before.s.KeyId, 'alias/aws/kinesis');
    assert.equal(before.s.MaxRecordSizeInKiB, 3000);
    assert.deepEqual(before.tags, [{ Key: 'a', Value: '1' }]);

    const exit = await eddy.stop();
    assert.notEqual(exit.signal, 'SIGKILL', 'eddy stopped on SIGTERM within the deadline');
    await eddy.restart();
    assert.deepEqual(await state('kept'), before);
    const { StreamNames } = await kinesis.send(new ListStreamsCommand({}));
    assert.deepEqual(StreamNames, ['kept']);
  });

  it('SIGTERM after serving requests exits with status 0', async () => {
    await ensureRunning();
    await kinesis.send(new ListStreamsCommand({}));
    const exit = await eddy.stop();
    const stderr = eddy.stderr;
    await eddy.restart();
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM; stderr:\n${stderr}`);
  });

  it('acknowledged changes survive SIGKILL', async () => {
    await ensureRunning();
    await kinesis.send(new CreateStreamCommand({ StreamName: 'crash', ShardCount: 2, Tags: { z: '26' } }));
    await kinesis.send(
      new UpdateStreamModeCommand({ StreamARN: streamArn('crash'), StreamModeDetails: { StreamMode: 'ON_DEMAND' } }),
    );
    await kinesis.send(new AddTagsToStreamCommand({ StreamName: 'crash', Tags: { y: '25' } }));
    const before = await state('crash');
    assert.deepEqual(before.s.StreamModeDetails, { StreamMode: 'ON_DEMAND' });
    const exit = await eddy.kill9();
    assert.equal(exit.signal, 'SIGKILL');
    await eddy.restart();
    assert.deepEqual(await state('crash'), before);
    const { StreamNames } = await kinesis.send(new ListStreamsCommand({}));
    assert.ok(StreamNames.includes('crash'));
  });
});
