#!/usr/bin/env bash
# bench/encryption.sh: the cost of encryption at rest, plain vs encrypted stream in one eddy, same run.
# One eddy (--durability none --shard-limits off), two 4-shard streams: plain and encrypted (alias/aws/kinesis);
# PutRecords 500 x 100 B (32 in flight, 10 s) then a GetRecords drain on each, alternating.
set -e
B=$(cd "$(dirname "$0")/.." && pwd)/build-release/bench/eddy-bench
d=$(mktemp -d)
$(cd "$(dirname "$0")/.." && pwd)/build-release/eddy serve --port 0 --data $d/data --durability none --shard-limits off --state-delay-ms 0 2> $d/err &
pid=$!
for i in $(seq 1 100); do grep -q listening $d/err && break; sleep 0.05; done
ep=$(grep -o 'http://[0-9.:]*' $d/err | head -1)
for s in plain enc; do $B setup --endpoint $ep --stream $s --shards 4 >/dev/null; done
AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=y AWS_DEFAULT_REGION=us-east-1 aws --endpoint-url $ep kinesis start-stream-encryption --stream-name enc --encryption-type KMS --key-id alias/aws/kinesis
for s in plain enc; do echo "== $s"; $B put-records --endpoint $ep --stream $s --connections 32 --duration 10 --warmup 2 | head -c 120; echo; $B get-records --endpoint $ep --stream $s | head -c 100; echo; done
kill $pid; wait $pid 2>/dev/null; rm -rf $d
