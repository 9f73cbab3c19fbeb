"""The data plane through boto3: PutRecord, PutRecords, GetShardIterator, GetRecords.

Expected behaviour is the AWS Kinesis Data Streams API reference. Most tests run on a server started with
`--shard-limits off` (the `srv`/`kin` fixtures below) so that reading a shard many times in a row is not
throttled; the throttling tests use the default server (limits on) from conftest.

Where eddy disagrees with AWS the test asserts AWS's behaviour and is marked xfail(strict=True).
"""

import base64
import datetime
import math
import random
import re
import time

import pytest
from botocore.exceptions import ClientError

from conftest import DEFAULT_ACCOUNT, close_clients, make_kinesis, stream_arn, unique_name, wait_until
from eddyproc import (
    MAX_HASH_KEY,
    MIB,
    TWO_128,
    decode_iterator,
    encode_iterator,
    expected_ranges,
    iterator_key,
    md5_hash_key,
    shard_for_key,
    shard_id,
)

SEQ_RE = re.compile(r"[1-9][0-9]{55,56}")


# ---------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def srv(eddy_factory):
    """A server without per-shard throughput limits."""
    return eddy_factory("--shard-limits", "off")


@pytest.fixture
def kin(srv):
    return make_kinesis(srv.endpoint)


@pytest.fixture
def kin_nv(srv):
    """Client-side parameter validation off, to reach the server's own validation."""
    return make_kinesis(srv.endpoint, validate=False)


def error_parts(exc):
    """(code, message, HTTP status) of a ClientError."""
    err = exc.response["Error"]
    return err["Code"], err["Message"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def client_error(excinfo):
    return error_parts(excinfo.value)


def expect_error(fn, code, status=400, message=None, **kwargs):
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    got_code, got_message, got_status = client_error(e)
    assert (got_code, got_status) == (code, status), f"{got_code} {got_status}: {got_message}"
    if message is not None:
        if isinstance(message, re.Pattern):
            assert message.fullmatch(got_message), got_message
        else:
            assert got_message == message
    return got_message


def new_stream(kin, shards=1):
    name = unique_name("rec")
    kin.create_stream(StreamName=name, ShardCount=shards)
    wait_until(
        lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE",
        message=f"{name} ACTIVE",
    )
    return name


def ranges_of(kin, name):
    return {
        s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in kin.list_shards(StreamName=name)["Shards"]
    }


def shard_iter(kin, name, shard, kind="TRIM_HORIZON", **extra):
    return kin.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType=kind, **extra)[
        "ShardIterator"
    ]


def get_records(kin, it, timeout=10.0, **extra):
    """GetRecords; while the shard's read limit throttles, polls again until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kin.get_records(ShardIterator=it, **extra)
        except ClientError as e:
            if (
                e.response["Error"]["Code"] != "ProvisionedThroughputExceededException"
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.02)


def read_from(kin, it, limit=None, timeout=20.0):
    """Follows NextShardIterator until caught up; returns the records."""
    out = []
    deadline = time.monotonic() + timeout
    extra = {} if limit is None else {"Limit": limit}
    while True:
        reply = get_records(kin, it, **extra)
        out.extend(reply["Records"])
        it = reply["NextShardIterator"]
        if not reply["Records"] and reply["MillisBehindLatest"] == 0:
            return out
        assert time.monotonic() < deadline, "shard read did not catch up"


def read_shard(kin, name, shard, kind="TRIM_HORIZON", limit=None, **extra):
    return read_from(kin, shard_iter(kin, name, shard, kind, **extra), limit)


def triples(records):
    return [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in records]


def seq_int(seq):
    assert SEQ_RE.fullmatch(seq), seq
    return int(seq)


def partition_key_in(ranges, shard, avoid=False, start=0):
    """A partition key whose MD5 hash key falls in `shard` (or, with avoid, outside it)."""
    for i in range(start, start + 100000):
        pk = f"pk-{i}"
        inside = shard_for_key(ranges, md5_hash_key(pk)) == shard
        if inside != avoid:
            return pk
    raise AssertionError("no partition key found")


# ---------------------------------------------------------------------------------------------------
# PutRecord


def test_put_record_reply(kin):
    name = new_stream(kin, 2)
    reply = kin.put_record(StreamName=name, Data=b"hello", PartitionKey="alpha")
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(reply) - {"ResponseMetadata"} == {"ShardId", "SequenceNumber", "EncryptionType"}
    assert reply["EncryptionType"] == "NONE"
    seq_int(reply["SequenceNumber"])
    assert reply["ShardId"] == shard_for_key(expected_ranges(2), md5_hash_key("alpha"))
    records = read_shard(kin, name, reply["ShardId"])
    assert triples(records) == [(reply["SequenceNumber"], "alpha", b"hello")]


@pytest.mark.parametrize("shards", [1, 3, 4, 7])
def test_partition_key_routing_is_md5(kin, shards):
    name = new_stream(kin, shards)
    ranges = ranges_of(kin, name)
    assert sorted(ranges.values()) == expected_ranges(shards)
    rng = random.Random(shards)
    keys = [f"k{rng.random()}" for _ in range(40)] + ["a", "Z" * 256, "ключ", "键🔑", "with space", "\t\n"]
    by_shard = {}
    for pk in keys:
        reply = kin.put_record(StreamName=name, Data=pk.encode(), PartitionKey=pk)
        assert reply["ShardId"] == shard_for_key(ranges, md5_hash_key(pk)), pk
        by_shard.setdefault(reply["ShardId"], []).append((reply["SequenceNumber"], pk, pk.encode()))
    # PutRecords routes the same way.
    batch = kin.put_records(
        StreamName=name, Records=[{"Data": pk.encode(), "PartitionKey": pk} for pk in keys]
    )
    assert batch["FailedRecordCount"] == 0
    for pk, entry in zip(keys, batch["Records"]):
        assert entry["ShardId"] == shard_for_key(ranges, md5_hash_key(pk)), pk
        by_shard.setdefault(entry["ShardId"], []).append((entry["SequenceNumber"], pk, pk.encode()))
    for sid in ranges:
        assert triples(read_shard(kin, name, sid)) == by_shard.get(sid, [])


@pytest.mark.parametrize("shards", [3, 4])
def test_explicit_hash_key_at_every_shard_boundary(kin, shards):
    name = new_stream(kin, shards)
    ranges = ranges_of(kin, name)
    assert sorted(ranges.values()) == expected_ranges(shards)
    expected = {sid: [] for sid in ranges}
    cases = []
    for sid, (start, end) in sorted(ranges.items()):
        for key in (start, end):
            cases.append((sid, key))
        if start > 0:
            cases.append((shard_for_key(ranges, start - 1), start - 1))
        if end < MAX_HASH_KEY:
            cases.append((shard_for_key(ranges, end + 1), end + 1))
    assert {sid for sid, _ in cases} == set(ranges)
    assert any(key == 0 for _, key in cases) and any(key == MAX_HASH_KEY for _, key in cases)

    for sid, key in cases:
        # The partition key alone would route elsewhere (with more than one shard): the explicit key wins.
        pk = partition_key_in(ranges, sid, avoid=True)
        data = f"single {key}".encode()
        reply = kin.put_record(StreamName=name, Data=data, PartitionKey=pk, ExplicitHashKey=str(key))
        assert reply["ShardId"] == sid, (key, reply)
        expected[sid].append((reply["SequenceNumber"], pk, data))

    records = []
    for i, (sid, key) in enumerate(cases):
        pk = partition_key_in(ranges, sid, avoid=True, start=i * 7)
        records.append({"Data": f"batch {key}".encode(), "PartitionKey": pk, "ExplicitHashKey": str(key)})
    batch = kin.put_records(StreamName=name, Records=records)
    assert batch["FailedRecordCount"] == 0
    for (sid, key), rec, entry in zip(cases, records, batch["Records"]):
        assert entry["ShardId"] == sid, (key, entry)
        expected[sid].append((entry["SequenceNumber"], rec["PartitionKey"], rec["Data"]))

    for sid in ranges:
        assert triples(read_shard(kin, name, sid)) == expected[sid]


def test_explicit_hash_key_out_of_range(kin_nv):
    kin = kin_nv
    name = new_stream(kin, 2)
    too_big = [str(TWO_128), str(TWO_128 + 12345), "9" * 39]
    for key in too_big:
        message = expect_error(
            kin.put_record,
            "InvalidArgumentException",
            StreamName=name,
            Data=b"x",
            PartitionKey="p",
            ExplicitHashKey=key,
        )
        assert key in message, message
        expect_error(
            kin.put_records,
            "InvalidArgumentException",
            StreamName=name,
            Records=[
                {"Data": b"ok", "PartitionKey": "p"},
                {"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": key},
            ],
        )
    # Not matching the documented pattern 0|([1-9]\d{0,38}): a validation error.
    for key in ["-1", "abc", "01", "1" * 40, "", "1.5", " 1"]:
        expect_error(
            kin.put_record,
            "ValidationException",
            StreamName=name,
            Data=b"x",
            PartitionKey="p",
            ExplicitHashKey=key,
        )
    # A rejected request writes nothing, not even its valid records.
    for sid in ranges_of(kin, name):
        assert read_shard(kin, name, sid) == []


def test_explicit_hash_key_max_value(kin):
    name = new_stream(kin, 4)
    reply = kin.put_record(StreamName=name, Data=b"top", PartitionKey="p", ExplicitHashKey=str(MAX_HASH_KEY))
    assert reply["ShardId"] == shard_id(3)
    reply = kin.put_record(StreamName=name, Data=b"bottom", PartitionKey="p", ExplicitHashKey="0")
    assert reply["ShardId"] == shard_id(0)


def test_partition_key_length_limits(kin, kin_nv):
    name = new_stream(kin, 2)
    for pk in ["a", "x" * 256, "é" * 256]:
        reply = kin.put_record(StreamName=name, Data=b"d", PartitionKey=pk)
        got = read_shard(
            kin, name, reply["ShardId"], "AT_SEQUENCE_NUMBER", StartingSequenceNumber=reply["SequenceNumber"]
        )
        assert got[0]["PartitionKey"] == pk
    for pk in ["", "x" * 257, "é" * 257]:
        expect_error(kin_nv.put_record, "ValidationException", StreamName=name, Data=b"d", PartitionKey=pk)
        expect_error(
            kin_nv.put_records,
            "ValidationException",
            StreamName=name,
            Records=[{"Data": b"d", "PartitionKey": pk}],
        )
    expect_error(kin_nv.put_record, "ValidationException", StreamName=name, Data=b"d")
    expect_error(kin_nv.put_record, "ValidationException", StreamName=name, PartitionKey="p")


def test_binary_data_all_byte_values(kin):
    name = new_stream(kin, 1)
    sid = shard_id(0)
    every = bytes(range(256))
    blobs = [every, every[::-1], every * 64, b"\x00", b"\xff" * 3, b"", b'\x00\x00\n\r"\\']
    expected = []
    for i, blob in enumerate(blobs):
        reply = kin.put_record(StreamName=name, Data=blob, PartitionKey=f"bin{i}")
        expected.append((reply["SequenceNumber"], f"bin{i}", blob))
    singles = [{"Data": bytes([b]), "PartitionKey": f"byte{b}"} for b in range(256)]
    batch = kin.put_records(StreamName=name, Records=singles)
    assert batch["FailedRecordCount"] == 0
    expected += [
        (e["SequenceNumber"], r["PartitionKey"], r["Data"]) for r, e in zip(singles, batch["Records"])
    ]
    assert triples(read_shard(kin, name, sid)) == expected


def test_one_mib_record(kin, kin_nv):
    name = new_stream(kin, 1)
    pk = "big"
    data = random.Random(7).randbytes(MIB - len(pk))
    reply = kin.put_record(StreamName=name, Data=data, PartitionKey=pk)
    batch = kin.put_records(StreamName=name, Records=[{"Data": data, "PartitionKey": pk}])
    assert batch["FailedRecordCount"] == 0
    got = read_shard(kin, name, shard_id(0))
    assert triples(got) == [
        (reply["SequenceNumber"], pk, data),
        (batch["Records"][0]["SequenceNumber"], pk, data),
    ]
    # Data of 1 MiB plus its partition key is over the 1 MiB record size; data over 1 MiB is over the member limit.
    for blob in (data + b"x", bytes(MIB), bytes(MIB + 1)):
        with pytest.raises(ClientError) as e:
            kin_nv.put_record(StreamName=name, Data=blob, PartitionKey=pk)
        code, _, status = client_error(e)
        assert status == 400 and code in ("ValidationException", "InvalidArgumentException"), code
    expect_error(
        kin_nv.put_record, "ValidationException", StreamName=name, Data=bytes(MIB + 1), PartitionKey=pk
    )
    assert len(read_shard(kin, name, shard_id(0))) == 2


def test_put_records_reply(kin):
    name = new_stream(kin, 3)
    records = [{"Data": f"r{i}".encode(), "PartitionKey": f"p{i}"} for i in range(25)]
    reply = kin.put_records(StreamName=name, Records=records)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(reply) - {"ResponseMetadata"} == {"FailedRecordCount", "Records", "EncryptionType"}
    assert reply["FailedRecordCount"] == 0
    assert reply["EncryptionType"] == "NONE"
    assert len(reply["Records"]) == len(records)
    ranges = ranges_of(kin, name)
    for rec, entry in zip(records, reply["Records"]):
        assert set(entry) == {"SequenceNumber", "ShardId"}
        seq_int(entry["SequenceNumber"])
        assert entry["ShardId"] == shard_for_key(ranges, md5_hash_key(rec["PartitionKey"]))


def test_put_records_count_limits(kin, kin_nv):
    name = new_stream(kin, 2)
    expect_error(kin_nv.put_records, "ValidationException", StreamName=name, Records=[])
    too_many = [{"Data": b"x", "PartitionKey": str(i)} for i in range(501)]
    expect_error(kin_nv.put_records, "ValidationException", StreamName=name, Records=too_many)
    reply = kin.put_records(StreamName=name, Records=too_many[:500])
    assert reply["FailedRecordCount"] == 0 and len(reply["Records"]) == 500
    total = sum(len(read_shard(kin, name, sid)) for sid in ranges_of(kin, name))
    assert total == 500


def test_put_records_total_size_limit(kin, kin_nv):
    name = new_stream(kin, 2)
    # Five records of exactly 1 MiB each (data plus partition key): 5 MiB in all, the most allowed.
    five = [{"Data": bytes([i]) * (MIB - 2), "PartitionKey": f"k{i}"} for i in range(5)]
    reply = kin.put_records(StreamName=name, Records=five)
    assert reply["FailedRecordCount"] == 0
    over = five + [{"Data": b"", "PartitionKey": "z"}]
    message = expect_error(kin_nv.put_records, "InvalidArgumentException", StreamName=name, Records=over)
    assert "5" in message, message
    counts = {sid: len(read_shard(kin, name, sid)) for sid in ranges_of(kin, name)}
    assert sum(counts.values()) == 5


def test_put_records_bad_record_rejects_whole_request(kin_nv):
    kin = kin_nv
    name = new_stream(kin, 1)
    good = [{"Data": b"fine", "PartitionKey": "p"}] * 3
    cases = [
        ({"Data": b"x", "PartitionKey": ""}, "ValidationException"),
        ({"Data": b"x", "PartitionKey": "p" * 257}, "ValidationException"),
        ({"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": str(TWO_128)}, "InvalidArgumentException"),
        ({"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": "x"}, "ValidationException"),
        ({"Data": bytes(MIB + 1), "PartitionKey": "p"}, "ValidationException"),
        ({"PartitionKey": "p"}, "ValidationException"),
        ({"Data": b"x"}, "ValidationException"),
    ]
    for bad, code in cases:
        expect_error(kin.put_records, code, StreamName=name, Records=good + [bad] + good)
    assert read_shard(kin, name, shard_id(0)) == []


def test_unknown_stream(kin):
    name = unique_name("missing")
    message = f"Stream {name} under account {DEFAULT_ACCOUNT} not found."
    expect_error(
        kin.put_record,
        "ResourceNotFoundException",
        message=message,
        StreamName=name,
        Data=b"x",
        PartitionKey="p",
    )
    expect_error(
        kin.put_records,
        "ResourceNotFoundException",
        message=message,
        StreamName=name,
        Records=[{"Data": b"x", "PartitionKey": "p"}],
    )
    expect_error(
        kin.get_shard_iterator,
        "ResourceNotFoundException",
        message=message,
        StreamName=name,
        ShardId=shard_id(0),
        ShardIteratorType="TRIM_HORIZON",
    )


def test_stream_arn_instead_of_name(srv, kin):
    name = new_stream(kin, 2)
    raw = srv.raw
    arn = stream_arn(name)
    put = raw.ok("PutRecord", {"StreamARN": arn, "Data": "YQ==", "PartitionKey": "p"})
    batch = raw.ok("PutRecords", {"StreamARN": arn, "Records": [{"Data": "Yg==", "PartitionKey": "p"}]})
    it = raw.ok(
        "GetShardIterator", {"StreamARN": arn, "ShardId": put["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}
    )
    got = raw.ok("GetRecords", {"StreamARN": arn, "ShardIterator": it["ShardIterator"]})
    assert [(r["SequenceNumber"], r["Data"]) for r in got["Records"]] == [
        (put["SequenceNumber"], "YQ=="),
        (batch["Records"][0]["SequenceNumber"], "Yg=="),
    ]


# ---------------------------------------------------------------------------------------------------
# Sequence numbers and ordering


def test_sequence_numbers_strictly_increase_per_shard(kin):
    name = new_stream(kin, 3)
    ranges = ranges_of(kin, name)
    rng = random.Random(11)
    last = {}
    expected = {sid: [] for sid in ranges}
    for round_ in range(12):
        if round_ % 2:
            pk = f"pk{rng.randrange(50)}"
            reply = kin.put_record(StreamName=name, Data=f"one{round_}".encode(), PartitionKey=pk)
            acks = [(reply["ShardId"], reply["SequenceNumber"], pk, f"one{round_}".encode())]
        else:
            recs = [
                {"Data": f"b{round_}.{i}".encode(), "PartitionKey": f"pk{rng.randrange(50)}"}
                for i in range(60)
            ]
            reply = kin.put_records(StreamName=name, Records=recs)
            assert reply["FailedRecordCount"] == 0
            acks = [
                (e["ShardId"], e["SequenceNumber"], r["PartitionKey"], r["Data"])
                for r, e in zip(recs, reply["Records"])
            ]
        for sid, seq, pk, data in acks:
            value = seq_int(seq)
            # Strictly increasing within a shard, in request order within one PutRecords.
            assert value > last.get(sid, -1), (sid, seq)
            last[sid] = value
            expected[sid].append((seq, pk, data))
    for sid in ranges:
        # GetRecords returns each shard's records in sequence number order.
        assert triples(read_shard(kin, name, sid)) == expected[sid]
        assert triples(read_shard(kin, name, sid, limit=7)) == expected[sid]


def test_sequence_number_for_ordering(kin):
    name = new_stream(kin, 1)
    previous = kin.put_record(StreamName=name, Data=b"0", PartitionKey="same")["SequenceNumber"]
    for i in range(1, 20):
        reply = kin.put_record(
            StreamName=name, Data=str(i).encode(), PartitionKey="same", SequenceNumberForOrdering=previous
        )
        assert int(reply["SequenceNumber"]) > int(previous)
        previous = reply["SequenceNumber"]
    assert [r["Data"] for r in read_shard(kin, name, shard_id(0))] == [str(i).encode() for i in range(20)]
    kin_nv = make_kinesis(kin.meta.endpoint_url, validate=False)
    for bad in ("abc", "-5", "01"):
        expect_error(
            kin_nv.put_record,
            "ValidationException",
            StreamName=name,
            Data=b"x",
            PartitionKey="same",
            SequenceNumberForOrdering=bad,
        )


# ---------------------------------------------------------------------------------------------------
# GetShardIterator


def put_some(kin, name, n, pk="p", prefix="r"):
    out = []
    for i in range(n):
        data = f"{prefix}{i}".encode()
        reply = kin.put_record(StreamName=name, Data=data, PartitionKey=pk)
        out.append((reply["SequenceNumber"], pk, data))
    return out


def test_trim_horizon_and_latest(kin):
    name = new_stream(kin, 1)
    sid = shard_id(0)
    empty_th = shard_iter(kin, name, sid, "TRIM_HORIZON")
    empty_latest = shard_iter(kin, name, sid, "LATEST")
    first = put_some(kin, name, 3, prefix="a")
    latest = shard_iter(kin, name, sid, "LATEST")
    assert triples(read_from(kin, empty_th)) == first
    assert triples(read_from(kin, empty_latest)) == first
    assert read_from(kin, latest) == []
    second = put_some(kin, name, 2, prefix="b")
    assert triples(read_from(kin, latest)) == second
    assert triples(read_shard(kin, name, sid, "TRIM_HORIZON")) == first + second
    assert read_shard(kin, name, sid, "LATEST") == []


def test_at_and_after_sequence_number(kin):
    name = new_stream(kin, 2)
    ranges = ranges_of(kin, name)
    sid = shard_id(1)
    pk = partition_key_in(ranges, sid)
    records = put_some(kin, name, 8, pk=pk)
    for i, (seq, _, _) in enumerate(records):
        assert (
            triples(read_shard(kin, name, sid, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seq))
            == records[i:]
        )
        assert (
            triples(read_shard(kin, name, sid, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq))
            == records[i + 1 :]
        )
    # AFTER the last record: nothing yet, then what comes next.
    it = shard_iter(kin, name, sid, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=records[-1][0])
    assert kin.get_records(ShardIterator=it)["Records"] == []
    more = put_some(kin, name, 2, pk=pk, prefix="m")
    assert triples(read_from(kin, it)) == more
    # The shard's StartingSequenceNumber is a valid AT_SEQUENCE_NUMBER position: the whole shard.
    start = [s for s in kin.list_shards(StreamName=name)["Shards"] if s["ShardId"] == sid][0]
    start_seq = start["SequenceNumberRange"]["StartingSequenceNumber"]
    assert int(start_seq) <= int(records[0][0])
    got = read_shard(kin, name, sid, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=start_seq)
    assert triples(got) == records + more


def test_shard_iterator_errors(kin, kin_nv):
    name = new_stream(kin, 2)
    ranges = ranges_of(kin, name)
    seq0 = kin.put_record(StreamName=name, Data=b"x", PartitionKey=partition_key_in(ranges, shard_id(0)))[
        "SequenceNumber"
    ]
    sid = shard_id(0)
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        expect_error(
            kin.get_shard_iterator,
            "InvalidArgumentException",
            StreamName=name,
            ShardId=sid,
            ShardIteratorType=kind,
        )
        # A sequence number of another shard.
        expect_error(
            kin.get_shard_iterator,
            "InvalidArgumentException",
            StreamName=name,
            ShardId=shard_id(1),
            ShardIteratorType=kind,
            StartingSequenceNumber=seq0,
        )
        # Digits, but not a sequence number.
        for bogus in ("1", "123456789", "9" * 60, "49" + "0" * 54):
            expect_error(
                kin.get_shard_iterator,
                "InvalidArgumentException",
                StreamName=name,
                ShardId=sid,
                ShardIteratorType=kind,
                StartingSequenceNumber=bogus,
            )
        # Not digits at all: the documented pattern 0|([1-9]\d{0,128}).
        for bogus in ("abc", "-1", "01"):
            expect_error(
                kin_nv.get_shard_iterator,
                "ValidationException",
                StreamName=name,
                ShardId=sid,
                ShardIteratorType=kind,
                StartingSequenceNumber=bogus,
            )
    for kind in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
        expect_error(
            kin.get_shard_iterator,
            "InvalidArgumentException",
            StreamName=name,
            ShardId=sid,
            ShardIteratorType=kind,
            StartingSequenceNumber=seq0,
        )
    expect_error(
        kin.get_shard_iterator,
        "InvalidArgumentException",
        StreamName=name,
        ShardId=sid,
        ShardIteratorType="AT_TIMESTAMP",
    )
    for kind in ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER"):
        extra = {"StartingSequenceNumber": seq0} if kind == "AT_SEQUENCE_NUMBER" else {}
        expect_error(
            kin.get_shard_iterator,
            "InvalidArgumentException",
            StreamName=name,
            ShardId=sid,
            ShardIteratorType=kind,
            Timestamp=datetime.datetime.now(datetime.timezone.utc),
            **extra,
        )
    expect_error(
        kin_nv.get_shard_iterator,
        "ValidationException",
        StreamName=name,
        ShardId=sid,
        ShardIteratorType="OLDEST",
    )
    message = expect_error(
        kin.get_shard_iterator,
        "ResourceNotFoundException",
        StreamName=name,
        ShardId=shard_id(2),
        ShardIteratorType="LATEST",
    )
    assert shard_id(2) in message and name in message
    expect_error(
        kin_nv.get_shard_iterator, "ValidationException", StreamName=name, ShardIteratorType="LATEST"
    )
    expect_error(kin_nv.get_shard_iterator, "ValidationException", StreamName=name, ShardId=sid)


def streams_created_in_one_second(kin, attempts=5):
    """Two new 1-shard streams whose creation times fall in the same whole second."""
    for _ in range(attempts):
        boundary = math.floor(time.time()) + 1
        if time.time() > boundary - 0.2:
            wait_until(lambda: time.time() >= boundary, timeout=3, message="the next second")
        a, b = new_stream(kin, 1), new_stream(kin, 1)
        created = [
            kin.describe_stream_summary(StreamName=n)["StreamDescriptionSummary"][
                "StreamCreationTimestamp"
            ].timestamp()
            for n in (a, b)
        ]
        if math.floor(created[0]) == math.floor(created[1]):
            return a, b
    raise AssertionError("could not create two streams within one second")


def test_sequence_number_from_another_stream(kin):
    a, b = streams_created_in_one_second(kin)
    seq = kin.put_record(StreamName=a, Data=b"x", PartitionKey="p")["SequenceNumber"]
    kin.put_record(StreamName=b, Data=b"y", PartitionKey="p")
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        expect_error(
            kin.get_shard_iterator,
            "InvalidArgumentException",
            StreamName=b,
            ShardId=shard_id(0),
            ShardIteratorType=kind,
            StartingSequenceNumber=seq,
        )


def wait_for_next_second():
    """Polls the wall clock until it has crossed the next whole second; returns that second (epoch int)."""
    boundary = math.floor(time.time()) + 1
    wait_until(lambda: time.time() >= boundary + 0.002, timeout=3, message="the next whole second")
    return boundary


def test_at_timestamp_whole_seconds(kin):
    """boto3 serialises Timestamp as whole epoch seconds."""
    name = new_stream(kin, 1)
    sid = shard_id(0)
    before = put_some(kin, name, 3, prefix="before")
    boundary = wait_for_next_second()
    after = put_some(kin, name, 4, prefix="after")
    ts = datetime.datetime.fromtimestamp(boundary, datetime.timezone.utc)
    assert triples(read_shard(kin, name, sid, "AT_TIMESTAMP", Timestamp=ts)) == after
    # Long ago: the whole shard; in the future: nothing yet, then what arrives.
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    assert triples(read_shard(kin, name, sid, "AT_TIMESTAMP", Timestamp=past)) == before + after
    future_it = shard_iter(
        kin,
        name,
        sid,
        "AT_TIMESTAMP",
        Timestamp=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
    )
    assert read_from(kin, future_it) == []
    late = put_some(kin, name, 1, prefix="late")
    assert triples(read_from(kin, future_it)) == late
    for rec in read_shard(kin, name, sid):
        arrival = rec["ApproximateArrivalTimestamp"].timestamp()
        assert (arrival < boundary) == rec["Data"].startswith(b"before"), rec


def test_at_timestamp_milliseconds(srv, kin):
    """Through raw JSON the Timestamp can carry milliseconds: the iterator starts at the first record that
    arrived at or after it."""
    raw = srv.raw
    name = new_stream(kin, 1)
    sid = shard_id(0)
    for i in range(30):
        raw.ok("PutRecord", {"StreamName": name, "Data": "eA==", "PartitionKey": str(i)})
        if i % 10 == 9:
            # Let the clock move on so that arrival times differ.
            t = time.time()
            wait_until(lambda: time.time() >= t + 0.01, message="10 ms")
    it = raw.ok("GetShardIterator", {"StreamName": name, "ShardId": sid, "ShardIteratorType": "TRIM_HORIZON"})
    records = raw.ok("GetRecords", {"ShardIterator": it["ShardIterator"]})["Records"]
    assert len(records) == 30
    arrivals = [r["ApproximateArrivalTimestamp"] for r in records]
    assert arrivals == sorted(arrivals)
    for i, rec in enumerate(records):
        ts = rec["ApproximateArrivalTimestamp"]
        first = min(k for k, a in enumerate(arrivals) if a >= ts)
        body = {"StreamName": name, "ShardId": sid, "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": ts}
        it = raw.ok("GetShardIterator", body)["ShardIterator"]
        got = raw.ok("GetRecords", {"ShardIterator": it})["Records"]
        assert [r["SequenceNumber"] for r in got] == [r["SequenceNumber"] for r in records[first:]], (i, ts)


# ---------------------------------------------------------------------------------------------------
# GetRecords


def test_get_records_limit_and_next_iterator(kin, kin_nv):
    name = new_stream(kin, 1)
    sid = shard_id(0)
    batch = [{"Data": f"{i}".encode(), "PartitionKey": "p"} for i in range(30)]
    reply = kin.put_records(StreamName=name, Records=batch)
    expected = [(e["SequenceNumber"], "p", r["Data"]) for r, e in zip(batch, reply["Records"])]
    it = shard_iter(kin, name, sid)
    sizes = []
    got = []
    for _ in range(6):
        page = kin.get_records(ShardIterator=it, Limit=7)
        sizes.append(len(page["Records"]))
        got += page["Records"]
        assert page["NextShardIterator"] and page["NextShardIterator"] != it
        assert isinstance(page["MillisBehindLatest"], int) and page["MillisBehindLatest"] >= 0
        it = page["NextShardIterator"]
    assert sizes == [7, 7, 7, 7, 2, 0]
    assert triples(got) == expected
    assert page["MillisBehindLatest"] == 0
    # An empty read at the tip still hands out an iterator that sees later records.
    more = put_some(kin, name, 2, prefix="more")
    assert triples(read_from(kin, it)) == more
    assert len(kin.get_records(ShardIterator=shard_iter(kin, name, sid), Limit=10000)["Records"]) == 32
    for bad in (0, -1):
        expect_error(
            kin_nv.get_records, "ValidationException", ShardIterator=shard_iter(kin, name, sid), Limit=bad
        )
    # Over 10000: the API reference's range constraint (1..10000) makes it a ValidationException, its prose
    # says InvalidArgumentException; either is accepted.
    with pytest.raises(ClientError) as e:
        kin_nv.get_records(ShardIterator=shard_iter(kin, name, sid), Limit=10001)
    code, _, status = client_error(e)
    assert status == 400 and code in ("ValidationException", "InvalidArgumentException"), code
    expect_error(kin_nv.get_records, "ValidationException")


def test_get_records_returns_at_most_10_mib(kin):
    name = new_stream(kin, 1)
    sizes = []
    for call in range(3):
        recs = [{"Data": bytes([call * 4 + i]) * (MIB - 2), "PartitionKey": f"{call}{i}"} for i in range(4)]
        assert kin.put_records(StreamName=name, Records=recs)["FailedRecordCount"] == 0
    it = shard_iter(kin, name, shard_id(0))
    got = []
    while True:
        page = kin.get_records(ShardIterator=it)
        if not page["Records"]:
            break
        size = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in page["Records"])
        assert size <= 10 * MIB
        sizes.append(len(page["Records"]))
        got += page["Records"]
        it = page["NextShardIterator"]
    assert sizes == [10, 2]
    assert [r["Data"][:1] for r in got] == [bytes([i]) for i in range(12)]


def test_get_records_reply_and_arrival_timestamp(kin):
    name = new_stream(kin, 1)
    sid = shard_id(0)
    t0 = time.time()
    reply = kin.put_record(StreamName=name, Data=b"when", PartitionKey="p")
    t1 = time.time()
    page = kin.get_records(ShardIterator=shard_iter(kin, name, sid))
    assert set(page) - {"ResponseMetadata"} >= {"Records", "NextShardIterator", "MillisBehindLatest"}
    (rec,) = page["Records"]
    assert set(rec) == {"SequenceNumber", "ApproximateArrivalTimestamp", "Data", "PartitionKey"}
    assert rec["SequenceNumber"] == reply["SequenceNumber"]
    arrival = rec["ApproximateArrivalTimestamp"]
    assert isinstance(arrival, datetime.datetime)
    # Millisecond precision, from the server's clock (the same clock here).
    assert t0 - 0.002 <= arrival.timestamp() <= t1 + 0.002, (t0, arrival.timestamp(), t1)
    assert page["MillisBehindLatest"] == 0


def test_millis_behind_latest(kin):
    name = new_stream(kin, 1)
    sid = shard_id(0)
    put_some(kin, name, 3)
    written = time.time()
    wait_until(lambda: time.time() >= written + 0.3, message="300 ms")
    page = kin.get_records(ShardIterator=shard_iter(kin, name, sid), Limit=1)
    assert len(page["Records"]) == 1
    # Two more records wait: the reader is behind by about the age of what it read.
    assert 250 <= page["MillisBehindLatest"] <= 60000, page["MillisBehindLatest"]
    page = kin.get_records(ShardIterator=page["NextShardIterator"])
    assert len(page["Records"]) == 2 and page["MillisBehindLatest"] == 0


def test_iterator_is_tamper_proof(srv, kin):
    name = new_stream(kin, 2)
    put_some(kin, name, 3)
    token = shard_iter(kin, name, shard_id(0))
    raw = bytearray(base64.b64decode(token))
    rejected = 0
    for i in range(len(raw)):
        for flip in (0x01, 0x80):
            altered = bytearray(raw)
            altered[i] ^= flip
            code, message, status = None, None, None
            try:
                kin.get_records(ShardIterator=base64.b64encode(bytes(altered)).decode())
            except ClientError as e:
                code, message, status = error_parts(e)
            assert (code, status) == ("InvalidArgumentException", 400), (i, flip, code, message)
            rejected += 1
    assert rejected == 2 * len(raw)
    # Truncated, extended, re-encoded or garbage tokens.
    variants = [
        token[:-4],
        token + "AAAA",
        token.rstrip("=") + "x",
        "AAAA",
        "not an iterator",
        "=" * 8,
        token[::-1],
    ]
    for bad in variants:
        expect_error(kin.get_records, "InvalidArgumentException", ShardIterator=bad)
    # The untouched token still works.
    assert len(kin.get_records(ShardIterator=token)["Records"]) >= 0


def test_iterator_length_validation(kin_nv):
    expect_error(kin_nv.get_records, "ValidationException", ShardIterator="")
    expect_error(kin_nv.get_records, "ValidationException", ShardIterator="A" * 513)
    expect_error(kin_nv.get_records, "InvalidArgumentException", ShardIterator="A" * 512)


def test_iterator_expires_after_five_minutes(srv, kin):
    """White box: re-signs a real iterator with the server's key (from catalog.db) and an older issue time."""
    name = new_stream(kin, 1)
    records = put_some(kin, name, 2)
    token = shard_iter(kin, name, shard_id(0))
    fields = decode_iterator(token)
    key = iterator_key(srv.data_dir)
    assert encode_iterator(key, fields) == token, "iterator layout changed: update eddyproc.decode_iterator"
    now_ms = int(time.time() * 1000)
    fresh = dict(fields, issued_ms=now_ms - 290_000)
    assert triples(kin.get_records(ShardIterator=encode_iterator(key, fresh))["Records"]) == records
    stale = dict(fields, issued_ms=now_ms - 301_000)
    message = expect_error(
        kin.get_records, "ExpiredIteratorException", ShardIterator=encode_iterator(key, stale)
    )
    assert message.startswith("Iterator expired."), message
    # A NextShardIterator is a new iterator: issued when returned.
    page = kin.get_records(ShardIterator=encode_iterator(key, fresh))
    assert decode_iterator(page["NextShardIterator"])["issued_ms"] >= now_ms


def test_iterator_survives_restart(srv, kin):
    name = new_stream(kin, 1)
    records = put_some(kin, name, 3)
    token = shard_iter(kin, name, shard_id(0))
    close_clients()
    srv.restart()
    kin2 = make_kinesis(srv.endpoint)
    assert triples(kin2.get_records(ShardIterator=token)["Records"]) == records


def test_iterator_of_deleted_stream(kin):
    name = new_stream(kin, 1)
    put_some(kin, name, 1)
    token = shard_iter(kin, name, shard_id(0))
    kin.delete_stream(StreamName=name)

    def gone():
        try:
            kin.describe_stream_summary(StreamName=name)
            return False
        except ClientError as e:
            return e.response["Error"]["Code"] == "ResourceNotFoundException"

    wait_until(gone, message=f"{name} deleted")
    expect_error(kin.get_records, "ResourceNotFoundException", ShardIterator=token)
    # A new stream of the same name is another stream: the old iterator does not read it.
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(
        lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE"
    )
    put_some(kin, name, 1)
    expect_error(kin.get_records, "ResourceNotFoundException", ShardIterator=token)


def test_encrypted_stream_records(kin):
    name = new_stream(kin, 1)
    kin.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    wait_until(
        lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE"
    )
    assert kin.put_record(StreamName=name, Data=b"s", PartitionKey="p")["EncryptionType"] == "KMS"
    assert (
        kin.put_records(StreamName=name, Records=[{"Data": b"t", "PartitionKey": "p"}])["EncryptionType"]
        == "KMS"
    )
    records = read_shard(kin, name, shard_id(0))
    assert [(r["Data"], r.get("EncryptionType")) for r in records] == [(b"s", "KMS"), (b"t", "KMS")]


def test_larger_max_record_size(srv, kin, kin_nv):
    """UpdateMaxRecordSize (not in Debian's boto3 model: raw JSON) raises the record and data limits."""
    name = new_stream(kin, 1)
    srv.raw.ok("UpdateMaxRecordSize", {"StreamARN": stream_arn(name), "MaxRecordSizeInKiB": 2048})
    wait_until(
        lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE"
    )
    big = random.Random(3).randbytes(3 * MIB // 2)
    reply = kin_nv.put_record(StreamName=name, Data=big, PartitionKey="p")
    expect_error(
        kin_nv.put_record, "ValidationException", StreamName=name, Data=bytes(2 * MIB + 1), PartitionKey="p"
    )
    got = read_shard(kin, name, shard_id(0))
    assert triples(got) == [(reply["SequenceNumber"], "p", big)]


# ---------------------------------------------------------------------------------------------------
# Per-shard throughput limits (on by default)


def rate_message(name, sid):
    return f"Rate exceeded for shard {sid} in stream {name} under account {DEFAULT_ACCOUNT}."


def test_put_records_throttled_per_record(eddy, kinesis):
    kin = kinesis
    name = new_stream(kin, 2)
    ranges = ranges_of(kin, name)
    hot = shard_id(0)
    pk_hot = partition_key_in(ranges, hot)
    pk_cold = partition_key_in(ranges, shard_id(1))
    acked = []
    failed = 0
    start = time.monotonic()
    for round_ in range(4):
        recs = [{"Data": f"{round_}.{i}".encode(), "PartitionKey": pk_hot} for i in range(490)]
        recs += [{"Data": f"{round_}.cold{i}".encode(), "PartitionKey": pk_cold} for i in range(2)]
        reply = kin.put_records(StreamName=name, Records=recs)
        assert reply["FailedRecordCount"] == sum("ErrorCode" in e for e in reply["Records"])
        for rec, entry in zip(recs, reply["Records"]):
            if "ErrorCode" in entry:
                assert set(entry) == {"ErrorCode", "ErrorMessage"}
                assert entry["ErrorCode"] == "ProvisionedThroughputExceededException"
                assert entry["ErrorMessage"] == rate_message(name, hot)
                assert rec["PartitionKey"] == pk_hot, "the cold shard was throttled"
                failed += 1
            else:
                acked.append((entry["ShardId"], entry["SequenceNumber"], rec["PartitionKey"], rec["Data"]))
    elapsed = time.monotonic() - start
    hot_acked = [a for a in acked if a[0] == hot]
    assert failed > 0
    # At most 1000 records per second (plus the bucket's refill while the test ran).
    assert len(hot_acked) <= 1000 + 1000 * elapsed + 1, (len(hot_acked), elapsed)
    assert len(hot_acked) + failed == 4 * 490
    # Exactly the acknowledged records were written.
    for sid in ranges:
        want = [(seq, pk, data) for s, seq, pk, data in acked if s == sid]
        assert triples(read_shard(kin, name, sid)) == want


def test_put_records_a_shard_that_throttled_refuses_the_rest_of_the_request(eddy, kinesis):
    """Once a shard refused a record of a PutRecords for its rate, the request's later records for that
    shard are refused too, smaller ones that would fit included: what was accepted is a prefix per shard,
    so a client that retries the refused records keeps the shard's order."""
    kin = kinesis
    name = new_stream(kin, 2)
    ranges = ranges_of(kin, name)
    pk_hot, pk_cold = partition_key_in(ranges, shard_id(0)), partition_key_in(ranges, shard_id(1))
    big = bytes(300 * 1024)
    recs = [{"Data": big, "PartitionKey": pk_hot} for _ in range(8)]  # 2.4 MB: over the shard's 1 MiB/s
    recs += [{"Data": b"small", "PartitionKey": pk_hot}, {"Data": b"cold", "PartitionKey": pk_cold}]
    reply = kin.put_records(StreamName=name, Records=recs)
    hot = ["ErrorCode" in e for e, r in zip(reply["Records"], recs) if r["PartitionKey"] == pk_hot]
    assert any(hot)
    first = hot.index(True)
    assert all(hot[first:]), f"a later record of the shard was accepted after a refusal: {hot}"
    assert "ErrorCode" not in reply["Records"][-1], "the other shard's record was refused"
    assert len(read_shard(kin, name, shard_id(0))) == first


def test_put_record_throttled_by_bytes(eddy, kinesis):
    kin = kinesis
    name = new_stream(kin, 1)
    big = bytes(MIB - 1)
    kin.put_record(StreamName=name, Data=big, PartitionKey="p")
    expect_error(
        kin.put_record,
        "ProvisionedThroughputExceededException",
        message=rate_message(name, shard_id(0)),
        StreamName=name,
        Data=big,
        PartitionKey="p",
    )
    # PutRecords: same limit, per record.
    reply = kin.put_records(StreamName=name, Records=[{"Data": big, "PartitionKey": "p"}] * 3)
    assert reply["FailedRecordCount"] >= 2
    assert len(read_shard(kin, name, shard_id(0))) == 1 + 3 - reply["FailedRecordCount"]


def test_get_records_throttled_per_shard(eddy, kinesis):
    kin = kinesis
    name = new_stream(kin, 2)
    its = {sid: shard_iter(kin, name, sid) for sid in (shard_id(0), shard_id(1))}
    throttled = succeeded = 0
    start = time.monotonic()
    while succeeded + throttled < 40 and throttled < 3:
        try:
            kin.get_records(ShardIterator=its[shard_id(0)])
            succeeded += 1
        except ClientError as e:
            code, message, status = error_parts(e)
            assert (code, status) == ("ProvisionedThroughputExceededException", 400), (code, message)
            assert shard_id(0) in message and name in message, message
            throttled += 1
    elapsed = time.monotonic() - start
    assert throttled > 0, (succeeded, elapsed)
    # Five calls per second (and a burst of five).
    assert succeeded <= 5 + 5 * elapsed + 1, (succeeded, elapsed)
    # The other shard has its own budget.
    kin.get_records(ShardIterator=its[shard_id(1)])


def test_get_shard_iterator_throttled_per_shard(eddy, kinesis):
    kin = kinesis
    name = new_stream(kin, 1)
    throttled = 0
    start = time.monotonic()
    for _ in range(20):
        try:
            shard_iter(kin, name, shard_id(0), "LATEST")
        except ClientError as e:
            code, message, status = error_parts(e)
            assert (code, status) == ("ProvisionedThroughputExceededException", 400), (code, message)
            throttled += 1
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, "too slow to exceed five calls per second"
    assert throttled > 0


def test_data_plane_while_updating(eddy_factory):
    """Reads and writes go on while the stream is UPDATING."""
    server = eddy_factory("--shard-limits", "off", state_delay_ms=2000)
    kin = make_kinesis(server.endpoint)
    name = unique_name("upd")
    kin.create_stream(StreamName=name, ShardCount=1)

    def status():
        return kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]

    wait_until(lambda: status() == "ACTIVE", message=f"{name} ACTIVE")
    summary = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    kin.update_stream_mode(StreamARN=summary["StreamARN"], StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert status() == "UPDATING"
    put = kin.put_record(StreamName=name, Data=b"during", PartitionKey="p")
    batch = kin.put_records(StreamName=name, Records=[{"Data": b"batch", "PartitionKey": "p"}])
    got = kin.get_records(ShardIterator=shard_iter(kin, name, shard_id(0)))["Records"]
    assert status() == "UPDATING", "the update finished before the test could use the stream"
    assert triples(got) == [
        (put["SequenceNumber"], "p", b"during"),
        (batch["Records"][0]["SequenceNumber"], "p", b"batch"),
    ]


def test_limits_off_never_throttle(kin):
    name = new_stream(kin, 1)
    sid = shard_id(0)
    total = 0
    for round_ in range(5):
        reply = kin.put_records(StreamName=name, Records=[{"Data": b"x" * 100, "PartitionKey": "p"}] * 500)
        assert reply["FailedRecordCount"] == 0
        total += 500
    big = bytes(MIB - 1)
    for _ in range(3):
        kin.put_record(StreamName=name, Data=big, PartitionKey="p")
    it = shard_iter(kin, name, sid)
    for _ in range(20):
        page = kin.get_records(ShardIterator=it, Limit=100)
    assert len(page["Records"]) == 100
    assert len(read_shard(kin, name, sid)) == total + 3
