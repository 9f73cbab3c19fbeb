"""The CBOR protocol (Content-Type: application/x-amz-cbor-1.1), as the AWS SDK for Java v2 speaks it.

No CBOR-speaking Kinesis client is packaged for Debian, so this file carries a small CBOR encoder and
decoder (RFC 8949: every major type, definite and indefinite lengths, tags) and sends requests the way the
Java SDK does: blobs as byte strings, timestamps as tag 1 with integer epoch milliseconds; replies carry the
same. Errors come back as CBOR maps with __type and message.
"""

import http.client
import struct
import time
import zlib

import pytest

from conftest import unique_name, wait_until

CBOR = "application/x-amz-cbor-1.1"


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value

    def __repr__(self):
        return f"Tag({self.tag}, {self.value!r})"


# ---- a small CBOR codec -------------------------------------------------------------------------------


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError(n)


def encode(v, indefinite=False):
    if v is None:
        return b"\xf6"
    if v is True or v is False:
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, float):
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return _head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return _head(3, len(b)) + b
    if isinstance(v, Tag):
        return _head(6, v.tag) + encode(v.value)
    if isinstance(v, list):
        items = b"".join(encode(x, indefinite) for x in v)
        return (b"\x9f" + items + b"\xff") if indefinite else _head(4, len(v)) + items
    if isinstance(v, dict):
        items = b"".join(encode(k) + encode(x, indefinite) for k, x in v.items())
        return (b"\xbf" + items + b"\xff") if indefinite else _head(5, len(v)) + items
    raise TypeError(type(v))


def decode(data):
    value, at = _decode(data, 0)
    assert at == len(data), "trailing bytes"
    return value


def _decode(d, i):
    ib = d[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if major == 7:
        if info == 20:
            return False, i
        if info == 21:
            return True, i
        if info in (22, 23):
            return None, i
        if info == 25:
            return struct.unpack(">e", d[i : i + 2])[0], i + 2
        if info == 26:
            return struct.unpack(">f", d[i : i + 4])[0], i + 4
        if info == 27:
            return struct.unpack(">d", d[i : i + 8])[0], i + 8
        raise ValueError(f"simple {info}")
    if info == 31:
        if major in (2, 3):
            parts = []
            while d[i] != 0xFF:
                part, i = _decode(d, i)
                parts.append(part)
            return (b"" if major == 2 else "").join(parts), i + 1
        out = [] if major == 4 else {}
        while d[i] != 0xFF:
            if major == 4:
                x, i = _decode(d, i)
                out.append(x)
            else:
                k, i = _decode(d, i)
                out[k], i = _decode(d, i)
        return out, i + 1
    if info < 24:
        n = info
    else:
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        n = int.from_bytes(d[i : i + size], "big")
        i += size
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major == 2:
        return bytes(d[i : i + n]), i + n
    if major == 3:
        return d[i : i + n].decode(), i + n
    if major == 4:
        out = []
        for _ in range(n):
            x, i = _decode(d, i)
            out.append(x)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = _decode(d, i)
            out[k], i = _decode(d, i)
        return out, i
    value, i = _decode(d, i)
    return Tag(n, value), i


# ---- the client -------------------------------------------------------------------------------------


class CborClient:
    def __init__(self, server):
        self.host, self.port = server.host, server.port

    def raw(self, op, body, content_type=CBOR):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            conn.request(
                "POST",
                "/",
                body=body,
                headers={"Content-Type": content_type, "X-Amz-Target": f"Kinesis_20131202.{op}"},
            )
            r = conn.getresponse()
            data = r.read()
            return r.status, r.getheader("Content-Type"), data
        finally:
            conn.close()

    def call(self, op, req, indefinite=False):
        status, ctype, data = self.raw(op, encode(req, indefinite))
        assert ctype == CBOR
        return status, decode(data) if data else {}

    def ok(self, op, req, indefinite=False):
        status, out = self.call(op, req, indefinite)
        assert status == 200, out
        return out


@pytest.fixture
def cb(eddy_factory):
    return CborClient(eddy_factory("--shard-limits", "off"))


def make_stream(cb, shards=1):
    name = unique_name("cbor")
    cb.ok("CreateStream", {"StreamName": name, "ShardCount": shards})
    wait_until(
        lambda: cb.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE"
    )
    return name


# ---- tests ------------------------------------------------------------------------------------------


def test_put_and_get_records_with_blobs_and_millisecond_timestamps(cb):
    name = make_stream(cb)
    before_ms = int(time.time() * 1000)
    put = cb.ok("PutRecord", {"StreamName": name, "Data": b"\x00\xffbinary", "PartitionKey": "pk"})
    assert put["ShardId"] == "shardId-000000000000" and put["SequenceNumber"].isdigit()
    many = cb.ok(
        "PutRecords",
        {"StreamName": name, "Records": [{"Data": b"r%d" % i, "PartitionKey": "k%d" % i} for i in range(3)]},
        indefinite=True,  # as Jackson's CBOR writer sends containers
    )
    assert many["FailedRecordCount"] == 0 and len(many["Records"]) == 3

    # AT_TIMESTAMP with a tag-1 millisecond timestamp, as the Java SDK sends it
    it = cb.ok(
        "GetShardIterator",
        {
            "StreamName": name,
            "ShardId": "shardId-000000000000",
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": Tag(1, before_ms - 1000),
        },
    )["ShardIterator"]
    got = cb.ok("GetRecords", {"ShardIterator": it})
    assert [r["Data"] for r in got["Records"]] == [b"\x00\xffbinary", b"r0", b"r1", b"r2"]
    first = got["Records"][0]
    assert first["PartitionKey"] == "pk" and first["SequenceNumber"] == put["SequenceNumber"]
    ts = first["ApproximateArrivalTimestamp"]
    assert isinstance(ts, Tag) and ts.tag == 1 and isinstance(ts.value, int)
    assert before_ms - 5000 <= ts.value <= int(time.time() * 1000) + 5000  # milliseconds, not seconds
    assert isinstance(got["MillisBehindLatest"], int) and isinstance(got["NextShardIterator"], str)


def test_describe_stream_timestamps_and_listing(cb):
    name = make_stream(cb, shards=2)
    desc = cb.ok("DescribeStream", {"StreamName": name})["StreamDescription"]
    created = desc["StreamCreationTimestamp"]
    assert isinstance(created, Tag) and created.tag == 1
    assert abs(created.value - time.time() * 1000) < 60_000
    assert [s["ShardId"] for s in desc["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    assert name in cb.ok("ListStreams", {})["StreamNames"]


def test_errors_are_cbor(cb):
    status, out = cb.call("DescribeStream", {"StreamName": "missing"})
    assert status == 400 and out["__type"] == "ResourceNotFoundException" and "missing" in out["message"]
    status, out = cb.call("CreateStream", {"StreamName": "bad name!", "ShardCount": 1})
    assert status == 400 and out["__type"] == "ValidationException"
    status, out = cb.call("NoSuchOperation", {})
    assert status == 400 and out["__type"] == "UnknownOperationException"


@pytest.mark.parametrize(
    "body",
    [
        b"\xa1\x63Str",  # truncated
        b"\x80",  # an array, not a map
        b"\xa1\x01\x02",  # an integer key
        b"\xa0\x00",  # trailing bytes
        b"\xbf\x61a\x7b\x00\x00\x00\x00\xff\xff\xff\xffxyz",  # a declared length far past the end
        b"\xff",  # a stray break
    ],
)
def test_malformed_cbor_is_a_serialization_error(cb, body):
    status, ctype, data = cb.raw("ListStreams", body)
    assert status == 400 and ctype == CBOR
    out = decode(data)
    assert out["__type"] == "SerializationException" and out["message"]


def _event_messages(resp):
    """Yields (headers, payload) of each event-stream message read from an HTTP response."""
    while True:
        prelude = resp.read(12)
        if len(prelude) < 12:
            return
        total, hlen, pcrc = struct.unpack(">III", prelude)
        assert zlib.crc32(prelude[:8]) == pcrc
        rest = resp.read(total - 12)
        assert zlib.crc32(prelude + rest[:-4]) == struct.unpack(">I", rest[-4:])[0]
        headers, i, hb = {}, 0, rest[:hlen]
        while i < hlen:
            n = hb[i]
            key = hb[i + 1 : i + 1 + n].decode()
            i += 1 + n
            assert hb[i] == 7  # string headers only
            vlen = struct.unpack(">H", hb[i + 1 : i + 3])[0]
            headers[key] = hb[i + 3 : i + 3 + vlen].decode()
            i += 3 + vlen
        yield headers, rest[hlen:-4]


def test_subscribe_to_shard_events_in_cbor(cb):
    name = make_stream(cb)
    arn = cb.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]["StreamARN"]
    consumer = cb.ok("RegisterStreamConsumer", {"StreamARN": arn, "ConsumerName": "java"})["Consumer"]
    assert isinstance(consumer["ConsumerCreationTimestamp"], Tag)
    cb.ok("PutRecord", {"StreamName": name, "Data": b"evt", "PartitionKey": "p"})
    conn = http.client.HTTPConnection(cb.host, cb.port, timeout=15)
    try:
        body = encode(
            {
                "ConsumerARN": consumer["ConsumerARN"],
                "ShardId": "shardId-000000000000",
                "StartingPosition": {"Type": "TRIM_HORIZON"},
            }
        )
        conn.request("POST", "/", body=body, headers={"Content-Type": CBOR, "X-Amz-Target": "Kinesis_20131202.SubscribeToShard"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "application/vnd.amazon.eventstream"
        messages = _event_messages(resp)
        headers, payload = next(messages)
        assert headers[":event-type"] == "initial-response" and decode(payload) == {}
        headers, payload = next(messages)
        assert headers[":event-type"] == "SubscribeToShardEvent" and headers[":content-type"] == CBOR
        event = decode(payload)
        assert [r["Data"] for r in event["Records"]] == [b"evt"]
        assert isinstance(event["Records"][0]["ApproximateArrivalTimestamp"], Tag)
        assert event["ContinuationSequenceNumber"] == event["Records"][0]["SequenceNumber"]
    finally:
        conn.close()
