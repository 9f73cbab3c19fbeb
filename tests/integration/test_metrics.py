"""Observability end to end (issue 6): GET /metrics (Prometheus text format), GET /ui/api/state, the request
log (--request-log, --request-log-file, --config and SIGHUP), authentication of the observability
endpoints and the process metrics, against the real binary with boto3.

The core check: after a known workload (puts, gets, throttled puts and gets, a reader lagging behind,
a fan-out consumer), /metrics shows exactly what the client observed, counted from the replies; the
iterator age grows while a reader lags and is 0 at the tip; shard-level series appear only after
EnableEnhancedMonitoring and disappear after DisableEnhancedMonitoring; a deleted stream's series go away.

The exposition is parsed properly (``Exposition``): every sample must belong to a family announced by
``# HELP`` and ``# TYPE`` lines before it, and a family's lines must be together. Counters are compared
by polling /metrics with a deadline until they equal the expected values (counters never decrease, so
"eventually equal" is "exact"); on a timeout the failure lists every difference.

Per-shard limits are on (the default): 1000 records or 1 MiB per second of writes and 5 GetRecords calls
per second per shard, so throttling is easy to provoke. boto3 clients make a single attempt (conftest), so
every throttled call is seen by the test. Nothing sleeps to synchronise: waits poll with a deadline.
"""

import base64
import calendar
import collections
import http.client
import json
import os
import re
import signal
import time

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import make_kinesis, stream_arn, unique_name, wait_until
from eddyproc import shard_id
from test_fanout_boto3 import subscribe  # noqa: F401  (a fixture: Subscriptions closed at teardown)

SHARD0, SHARD1 = shard_id(0), shard_id(1)
THROTTLED = "ProvisionedThroughputExceededException"
AGE = "kinesis_get_records_iterator_age_milliseconds"
KIB = 1024

# Every Kinesis family the issue names, with its type.
STREAM_COUNTERS = [
    "kinesis_incoming_bytes_total",
    "kinesis_incoming_records_total",
    "kinesis_put_record_bytes_total",
    "kinesis_put_record_success_total",
    "kinesis_put_records_bytes_total",
    "kinesis_put_records_success_total",
    "kinesis_put_records_records_total",
    "kinesis_put_records_successful_records_total",
    "kinesis_put_records_failed_records_total",
    "kinesis_put_records_throttled_records_total",
    "kinesis_put_records_total_records_total",
    "kinesis_get_records_bytes_total",
    "kinesis_get_records_records_total",
    "kinesis_get_records_success_total",
    "kinesis_read_provisioned_throughput_exceeded_total",
    "kinesis_write_provisioned_throughput_exceeded_total",
]
LATENCIES = [
    "kinesis_put_record_latency_seconds",
    "kinesis_put_records_latency_seconds",
    "kinesis_get_records_latency_seconds",
]
CONSUMER_COUNTERS = [
    "kinesis_subscribe_to_shard_rate_exceeded_total",
    "kinesis_subscribe_to_shard_event_bytes_total",
    "kinesis_subscribe_to_shard_event_records_total",
    "kinesis_subscribe_to_shard_event_success_total",
]
SHARD_COUNTERS = {
    "IncomingBytes": "kinesis_shard_incoming_bytes_total",
    "IncomingRecords": "kinesis_shard_incoming_records_total",
    "OutgoingBytes": "kinesis_shard_outgoing_bytes_total",
    "OutgoingRecords": "kinesis_shard_outgoing_records_total",
    "ReadProvisionedThroughputExceeded": "kinesis_shard_read_provisioned_throughput_exceeded_total",
    "WriteProvisionedThroughputExceeded": "kinesis_shard_write_provisioned_throughput_exceeded_total",
}
FAMILIES = {
    **{name: "counter" for name in STREAM_COUNTERS + CONSUMER_COUNTERS + list(SHARD_COUNTERS.values())},
    **{name: "histogram" for name in LATENCIES},
    AGE: "gauge",
    "kinesis_subscribe_to_shard_event_millis_behind_latest": "gauge",
    "kinesis_shard_iterator_age_milliseconds": "gauge",
    "eddy_stream_info": "gauge",
    "eddy_stream_shards": "gauge",
    "eddy_stream_disk_bytes": "gauge",
    "eddy_requests_total": "counter",
    "eddy_request_duration_seconds": "histogram",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "eddy_threads": "gauge",
    "eddy_connections": "gauge",
    "eddy_event_loop_lag_seconds": "gauge",
    "eddy_fsync_duration_seconds": "histogram",
}


# ---------------------------------------------------------------------------------------------------
# The exposition format


SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(?:,|$)')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        assert m, f"malformed labels {{{text}}}"
        assert m.group(1) not in labels, f"label {m.group(1)} twice in {{{text}}}"
        labels[m.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), m.group(2))
        pos = m.end()
    return labels


class Exposition:
    """One /metrics reply, parsed and checked: `help` and `type` by family, `samples` as (name, labels, value)."""

    def __init__(self, text):
        self.text = text
        self.help, self.type, self.samples = {}, {}, []
        order = []  # families in the order their samples appear
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# HELP "):
                name, _, help_text = line[len("# HELP ") :].partition(" ")
                assert name not in self.help, f"two HELP lines for {name}"
                self.help[name] = help_text
            elif line.startswith("# TYPE "):
                name, _, kind = line[len("# TYPE ") :].partition(" ")
                assert name not in self.type, f"two TYPE lines for {name}"
                assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
                assert kind != "counter" or name.endswith("_total"), f"counter {name} does not end in _total"
                self.type[name] = kind
            elif line.startswith("#"):
                continue
            else:
                m = SAMPLE_RE.match(line)
                assert m, f"malformed sample line {line!r}"
                name, labels, value = m.group(1), parse_labels(m.group(2) or ""), float(m.group(3))
                fam = self.family_of(name)
                assert fam is not None, f"{line!r} comes before (or without) a # TYPE line for its family"
                assert fam in self.help, f"no # HELP line for {fam}"
                if not order or order[-1] != fam:
                    assert fam not in order, f"the lines of {fam} are not together"
                    order.append(fam)
                self.samples.append((name, labels, value))

    def family_of(self, name):
        if name in self.type:
            return name
        for suffix in HISTOGRAM_SUFFIXES:
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.type.get(base) == "histogram":
                return base
        return None

    def value(self, name, **labels):
        """The value of the sample `name` with exactly these labels, or None when there is none."""
        found = [v for n, lab, v in self.samples if n == name and lab == labels]
        assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
        return found[0] if found else None

    def select(self, prefix="", **labels):
        """Samples whose name starts with prefix and whose labels include these."""
        return [
            (n, lab, v)
            for n, lab, v in self.samples
            if n.startswith(prefix) and all(lab.get(k) == want for k, want in labels.items())
        ]

    def histogram(self, name, **labels):
        """Checks the histogram's shape (cumulative buckets, +Inf = count); returns (count, sum)."""
        buckets = [(lab["le"], v) for n, lab, v in self.samples
                   if n == name + "_bucket" and {k: x for k, x in lab.items() if k != "le"} == labels]
        count, total = self.value(name + "_count", **labels), self.value(name + "_sum", **labels)
        assert buckets and count is not None and total is not None, f"histogram {name}{labels} is incomplete"
        bounds = [float(le) for le, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf"), f"{name}{labels} buckets: {buckets}"
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and counts[-1] == count, f"{name}{labels} buckets: {buckets}"
        assert total >= 0, f"{name}{labels} sum {total}"
        return count, total


# ---------------------------------------------------------------------------------------------------
# HTTP and scraping


def http_get(server, path, headers=None):
    """GET over a fresh connection; returns (status, headers with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=15)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def basic_auth(key, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def sigv4_headers(server, path, key, secret):
    """Headers of a GET signed by botocore's SigV4 signer (service kinesis)."""
    req = AWSRequest(method="GET", url=server.endpoint + path)
    SigV4Auth(Credentials(key, secret), "kinesis", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def scrape(server, headers=None):
    status, hdrs, body = http_get(server, "/metrics", headers)
    assert status == 200, (status, body[:300])
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4"), hdrs
    return Exposition(body.decode("utf-8"))


def state(server, headers=None):
    status, hdrs, body = http_get(server, "/ui/api/state", headers)
    assert status == 200, (status, body[:300])
    assert hdrs["content-type"] == "application/json"
    return json.loads(body)


def wait_for_samples(server, expected, timeout=5.0):
    """expected: [(name, labels, value)]. Polls /metrics until every sample has exactly its value; returns
    that Exposition. On a timeout fails with every difference of the last scrape."""
    diffs = []

    def settled():
        expo = scrape(server)
        diffs[:] = [(n, lab, want, expo.value(n, **lab)) for n, lab, want in expected if expo.value(n, **lab) != want]
        return None if diffs else expo

    try:
        return wait_until(settled, timeout=timeout, interval=0.05, message="the expected metrics")
    except AssertionError:
        lines = [f"  {n}{lab}: expected {want}, got {got}" for n, lab, want, got in diffs]
        raise AssertionError("/metrics differs from what the client observed:\n" + "\n".join(lines)) from None


def series_streams(expo):
    """The set of stream label values that appear in any sample."""
    return {lab["stream"] for _, lab, _ in expo.samples if "stream" in lab}


# ---------------------------------------------------------------------------------------------------
# Kinesis helpers


def new_stream(kin, shards=1):
    name = unique_name("mt")
    kin.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: stream_status(kin, name) == "ACTIVE", message=f"{name} ACTIVE")
    return name


def stream_status(kin, name):
    return kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]


def error_code(exc):
    return exc.response["Error"]["Code"]


def rec_bytes(data, pk):
    """What Kinesis counts as a record's bytes: data plus the partition key's UTF-8 bytes."""
    return len(data) + len(pk.encode("utf-8"))


def iterator(kin, name, shard=SHARD0, kind="TRIM_HORIZON"):
    return kin.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType=kind)["ShardIterator"]


def get_allowed(kin, it, **kwargs):
    """GetRecords, polling (with a deadline) while the shard's 5 calls/s limit throttles it."""

    def attempt():
        try:
            return kin.get_records(ShardIterator=it, **kwargs)
        except ClientError as e:
            if error_code(e) != THROTTLED:
                raise
            return None

    return wait_until(attempt, timeout=10, interval=0.02, message="GetRecords not throttled")


def read_to_tip(kin, name, shard=SHARD0):
    """Reads a shard from TRIM_HORIZON until caught up; returns the records."""
    it, out = iterator(kin, name, shard), []
    while True:
        reply = get_allowed(kin, it)
        out += reply["Records"]
        it = reply["NextShardIterator"]
        if not reply["Records"] and reply["MillisBehindLatest"] == 0:
            return out


class Workload:
    """Calls PutRecord, PutRecords and GetRecords on one stream and tallies, from the replies alone, what
    every stream-level family of /metrics must then show (`want`) and eddy_requests_total (`requests`)."""

    def __init__(self, kin, name):
        self.kin, self.name = kin, name
        self.want = collections.Counter({n: 0 for n in STREAM_COUNTERS})
        self.want.update({n + "_count": 0 for n in LATENCIES})
        self.requests = collections.Counter()

    def put_record(self, data, pk):
        """Returns True when the record was written, False when it was throttled."""
        w = self.want
        w["kinesis_put_record_latency_seconds_count"] += 1
        try:
            self.kin.put_record(StreamName=self.name, Data=data, PartitionKey=pk)
        except ClientError as e:
            assert error_code(e) == THROTTLED, e.response
            w["kinesis_write_provisioned_throughput_exceeded_total"] += 1
            self.requests["PutRecord", "400"] += 1
            return False
        self.requests["PutRecord", "200"] += 1
        n = rec_bytes(data, pk)
        w["kinesis_put_record_success_total"] += 1
        w["kinesis_put_record_bytes_total"] += n
        w["kinesis_incoming_records_total"] += 1
        w["kinesis_incoming_bytes_total"] += n
        return True

    def put_records(self, records):
        """records: [(data, pk)]. Returns (written, throttled) counted from the reply."""
        w = self.want
        w["kinesis_put_records_latency_seconds_count"] += 1
        w["kinesis_put_records_total_records_total"] += len(records)
        reply = self.kin.put_records(
            StreamName=self.name, Records=[{"Data": d, "PartitionKey": pk} for d, pk in records]
        )
        self.requests["PutRecords", "200"] += 1
        ok = throttled = failed = nbytes = 0
        for (data, pk), r in zip(records, reply["Records"], strict=True):
            if "ErrorCode" not in r:
                ok += 1
                nbytes += rec_bytes(data, pk)
            elif r["ErrorCode"] == THROTTLED:
                throttled += 1
            else:
                failed += 1
        assert reply["FailedRecordCount"] == throttled + failed
        assert failed == 0, reply  # nothing here should fail but throttling
        w["kinesis_put_records_success_total"] += ok > 0
        w["kinesis_put_records_records_total"] += ok
        w["kinesis_put_records_successful_records_total"] += ok
        w["kinesis_put_records_bytes_total"] += nbytes
        w["kinesis_put_records_throttled_records_total"] += throttled
        w["kinesis_put_records_failed_records_total"] += failed
        w["kinesis_write_provisioned_throughput_exceeded_total"] += throttled
        w["kinesis_incoming_records_total"] += ok
        w["kinesis_incoming_bytes_total"] += nbytes
        return ok, throttled

    def get_records(self, it):
        """Returns the reply, or None when the call was throttled."""
        w = self.want
        w["kinesis_get_records_latency_seconds_count"] += 1
        try:
            reply = self.kin.get_records(ShardIterator=it)
        except ClientError as e:
            assert error_code(e) == THROTTLED, e.response
            w["kinesis_read_provisioned_throughput_exceeded_total"] += 1
            self.requests["GetRecords", "400"] += 1
            return None
        self.requests["GetRecords", "200"] += 1
        w["kinesis_get_records_success_total"] += 1
        w["kinesis_get_records_records_total"] += len(reply["Records"])
        w["kinesis_get_records_bytes_total"] += sum(rec_bytes(r["Data"], r["PartitionKey"]) for r in reply["Records"])
        return reply

    def expected_samples(self):
        out = [(n, {"stream": self.name}, v) for n, v in self.want.items()]
        out += [("eddy_requests_total", {"operation": op, "status": st}, v) for (op, st), v in self.requests.items()]
        return out


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def kin(eddy):
    return make_kinesis(eddy.endpoint)


# ---------------------------------------------------------------------------------------------------
# Exact counts after a known workload


def test_families_are_announced_before_any_stream_exists(eddy):
    expo = scrape(eddy)
    for name, kind in FAMILIES.items():
        assert expo.type.get(name) == kind, f"{name}: TYPE {expo.type.get(name)}, expected {kind}"
        assert expo.help.get(name), f"{name} has no HELP text"
    assert not expo.select("kinesis_"), "Kinesis series without any stream"
    (build,) = expo.select("eddy_build_info")
    assert build[2] == 1 and build[1]["version"]


def test_stream_metrics_equal_the_client_observed_workload(eddy, kin):
    name = new_stream(kin)
    work = Workload(kin, name)

    # PutRecord calls with known sizes, then PutRecords calls: far below the limits.
    for data, pk in ((b"x", "a"), (b"y" * 100, "bb"), (b"z" * 1000, "\u00e9t\u00e9")):
        assert work.put_record(data, pk)
    assert work.put_records([(b"r" * (10 * i), f"pk{i}") for i in range(5)]) == (5, 0)
    assert work.put_records([(bytes([i]) * (i + 1), "p") for i in range(7)]) == (7, 0)

    # Batches of 500 until the 1000 records/s limit throttles some records.
    deadline = time.monotonic() + 20
    throttled = 0
    while throttled == 0:
        assert time.monotonic() < deadline, "PutRecords was never throttled"
        throttled += work.put_records([(b"t" * 20, f"k{i}") for i in range(500)])[1]

    # PutRecord of 600 KiB until the 1 MiB/s limit throttles one (the second normally is).
    deadline = time.monotonic() + 20
    while work.put_record(b"B" * (600 * KIB), "big"):
        assert time.monotonic() < deadline, "PutRecord was never throttled"

    # GetRecords from TRIM_HORIZON to the tip (throttled calls are retried with the same iterator), then
    # more calls at the tip until one is throttled (5 calls/s).
    it = iterator(kin, name)
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline, "GetRecords did not reach the tip"
        reply = work.get_records(it)
        if reply is None:
            continue
        it = reply["NextShardIterator"]
        if not reply["Records"] and reply["MillisBehindLatest"] == 0:
            break
    while work.get_records(it) is not None:
        assert time.monotonic() < deadline, "GetRecords was never throttled"

    w = work.want
    throttled_writes = w["kinesis_write_provisioned_throughput_exceeded_total"]
    assert throttled_writes > w["kinesis_put_records_throttled_records_total"] > 0  # PutRecords and PutRecord
    assert w["kinesis_read_provisioned_throughput_exceeded_total"] > 0
    assert w["kinesis_get_records_records_total"] == w["kinesis_incoming_records_total"]
    assert w["kinesis_get_records_bytes_total"] == w["kinesis_incoming_bytes_total"]

    expo = wait_for_samples(eddy, work.expected_samples() + [("eddy_requests_total",
                            {"operation": "GetShardIterator", "status": "200"}, 1)])

    # Histograms are well formed, per stream and per operation.
    for fam in LATENCIES:
        count, total = expo.histogram(fam, stream=name)
        assert count == w[fam + "_count"] and total > 0
    for op in ("PutRecord", "PutRecords", "GetRecords"):
        count, _ = expo.histogram("eddy_request_duration_seconds", operation=op)
        assert count == sum(v for (o, _), v in work.requests.items() if o == op)
    # The iterator age is 0 at the tip; the stream's other gauges.
    assert expo.value(AGE, stream=name) == 0
    assert expo.value("eddy_stream_info", stream=name, status="ACTIVE", mode="PROVISIONED") == 1
    assert expo.value("eddy_stream_shards", stream=name, state="open") == 1
    assert expo.value("eddy_stream_shards", stream=name, state="closed") == 0
    assert expo.value("eddy_stream_disk_bytes", stream=name) >= w["kinesis_incoming_bytes_total"]
    # No consumer, no enhanced monitoring: no consumer or shard series.
    assert not expo.select("kinesis_subscribe_to_shard", stream=name)
    assert not expo.select("kinesis_shard_", stream=name)

    # The dashboard's JSON agrees.
    (st,) = [s for s in state(eddy)["streams"] if s["name"] == name]
    assert st["counters"] == {
        "incoming_records": w["kinesis_incoming_records_total"],
        "incoming_bytes": w["kinesis_incoming_bytes_total"],
        "get_records_records": w["kinesis_get_records_records_total"],
        "get_records_bytes": w["kinesis_get_records_bytes_total"],
        "write_throttled": w["kinesis_write_provisioned_throughput_exceeded_total"],
        "read_throttled": w["kinesis_read_provisioned_throughput_exceeded_total"],
        "put_records_failed_records": 0,
        "subscribe_event_records": 0,
    }
    assert st["arn"] == stream_arn(name) and st["status"] == "ACTIVE" and st["iterator_age_ms"] == 0
    assert [s["id"] for s in st["shards"]] == [SHARD0]


# ---------------------------------------------------------------------------------------------------
# A lagging reader


def test_iterator_age_grows_while_a_reader_lags_and_is_zero_at_the_tip(eddy, kin):
    name = new_stream(kin)
    assert scrape(eddy).value(AGE, stream=name) is None  # absent before any GetRecords call
    k = 6
    before_put = time.time()
    kin.put_records(StreamName=name, Records=[{"Data": b"old-%d" % i, "PartitionKey": "p"} for i in range(k)])
    after_put = time.time()

    it, ages, last_read = iterator(kin, name), [], 0.0
    for i in range(k):
        # Let the clock move on since the previous read, so that the age has to grow.
        wait_until(lambda: time.time() >= last_read + 0.005, message="5 ms to pass")
        sent = time.time()
        reply = get_allowed(kin, it, Limit=1)
        last_read = time.time()
        assert [r["Data"] for r in reply["Records"]] == [b"old-%d" % i]
        it = reply["NextShardIterator"]
        age = scrape(eddy).value(AGE, stream=name)
        # The gauge is the age of the last record the last call returned: what MillisBehindLatest said.
        assert age == reply["MillisBehindLatest"], (i, age, reply["MillisBehindLatest"])
        if i < k - 1:
            # written at t0 (between before_put and after_put), read between sent and last_read
            assert (sent - after_put) * 1000 - 1 <= age <= (last_read - before_put) * 1000 + 1, (i, age)
        ages.append(age)
    lagging = ages[:-1]
    assert all(b > a for a, b in zip(lagging, lagging[1:])), f"the iterator age did not grow: {ages}"
    assert ages[-1] == 0, f"the reader is at the tip, yet the age is {ages[-1]}: {ages}"
    # Another read at the tip keeps it at 0; without enhanced monitoring no shard gauge.
    assert get_allowed(kin, it)["Records"] == []
    expo = scrape(eddy)
    assert expo.value(AGE, stream=name) == 0
    assert not expo.select("kinesis_shard_iterator_age_milliseconds", stream=name)


# ---------------------------------------------------------------------------------------------------
# Enhanced monitoring: shard-level series


def test_shard_level_series_follow_enhanced_monitoring(eddy, kin):
    name = new_stream(kin, shards=2)
    other = new_stream(kin)
    kin.put_record(StreamName=other, Data=b"bystander", PartitionKey="p")
    low, high = "0", str(2**127)  # explicit hash keys of shard 0 and shard 1

    def put(key, n, tag):
        records = [{"Data": tag + b"%d" % i, "PartitionKey": "pk", "ExplicitHashKey": key} for i in range(n)]
        reply = kin.put_records(StreamName=name, Records=records)
        assert reply["FailedRecordCount"] == 0

    # Traffic before enabling is not counted.
    put(low, 3, b"before")
    assert len(read_to_tip(kin, name, SHARD0)) == 3
    assert not scrape(eddy).select("kinesis_shard_"), "shard-level series without enhanced monitoring"

    reply = kin.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["IncomingRecords", "OutgoingRecords"])
    assert reply["CurrentShardLevelMetrics"] == []
    assert sorted(reply["DesiredShardLevelMetrics"]) == ["IncomingRecords", "OutgoingRecords"]

    def monitoring():
        desc = kin.describe_stream(StreamName=name)["StreamDescription"]
        return desc["StreamStatus"] == "ACTIVE" and desc["EnhancedMonitoring"]

    (em,) = wait_until(monitoring, message="EnhancedMonitoring in DescribeStream")
    assert sorted(em["ShardLevelMetrics"]) == ["IncomingRecords", "OutgoingRecords"]

    put(low, 4, b"after")
    for i in range(2):
        kin.put_record(StreamName=name, Data=b"one-%d" % i, PartitionKey="pk", ExplicitHashKey=high)
    read0 = read_to_tip(kin, name, SHARD0)  # the 3 old records and the 4 new ones
    read1 = read_to_tip(kin, name, SHARD1)
    assert (len(read0), len(read1)) == (7, 2)

    def shard(metric, sid, value):
        return (SHARD_COUNTERS[metric], {"stream": name, "shard": sid}, value)

    expo = wait_for_samples(eddy, [
        shard("IncomingRecords", SHARD0, 4), shard("IncomingRecords", SHARD1, 2),
        shard("OutgoingRecords", SHARD0, 7), shard("OutgoingRecords", SHARD1, 2),
    ])
    families = {n for n, _, _ in expo.select("kinesis_shard_", stream=name)}
    assert families == {SHARD_COUNTERS["IncomingRecords"], SHARD_COUNTERS["OutgoingRecords"]}
    assert {lab["shard"] for _, lab, _ in expo.select("kinesis_shard_", stream=name)} == {SHARD0, SHARD1}
    assert not expo.select("kinesis_shard_", stream=other)
    (st,) = [s for s in state(eddy)["streams"] if s["name"] == name]
    assert sorted(st["enhanced_monitoring"]) == ["IncomingRecords", "OutgoingRecords"]

    reply = kin.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert sorted(reply["CurrentShardLevelMetrics"]) == ["IncomingRecords", "OutgoingRecords"]
    assert reply["DesiredShardLevelMetrics"] == []
    wait_until(lambda: kin.describe_stream(StreamName=name)["StreamDescription"]["EnhancedMonitoring"]
               == [{"ShardLevelMetrics": []}], message="EnhancedMonitoring emptied")
    wait_until(lambda: not scrape(eddy).select("kinesis_shard_"), message="the shard-level series to go")
    # The stream-level series stay.
    assert scrape(eddy).value("kinesis_incoming_records_total", stream=name) == 3 + 4 + 2


# ---------------------------------------------------------------------------------------------------
# Enhanced fan-out consumers


def test_consumer_metrics_count_subscription_events(eddy, kin, subscribe):
    name = new_stream(kin)
    cname = "reader-1"
    carn = kin.register_stream_consumer(StreamARN=stream_arn(name), ConsumerName=cname)["Consumer"]["ConsumerARN"]

    def consumer_status():
        return kin.describe_stream_consumer(ConsumerARN=carn)["ConsumerDescription"]["ConsumerStatus"]

    wait_until(lambda: consumer_status() == "ACTIVE", message="consumer ACTIVE")
    labels = {"stream": name, "consumer": cname}

    sub = subscribe(kin, carn, Type="LATEST")
    # An immediate second subscription for the same consumer and shard is refused (5 s rule).
    with pytest.raises(ClientError) as e:
        kin.subscribe_to_shard(ConsumerARN=carn, ShardId=SHARD0, StartingPosition={"Type": "LATEST"})
    assert error_code(e.value) == "ResourceInUseException"

    records = [(b"event-%d" % i * (i + 1), f"key-{i}") for i in range(5)]
    reply = kin.put_records(StreamName=name, Records=[{"Data": d, "PartitionKey": pk} for d, pk in records])
    assert reply["FailedRecordCount"] == 0
    got = sub.wait_records(len(records))
    assert [(r["Data"], r["PartitionKey"]) for r in got] == records

    expo = wait_for_samples(eddy, [
        ("kinesis_subscribe_to_shard_rate_exceeded_total", labels, 1),
        ("kinesis_subscribe_to_shard_event_records_total", labels, len(got)),
        ("kinesis_subscribe_to_shard_event_bytes_total", labels, sum(rec_bytes(d, pk) for d, pk in records)),
    ])
    # Every event the client received was counted (a heartbeat may be on its way too).
    received = len(sub.events)
    wait_until(lambda: scrape(eddy).value("kinesis_subscribe_to_shard_event_success_total", **labels) >= received,
               message="the events to be counted")
    # The subscription is at the tip: MillisBehindLatest of its last event is 0.
    assert expo.value("kinesis_subscribe_to_shard_event_millis_behind_latest", **labels) is not None
    wait_until(lambda: scrape(eddy).value("kinesis_subscribe_to_shard_event_millis_behind_latest", **labels) == 0,
               message="millis behind latest 0 at the tip")
    # No GetRecords: the stream-level read counters stay 0; the consumer shows in the dashboard.
    assert expo.value("kinesis_get_records_records_total", stream=name) == 0
    (st,) = [s for s in state(eddy)["streams"] if s["name"] == name]
    assert st["counters"]["subscribe_event_records"] == len(got)
    assert [c["name"] for c in st["consumers"]] == [cname]


# ---------------------------------------------------------------------------------------------------
# Deleted streams


def test_deleting_a_stream_removes_its_series(eddy, kin):
    keep, gone = new_stream(kin), new_stream(kin)
    kin.register_stream_consumer(StreamARN=stream_arn(gone), ConsumerName="c")
    for name in (keep, gone):
        kin.put_record(StreamName=name, Data=b"12345", PartitionKey="p")
        assert len(read_to_tip(kin, name)) == 1
    expo = wait_for_samples(eddy, [("kinesis_incoming_records_total", {"stream": n}, 1) for n in (keep, gone)])
    assert expo.select("kinesis_subscribe_to_shard", stream=gone, consumer="c")
    assert expo.value(AGE, stream=gone) == 0

    kin.delete_stream(StreamName=gone, EnforceConsumerDeletion=True)
    wait_until(lambda: gone not in series_streams(scrape(eddy)), timeout=5, interval=0.05,
               message=f"the series of the deleted stream {gone} to disappear")
    expo = scrape(eddy)
    assert expo.value("kinesis_incoming_records_total", stream=keep) == 1
    assert expo.value("kinesis_get_records_records_total", stream=keep) == 1

    # A new stream of the same name starts from zero.
    def recreated():
        try:
            kin.create_stream(StreamName=gone, ShardCount=1)
            return True
        except ClientError as e:
            if error_code(e) != "ResourceInUseException":
                raise
            return False

    wait_until(recreated, message=f"{gone} created again")
    wait_until(lambda: stream_status(kin, gone) == "ACTIVE", message=f"{gone} ACTIVE")
    kin.put_record(StreamName=gone, Data=b"fresh", PartitionKey="p")
    expo = wait_for_samples(eddy, [("kinesis_incoming_records_total", {"stream": gone}, 1),
                                   ("kinesis_incoming_bytes_total", {"stream": gone}, 6),
                                   ("kinesis_get_records_records_total", {"stream": gone}, 0)])
    assert expo.value(AGE, stream=gone) is None
    assert not expo.select("kinesis_subscribe_to_shard", stream=gone)


# ---------------------------------------------------------------------------------------------------
# The request log


TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
TEXT_LINE_RE = re.compile(
    rf"^({TIME_RE}) (\S+) (\S+) stream=(\S+) status=(\d+)(?: error=(\S+))? latency_us=(\d+) in=(\d+) out=(\d+)$"
)


def file_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def reconfigure(server, config_path, text):
    """Rewrites the config file, sends SIGHUP and waits for the server to say it applied a request log."""
    before = sum(" request log: " in line for line in server.log)
    config_path.write_text(text)
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: sum(" request log: " in line for line in server.log) > before, message="the SIGHUP reload")
    return [line for line in server.log if " request log: " in line][-1]


def line_with(path, request_id, parse):
    """Polls the log file for the line of request_id; returns it parsed."""
    def find():
        for line in file_lines(path):
            if request_id in line:
                return parse(line)
        return None

    return wait_until(find, message=f"request {request_id} in {path}")


def text_fields(line):
    m = TEXT_LINE_RE.match(line)
    assert m, f"not a text request line: {line!r}"
    keys = ("time", "request_id", "operation", "stream", "status", "error", "latency_us", "in", "out")
    return dict(zip(keys, m.groups()))


def test_request_log_follows_the_config_file_on_sighup(eddy_factory, tmp_path):
    config = tmp_path / "eddy.conf"
    config.write_text("# the request log starts off\nrequest-log = off\n")
    log_path = tmp_path / "requests.log"
    srv = eddy_factory("--config", str(config))
    kin = make_kinesis(srv.endpoint)
    name = new_stream(kin)
    unlogged = [kin.list_streams()["ResponseMetadata"]["RequestId"]]
    assert any(line.endswith("request log: off") for line in srv.log)

    # json, to a file
    said = reconfigure(srv, config, f"request-log = json\nrequest-log-file = {log_path}\n")
    assert said.endswith(f"request log: json to {log_path}"), said
    bodies = []
    kin.meta.events.register("before-send.kinesis.PutRecord", lambda request, **_: bodies.append(request.body))
    t0 = time.time()
    reply = kin.put_record(StreamName=name, Data=b"logged", PartitionKey="pk")
    rid = reply["ResponseMetadata"]["RequestId"]
    entry = line_with(log_path, rid, json.loads)
    assert list(entry) == ["time", "request_id", "operation", "stream", "status", "error", "latency_us",
                           "bytes_in", "bytes_out"]
    assert re.fullmatch(TIME_RE, entry["time"])
    logged_at = calendar.timegm(time.strptime(entry["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert t0 - 2 <= logged_at <= time.time() + 1
    assert (entry["request_id"], entry["operation"], entry["stream"], entry["status"], entry["error"]) == (
        rid, "PutRecord", name, 200, None)
    assert isinstance(entry["latency_us"], int) and entry["latency_us"] >= 0
    assert entry["bytes_in"] == len(bodies[-1]) > 0
    assert entry["bytes_out"] == int(reply["ResponseMetadata"]["HTTPHeaders"]["content-length"]) > 0
    assert all(json.loads(line) for line in file_lines(log_path))

    # text, after rotating the file away: SIGHUP reopens the path
    os.rename(log_path, tmp_path / "requests.log.1")
    said = reconfigure(srv, config, f"request-log = text\nrequest-log-file = {log_path}\n")
    assert said.endswith(f"request log: text to {log_path}"), said
    missing = unique_name("missing")
    with pytest.raises(ClientError) as e:
        kin.describe_stream(StreamName=missing)
    rid = e.value.response["ResponseMetadata"]["RequestId"]
    fields = line_with(log_path, rid, text_fields)
    assert (fields["operation"], fields["stream"], fields["status"], fields["error"]) == (
        "DescribeStream", missing, "400", "ResourceNotFoundException")
    assert int(fields["in"]) > 0 and int(fields["out"]) > 0
    assert all(TEXT_LINE_RE.match(line) for line in file_lines(log_path))
    assert not any(rid in line for line in file_lines(tmp_path / "requests.log.1"))

    # off: nothing is written, until it is switched on again
    written = file_lines(log_path)
    said = reconfigure(srv, config, "request-log = off\n")
    assert said.endswith("request log: off"), said
    unlogged.append(kin.put_record(StreamName=name, Data=b"quiet", PartitionKey="pk")["ResponseMetadata"]["RequestId"])
    with pytest.raises(ClientError) as e:
        kin.describe_stream(StreamName=missing)
    unlogged.append(e.value.response["ResponseMetadata"]["RequestId"])
    reconfigure(srv, config, f"request-log = text\nrequest-log-file = {log_path}\n")
    marker = kin.list_streams()["ResponseMetadata"]["RequestId"]
    line_with(log_path, marker, text_fields)
    lines = file_lines(log_path)
    assert lines[: len(written)] == written
    assert text_fields(lines[len(written)])["request_id"] == marker, lines[len(written):]
    everything = "\n".join(lines + file_lines(tmp_path / "requests.log.1") + srv.log)
    assert not [rid for rid in unlogged if rid in everything], "requests logged while the log was off"


def test_request_log_flag_wins_over_the_config_file(eddy_factory, tmp_path):
    config = tmp_path / "eddy.conf"
    log_path = tmp_path / "requests.log"
    config.write_text(f"request-log = json\nrequest-log-file = {log_path}\n")
    srv = eddy_factory("--config", str(config), "--request-log", "text")
    kin = make_kinesis(srv.endpoint)
    rid = kin.list_streams()["ResponseMetadata"]["RequestId"]
    fields = line_with(log_path, rid, text_fields)
    summary = (fields["operation"], fields["stream"], fields["status"], fields["error"])
    assert summary == ("ListStreams", "-", "200", None)
    # still text after a reload (the flag is read again with the file)
    reconfigure(srv, config, f"request-log = json\nrequest-log-file = {log_path}\n")
    rid = kin.list_streams()["ResponseMetadata"]["RequestId"]
    line_with(log_path, rid, text_fields)


def test_request_log_names_dynamodb_operations(eddy_factory, tmp_path):
    log_path = tmp_path / "requests.log"
    srv = eddy_factory("--request-log", "json", "--request-log-file", str(log_path))
    ddb = boto3.client("dynamodb", endpoint_url=srv.endpoint, region_name="us-east-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    rid = ddb.list_tables()["ResponseMetadata"]["RequestId"]
    entry = line_with(log_path, rid, json.loads)
    assert (entry["operation"], entry["status"]) == ("DynamoDB.ListTables", 200)
    try:
        ddb.describe_table(TableName="missing")
    except ddb.exceptions.ResourceNotFoundException as e:
        rid = e.response["ResponseMetadata"]["RequestId"]
    entry = line_with(log_path, rid, json.loads)
    assert (entry["operation"], entry["status"], entry["error"]) == (
        "DynamoDB.DescribeTable", 400, "ResourceNotFoundException")


# ---------------------------------------------------------------------------------------------------
# Authentication of the observability endpoints


KEY, SECRET = "AKIDMETRICS", "metrics/secret+1"
NOLIST_KEY, NOLIST_SECRET = "AKIDNOLIST", "no-list-secret"


@pytest.fixture
def secured(eddy_factory, tmp_path):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"keys": [
        {"access_key_id": KEY, "secret_access_key": SECRET},
        {"access_key_id": NOLIST_KEY, "secret_access_key": NOLIST_SECRET, "policies": [{
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "kinesis:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "kinesis:ListStreams", "Resource": "*"},
            ],
        }]},
    ]}))
    os.chmod(path, 0o600)
    return eddy_factory("--credentials", str(path))


@pytest.mark.parametrize("path", ["/metrics", "/ui/api/state"])
def test_observability_endpoints_need_credentials(secured, path):
    status, hdrs, _ = http_get(secured, path)
    assert status == 401
    assert hdrs["www-authenticate"].startswith('Basic realm="eddy"'), hdrs
    status, hdrs, body = http_get(secured, path, basic_auth(KEY, SECRET))
    assert status == 200, body[:300]
    if path == "/metrics":
        Exposition(body.decode())
    else:
        assert json.loads(body)["server"]["auth"] is True
    wrong = [basic_auth(KEY, "wrong"), basic_auth("AKIDNOBODY", SECRET), sigv4_headers(secured, path, KEY, "wrong"),
             {"Authorization": "Basic !!!not-base64"}]
    for headers in wrong:
        status, hdrs, _ = http_get(secured, path, headers)
        assert status == 401 and hdrs["www-authenticate"].startswith('Basic realm="eddy"'), (headers, status)
    # SigV4 works as well as Basic.
    assert http_get(secured, path, sigv4_headers(secured, path, KEY, SECRET))[0] == 200
    # A known key whose policies deny kinesis:ListStreams is forbidden, by either scheme.
    status, hdrs, body = http_get(secured, path, basic_auth(NOLIST_KEY, NOLIST_SECRET))
    assert status == 403 and "www-authenticate" not in hdrs
    assert "kinesis:ListStreams" in json.loads(body)["message"]
    assert http_get(secured, path, sigv4_headers(secured, path, NOLIST_KEY, NOLIST_SECRET))[0] == 403
    # Health checks stay open.
    assert http_get(secured, "/health/ready")[0] == 200


def test_without_credentials_on_loopback_metrics_are_open(eddy):
    assert http_get(eddy, "/metrics")[0] == 200
    assert http_get(eddy, "/ui/api/state")[0] == 200


# ---------------------------------------------------------------------------------------------------
# Process metrics


def test_process_metrics_are_plausible(eddy, kin):
    name = new_stream(kin)
    kin.put_record(StreamName=name, Data=b"sync me", PartitionKey="p")  # at least one fsync
    pid = eddy.proc.pid
    expo = scrape(eddy)
    assert expo.value("process_resident_memory_bytes") > 1024 * 1024
    assert expo.value("process_virtual_memory_bytes") >= expo.value("process_resident_memory_bytes")
    assert abs(expo.value("process_start_time_seconds") - time.time()) < 600
    assert expo.value("process_max_fds") > 0 and expo.value("process_cpu_seconds_total") > 0
    threads = expo.value("eddy_threads")
    assert 1 <= threads <= 64 and threads == len(os.listdir(f"/proc/{pid}/task"))
    fds = expo.value("process_open_fds")
    loops = {lab["loop"] for _, lab, _ in expo.select("eddy_connections")}
    assert loops and loops == {lab["loop"] for _, lab, _ in expo.select("eddy_event_loop_lag_seconds")}
    assert all(0 <= v < 5 for _, _, v in expo.select("eddy_event_loop_lag_seconds"))
    fsyncs, _ = expo.histogram("eddy_fsync_duration_seconds")
    assert fsyncs >= 1

    # 50 keep-alive connections, each having made a request, held open while scraping.
    held = []
    try:
        for _ in range(50):
            conn = http.client.HTTPConnection(eddy.host, eddy.port, timeout=15)
            conn.request("GET", "/health/live")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200 and resp.getheader("connection", "").lower() != "close"
            held.append(conn)
        expo = scrape(eddy)
        assert sum(v for _, _, v in expo.select("eddy_connections")) >= len(held)
        assert expo.value("eddy_threads") == threads, "a connection made a thread"
        assert expo.value("process_open_fds") >= fds + len(held)
        assert state(eddy)["server"]["connections"] >= len(held)
    finally:
        for conn in held:
            conn.close()
    wait_until(lambda: sum(v for _, _, v in scrape(eddy).select("eddy_connections")) < 5,
               message="closed connections to be released")
    assert scrape(eddy).value("eddy_threads") == threads
