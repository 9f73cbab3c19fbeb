"""Durability of the catalog: everything acknowledged before a crash (kill -9) or a clean stop (SIGTERM)
is there, exactly, after a restart on the same data folder."""

import pytest

from conftest import stream_arn, unique_name, wait_until

# StartStreamEncryption needs a key that exists (KMSNotFoundException otherwise): the ARN of the alias
# eddy always has (see test_encryption.py for keys by id and key ARN).
KEY = "arn:aws:kms:us-east-1:000000000000:alias/aws/kinesis"


def build_catalog(raw):
    """Creates a varied set of streams and settings; returns (names that exist, names deleted)."""
    prov = "prov-a"
    raw.ok(
        "CreateStream",
        {"StreamName": prov, "ShardCount": 3, "Tags": {"team": "a", "env": "prod"}, "MaxRecordSizeInKiB": 2048},
    )
    raw.ok("AddTagsToStream", {"StreamName": prov, "Tags": {"extra": "1", "team": "a2"}})
    raw.ok("RemoveTagsFromStream", {"StreamName": prov, "TagKeys": ["env"]})
    raw.ok("IncreaseStreamRetentionPeriod", {"StreamName": prov, "RetentionPeriodHours": 72})
    raw.ok("StartStreamEncryption", {"StreamName": prov, "EncryptionType": "KMS", "KeyId": KEY})
    metrics = ["IncomingBytes", "IteratorAgeMilliseconds"]
    raw.ok("EnableEnhancedMonitoring", {"StreamName": prov, "ShardLevelMetrics": metrics})

    od = "ondemand-b"
    raw.ok("CreateStream", {"StreamName": od, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}, "Tags": {"kind": "od"}})
    raw.ok("IncreaseStreamRetentionPeriod", {"StreamName": od, "RetentionPeriodHours": 8760})
    raw.ok("DecreaseStreamRetentionPeriod", {"StreamName": od, "RetentionPeriodHours": 168})
    raw.ok("EnableEnhancedMonitoring", {"StreamName": od, "ShardLevelMetrics": ["ALL"]})
    raw.ok("DisableEnhancedMonitoring", {"StreamName": od, "ShardLevelMetrics": ["OutgoingBytes"]})
    raw.ok("TagResource", {"ResourceARN": stream_arn(od), "Tags": {"via": "arn", "gone": "soon"}})
    raw.ok("UntagResource", {"ResourceARN": stream_arn(od), "TagKeys": ["gone"]})

    plain = "prov-c"
    raw.ok("CreateStream", {"StreamName": plain, "ShardCount": 7})

    switched = "mode-d"
    raw.ok("CreateStream", {"StreamName": switched, "ShardCount": 2})
    raw.ok("UpdateStreamMode", {"StreamARN": stream_arn(switched), "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    raw.ok("UpdateMaxRecordSize", {"StreamARN": stream_arn(switched), "MaxRecordSizeInKiB": 10240})
    encryption = {"StreamName": switched, "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    raw.ok("StartStreamEncryption", encryption)
    raw.ok("StopStreamEncryption", encryption)

    deleted = "gone-e"
    raw.ok("CreateStream", {"StreamName": deleted, "ShardCount": 4, "Tags": {"old": "tag"}})
    raw.ok("DeleteStream", {"StreamName": deleted})

    raw.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}})
    return [prov, od, plain, switched], [deleted]


def snapshot(raw, names):
    """Everything the control plane can say about the account and these streams."""
    snap = {
        "ListStreams": raw.ok("ListStreams", {}),
        "DescribeLimits": raw.ok("DescribeLimits", {}),
        "DescribeAccountSettings": raw.ok("DescribeAccountSettings", {}),
    }
    for name in names:
        snap[name] = {
            "DescribeStream": raw.ok("DescribeStream", {"StreamName": name}),
            "DescribeStreamSummary": raw.ok("DescribeStreamSummary", {"StreamName": name}),
            "ListShards": raw.ok("ListShards", {"StreamName": name}),
            "ListTagsForStream": raw.ok("ListTagsForStream", {"StreamName": name, "Limit": 50}),
            "ListTagsForResource": raw.ok("ListTagsForResource", {"ResourceARN": stream_arn(name)}),
        }
    return snap


def check_expected_state(snap):
    """Spot checks that build_catalog() did what it says (so that an equal snapshot means something)."""
    assert snap["ListStreams"]["StreamNames"] == ["mode-d", "ondemand-b", "prov-a", "prov-c"]
    assert snap["DescribeLimits"] == {
        "ShardLimit": 500,
        "OpenShardCount": 10,
        "OnDemandStreamCount": 2,
        "OnDemandStreamCountLimit": 50,
    }
    assert snap["DescribeAccountSettings"]["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"

    a = snap["prov-a"]["DescribeStreamSummary"]["StreamDescriptionSummary"]
    assert (a["RetentionPeriodHours"], a["EncryptionType"], a["KeyId"]) == (72, "KMS", KEY)
    assert a["MaxRecordSizeInKiB"] == 2048
    assert a["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingBytes", "IteratorAgeMilliseconds"]}]
    assert snap["prov-a"]["ListTagsForStream"]["Tags"] == [
        {"Key": "extra", "Value": "1"},
        {"Key": "team", "Value": "a2"},
    ]
    b = snap["ondemand-b"]["DescribeStreamSummary"]["StreamDescriptionSummary"]
    assert b["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert (b["RetentionPeriodHours"], b["OpenShardCount"]) == (168, 4)
    assert "OutgoingBytes" not in b["EnhancedMonitoring"][0]["ShardLevelMetrics"]
    assert len(b["EnhancedMonitoring"][0]["ShardLevelMetrics"]) == 6
    assert [t["Key"] for t in snap["ondemand-b"]["ListTagsForResource"]["Tags"]] == ["kind", "via"]
    assert len(snap["prov-c"]["ListShards"]["Shards"]) == 7
    d = snap["mode-d"]["DescribeStreamSummary"]["StreamDescriptionSummary"]
    assert d["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert (d["MaxRecordSizeInKiB"], d["EncryptionType"]) == (10240, "NONE")
    for name in ("prov-a", "ondemand-b", "prov-c", "mode-d"):
        assert snap[name]["DescribeStream"]["StreamDescription"]["StreamStatus"] == "ACTIVE"


def check_deleted_and_reusable(server, deleted):
    raw = server.raw
    for name in deleted:
        assert raw.error("DescribeStreamSummary", {"StreamName": name}) == (
            "ResourceNotFoundException",
            f"Stream {name} under account 000000000000 not found.",
        )
        assert raw.error("ListTagsForResource", {"ResourceARN": stream_arn(name)})[0] == "ResourceNotFoundException"
        # The name is free again, and nothing of the old stream leaks into the new one.
        raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
        assert raw.ok("ListTagsForStream", {"StreamName": name})["Tags"] == []
        assert len(raw.ok("ListShards", {"StreamName": name})["Shards"]) == 1


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_restart_preserves_everything(eddy, raw, how):
    names, deleted = build_catalog(raw)
    before = snapshot(raw, names)
    check_expected_state(before)

    if how == "kill9":
        assert eddy.kill9() == -9
    else:
        assert eddy.stop() == 0
    assert not eddy.running()
    eddy.start()
    assert eddy.running()

    after = snapshot(raw, names)
    assert after == before
    check_deleted_and_reusable(eddy, deleted)

    # Still writable after the restart, and that survives a second restart too.
    raw.ok("AddTagsToStream", {"StreamName": "prov-c", "Tags": {"after": "restart"}})
    raw.ok("IncreaseStreamRetentionPeriod", {"StreamName": "prov-c", "RetentionPeriodHours": 25})
    eddy.restart(graceful=how == "sigterm")
    assert raw.ok("ListTagsForStream", {"StreamName": "prov-c"})["Tags"] == [{"Key": "after", "Value": "restart"}]
    summary = raw.ok("DescribeStreamSummary", {"StreamName": "prov-c"})["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 25


def test_restart_with_boto3_view(eddy):
    """The same, seen through boto3 (timestamps parsed, exact shard maps)."""
    kinesis = eddy.boto()
    kinesis.create_stream(StreamName="b1", ShardCount=4)
    kinesis.add_tags_to_stream(StreamName="b1", Tags={"k": "v"})
    kinesis.create_stream(StreamName="b2", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    kinesis.increase_stream_retention_period(StreamName="b2", RetentionPeriodHours=100)

    def view():
        out = {}
        for name in ("b1", "b2"):
            d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
            t = kinesis.list_tags_for_stream(StreamName=name)["Tags"]
            out[name] = (d, t)
        return out

    before = view()
    eddy.kill9()
    eddy.start()
    kinesis = eddy.boto()
    assert view() == before


def test_stream_deleted_before_crash_stays_deleted(eddy, raw):
    keep, gone = unique_name("keep"), unique_name("gone")
    raw.ok("CreateStream", {"StreamName": keep, "ShardCount": 1})
    raw.ok("CreateStream", {"StreamName": gone, "ShardCount": 2, "Tags": {"a": "b"}})
    raw.ok("DeleteStream", {"StreamName": gone})
    eddy.kill9()
    eddy.start()
    assert raw.ok("ListStreams", {})["StreamNames"] == [keep]
    assert raw.error("DescribeStream", {"StreamName": gone})[0] == "ResourceNotFoundException"
    assert raw.ok("DescribeLimits", {})["OpenShardCount"] == 1
    # And after one more crash.
    eddy.kill9()
    eddy.start()
    assert raw.ok("ListStreams", {})["StreamNames"] == [keep]


def test_transitions_in_flight_at_crash_complete_after_restart(eddy_factory):
    """With a state delay, a stream DELETING at the crash is gone after the restart and one CREATING at
    the crash becomes ACTIVE: the transitions are stored, not timers."""
    server = eddy_factory(state_delay_ms=300)
    raw = server.raw
    doomed, fresh = unique_name("doomed"), unique_name("fresh")
    raw.ok("CreateStream", {"StreamName": doomed, "ShardCount": 1})
    wait_until(
        lambda: raw.ok("DescribeStreamSummary", {"StreamName": doomed})["StreamDescriptionSummary"]["StreamStatus"]
        == "ACTIVE",
        message="doomed ACTIVE",
    )
    raw.ok("DeleteStream", {"StreamName": doomed})
    raw.ok("CreateStream", {"StreamName": fresh, "ShardCount": 2})
    server.kill9()
    server.start()

    def doomed_gone():
        status, body, _ = raw("DescribeStreamSummary", {"StreamName": doomed})
        if status == 200:
            assert body["StreamDescriptionSummary"]["StreamStatus"] == "DELETING"
            return False
        assert body["__type"] == "ResourceNotFoundException"
        return True

    wait_until(doomed_gone, timeout=10, message="deleted stream gone after restart")

    def fresh_active():
        s = raw.ok("DescribeStreamSummary", {"StreamName": fresh})["StreamDescriptionSummary"]
        assert s["StreamStatus"] in ("CREATING", "ACTIVE")
        return s["StreamStatus"] == "ACTIVE"

    wait_until(fresh_active, timeout=10, message="created stream ACTIVE after restart")
    assert raw.ok("ListStreams", {})["StreamNames"] == [fresh]
    assert [s["ShardId"] for s in raw.ok("ListShards", {"StreamName": fresh})["Shards"]] == [
        "shardId-000000000000",
        "shardId-000000000001",
    ]


def test_stream_of_a_custom_account_survives_restart(eddy_factory):
    server = eddy_factory("--account-id", "123456789012", "--region", "eu-west-1")
    server.raw.ok("CreateStream", {"StreamName": "x", "ShardCount": 1})
    server.kill9()
    server.start()
    s = server.raw.ok("DescribeStreamSummary", {"StreamName": "x"})["StreamDescriptionSummary"]
    assert s["StreamARN"] == "arn:aws:kinesis:eu-west-1:123456789012:stream/x"
