"""The data plane through the AWS CLI v2: put-record, put-records, get-shard-iterator, get-records.

Every CLI call starts a Python process (about a second), so streams are set up and results checked
through the raw JSON client, independent error cases run concurrently, and the CLI is used for what
is under test: its requests and the JSON it prints.

CLI v2 takes blob arguments (--data, Data in --records) as base64 unless run with
`--cli-binary-format raw-in-base64-out`; it prints blobs (get-records Data) as base64.
"""

import base64
import concurrent.futures
import datetime
import json
import math
import re
import threading
import time

import pytest

from conftest import DEFAULT_ACCOUNT, unique_name, wait_until
from eddyproc import (
    MAX_HASH_KEY,
    MIB,
    TWO_128,
    DataClient,
    create_stream,
    get_records,
    md5_hash_key,
    read_all,
    shard_for_key,
    shard_id,
)

SEQ_RE = re.compile(r"[1-9][0-9]{55,56}")
RAW_TEXT = ("--cli-binary-format", "raw-in-base64-out")


@pytest.fixture
def stream(raw):
    """A new 2-shard stream: (name, {shard_id: (start, end)})."""
    name = unique_name("cli")
    return name, create_stream(raw, name, 2)


def records_of(raw, name, shard):
    """The whole shard (following NextShardIterator, waiting out read throttling)."""
    return read_all(raw, name, shard)


def run_all(awscli, calls):
    """Runs several CLI invocations concurrently; returns their (rc, json, stderr) in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: awscli(*args), calls))


def iterator_args(name, sid, kind, *extra):
    return (
        "get-shard-iterator",
        "--stream-name",
        name,
        "--shard-id",
        sid,
        "--shard-iterator-type",
        kind,
        *extra,
    )


def assert_service_error(result, code, message=None):
    rc, out, err = result
    assert rc == 254, (rc, out, err)
    assert out is None
    assert f"An error occurred ({code})" in err, err
    if message is not None:
        assert err.strip().endswith(message), err


def test_put_record_raw_text(awscli, raw, stream):
    name, ranges = stream
    out = awscli.ok(
        "put-record", "--stream-name", name, "--partition-key", "greeting", "--data", "hello world", *RAW_TEXT
    )
    assert set(out) == {"ShardId", "SequenceNumber", "EncryptionType"}
    assert out["EncryptionType"] == "NONE"
    assert SEQ_RE.fullmatch(out["SequenceNumber"])
    assert out["ShardId"] == shard_for_key(ranges, md5_hash_key("greeting"))
    (rec,) = records_of(raw, name, out["ShardId"])
    assert rec["SequenceNumber"] == out["SequenceNumber"]
    assert base64.b64decode(rec["Data"]) == b"hello world"
    assert rec["PartitionKey"] == "greeting"


def test_put_record_base64_binary_and_explicit_hash_key(awscli, raw, stream):
    name, ranges = stream
    blob = bytes(range(256)) * 2
    start1 = ranges[shard_id(1)][0]
    first = awscli.ok(
        "put-record",
        "--stream-name",
        name,
        "--partition-key",
        "p",
        "--data",
        base64.b64encode(blob).decode(),
        "--explicit-hash-key",
        str(start1),
    )
    assert first["ShardId"] == shard_id(1)
    second = awscli.ok(
        "put-record",
        "--stream-name",
        name,
        "--partition-key",
        "p",
        "--data",
        base64.b64encode(b"\x00\xff").decode(),
        "--explicit-hash-key",
        str(start1 - 1),
        "--sequence-number-for-ordering",
        first["SequenceNumber"],
    )
    assert second["ShardId"] == shard_id(0)
    assert [base64.b64decode(r["Data"]) for r in records_of(raw, name, shard_id(1))] == [blob]
    assert [base64.b64decode(r["Data"]) for r in records_of(raw, name, shard_id(0))] == [b"\x00\xff"]


def test_put_records_json_and_shorthand(awscli, raw, stream, tmp_path):
    name, ranges = stream
    spec = [
        {"Data": "first", "PartitionKey": "a"},
        {"Data": "second", "PartitionKey": "b", "ExplicitHashKey": "0"},
        {"Data": "third", "PartitionKey": "c", "ExplicitHashKey": str(MAX_HASH_KEY)},
    ]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(spec))
    out = awscli.ok("put-records", "--stream-name", name, "--records", f"file://{path}", *RAW_TEXT)
    assert set(out) == {"FailedRecordCount", "Records", "EncryptionType"}
    assert out["FailedRecordCount"] == 0 and out["EncryptionType"] == "NONE"
    assert [set(r) for r in out["Records"]] == [{"SequenceNumber", "ShardId"}] * 3
    assert [r["ShardId"] for r in out["Records"]] == [
        shard_for_key(ranges, md5_hash_key("a")),
        shard_id(0),
        shard_id(1),
    ]
    # Shorthand syntax, base64 Data (the default binary format).
    short = awscli.ok(
        "put-records",
        "--stream-name",
        name,
        "--records",
        f"Data={base64.b64encode(b'four').decode()},PartitionKey=d,ExplicitHashKey=1",
        f"Data={base64.b64encode(b'five').decode()},PartitionKey=e,ExplicitHashKey=1",
    )
    assert short["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in short["Records"]] == [shard_id(0), shard_id(0)]
    assert int(short["Records"][0]["SequenceNumber"]) < int(short["Records"][1]["SequenceNumber"])
    stored = {}
    for sid in ranges:
        for rec in records_of(raw, name, sid):
            stored[rec["SequenceNumber"]] = (sid, rec["PartitionKey"], base64.b64decode(rec["Data"]))
    acked = {
        e["SequenceNumber"]: (e["ShardId"], r["PartitionKey"], r["Data"].encode())
        for r, e in zip(spec, out["Records"])
    }
    acked.update(
        {
            e["SequenceNumber"]: (e["ShardId"], pk, data)
            for (pk, data), e in zip([("d", b"four"), ("e", b"five")], short["Records"])
        }
    )
    assert stored == acked


def test_get_shard_iterator_and_get_records(awscli, raw, stream):
    name, ranges = stream
    sid = shard_id(0)
    put = [
        raw.ok(
            "PutRecord",
            {
                "StreamName": name,
                "Data": base64.b64encode(f"r{i}".encode()).decode(),
                "PartitionKey": "p",
                "ExplicitHashKey": "5",
            },
        )
        for i in range(5)
    ]
    seqs = [p["SequenceNumber"] for p in put]
    arrivals = [r["ApproximateArrivalTimestamp"] for r in records_of(raw, name, sid)]
    th = awscli.ok(*iterator_args(name, sid, "TRIM_HORIZON"))
    assert set(th) == {"ShardIterator"}
    page = awscli.ok("get-records", "--shard-iterator", th["ShardIterator"], "--limit", "2")
    assert set(page) == {"Records", "NextShardIterator", "MillisBehindLatest"}
    assert [r["SequenceNumber"] for r in page["Records"]] == seqs[:2]
    for i, rec in enumerate(page["Records"]):
        assert set(rec) == {"SequenceNumber", "ApproximateArrivalTimestamp", "Data", "PartitionKey"}
        assert rec["Data"] == base64.b64encode(f"r{i}".encode()).decode()
        assert rec["PartitionKey"] == "p"
        # The CLI prints timestamps as ISO 8601; same instant as the epoch seconds on the wire.
        when = datetime.datetime.fromisoformat(rec["ApproximateArrivalTimestamp"])
        assert when.timestamp() == pytest.approx(arrivals[i], abs=0.0005)
    assert page["MillisBehindLatest"] >= 0
    rest = awscli.ok("get-records", "--shard-iterator", page["NextShardIterator"])
    assert [r["SequenceNumber"] for r in rest["Records"]] == seqs[2:]
    assert rest["MillisBehindLatest"] == 0

    future = str(math.floor(time.time()) + 3600)
    calls = [
        iterator_args(name, sid, "AT_SEQUENCE_NUMBER", "--starting-sequence-number", seqs[1]),
        iterator_args(name, sid, "AFTER_SEQUENCE_NUMBER", "--starting-sequence-number", seqs[1]),
        iterator_args(name, sid, "AT_TIMESTAMP", "--timestamp", "2001-01-01T00:00:00Z"),
        iterator_args(name, sid, "AT_TIMESTAMP", "--timestamp", future),
    ]
    results = run_all(awscli, calls)
    expected = [seqs[1:], seqs[2:], seqs, []]
    for (rc, out, err), want in zip(results, expected):
        assert rc == 0, err
        got = get_records(raw, out["ShardIterator"])["Records"]
        assert [r["SequenceNumber"] for r in got] == want


def test_cli_errors(awscli, raw, stream):
    name, ranges = stream
    missing = unique_name("missing")
    seq = raw.ok(
        "PutRecord", {"StreamName": name, "Data": "eA==", "PartitionKey": "p", "ExplicitHashKey": "0"}
    )["SequenceNumber"]
    calls = [
        ("put-record", "--stream-name", missing, "--partition-key", "p", "--data", "eA=="),
        ("put-records", "--stream-name", missing, "--records", "Data=eA==,PartitionKey=p"),
        iterator_args(name, shard_id(7), "LATEST"),
        iterator_args(name, shard_id(1), "AT_SEQUENCE_NUMBER", "--starting-sequence-number", seq),
        ("get-records", "--shard-iterator", "AAAAAAAA"),
        (
            "put-record",
            "--stream-name",
            name,
            "--partition-key",
            "p",
            "--data",
            "eA==",
            "--explicit-hash-key",
            str(TWO_128),
        ),
        # Checked by the CLI itself (exit 252), never sent.
        ("get-records", "--shard-iterator", "AAAAAAAA", "--limit", "0"),
        # Not base64 without raw-in-base64-out: refused by the CLI (exit 255).
        ("put-record", "--stream-name", name, "--partition-key", "p", "--data", "not base64!"),
    ]
    results = run_all(awscli, calls)
    not_found = f"Stream {missing} under account {DEFAULT_ACCOUNT} not found."
    assert_service_error(results[0], "ResourceNotFoundException", not_found)
    assert_service_error(results[1], "ResourceNotFoundException", not_found)
    assert_service_error(
        results[2],
        "ResourceNotFoundException",
        f"Shard {shard_id(7)} in stream {name} under account {DEFAULT_ACCOUNT} does not exist",
    )
    assert_service_error(results[3], "InvalidArgumentException")
    assert_service_error(results[4], "InvalidArgumentException", "Invalid ShardIterator.")
    assert_service_error(results[5], "InvalidArgumentException")
    rc, out, err = results[6]
    assert rc == 252 and "Parameter validation failed" in err, (rc, err)
    rc, out, err = results[7]
    assert rc == 255 and "Invalid base64" in err, (rc, err)
    # Only the one record put above was written.
    assert sum(len(records_of(raw, name, sid)) for sid in ranges) == 1


def test_one_mib_records_and_throttling(awscli, eddy, raw, stream, tmp_path):
    """Limits are on (default server): 1 MiB per second per shard."""
    name, ranges = stream
    pk_x, pk_y = "x-big", "y-big"
    sid_x = shard_for_key(ranges, md5_hash_key(pk_x))
    pk_y = next(f"y{i}" for i in range(1000) if shard_for_key(ranges, md5_hash_key(f"y{i}")) != sid_x)
    sid_y = shard_for_key(ranges, md5_hash_key(pk_y))
    blob = bytes((i * 7 + 3) % 256 for i in range(MIB - 8))

    def pad(pk):
        return blob[: MIB - len(pk)]  # exactly 1 MiB of data and partition key

    path = tmp_path / "big.bin"
    path.write_bytes(pad(pk_x))

    # A whole 1 MiB record.
    out = awscli.ok("put-record", "--stream-name", name, "--partition-key", pk_x, "--data", f"fileb://{path}")
    assert out["ShardId"] == sid_x

    # PutRecords of four 1 MiB records to a shard with a full budget: the first fits, the others are throttled.
    spec = [{"Data": base64.b64encode(pad(pk_y)).decode(), "PartitionKey": pk_y} for _ in range(4)]
    spec_path = tmp_path / "four.json"
    spec_path.write_text(json.dumps(spec))
    four = awscli.ok("put-records", "--stream-name", name, "--records", f"file://{spec_path}")
    assert four["FailedRecordCount"] == 3
    assert set(four["Records"][0]) == {"SequenceNumber", "ShardId"} and four["Records"][0]["ShardId"] == sid_y
    for entry in four["Records"][1:]:
        assert entry == {
            "ErrorCode": "ProvisionedThroughputExceededException",
            "ErrorMessage": f"Rate exceeded for shard {sid_y} in stream {name} under account {DEFAULT_ACCOUNT}.",
        }

    # PutRecord while another writer keeps shard X's byte budget under 1 MiB: the CLI's put is refused.
    stop = threading.Event()
    drained = []

    def drain():
        client = DataClient(eddy)
        body = {"StreamName": name, "PartitionKey": pk_x, "Data": base64.b64encode(blob[: MIB // 2]).decode()}
        try:
            while not stop.is_set():
                status, reply = client.call("PutRecord", body)
                if status == 200:
                    drained.append(reply["SequenceNumber"])
        finally:
            client.close()

    worker = threading.Thread(target=drain, daemon=True)
    worker.start()
    slipped = []  # the CLI's puts that found budget anyway (only if the drain thread stalled for ~1 s)
    try:
        wait_until(lambda: drained, message="the drain writer's first put")
        for _ in range(3):
            throttled = awscli(
                "put-record", "--stream-name", name, "--partition-key", pk_x, "--data", f"fileb://{path}"
            )
            if throttled[0] != 0:
                break
            slipped.append(throttled[1]["SequenceNumber"])
    finally:
        stop.set()
        worker.join(timeout=20)
    assert_service_error(
        throttled,
        "ProvisionedThroughputExceededException",
        f"Rate exceeded for shard {sid_x} in stream {name} under account {DEFAULT_ACCOUNT}.",
    )

    stored_x = records_of(raw, name, sid_x)
    assert [r["SequenceNumber"] for r in stored_x] == sorted(
        [out["SequenceNumber"]] + drained + slipped, key=int
    )
    assert base64.b64decode(stored_x[0]["Data"]) == pad(pk_x)
    stored_y = records_of(raw, name, sid_y)
    assert [r["SequenceNumber"] for r in stored_y] == [four["Records"][0]["SequenceNumber"]]
    assert base64.b64decode(stored_y[0]["Data"]) == pad(pk_y)
