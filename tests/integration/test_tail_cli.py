"""`eddy tail` (src/cli/tail.c) against the real server.

Records put by boto3 and by `eddy put --aggregate` (KPL aggregates) are printed once each, de-aggregated, in
every format; --raw shows the Kinesis records as stored; a tail started at LATEST follows records put after
it and stops at --limit; children of a split are read after it; a missing stream exits 1.
"""

import base64
import json
import os
import subprocess

from conftest import EDDY_BIN, unique_name, wait_until

ENV = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1")


def tail(server, *args):
    return subprocess.run([EDDY_BIN, "tail", "--endpoint", server.endpoint, *args], capture_output=True, env=ENV,
                          timeout=60)


def make_stream(kinesis, shards=2):
    name = unique_name("tail")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", message="stream ACTIVE")
    return name


def test_prints_every_record_once_deaggregated_in_each_format(eddy, kinesis):
    stream = make_stream(kinesis)
    for i in range(20):
        kinesis.put_record(StreamName=stream, PartitionKey=f"k{i}", Data=f"plain-{i}".encode())
    lines = "".join(f"agg-{i}\n" for i in range(500)).encode()
    put = subprocess.run([EDDY_BIN, "put", "--endpoint", eddy.endpoint, "--stream", stream, "--aggregate", "--quiet"],
                         input=lines, capture_output=True, env=ENV, timeout=60)
    assert put.returncode == 0, put.stderr
    expected = {f"plain-{i}" for i in range(20)} | {f"agg-{i}" for i in range(500)}

    text = tail(eddy, "--stream", stream, "--from", "trim-horizon", "--exit-at-end")
    assert text.returncode == 0, text.stderr
    got = text.stdout.decode().splitlines()
    assert sorted(got) == sorted(expected)

    b64 = tail(eddy, "--stream", stream, "--from", "trim-horizon", "--exit-at-end", "--format", "base64")
    assert sorted(base64.b64decode(x).decode() for x in b64.stdout.decode().splitlines()) == sorted(expected)

    js = tail(eddy, "--stream", stream, "--from", "trim-horizon", "--exit-at-end", "--format", "json")
    objs = [json.loads(x) for x in js.stdout.decode().splitlines()]
    assert len(objs) == len(expected)
    aggregated = [o for o in objs if base64.b64decode(o["data"]).startswith(b"agg-")]
    # user records of one aggregate share its sequence number and count up their sub-sequence numbers
    by_seq = {}
    for o in aggregated:
        by_seq.setdefault(o["sequence_number"], []).append(o["sub_sequence_number"])
    for subs in by_seq.values():
        assert subs == list(range(len(subs)))
    assert all(o["shard_id"].startswith("shardId-") and o["partition_key"] for o in objs)

    raw = tail(eddy, "--stream", stream, "--from", "trim-horizon", "--exit-at-end", "--format", "base64", "--raw")
    assert len(raw.stdout.decode().splitlines()) == 20 + len(by_seq)


def test_follows_from_latest_until_the_limit(eddy, kinesis):
    stream = make_stream(kinesis, shards=1)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"before")
    proc = subprocess.Popen([EDDY_BIN, "tail", "--endpoint", eddy.endpoint, "--stream", stream, "--limit", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        # LATEST is taken when the tail lists the shards: put until three records put after that arrive
        n = 0

        def done():
            nonlocal n
            kinesis.put_record(StreamName=stream, PartitionKey="k", Data=f"after-{n}".encode())
            n += 1
            return proc.poll() is not None

        wait_until(done, timeout=20, interval=0.05, message="eddy tail to print 3 records and exit")
        out = proc.stdout.read().decode().splitlines()
        assert proc.returncode == 0
        assert len(out) == 3 and all(x.startswith("after-") for x in out)
        assert out == sorted(out, key=lambda x: int(x.split("-")[1]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reads_the_children_of_a_split(eddy, kinesis):
    stream = make_stream(kinesis, shards=1)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"parent")
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000",
                        NewStartingHashKey=str(1 << 127))
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", message="split done")
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"child")
    out = tail(eddy, "--stream", stream, "--from", "trim-horizon", "--exit-at-end")
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.decode().splitlines()) == ["child", "parent"]


def test_a_missing_stream_exits_1_and_bad_usage_2(eddy):
    missing = tail(eddy, "--stream", "no-such-stream", "--exit-at-end")
    assert missing.returncode == 1 and b"ResourceNotFoundException" in missing.stderr
    assert tail(eddy).returncode == 2
    assert tail(eddy, "--stream", "s", "--from", "yesterday").returncode == 2
    assert tail(eddy, "--stream", "s", "--format", "xml").returncode == 2
