"""Resharding through boto3: SplitShard, MergeShards, UpdateShardCount (UNIFORM_SCALING).

Expected behaviour is the AWS Kinesis Data Streams API reference: lineage (ParentShardId,
AdjacentParentShardId, EndingSequenceNumber on closed parents), children's sequence numbers above every
parent record, closed parents readable to their end where GetRecords returns ChildShards instead of a
NextShardIterator, the stream UPDATING during the change, and AWS's errors and limits.
"""

import threading

import pytest
from botocore.exceptions import ClientError

from conftest import make_kinesis, unique_name, wait_until
from eddyproc import MAX_HASH_KEY, TWO_128, expected_ranges, shard_id


@pytest.fixture
def srv(eddy_factory):
    return eddy_factory("--shard-limits", "off")


@pytest.fixture
def kin(srv):
    return make_kinesis(srv.endpoint)


def create(kin, shards):
    name = unique_name("rs")
    kin.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: status(kin, name) == "ACTIVE", message="stream ACTIVE")
    return name


def status(kin, name):
    return kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]


def shards(kin, name):
    out, token = [], None
    while True:
        page = kin.list_shards(NextToken=token) if token else kin.list_shards(StreamName=name)
        out += page["Shards"]
        token = page.get("NextToken")
        if not token:
            return out


def by_id(shard_list):
    return {s["ShardId"]: s for s in shard_list}


def hash_range(s):
    r = s["HashKeyRange"]
    return int(r["StartingHashKey"]), int(r["EndingHashKey"])


def is_open(s):
    return "EndingSequenceNumber" not in s["SequenceNumberRange"]


def error(exc):
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def check_lineage(shard_list):
    """AWS's invariants: open shards tile the key space; every parent is closed; a split child lies inside
    its parent, a merge child is the union of its two adjacent parents; children start above parents."""
    ids = by_id(shard_list)
    open_ranges = sorted(hash_range(s) for s in shard_list if is_open(s))
    assert open_ranges[0][0] == 0 and open_ranges[-1][1] == MAX_HASH_KEY
    for (_, end), (start, _) in zip(open_ranges, open_ranges[1:]):
        assert start == end + 1
    for s in shard_list:
        parents = [ids[p] for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p]
        if not parents:
            continue
        lo, hi = hash_range(s)
        for p in parents:
            assert not is_open(p), f"{p['ShardId']}, parent of {s['ShardId']}, is still open"
            assert int(s["SequenceNumberRange"]["StartingSequenceNumber"]) > int(
                p["SequenceNumberRange"]["EndingSequenceNumber"]
            )
        if len(parents) == 1:
            plo, phi = hash_range(parents[0])
            assert plo <= lo and hi <= phi
        else:
            (alo, ahi), (blo, bhi) = sorted(hash_range(p) for p in parents)
            assert ahi + 1 == blo and (lo, hi) == (alo, bhi)


def put(kin, name, hash_key, data):
    r = kin.put_record(StreamName=name, Data=data, PartitionKey="p", ExplicitHashKey=str(hash_key))
    return r["ShardId"], r["SequenceNumber"]


def read_shard(kin, name, sid):
    """Every record of a shard from TRIM_HORIZON, and the last GetRecords reply."""
    it = kin.get_shard_iterator(StreamName=name, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    for _ in range(1000):
        r = kin.get_records(ShardIterator=it)
        records += r["Records"]
        if "NextShardIterator" not in r or (not r["Records"] and r["MillisBehindLatest"] == 0):
            return records, r
        it = r["NextShardIterator"]
    raise AssertionError("shard never ended")


# ---------------------------------------------------------------------------------------------------


def test_split_shard_lineage_routing_and_child_shards(kin):
    name = create(kin, 1)
    before = [put(kin, name, k, b"before-%d" % i) for i, k in enumerate((0, 2**127, MAX_HASH_KEY))]
    kin.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(2**127))
    wait_until(lambda: status(kin, name) == "ACTIVE")

    listed = shards(kin, name)
    assert [s["ShardId"] for s in listed] == [shard_id(0), shard_id(1), shard_id(2)]
    parent, left, right = listed
    assert not is_open(parent)
    assert left["ParentShardId"] == right["ParentShardId"] == shard_id(0)
    assert "AdjacentParentShardId" not in left
    assert hash_range(left) == (0, 2**127 - 1) and hash_range(right) == (2**127, MAX_HASH_KEY)
    check_lineage(listed)

    # new records go to the child that holds their key, numbered above every parent record
    after = [put(kin, name, k, b"after-%d" % i) for i, k in enumerate((0, 2**127 - 1, 2**127, MAX_HASH_KEY))]
    assert [sid for sid, _ in after] == [shard_id(1), shard_id(1), shard_id(2), shard_id(2)]
    assert min(int(seq) for _, seq in after) > max(int(seq) for _, seq in before)

    # the parent is read to its end: records, then no NextShardIterator and the children
    records, last = read_shard(kin, name, shard_id(0))
    assert [r["Data"] for r in records] == [b"before-0", b"before-1", b"before-2"]
    assert "NextShardIterator" not in last
    children = sorted(last["ChildShards"], key=lambda c: c["ShardId"])
    assert [c["ShardId"] for c in children] == [shard_id(1), shard_id(2)]
    assert all(c["ParentShards"] == [shard_id(0)] for c in children)
    assert children[0]["HashKeyRange"] == left["HashKeyRange"]

    records, last = read_shard(kin, name, shard_id(2))
    assert [r["Data"] for r in records] == [b"after-2", b"after-3"]
    assert "NextShardIterator" in last


def test_split_shard_errors(kin, eddy_factory):
    name = create(kin, 2)
    first_end = hash_range(shards(kin, name)[0])[1]
    with pytest.raises(ClientError) as e:
        kin.split_shard(StreamName=name, ShardToSplit=shard_id(7), NewStartingHashKey="5")
    assert error(e)[0] == "ResourceNotFoundException"
    for bad in ("0", "1", str(first_end), str(first_end + 10)):
        with pytest.raises(ClientError) as e:
            kin.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=bad)
        code, message = error(e)
        assert code == "InvalidArgumentException"
        assert "is not both greater than one plus the shard's StartingHashKey" in message
    with pytest.raises(ClientError) as e:
        kin.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(TWO_128))
    assert error(e)[0] == "InvalidArgumentException"  # 39 digits pass the model's pattern
    kin.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey="100")
    with pytest.raises(ClientError) as e:
        kin.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey="50")
    code, message = error(e)
    assert code == "ResourceInUseException" and "has already been merged or split" in message
    with pytest.raises(ClientError) as e:
        kin.split_shard(StreamName="missing", ShardToSplit=shard_id(0), NewStartingHashKey="50")
    assert error(e)[0] == "ResourceNotFoundException"

    # while UPDATING no other reshard is accepted
    slow = eddy_factory("--shard-limits", "off", state_delay_ms=60_000)
    skin = make_kinesis(slow.endpoint)
    sname = unique_name("rs")
    skin.create_stream(StreamName=sname, ShardCount=1)
    with pytest.raises(ClientError) as e:
        skin.split_shard(StreamName=sname, ShardToSplit=shard_id(0), NewStartingHashKey=str(2**100))
    code, message = error(e)
    assert code == "ResourceInUseException" and "not ACTIVE, instead in state CREATING" in message


def test_merge_shards(kin):
    name = create(kin, 3)
    seqs = [put(kin, name, lo, b"m%d" % i) for i, (lo, _) in enumerate(expected_ranges(3))]
    with pytest.raises(ClientError) as e:
        kin.merge_shards(StreamName=name, ShardToMerge=shard_id(0), AdjacentShardToMerge=shard_id(2))
    code, message = error(e)
    assert code == "InvalidArgumentException" and "not an adjacent pair" in message

    # in either order: the child's range is the union, ParentShardId is ShardToMerge
    kin.merge_shards(StreamName=name, ShardToMerge=shard_id(2), AdjacentShardToMerge=shard_id(1))
    listed = by_id(shards(kin, name))
    child = listed[shard_id(3)]
    assert child["ParentShardId"] == shard_id(2) and child["AdjacentParentShardId"] == shard_id(1)
    assert hash_range(child) == (expected_ranges(3)[1][0], MAX_HASH_KEY)
    check_lineage(list(listed.values()))
    sid, seq = put(kin, name, MAX_HASH_KEY, b"merged")
    assert sid == shard_id(3) and int(seq) > max(int(s) for _, s in seqs)

    # both parents end with ChildShards naming both parents
    for parent in (shard_id(1), shard_id(2)):
        _, last = read_shard(kin, name, parent)
        assert [c["ShardId"] for c in last["ChildShards"]] == [shard_id(3)]
        assert last["ChildShards"][0]["ParentShards"] == [shard_id(2), shard_id(1)]

    with pytest.raises(ClientError) as e:
        kin.merge_shards(StreamName=name, ShardToMerge=shard_id(1), AdjacentShardToMerge=shard_id(0))
    assert error(e)[0] == "ResourceInUseException"
    with pytest.raises(ClientError) as e:
        kin.merge_shards(StreamName=name, ShardToMerge=shard_id(0), AdjacentShardToMerge=shard_id(9))
    assert error(e)[0] == "ResourceNotFoundException"


@pytest.mark.parametrize("start,steps", [(2, [4, 3, 5, 8, 4, 2, 1]), (5, [3, 6, 7])])
def test_update_shard_count_uniform(kin, start, steps):
    name = create(kin, start)
    current = start
    for target in steps:
        r = kin.update_shard_count(StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
        assert (r["StreamName"], r["CurrentShardCount"], r["TargetShardCount"]) == (name, current, target)
        # (StreamARN, also in the reply, is not in Debian boto3's model: the JS tests check it)
        wait_until(lambda: status(kin, name) == "ACTIVE")
        listed = shards(kin, name)
        check_lineage(listed)
        assert sorted(hash_range(s) for s in listed if is_open(s)) == expected_ranges(target)
        summary = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["OpenShardCount"] == target
        current = target


def test_update_shard_count_limits(kin):
    name = create(kin, 4)
    for target, fragment in ((9, "more than double"), (1, "less than half")):
        with pytest.raises(ClientError) as e:
            kin.update_shard_count(StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
        code, message = error(e)
        assert code == "LimitExceededException" and fragment in message
    # ten scalings per rolling 24 hours, then LimitExceededException
    for i in range(10):
        kin.update_shard_count(StreamName=name, TargetShardCount=3 if i % 2 == 0 else 4, ScalingType="UNIFORM_SCALING")
    with pytest.raises(ClientError) as e:
        kin.update_shard_count(StreamName=name, TargetShardCount=5, ScalingType="UNIFORM_SCALING")
    code, message = error(e)
    assert code == "LimitExceededException" and "24-hour" in message


def test_update_shard_count_respects_account_shard_limit(eddy_factory):
    srv = eddy_factory("--shard-limit", "6")
    kin = make_kinesis(srv.endpoint)
    name = create(kin, 4)
    with pytest.raises(ClientError) as e:
        kin.update_shard_count(StreamName=name, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
    assert error(e)[0] == "LimitExceededException"
    kin.update_shard_count(StreamName=name, TargetShardCount=6, ScalingType="UNIFORM_SCALING")


def test_reshard_on_demand_stream_is_refused(kin):
    name = unique_name("od")
    kin.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_until(lambda: status(kin, name) == "ACTIVE")
    with pytest.raises(ClientError) as e:
        kin.update_shard_count(StreamName=name, TargetShardCount=8, ScalingType="UNIFORM_SCALING")
    assert error(e)[0] == "ValidationException"


def test_writes_during_reshards_are_neither_lost_nor_misrouted(kin):
    """A writer keeps putting while the stream is split, merged and rescaled; every acknowledged record is
    found once, in the shard its reply named, whose range holds its hash key, in the order written."""
    name = create(kin, 2)
    acked = []  # (hash_key, shard_id, sequence_number, data)
    stop = threading.Event()
    errors = []

    def writer():
        wk = make_kinesis(kin.meta.endpoint_url)
        i = 0
        while not stop.is_set():
            key = (i * 0x9E3779B97F4A7C15_9E3779B97F4A7C15) % TWO_128
            data = b"w%06d" % i
            try:
                recs = [{"Data": data + b"-%d" % j, "PartitionKey": "p", "ExplicitHashKey": str((key + j * 2**120) % TWO_128)} for j in range(5)]
                r = wk.put_records(StreamName=name, Records=recs)
            except ClientError as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            for rec, out in zip(recs, r["Records"]):
                assert "ErrorCode" not in out, out
                acked.append((int(rec["ExplicitHashKey"]), out["ShardId"], int(out["SequenceNumber"]), rec["Data"]))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until(lambda: len(acked) > 50)
        kin.split_shard(StreamName=name, ShardToSplit=shard_id(0), NewStartingHashKey=str(2**126))
        wait_until(lambda: len(acked) > 150)
        kin.merge_shards(StreamName=name, ShardToMerge=shard_id(2), AdjacentShardToMerge=shard_id(3))
        wait_until(lambda: len(acked) > 250)
        kin.update_shard_count(StreamName=name, TargetShardCount=3, ScalingType="UNIFORM_SCALING")
        wait_until(lambda: len(acked) > 400)
    finally:
        stop.set()
        t.join()
    assert not errors

    listed = by_id(shards(kin, name))
    check_lineage(list(listed.values()))
    stored = {}
    for sid in listed:
        records, _ = read_shard(kin, name, sid)
        stored[sid] = [(int(r["SequenceNumber"]), r["Data"]) for r in records]
    for hash_key, sid, seq, data in acked:
        lo, hi = hash_range(listed[sid])
        assert lo <= hash_key <= hi
    for sid, recs in stored.items():
        mine = [(seq, data) for _, s, seq, data in acked if s == sid]
        assert recs == mine, f"{sid}: stored records differ from the acknowledged ones"
    assert sum(len(r) for r in stored.values()) == len(acked)


def test_reshard_survives_restart(srv, kin):
    name = create(kin, 2)
    kin.update_shard_count(StreamName=name, TargetShardCount=3, ScalingType="UNIFORM_SCALING")
    put(kin, name, MAX_HASH_KEY, b"x")
    before = shards(kin, name)
    srv.restart()
    kin2 = make_kinesis(srv.endpoint)
    assert shards(kin2, name) == before
    sid, _ = put(kin2, name, 0, b"y")
    assert not is_open(by_id(before)[shard_id(0)]) and sid != shard_id(0)


def test_update_stream_mode_twice_per_day(kin):
    name = create(kin, 1)
    kin.update_stream_mode(StreamARN=kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"],
                           StreamModeDetails={"StreamMode": "ON_DEMAND"})
    arn = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    wait_until(lambda: status(kin, name) == "ACTIVE")
    kin.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    wait_until(lambda: status(kin, name) == "ACTIVE")
    with pytest.raises(ClientError) as e:
        kin.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert error(e)[0] == "LimitExceededException"


def test_on_demand_stream_splits_a_hot_shard_and_throttling_stops(eddy_factory):
    """An ON_DEMAND stream (4 shards, default per-shard limits) gets ~1500 records/s aimed at shard 0's
    hash key range: first throttled, then eddy splits shard 0 (after --on-demand-split-after seconds over
    its limit) and the same load goes through without throttling."""
    import random
    import time

    srv = eddy_factory("--on-demand-split-after", "2")
    kin = make_kinesis(srv.endpoint)
    name = unique_name("od")
    kin.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_until(lambda: status(kin, name) == "ACTIVE")
    lo, hi = hash_range(shards(kin, name)[0])
    rng = random.Random(7)

    def burst():
        """300 records into shard 0's range; returns how many were throttled."""
        recs = [{"Data": b"x" * 100, "PartitionKey": "k", "ExplicitHashKey": str(rng.randint(lo, hi))} for _ in range(300)]
        r = kin.put_records(StreamName=name, Records=recs)
        throttled = [o for o in r["Records"] if o.get("ErrorCode") == "ProvisionedThroughputExceededException"]
        assert len(throttled) == r["FailedRecordCount"]
        return len(throttled)

    def paced(seconds):
        """Bursts every 0.2 s for `seconds`; yields each burst's throttled count."""
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            yield burst()
            n += 1
            delay = start + n * 0.2 - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the load generator, not synchronisation

    throttled_before = 0
    split = False
    deadline = time.monotonic() + 30
    while not split:
        assert time.monotonic() < deadline, "shard 0 was never split"
        throttled_before += sum(paced(1.0))
        split = not is_open(by_id(shards(kin, name))[shard_id(0)])
    assert throttled_before > 0, "the load never exceeded the shard's limit"
    listed = shards(kin, name)
    children = [s for s in listed if s.get("ParentShardId") == shard_id(0)]
    assert len(children) == 2 and sorted(hash_range(c) for c in children)[0][0] == lo
    check_lineage(listed)
    wait_until(lambda: status(kin, name) == "ACTIVE")
    # the same load now fits: a short settling second, then two seconds without a throttled record
    sum(paced(1.0))
    assert sum(paced(2.0)) == 0
