"""Crash test: acknowledged records survive SIGKILL.

Writer threads send PutRecords and PutRecord calls with unique, self-describing payloads to a 4-shard
stream and remember every acknowledged record (payload -> shard, sequence number). The server is killed
with SIGKILL at seeded random moments and restarted on the same data folder while the writers keep
going. At the end every shard is read from TRIM_HORIZON and:

* every acknowledged record is present, intact, on the acknowledged shard with the acknowledged
  sequence number;
* every record read is one that was sent, intact, with its partition key, on the shard its hash key
  routes to; no record appears twice; sequence numbers strictly increase within a shard;
* records in flight at a kill (sent, no reply) may or may not be present: they are counted.

--durability fsync acknowledges after fdatasync; --durability none (and interval) acknowledge once
written, which must also survive a process crash because the data is in the page cache.

EDDY_CRASH_SEED replays one seed; EDDY_CRASH_KILLS changes the number of kills.
"""

import base64
import os
import random
import threading
import time

import pytest

from eddyproc import (
    DataClient,
    TransportError,
    create_stream,
    log_problems,
    log_warnings,
    md5_hash_key,
    payload,
    shard_for_key,
)

SEED = int(os.environ.get("EDDY_CRASH_SEED", "4242"))
KILLS = os.environ.get("EDDY_CRASH_KILLS")
WRITERS = 3
TIME_BUDGET_S = 40.0


class Ledger:
    """What the writers sent and what the server acknowledged, shared by the writer threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}  # tag -> (partition key, expected shard, size)
        self.acked = {}  # tag -> (shard, sequence number)
        self.in_flight = set()  # sent, no reply (the connection failed)
        self.rejected = {}  # tag -> error reply for the record or its request
        self.generation = 0
        self.changed = threading.Condition(self.lock)

    def acked_count(self):
        with self.lock:
            return len(self.acked)


class Writer(threading.Thread):
    def __init__(self, index, server, stream, ranges, ledger, stop, seed):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.server = server
        self.stream = stream
        self.ranges = ranges
        self.ledger = ledger
        self.stop = stop
        self.rng = random.Random(seed)
        self.counter = 0
        self.calls = 0
        self.transport_errors = 0
        self.error = None

    def record(self):
        self.counter += 1
        r = self.rng.random()
        size = (
            self.rng.randint(0, 64)
            if r < 0.3
            else self.rng.randint(64, 3000)
            if r < 0.97
            else self.rng.randint(50_000, 200_000)
        )
        tag = f"w{self.index}-{self.counter}-{size}"
        size += len(tag) + 1  # the payload starts with the tag and a "|"
        pk = f"pk{self.rng.randrange(1000)}" if self.rng.random() < 0.9 else tag
        rec = {"PartitionKey": pk, "Data": base64.b64encode(payload(tag.encode(), size)).decode()}
        if self.rng.random() < 0.2:
            key = self.rng.getrandbits(128)
            rec["ExplicitHashKey"] = str(key)
        else:
            key = md5_hash_key(pk)
        return tag, pk, shard_for_key(self.ranges, key), size, rec

    def run(self):
        client = DataClient(self.server, timeout=10)
        try:
            while not self.stop.is_set():
                self.one_call(client)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            client.close()

    def one_call(self, client):
        single = self.rng.random() < 0.25
        batch = [self.record() for _ in range(1 if single else self.rng.randint(1, 60))]
        ledger = self.ledger
        with ledger.lock:
            generation = ledger.generation
            for tag, pk, sid, size, _ in batch:
                ledger.sent[tag] = (pk, sid, size)
                ledger.in_flight.add(tag)
        try:
            if single:
                status, reply = client.call("PutRecord", {"StreamName": self.stream, **batch[0][4]})
            else:
                status, reply = client.call(
                    "PutRecords", {"StreamName": self.stream, "Records": [b[4] for b in batch]}
                )
        except TransportError:
            # Unknown outcome: the records stay in flight. Wait for the server to come back.
            self.transport_errors += 1
            with ledger.changed:
                ledger.changed.wait_for(
                    lambda: ledger.generation != generation or self.stop.is_set(), timeout=2
                )
            return
        self.calls += 1
        with ledger.lock:
            if status != 200:
                for tag, *_ in batch:
                    ledger.in_flight.discard(tag)
                    ledger.rejected[tag] = (status, reply)
                return
            entries = [reply] if single else reply["Records"]
            assert len(entries) == len(batch), reply
            for (tag, pk, sid, size, _), entry in zip(batch, entries):
                ledger.in_flight.discard(tag)
                if "SequenceNumber" in entry:
                    assert entry["ShardId"] == sid, (tag, entry)
                    ledger.acked[tag] = (entry["ShardId"], entry["SequenceNumber"])
                else:
                    ledger.rejected[tag] = entry


class Reader(threading.Thread):
    """Tails every shard from TRIM_HORIZON while the writers and the kills go on, keeping its iterators
    across restarts. Whatever it has seen must still be there, in the same place, at the end (a record
    is readable only once it is as durable as acknowledged records are)."""

    def __init__(self, server, stream, ranges, ledger, stop, seed):
        super().__init__(name="reader", daemon=True)
        self.server = server
        self.stream = stream
        self.shards = sorted(ranges)
        self.ledger = ledger
        self.stop = stop
        self.rng = random.Random(seed)
        self.iterators = {}
        self.seen = {sid: [] for sid in self.shards}  # shard -> [(tag, sequence number)] in read order
        self.pages = 0
        self.transport_errors = 0
        self.error = None

    def run(self):
        client = DataClient(self.server, timeout=10)
        try:
            while not self.stop.is_set():
                for sid in self.shards:
                    self.read_page(client, sid)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            client.close()

    def read_page(self, client, sid):
        ledger = self.ledger
        with ledger.lock:
            generation = ledger.generation
        try:
            if sid not in self.iterators:
                body = {"StreamName": self.stream, "ShardId": sid, "ShardIteratorType": "TRIM_HORIZON"}
                self.iterators[sid] = client.ok("GetShardIterator", body)["ShardIterator"]
            status, reply = client.call(
                "GetRecords", {"ShardIterator": self.iterators[sid], "Limit": self.rng.randint(1, 300)}
            )
        except TransportError:
            self.transport_errors += 1
            with ledger.changed:
                ledger.changed.wait_for(
                    lambda: ledger.generation != generation or self.stop.is_set(), timeout=2
                )
            return
        assert status == 200, f"GetRecords on {sid} -> {status} {reply}"
        for rec in reply["Records"]:
            tag = base64.b64decode(rec["Data"]).split(b"|", 1)[0].decode("ascii", "replace")
            self.seen[sid].append((tag, rec["SequenceNumber"]))
        self.iterators[sid] = reply["NextShardIterator"]
        self.pages += 1


def poll_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def read_everything(server, stream, ranges):
    client = DataClient(server)
    out = {}
    try:
        for sid in sorted(ranges):
            it = client.ok(
                "GetShardIterator",
                {"StreamName": stream, "ShardId": sid, "ShardIteratorType": "TRIM_HORIZON"},
            )["ShardIterator"]
            records = []
            while True:
                reply = client.ok("GetRecords", {"ShardIterator": it})
                records += reply["Records"]
                it = reply["NextShardIterator"]
                if not reply["Records"]:
                    break
            out[sid] = records
    finally:
        client.close()
    return out


@pytest.mark.parametrize(
    "durability,kills",
    [("fsync", 20), ("none", 15), ("interval", 8)],
)
def test_acknowledged_records_survive_sigkill(eddy_factory, durability, kills):
    kills = int(KILLS) if KILLS else kills
    rng = random.Random(f"{SEED}-{durability}")
    server = eddy_factory("--durability", durability, "--shard-limits", "off", "--segment-mib", "1")
    stream = f"crash-{durability}"
    setup = DataClient(server)
    ranges = create_stream(setup, stream, 4)
    setup.close()

    ledger = Ledger()
    stop = threading.Event()
    writers = [Writer(i, server, stream, ranges, ledger, stop, rng.getrandbits(32)) for i in range(WRITERS)]
    reader = Reader(server, stream, ranges, ledger, stop, rng.getrandbits(32))
    for w in writers + [reader]:
        w.start()
    started = time.monotonic()
    done_kills = 0
    try:
        for k in range(kills):
            if time.monotonic() - started > TIME_BUDGET_S:
                break
            # Kill after a random amount of progress (sometimes none: right after recovery), plus a random delay.
            target = ledger.acked_count() + rng.choice([0, rng.randint(1, 50), rng.randint(50, 600)])
            assert poll_until(
                lambda: ledger.acked_count() >= target or any(w.error for w in writers), 20
            ), f"writers made no progress after restart {k}:\n{server.tail()}"
            for w in writers:
                assert w.error is None, f"{w.name}: {w.error!r}"
            extra = rng.choice([0, 0, rng.uniform(0, 0.005), rng.uniform(0, 0.05)])
            poll_until(lambda: False, extra)
            server.kill9()
            done_kills += 1
            server.start()
            with ledger.changed:
                ledger.generation += 1
                ledger.changed.notify_all()
        # A little more writing after the last restart, then stop.
        target = ledger.acked_count() + 100
        assert poll_until(lambda: ledger.acked_count() >= target, 20), "no progress after the last restart"
    finally:
        stop.set()
        with ledger.changed:
            ledger.changed.notify_all()
        for w in writers + [reader]:
            w.join(timeout=30)
    for w in writers + [reader]:
        assert not w.is_alive(), f"{w.name} did not stop"
        assert w.error is None, f"{w.name}: {w.error!r}"

    shards = read_everything(server, stream, ranges)

    seen = {}
    problems = []
    for sid, records in shards.items():
        last = -1
        for rec in records:
            seq = int(rec["SequenceNumber"])
            if seq <= last:
                problems.append(f"{sid}: sequence number {seq} after {last}")
            last = seq
            data = base64.b64decode(rec["Data"])
            tag = data.split(b"|", 1)[0].decode("ascii", "replace")
            if tag not in ledger.sent:
                problems.append(f"{sid} {rec['SequenceNumber']}: unknown or corrupt record {data[:40]!r}")
                continue
            pk, expected_sid, size = ledger.sent[tag]
            if data != payload(tag.encode(), size):
                problems.append(
                    f"{sid} {rec['SequenceNumber']}: {tag} corrupt ({len(data)} bytes, {size} sent)"
                )
            if rec["PartitionKey"] != pk:
                problems.append(f"{tag}: partition key {rec['PartitionKey']!r}, sent {pk!r}")
            if sid != expected_sid:
                problems.append(f"{tag}: on {sid}, routes to {expected_sid}")
            if tag in seen:
                problems.append(f"{tag} twice: {seen[tag]} and {(sid, rec['SequenceNumber'])}")
            seen[tag] = (sid, rec["SequenceNumber"])
        if len(problems) > 50:
            break

    # What the reader saw while the server was being killed is a prefix of each shard's final contents.
    seen_by_reader = sum(len(v) for v in reader.seen.values())
    for sid, observed in reader.seen.items():
        final = [
            (base64.b64decode(r["Data"]).split(b"|", 1)[0].decode("ascii", "replace"), r["SequenceNumber"])
            for r in shards[sid]
        ]
        if final[: len(observed)] != observed:
            diverge = next(
                i for i, (a, b) in enumerate(zip(final + [None] * len(observed), observed)) if a != b
            )
            problems.append(
                f"{sid}: the reader saw {observed[diverge]} at position {diverge}, finally there is "
                f"{final[diverge] if diverge < len(final) else 'nothing'}"
            )

    lost_acked = [tag for tag in ledger.acked if tag not in seen]
    moved = [tag for tag, where in ledger.acked.items() if tag in seen and seen[tag] != where]
    rejected_present = [tag for tag in ledger.rejected if tag in seen]
    in_flight_present = sum(1 for tag in ledger.in_flight if tag in seen)
    report = (
        f"durability {durability}: {done_kills} kills, {len(ledger.sent)} records sent, {len(ledger.acked)} acknowledged, "
        f"{len(ledger.in_flight)} in flight at a kill ({in_flight_present} present, "
        f"{len(ledger.in_flight) - in_flight_present} lost), {len(ledger.rejected)} rejected, "
        f"{sum(len(r) for r in shards.values())} read back, {seen_by_reader} seen by the tailing reader "
        f"({reader.pages} pages), "
        f"{sum(w.calls for w in writers)} calls answered, {sum(w.transport_errors for w in writers)} transport errors"
    )
    report += f", {len(log_warnings(server))} warnings logged (torn tails cut at recovery)"
    print(report)
    assert not problems, report + "\n" + "\n".join(problems[:50])
    assert not lost_acked, f"{report}\n{len(lost_acked)} acknowledged records missing, e.g. " + ", ".join(
        f"{t} {ledger.acked[t]}" for t in lost_acked[:10]
    )
    assert not moved, f"{report}\nacknowledged at another place: " + ", ".join(
        f"{t} acked {ledger.acked[t]} read {seen[t]}" for t in moved[:10]
    )
    assert not ledger.rejected, f"{report}\nrejected: {list(ledger.rejected.items())[:5]}"
    assert not rejected_present
    assert done_kills >= min(kills, 5), report
    assert not log_problems(server), "errors in eddy's log:\n" + "\n".join(log_problems(server)[:20])
