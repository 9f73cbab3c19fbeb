"""Authorization: IAM-style identity policies on access keys (credentials file) and resource policies on
streams and consumers (PutResourcePolicy, GetResourcePolicy, DeleteResourcePolicy), evaluated together:
an explicit Deny wins, then any Allow, else AccessDeniedException (default deny once policies exist).

Debian's boto3 1.26 predates the resource-policy operations, so they go through botocore's signer by hand.
"""

import json
import subprocess

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import EDDY_BIN, unique_name, wait_until
from test_security import client, error_of, send

ACCOUNT = "000000000000"


def arn(name):
    return f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}"


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


KEYS = [
    {"access_key_id": "ADMIN", "secret_access_key": "admin"},  # no policies: may do anything
    {
        "access_key_id": "WRITER",
        "secret_access_key": "writer",
        "policies": [
            policy(
                {"Effect": "Allow", "Action": ["kinesis:List*", "kinesis:Describe*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "kinesis:Describe*", "Resource": arn("*")},
                {"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords"], "Resource": arn("logs-*")},
            )
        ],
    },
    {
        "access_key_id": "NODELETE",
        "secret_access_key": "nodelete",
        "policies": [
            policy({"Effect": "Allow", "Action": "*", "Resource": "*"}),
            policy({"Sid": "keep", "Effect": "Deny", "Action": "kinesis:DeleteStream", "Resource": arn("*")}),
        ],
    },
    {
        "access_key_id": "READER",
        "secret_access_key": "reader",
        "policies": [policy({"Effect": "Allow", "Action": "kinesis:ListStreams", "Resource": "*"})],
    },
]


@pytest.fixture
def srv(eddy_factory, tmp_path):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"keys": KEYS}))
    return eddy_factory("--credentials", str(path))


def make_stream(srv, name):
    admin = client(srv, "ADMIN", "admin")
    admin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: admin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    return name


def call(srv, key, secret, op, body):
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=srv.endpoint + "/", data=data,
                     headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"Kinesis_20131202.{op}"})
    SigV4Auth(Credentials(key, secret), "kinesis", "us-east-1").add_auth(req)
    return send(srv, dict(req.headers.items()), data)


def test_allow_list_and_default_deny(srv):
    logs, other = make_stream(srv, unique_name("logs")), make_stream(srv, unique_name("other"))
    w = client(srv, "WRITER", "writer")
    assert logs in w.list_streams()["StreamNames"]
    w.describe_stream_summary(StreamName=other)
    assert w.put_record(StreamName=logs, Data=b"ok", PartitionKey="p")["ShardId"]
    code, status, message = error_of(lambda: w.put_record(StreamName=other, Data=b"no", PartitionKey="p"))
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == (f"User: arn:aws:iam::{ACCOUNT}:user/WRITER is not authorized to perform: kinesis:PutRecord "
                       f"on resource: {arn(other)} because no identity-based policy allows the kinesis:PutRecord action")
    assert error_of(lambda: w.create_stream(StreamName=unique_name("logs"), ShardCount=1))[0] == "AccessDeniedException"
    # GetRecords is checked against the stream of the iterator
    it = client(srv, "ADMIN", "admin").get_shard_iterator(StreamName=logs, ShardId="shardId-000000000000",
                                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert error_of(lambda: w.get_records(ShardIterator=it))[0] == "AccessDeniedException"
    # PutRecords (the fast path is skipped when policies apply)
    r = w.put_records(StreamName=logs, Records=[{"Data": b"a", "PartitionKey": "p"}])
    assert r["FailedRecordCount"] == 0
    assert error_of(lambda: w.put_records(StreamName=other, Records=[{"Data": b"a", "PartitionKey": "p"}]))[0] == "AccessDeniedException"


def test_explicit_deny_wins(srv):
    name = make_stream(srv, unique_name("keep"))
    nd = client(srv, "NODELETE", "nodelete")
    nd.put_record(StreamName=name, Data=b"x", PartitionKey="p")
    code, _, message = error_of(lambda: nd.delete_stream(StreamName=name))
    assert code == "AccessDeniedException" and "with an explicit deny in an identity-based policy" in message


def test_resource_policy_grants_and_denies(srv):
    name = make_stream(srv, unique_name("shared"))
    reader = client(srv, "READER", "reader")
    assert error_of(lambda: reader.put_record(StreamName=name, Data=b"x", PartitionKey="p"))[0] == "AccessDeniedException"
    doc = policy(
        {"Sid": "readerWrites", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/READER"},
         "Action": "kinesis:PutRecord", "Resource": arn(name)},
        {"Sid": "noAdminReads", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/ADMIN"},
         "Action": "kinesis:GetShardIterator", "Resource": arn(name)},
    )
    status, body = call(srv, "ADMIN", "admin", "PutResourcePolicy", {"ResourceARN": arn(name), "Policy": json.dumps(doc)})
    assert status == 200, body
    status, body = call(srv, "READER", "reader", "GetResourcePolicy", {"ResourceARN": arn(name)})
    assert status == 400 and body["__type"] == "AccessDeniedException"
    status, body = call(srv, "ADMIN", "admin", "GetResourcePolicy", {"ResourceARN": arn(name)})
    assert status == 200 and json.loads(body["Policy"]) == doc
    assert reader.put_record(StreamName=name, Data=b"via resource policy", PartitionKey="p")["ShardId"]
    admin = client(srv, "ADMIN", "admin")
    code, _, message = error_of(lambda: admin.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000",
                                                                 ShardIteratorType="TRIM_HORIZON"))
    assert code == "AccessDeniedException" and "resource-based policy" in message
    # the policy survives a restart, then goes with DeleteResourcePolicy
    srv.restart()
    assert client(srv, "READER", "reader").put_record(StreamName=name, Data=b"again", PartitionKey="p")["ShardId"]
    status, _ = call(srv, "ADMIN", "admin", "DeleteResourcePolicy", {"ResourceARN": arn(name)})
    assert status == 200
    assert error_of(lambda: client(srv, "READER", "reader").put_record(StreamName=name, Data=b"x", PartitionKey="p"))[0] == "AccessDeniedException"
    status, body = call(srv, "ADMIN", "admin", "GetResourcePolicy", {"ResourceARN": arn(name)})
    assert status == 200 and body["Policy"] == "{}"
    status, body = call(srv, "ADMIN", "admin", "DeleteResourcePolicy", {"ResourceARN": arn(name)})
    assert status == 400 and body["__type"] == "ResourceNotFoundException"


def test_consumer_resource_policy(srv):
    name = make_stream(srv, unique_name("cons"))
    admin = client(srv, "ADMIN", "admin")
    carn = admin.register_stream_consumer(StreamARN=arn(name), ConsumerName="app")["Consumer"]["ConsumerARN"]
    doc = policy({"Effect": "Deny", "Principal": "*", "Action": "kinesis:DescribeStreamConsumer", "Resource": carn})
    assert call(srv, "ADMIN", "admin", "PutResourcePolicy", {"ResourceARN": carn, "Policy": json.dumps(doc)})[0] == 200
    assert error_of(lambda: admin.describe_stream_consumer(ConsumerARN=carn))[0] == "AccessDeniedException"
    admin.describe_stream_consumer(StreamARN=arn(name), ConsumerName="app")  # names the stream, not the consumer


def test_invalid_policies_are_refused(srv, tmp_path):
    name = make_stream(srv, unique_name("bad"))
    for bad in ("not json", json.dumps(policy({"Effect": "Maybe", "Action": "*", "Resource": "*", "Principal": "*"}))):
        status, body = call(srv, "ADMIN", "admin", "PutResourcePolicy", {"ResourceARN": arn(name), "Policy": bad})
        assert status == 400 and body["__type"] == "InvalidArgumentException", body
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"keys": [{"access_key_id": "K", "secret_access_key": "s",
                                          "policies": [{"Statement": [{"Effect": "Allow"}]}]}]}))
    proc = subprocess.run([EDDY_BIN, "serve", "--port", "0", "--data", str(tmp_path / "d"), "--credentials", str(path)],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0 and "key K: policy 1" in proc.stderr
