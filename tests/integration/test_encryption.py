"""Encryption at rest: StartStreamEncryption makes the records written from then on encrypted on disk
(AES-256-GCM under per-segment data keys wrapped by the master keys of DATA/keys.json; format in
docs/format/segment.md, key file in src/store/keystore.h).

The check that matters is the plain one: the distinctive payload (and partition key) of a record put after
StartStreamEncryption cannot be found in any file under the data folder, byte for byte, yet GetRecords and
SubscribeToShard return it intact, with EncryptionType KMS; StopStreamEncryption makes new records
greppable again; restarts keep everything readable. And the failure modes: an unknown KeyId is
KMSNotFoundException, a missing or too-open key file stops the server at start with a message naming the
key, an altered ciphertext byte (with its CRC fixed up, so only the GCM tag can tell) is an
InternalFailure, never garbage.
"""

import json
import os
import queue
import struct
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import DEFAULT_ACCOUNT, DEFAULT_REGION, EddyServer, make_kinesis, stream_arn, unique_name, wait_until

SHARD0 = "shardId-000000000000"
KEY_FILE = "keys.json"


# ---------------------------------------------------------------------------------------------------
# Helpers


def secret(tag):
    """A payload that occurs nowhere else: its bytes found on disk can only come from this record."""
    return f"eddy-secret-{tag}-{uuid.uuid4().hex}".encode()


def files_holding(data_dir, needle):
    """Every file under data_dir whose raw bytes contain needle."""
    hits = []
    for root, _dirs, files in os.walk(data_dir):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                if needle in fh.read():
                    hits.append(os.path.relpath(path, data_dir))
    return hits


def status(kin, name):
    return kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]


def new_stream(kin, shards=1):
    name = unique_name("enc")
    kin.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: status(kin, name) == "ACTIVE", message=f"{name} ACTIVE")
    return name


def start_encryption(kin, name, key):
    kin.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key)
    wait_until(lambda: status(kin, name) == "ACTIVE", message=f"{name} ACTIVE after StartStreamEncryption")


def stop_encryption(kin, name, key):
    kin.stop_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key)
    wait_until(lambda: status(kin, name) == "ACTIVE", message=f"{name} ACTIVE after StopStreamEncryption")


def put(kin, name, data, pk):
    """PutRecord, then PutRecords of the same record shape: returns [(data, pk, EncryptionType)]."""
    one = kin.put_record(StreamName=name, Data=data, PartitionKey=pk)
    many = kin.put_records(StreamName=name, Records=[{"Data": data + b"-batch", "PartitionKey": pk}])
    assert many["FailedRecordCount"] == 0, many
    return [one["EncryptionType"], many["EncryptionType"]]


def read_all(kin, name, shard=SHARD0):
    """Every record of a shard from TRIM_HORIZON, through GetRecords."""
    it = kin.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    while True:
        r = kin.get_records(ShardIterator=it, Limit=1000)
        out += r["Records"]
        if not r["Records"]:
            break
        it = r["NextShardIterator"]
    return out


def summary(records):
    return [(r["Data"], r["PartitionKey"], r.get("EncryptionType", "NONE")) for r in records]


def subscribe_all(kin, name, count, shard=SHARD0, timeout=20.0):
    """The first `count` records of a shard through SubscribeToShard (from TRIM_HORIZON)."""
    sarn = stream_arn(name)
    carn = kin.register_stream_consumer(StreamARN=sarn, ConsumerName=unique_name("c"))["Consumer"]["ConsumerARN"]
    wait_until(
        lambda: kin.describe_stream_consumer(ConsumerARN=carn)["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE",
        message="consumer ACTIVE",
    )
    reply = kin.subscribe_to_shard(
        ConsumerARN=carn, ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"}
    )
    events = reply["EventStream"]
    q = queue.Queue()

    def read():
        try:
            for ev in events:
                q.put(ev)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            q.put(exc)
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count:
            item = q.get(timeout=max(0.1, deadline - time.monotonic()))
            if item is None or isinstance(item, Exception):
                raise AssertionError(f"subscription ended after {len(records)} records: {item!r}")
            records += item.get("SubscribeToShardEvent", {}).get("Records", [])
    finally:
        events.close()
    return records


def key_file(server):
    return os.path.join(server.data_dir, KEY_FILE)


def load_keys(server):
    with open(key_file(server)) as f:
        return json.load(f)


def alias_target(server, alias):
    return next(a["target"] for a in load_keys(server)["aliases"] if a["name"] == alias)


def key_arn(key_id, account=DEFAULT_ACCOUNT, region=DEFAULT_REGION):
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def start_fails(server):
    """Starts a server that must refuse to; returns its log."""
    with pytest.raises(RuntimeError) as e:
        server.start()
    return str(e.value)


# CRC-32C (Castagnoli, reflected), as the segment frames use it.
_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def frames(blob):
    """(offset, flags, index, frame bytes) of every frame of a segment file (format: docs/format/segment.md)."""
    assert blob[:8] in (b"EDDYSEG1", b"EDDYSEG2"), blob[:8]
    off = 24
    out = []
    while off + 32 <= len(blob):
        (length,) = struct.unpack_from("<I", blob, off)
        (index,) = struct.unpack_from("<Q", blob, off + 8)
        (flags,) = struct.unpack_from("<H", blob, off + 26)
        out.append((off, flags, index, blob[off : off + length]))
        off += length
    return out


def segment_files(server, name, shard=0):
    d = os.path.join(server.data_dir, "streams", name, str(shard))
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".seg"))


# ---------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def srv(eddy_factory):
    return eddy_factory("--shard-limits", "off")


@pytest.fixture
def kin(srv):
    return make_kinesis(srv.endpoint)


# ---------------------------------------------------------------------------------------------------
# Tests


def test_records_after_start_are_not_on_disk_yet_read_back(srv, kin):
    name = new_stream(kin)
    before, before_pk = secret("before"), unique_name("pk-before")
    assert put(kin, name, before, before_pk) == ["NONE", "NONE"]

    start_encryption(kin, name, "alias/aws/kinesis")
    st = os.stat(key_file(srv))
    assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    during, during_pk = secret("during"), unique_name("pk-during")
    assert put(kin, name, during, during_pk) == ["KMS", "KMS"]

    stop_encryption(kin, name, "alias/aws/kinesis")
    after, after_pk = secret("after"), unique_name("pk-after")
    assert put(kin, name, after, after_pk) == ["NONE", "NONE"]

    # Written before StartStreamEncryption and after StopStreamEncryption: in clear. In between: nowhere,
    # neither the data nor the partition key.
    assert files_holding(srv.data_dir, before) and files_holding(srv.data_dir, before_pk.encode())
    assert files_holding(srv.data_dir, after) and files_holding(srv.data_dir, after_pk.encode())
    assert files_holding(srv.data_dir, during) == []
    assert files_holding(srv.data_dir, during + b"-batch") == []
    assert files_holding(srv.data_dir, during_pk.encode()) == []

    expected = [
        (before, before_pk, "NONE"),
        (before + b"-batch", before_pk, "NONE"),
        (during, during_pk, "KMS"),
        (during + b"-batch", during_pk, "KMS"),
        (after, after_pk, "NONE"),
        (after + b"-batch", after_pk, "NONE"),
    ]
    assert summary(read_all(kin, name)) == expected
    assert summary(subscribe_all(kin, name, len(expected))) == expected

    # After a clean stop and after a crash, the same records, still encrypted on disk.
    for graceful in (True, False):
        srv.restart(graceful=graceful)
        kin2 = make_kinesis(srv.endpoint)
        assert summary(read_all(kin2, name)) == expected
        assert files_holding(srv.data_dir, during) == []


def test_key_forms_and_new_records_after_restart(srv, kin):
    """Alias name, alias ARN, key id and key ARN all name a key; records put under each after a restart are
    sealed with a fresh data key (a new KEY frame) and read back."""
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")
    key_id = alias_target(srv, "alias/aws/kinesis")
    forms = [
        f"arn:aws:kms:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:alias/aws/kinesis",
        key_id,
        key_arn(key_id),
    ]
    expected = []
    for i, form in enumerate(forms):
        start_encryption(kin, name, form)
        d = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        assert (d["EncryptionType"], d["KeyId"]) == ("KMS", form)
        data = secret(f"form{i}")
        assert put(kin, name, data, "pk")[0] == "KMS"
        expected += [(data, "pk", "KMS"), (data + b"-batch", "pk", "KMS")]
        assert files_holding(srv.data_dir, data) == []
        srv.restart()
        kin = make_kinesis(srv.endpoint)
    assert summary(read_all(kin, name)) == expected
    # one KEY frame per run that sealed records (each restart starts a new data key)
    key_frames = [f for seg in segment_files(srv, name) for f in frames(open(seg, "rb").read()) if f[1] == 2]
    assert len(key_frames) == len(forms)
    assert all(key_id.encode() in f[3] for f in key_frames)


def test_hand_added_key_by_arn(tmp_path):
    """A key added to the key file by hand (as documented) is usable by its key ARN and its alias; eddy adds
    its default key to such a file without losing the hand-made one."""
    server = EddyServer(tmp_path / "data", args=["--shard-limits", "off"])
    os.makedirs(server.data_dir)
    mine = str(uuid.uuid4())
    with open(key_file(server), "w") as f:
        json.dump(
            {
                "format": "eddy-keys-1",
                "keys": [{"id": mine, "material": os.urandom(32).hex()}],
                "aliases": [{"name": "alias/team-a", "target": mine}],
            },
            f,
        )
    os.chmod(key_file(server), 0o600)
    try:
        server.start()
        kin = make_kinesis(server.endpoint)
        a, b = new_stream(kin), new_stream(kin)
        start_encryption(kin, a, key_arn(mine))
        start_encryption(kin, b, "alias/team-a")
        da, db = secret("a"), secret("b")
        put(kin, a, da, "pk")
        put(kin, b, db, "pk")
        start_encryption(kin, a, "alias/aws/kinesis")  # creates the default key in the same file
        keys = load_keys(server)
        assert mine in [k["id"] for k in keys["keys"]] and len(keys["keys"]) == 2
        assert {x["name"] for x in keys["aliases"]} == {"alias/team-a", "alias/aws/kinesis"}
        assert files_holding(server.data_dir, da) == [] and files_holding(server.data_dir, db) == []
        server.restart()
        kin = make_kinesis(server.endpoint)
        assert summary(read_all(kin, a)) == [(da, "pk", "KMS"), (da + b"-batch", "pk", "KMS")]
        assert summary(read_all(kin, b)) == [(db, "pk", "KMS"), (db + b"-batch", "pk", "KMS")]
    finally:
        server.cleanup()


def test_unknown_key_is_kms_not_found(srv, kin):
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")  # so that a key file exists
    key_id = alias_target(srv, "alias/aws/kinesis")
    unknown = [
        "alias/does-not-exist",
        str(uuid.uuid4()),
        key_arn(str(uuid.uuid4())),
        f"arn:aws:kms:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:alias/nope",
        key_arn(key_id, account="123456789012"),  # the right key id in another account is another key
        key_arn(key_id, region="eu-west-1"),
        "not-a-key",
    ]
    for ref in unknown:
        with pytest.raises(ClientError) as e:
            kin.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=ref)
        code, message = error_code(e)
        assert code == "KMSNotFoundException", (ref, code, message)
        assert ref in message
    # the stream's setting did not change
    d = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert (d["EncryptionType"], d["KeyId"]) == ("KMS", "alias/aws/kinesis")


def test_missing_key_file_refuses_to_start(srv, kin):
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")
    data = secret("keep")
    put(kin, name, data, "pk")
    key_id = alias_target(srv, "alias/aws/kinesis")
    srv.stop()
    saved = open(key_file(srv), "rb").read()
    os.unlink(key_file(srv))

    log = start_fails(srv)
    assert key_id in log and KEY_FILE in log and "backup" in log, log
    assert not os.path.exists(key_file(srv)), "a failed start creates no new key file"

    # restored from the backup: everything is there again
    with open(key_file(srv), "wb") as f:
        f.write(saved)
    os.chmod(key_file(srv), 0o600)
    srv.start()
    kin = make_kinesis(srv.endpoint)
    assert summary(read_all(kin, name)) == [(data, "pk", "KMS"), (data + b"-batch", "pk", "KMS")]


def test_lost_key_file_is_not_replaced_behind_the_users_back(srv, kin):
    """A stream set to encrypt, with no encrypted record yet, and a lost key file: eddy starts, makes no new
    key by itself, and puts fail with KMSNotFoundException rather than store records in clear. A new
    StartStreamEncryption makes a new default key."""
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")
    srv.stop()
    os.unlink(key_file(srv))
    srv.start()
    kin = make_kinesis(srv.endpoint)
    assert not os.path.exists(key_file(srv))
    data = secret("nowhere")
    with pytest.raises(ClientError) as e:
        kin.put_record(StreamName=name, Data=data, PartitionKey="pk")
    assert error_code(e)[0] == "KMSNotFoundException"
    r = kin.put_records(StreamName=name, Records=[{"Data": data, "PartitionKey": "pk"}])
    assert r["FailedRecordCount"] == 1 and r["Records"][0]["ErrorCode"] == "InternalFailure"
    assert files_holding(srv.data_dir, data) == []
    assert read_all(kin, name) == []
    assert any("puts to it fail until the key is back" in line for line in srv.log), srv.tail()

    start_encryption(kin, name, "alias/aws/kinesis")
    assert os.path.exists(key_file(srv))
    assert put(kin, name, data, "pk") == ["KMS", "KMS"]
    assert files_holding(srv.data_dir, data) == []
    assert summary(read_all(kin, name)) == [(data, "pk", "KMS"), (data + b"-batch", "pk", "KMS")]


def test_wrong_key_file_refuses_to_start(srv, kin):
    """A key file with another key under the same id (a mix-up of backups): refused, naming the key."""
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")
    put(kin, name, secret("x"), "pk")
    srv.stop()
    keys = load_keys(srv)
    key_id = keys["keys"][0]["id"]
    keys["keys"][0]["material"] = os.urandom(32).hex()
    del keys["keys"][0]["check"]  # a hand edit without the check value: caught when unwrapping
    with open(key_file(srv), "w") as f:
        json.dump(keys, f)
    log = start_fails(srv)
    assert key_id in log and "does not unwrap" in log, log

    keys["keys"][0]["check"] = "0000000000000000"  # with a check value: caught when loading the file
    with open(key_file(srv), "w") as f:
        json.dump(keys, f)
    log = start_fails(srv)
    assert key_id in log and "check value" in log, log


def test_key_file_readable_by_others_refuses_to_start(srv, kin):
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")
    srv.stop()
    os.chmod(key_file(srv), 0o640)
    log = start_fails(srv)
    assert KEY_FILE in log and "chmod 600" in log, log
    os.chmod(key_file(srv), 0o600)
    srv.start()


def test_altered_ciphertext_is_an_error_not_garbage(srv, kin):
    name = new_stream(kin)
    start_encryption(kin, name, "alias/aws/kinesis")
    put(kin, name, secret("tamper"), "pk")
    assert len(read_all(kin, name)) == 2
    srv.stop()

    (seg,) = segment_files(srv, name)
    blob = bytearray(open(seg, "rb").read())
    sealed = [f for f in frames(bytes(blob)) if f[1] == 1]
    assert len(sealed) == 2
    off, _flags, _index, frame = sealed[1]
    blob[off + 40] ^= 0x01  # a ciphertext byte of the second record
    struct.pack_into("<I", blob, off + 4, crc32c(bytes(blob[off + 8 : off + len(frame)])))
    with open(seg, "wb") as f:
        f.write(blob)

    srv.start()  # the crc is right, so recovery keeps the frame: only the GCM tag can tell
    kin = make_kinesis(srv.endpoint)
    it = kin.get_shard_iterator(StreamName=name, ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    with pytest.raises(ClientError) as e:
        kin.get_records(ShardIterator=it, Limit=10)
    assert error_code(e)[0] == "InternalFailure"
    # the record before it is still served on its own
    r = kin.get_records(ShardIterator=it, Limit=1)
    assert len(r["Records"]) == 1 and r["Records"][0]["EncryptionType"] == "KMS"
    assert any("fails authentication" in line for line in srv.log), srv.tail()
