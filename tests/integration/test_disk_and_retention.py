"""Full disk and retention, end to end on a real eddy process.

* test_full_disk_*: eddy's data folder sits on a small tmpfs (we run as root; skipped when mounting is
  not possible). PutRecords until the disk is full: failures must be reported as InternalFailure (per
  record, or a whole-request 500), the server must stay up, and exactly the acknowledged records must be
  readable, intact and in order. After the tmpfs is grown, writes resume after the old records, and a
  restart keeps everything acknowledged.
* test_retention_*: records are written at the real time, then eddy is restarted with libfaketime preloaded, 25
  hours later: with the default 24-hour retention the old records are gone from TRIM_HORIZON and their
  closed segment files are deleted by the once-a-second trim; with a 48-hour retention they stay.
"""

import os
import pathlib
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from conftest import EddyServer, close_clients, make_kinesis, unique_name, wait_until

RECORD_SIZE = 1000
BATCH = 500

FAKETIME_LIB = next(
    (
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        )
        if os.path.exists(p)
    ),
    None,
)


# ---------------------------------------------------------------------------------------------------
# Helpers


def payload(i):
    """A 1000-byte record whose content identifies it (so corruption or reordering shows)."""
    head = f"rec-{i:09d}-".encode()
    body = bytes((i * 7 + k) % 251 for k in range(RECORD_SIZE - len(head)))
    return head + body


def create_stream(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_until(
        lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE",
        message=f"{name} ACTIVE",
    )
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    return shards[0]["ShardId"]


def put_batch(kinesis, name, first):
    """PutRecords of BATCH records numbered from first. Returns (acked [(seq, data)], failed count,
    whole_request_error or None). Asserts that every failure is an InternalFailure."""
    records = [{"Data": payload(first + k), "PartitionKey": "pk"} for k in range(BATCH)]
    try:
        resp = kinesis.put_records(StreamName=name, Records=records)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert code == "InternalFailure" and status == 500, f"whole request failed with {status} {code}: {e}"
        return [], BATCH, e
    acked, failed = [], 0
    assert len(resp["Records"]) == BATCH
    for rec, entry in zip(records, resp["Records"]):
        if "ErrorCode" in entry:
            assert entry["ErrorCode"] == "InternalFailure", entry
            assert "SequenceNumber" not in entry, entry
            failed += 1
        else:
            acked.append((entry["SequenceNumber"], rec["Data"]))
    assert resp.get("FailedRecordCount", 0) == failed, resp.get("FailedRecordCount")
    return acked, failed, None


def read_all(kinesis, name, shard_id, limit=10000, deadline_s=60):
    """Every record from TRIM_HORIZON up to the tip, as [(seq, data)]."""
    it = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    out = []
    deadline = time.monotonic() + deadline_s
    while True:
        resp = kinesis.get_records(ShardIterator=it, Limit=limit)
        out.extend((r["SequenceNumber"], r["Data"]) for r in resp["Records"])
        it = resp.get("NextShardIterator")
        if it is None or (not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0):
            return out
        assert time.monotonic() < deadline, "reading the shard did not reach the tip in time"


def assert_same_records(got, expected):
    assert len(got) == len(expected), f"read {len(got)} records, expected {len(expected)}"
    for k, ((gseq, gdata), (eseq, edata)) in enumerate(zip(got, expected)):
        assert gseq == eseq, f"record {k}: sequence {gseq} != acknowledged {eseq}"
        assert gdata == edata, f"record {k} ({eseq}): data differs (got {gdata[:20]!r}...)"


def seg_files(data_dir, name):
    return sorted(pathlib.Path(data_dir, "streams", name, "0").glob("*.seg"))


# ---------------------------------------------------------------------------------------------------
# Full disk


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        close_clients()
        subprocess.run(["umount", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_fails_cleanly_then_recovers(small_tmpfs):
    server = EddyServer(small_tmpfs / "data", args=["--shard-limits", "off", "--segment-mib", "1"])
    try:
        server.start()
        kinesis = make_kinesis(server.endpoint)
        name = unique_name("full")
        shard_id = create_stream(kinesis, name)

        # Fill the 8 MiB disk: 500 KB per request, so it must fail well within 40 requests.
        acked, n, saw_failure = [], 0, False
        for _ in range(40):
            got, failed, _err = put_batch(kinesis, name, n)
            n += BATCH
            acked.extend(got)
            assert server.running(), "eddy died on a full disk:\n" + server.tail()
            if failed:
                saw_failure = True
                break
        assert saw_failure, "no put failed although far more than 8 MiB was written"
        # Still full: another request fails too (and still cleanly).
        got, failed, _err = put_batch(kinesis, name, n)
        n += BATCH
        acked.extend(got)
        assert failed > 0
        assert server.running(), "eddy died on a full disk:\n" + server.tail()
        assert len(acked) > 0

        # Reads work on a full disk and return exactly the acknowledged records.
        assert_same_records(read_all(kinesis, name, shard_id), acked)
        assert server.running()

        # Free space: writes succeed again and follow the old records.
        r = subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        before = len(acked)
        for _ in range(3):
            got, failed, err = put_batch(kinesis, name, n)
            n += BATCH
            assert err is None and failed == 0, f"puts still fail after space was freed ({failed} failed)"
            acked.extend(got)
        assert int(acked[before][0]) > int(acked[before - 1][0])
        assert_same_records(read_all(kinesis, name, shard_id), acked)

        # Restart on the same folder: everything acknowledged is still there.
        close_clients()
        assert server.stop() == 0, server.tail()
        server.start()
        kinesis = make_kinesis(server.endpoint)
        assert_same_records(read_all(kinesis, name, shard_id), acked)
    finally:
        close_clients()
        server.cleanup()
        print(f"--- eddy stderr ---\n{server.tail()}")


# ---------------------------------------------------------------------------------------------------
# Retention (libfaketime)


class FakeTimeEddy(EddyServer):
    """An EddyServer whose next start runs under libfaketime with FAKETIME=offset (None: the real clock).

    libfaketime is preloaded into eddy itself (LD_PRELOAD) rather than through the `faketime` wrapper:
    the wrapper forks, so SIGTERM would reach the wrapper and leave eddy running as an orphan."""

    offset = None

    def start(self):
        if self.offset is None:
            return super().start()
        saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "FAKETIME", "ASAN_OPTIONS")}
        os.environ["LD_PRELOAD"] = FAKETIME_LIB
        os.environ["FAKETIME"] = self.offset
        # an AddressSanitizer build wants its runtime first among the libraries; the preload is harmless
        asan = os.environ.get("ASAN_OPTIONS", "")
        os.environ["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "verify_asan_link_order=0"
        try:
            return super().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def faketime_ok():
    if FAKETIME_LIB is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    env = dict(os.environ, LD_PRELOAD=FAKETIME_LIB, FAKETIME="+25h")
    r = subprocess.run(["date", "+%s"], env=env, capture_output=True, text=True)
    if r.returncode != 0 or abs(int(r.stdout.strip()) - time.time() - 25 * 3600) > 60:
        pytest.skip(f"libfaketime does not shift the clock here: {r.stdout!r} {r.stderr!r}")


@pytest.fixture
def ft_server(tmp_path, faketime_ok):
    server = FakeTimeEddy(tmp_path / "data", args=["--shard-limits", "off", "--segment-mib", "1"])
    try:
        yield server
    finally:
        close_clients()
        server.cleanup()
        print(f"--- eddy stderr ---\n{server.tail()}")


def fill_and_jump(server, retention_hours=None, witness=None):
    """Writes ~5 MB (at least 3 segments of 1 MiB) at the real time, reads it back, then restarts eddy 25
    hours in the future. Returns (kinesis client, stream name, shard id, acknowledged records)."""
    server.start()
    kinesis = make_kinesis(server.endpoint)
    name = unique_name("ret")
    shard_id = create_stream(kinesis, name)
    if retention_hours is not None:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=retention_hours)
        wait_until(
            lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE",
            message="ACTIVE after retention change",
        )
    acked = []
    for b in range(10):
        got, failed, err = put_batch(kinesis, name, b * BATCH)
        assert failed == 0 and err is None
        acked.extend(got)
    assert_same_records(read_all(kinesis, name, shard_id), acked)
    assert len(seg_files(server.data_dir, name)) >= 3, seg_files(server.data_dir, name)
    if witness is not None:
        # a second stream with the default retention, whose expiry shows that a trim pass has run
        witness_shard = create_stream(kinesis, witness)
        for b in range(4):
            got, failed, err = put_batch(kinesis, witness, b * BATCH)
            assert failed == 0 and err is None
        assert len(seg_files(server.data_dir, witness)) >= 2
        assert witness_shard == shard_id

    close_clients()
    assert server.stop() == 0, server.tail()
    server.offset = "+25h"
    server.start()
    return make_kinesis(server.endpoint), name, shard_id, acked


def test_retention_expired_records_disappear_and_segments_are_deleted(ft_server):
    kinesis, name, shard_id, old = fill_and_jump(ft_server)
    assert len(seg_files(ft_server.data_dir, name)) >= 3

    # 25 hours later, with the default 24-hour retention, nothing is left at TRIM_HORIZON.
    assert read_all(kinesis, name, shard_id) == []

    # A record put now is the one TRIM_HORIZON returns.
    resp = kinesis.put_record(StreamName=name, Data=b"fresh", PartitionKey="pk")
    got = read_all(kinesis, name, shard_id)
    assert got == [(resp["SequenceNumber"], b"fresh")]
    assert int(resp["SequenceNumber"]) > int(old[-1][0])

    # The once-a-second trim deletes the expired closed segments; only the active one is left.
    wait_until(
        lambda: len(seg_files(ft_server.data_dir, name)) == 1,
        timeout=10,
        interval=0.1,
        message=f"expired segments deleted (left: {seg_files(ft_server.data_dir, name)})",
    )
    assert ft_server.running()
    assert read_all(kinesis, name, shard_id) == [(resp["SequenceNumber"], b"fresh")]


def test_retention_48h_keeps_records_after_25h(ft_server):
    # The housekeeping trims streams in name order, once a second: when the witness (named after the kept
    # stream) has lost its expired segments, a trim pass has also been over the kept stream.
    witness = "zz-witness-" + unique_name("w")
    kinesis, name, shard_id, old = fill_and_jump(ft_server, retention_hours=48, witness=witness)
    assert name < witness
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 48
    segs = seg_files(ft_server.data_dir, name)

    assert_same_records(read_all(kinesis, name, shard_id), old)
    resp = kinesis.put_record(StreamName=name, Data=b"fresh", PartitionKey="pk")
    wait_until(
        lambda: len(seg_files(ft_server.data_dir, witness)) == 1,
        timeout=10,
        interval=0.1,
        message="the witness stream's expired segments deleted",
    )
    # the trim pass that expired the witness went over the kept stream too: nothing of it was deleted
    assert seg_files(ft_server.data_dir, name)[: len(segs)] == segs
    assert_same_records(read_all(kinesis, name, shard_id), old + [(resp["SequenceNumber"], b"fresh")])
