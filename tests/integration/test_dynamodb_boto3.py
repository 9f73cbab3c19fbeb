"""The DynamoDB subset (docs/DYNAMODB.md) through boto3's DynamoDB client: each operation, the conditional
writes the KCL makes on its lease table (kinesis-family spec §3.1), errors, and durability across restarts."""

import json
import os
import re

import boto3
import pytest
from botocore.exceptions import ClientError

LEASE_TABLE = "my-kcl-app"


def ddb_client(server, key="x", secret="x"):
    return boto3.client(
        "dynamodb",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


@pytest.fixture
def ddb(eddy):
    return ddb_client(eddy)


def code(exc):
    return exc.value.response["Error"]["Code"]


def create_lease_table(ddb, name=LEASE_TABLE):
    return ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_lease(ddb, shard, owner=None, table=LEASE_TABLE):
    item = {
        "leaseKey": {"S": shard},
        "leaseCounter": {"N": "0"},
        "checkpoint": {"S": "TRIM_HORIZON"},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "parentShardId": {"SS": ["shardId-000000000099"]},
    }
    if owner:
        item["leaseOwner"] = {"S": owner}
    ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")


def get_lease(ddb, shard, table=LEASE_TABLE):
    return ddb.get_item(TableName=table, Key={"leaseKey": {"S": shard}}, ConsistentRead=True).get("Item")


# ---- tables ----


def test_table_lifecycle(ddb):
    out = create_lease_table(ddb)["TableDescription"]
    assert out["TableName"] == LEASE_TABLE
    assert out["TableStatus"] == "ACTIVE"
    assert out["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert out["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert out["TableArn"] == f"arn:aws:dynamodb:us-east-1:000000000000:table/{LEASE_TABLE}"
    desc = ddb.describe_table(TableName=LEASE_TABLE)["Table"]
    assert desc["TableStatus"] == "ACTIVE" and desc["ItemCount"] == 0
    ddb.get_waiter("table_exists").wait(TableName=LEASE_TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 3})

    with pytest.raises(ClientError) as e:
        create_lease_table(ddb)
    assert code(e) == "ResourceInUseException"

    assert ddb.delete_table(TableName=LEASE_TABLE)["TableDescription"]["TableStatus"] == "DELETING"
    with pytest.raises(ClientError) as e:
        ddb.describe_table(TableName=LEASE_TABLE)
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        ddb.delete_table(TableName=LEASE_TABLE)
    assert code(e) == "ResourceNotFoundException"


def test_provisioned_table_and_validation(ddb):
    out = ddb.create_table(
        TableName="prov",
        KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}, {"AttributeName": "r", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"}, {"AttributeName": "r", "AttributeType": "N"}],
        ProvisionedThroughput={"ReadCapacityUnits": 10, "WriteCapacityUnits": 10},
    )["TableDescription"]
    assert out["ProvisionedThroughput"]["ReadCapacityUnits"] == 10
    with pytest.raises(ClientError) as e:  # PROVISIONED (the default) needs throughput
        ddb.create_table(
            TableName="noprov",
            KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "h", "AttributeType": "S"}],
        )
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:  # undefined key attribute
        ddb.create_table(
            TableName="bad",
            KeySchema=[{"AttributeName": "h", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "x", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    assert code(e) == "ValidationException"


def test_list_tables_paging(ddb):
    for i in range(5):
        create_lease_table(ddb, f"tbl-{i}")
    assert ddb.list_tables()["TableNames"] == [f"tbl-{i}" for i in range(5)]
    page = ddb.list_tables(Limit=2)
    assert page["TableNames"] == ["tbl-0", "tbl-1"] and page["LastEvaluatedTableName"] == "tbl-1"
    page = ddb.list_tables(Limit=2, ExclusiveStartTableName="tbl-3")
    assert page["TableNames"] == ["tbl-4"] and "LastEvaluatedTableName" not in page
    names = [n for p in ddb.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 2}) for n in p["TableNames"]]
    assert names == [f"tbl-{i}" for i in range(5)]


def test_state_delay_creating_then_active(eddy_factory):
    server = eddy_factory(state_delay_ms=300)
    ddb = ddb_client(server)
    assert create_lease_table(ddb)["TableDescription"]["TableStatus"] == "CREATING"
    with pytest.raises(ClientError) as e:  # items are not reachable while CREATING
        get_lease(ddb, "shardId-000000000000")
    assert code(e) == "ResourceNotFoundException"
    ddb.get_waiter("table_exists").wait(TableName=LEASE_TABLE, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    assert ddb.describe_table(TableName=LEASE_TABLE)["Table"]["TableStatus"] == "ACTIVE"


# ---- the KCL's lease operations ----


def test_kcl_lease_lifecycle(ddb):
    create_lease_table(ddb)
    shard = "shardId-000000000000"
    create_lease(ddb, shard)
    # create again: attribute_not_exists fails
    with pytest.raises(ClientError) as e:
        create_lease(ddb, shard)
    assert code(e) == "ConditionalCheckFailedException"

    # take: conditioned on the counter last seen; owner set, counter +1, checkpointOwner removed
    ddb.update_item(
        TableName=LEASE_TABLE,
        Key={"leaseKey": {"S": shard}},
        ConditionExpression="leaseCounter = :c",
        UpdateExpression="SET leaseOwner = :o, ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one "
        "ADD leaseCounter :one REMOVE checkpointOwner",
        ExpressionAttributeValues={":c": {"N": "0"}, ":o": {"S": "worker-1"}, ":one": {"N": "1"}},
    )
    lease = get_lease(ddb, shard)
    assert lease["leaseOwner"] == {"S": "worker-1"}
    assert lease["leaseCounter"] == {"N": "1"}
    assert lease["ownerSwitchesSinceCheckpoint"] == {"N": "1"}

    # a second taker with a stale counter loses
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=LEASE_TABLE,
            Key={"leaseKey": {"S": shard}},
            ConditionExpression="leaseCounter = :c",
            UpdateExpression="SET leaseOwner = :o ADD leaseCounter :one",
            ExpressionAttributeValues={":c": {"N": "0"}, ":o": {"S": "worker-2"}, ":one": {"N": "1"}},
        )
    assert code(e) == "ConditionalCheckFailedException"

    # renew: counter matches and checkpointOwner absent; UPDATED_NEW returns the new counter
    out = ddb.update_item(
        TableName=LEASE_TABLE,
        Key={"leaseKey": {"S": shard}},
        ConditionExpression="leaseCounter = :c AND attribute_not_exists(checkpointOwner)",
        UpdateExpression="ADD leaseCounter :one SET throughputKBps = :t",
        ExpressionAttributeValues={":c": {"N": "1"}, ":one": {"N": "1"}, ":t": {"N": "12.5"}},
        ReturnValues="UPDATED_NEW",
    )
    assert out["Attributes"] == {"leaseCounter": {"N": "2"}, "throughputKBps": {"N": "12.5"}}

    # checkpoint
    out = ddb.update_item(
        TableName=LEASE_TABLE,
        Key={"leaseKey": {"S": shard}},
        ConditionExpression="leaseCounter = :c AND leaseOwner = :o",
        UpdateExpression="SET checkpoint = :cp, checkpointSubSequenceNumber = :z, ownerSwitchesSinceCheckpoint = :z "
        "ADD leaseCounter :one REMOVE pendingCheckpoint, pendingCheckpointState",
        ExpressionAttributeValues={
            ":c": {"N": "2"},
            ":o": {"S": "worker-1"},
            ":cp": {"S": "49590338271490256608559692538361571095921575989136588898"},
            ":z": {"N": "0"},
            ":one": {"N": "1"},
        },
        ReturnValues="ALL_NEW",
    )
    assert out["Attributes"]["checkpoint"]["S"].startswith("4959")
    assert out["Attributes"]["leaseCounter"] == {"N": "3"}
    assert out["Attributes"]["ownerSwitchesSinceCheckpoint"] == {"N": "0"}

    # evict: owner as expected
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=LEASE_TABLE,
            Key={"leaseKey": {"S": shard}},
            ConditionExpression="leaseOwner = :o",
            UpdateExpression="REMOVE leaseOwner ADD leaseCounter :one",
            ExpressionAttributeValues={":o": {"S": "someone-else"}, ":one": {"N": "1"}},
        )
    assert code(e) == "ConditionalCheckFailedException"
    out = ddb.update_item(
        TableName=LEASE_TABLE,
        Key={"leaseKey": {"S": shard}},
        ConditionExpression="attribute_exists(leaseKey) AND #o = :o",
        UpdateExpression="REMOVE #o, checkpointOwner ADD leaseCounter :one",
        ExpressionAttributeNames={"#o": "leaseOwner"},
        ExpressionAttributeValues={":o": {"S": "worker-1"}, ":one": {"N": "1"}},
        ReturnValues="UPDATED_OLD",
    )
    assert out["Attributes"] == {"leaseOwner": {"S": "worker-1"}, "leaseCounter": {"N": "3"}}
    assert "leaseOwner" not in get_lease(ddb, shard)

    # childShardIds at SHARD_END (set add), then delete with a condition
    ddb.update_item(
        TableName=LEASE_TABLE,
        Key={"leaseKey": {"S": shard}},
        UpdateExpression="ADD childShardIds :kids SET checkpoint = :end",
        ExpressionAttributeValues={":kids": {"SS": ["shardId-000000000001", "shardId-000000000002"]}, ":end": {"S": "SHARD_END"}},
    )
    assert sorted(get_lease(ddb, shard)["childShardIds"]["SS"]) == ["shardId-000000000001", "shardId-000000000002"]
    with pytest.raises(ClientError) as e:
        ddb.delete_item(
            TableName=LEASE_TABLE, Key={"leaseKey": {"S": shard}}, ConditionExpression="checkpoint = :x",
            ExpressionAttributeValues={":x": {"S": "LATEST"}},
        )
    assert code(e) == "ConditionalCheckFailedException"
    out = ddb.delete_item(TableName=LEASE_TABLE, Key={"leaseKey": {"S": shard}}, ReturnValues="ALL_OLD")
    assert out["Attributes"]["checkpoint"] == {"S": "SHARD_END"}
    assert get_lease(ddb, shard) is None


def test_kcl2_legacy_expected_and_attribute_updates(ddb):
    """KCL 2.x writes with the legacy Expected and AttributeUpdates parameters."""
    create_lease_table(ddb)
    shard = "shardId-000000000007"
    ddb.put_item(
        TableName=LEASE_TABLE,
        Item={"leaseKey": {"S": shard}, "leaseCounter": {"N": "5"}, "leaseOwner": {"S": "w1"}},
        Expected={"leaseKey": {"Exists": False}},
    )
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=LEASE_TABLE, Item={"leaseKey": {"S": shard}}, Expected={"leaseKey": {"Exists": False}})
    assert code(e) == "ConditionalCheckFailedException"
    ddb.update_item(
        TableName=LEASE_TABLE,
        Key={"leaseKey": {"S": shard}},
        Expected={"leaseCounter": {"Value": {"N": "5"}}, "leaseOwner": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "w1"}]}},
        AttributeUpdates={
            "leaseCounter": {"Action": "ADD", "Value": {"N": "1"}},
            "leaseOwner": {"Action": "PUT", "Value": {"S": "w2"}},
            "checkpointOwner": {"Action": "DELETE"},
        },
    )
    lease = get_lease(ddb, shard)
    assert lease["leaseCounter"] == {"N": "6"} and lease["leaseOwner"] == {"S": "w2"}
    with pytest.raises(ClientError) as e:
        ddb.update_item(
            TableName=LEASE_TABLE,
            Key={"leaseKey": {"S": shard}},
            Expected={"leaseCounter": {"Value": {"N": "5"}}},
            AttributeUpdates={"leaseCounter": {"Action": "ADD", "Value": {"N": "1"}}},
        )
    assert code(e) == "ConditionalCheckFailedException"
    ddb.delete_item(TableName=LEASE_TABLE, Key={"leaseKey": {"S": shard}}, Expected={"leaseOwner": {"Value": {"S": "w2"}}})
    assert get_lease(ddb, shard) is None


def test_scan_paging_and_filter(ddb):
    create_lease_table(ddb)
    shards = [f"shardId-{i:012d}" for i in range(25)]
    for i, s in enumerate(shards):
        create_lease(ddb, s, owner=f"w{i % 3}")
    seen, pages, start = [], 0, None
    while True:
        kw = {"TableName": LEASE_TABLE, "Limit": 10, "ConsistentRead": True}
        if start:
            kw["ExclusiveStartKey"] = start
        page = ddb.scan(**kw)
        pages += 1
        seen += [it["leaseKey"]["S"] for it in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert sorted(seen) == shards and len(seen) == len(set(seen)) and pages >= 3
    all_items = [it for p in ddb.get_paginator("scan").paginate(TableName=LEASE_TABLE, PaginationConfig={"PageSize": 7}) for it in p["Items"]]
    assert len(all_items) == 25
    out = ddb.scan(
        TableName=LEASE_TABLE,
        FilterExpression="leaseOwner = :o",
        ProjectionExpression="leaseKey, #c",
        ExpressionAttributeNames={"#c": "leaseCounter"},
        ExpressionAttributeValues={":o": {"S": "w0"}},
    )
    assert out["Count"] == 9 and out["ScannedCount"] == 25
    assert all(set(it) == {"leaseKey", "leaseCounter"} for it in out["Items"])
    assert ddb.scan(TableName=LEASE_TABLE, Select="COUNT")["Count"] == 25
    total = sum(ddb.scan(TableName=LEASE_TABLE, Segment=s, TotalSegments=3)["Count"] for s in range(3))
    assert total == 25


def test_query_hash_and_range(ddb):
    ddb.create_table(
        TableName="events",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in [5, 1, 10, 2, 100, 20]:
        ddb.put_item(TableName="events", Item={"pk": {"S": "a"}, "sk": {"N": str(i)}, "tag": {"S": f"t{i}"}})
    ddb.put_item(TableName="events", Item={"pk": {"S": "b"}, "sk": {"N": "1"}})

    def q(cond, values, **kw):
        out = ddb.query(TableName="events", KeyConditionExpression=cond, ExpressionAttributeValues=values, **kw)
        return [int(it["sk"]["N"]) for it in out["Items"]], out

    assert q("pk = :p", {":p": {"S": "a"}})[0] == [1, 2, 5, 10, 20, 100]  # numeric order
    assert q("pk = :p", {":p": {"S": "a"}}, ScanIndexForward=False)[0] == [100, 20, 10, 5, 2, 1]
    assert q("pk = :p AND sk > :x", {":p": {"S": "a"}, ":x": {"N": "5"}})[0] == [10, 20, 100]
    assert q("pk = :p AND sk <= :x", {":p": {"S": "a"}, ":x": {"N": "5"}})[0] == [1, 2, 5]
    assert q("pk = :p AND sk BETWEEN :l AND :h", {":p": {"S": "a"}, ":l": {"N": "2"}, ":h": {"N": "20"}})[0] == [2, 5, 10, 20]
    keys, out = q("pk = :p", {":p": {"S": "a"}}, Limit=4)
    assert keys == [1, 2, 5, 10] and out["LastEvaluatedKey"] == {"pk": {"S": "a"}, "sk": {"N": "10"}}
    keys, out = q("pk = :p", {":p": {"S": "a"}}, Limit=4, ExclusiveStartKey=out["LastEvaluatedKey"])
    assert keys == [20, 100]
    with pytest.raises(ClientError) as e:
        q("sk = :x", {":x": {"N": "1"}})
    assert code(e) == "ValidationException"

    ddb.create_table(
        TableName="strs",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for s in ["shardId-2", "shardId-1", "other", "shard"]:
        ddb.put_item(TableName="strs", Item={"pk": {"S": "x"}, "sk": {"S": s}})
    out = ddb.query(
        TableName="strs", KeyConditionExpression="pk = :p AND begins_with(sk, :b)",
        ExpressionAttributeValues={":p": {"S": "x"}, ":b": {"S": "shardId-"}},
    )
    assert [it["sk"]["S"] for it in out["Items"]] == ["shardId-1", "shardId-2"]


def test_condition_forms(ddb):
    create_lease_table(ddb, "cond")
    item = {
        "leaseKey": {"S": "k"},
        "n": {"N": "10"},
        "s": {"S": "hello world"},
        "ss": {"SS": ["a", "b"]},
        "l": {"L": [{"S": "x"}, {"N": "2"}]},
        "m": {"M": {"inner": {"S": "v"}, "deep": {"M": {"z": {"N": "1"}}}}},
        "b": {"B": b"\x01\x02\x03"},
        "t": {"BOOL": True},
        "nul": {"NULL": True},
    }
    ddb.put_item(TableName="cond", Item=item)
    values = {
        ":5": {"N": "5"}, ":10": {"N": "10.0"}, ":20": {"N": "20"}, ":he": {"S": "hello"}, ":wo": {"S": "world"},
        ":a": {"S": "a"}, ":S": {"S": "S"}, ":N": {"S": "N"}, ":v": {"S": "v"}, ":x": {"S": "x"}, ":2": {"N": "2"},
        ":b12": {"B": b"\x01\x02"}, ":true": {"BOOL": True},
    }

    def holds(expr):
        used = {k: v for k, v in values.items() if k in re.findall(r":\w+", expr)}
        kw = {"ExpressionAttributeValues": used} if used else {}
        try:
            ddb.put_item(TableName="cond", Item=item, ConditionExpression=expr, **kw)
            return True
        except ClientError as e:
            assert code_of(e) == "ConditionalCheckFailedException", e
            return False

    assert holds("n = :10") and holds("n > :5") and holds("n >= :10") and holds("n < :20") and holds("n <= :10")
    assert holds("n <> :5") and not holds("n <> :10") and not holds("n < :5")
    assert holds("n BETWEEN :5 AND :20") and not holds("n BETWEEN :5 AND :2")
    assert holds("n IN (:5, :10)") and not holds("n IN (:5, :20)")
    assert holds("begins_with(s, :he)") and not holds("begins_with(s, :wo)")
    assert holds("contains(s, :wo)") and holds("contains(ss, :a)") and holds("contains(l, :x)") and holds("contains(l, :2)")
    assert holds("attribute_type(s, :S)") and not holds("attribute_type(s, :N)")
    assert holds("size(s) > :10") and holds("size(ss) = :2") and holds("size(l) = :2")
    assert holds("m.inner = :v") and not holds("m.deep.z = :true")
    assert holds("l[0] = :x") and holds("l[1] = :2") and not holds("l[5] = :x")
    assert holds("begins_with(b, :b12)") and holds("t = :true") and holds("attribute_exists(nul)")
    assert holds("attribute_exists(m.deep.z) AND NOT attribute_exists(nope)")
    assert holds("(n = :5 OR n = :10) AND NOT (s = :x)") and not holds("n = :5 OR (n = :20 AND s = :he)")
    assert holds("attribute_not_exists(nope) AND attribute_exists(leaseKey)")


def code_of(e):
    return e.response["Error"]["Code"]


def test_update_expression_forms(ddb):
    create_lease_table(ddb, "upd")
    key = {"leaseKey": {"S": "k"}}
    out = ddb.update_item(
        TableName="upd", Key=key,
        UpdateExpression="SET a = if_not_exists(a, :zero) + :n, l = list_append(if_not_exists(l, :empty), :l), m = :m",
        ExpressionAttributeValues={":zero": {"N": "0"}, ":n": {"N": "2.5"}, ":empty": {"L": []}, ":l": {"L": [{"S": "x"}]},
                                   ":m": {"M": {"x": {"N": "1"}}}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    assert out["a"] == {"N": "2.5"} and out["l"] == {"L": [{"S": "x"}]}
    out = ddb.update_item(
        TableName="upd", Key=key,
        UpdateExpression="SET a = a - :n, m.y = :s, l[5] = :s ADD ns :ns, cnt :one DELETE ss :del",
        ExpressionAttributeValues={":n": {"N": "0.5"}, ":s": {"S": "y"}, ":ns": {"NS": ["1", "2"]}, ":one": {"N": "1"},
                                   ":del": {"SS": ["q"]}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    assert out["a"] == {"N": "2"} and out["m"]["M"]["y"] == {"S": "y"} and out["l"]["L"][1] == {"S": "y"}
    assert sorted(out["ns"]["NS"]) == ["1", "2"] and out["cnt"] == {"N": "1"}
    out = ddb.update_item(
        TableName="upd", Key=key, UpdateExpression="ADD ns :ns REMOVE m.x, l[0]",
        ExpressionAttributeValues={":ns": {"NS": ["3"]}}, ReturnValues="ALL_NEW",
    )["Attributes"]
    assert sorted(out["ns"]["NS"]) == ["1", "2", "3"] and "x" not in out["m"]["M"] and out["l"]["L"] == [{"S": "y"}]
    out = ddb.update_item(
        TableName="upd", Key=key, UpdateExpression="DELETE ns :ns", ExpressionAttributeValues={":ns": {"NS": ["1", "2", "3"]}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    assert "ns" not in out  # an emptied set disappears

    for expr, values in [
        ("SET leaseKey = :s", {":s": {"S": "x"}}),  # key attribute
        ("SET a = nope + :n", {":n": {"N": "1"}}),  # missing operand
        ("SET a = :s + :n", {":s": {"S": "x"}, ":n": {"N": "1"}}),  # wrong type
        ("SET a = :n, a = :n", {":n": {"N": "1"}}),  # overlapping paths
        ("SET a = :n SET b = :n", {":n": {"N": "1"}}),  # SET twice
        ("SET a = :undefined", {":n": {"N": "1"}}),
        ("SET a = = :n", {":n": {"N": "1"}}),  # syntax
        ("ADD a :s", {":s": {"S": "x"}}),
        ("SET nested.x = :n", {":n": {"N": "1"}}),  # parent missing
    ]:
        with pytest.raises(ClientError) as e:
            ddb.update_item(TableName="upd", Key=key, UpdateExpression=expr, ExpressionAttributeValues=values)
        assert code(e) == "ValidationException", expr
    # numbers: exact decimal arithmetic and numeric equality
    ddb.update_item(TableName="upd", Key=key, UpdateExpression="SET big = :b",
                    ExpressionAttributeValues={":b": {"N": "12345678901234567890123456789012345678"}})
    out = ddb.update_item(TableName="upd", Key=key, UpdateExpression="ADD big :one",
                          ExpressionAttributeValues={":one": {"N": "-1"}}, ReturnValues="UPDATED_NEW")["Attributes"]
    assert out["big"] == {"N": "12345678901234567890123456789012345677"}


def test_errors(ddb):
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName="missing", Key={"k": {"S": "x"}})
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName="missing", Item={"k": {"S": "x"}})
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName="missing")
    assert code(e) == "ResourceNotFoundException"
    create_lease_table(ddb, "tbl")
    bad = [
        dict(Item={"other": {"S": "x"}}),  # missing key
        dict(Item={"leaseKey": {"N": "1"}}),  # key of the wrong type
        dict(Item={"leaseKey": {"S": ""}}),  # empty key
        dict(Item={"leaseKey": {"S": "k"}, "n": {"N": "abc"}}),
        dict(Item={"leaseKey": {"S": "k"}, "ss": {"SS": []}}),
        dict(Item={"leaseKey": {"S": "k"}, "ss": {"SS": ["a", "a"]}}),
        dict(Item={"leaseKey": {"S": "k"}, "big": {"S": "x" * (400 * 1024)}}),
        dict(Item={"leaseKey": {"S": "k"}}, ConditionExpression="a = "),
        dict(Item={"leaseKey": {"S": "k"}}, ConditionExpression="a = :v", ExpressionAttributeValues={":v": {"S": "x"}, ":unused": {"S": "y"}}),
        dict(Item={"leaseKey": {"S": "k"}}, ConditionExpression="#a = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
        dict(Item={"leaseKey": {"S": "k"}}, ConditionExpression="a = :v" + " AND a = :v" * 600, ExpressionAttributeValues={":v": {"S": "x"}}),
        dict(Item={"leaseKey": {"S": "k"}}, ConditionExpression="(" * 200 + "a = :v" + ")" * 200, ExpressionAttributeValues={":v": {"S": "x"}}),
        dict(Item={"leaseKey": {"S": "k"}}, ReturnValues="ALL_NEW"),
    ]
    for kw in bad:
        with pytest.raises(ClientError) as e:
            ddb.put_item(TableName="tbl", **kw)
        assert code(e) == "ValidationException", str(kw)[:200]
        assert e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        ddb.get_item(TableName="tbl", Key={"leaseKey": {"S": "k"}, "extra": {"S": "x"}})
    assert code(e) == "ValidationException"


def test_raw_error_shape(eddy):
    import http.client
    from urllib.parse import urlparse

    u = urlparse(eddy.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/", body=json.dumps({"TableName": "nope"}),
                 headers={"X-Amz-Target": "DynamoDB_20120810.DescribeTable", "Content-Type": "application/x-amz-json-1.0"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 400
    assert resp.getheader("content-type") == "application/x-amz-json-1.0"
    assert body["__type"] == "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
    for target, payload, etype in [
        ("DynamoDB_20120810.PutItem", "{not json", "com.amazon.coral.service#SerializationException"),
        ("DynamoDB_20120810.BatchWriteItem", "{}", "com.amazon.coral.service#UnknownOperationException"),
        ("DynamoDB_20120810.PutItem", "{}", "com.amazon.coral.validate#ValidationException"),
    ]:
        conn.request("POST", "/", body=payload, headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"})
        resp = conn.getresponse()
        assert resp.status == 400 and json.loads(resp.read())["__type"] == etype, target
    conn.close()


def test_durable_across_restart(eddy):
    ddb = ddb_client(eddy)
    create_lease_table(ddb)
    for i in range(3):
        create_lease(ddb, f"shardId-{i:012d}", owner="w")
    ddb.update_item(TableName=LEASE_TABLE, Key={"leaseKey": {"S": "shardId-000000000001"}},
                    UpdateExpression="ADD leaseCounter :one", ExpressionAttributeValues={":one": {"N": "1"}})
    ddb.delete_item(TableName=LEASE_TABLE, Key={"leaseKey": {"S": "shardId-000000000002"}})
    eddy.kill9()
    eddy.start()
    ddb = ddb_client(eddy)
    assert ddb.describe_table(TableName=LEASE_TABLE)["Table"]["TableStatus"] == "ACTIVE"
    assert get_lease(ddb, "shardId-000000000001")["leaseCounter"] == {"N": "1"}
    assert get_lease(ddb, "shardId-000000000002") is None
    assert ddb.scan(TableName=LEASE_TABLE)["Count"] == 2
    eddy.restart(graceful=True)
    ddb = ddb_client(eddy)
    assert ddb.scan(TableName=LEASE_TABLE)["Count"] == 2


def test_kinesis_and_dynamodb_on_one_endpoint(eddy, kinesis):
    ddb = ddb_client(eddy)
    create_lease_table(ddb)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    assert "s" in kinesis.list_streams()["StreamNames"]
    assert ddb.list_tables()["TableNames"] == [LEASE_TABLE]


def test_sigv4_scope_dynamodb(eddy_factory, tmp_path):
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"keys": [{"access_key_id": "AKIDDDB", "secret_access_key": "sec"}]}))
    os.chmod(path, 0o600)
    server = eddy_factory("--credentials", str(path))
    ddb = ddb_client(server, key="AKIDDDB", secret="sec")
    create_lease_table(ddb)
    assert ddb.list_tables()["TableNames"] == [LEASE_TABLE]
    with pytest.raises(ClientError) as e:
        ddb_client(server, key="AKIDDDB", secret="wrong").list_tables()
    assert code(e) in ("InvalidSignatureException", "UnrecognizedClientException")
