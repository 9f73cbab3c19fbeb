"""Helpers for the data-plane integration tests (records, model and crash tests).

conftest.py owns the server fixtures; this module adds what those tests need on top of it:

* hash-key routing (MD5 of the partition key as a big-endian 128-bit number) and shard ranges;
* ``DataClient``: a keep-alive AWS JSON 1.1 client that follows a server across restarts (the port
  changes, since every start uses --port 0) and reports transport failures as exceptions, so the
  crash test can tell "acknowledged" from "in flight";
* whole-shard reads, deterministic payloads, and an iterator forger for the expiry test.

Nothing here sleeps to synchronise: waits poll with a deadline.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import sqlite3
import struct
import time

from conftest import wait_until

TWO_128 = 2**128
MAX_HASH_KEY = TWO_128 - 1
MIB = 1024 * 1024


def shard_id(i):
    return f"shardId-{i:012d}"


def b64(data):
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    return base64.b64decode(text, validate=True)


def md5_hash_key(partition_key):
    """Kinesis routes a partition key by MD5(UTF-8 bytes) read as a big-endian unsigned 128-bit number."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


def expected_ranges(n):
    """Hash-key ranges of a new n-shard stream: floor(2^128/n) keys each, the last takes the remainder."""
    size = TWO_128 // n
    return [(size * i, MAX_HASH_KEY if i == n - 1 else size * (i + 1) - 1) for i in range(n)]


def shard_for_key(ranges, key):
    """ranges: {shard_id: (start, end)} or [(start, end)] -> the shard holding key."""
    items = ranges.items() if isinstance(ranges, dict) else ((shard_id(i), r) for i, r in enumerate(ranges))
    for sid, (start, end) in items:
        if start <= key <= end:
            return sid
    raise AssertionError(f"no shard holds hash key {key}")


def payload(tag, size):
    """Deterministic bytes of `size` that start with `tag` (bytes), so a reader can re-derive and check them."""
    head = tag + b"|"
    if size <= len(head):
        return head[:size]
    out = bytearray(head)
    seed = hashlib.sha256(tag).digest()
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:size])


# ---------------------------------------------------------------------------------------------------
# Raw JSON client that survives restarts


class TransportError(Exception):
    """The request may or may not have reached the server (connection refused, reset, timed out...)."""


class DataClient:
    """AWS JSON 1.1 over one keep-alive HTTP/1.1 connection to `server` (an EddyServer).

    call(op, body) -> (status, parsed JSON or None). Any socket-level failure closes the connection and
    raises TransportError; the next call reconnects to the server's current host and port.
    """

    def __init__(self, server, timeout=15.0):
        self.server = server
        self.timeout = timeout
        self.conn = None
        self.conn_port = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None

    def call(self, op, body):
        data = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{op}",
        }
        port = self.server.port
        if self.conn is None or self.conn_port != port:
            self.close()
            self.conn = http.client.HTTPConnection(self.server.host, port, timeout=self.timeout)
            self.conn_port = port
        try:
            self.conn.request("POST", "/", body=data, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
            status = resp.status
            if resp.getheader("connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise TransportError(f"{op}: {type(e).__name__}: {e}") from e
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return status, parsed

    def ok(self, op, body):
        status, parsed = self.call(op, body)
        assert status == 200, f"{op} -> {status} {parsed!r}"
        return parsed if parsed is not None else {}


# ---------------------------------------------------------------------------------------------------
# Streams and reads over any client with raw-style ok(op, body) / call(op, body)


def create_stream(client, name, shards, timeout=10.0):
    """Creates a provisioned stream and waits (polling) until it is ACTIVE; returns {shard_id: (start, end)}."""
    client.ok("CreateStream", {"StreamName": name, "ShardCount": shards})

    def active():
        summary = client.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    wait_until(active, timeout=timeout, message=f"stream {name} ACTIVE")
    return shard_ranges(client, name)


def shard_ranges(client, name):
    shards = client.ok("ListShards", {"StreamName": name})["Shards"]
    return {
        s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards
    }


def call(client, op, body):
    """(status, json) from a DataClient or a conftest RawClient (which also returns headers)."""
    if isinstance(client, DataClient):
        return client.call(op, body)
    status, parsed, _ = client(op, body)
    return status, parsed


def iterator(client, stream, shard, kind="TRIM_HORIZON", **extra):
    body = {"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind, **extra}
    return client.ok("GetShardIterator", body)["ShardIterator"]


def get_records(client, it, limit=None, timeout=10.0):
    """GetRecords, retrying (by polling with a deadline) while the shard's read limit throttles it."""
    body = {"ShardIterator": it}
    if limit is not None:
        body["Limit"] = limit
    deadline = time.monotonic() + timeout
    while True:
        status, parsed = call(client, "GetRecords", body)
        if status == 200:
            return parsed
        if (
            status == 400
            and isinstance(parsed, dict)
            and parsed.get("__type") == "ProvisionedThroughputExceededException"
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
            continue
        raise AssertionError(f"GetRecords -> {status} {parsed!r}")


def read_all(client, stream, shard, kind="TRIM_HORIZON", limit=None, timeout=30.0, **extra):
    """Reads a shard from an iterator until caught up; returns the list of records (JSON dicts)."""
    it = iterator(client, stream, shard, kind, **extra)
    out = []
    deadline = time.monotonic() + timeout
    while True:
        reply = get_records(client, it, limit)
        out.extend(reply["Records"])
        it = reply["NextShardIterator"]
        if not reply["Records"] and reply["MillisBehindLatest"] == 0:
            return out
        assert time.monotonic() < deadline, f"reading {stream}/{shard} did not catch up in {timeout}s"


# ---------------------------------------------------------------------------------------------------
# Iterator forging (white box: the expiry test cannot wait five real minutes)
#
# Token = base64( version(1) | stream_created_ms(8) | shard(4) | position(8) | issued_ms(8) | name_len(1)
#                 | name | HMAC-SHA256(key, all before)[0..16) ), key = settings.iterator_key (hex) in
# <data>/catalog.db. See src/server/dataplane.c.

ITER_MAC = 16


def iterator_key(data_dir):
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'catalog.db')}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT value FROM settings WHERE key='iterator_key'").fetchone()
    finally:
        db.close()
    assert row is not None, "no iterator_key in the catalog"
    return bytes.fromhex(row[0])


def decode_iterator(token):
    raw = base64.b64decode(token)
    version = raw[0]
    created, shard, position, issued = struct.unpack(">QIQQ", raw[1:29])
    name_len = raw[29]
    name = raw[30 : 30 + name_len].decode()
    return {
        "version": version,
        "stream_created_ms": created,
        "shard": shard,
        "position": position,
        "issued_ms": issued,
        "stream": name,
    }


def encode_iterator(key, fields):
    name = fields["stream"].encode()
    body = (
        bytes([fields["version"]])
        + struct.pack(
            ">QIQQ", fields["stream_created_ms"], fields["shard"], fields["position"], fields["issued_ms"]
        )
        + bytes([len(name)])
        + name
    )
    tag = hmac.new(key, body, hashlib.sha256).digest()[:ITER_MAC]
    return base64.b64encode(body + tag).decode()


SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


def log_problems(server):
    """Lines of the server's stderr (all runs) logged at error level or written by a sanitizer."""
    out = []
    for line in server.log:
        parts = line.split(" ", 2)
        if (len(parts) > 1 and parts[1] == "error") or any(m in line for m in SANITIZER_MARKERS):
            out.append(line)
    return out


def log_warnings(server):
    return [line for line in server.log if line.split(" ", 2)[1:2] == ["warn"]]
