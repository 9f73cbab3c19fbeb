// A client run in its own process by security.test.mjs: NODE_EXTRA_CA_CERTS (the CA of `eddy cert`) is
// only read when node starts. It signs with the key given in the environment, talks to the https://
// endpoint over HTTP/2 (ALPN h2), creates a stream, puts records, reads them with SubscribeToShard, and
// prints one JSON line with what it saw.
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  PutRecordCommand,
  RegisterStreamConsumerCommand,
  SubscribeToShardCommand,
} from '@aws-sdk/client-kinesis';

const { ENDPOINT, KEY_ID, SECRET, STREAM } = process.env;
const k = new KinesisClient({
  endpoint: ENDPOINT,
  region: 'us-east-1',
  credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET },
  maxAttempts: 1,
});
const out = {};
try {
  await k.send(new CreateStreamCommand({ StreamName: STREAM, ShardCount: 1 }));
  let summary;
  for (let i = 0; i < 200; i++) {
    summary = (await k.send(new DescribeStreamSummaryCommand({ StreamName: STREAM }))).StreamDescriptionSummary;
    if (summary.StreamStatus === 'ACTIVE') break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const consumer = (await k.send(new RegisterStreamConsumerCommand({ StreamARN: summary.StreamARN, ConsumerName: 'tls' })))
    .Consumer;
  for (let i = 0; i < 200; i++) {
    try {
      const sub = await k.send(
        new SubscribeToShardCommand({
          ConsumerARN: consumer.ConsumerARN,
          ShardId: 'shardId-000000000000',
          StartingPosition: { Type: 'TRIM_HORIZON' },
        }),
      );
      await k.send(new PutRecordCommand({ StreamName: STREAM, Data: Buffer.from('over tls'), PartitionKey: 'p' }));
      for await (const ev of sub.EventStream) {
        const records = ev.SubscribeToShardEvent.Records;
        if (records.length > 0) {
          out.data = Buffer.from(records[0].Data).toString();
          break;
        }
      }
      break;
    } catch (err) {
      if (err.name !== 'ResourceInUseException') throw err; // the consumer is still CREATING
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  out.ok = true;
} catch (err) {
  out.error = `${err.name}: ${err.message}`;
}
console.log(JSON.stringify(out));
process.exit(0);
