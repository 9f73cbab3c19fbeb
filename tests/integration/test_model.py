"""Model-based test of the data plane.

A seeded random sequence of PutRecords / PutRecord (random sizes, partition keys and explicit hash
keys), GetRecords reads from random positions (TRIM_HORIZON, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER,
LATEST, and AT_TIMESTAMP at arrival times seen in earlier reads, which must never change; random limits,
pages followed through NextShardIterator, cursors kept across restarts) and server restarts (SIGTERM,
and SIGKILL as a crash) on the same data folder, checked after every step against an in-memory
reference: for each shard, the list of (sequence number, partition key, data) acknowledged so far.

The server runs with --durability fsync (the default), so an acknowledged record must survive SIGKILL,
with --shard-limits off (nothing is throttled) and small segments (--segment-mib 1) so that reads and
recovery cross segment files. Set EDDY_MODEL_SEED to replay one seed, EDDY_MODEL_STEPS to change the length.
"""

import base64
import os
import random

import pytest

from eddyproc import (
    MAX_HASH_KEY,
    MIB,
    DataClient,
    create_stream,
    log_problems,
    md5_hash_key,
    shard_for_key,
)

SEEDS = [int(os.environ["EDDY_MODEL_SEED"])] if os.environ.get("EDDY_MODEL_SEED") else [1, 2, 3]
STEPS = int(os.environ.get("EDDY_MODEL_STEPS", "300"))
GET_RECORDS_MAX_BYTES = 10 * MIB


class Model:
    def __init__(self, rng, client, streams):
        self.rng = rng
        self.client = client
        self.streams = streams  # name -> {shard_id: (start, end)}
        self.shards = {(name, sid): [] for name, ranges in streams.items() for sid in ranges}
        # ApproximateArrivalTimestamp of each record, learnt from the first read that returns it (None before).
        self.arrivals = {key: [] for key in self.shards}
        self.cursors = []  # [stream, shard, iterator, position in the model list]
        self.history = []
        self.stats = {
            "put_records": 0,
            "put_record": 0,
            "records": 0,
            "reads": 0,
            "pages": 0,
            "sigterm": 0,
            "sigkill": 0,
        }

    # ---- helpers ----

    def fail(self, message):
        tail = "\n".join(self.history[-15:])
        raise AssertionError(f"{message}\nlast steps:\n{tail}")

    def check(self, cond, message):
        if not cond:
            self.fail(message)

    def random_pk(self):
        r = self.rng.random()
        if r < 0.5:
            return f"k{self.rng.randrange(40)}"
        if r < 0.7:
            return "".join(self.rng.choice("abcxyz0123456789éü键🔑 -_") for _ in range(self.rng.randint(1, 40)))
        if r < 0.8:
            return "p" * 256
        return f"u{self.rng.getrandbits(64)}"

    def random_size(self):
        r = self.rng.random()
        if r < 0.08:
            return 0
        if r < 0.6:
            return self.rng.randint(1, 100)
        if r < 0.9:
            return self.rng.randint(100, 8000)
        if r < 0.99:
            return self.rng.randint(8000, 60_000)
        return self.rng.randint(200_000, 600_000)

    def random_hash_key(self, ranges):
        if self.rng.random() < 0.5:
            return self.rng.randint(0, MAX_HASH_KEY)
        start, end = self.rng.choice(list(ranges.values()))
        return self.rng.choice([start, end, start + 1, max(start, end - 1)])

    def random_record(self, ranges):
        pk = self.random_pk()
        data = self.rng.randbytes(self.random_size())
        rec = {"PartitionKey": pk, "Data": base64.b64encode(data).decode()}
        if self.rng.random() < 0.3:
            key = self.random_hash_key(ranges)
            rec["ExplicitHashKey"] = str(key)
        else:
            key = md5_hash_key(pk)
        return rec, pk, data, shard_for_key(ranges, key)

    def acknowledge(self, stream, sid, expected_sid, seq, pk, data):
        self.check(sid == expected_sid, f"routed to {sid}, expected {expected_sid}")
        log = self.shards[(stream, sid)]
        if log:
            self.check(
                int(seq) > int(log[-1][0]), f"{stream}/{sid}: sequence number {seq} not above {log[-1][0]}"
            )
        log.append((seq, pk, data))
        self.arrivals[(stream, sid)].append(None)
        self.stats["records"] += 1

    def learn_arrivals(self, key, pos, records):
        """Arrival times must not change once seen (across restarts too) and never go back within a shard."""
        arrivals = self.arrivals[key]
        for k, rec in enumerate(records, start=pos):
            ts = rec["ApproximateArrivalTimestamp"]
            if arrivals[k] is None:
                arrivals[k] = ts
            self.check(arrivals[k] == ts, f"{key}: arrival of record {k} was {arrivals[k]}, now {ts}")
            if k > 0 and arrivals[k - 1] is not None:
                self.check(
                    arrivals[k - 1] <= ts, f"{key}: arrival of record {k} {ts} before {arrivals[k - 1]}"
                )

    def known_arrivals(self, key):
        """How many leading records of the shard have a known arrival time."""
        n = 0
        for ts in self.arrivals[key]:
            if ts is None:
                break
            n += 1
        return n

    # ---- operations ----

    def put_records(self):
        stream = self.rng.choice(list(self.streams))
        ranges = self.streams[stream]
        n = (
            self.rng.choice([1, 2, 5, 10, 30, 100, 250])
            if self.rng.random() < 0.3
            else self.rng.randint(1, 40)
        )
        batch, total = [], 0
        for _ in range(n):
            rec, pk, data, sid = self.random_record(ranges)
            if total + len(data) + len(pk.encode()) > 4 * MIB:
                break
            total += len(data) + len(pk.encode())
            batch.append((rec, pk, data, sid))
        self.history.append(f"PutRecords {stream} n={len(batch)} bytes={total}")
        reply = self.client.ok("PutRecords", {"StreamName": stream, "Records": [b[0] for b in batch]})
        self.check(reply["FailedRecordCount"] == 0, f"PutRecords failed: {reply}")
        self.check(len(reply["Records"]) == len(batch), "PutRecords reply length")
        for (rec, pk, data, sid), entry in zip(batch, reply["Records"]):
            self.acknowledge(stream, entry["ShardId"], sid, entry["SequenceNumber"], pk, data)
        self.stats["put_records"] += 1

    def put_record(self):
        stream = self.rng.choice(list(self.streams))
        rec, pk, data, sid = self.random_record(self.streams[stream])
        self.history.append(
            f"PutRecord {stream} pk={pk[:20]!r} len={len(data)} ehk={rec.get('ExplicitHashKey')}"
        )
        reply = self.client.ok("PutRecord", {"StreamName": stream, **rec})
        self.check(reply["EncryptionType"] == "NONE", reply)
        self.acknowledge(stream, reply["ShardId"], sid, reply["SequenceNumber"], pk, data)
        self.stats["put_record"] += 1

    def new_cursor(self):
        stream, sid = self.rng.choice(list(self.shards))
        log = self.shards[(stream, sid)]
        known = self.known_arrivals((stream, sid))
        kinds = (
            ["TRIM_HORIZON", "LATEST"]
            + (["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"] * 3 if log else [])
            + (["AT_TIMESTAMP"] * 2 if known else [])
        )
        kind = self.rng.choice(kinds)
        body = {"StreamName": stream, "ShardId": sid, "ShardIteratorType": kind}
        if kind == "TRIM_HORIZON":
            pos = 0
        elif kind == "LATEST":
            pos = len(log)
        elif kind == "AT_TIMESTAMP":
            arrivals = self.arrivals[(stream, sid)]
            if known == len(log) and self.rng.random() < 0.2:
                # After the newest record: the iterator starts at the next record put.
                body["Timestamp"] = round(arrivals[-1] + 0.001, 3)
                pos = len(log)
            else:
                # The arrival time of a record: the first record that arrived in that millisecond.
                ts = arrivals[self.rng.randrange(known)]
                body["Timestamp"] = ts
                pos = next(k for k in range(known) if arrivals[k] >= ts)
        else:
            i = self.rng.randrange(len(log))
            body["StartingSequenceNumber"] = log[i][0]
            pos = i if kind == "AT_SEQUENCE_NUMBER" else i + 1
        self.stats[kind] = self.stats.get(kind, 0) + 1
        self.history.append(f"GetShardIterator {stream}/{sid} {kind} -> model position {pos} of {len(log)}")
        it = self.client.ok("GetShardIterator", body)["ShardIterator"]
        return [stream, sid, it, pos]

    def read(self):
        if self.cursors and self.rng.random() < 0.5:
            cursor = self.rng.choice(self.cursors)
        else:
            cursor = self.new_cursor()
            self.cursors.append(cursor)
            if len(self.cursors) > 12:
                self.cursors.pop(0)
        stream, sid, it, pos = cursor
        log = self.shards[(stream, sid)]
        for _ in range(self.rng.randint(1, 4)):
            limit = (
                self.rng.choice([1, 2, 3, 7, 50, 10000])
                if self.rng.random() < 0.5
                else self.rng.randint(1, 120)
            )
            body = {"ShardIterator": it}
            if limit != 10000 or self.rng.random() < 0.5:
                body["Limit"] = limit
            self.history.append(
                f"GetRecords {stream}/{sid} from model position {pos} of {len(log)} limit={limit}"
            )
            reply = self.client.ok("GetRecords", body)
            got = [
                (r["SequenceNumber"], r["PartitionKey"], base64.b64decode(r["Data"]))
                for r in reply["Records"]
            ]
            want = log[pos : pos + len(got)]
            self.check(
                got == want,
                f"{stream}/{sid}: read {summary(got)} at model position {pos}, expected {summary(want)}",
            )
            self.learn_arrivals((stream, sid), pos, reply["Records"])
            remaining = len(log) - pos
            self.check(len(got) <= limit, f"{len(got)} records for Limit {limit}")
            if remaining > 0:
                self.check(len(got) >= 1, f"{stream}/{sid}: empty read with {remaining} records to go")
            size = sum(len(d) + len(p.encode()) for _, p, d in got)
            self.check(len(got) <= 1 or size <= GET_RECORDS_MAX_BYTES, f"{size} bytes in one GetRecords")
            if len(got) < min(limit, remaining):
                # Fewer than asked for: only because the next record would pass 10 MiB.
                nxt = log[pos + len(got)]
                self.check(size + len(nxt[2]) + len(nxt[1].encode()) > GET_RECORDS_MAX_BYTES, "short read")
            pos += len(got)
            if pos == len(log):
                self.check(
                    reply["MillisBehindLatest"] == 0,
                    f"caught up but MillisBehindLatest {reply['MillisBehindLatest']}",
                )
            it = reply["NextShardIterator"]
            self.check(bool(it), "no NextShardIterator for an open shard")
            self.stats["pages"] += 1
        cursor[2], cursor[3] = it, pos
        self.stats["reads"] += 1

    def verify_all(self):
        for (stream, sid), log in self.shards.items():
            it = self.client.ok(
                "GetShardIterator",
                {"StreamName": stream, "ShardId": sid, "ShardIteratorType": "TRIM_HORIZON"},
            )["ShardIterator"]
            got = []
            while True:
                reply = self.client.ok("GetRecords", {"ShardIterator": it})
                self.learn_arrivals((stream, sid), len(got), reply["Records"])
                got += [
                    (r["SequenceNumber"], r["PartitionKey"], base64.b64decode(r["Data"]))
                    for r in reply["Records"]
                ]
                it = reply["NextShardIterator"]
                if not reply["Records"]:
                    break
            self.check(got == log, f"{stream}/{sid}: full read {summary(got)} != model {summary(log)}")


def summary(records):
    if not records:
        return "[]"
    first, last = records[0][0], records[-1][0]
    return f"[{len(records)} records {first[-8:]}..{last[-8:]}]"


@pytest.mark.parametrize("seed", SEEDS)
def test_model(eddy_factory, seed):
    rng = random.Random(seed)
    server = eddy_factory("--shard-limits", "off", "--segment-mib", "1")
    client = DataClient(server)
    try:
        streams = {}
        for name, shards in ((f"model-a-{seed}", 3), (f"model-b-{seed}", 1)):
            streams[name] = create_stream(client, name, shards)
        model = Model(rng, client, streams)
        ops = [(model.put_records, 30), (model.put_record, 15), (model.read, 45), (None, 4)]
        for step in range(STEPS):
            (op,) = rng.choices([o for o, _ in ops], weights=[w for _, w in ops])
            if op is not None:
                op()
                continue
            graceful = rng.random() < 0.5
            model.history.append(f"restart ({'SIGTERM' if graceful else 'SIGKILL'}) at step {step}")
            # An idle keep-alive connection would hold a graceful stop for its grace period.
            client.close()
            if graceful:
                code = server.stop()
                model.check(code == 0, f"eddy exited with {code} on SIGTERM:\n{server.tail()}")
                model.stats["sigterm"] += 1
            else:
                server.kill9()
                model.stats["sigkill"] += 1
            server.start()
            if rng.random() < 0.3:
                model.verify_all()
        model.verify_all()
        print(f"seed {seed}: {model.stats}")
        assert not log_problems(server), "errors in eddy's log:\n" + "\n".join(log_problems(server)[:20])
        assert model.stats["records"] > 0 and model.stats["sigkill"] + model.stats["sigterm"] > 0
    finally:
        client.close()
