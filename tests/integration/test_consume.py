"""`eddy consume` (src/cli/consume.c) and libeddy's consumer (src/consumer/) against the real server.

The record processor is tests/integration/multilang_processor.py, written against the KCL MultiLang protocol
alone. Each worker is a real `eddy consume` process; leases are read back with boto3's DynamoDB client from
the same eddy. Measured times (balance, failover, rebalance) are printed for docs/CONSUMER.md.

* three workers on an 8-shard stream while a producer writes: leases balance (2-3 each); one worker killed
  with SIGKILL: its shards are taken within failover + one taker cycle and every record is processed at
  least once; a fourth worker joins: balance returns; a split and a merge during the run: every child
  starts only after each parent reached SHARD_END, and per-key order holds across the reshard;
* KPL-aggregated records arrive de-aggregated with their sub-sequence numbers, and a restart after a
  mid-aggregate checkpoint resumes at the next user record;
* a zombie (a worker stopped past the lease duration while another took its lease) cannot checkpoint;
* a processor that does not checkpoint at SHARD_END is told again, and the children do not start;
* enhanced fan-out (SubscribeToShard) delivers the same records as polling.
"""

import base64
import json
import os
import signal
import subprocess
import threading
import time

import boto3
import pytest
from botocore.config import Config

from conftest import EDDY_BIN, unique_name, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PROCESSOR = os.path.join(HERE, "multilang_processor.py")
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1")
FAILOVER_MS = 3000
TAKER_MS = 1000


class Worker:
    """One `eddy consume` process with its MultiLang processors."""

    def __init__(self, server, app, stream, worker_id, log_path, tmp_path, *extra, env=None):
        self.worker_id = worker_id
        self.stderr_path = tmp_path / f"{worker_id}.stderr"
        cmd = [EDDY_BIN, "consume", "--endpoint", server.endpoint, "--app", app, "--stream", stream,
               "--worker-id", worker_id, "--failover-ms", str(FAILOVER_MS), "--taker-interval-ms", str(TAKER_MS),
               "--parent-poll-ms", "200", "--shard-sync-ms", "2000", "--idle-ms", "200", *extra,
               "--", "/usr/bin/python3", PROCESSOR]
        penv = dict(ENV, ML_LOG=str(log_path), ML_WORKER=worker_id, **(env or {}))
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env=penv)

    def text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def workers():
    started = []
    yield started
    for w in started:
        w.stop(signal.SIGKILL)
        print(f"--- {w.worker_id} stderr ---\n{w.text()[-4000:]}")


def dynamodb(server):
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 2}))


def leases(ddb, table):
    try:
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}
    return {i["leaseKey"]["S"]: {"owner": i.get("leaseOwner", {}).get("S"), "checkpoint": i["checkpoint"]["S"],
                                 "sub": int(i.get("checkpointSubSequenceNumber", {"N": "0"})["N"]),
                                 "parents": i.get("parentShardId", {}).get("SS", [])} for i in items}


def owners(ddb, table):
    """{worker: [shards]} of the leases not finished."""
    out = {}
    for key, lease in leases(ddb, table).items():
        if lease["checkpoint"] != "SHARD_END":
            out.setdefault(lease["owner"], []).append(key)
    return out


def balanced(ddb, table, names, total):
    o = owners(ddb, table)
    counts = [len(o.get(n, [])) for n in names]
    return set(o) == set(names) and sum(counts) == total and max(counts) - min(counts) <= 1


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def make_stream(kinesis, shards):
    name = unique_name("cons")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", message="stream ACTIVE")
    return name


def wait_active(kinesis, stream):
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", timeout=30, message="stream ACTIVE")


class Producer(threading.Thread):
    """Puts one record per key per round (data "key:counter"), counters rising per key."""

    def __init__(self, kinesis, stream, keys=40):
        super().__init__(daemon=True)
        self.kinesis, self.stream = kinesis, stream
        self.keys = [f"key-{i}" for i in range(keys)]
        self.counter = 0
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                records = [{"PartitionKey": k, "Data": f"{k}:{self.counter}".encode()} for k in self.keys]
                out = self.kinesis.put_records(StreamName=self.stream, Records=records)
                assert out["FailedRecordCount"] == 0, out
                self.counter += 1
                self.stopping.wait(0.05)  # a pace, not a synchronisation
        except Exception as e:  # reported by the test
            self.error = e

    def expected(self):
        return {f"{k}:{c}" for k in self.keys for c in range(self.counter)}


def test_three_workers_failover_join_and_reshard(eddy, kinesis, workers, tmp_path):
    stream = make_stream(kinesis, 8)
    app = unique_name("app")
    log = tmp_path / "processors.log"
    ddb = dynamodb(eddy)
    producer = Producer(kinesis, stream)
    producer.start()

    t0 = time.monotonic()
    for name in ("w1", "w2", "w3"):
        workers.append(Worker(eddy, app, stream, name, log, tmp_path))
    wait_until(lambda: balanced(ddb, app, ["w1", "w2", "w3"], 8), timeout=30, interval=0.1,
               message="three workers hold 2-3 leases each")
    print(f"MEASURED balance of 3 new workers on 8 shards: {time.monotonic() - t0:.2f} s")

    # SIGKILL one worker: its leases expire and are taken by the others
    victim = workers[2]
    lost = owners(ddb, app)["w3"]
    wait_until(lambda: any(e["ev"] == "rec" and e["worker"] == "w3" for e in read_log(log)), timeout=30,
               message="w3 processed records")
    t_kill = time.monotonic()
    victim.proc.kill()
    victim.proc.wait()
    wait_until(lambda: "w3" not in owners(ddb, app) and sum(map(len, owners(ddb, app).values())) == 8,
               timeout=FAILOVER_MS / 1000 + 4 * TAKER_MS / 1000 + 10, interval=0.05,
               message="the killed worker's leases taken")
    failover = time.monotonic() - t_kill
    print(f"MEASURED failover of {len(lost)} leases after SIGKILL: {failover:.2f} s "
          f"(lease duration {FAILOVER_MS / 1000:.1f} s, taker cycle {TAKER_MS / 1000:.1f} s)")
    assert failover <= FAILOVER_MS / 1000 + 2 * TAKER_MS / 1000 + 2.0

    # a new worker joins: balance returns
    t_join = time.monotonic()
    workers.append(Worker(eddy, app, stream, "w4", log, tmp_path))
    wait_until(lambda: balanced(ddb, app, ["w1", "w2", "w4"], 8), timeout=30, interval=0.05,
               message="balance with the new worker")
    rebalance = time.monotonic() - t_join
    print(f"MEASURED rebalance after a 4th worker joined: {rebalance:.2f} s")

    # a split and a merge while producing
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    s2 = shards["shardId-000000000002"]
    lo, hi = int(s2["HashKeyRange"]["StartingHashKey"]), int(s2["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000002",
                        NewStartingHashKey=str((lo + hi) // 2))
    wait_active(kinesis, stream)
    kinesis.merge_shards(StreamName=stream, ShardToMerge="shardId-000000000005",
                         AdjacentShardToMerge="shardId-000000000006")
    wait_active(kinesis, stream)
    children = {s["ShardId"]: [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p]
                for s in kinesis.list_shards(StreamName=stream)["Shards"] if s.get("ParentShardId")}
    assert len(children) == 3, children

    def children_running():
        events = read_log(log)
        started = {e["shard"] for e in events if e["ev"] == "rec"}
        return all(c in started for c in children)

    wait_until(children_running, timeout=60, interval=0.1, message="every child shard processing records")
    producer.stopping.set()
    producer.join()
    assert producer.error is None, producer.error
    expected = producer.expected()

    def all_seen():
        return expected <= {base64.b64decode(e["data"]).decode() for e in read_log(log) if e["ev"] == "rec"}

    wait_until(all_seen, timeout=60, interval=0.2, message="every record processed at least once")
    for w in workers:
        if w.proc.poll() is None:
            assert w.stop() == 0, w.text()

    events = sorted(read_log(log), key=lambda e: e["t"])
    recs = [e for e in events if e["ev"] == "rec"]
    got = [base64.b64decode(e["data"]).decode() for e in recs]
    duplicates = len(got) - len(set(got))
    print(f"MEASURED {len(expected)} records, {len(got)} deliveries, {duplicates} duplicates (at-least-once)")

    # children start only after their parents reached SHARD_END (checkpointed)
    ends = {}
    for e in events:
        if e["ev"] == "end" and e["err"] is None:
            ends.setdefault(e["shard"], e["t"])
    for child, parents in children.items():
        first_init = min(e["t"] for e in events if e["ev"] == "init" and e["shard"] == child)
        for p in parents:
            assert p in ends, f"parent {p} of {child} never checkpointed SHARD_END"
            assert ends[p] < first_init, f"{child} started before its parent {p} ended"
    final = leases(ddb, app)
    for child, parents in children.items():
        for p in parents:
            assert final[p]["checkpoint"] == "SHARD_END"
        assert sorted(final[child]["parents"]) == sorted(parents)

    # per-key order: the first delivery of each counter comes in rising order, across the reshard too
    first = {}
    for text in got:
        key, counter = text.rsplit(":", 1)
        seq = first.setdefault(key, [])
        if int(counter) not in seq:
            seq.append(int(counter))
    for key, seq in first.items():
        assert seq == sorted(seq), f"{key} out of order: {seq[:50]}"


def test_aggregated_records_and_resume_after_a_mid_aggregate_checkpoint(eddy, kinesis, workers, tmp_path):
    stream = make_stream(kinesis, 1)
    lines = "".join(f"agg-{i}\n" for i in range(300)).encode()
    put = subprocess.run([EDDY_BIN, "put", "--endpoint", eddy.endpoint, "--stream", stream, "--aggregate",
                          "--partition-key", "constant:k", "--quiet"], input=lines, capture_output=True, env=ENV,
                         timeout=60)
    assert put.returncode == 0, put.stderr
    app = unique_name("agg")
    log = tmp_path / "agg.log"
    # first run: checkpoint at the 100th user record, then crash (exit without status)
    w = Worker(eddy, app, stream, "a1", log, tmp_path, env={"ML_CHECKPOINT_AT_RECORD": "100",
                                                             "ML_EXIT_AFTER_CHECKPOINT": "1"})
    workers.append(w)
    w.proc.wait(timeout=60)
    events = read_log(log)
    recs = [e for e in events if e["ev"] == "rec"]
    cps = [e for e in events if e["ev"] == "cp"]
    assert len(cps) == 1 and cps[0]["err"] is None, events[-3:]
    assert [base64.b64decode(e["data"]).decode() for e in recs[:100]] == [f"agg-{i}" for i in range(100)]
    aggregated = [e for e in recs if e["sub"] > 0]
    assert aggregated, "the records were not aggregates"
    # sub-sequence numbers count within each aggregate; one Kinesis sequence number per aggregate
    by_seq = {}
    for e in recs:
        by_seq.setdefault(e["seq"], []).append(e["sub"])
    for subs in by_seq.values():
        assert subs == list(range(len(subs)))
    cp = cps[0]
    assert cp["sub"] > 0, "the checkpoint is not inside an aggregate"

    # second run: starts after the checkpointed user record, inside the same aggregate
    os.remove(log)
    w2 = Worker(eddy, app, stream, "a2", log, tmp_path)
    workers.append(w2)
    wait_until(lambda: len([e for e in read_log(log) if e["ev"] == "rec"]) >= 200, timeout=30,
               message="the rest of the records")
    assert w2.stop() == 0, w2.text()
    events = read_log(log)
    init = [e for e in events if e["ev"] == "init"][0]
    assert (init["seq"], init["sub"]) == (cp["seq"], cp["sub"])
    recs = [e for e in events if e["ev"] == "rec"]
    assert (recs[0]["seq"], recs[0]["sub"]) == (cp["seq"], cp["sub"] + 1)
    assert [base64.b64decode(e["data"]).decode() for e in recs] == [f"agg-{i}" for i in range(100, 300)]


def test_a_zombie_cannot_checkpoint(eddy, kinesis, workers, tmp_path):
    stream = make_stream(kinesis, 1)
    kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": f"k{i}", "Data": b"x"} for i in range(10)])
    app = unique_name("zombie")
    log = tmp_path / "zombie.log"
    stall = tmp_path / "stall"
    stall.write_text("")
    ddb = dynamodb(eddy)
    z = Worker(eddy, app, stream, "z1", log, tmp_path, env={"ML_STALL_FILE": str(stall), "ML_CHECKPOINT_EVERY": "1"})
    workers.append(z)
    wait_until(lambda: any(e["ev"] == "rec" for e in read_log(log)), timeout=30, message="z1 processing")
    z.proc.send_signal(signal.SIGSTOP)  # renewals stop while its processor is in processRecords
    other = Worker(eddy, app, stream, "z2", log, tmp_path)
    workers.append(other)
    wait_until(lambda: owners(ddb, app).get("z2") == ["shardId-000000000000"], timeout=30, interval=0.05,
               message="z2 took the expired lease")
    z.proc.send_signal(signal.SIGCONT)
    stall.unlink()
    wait_until(lambda: any(e["ev"] == "cp" and e["worker"] == "z1" for e in read_log(log)), timeout=30,
               message="the zombie's checkpoint attempt")
    cp = [e for e in read_log(log) if e["ev"] == "cp" and e["worker"] == "z1"][0]
    assert cp["err"] == "ShutdownException"
    wait_until(lambda: any(e["ev"] == "lost" and e["worker"] == "z1" for e in read_log(log)), timeout=30,
               message="the zombie is told it lost the lease")
    assert leases(ddb, app)["shardId-000000000000"]["owner"] == "z2"
    # at-least-once: the new owner processes the records again from the last checkpoint (none)
    wait_until(lambda: len([e for e in read_log(log) if e["ev"] == "rec" and e["worker"] == "z2"]) == 10,
               timeout=30, message="z2 processed everything")


def test_shard_end_without_checkpoint_is_insisted_on(eddy, kinesis, workers, tmp_path):
    stream = make_stream(kinesis, 1)
    kinesis.put_record(StreamName=stream, PartitionKey="k", Data=b"before")
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000",
                        NewStartingHashKey=str(2**127))
    wait_active(kinesis, stream)
    app = unique_name("forget")
    log = tmp_path / "forget.log"
    w = Worker(eddy, app, stream, "f1", log, tmp_path, env={"ML_FORGET_SHARD_END": "1"})
    workers.append(w)
    message = "did not checkpoint at the end of the shard"
    wait_until(lambda: w.text().count(message) >= 2, timeout=30, message="the error, twice")
    ddb = dynamodb(eddy)
    assert leases(ddb, app)["shardId-000000000000"]["checkpoint"] != "SHARD_END"
    started = {e["shard"] for e in read_log(log) if e["ev"] == "init"}
    assert started == {"shardId-000000000000"}, started
    assert w.stop() == 0


def test_fan_out_delivers_like_polling(eddy, kinesis, workers, tmp_path):
    stream = make_stream(kinesis, 2)
    kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": f"k{i}", "Data": f"r{i}".encode()}
                                                    for i in range(50)])
    app = unique_name("efo")
    log = tmp_path / "efo.log"
    w = Worker(eddy, app, stream, "e1", log, tmp_path, "--fan-out", "efo-consumer")
    workers.append(w)
    wait_until(lambda: len([e for e in read_log(log) if e["ev"] == "rec"]) >= 50, timeout=30,
               message="50 records over SubscribeToShard")
    kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": f"k{i}", "Data": f"r{i}".encode()}
                                                    for i in range(50, 60)])
    wait_until(lambda: len([e for e in read_log(log) if e["ev"] == "rec"]) >= 60, timeout=30,
               message="records put while subscribed")
    assert w.stop() == 0, w.text()
    got = sorted(base64.b64decode(e["data"]).decode() for e in read_log(log) if e["ev"] == "rec")
    assert got == sorted(f"r{i}" for i in range(60))
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="efo-consumer")
    assert consumer["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE"


@pytest.mark.parametrize("position", ["LATEST", "AT_TIMESTAMP"])
def test_initial_positions(eddy, kinesis, workers, tmp_path, position):
    stream = make_stream(kinesis, 2)
    kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": f"k{i}", "Data": f"old{i}".encode()}
                                                    for i in range(10)])
    extra = ["--initial-position", position]
    if position == "AT_TIMESTAMP":
        stamp = time.time()  # after the old records arrived (the server's clock is this machine's)
        extra += ["--timestamp", f"{stamp:.3f}"]
        wait_until(lambda: time.time() > stamp + 0.05, message="the clock past the timestamp")
    app = unique_name("pos")
    log = tmp_path / "pos.log"
    w = Worker(eddy, app, stream, "p1", log, tmp_path, *extra)
    workers.append(w)
    # a shard's iterator is taken before its processor's initialize: once both initialized, LATEST is fixed
    wait_until(lambda: len({e["shard"] for e in read_log(log) if e["ev"] == "init"}) == 2, timeout=30,
               message="both shards initialized")
    kinesis.put_records(StreamName=stream, Records=[{"PartitionKey": f"k{i}", "Data": f"new{i}".encode()}
                                                    for i in range(10)])
    wait_until(lambda: len([e for e in read_log(log) if e["ev"] == "rec"]) >= 10, timeout=30,
               message="the new records")
    assert w.stop() == 0, w.text()
    got = sorted(base64.b64decode(e["data"]).decode() for e in read_log(log) if e["ev"] == "rec")
    assert got == sorted(f"new{i}" for i in range(10))
