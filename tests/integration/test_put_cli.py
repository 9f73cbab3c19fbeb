"""`eddy put` (src/cli/put.c, libeddy's producer) against the real server, read back with boto3.

Lines from a file and from stdin arrive as records, once each; partition keys follow --partition-key
(constant, a JSON field, a regular expression); --aggregate packs them into fewer Kinesis records (counted by
/metrics); a missing stream makes it exit 1 with the service's error; bad usage exits 2.
"""

import json
import os
import subprocess
import urllib.request

from conftest import EDDY_BIN, unique_name, wait_until


def run_put(server, *args, stdin=None):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1")
    return subprocess.run(
        [EDDY_BIN, "put", "--endpoint", server.endpoint, "--quiet", *args],
        input=stdin, capture_output=True, env=env, timeout=120,
    )


def read_all(kinesis, stream):
    """Every record of every shard: [(partition key, data bytes)]."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            got = kinesis.get_records(ShardIterator=it, Limit=10000)
            out += [(r["PartitionKey"], r["Data"]) for r in got["Records"]]
            if not got["Records"]:
                break
            it = got.get("NextShardIterator")
    return out


def make_stream(kinesis, shards=2):
    name = unique_name("put")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", message="stream ACTIVE")
    return name


def test_lines_from_a_file_and_stdin_arrive_once_with_their_keys(eddy, kinesis, tmp_path):
    stream = make_stream(kinesis)
    lines = [json.dumps({"user": f"u{i % 7}", "n": i}) for i in range(2000)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = run_put(eddy, "--stream", stream, "--partition-key", "field:user", str(path))
    assert done.returncode == 0, done.stderr
    done = run_put(eddy, "--stream", stream, "--partition-key", "constant:same", stdin=b"alpha\nbeta\n")
    assert done.returncode == 0, done.stderr
    records = read_all(kinesis, stream)
    assert len(records) == 2002
    by_data = {data: pk for pk, data in records}
    assert len(by_data) == 2002, "a line arrived twice"
    for line in lines:
        assert by_data[line.encode()] == json.loads(line)["user"]
    assert by_data[b"alpha"] == by_data[b"beta"] == "same"


def test_regex_keys_and_aggregation(eddy, kinesis, tmp_path):
    stream = make_stream(kinesis, shards=1)
    text = "".join(f"id={i % 3} payload {i}\n" for i in range(3000)).encode()
    done = run_put(eddy, "--stream", stream, "--aggregate", "--partition-key", r"regex:id=([0-9]+)", stdin=text)
    assert done.returncode == 0, done.stderr
    records = read_all(kinesis, stream)
    # aggregated: a handful of Kinesis records (PartitionKey "a") carry the 3000 lines
    assert 1 <= len(records) < 100
    assert all(pk == "a" for pk, _ in records)
    body = urllib.request.urlopen(eddy.endpoint + "/metrics").read().decode()
    assert f'kinesis_incoming_records_total{{stream="{stream}"}} {len(records)}' in body


def test_a_missing_stream_fails_and_bad_usage_is_refused(eddy):
    done = run_put(eddy, "--stream", "no-such-stream", stdin=b"x\n")
    assert done.returncode == 1
    assert b"ResourceNotFoundException" in done.stderr
    done = run_put(eddy, stdin=b"x\n")
    assert done.returncode == 2 and b"--stream is required" in done.stderr
    done = run_put(eddy, "--stream", "s", "--partition-key", "bogus", stdin=b"x\n")
    assert done.returncode == 2
