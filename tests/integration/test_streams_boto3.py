"""Control-plane operations through boto3 (and raw JSON 1.1 where Debian's boto3 model is too old).

Every test runs against its own server (the `eddy` fixture or `eddy_factory`), so stream names only
need to be unique within a test.
"""

import datetime
import time

import pytest
from botocore.exceptions import ClientError

from conftest import DEFAULT_ACCOUNT, make_kinesis, stream_arn, unique_name, wait_until

TWO_128 = 2**128
ALL_METRICS = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
]


def shard_id(i):
    return f"shardId-{i:012d}"


def expected_ranges(n):
    """Each shard floor(2^128/n) keys, the last takes the remainder."""
    size = TWO_128 // n
    out = []
    for i in range(n):
        start = size * i
        end = TWO_128 - 1 if i == n - 1 else size * (i + 1) - 1
        out.append((str(start), str(end)))
    return out


def client_error(excinfo):
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"], excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def not_found(name, account=DEFAULT_ACCOUNT):
    return f"Stream {name} under account {account} not found."


def create(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return name


def all_list_shards(raw, name, **extra):
    body = {"StreamName": name, **extra}
    return raw.ok("ListShards", body)["Shards"]


# ---------------------------------------------------------------------------------------------------
# CreateStream / DescribeStream / DescribeStreamSummary


def test_create_and_describe_provisioned(kinesis):
    name = unique_name()
    before = datetime.datetime.now(datetime.timezone.utc)
    kinesis.create_stream(StreamName=name, ShardCount=3)
    after = datetime.datetime.now(datetime.timezone.utc)

    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert d["StreamName"] == name
    assert d["StreamARN"] == stream_arn(name)
    assert d["StreamStatus"] == "ACTIVE"
    assert d["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert d["RetentionPeriodHours"] == 24
    assert d["EncryptionType"] == "NONE"
    assert "KeyId" not in d
    assert d["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert d["HasMoreShards"] is False
    created = d["StreamCreationTimestamp"]
    assert before - datetime.timedelta(seconds=1) <= created <= after + datetime.timedelta(seconds=1)

    shards = d["Shards"]
    assert [s["ShardId"] for s in shards] == [shard_id(i) for i in range(3)]
    for s, (start, end) in zip(shards, expected_ranges(3)):
        assert s["HashKeyRange"] == {"StartingHashKey": start, "EndingHashKey": end}
        assert "ParentShardId" not in s and "AdjacentParentShardId" not in s
        seq = s["SequenceNumberRange"]
        assert set(seq) == {"StartingSequenceNumber"}, "open shards have no EndingSequenceNumber"
        assert seq["StartingSequenceNumber"].isdigit()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_hash_key_ranges_split_evenly(kinesis, raw, n):
    name = create(kinesis, unique_name(), n)
    ranges = expected_ranges(n)
    # Same ranges through ListShards and DescribeStream.
    listed = kinesis.list_shards(StreamName=name)["Shards"]
    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    for shards in (listed, described):
        assert [s["ShardId"] for s in shards] == [shard_id(i) for i in range(n)]
        got = [(s["HashKeyRange"]["StartingHashKey"], s["HashKeyRange"]["EndingHashKey"]) for s in shards]
        assert got == ranges
    # Contiguous, covering 0 .. 2^128-1 exactly.
    assert ranges[0][0] == "0"
    assert ranges[-1][1] == str(TWO_128 - 1)
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert int(start) == int(end) + 1


def test_hash_key_ranges_literal_values(kinesis):
    # Spelled out so that a bug in expected_ranges() cannot hide one in the server.
    name = create(kinesis, unique_name(), 2)
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    assert shards[0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": "170141183460469231731687303715884105727",
    }
    assert shards[1]["HashKeyRange"] == {
        "StartingHashKey": "170141183460469231731687303715884105728",
        "EndingHashKey": "340282366920938463463374607431768211455",
    }
    name3 = create(kinesis, unique_name(), 3)
    shards = kinesis.list_shards(StreamName=name3)["Shards"]
    assert [s["HashKeyRange"]["EndingHashKey"] for s in shards] == [
        "113427455640312821154458202477256070484",
        "226854911280625642308916404954512140969",
        "340282366920938463463374607431768211455",
    ]


def test_create_on_demand_has_four_shards(kinesis):
    name = unique_name()
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert d["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert d["StreamStatus"] == "ACTIVE"
    assert [s["ShardId"] for s in d["Shards"]] == [shard_id(i) for i in range(4)]
    got = [(s["HashKeyRange"]["StartingHashKey"], s["HashKeyRange"]["EndingHashKey"]) for s in d["Shards"]]
    assert got == expected_ranges(4)
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


def test_create_provisioned_explicit_mode(kinesis):
    name = unique_name()
    kinesis.create_stream(StreamName=name, ShardCount=2, StreamModeDetails={"StreamMode": "PROVISIONED"})
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert summary["OpenShardCount"] == 2


def test_describe_stream_summary(kinesis, raw):
    name = create(kinesis, unique_name(), 5)
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["StreamName"] == name
    assert s["StreamARN"] == stream_arn(name)
    assert s["StreamStatus"] == "ACTIVE"
    assert s["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert s["RetentionPeriodHours"] == 24
    assert s["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert s["EncryptionType"] == "NONE"
    assert s["OpenShardCount"] == 5
    assert s["ConsumerCount"] == 0
    # Members newer than Debian's botocore model, checked on the wire.
    wire = raw.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
    assert wire["MaxRecordSizeInKiB"] == 1024
    assert isinstance(wire["StreamCreationTimestamp"], (int, float))
    assert wire["StreamCreationTimestamp"] == pytest.approx(s["StreamCreationTimestamp"].timestamp(), abs=0.001)


def test_create_with_tags_and_max_record_size(raw):
    name = unique_name()
    raw.ok(
        "CreateStream",
        {"StreamName": name, "ShardCount": 1, "Tags": {"team": "data", "env": "test"}, "MaxRecordSizeInKiB": 2048},
    )
    summary = raw.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
    assert summary["MaxRecordSizeInKiB"] == 2048
    tags = raw.ok("ListTagsForStream", {"StreamName": name})
    assert tags == {"Tags": [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "data"}], "HasMoreTags": False}


def test_create_with_max_record_size_out_of_range(raw):
    kind, msg = raw.error("CreateStream", {"StreamName": unique_name(), "ShardCount": 1, "MaxRecordSizeInKiB": 512})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value '512' at 'maxRecordSizeInKiB' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1024"
    )


def test_describe_stream_by_arn(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 2})
    arn = stream_arn(name)
    by_arn = raw.ok("DescribeStream", {"StreamARN": arn})["StreamDescription"]
    by_name = raw.ok("DescribeStream", {"StreamName": name})["StreamDescription"]
    assert by_arn == by_name
    both = raw.ok("DescribeStream", {"StreamName": name, "StreamARN": arn})["StreamDescription"]
    assert both == by_name


def test_every_stream_operation_accepts_stream_arn(raw):
    name = unique_name()
    arn = stream_arn(name)
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 2})
    assert raw.ok("DescribeStreamSummary", {"StreamARN": arn})["StreamDescriptionSummary"]["StreamName"] == name
    assert [s["ShardId"] for s in raw.ok("ListShards", {"StreamARN": arn})["Shards"]] == [shard_id(0), shard_id(1)]

    raw.ok("AddTagsToStream", {"StreamARN": arn, "Tags": {"k1": "v1", "k2": "v2"}})
    raw.ok("RemoveTagsFromStream", {"StreamARN": arn, "TagKeys": ["k1"]})
    assert raw.ok("ListTagsForStream", {"StreamARN": arn})["Tags"] == [{"Key": "k2", "Value": "v2"}]

    raw.ok("IncreaseStreamRetentionPeriod", {"StreamARN": arn, "RetentionPeriodHours": 72})
    raw.ok("DecreaseStreamRetentionPeriod", {"StreamARN": arn, "RetentionPeriodHours": 48})

    out = raw.ok("EnableEnhancedMonitoring", {"StreamARN": arn, "ShardLevelMetrics": ["IncomingBytes"]})
    assert out["StreamARN"] == arn and out["StreamName"] == name
    raw.ok("DisableEnhancedMonitoring", {"StreamARN": arn, "ShardLevelMetrics": ["IncomingBytes"]})

    raw.ok("StartStreamEncryption", {"StreamARN": arn, "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"})
    raw.ok("StopStreamEncryption", {"StreamARN": arn, "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"})
    raw.ok("UpdateMaxRecordSize", {"StreamARN": arn, "MaxRecordSizeInKiB": 4096})
    raw.ok("UpdateStreamMode", {"StreamARN": arn, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})

    s = raw.ok("DescribeStreamSummary", {"StreamARN": arn})["StreamDescriptionSummary"]
    assert s["RetentionPeriodHours"] == 48
    assert s["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
    assert s["EncryptionType"] == "NONE"
    assert s["MaxRecordSizeInKiB"] == 4096
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}

    raw.ok("DeleteStream", {"StreamARN": arn})
    assert raw.error("DescribeStreamSummary", {"StreamARN": arn}) == ("ResourceNotFoundException", not_found(name))


def test_stream_name_and_arn_must_agree(raw):
    a, b = unique_name("a"), unique_name("b")
    raw.ok("CreateStream", {"StreamName": a, "ShardCount": 1})
    raw.ok("CreateStream", {"StreamName": b, "ShardCount": 1})
    kind, _ = raw.error("DescribeStreamSummary", {"StreamName": a, "StreamARN": stream_arn(b)})
    assert kind == "InvalidArgumentException"


@pytest.mark.parametrize(
    "account,region",
    [("111111111111", "us-east-1"), ("000000000000", "eu-west-1")],
    ids=["wrong-account", "wrong-region"],
)
def test_stream_arn_of_another_account_or_region(raw, account, region):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    arn = stream_arn(name, account=account, region=region)
    kind, msg = raw.error("DescribeStreamSummary", {"StreamARN": arn})
    assert kind == "ResourceNotFoundException"
    assert msg == not_found(name, account)
    kind, _ = raw.error("DeleteStream", {"StreamARN": arn})
    assert kind == "ResourceNotFoundException"
    # Still there.
    raw.ok("DescribeStreamSummary", {"StreamName": name})


def test_stream_arn_bad_pattern(raw):
    kind, msg = raw.error("DescribeStreamSummary", {"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:table/x"})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value 'arn:aws:kinesis:us-east-1:000000000000:table/x' at 'streamARN' "
        "failed to satisfy constraint: Member must satisfy regular expression pattern: "
        "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"
    )


def test_custom_account_and_region(eddy_factory):
    server = eddy_factory("--account-id", "123456789012", "--region", "eu-west-1")
    kinesis = make_kinesis(server.endpoint, region="eu-west-1")
    name = unique_name()
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn = f"arn:aws:kinesis:eu-west-1:123456789012:stream/{name}"
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"] == arn
    assert server.raw.ok("DescribeStreamSummary", {"StreamARN": arn})["StreamDescriptionSummary"]["StreamName"] == name
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream(StreamName="missing")
    assert client_error(e)[:2] == ("ResourceNotFoundException", "Stream missing under account 123456789012 not found.")
    # The default account's ARN is someone else's stream now.
    kind, _ = server.raw.error("DescribeStreamSummary", {"StreamARN": stream_arn(name)})
    assert kind == "ResourceNotFoundException"


# ---------------------------------------------------------------------------------------------------
# DeleteStream


def test_delete_stream(kinesis):
    keep, gone = create(kinesis, unique_name("keep")), create(kinesis, unique_name("gone"), 2)
    kinesis.delete_stream(StreamName=gone)
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream(StreamName=gone)
    assert client_error(e) == ("ResourceNotFoundException", not_found(gone), 400)
    assert kinesis.list_streams()["StreamNames"] == [keep]
    # The name can be reused, and the new stream is a new one.
    kinesis.create_stream(StreamName=gone, ShardCount=1)
    assert len(kinesis.describe_stream(StreamName=gone)["StreamDescription"]["Shards"]) == 1
    with pytest.raises(ClientError) as e:
        kinesis.delete_stream(StreamName=unique_name("never"))
    assert client_error(e)[0] == "ResourceNotFoundException"


# ---------------------------------------------------------------------------------------------------
# ListStreams


def test_list_streams_sorted_with_summaries(kinesis, raw):
    names = ["zeta", "alpha", "Mid", "beta-2", "beta.1", "beta_3"]
    for i, n in enumerate(names):
        kinesis.create_stream(StreamName=n, ShardCount=1 + i % 2)
    raw.ok("CreateStream", {"StreamName": "od", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    expected = sorted(names + ["od"])  # byte order: upper case before lower case
    listed = kinesis.list_streams()
    assert listed["StreamNames"] == expected
    assert listed["HasMoreStreams"] is False
    out = raw.ok("ListStreams", {})
    assert out["StreamNames"] == expected
    assert out["HasMoreStreams"] is False
    assert "NextToken" not in out
    assert [s["StreamName"] for s in out["StreamSummaries"]] == expected
    for s in out["StreamSummaries"]:
        assert s["StreamARN"] == stream_arn(s["StreamName"])
        assert s["StreamStatus"] == "ACTIVE"
        assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND" if s["StreamName"] == "od" else "PROVISIONED"}
        assert isinstance(s["StreamCreationTimestamp"], (int, float))


def test_list_streams_empty(kinesis, raw):
    assert kinesis.list_streams()["StreamNames"] == []
    assert raw.ok("ListStreams", {}) == {"StreamNames": [], "HasMoreStreams": False, "StreamSummaries": []}


def test_list_streams_paging_with_exclusive_start(kinesis):
    names = sorted(f"page-{i:02d}" for i in range(7))
    for n in names:
        kinesis.create_stream(StreamName=n, ShardCount=1)
    pages, start = [], None
    while True:
        kwargs = {"Limit": 3}
        if start is not None:
            kwargs["ExclusiveStartStreamName"] = start
        out = kinesis.list_streams(**kwargs)
        pages.append((out["StreamNames"], out["HasMoreStreams"]))
        if not out["HasMoreStreams"]:
            break
        start = out["StreamNames"][-1]
        assert len(pages) < 10
    assert pages == [(names[0:3], True), (names[3:6], True), (names[6:7], False)]
    # Start names need not exist: the listing continues after them in name order.
    assert kinesis.list_streams(ExclusiveStartStreamName="page-03x")["StreamNames"] == names[4:]
    assert kinesis.list_streams(ExclusiveStartStreamName="page-06")["StreamNames"] == []
    # boto3's paginator walks it the same way.
    paginator = kinesis.get_paginator("list_streams")
    walked = [n for page in paginator.paginate(PaginationConfig={"PageSize": 2}) for n in page["StreamNames"]]
    assert walked == names


def test_list_streams_paging_with_next_token(raw):
    names = sorted(f"tok-{i}" for i in range(5))
    for n in names:
        raw.ok("CreateStream", {"StreamName": n, "ShardCount": 1})
    seen, summaries, token, pages = [], [], None, 0
    while True:
        body = {"Limit": 2}
        if token:
            body["NextToken"] = token
        out = raw.ok("ListStreams", body)
        pages += 1
        seen += out["StreamNames"]
        summaries += [s["StreamName"] for s in out["StreamSummaries"]]
        assert out["HasMoreStreams"] == ("NextToken" in out)
        if not out["HasMoreStreams"]:
            break
        token = out["NextToken"]
        assert pages < 10
    assert pages == 3
    assert seen == names
    assert summaries == names


def test_list_streams_token_errors(raw):
    raw.ok("CreateStream", {"StreamName": "a", "ShardCount": 1})
    raw.ok("CreateStream", {"StreamName": "b", "ShardCount": 1})
    token = raw.ok("ListStreams", {"Limit": 1})["NextToken"]
    kind, _ = raw.error("ListStreams", {"NextToken": token, "ExclusiveStartStreamName": "a"})
    assert kind == "InvalidArgumentException"
    kind, _ = raw.error("ListStreams", {"NextToken": "not-a-token"})
    assert kind == "InvalidArgumentException"


def test_list_streams_limit_default_and_cap_are_100(raw):
    for i in range(101):
        raw.ok("CreateStream", {"StreamName": f"many-{i:03d}", "ShardCount": 1})
    out = raw.ok("ListStreams", {})
    assert len(out["StreamNames"]) == 100
    assert out["HasMoreStreams"] is True
    rest = raw.ok("ListStreams", {"NextToken": out["NextToken"]})
    assert rest["StreamNames"] == ["many-100"]
    assert rest["HasMoreStreams"] is False
    # AWS: "If you specify a value greater than 100, at most 100 results are returned."
    out = raw.ok("ListStreams", {"Limit": 1000})
    assert out["StreamNames"] == [f"many-{i:03d}" for i in range(100)]
    assert out["HasMoreStreams"] is True
    assert raw.ok("ListStreams", {"NextToken": out["NextToken"], "Limit": 1000})["StreamNames"] == ["many-100"]


# ---------------------------------------------------------------------------------------------------
# DescribeStream paging


def test_describe_stream_paging(kinesis):
    name = create(kinesis, unique_name(), 7)
    pages, start = [], None
    while True:
        kwargs = {"StreamName": name, "Limit": 3}
        if start is not None:
            kwargs["ExclusiveStartShardId"] = start
        d = kinesis.describe_stream(**kwargs)["StreamDescription"]
        ids = [s["ShardId"] for s in d["Shards"]]
        pages.append((ids, d["HasMoreShards"]))
        if not d["HasMoreShards"]:
            break
        start = ids[-1]
        assert len(pages) < 10
    ids = [shard_id(i) for i in range(7)]
    assert pages == [(ids[0:3], True), (ids[3:6], True), (ids[6:], False)]
    # Past the last shard: nothing more.
    d = kinesis.describe_stream(StreamName=name, ExclusiveStartShardId=shard_id(6))["StreamDescription"]
    assert d["Shards"] == [] and d["HasMoreShards"] is False
    # Paginator (ExclusiveStartShardId = last shard id of each page).
    paginator = kinesis.get_paginator("describe_stream")
    walked = [
        s["ShardId"]
        for page in paginator.paginate(StreamName=name, PaginationConfig={"PageSize": 2})
        for s in page["StreamDescription"]["Shards"]
    ]
    assert walked == ids


def test_describe_stream_limit_default_and_cap_are_100(kinesis):
    name = create(kinesis, unique_name(), 101)
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert [s["ShardId"] for s in d["Shards"]] == [shard_id(i) for i in range(100)]
    assert d["HasMoreShards"] is True
    rest = kinesis.describe_stream(StreamName=name, ExclusiveStartShardId=shard_id(99))["StreamDescription"]
    assert [s["ShardId"] for s in rest["Shards"]] == [shard_id(100)]
    assert rest["HasMoreShards"] is False
    # AWS: "If you specify a value greater than 100, at most 100 results are returned."
    d = kinesis.describe_stream(StreamName=name, Limit=10000)["StreamDescription"]
    assert len(d["Shards"]) == 100
    assert d["HasMoreShards"] is True


# ---------------------------------------------------------------------------------------------------
# ListShards


def test_list_shards_paging_with_next_token(kinesis):
    name = create(kinesis, unique_name(), 7)
    pages = []
    out = kinesis.list_shards(StreamName=name, MaxResults=3)
    while True:
        pages.append([s["ShardId"] for s in out["Shards"]])
        if "NextToken" not in out:
            break
        assert len(pages) < 10
        out = kinesis.list_shards(NextToken=out["NextToken"], MaxResults=3)
    ids = [shard_id(i) for i in range(7)]
    assert pages == [ids[0:3], ids[3:6], ids[6:]]
    # MaxResults may change from page to page.
    first = kinesis.list_shards(StreamName=name, MaxResults=1)
    second = kinesis.list_shards(NextToken=first["NextToken"], MaxResults=10)
    assert [s["ShardId"] for s in first["Shards"]] == ids[:1]
    assert [s["ShardId"] for s in second["Shards"]] == ids[1:]
    assert "NextToken" not in second
    # An exact fit has no NextToken.
    exact = kinesis.list_shards(StreamName=name, MaxResults=7)
    assert len(exact["Shards"]) == 7 and "NextToken" not in exact


def test_list_shards_exclusive_start_shard_id(kinesis):
    name = create(kinesis, unique_name(), 5)
    out = kinesis.list_shards(StreamName=name, ExclusiveStartShardId=shard_id(1))
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(i) for i in (2, 3, 4)]
    out = kinesis.list_shards(StreamName=name, ExclusiveStartShardId=shard_id(1), MaxResults=2)
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(2), shard_id(3)]
    rest = kinesis.list_shards(NextToken=out["NextToken"])
    assert [s["ShardId"] for s in rest["Shards"]] == [shard_id(4)]
    assert kinesis.list_shards(StreamName=name, ExclusiveStartShardId=shard_id(4))["Shards"] == []


def test_list_shards_shard_objects_match_describe_stream(kinesis):
    name = create(kinesis, unique_name(), 4)
    listed = kinesis.list_shards(StreamName=name)["Shards"]
    described = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    assert listed == described


@pytest.mark.parametrize(
    "shard_filter,expected",
    [
        ({"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000001"}, [2, 3, 4]),
        ({"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000004"}, []),
        ({"Type": "AT_TRIM_HORIZON"}, [0, 1, 2, 3, 4]),
        ({"Type": "FROM_TRIM_HORIZON"}, [0, 1, 2, 3, 4]),
        ({"Type": "AT_LATEST"}, [0, 1, 2, 3, 4]),
        ({"Type": "AT_TIMESTAMP", "Timestamp": "NOW"}, [0, 1, 2, 3, 4]),
        ({"Type": "AT_TIMESTAMP", "Timestamp": "HOUR_BEFORE"}, []),
        ({"Type": "FROM_TIMESTAMP", "Timestamp": "NOW"}, [0, 1, 2, 3, 4]),
        ({"Type": "FROM_TIMESTAMP", "Timestamp": "HOUR_BEFORE"}, [0, 1, 2, 3, 4]),
    ],
    ids=[
        "after-1",
        "after-last",
        "at-trim-horizon",
        "from-trim-horizon",
        "at-latest",
        "at-timestamp-now",
        "at-timestamp-before-creation",
        "from-timestamp-now",
        "from-timestamp-before-creation",
    ],
)
def test_list_shards_filters_on_fresh_stream(kinesis, shard_filter, expected):
    name = create(kinesis, unique_name(), 5)
    f = dict(shard_filter)
    if f.get("Timestamp") == "NOW":
        f["Timestamp"] = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)
    elif f.get("Timestamp") == "HOUR_BEFORE":
        f["Timestamp"] = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    out = kinesis.list_shards(StreamName=name, ShardFilter=f)
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(i) for i in expected]


def test_list_shards_filter_with_paging(kinesis):
    name = create(kinesis, unique_name(), 6)
    f = {"Type": "AFTER_SHARD_ID", "ShardId": shard_id(1)}
    out = kinesis.list_shards(StreamName=name, ShardFilter=f, MaxResults=2)
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(2), shard_id(3)]
    rest = kinesis.list_shards(NextToken=out["NextToken"], MaxResults=2)
    assert [s["ShardId"] for s in rest["Shards"]] == [shard_id(4), shard_id(5)]
    assert "NextToken" not in rest


@pytest.mark.parametrize(
    "shard_filter",
    [
        {"Type": "AFTER_SHARD_ID"},
        {"Type": "AT_TIMESTAMP"},
        {"Type": "FROM_TIMESTAMP"},
        {"Type": "AT_LATEST", "ShardId": "shardId-000000000000"},
        {"Type": "AT_TRIM_HORIZON", "Timestamp": 1700000000},
    ],
    ids=["after-without-id", "at-ts-without-ts", "from-ts-without-ts", "shardid-not-allowed", "ts-not-allowed"],
)
def test_list_shards_filter_companion_errors(raw, shard_filter):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 2})
    kind, _ = raw.error("ListShards", {"StreamName": name, "ShardFilter": shard_filter})
    assert kind == "InvalidArgumentException"


def test_list_shards_filter_bad_type(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    kind, msg = raw.error("ListShards", {"StreamName": name, "ShardFilter": {"Type": "SOMEWHERE"}})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value 'SOMEWHERE' at 'shardFilter.type' failed to satisfy constraint: "
        "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, "
        "AT_TIMESTAMP, FROM_TIMESTAMP]"
    )
    kind, msg = raw.error("ListShards", {"StreamName": name, "ShardFilter": {}})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'shardFilter.type' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_list_shards_stream_creation_timestamp(kinesis):
    name = create(kinesis, unique_name(), 2)
    created = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    out = kinesis.list_shards(StreamName=name, StreamCreationTimestamp=created)
    assert len(out["Shards"]) == 2
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(StreamName=name, StreamCreationTimestamp=created - datetime.timedelta(days=1))
    assert client_error(e)[0] == "ResourceNotFoundException"


def test_list_shards_argument_errors(kinesis, kinesis_nv, raw):
    name = create(kinesis, unique_name(), 3)
    token = kinesis.list_shards(StreamName=name, MaxResults=1)["NextToken"]
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(StreamName=name, NextToken=token)
    assert client_error(e) == (
        "InvalidArgumentException",
        "NextToken and StreamName cannot be provided together.",
        400,
    )
    kind, _ = raw.error("ListShards", {"NextToken": token, "ExclusiveStartShardId": shard_id(0)})
    assert kind == "InvalidArgumentException"
    kind, _ = raw.error("ListShards", {})
    assert kind == "InvalidArgumentException"
    kind, _ = raw.error("ListShards", {"NextToken": "bm90IGEgdG9rZW4="})
    assert kind == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(StreamName=unique_name("missing"))
    assert client_error(e)[0] == "ResourceNotFoundException"
    kind, msg = raw.error("ListShards", {"StreamName": name, "MaxResults": 0})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value '0' at 'maxResults' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )


def test_list_shards_token_of_deleted_stream(kinesis):
    name = create(kinesis, unique_name(), 3)
    token = kinesis.list_shards(StreamName=name, MaxResults=1)["NextToken"]
    kinesis.delete_stream(StreamName=name)
    kinesis.create_stream(StreamName=name, ShardCount=3)  # same name, new stream
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(NextToken=token)
    assert client_error(e)[0] == "ResourceNotFoundException"


def test_list_shards_max_results_default_and_cap_are_1000(eddy_factory):
    server = eddy_factory("--shard-limit", "1100")
    name = unique_name()
    server.raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1001})
    out = server.raw.ok("ListShards", {"StreamName": name})
    assert [s["ShardId"] for s in out["Shards"]] == [shard_id(i) for i in range(1000)]
    rest = server.raw.ok("ListShards", {"NextToken": out["NextToken"]})
    assert [s["ShardId"] for s in rest["Shards"]] == [shard_id(1000)]
    assert "NextToken" not in rest
    # AWS: "If you specify a value greater than 1000, at most 1000 results are returned."
    out = server.raw.ok("ListShards", {"StreamName": name, "MaxResults": 5000})
    assert len(out["Shards"]) == 1000
    rest = server.raw.ok("ListShards", {"NextToken": out["NextToken"], "MaxResults": 5000})
    assert [s["ShardId"] for s in rest["Shards"]] == [shard_id(1000)]


def test_list_shards_next_token_with_stream_creation_timestamp(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 3})
    token = raw.ok("ListShards", {"StreamName": name, "MaxResults": 1})["NextToken"]
    # AWS: "You cannot specify this parameter if you specify the NextToken parameter."
    kind, msg = raw.error("ListShards", {"NextToken": token, "StreamCreationTimestamp": time.time()})
    assert kind == "InvalidArgumentException"
    assert msg == "NextToken and StreamCreationTimestamp cannot be provided together."


# ---------------------------------------------------------------------------------------------------
# Tags


def test_tags_round_trip_and_order(kinesis):
    name = create(kinesis, unique_name())
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []
    kinesis.add_tags_to_stream(StreamName=name, Tags={"b": "2", "a": "1", "c": "", "B": "upper"})
    out = kinesis.list_tags_for_stream(StreamName=name)
    assert out["Tags"] == [
        {"Key": "B", "Value": "upper"},
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
        {"Key": "c", "Value": ""},
    ]
    assert out["HasMoreTags"] is False
    # Overwrite one, add one.
    kinesis.add_tags_to_stream(StreamName=name, Tags={"b": "two", "d": "4"})
    keys_values = [(t["Key"], t["Value"]) for t in kinesis.list_tags_for_stream(StreamName=name)["Tags"]]
    assert keys_values == [("B", "upper"), ("a", "1"), ("b", "two"), ("c", ""), ("d", "4")]
    # Remove, including a key that does not exist (ignored).
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["a", "B", "nope"])
    keys_values = [(t["Key"], t["Value"]) for t in kinesis.list_tags_for_stream(StreamName=name)["Tags"]]
    assert keys_values == [("b", "two"), ("c", ""), ("d", "4")]


def test_tags_allowed_characters(kinesis):
    name = create(kinesis, unique_name())
    tags = {
        "with space": "a value with spaces",
        "sym_.:/=+-@": "_.:/=+-@",
        "unicodé-ключ": "值",
        "k" * 128: "v" * 256,
    }
    kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    got = {t["Key"]: t["Value"] for t in kinesis.list_tags_for_stream(StreamName=name, Limit=50)["Tags"]}
    assert got == tags


def test_list_tags_paging(kinesis):
    name = create(kinesis, unique_name())
    tags = {f"key-{i:02d}": f"value-{i}" for i in range(23)}
    kinesis.add_tags_to_stream(StreamName=name, Tags=dict(list(tags.items())[:12]))
    kinesis.add_tags_to_stream(StreamName=name, Tags=dict(list(tags.items())[12:]))
    pages, start = [], None
    while True:
        kwargs = {"StreamName": name, "Limit": 10}
        if start is not None:
            kwargs["ExclusiveStartTagKey"] = start
        out = kinesis.list_tags_for_stream(**kwargs)
        pages.append(([t["Key"] for t in out["Tags"]], out["HasMoreTags"]))
        if not out["HasMoreTags"]:
            break
        start = out["Tags"][-1]["Key"]
        assert len(pages) < 10
    keys = sorted(tags)
    assert pages == [(keys[0:10], True), (keys[10:20], True), (keys[20:], False)]
    # An exact fit says there is no more.
    out = kinesis.list_tags_for_stream(StreamName=name, ExclusiveStartTagKey=keys[12], Limit=10)
    assert [t["Key"] for t in out["Tags"]] == keys[13:23] and out["HasMoreTags"] is False
    # Without a Limit the reply is consistent with HasMoreTags.
    out = kinesis.list_tags_for_stream(StreamName=name)
    assert [t["Key"] for t in out["Tags"]] == keys[: len(out["Tags"])]
    assert out["HasMoreTags"] == (len(out["Tags"]) < 23)
    # A start key that is not a tag continues in key order.
    out = kinesis.list_tags_for_stream(StreamName=name, ExclusiveStartTagKey="key-05x", Limit=50)
    assert [t["Key"] for t in out["Tags"]] == keys[6:]


def test_fifty_tags_is_the_limit(kinesis, raw):
    name = create(kinesis, unique_name())
    fifty = {f"t{i:02d}": str(i) for i in range(50)}
    kinesis.add_tags_to_stream(StreamName=name, Tags=fifty)
    assert len(kinesis.list_tags_for_stream(StreamName=name, Limit=50)["Tags"]) == 50
    # Overwriting existing keys is fine at the limit.
    kinesis.add_tags_to_stream(StreamName=name, Tags={"t00": "new", "t49": "new"})
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=name, Tags={"one-more": "x"})
    code, msg, status = client_error(e)
    assert (code, status) == ("InvalidArgumentException", 400)
    assert "50" in msg
    assert len(kinesis.list_tags_for_stream(StreamName=name, Limit=50)["Tags"]) == 50


def test_fifty_one_tags_in_one_call(kinesis, raw):
    name = create(kinesis, unique_name())
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=name, Tags={f"t{i:02d}": "v" for i in range(51)})
    assert client_error(e)[0] == "InvalidArgumentException"
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []
    # Same at creation: nothing is created.
    other = unique_name()
    too_many = {f"t{i}": "v" for i in range(51)}
    kind, _ = raw.error("CreateStream", {"StreamName": other, "ShardCount": 1, "Tags": too_many})
    assert kind == "InvalidArgumentException"
    assert raw.error("DescribeStreamSummary", {"StreamName": other})[0] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    "tags",
    [{"bad*key": "v"}, {"key": "bad#value"}, {"semi;colon": "v"}, {"aws:reserved": "v"}],
    ids=["key-star", "value-hash", "key-semicolon", "aws-prefix"],
)
def test_invalid_tags_rejected(kinesis, tags):
    name = create(kinesis, unique_name())
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert client_error(e)[0] == "InvalidArgumentException"
    assert kinesis.list_tags_for_stream(StreamName=name)["Tags"] == []


@pytest.mark.parametrize("tags", [{"price-\u20ac": "v"}, {"key": "smile-\U0001F600"}], ids=["euro-sign", "emoji"])
def test_tags_reject_non_letter_unicode(kinesis, tags):
    name = create(kinesis, unique_name())
    with pytest.raises(ClientError) as e:
        kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert client_error(e)[0] == "InvalidArgumentException"


def test_tag_key_and_value_lengths(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    kind, msg = raw.error("AddTagsToStream", {"StreamName": name, "Tags": {"k" * 129: "v"}})
    assert kind == "ValidationException"
    assert msg.startswith("1 validation error detected: ") and "at 'tags'" in msg
    kind, msg = raw.error("AddTagsToStream", {"StreamName": name, "Tags": {"k": "v" * 257}})
    assert kind == "ValidationException"
    assert "at 'tags'" in msg
    kind, msg = raw.error("AddTagsToStream", {"StreamName": name, "Tags": {}})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    kind, msg = raw.error("RemoveTagsFromStream", {"StreamName": name, "TagKeys": []})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    kind, _ = raw.error("ListTagsForStream", {"StreamName": name, "Limit": 51})
    assert kind == "ValidationException"
    assert raw.ok("ListTagsForStream", {"StreamName": name})["Tags"] == []


def test_tag_resource_operations(raw):
    name = unique_name()
    arn = stream_arn(name)
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1, "Tags": {"created": "yes"}})
    raw.ok("TagResource", {"ResourceARN": arn, "Tags": {"z": "26", "a": "1"}})
    assert raw.ok("ListTagsForResource", {"ResourceARN": arn}) == {
        "Tags": [{"Key": "a", "Value": "1"}, {"Key": "created", "Value": "yes"}, {"Key": "z", "Value": "26"}]
    }
    # Same tags through the stream operations.
    assert [t["Key"] for t in raw.ok("ListTagsForStream", {"StreamName": name})["Tags"]] == ["a", "created", "z"]
    raw.ok("UntagResource", {"ResourceARN": arn, "TagKeys": ["created", "missing"]})
    assert raw.ok("ListTagsForResource", {"ResourceARN": arn})["Tags"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "z", "Value": "26"},
    ]
    # No paging on ListTagsForResource: all 50 at once.
    raw.ok("TagResource", {"ResourceARN": arn, "Tags": {f"n{i:02d}": "" for i in range(48)}})
    assert len(raw.ok("ListTagsForResource", {"ResourceARN": arn})["Tags"]) == 50
    kind, _ = raw.error("TagResource", {"ResourceARN": arn, "Tags": {"one-more": "x"}})
    assert kind == "InvalidArgumentException"
    kind, _ = raw.error("TagResource", {"ResourceARN": arn, "Tags": {"bad*": "x"}})
    assert kind == "InvalidArgumentException"


def test_tag_resource_unknown_resources(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    for op, extra in (
        ("TagResource", {"Tags": {"a": "b"}}),
        ("UntagResource", {"TagKeys": ["a"]}),
        ("ListTagsForResource", {}),
    ):
        kind, msg = raw.error(op, {"ResourceARN": stream_arn("missing"), **extra})
        assert (kind, msg) == ("ResourceNotFoundException", not_found("missing"))
        kind, _ = raw.error(op, {"ResourceARN": stream_arn(name, account="111111111111"), **extra})
        assert kind == "ResourceNotFoundException"
    kind, msg = raw.error("ListTagsForResource", {})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'resourceARN' failed to satisfy constraint: "
        "Member must not be null"
    )


def test_untag_resource_requires_a_key(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    status, body, _ = raw("UntagResource", {"ResourceARN": stream_arn(name), "TagKeys": []})
    assert status == 400
    assert body["__type"] == "ValidationException"


def test_resource_arn_pattern(raw):
    arn = "arn:aws:kinesis:us-east-1:000000000000:table/x"
    status, body, _ = raw("ListTagsForResource", {"ResourceARN": arn})
    assert status == 400
    assert body["__type"] == "ValidationException"
    assert body["message"] == (
        f"1 validation error detected: Value '{arn}' at 'resourceARN' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:.*stream/\\S+"
    )


# ---------------------------------------------------------------------------------------------------
# Retention


def test_retention_increase_and_decrease(kinesis):
    name = create(kinesis, unique_name())

    def retention():
        return kinesis.describe_stream(StreamName=name)["StreamDescription"]["RetentionPeriodHours"]

    assert retention() == 24
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert retention() == 48
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=8760)
    assert retention() == 8760
    kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=100)
    assert retention() == 100
    kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=24)
    assert retention() == 24
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 24


@pytest.mark.parametrize(
    "op,hours,message",
    [
        (
            "increase",
            8761,
            "Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long.",
        ),
        (
            "increase",
            23,
            "Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.",
        ),
        (
            "decrease",
            23,
            "Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.",
        ),
        (
            "decrease",
            10000,
            "Maximum allowed retention period is 8760 hours. Requested retention period (10000 hours) is too long.",
        ),
        (
            "increase",
            0,
            "Minimum allowed retention period is 24 hours. Requested retention period (0 hours) is too short.",
        ),
    ],
)
def test_retention_out_of_range(kinesis_nv, op, hours, message):
    name = create(kinesis_nv, unique_name())
    call = getattr(kinesis_nv, f"{op}_stream_retention_period")
    with pytest.raises(ClientError) as e:
        call(StreamName=name, RetentionPeriodHours=hours)
    assert client_error(e) == ("InvalidArgumentException", message, 400)
    assert kinesis_nv.describe_stream(StreamName=name)["StreamDescription"]["RetentionPeriodHours"] == 24


def test_retention_wrong_direction(kinesis):
    name = create(kinesis, unique_name())
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=72)
    with pytest.raises(ClientError) as e:
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert client_error(e) == (
        "InvalidArgumentException",
        f"Requested retention period (48 hours) for stream {name} can not be shorter than existing retention "
        "period (72 hours). Use DecreaseRetentionPeriod API.",
        400,
    )
    with pytest.raises(ClientError) as e:
        kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=96)
    assert client_error(e) == (
        "InvalidArgumentException",
        f"Requested retention period (96 hours) for stream {name} can not be longer than existing retention "
        "period (72 hours). Use IncreaseRetentionPeriod API.",
        400,
    )
    assert kinesis.describe_stream(StreamName=name)["StreamDescription"]["RetentionPeriodHours"] == 72


def test_retention_missing_member(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    kind, msg = raw.error("IncreaseStreamRetentionPeriod", {"StreamName": name})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'retentionPeriodHours' failed to satisfy constraint: "
        "Member must not be null"
    )


# ---------------------------------------------------------------------------------------------------
# DescribeLimits and limits


def test_describe_limits_counts(kinesis, raw):
    def limits():
        out = kinesis.describe_limits()
        out.pop("ResponseMetadata")
        return out

    def expected(open_shards, on_demand):
        return {
            "ShardLimit": 500,
            "OpenShardCount": open_shards,
            "OnDemandStreamCount": on_demand,
            "OnDemandStreamCountLimit": 50,
        }

    assert limits() == expected(0, 0)
    a = create(kinesis, unique_name(), 3)
    create(kinesis, unique_name(), 2)
    od = unique_name()
    kinesis.create_stream(StreamName=od, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert limits() == expected(5, 1)
    kinesis.delete_stream(StreamName=a)
    assert limits()["OpenShardCount"] == 2
    # Switching modes moves the stream between the two counts.
    kinesis.update_stream_mode(StreamARN=stream_arn(od), StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert limits() == expected(6, 0)
    assert raw.ok("DescribeLimits", {}) == expected(6, 0)


def test_shard_limit(eddy_factory):
    server = eddy_factory("--shard-limit", "5")
    kinesis = server.boto()
    assert kinesis.describe_limits()["ShardLimit"] == 5
    kinesis.create_stream(StreamName="first", ShardCount=3)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="second", ShardCount=3)
    code, msg, status = client_error(e)
    assert (code, status) == ("LimitExceededException", 400)
    assert "Current shard count for the account: 3. Limit: 5." in msg
    assert "Number of additional shards that would have resulted from this request: 3." in msg
    assert kinesis.list_streams()["StreamNames"] == ["first"]
    # Exactly up to the limit is fine; one more is not.
    kinesis.create_stream(StreamName="second", ShardCount=2)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="third", ShardCount=1)
    assert client_error(e)[0] == "LimitExceededException"
    # On-demand streams do not count against the shard limit.
    kinesis.create_stream(StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    # Freeing shards makes room again.
    kinesis.delete_stream(StreamName="first")
    kinesis.create_stream(StreamName="third", ShardCount=3)
    assert kinesis.describe_limits()["OpenShardCount"] == 5


def test_shard_count_above_limit_in_one_stream(eddy_factory):
    server = eddy_factory("--shard-limit", "4")
    with pytest.raises(ClientError) as e:
        server.boto().create_stream(StreamName="big", ShardCount=5)
    assert client_error(e)[0] == "LimitExceededException"


def test_on_demand_stream_limit(eddy_factory):
    server = eddy_factory("--on-demand-stream-limit", "1")
    kinesis = server.boto()
    kinesis.create_stream(StreamName="od1", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName="od2", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert client_error(e)[0] == "LimitExceededException"
    kinesis.create_stream(StreamName="prov", ShardCount=1)
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_mode(StreamARN=stream_arn("prov"), StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert client_error(e)[0] == "LimitExceededException"
    out = kinesis.describe_limits()
    assert (out["OnDemandStreamCount"], out["OnDemandStreamCountLimit"]) == (1, 1)


def test_at_most_five_streams_creating(eddy_factory):
    # A long state delay keeps every stream below in CREATING for the whole test.
    server = eddy_factory(state_delay_ms=60000)
    for i in range(5):
        server.raw.ok("CreateStream", {"StreamName": f"creating-{i}", "ShardCount": 1})
    statuses = [s["StreamStatus"] for s in server.raw.ok("ListStreams", {})["StreamSummaries"]]
    assert statuses == ["CREATING"] * 5
    status, body, _ = server.raw("CreateStream", {"StreamName": "creating-5", "ShardCount": 1})
    assert status == 400
    assert body["__type"] == "LimitExceededException"


# ---------------------------------------------------------------------------------------------------
# Account settings


def test_account_settings(raw):
    assert raw.ok("DescribeAccountSettings", {}) == {"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}}
    before = time.time()
    out = raw.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}})
    commitment = out["MinimumThroughputBillingCommitment"]
    assert commitment["Status"] == "ENABLED"
    assert before - 1 <= commitment["StartedAt"] <= time.time() + 1
    assert raw.ok("DescribeAccountSettings", {}) == out
    out = raw.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "DISABLED"}})
    commitment = out["MinimumThroughputBillingCommitment"]
    assert commitment["Status"] == "DISABLED"
    assert commitment["EndedAt"] >= commitment["StartedAt"]
    assert raw.ok("DescribeAccountSettings", {}) == out


def test_account_settings_validation(raw):
    kind, msg = raw.error("UpdateAccountSettings", {})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'minimumThroughputBillingCommitment' failed to satisfy "
        "constraint: Member must not be null"
    )
    kind, msg = raw.error("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "MAYBE"}})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value 'MAYBE' at 'minimumThroughputBillingCommitment.status' failed to "
        "satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
    )


# ---------------------------------------------------------------------------------------------------
# UpdateStreamMode, enhanced monitoring, encryption, max record size


def test_update_stream_mode(kinesis):
    name = create(kinesis, unique_name(), 2)
    arn = stream_arn(name)
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert s["StreamStatus"] == "ACTIVE"
    assert s["OpenShardCount"] == 2
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert client_error(e)[0] == "InvalidArgumentException"
    kinesis.update_stream_mode(StreamARN=arn, StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamModeDetails"] == {
        "StreamMode": "PROVISIONED"
    }
    with pytest.raises(ClientError) as e:
        kinesis.update_stream_mode(StreamARN=stream_arn("missing"), StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert client_error(e)[0] == "ResourceNotFoundException"


def test_update_stream_mode_requires_arn(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    kind, msg = raw.error("UpdateStreamMode", {"StreamName": name, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null"
    )


def test_enhanced_monitoring(kinesis):
    name = create(kinesis, unique_name())
    out = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["OutgoingRecords", "IncomingBytes"])
    assert out["StreamName"] == name
    assert out["CurrentShardLevelMetrics"] == []
    assert out["DesiredShardLevelMetrics"] == ["IncomingBytes", "OutgoingRecords"]
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert d["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingBytes", "OutgoingRecords"]}]

    out = kinesis.enable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert out["CurrentShardLevelMetrics"] == ["IncomingBytes", "OutgoingRecords"]
    assert out["DesiredShardLevelMetrics"] == ALL_METRICS

    dropped = ["IncomingBytes", "IteratorAgeMilliseconds"]
    out = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=dropped)
    assert out["CurrentShardLevelMetrics"] == ALL_METRICS
    assert out["DesiredShardLevelMetrics"] == [m for m in ALL_METRICS if m not in dropped]
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["EnhancedMonitoring"] == [{"ShardLevelMetrics": out["DesiredShardLevelMetrics"]}]

    out = kinesis.disable_enhanced_monitoring(StreamName=name, ShardLevelMetrics=["ALL"])
    assert out["DesiredShardLevelMetrics"] == []
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert d["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]


def test_enhanced_monitoring_validation(raw):
    name = unique_name()
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    kind, msg = raw.error("EnableEnhancedMonitoring", {"StreamName": name, "ShardLevelMetrics": ["Bogus"]})
    assert kind == "ValidationException"
    assert msg.startswith("1 validation error detected: Value '[Bogus]' at 'shardLevelMetrics' failed to satisfy")
    assert "Member must satisfy enum value set: [IncomingBytes, IncomingRecords" in msg
    kind, msg = raw.error("EnableEnhancedMonitoring", {"StreamName": name, "ShardLevelMetrics": []})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value '[]' at 'shardLevelMetrics' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )


def test_stream_encryption_state(kinesis):
    name = create(kinesis, unique_name())
    key = "arn:aws:kms:us-east-1:000000000000:alias/aws/kinesis"  # a key that exists (test_encryption.py)
    kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key)
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert (d["EncryptionType"], d["KeyId"]) == ("KMS", key)
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert (s["EncryptionType"], s["KeyId"]) == ("KMS", key)
    with pytest.raises(ClientError) as e:
        kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/other")
    assert client_error(e)[0] == "InvalidArgumentException"
    kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key)
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert d["EncryptionType"] == "NONE"
    assert "KeyId" not in d


def test_stream_encryption_errors(kinesis, raw):
    name = create(kinesis, unique_name())
    with pytest.raises(ClientError) as e:
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="NONE", KeyId="alias/aws/kinesis")
    assert client_error(e)[0] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kinesis.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert client_error(e)[0] == "InvalidArgumentException"
    kind, msg = raw.error("StartStreamEncryption", {"StreamName": name, "EncryptionType": "AES"})
    assert kind == "ValidationException"
    assert msg == (
        "2 validation errors detected: Value 'AES' at 'encryptionType' failed to satisfy constraint: Member must "
        "satisfy enum value set: [NONE, KMS]; Value null at 'keyId' failed to satisfy constraint: Member must "
        "not be null"
    )


def test_update_max_record_size(raw):
    name = unique_name()
    arn = stream_arn(name)
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    def max_record_size():
        return raw.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]["MaxRecordSizeInKiB"]

    for kib in (10240, 1024, 5000):
        raw.ok("UpdateMaxRecordSize", {"StreamARN": arn, "MaxRecordSizeInKiB": kib})
        assert max_record_size() == kib
    for kib, constraint in (
        (1023, "Member must have value greater than or equal to 1024"),
        (10241, "Member must have value less than or equal to 10240"),
    ):
        kind, msg = raw.error("UpdateMaxRecordSize", {"StreamARN": arn, "MaxRecordSizeInKiB": kib})
        assert kind == "ValidationException"
        assert msg == (
            f"1 validation error detected: Value '{kib}' at 'maxRecordSizeInKiB' failed to satisfy constraint: "
            f"{constraint}"
        )
    kind, msg = raw.error("UpdateMaxRecordSize", {"StreamARN": arn})
    assert kind == "ValidationException"
    assert "Value null at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must not be null" in msg
    kind, _ = raw.error("UpdateMaxRecordSize", {"StreamARN": stream_arn("missing"), "MaxRecordSizeInKiB": 2048})
    assert kind == "ResourceNotFoundException"
    assert max_record_size() == 5000


# ---------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "op,kwargs",
    [
        ("describe_stream", {}),
        ("describe_stream_summary", {}),
        ("delete_stream", {}),
        ("list_shards", {}),
        ("list_tags_for_stream", {}),
        ("add_tags_to_stream", {"Tags": {"a": "b"}}),
        ("remove_tags_from_stream", {"TagKeys": ["a"]}),
        ("increase_stream_retention_period", {"RetentionPeriodHours": 48}),
        ("decrease_stream_retention_period", {"RetentionPeriodHours": 24}),
        ("enable_enhanced_monitoring", {"ShardLevelMetrics": ["ALL"]}),
        ("disable_enhanced_monitoring", {"ShardLevelMetrics": ["ALL"]}),
        ("start_stream_encryption", {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
        ("stop_stream_encryption", {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
    ],
)
def test_unknown_stream(kinesis, op, kwargs):
    name = unique_name("missing")
    with pytest.raises(ClientError) as e:
        getattr(kinesis, op)(StreamName=name, **kwargs)
    assert client_error(e) == ("ResourceNotFoundException", not_found(name), 400)


def test_duplicate_create(kinesis):
    name = create(kinesis, unique_name(), 2)
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=name, ShardCount=1)
    assert client_error(e) == (
        "ResourceInUseException",
        f"Stream {name} under account 000000000000 already exists.",
        400,
    )
    with pytest.raises(ClientError) as e:
        kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert client_error(e)[0] == "ResourceInUseException"
    # Untouched.
    assert len(kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]) == 2


@pytest.mark.parametrize("bad", ["bad name", "bad/name", "bad:name", "naïve", "tab\tname", "star*"])
def test_bad_stream_names(kinesis_nv, bad):
    with pytest.raises(ClientError) as e:
        kinesis_nv.create_stream(StreamName=bad, ShardCount=1)
    assert client_error(e) == (
        "ValidationException",
        f"1 validation error detected: Value '{bad}' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        400,
    )
    with pytest.raises(ClientError) as e:
        kinesis_nv.describe_stream(StreamName=bad)
    assert client_error(e)[0] == "ValidationException"
    assert kinesis_nv.list_streams()["StreamNames"] == []


def test_empty_stream_name(raw):
    kind, msg = raw.error("CreateStream", {"StreamName": "", "ShardCount": 1})
    assert kind == "ValidationException"
    assert msg.startswith("2 validation errors detected: ")
    assert (
        "Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
        in msg
    )
    assert "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+" in msg


def test_stream_name_length(kinesis_nv):
    longest = "n" * 128
    kinesis_nv.create_stream(StreamName=longest, ShardCount=1)
    assert kinesis_nv.describe_stream_summary(StreamName=longest)["StreamDescriptionSummary"]["StreamName"] == longest
    too_long = "n" * 129
    with pytest.raises(ClientError) as e:
        kinesis_nv.create_stream(StreamName=too_long, ShardCount=1)
    assert client_error(e) == (
        "ValidationException",
        f"1 validation error detected: Value '{too_long}' at 'streamName' failed to satisfy constraint: "
        "Member must have length less than or equal to 128",
        400,
    )
    with pytest.raises(ClientError) as e:
        kinesis_nv.describe_stream(StreamName=too_long)
    assert client_error(e)[0] == "ValidationException"
    assert kinesis_nv.list_streams()["StreamNames"] == [longest]


@pytest.mark.parametrize("count", [0, -1])
def test_shard_count_below_one(raw, count):
    name = unique_name()
    kind, msg = raw.error("CreateStream", {"StreamName": name, "ShardCount": count})
    assert kind == "ValidationException"
    assert msg == (
        f"1 validation error detected: Value '{count}' at 'shardCount' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1"
    )
    assert raw.error("DescribeStreamSummary", {"StreamName": name})[0] == "ResourceNotFoundException"


def test_shard_count_missing_for_provisioned(raw):
    kind, _ = raw.error("CreateStream", {"StreamName": unique_name()})
    assert kind == "InvalidArgumentException"
    provisioned = {"StreamMode": "PROVISIONED"}
    kind, _ = raw.error("CreateStream", {"StreamName": unique_name(), "StreamModeDetails": provisioned})
    assert kind == "InvalidArgumentException"


def test_missing_required_member(raw):
    kind, msg = raw.error("CreateStream", {"ShardCount": 1})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
    )
    kind, msg = raw.error("CreateStream", {"StreamName": "ok", "StreamModeDetails": {}})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: "
        "Member must not be null"
    )
    kind, msg = raw.error("AddTagsToStream", {"StreamName": "ok"})
    assert kind == "ValidationException"
    assert msg == (
        "1 validation error detected: Value null at 'tags' failed to satisfy constraint: Member must not be null"
    )


def test_several_validation_errors_in_one_reply(raw):
    kind, msg = raw.error("CreateStream", {"StreamName": "bad name", "ShardCount": 0})
    assert kind == "ValidationException"
    assert msg.startswith("2 validation errors detected: ")
    assert (
        "Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression "
        "pattern: [a-zA-Z0-9_.-]+" in msg
    )
    assert (
        "Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        in msg
    )


def test_stream_name_or_arn_required(raw):
    status, body, _ = raw("DescribeStreamSummary", {})
    assert status == 400
    assert body["__type"] in ("ValidationException", "InvalidArgumentException")


def test_unknown_operation(raw):
    status, body, headers = raw("FlyToTheMoon", {})
    assert status == 400
    assert body["__type"] == "UnknownOperationException"
    status, body, _ = raw(None, {}, target="Kinesis_20131202.")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body, _ = raw(None, {}, target="DynamoDB_20120810.ListTables")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    # Operation names are case-sensitive.
    status, body, _ = raw(None, {}, target="Kinesis_20131202.createstream")
    assert (status, body["__type"]) == (400, "UnknownOperationException")


def test_serialization_errors(raw):
    status, body, _ = raw("ListStreams", raw_body="{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body, _ = raw("ListStreams", raw_body="[1, 2]")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body, _ = raw("CreateStream", raw_body='{"StreamName": "x", "ShardCount": "3"}')
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body, _ = raw("CreateStream", raw_body='{"StreamName": 5, "ShardCount": 3}')
    assert (status, body["__type"]) == (400, "SerializationException")
    # An empty body is an empty request.
    status, body, _ = raw("ListStreams", raw_body="")
    assert (status, body) == (200, {"StreamNames": [], "HasMoreStreams": False, "StreamSummaries": []})
    # Nothing was created by the failures.
    assert raw.ok("ListStreams", {})["StreamNames"] == []


def test_content_type_json_also_accepted(raw):
    status, body, _ = raw("ListStreams", {}, content_type="application/json")
    assert status == 200
    assert body["StreamNames"] == []


# ---------------------------------------------------------------------------------------------------
# State delays

STATE_DELAY_MS = 300


def during_transition(start, checks, attempts=5):
    """start() begins a transition that lasts STATE_DELAY_MS and returns a context; checks(ctx) asserts
    what must hold during it. If a check fails only after the window has passed (a very slow machine),
    it proves nothing, so the whole thing is tried again from a fresh start()."""
    for _ in range(attempts):
        t0 = time.monotonic()
        ctx = start()
        try:
            checks(ctx)
            return ctx
        except (AssertionError, ClientError):
            if time.monotonic() - t0 < STATE_DELAY_MS / 1000:
                raise
    raise AssertionError(f"could not run the checks within {STATE_DELAY_MS} ms in {attempts} attempts")


def test_create_goes_creating_then_active(eddy_factory):
    server = eddy_factory(state_delay_ms=STATE_DELAY_MS)
    kinesis = server.boto()
    kinesis.list_streams()  # warm the client up so that the calls below are back to back

    def start():
        name = unique_name()
        kinesis.create_stream(StreamName=name, ShardCount=2)
        return name

    def checks(name):
        d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
        assert d["StreamStatus"] == "CREATING"
        assert d["Shards"] == [] and d["HasMoreShards"] is False
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert summary["StreamStatus"] == "CREATING"
        listed = server.raw.ok("ListStreams", {})["StreamSummaries"]
        assert [x["StreamStatus"] for x in listed if x["StreamName"] == name] == ["CREATING"]
        with pytest.raises(ClientError) as e:
            kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
        assert client_error(e)[0] == "ResourceInUseException"
        with pytest.raises(ClientError) as e:
            kinesis.delete_stream(StreamName=name)
        assert client_error(e)[0] == "ResourceInUseException"

    name = during_transition(start, checks)
    wait_until(
        lambda: kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamStatus"] == "ACTIVE",
        timeout=10,
        message="stream ACTIVE",
    )
    d = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    assert [s["ShardId"] for s in d["Shards"]] == [shard_id(0), shard_id(1)]
    kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)


def test_delete_goes_deleting_then_gone(eddy_factory):
    server = eddy_factory(state_delay_ms=STATE_DELAY_MS)
    kinesis = server.boto()

    def status(name):
        return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]

    def start():
        name = unique_name()
        kinesis.create_stream(StreamName=name, ShardCount=1)
        wait_until(lambda: status(name) == "ACTIVE", message="stream ACTIVE")
        kinesis.delete_stream(StreamName=name)
        return name

    def checks(name):
        assert kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamStatus"] == "DELETING"
        assert name in kinesis.list_streams()["StreamNames"]

    name = during_transition(start, checks)

    def gone():
        try:
            kinesis.describe_stream(StreamName=name)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ResourceNotFoundException"
            return True
        return False

    wait_until(gone, timeout=10, message="stream gone")
    assert kinesis.list_streams()["StreamNames"] == []


def test_update_goes_updating_then_active(eddy_factory):
    server = eddy_factory(state_delay_ms=STATE_DELAY_MS)
    kinesis = server.boto()
    name = unique_name()
    kinesis.create_stream(StreamName=name, ShardCount=1)

    def status():
        return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]

    def switch_mode():
        wait_until(lambda: status() == "ACTIVE", message="stream ACTIVE")
        mode = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamModeDetails"]
        other = "ON_DEMAND" if mode["StreamMode"] == "PROVISIONED" else "PROVISIONED"
        kinesis.update_stream_mode(StreamARN=stream_arn(name), StreamModeDetails={"StreamMode": other})
        return other

    def mode_checks(other):
        assert status() == "UPDATING"
        with pytest.raises(ClientError) as e:
            kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
        assert client_error(e)[0] == "ResourceInUseException"

    mode = during_transition(switch_mode, mode_checks)
    wait_until(lambda: status() == "ACTIVE", message="stream ACTIVE after the mode change")

    def encrypt():
        wait_until(lambda: status() == "ACTIVE", message="stream ACTIVE")
        key = "alias/aws/kinesis"  # unknown keys are KMSNotFoundException
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key)
        return key

    def encrypt_checks(key):
        s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert s["StreamStatus"] == "UPDATING"

    key = during_transition(encrypt, encrypt_checks)
    wait_until(lambda: status() == "ACTIVE", message="stream ACTIVE after encryption")
    s = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert s["StreamModeDetails"] == {"StreamMode": mode}
    assert (s["EncryptionType"], s["KeyId"]) == ("KMS", key)
