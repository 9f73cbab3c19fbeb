"""The same control-plane behaviours through Debian's AWS CLI v2 (2.9).

Each CLI call costs close to a second, so setup that is not about the CLI goes through `raw`. The CLI
exits with 254 when the service returned an error and 252 when it rejected the parameters itself.
"""

import re

from conftest import stream_arn, unique_name

SERVICE_ERROR_RC = 254
PARAM_ERROR_RC = 252
ERROR_RE = re.compile(r"An error occurred \((\w+)\) when calling the (\w+) operation(?: \([^)]*\))?: (.*)")


def cli_error(stderr):
    """(code, operation, message) from the CLI's error line."""
    m = ERROR_RE.search(stderr)
    assert m, f"no service error in stderr: {stderr!r}"
    return m.group(1), m.group(2), m.group(3).strip()


def shard_ids(n):
    return [f"shardId-{i:012d}" for i in n]


def test_create_describe_list_delete(awscli, raw):
    name = unique_name("cli")
    rc, out, err = awscli("create-stream", "--stream-name", name, "--shard-count", "3")
    assert (rc, out) == (0, None), err

    # --no-paginate gives the reply as sent (the CLI's paginated form keeps only some members).
    described, summarized, listed = awscli.many(
        ("describe-stream", "--stream-name", name, "--no-paginate"),
        ("describe-stream-summary", "--stream-name", name),
        ("list-streams",),
    )
    assert [r[0] for r in (described, summarized, listed)] == [0, 0, 0], [r[2] for r in (described, summarized, listed)]
    d = described[1]["StreamDescription"]
    assert d["StreamName"] == name
    assert d["StreamARN"] == stream_arn(name)
    assert d["StreamStatus"] == "ACTIVE"
    assert d["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert d["RetentionPeriodHours"] == 24
    assert d["HasMoreShards"] is False
    assert [s["ShardId"] for s in d["Shards"]] == shard_ids(range(3))
    assert d["Shards"][0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": "113427455640312821154458202477256070484",
    }
    assert d["Shards"][2]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)

    s = summarized[1]["StreamDescriptionSummary"]
    assert (s["OpenShardCount"], s["ConsumerCount"], s["EncryptionType"]) == (3, 0, "NONE")

    out = listed[1]
    assert out["StreamNames"] == [name]
    assert [x["StreamName"] for x in out["StreamSummaries"]] == [name]
    assert out["StreamSummaries"][0]["StreamARN"] == stream_arn(name)

    rc, out, err = awscli("delete-stream", "--stream-name", name)
    assert (rc, out) == (0, None), err
    rc, out, err = awscli("describe-stream-summary", "--stream-name", name)
    assert rc == SERVICE_ERROR_RC and out is None
    assert cli_error(err) == (
        "ResourceNotFoundException",
        "DescribeStreamSummary",
        f"Stream {name} under account 000000000000 not found.",
    )
    assert raw.ok("ListStreams", {})["StreamNames"] == []


def test_on_demand_stream_arn_and_waiters(awscli, raw):
    name = unique_name("od")
    arn = stream_arn(name)
    rc, _, err = awscli("create-stream", "--stream-name", name, "--stream-mode-details", "StreamMode=ON_DEMAND")
    assert rc == 0, err
    rc, _, err = awscli("wait", "stream-exists", "--stream-name", name)
    assert rc == 0, err
    d = awscli.ok("describe-stream", "--stream-arn", arn, "--no-paginate")["StreamDescription"]
    assert d["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert [s["ShardId"] for s in d["Shards"]] == shard_ids(range(4))
    assert raw.ok("DescribeLimits", {})["OnDemandStreamCount"] == 1
    assert awscli("delete-stream", "--stream-arn", arn)[0] == 0
    rc, _, err = awscli("wait", "stream-not-exists", "--stream-name", name)
    assert rc == 0, err


def test_tags(awscli, raw):
    name = unique_name("tags")
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    rc, out, err = awscli("add-tags-to-stream", "--stream-name", name, "--tags", "b=2,a=1,c=three")
    assert (rc, out) == (0, None), err
    every, paged = awscli.many(
        ("list-tags-for-stream", "--stream-name", name),
        ("list-tags-for-stream", "--stream-name", name, "--exclusive-start-tag-key", "a", "--limit", "1"),
    )
    assert every[1] == {
        "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}, {"Key": "c", "Value": "three"}],
        "HasMoreTags": False,
    }
    assert paged[1] == {"Tags": [{"Key": "b", "Value": "2"}], "HasMoreTags": True}
    assert awscli("remove-tags-from-stream", "--stream-name", name, "--tag-keys", "a", "c")[0] == 0
    assert raw.ok("ListTagsForStream", {"StreamName": name})["Tags"] == [{"Key": "b", "Value": "2"}]

    fifty_one = ",".join(f"k{i:02d}=v" for i in range(51))
    bad, too_many = awscli.many(
        ("add-tags-to-stream", "--stream-name", name, "--tags", '{"bad*key": "1"}'),
        ("add-tags-to-stream", "--stream-name", name, "--tags", fifty_one),
    )
    for rc, _, err in (bad, too_many):
        assert rc == SERVICE_ERROR_RC
        assert cli_error(err)[:2] == ("InvalidArgumentException", "AddTagsToStream")
    assert raw.ok("ListTagsForStream", {"StreamName": name})["Tags"] == [{"Key": "b", "Value": "2"}]


def test_retention(awscli, raw):
    name = unique_name("ret")
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})

    def retention():
        return raw.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]["RetentionPeriodHours"]

    rc, _, err = awscli("increase-stream-retention-period", "--stream-name", name, "--retention-period-hours", "48")
    assert rc == 0, err
    assert retention() == 48
    rc, _, err = awscli("decrease-stream-retention-period", "--stream-name", name, "--retention-period-hours", "24")
    assert rc == 0, err
    assert retention() == 24

    too_long, wrong_way = awscli.many(
        ("increase-stream-retention-period", "--stream-name", name, "--retention-period-hours", "9000"),
        ("decrease-stream-retention-period", "--stream-name", name, "--retention-period-hours", "48"),
    )
    rc, out, err = too_long
    assert (rc, out) == (SERVICE_ERROR_RC, None)
    assert cli_error(err) == (
        "InvalidArgumentException",
        "IncreaseStreamRetentionPeriod",
        "Maximum allowed retention period is 8760 hours. Requested retention period (9000 hours) is too long.",
    )
    rc, _, err = wrong_way
    assert rc == SERVICE_ERROR_RC
    assert cli_error(err) == (
        "InvalidArgumentException",
        "DecreaseStreamRetentionPeriod",
        f"Requested retention period (48 hours) for stream {name} can not be longer than existing retention "
        "period (24 hours). Use IncreaseRetentionPeriod API.",
    )
    assert retention() == 24


def test_list_shards_paging(awscli, raw):
    name = unique_name("paging")
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 5})
    every = shard_ids(range(5))

    default, first, truncated, filtered = awscli.many(
        ("list-shards", "--stream-name", name),
        ("list-shards", "--stream-name", name, "--max-results", "2", "--no-paginate"),
        ("list-shards", "--stream-name", name, "--max-items", "2"),
        ("list-shards", "--stream-name", name, "--shard-filter", f"Type=AFTER_SHARD_ID,ShardId={every[0]}"),
    )
    for rc, _, err in (default, first, truncated, filtered):
        assert rc == 0, err

    # Default: the CLI paginates for us (one page here).
    out = default[1]
    assert [s["ShardId"] for s in out["Shards"]] == every
    assert "NextToken" not in out

    out = filtered[1]
    assert [s["ShardId"] for s in out["Shards"]] == every[1:]

    # Server-side pages by hand: --max-results with --no-paginate, then --next-token alone (AWS does not
    # accept a stream name together with a NextToken).
    out = first[1]
    first_token = out["NextToken"]
    pages = [[s["ShardId"] for s in out["Shards"]]]
    while "NextToken" in out:
        assert len(pages) < 10
        # MaxResults may change from page to page.
        out = awscli.ok("list-shards", "--next-token", out["NextToken"], "--max-results", "3", "--no-paginate")
        pages.append([s["ShardId"] for s in out["Shards"]])
    assert pages == [every[0:2], every[2:5]]

    # A server NextToken also works as the CLI's --starting-token; client-side truncation (--max-items)
    # continues with the CLI's own token.
    out = truncated[1]
    assert [s["ShardId"] for s in out["Shards"]] == every[0:2]
    resumed, rest = awscli.many(
        ("list-shards", "--starting-token", first_token),
        ("list-shards", "--stream-name", name, "--max-items", "2", "--starting-token", out["NextToken"]),
    )
    assert resumed[0] == 0 and rest[0] == 0, (resumed[2], rest[2])
    assert [s["ShardId"] for s in resumed[1]["Shards"]] == every[2:]
    assert [s["ShardId"] for s in rest[1]["Shards"]] == every[2:4]


def test_list_shards_page_size_with_stream_name_is_rejected_like_aws(awscli, raw):
    # The CLI's automatic pagination re-sends --stream-name with the NextToken; AWS answers
    # InvalidArgumentException to that, and so does eddy.
    name = unique_name("pagesize")
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 3})
    rc, _, err = awscli("list-shards", "--stream-name", name, "--page-size", "2")
    assert rc == SERVICE_ERROR_RC
    assert cli_error(err) == (
        "InvalidArgumentException",
        "ListShards",
        "NextToken and StreamName cannot be provided together.",
    )


def test_list_streams_and_describe_stream_pagination(awscli, raw):
    names = sorted(unique_name("ls") for _ in range(5))
    for n in names:
        raw.ok("CreateStream", {"StreamName": n, "ShardCount": 1})
    raw.ok("CreateStream", {"StreamName": "zz-seven", "ShardCount": 7})
    paged, truncated, described = awscli.many(
        ("list-streams", "--page-size", "2"),
        ("list-streams", "--max-items", "4"),
        ("describe-stream", "--stream-name", "zz-seven", "--page-size", "3"),
    )
    for rc, _, err in (paged, truncated, described):
        assert rc == 0, err
    # --page-size 2: the CLI follows ListStreams' NextToken through three pages.
    out = paged[1]
    assert out["StreamNames"] == names + ["zz-seven"]
    assert [s["StreamName"] for s in out["StreamSummaries"]] == names + ["zz-seven"]
    # --max-items with --starting-token.
    out = truncated[1]
    assert out["StreamNames"] == names[:4]
    rest = awscli.ok("list-streams", "--max-items", "4", "--starting-token", out["NextToken"])
    assert rest["StreamNames"] == names[4:] + ["zz-seven"]
    # describe-stream pages with ExclusiveStartShardId under the hood.
    d = described[1]["StreamDescription"]
    assert [s["ShardId"] for s in d["Shards"]] == shard_ids(range(7))
    assert d["StreamName"] == "zz-seven"


def test_monitoring_and_encryption(awscli, raw):
    name = unique_name("mon")
    raw.ok("CreateStream", {"StreamName": name, "ShardCount": 1})
    out = awscli.ok(
        "enable-enhanced-monitoring", "--stream-name", name, "--shard-level-metrics", "IncomingBytes", "OutgoingBytes"
    )
    assert out["StreamName"] == name
    assert out["CurrentShardLevelMetrics"] == []
    assert out["DesiredShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]
    disabled, encrypted = awscli.many(
        ("disable-enhanced-monitoring", "--stream-name", name, "--shard-level-metrics", "IncomingBytes"),
        ("start-stream-encryption", "--stream-name", name, "--encryption-type", "KMS", "--key-id", "alias/aws/kinesis"),
    )
    assert disabled[0] == 0 and encrypted[0] == 0, (disabled[2], encrypted[2])
    assert disabled[1]["DesiredShardLevelMetrics"] == ["OutgoingBytes"]
    assert encrypted[1] is None
    s = raw.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
    assert (s["EncryptionType"], s["KeyId"]) == ("KMS", "alias/aws/kinesis")
    assert s["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["OutgoingBytes"]}]


def test_error_paths(awscli, raw):
    existing = unique_name("dup")
    raw.ok("CreateStream", {"StreamName": existing, "ShardCount": 1})

    too_long = "x" * 129
    duplicate, bad_name, long_name, zero = awscli.many(
        ("create-stream", "--stream-name", existing, "--shard-count", "1"),
        ("create-stream", "--stream-name", "bad name", "--shard-count", "1"),
        ("create-stream", "--stream-name", too_long, "--shard-count", "1"),
        ("create-stream", "--stream-name", unique_name(), "--shard-count", "0"),
    )

    rc, _, err = duplicate
    assert rc == SERVICE_ERROR_RC
    assert cli_error(err) == (
        "ResourceInUseException",
        "CreateStream",
        f"Stream {existing} under account 000000000000 already exists.",
    )

    rc, _, err = bad_name
    assert rc == SERVICE_ERROR_RC
    assert cli_error(err) == (
        "ValidationException",
        "CreateStream",
        "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
    )

    rc, _, err = long_name
    assert rc == SERVICE_ERROR_RC
    assert cli_error(err)[2] == (
        f"1 validation error detected: Value '{too_long}' at 'streamName' failed to satisfy constraint: "
        "Member must have length less than or equal to 128"
    )

    # The CLI validates ShardCount >= 1 itself and never calls the server.
    rc, _, err = zero
    assert rc == PARAM_ERROR_RC
    assert "Invalid value for parameter ShardCount, value: 0, valid min value: 1" in err
    assert raw.ok("ListStreams", {})["StreamNames"] == [existing]


def test_shard_limit_error(eddy_factory, awscli_factory):
    server = eddy_factory("--shard-limit", "2")
    awscli = awscli_factory(server)
    rc, _, err = awscli("create-stream", "--stream-name", "toobig", "--shard-count", "3")
    assert rc == SERVICE_ERROR_RC
    code, op, msg = cli_error(err)
    assert (code, op) == ("LimitExceededException", "CreateStream")
    assert "Current shard count for the account: 0. Limit: 2." in msg
    assert server.raw.ok("ListStreams", {})["StreamNames"] == []
