"""Enhanced fan-out through boto3: RegisterStreamConsumer, DeregisterStreamConsumer, DescribeStreamConsumer,
ListStreamConsumers, DeleteStream's EnforceConsumerDeletion, and SubscribeToShard (an HTTP/1.1 chunked
event stream, which boto3 exposes as an iterable ``r["EventStream"]``).

Expected behaviour is the AWS Kinesis Data Streams API reference; the error messages are eddy's (see
src/server/api/consumers.c, subscribe.c and records.c). Where eddy disagrees with AWS the test asserts AWS's
behaviour and is marked xfail(strict=True).

A subscription is read by a thread of its own (``Subscription``) that hands each event to the test through
a queue, so a test waits for events with a deadline and never blocks forever on the stream. Timing facts
the tests rely on: one subscription per consumer and shard may start every 5 seconds (tests that need
several subscriptions at once use several consumers), and an idle subscription gets an empty event about
every 5 seconds (the heartbeat). Nothing sleeps to synchronise: waits poll or block with a deadline.
"""

import base64
import datetime
import math
import queue
import re
import socket
import threading
import time

import pytest
from botocore.exceptions import ClientError

from conftest import DEFAULT_ACCOUNT, make_kinesis, stream_arn, unique_name, wait_until
from eddyproc import shard_id

CONSUMERS_PER_STREAM = 20
SHARD0 = shard_id(0)
SEQ_RE = re.compile(r"0|[1-9][0-9]{0,128}")


# ---------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def srv(eddy_factory):
    """A server without per-shard throughput limits and with no state delay."""
    return eddy_factory("--shard-limits", "off")


@pytest.fixture
def kin(srv):
    return make_kinesis(srv.endpoint)


@pytest.fixture
def kin_nv(srv):
    """Client-side parameter validation off, to reach the server's own validation."""
    return make_kinesis(srv.endpoint, validate=False)


def error_of(excinfo):
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def expect_error(fn, code, message=None, **kwargs):
    """Calls fn(**kwargs), asserts a ClientError with `code` (and `message` when given); returns the message."""
    with pytest.raises(ClientError) as e:
        fn(**kwargs)
    got_code, got_message = error_of(e)
    assert got_code == code, f"{got_code}: {got_message}"
    if message is not None:
        assert got_message == message
    return got_message


def new_stream(kin, shards=1):
    """Creates a stream, waits until it is ACTIVE; returns (name, ARN)."""
    name = unique_name("fo")
    kin.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: stream_status(kin, name) == "ACTIVE", message=f"{name} ACTIVE")
    return name, stream_arn(name)


def stream_status(kin, name):
    return kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]


def register(kin, sarn, name=None):
    """Registers a consumer; returns the reply's Consumer."""
    return kin.register_stream_consumer(StreamARN=sarn, ConsumerName=name or unique_name("c"))["Consumer"]


def consumer_status(kin, carn):
    """The consumer's status, or None once it is gone."""
    try:
        return kin.describe_stream_consumer(ConsumerARN=carn)["ConsumerDescription"]["ConsumerStatus"]
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise


def active_consumer(kin, sarn, name=None):
    """Registers a consumer and waits until it is ACTIVE; returns its ARN."""
    arn = register(kin, sarn, name)["ConsumerARN"]
    wait_until(lambda: consumer_status(kin, arn) == "ACTIVE", message="consumer ACTIVE")
    return arn


def list_consumers(kin, sarn, page_size=None):
    """Every consumer of a stream, following NextToken; returns (consumers, number of pages)."""
    out, pages, token = [], 0, None
    while True:
        kwargs = {"StreamARN": sarn}
        if page_size is not None:
            kwargs["MaxResults"] = page_size
        if token is not None:
            kwargs["NextToken"] = token
        reply = kin.list_stream_consumers(**kwargs)
        pages += 1
        out += reply["Consumers"]
        token = reply.get("NextToken")
        if not token:
            return out, pages
        assert pages < 100, "ListStreamConsumers never stopped paging"


def consumer_arn_re(stream, consumer):
    return re.compile(
        rf"arn:aws:kinesis:us-east-1:{DEFAULT_ACCOUNT}:stream/{re.escape(stream)}/consumer/{re.escape(consumer)}:(\d+)"
    )


def put_batch(kin, name, datas, pk="p"):
    """PutRecords; returns [(SequenceNumber, PartitionKey, Data)] in request order."""
    reply = kin.put_records(StreamName=name, Records=[{"Data": d, "PartitionKey": pk} for d in datas])
    assert reply.get("FailedRecordCount", 0) == 0, reply
    return [(r["SequenceNumber"], pk, d) for r, d in zip(reply["Records"], datas)]


def put_some(kin, name, n, prefix="r"):
    return put_batch(kin, name, [f"{prefix}-{i}".encode() for i in range(n)])


def put_to(kin, name, items, pk="p"):
    """PutRecords of (data, explicit hash key) pairs; returns [(SequenceNumber, PartitionKey, Data, ShardId)]."""
    reply = kin.put_records(
        StreamName=name, Records=[{"Data": d, "PartitionKey": pk, "ExplicitHashKey": str(k)} for d, k in items]
    )
    assert reply.get("FailedRecordCount", 0) == 0, reply
    return [(r["SequenceNumber"], pk, d, r["ShardId"]) for r, (d, _) in zip(reply["Records"], items)]


def triples(records):
    return [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in records]


def wait_for_next_second():
    """Polls the wall clock until it has crossed the next whole second; returns that second (epoch int)."""
    boundary = math.floor(time.time()) + 1
    wait_until(lambda: time.time() >= boundary + 0.002, timeout=3, message="the next whole second")
    return boundary


_END = object()


class Subscription:
    """One SubscribeToShard call. A reader thread iterates boto3's EventStream and queues each
    SubscribeToShardEvent; the test takes them with deadlines. `events` and `records` hold everything taken
    so far; `ended` is set once the event stream stopped, `error` holds what it raised (None when it simply
    ended). close() shuts the socket down so that neither the thread nor the server's graceful stop waits."""

    def __init__(self, kin, consumer_arn, shard, position):
        reply = kin.subscribe_to_shard(ConsumerARN=consumer_arn, ShardId=shard, StartingPosition=position)
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
        self._stream = reply["EventStream"]
        self._queue = queue.Queue()
        self._closing = False
        self.events = []
        self.records = []
        self.ended = False
        self.error = None
        self._thread = threading.Thread(target=self._read, name="subscription", daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for event in self._stream:
                self._queue.put(event)
        except Exception as exc:  # noqa: BLE001 - reported to the test through `error`
            if not self._closing:
                self.error = exc
        self._queue.put(_END)

    def next_event(self, timeout=10.0):
        """The next SubscribeToShardEvent (checked for its required members), or None once the stream ended."""
        if self.ended:
            return None
        try:
            item = self._queue.get(timeout=max(timeout, 0))
        except queue.Empty:
            raise AssertionError(f"no event within {timeout:.1f}s ({len(self.records)} records so far)") from None
        if item is _END:
            self.ended = True
            return None
        assert list(item) == ["SubscribeToShardEvent"], item
        event = item["SubscribeToShardEvent"]
        assert isinstance(event["Records"], list)
        assert SEQ_RE.fullmatch(event["ContinuationSequenceNumber"]), event
        assert isinstance(event["MillisBehindLatest"], int) and event["MillisBehindLatest"] >= 0, event
        self.events.append(event)
        self.records.extend(event["Records"])
        return event

    def wait_records(self, n, timeout=10.0):
        """Takes events until at least n records arrived in all; returns every record so far."""
        deadline = time.monotonic() + timeout
        while len(self.records) < n:
            event = self.next_event(deadline - time.monotonic())
            assert event is not None, f"the subscription ended after {len(self.records)} of {n} records: {self.error!r}"
        return self.records

    def wait_heartbeat(self, timeout=8.0):
        """Takes events until an empty one arrives; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(deadline - time.monotonic())
            assert event is not None, f"the subscription ended: {self.error!r}"
            if not event["Records"]:
                return event

    def wait_end(self, timeout=10.0):
        """Takes events until the stream ends; returns the error it ended with (None for a clean end)."""
        deadline = time.monotonic() + timeout
        while self.next_event(deadline - time.monotonic()) is not None:
            pass
        return self.error

    def close(self):
        self._closing = True
        conn = getattr(self._stream._raw_stream, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._stream.close()


@pytest.fixture
def subscribe(eddy_factory):
    """subscribe(kin, consumer_arn, shard=SHARD0, **StartingPosition) -> a Subscription; all are closed
    before the servers stop."""
    subs = []

    def make(kin, consumer_arn, shard=SHARD0, **position):
        sub = Subscription(kin, consumer_arn, shard, position)
        subs.append(sub)
        return sub

    yield make
    for sub in subs:
        sub.close()


def subscribe_when_allowed(subscribe, kin, consumer_arn, shard=SHARD0, timeout=10.0, **position):
    """Subscribes, retrying while the server refuses with ResourceInUseException (the 5-second window)."""

    def attempt():
        try:
            return subscribe(kin, consumer_arn, shard, **position)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
            return None

    return wait_until(attempt, timeout=timeout, interval=0.1, message="SubscribeToShard accepted")


# ---------------------------------------------------------------------------------------------------
# RegisterStreamConsumer


def test_register_reply_shape(kin):
    name, sarn = new_stream(kin)
    before = time.time()
    consumer = register(kin, sarn, "reader.one_2-x")
    after = time.time()
    assert set(consumer) == {"ConsumerName", "ConsumerARN", "ConsumerStatus", "ConsumerCreationTimestamp"}
    assert consumer["ConsumerName"] == "reader.one_2-x"
    assert consumer["ConsumerStatus"] == "ACTIVE"  # no state delay on this server
    created = consumer["ConsumerCreationTimestamp"]
    assert isinstance(created, datetime.datetime)
    assert before - 1 <= created.timestamp() <= after + 1
    m = consumer_arn_re(name, "reader.one_2-x").fullmatch(consumer["ConsumerARN"])
    assert m, consumer["ConsumerARN"]
    assert int(m.group(1)) == int(created.timestamp())
    # Describe agrees with the reply.
    desc = kin.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    assert desc == dict(consumer, StreamARN=sarn)


def test_register_creating_then_active(eddy_factory, subscribe):
    """With a state delay the consumer is CREATING first (and cannot subscribe yet), then ACTIVE."""
    srv = eddy_factory("--shard-limits", "off", state_delay_ms=1000)
    kin = make_kinesis(srv.endpoint)
    name, sarn = new_stream(kin)
    consumer = register(kin, sarn, "slow")
    arn = consumer["ConsumerARN"]
    assert consumer["ConsumerStatus"] == "CREATING"
    assert consumer_status(kin, arn) == "CREATING"
    listed, _ = list_consumers(kin, sarn)
    assert [(c["ConsumerARN"], c["ConsumerStatus"]) for c in listed] == [(arn, "CREATING")]
    expect_error(
        kin.subscribe_to_shard,
        "ResourceInUseException",
        f"Consumer {arn} is not in ACTIVE state, instead in state CREATING.",
        ConsumerARN=arn,
        ShardId=SHARD0,
        StartingPosition={"Type": "TRIM_HORIZON"},
    )
    wait_until(lambda: consumer_status(kin, arn) == "ACTIVE", message="consumer ACTIVE")
    # The ARN does not change with the status, and an ACTIVE consumer can subscribe.
    assert kin.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerCreationTimestamp"] == (
        consumer["ConsumerCreationTimestamp"]
    )
    written = put_some(kin, name, 2)
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    assert triples(sub.wait_records(2)) == written


def test_register_duplicate_name(kin):
    name, sarn = new_stream(kin)
    register(kin, sarn, "dup")
    expect_error(
        kin.register_stream_consumer,
        "ResourceInUseException",
        f"Consumer dup under stream {name} already exists for account {DEFAULT_ACCOUNT}.",
        StreamARN=sarn,
        ConsumerName="dup",
    )
    # Names only need to be unique within a stream.
    _, other = new_stream(kin)
    assert register(kin, other, "dup")["ConsumerName"] == "dup"


def test_register_21st_consumer_is_refused(kin):
    name, sarn = new_stream(kin)
    arns = [register(kin, sarn, f"c{i:02d}")["ConsumerARN"] for i in range(CONSUMERS_PER_STREAM)]
    expect_error(
        kin.register_stream_consumer,
        "LimitExceededException",
        f"Consumer limit of 20 for stream {name} under account {DEFAULT_ACCOUNT} has been reached.",
        StreamARN=sarn,
        ConsumerName="c20",
    )
    # Deregistering one makes room again.
    kin.deregister_stream_consumer(ConsumerARN=arns[0])
    register(kin, sarn, "c20")
    assert len(list_consumers(kin, sarn)[0]) == CONSUMERS_PER_STREAM


def test_register_at_most_five_creating(eddy_factory):
    srv = eddy_factory("--shard-limits", "off", state_delay_ms=2000)
    kin = make_kinesis(srv.endpoint)
    _, sarn = new_stream(kin)
    for i in range(5):
        assert register(kin, sarn, f"c{i}")["ConsumerStatus"] == "CREATING"
    expect_error(kin.register_stream_consumer, "LimitExceededException", StreamARN=sarn, ConsumerName="c5")


def test_register_unknown_stream(kin):
    name = unique_name("missing")
    expect_error(
        kin.register_stream_consumer,
        "ResourceNotFoundException",
        f"Stream {name} under account {DEFAULT_ACCOUNT} not found.",
        StreamARN=stream_arn(name),
        ConsumerName="c",
    )


def test_register_with_tags_is_accepted(srv, kin):
    """Debian's boto3 predates RegisterStreamConsumer's Tags: sent as raw JSON."""
    name, sarn = new_stream(kin)
    reply = srv.raw.ok(
        "RegisterStreamConsumer", {"StreamARN": sarn, "ConsumerName": "tagged", "Tags": {"team": "a", "env": ""}}
    )
    assert reply["Consumer"]["ConsumerName"] == "tagged"
    assert consumer_arn_re(name, "tagged").fullmatch(reply["Consumer"]["ConsumerARN"])


def test_register_tags_are_listed_on_the_consumer(srv, kin):
    _, sarn = new_stream(kin)
    reply = srv.raw.ok("RegisterStreamConsumer", {"StreamARN": sarn, "ConsumerName": "tagged", "Tags": {"team": "a"}})
    carn = reply["Consumer"]["ConsumerARN"]
    tags = srv.raw.ok("ListTagsForResource", {"ResourceARN": carn})["Tags"]
    assert tags == [{"Key": "team", "Value": "a"}]
    # TagResource / UntagResource on the consumer leave the stream's tags alone
    srv.raw.ok("TagResource", {"ResourceARN": carn, "Tags": {"env": "ci", "team": "b"}})
    srv.raw.ok("UntagResource", {"ResourceARN": carn, "TagKeys": ["env"]})
    assert srv.raw.ok("ListTagsForResource", {"ResourceARN": carn})["Tags"] == [{"Key": "team", "Value": "b"}]
    assert srv.raw.ok("ListTagsForResource", {"ResourceARN": sarn})["Tags"] == []
    srv.restart()
    assert srv.raw.ok("ListTagsForResource", {"ResourceARN": carn})["Tags"] == [{"Key": "team", "Value": "b"}]
    # a consumer registered again under the same name starts without tags
    srv.raw.ok("DeregisterStreamConsumer", {"ConsumerARN": carn})
    assert srv.raw.error("ListTagsForResource", {"ResourceARN": carn})[0] == "ResourceNotFoundException"


# ---------------------------------------------------------------------------------------------------
# DescribeStreamConsumer


def test_describe_by_arn_and_by_name(kin):
    name, sarn = new_stream(kin)
    consumer = register(kin, sarn, "desc")
    by_arn = kin.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    by_name = kin.describe_stream_consumer(StreamARN=sarn, ConsumerName="desc")["ConsumerDescription"]
    assert by_arn == by_name
    assert by_arn["StreamARN"] == sarn
    for key in ("ConsumerName", "ConsumerARN", "ConsumerStatus", "ConsumerCreationTimestamp"):
        assert by_arn[key] == consumer[key]


def test_describe_needs_arn_or_stream_and_name(kin, kin_nv):
    _, sarn = new_stream(kin)
    register(kin, sarn, "c")
    message = "Either ConsumerARN or both ConsumerName and StreamARN must be provided."
    expect_error(kin_nv.describe_stream_consumer, "InvalidArgumentException", message)
    expect_error(kin_nv.describe_stream_consumer, "InvalidArgumentException", message, ConsumerName="c")
    expect_error(kin_nv.describe_stream_consumer, "InvalidArgumentException", message, StreamARN=sarn)


def test_describe_unknown_consumer(kin):
    name, sarn = new_stream(kin)
    consumer = register(kin, sarn, "known")
    expect_error(
        kin.describe_stream_consumer,
        "ResourceNotFoundException",
        f"Consumer nobody under stream {name} under account {DEFAULT_ACCOUNT} not found.",
        StreamARN=sarn,
        ConsumerName="nobody",
    )
    unknown = f"{sarn}/consumer/nobody:{int(time.time())}"
    expect_error(
        kin.describe_stream_consumer, "ResourceNotFoundException", f"Consumer {unknown} not found.", ConsumerARN=unknown
    )
    missing_stream = f"{stream_arn(unique_name('missing'))}/consumer/known:1"
    expect_error(
        kin.describe_stream_consumer,
        "ResourceNotFoundException",
        f"Consumer {missing_stream} not found.",
        ConsumerARN=missing_stream,
    )
    # The creation seconds are part of the identity: a different number names another (unknown) consumer.
    arn = consumer["ConsumerARN"]
    prefix, secs = arn.rsplit(":", 1)
    for wrong in (int(secs) - 1, int(secs) + 1):
        stale = f"{prefix}:{wrong}"
        expect_error(
            kin.describe_stream_consumer, "ResourceNotFoundException", f"Consumer {stale} not found.", ConsumerARN=stale
        )
    expect_error(
        kin.describe_stream_consumer,
        "ResourceNotFoundException",
        StreamARN=stream_arn(unique_name("x")),
        ConsumerName="known",
    )


# ---------------------------------------------------------------------------------------------------
# ListStreamConsumers


def test_list_empty(kin):
    _, sarn = new_stream(kin)
    reply = kin.list_stream_consumers(StreamARN=sarn)
    assert reply["Consumers"] == []
    assert "NextToken" not in reply


def test_list_paging_returns_every_consumer_once(kin):
    name, sarn = new_stream(kin)
    registered = [register(kin, sarn, f"p{i}") for i in range(7)]
    everything, pages = list_consumers(kin, sarn)
    assert pages == 1
    assert [c["ConsumerName"] for c in everything] == [f"p{i}" for i in range(7)]
    for c in everything:
        assert set(c) == {"ConsumerName", "ConsumerARN", "ConsumerStatus", "ConsumerCreationTimestamp"}
    assert {c["ConsumerARN"] for c in everything} == {c["ConsumerARN"] for c in registered}
    for size, want_pages in ((1, 7), (3, 3), (6, 2), (7, 1), (100, 1)):
        paged, pages = list_consumers(kin, sarn, size)
        assert paged == everything, size
        assert pages == want_pages, size
    first = kin.list_stream_consumers(StreamARN=sarn, MaxResults=3)
    assert len(first["Consumers"]) == 3 and first["NextToken"]
    # StreamCreationTimestamp tells apart streams that had the same name.
    created = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    assert kin.list_stream_consumers(StreamARN=sarn, StreamCreationTimestamp=created)["Consumers"] == everything
    expect_error(
        kin.list_stream_consumers,
        "ResourceNotFoundException",
        StreamARN=sarn,
        StreamCreationTimestamp=created - datetime.timedelta(days=1),
    )


def test_list_invalid_next_token(kin):
    _, sarn = new_stream(kin)
    _, other = new_stream(kin)
    for i in range(3):
        register(kin, sarn, f"c{i}")
        register(kin, other, f"c{i}")
    token = kin.list_stream_consumers(StreamARN=sarn, MaxResults=1)["NextToken"]
    for bad in ("not-a-token", base64.b64encode(b"garbage").decode(), token[:-4], "x" * 200):
        expect_error(
            kin.list_stream_consumers, "InvalidArgumentException", "Invalid NextToken.", StreamARN=sarn, NextToken=bad
        )
    # A token belongs to the stream it was made for.
    expect_error(
        kin.list_stream_consumers, "InvalidArgumentException", "Invalid NextToken.", StreamARN=other, NextToken=token
    )
    # The good token still works after the failures.
    assert len(kin.list_stream_consumers(StreamARN=sarn, NextToken=token)["Consumers"]) == 2


# ---------------------------------------------------------------------------------------------------
# DeregisterStreamConsumer


def test_deregister_by_arn_and_by_name(kin):
    name, sarn = new_stream(kin)
    a = register(kin, sarn, "a")
    register(kin, sarn, "b")
    c = register(kin, sarn, "c")
    kin.deregister_stream_consumer(ConsumerARN=a["ConsumerARN"])
    kin.deregister_stream_consumer(StreamARN=sarn, ConsumerName="b")
    assert [x["ConsumerARN"] for x in list_consumers(kin, sarn)[0]] == [c["ConsumerARN"]]
    assert consumer_status(kin, a["ConsumerARN"]) is None
    expect_error(kin.describe_stream_consumer, "ResourceNotFoundException", StreamARN=sarn, ConsumerName="b")
    # Deregistering again: the consumer is not found, by either form.
    expect_error(
        kin.deregister_stream_consumer,
        "ResourceNotFoundException",
        f"Consumer {a['ConsumerARN']} not found.",
        ConsumerARN=a["ConsumerARN"],
    )
    expect_error(
        kin.deregister_stream_consumer,
        "ResourceNotFoundException",
        f"Consumer b under stream {name} under account {DEFAULT_ACCOUNT} not found.",
        StreamARN=sarn,
        ConsumerName="b",
    )
    # The name is free again; the new registration is a new consumer.
    again = register(kin, sarn, "b")
    assert again["ConsumerStatus"] == "ACTIVE"
    assert [x["ConsumerName"] for x in list_consumers(kin, sarn)[0]] == ["c", "b"]


def test_deregister_needs_arn_or_stream_and_name(kin, kin_nv):
    _, sarn = new_stream(kin)
    register(kin, sarn, "c")
    expect_error(kin_nv.deregister_stream_consumer, "InvalidArgumentException", ConsumerName="c")
    assert len(list_consumers(kin, sarn)[0]) == 1


def test_deregister_deleting_then_gone(eddy_factory):
    srv = eddy_factory("--shard-limits", "off", state_delay_ms=1000)
    kin = make_kinesis(srv.endpoint)
    _, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn, "leaving")
    kin.deregister_stream_consumer(ConsumerARN=arn)
    assert consumer_status(kin, arn) == "DELETING"
    listed = list_consumers(kin, sarn)[0]
    assert [(c["ConsumerName"], c["ConsumerStatus"]) for c in listed] == [("leaving", "DELETING")]
    wait_until(lambda: consumer_status(kin, arn) is None, message="consumer gone")
    assert list_consumers(kin, sarn)[0] == []


# ---------------------------------------------------------------------------------------------------
# DeleteStream with consumers, restarts


def test_delete_stream_with_consumers(kin):
    name, sarn = new_stream(kin)
    arns = [register(kin, sarn, f"c{i}")["ConsumerARN"] for i in range(3)]
    message = (
        f"Stream {name} under account {DEFAULT_ACCOUNT} has registered consumers. Use EnforceConsumerDeletion to "
        "delete the stream with its consumers."
    )
    expect_error(kin.delete_stream, "ResourceInUseException", message, StreamName=name)
    expect_error(kin.delete_stream, "ResourceInUseException", message, StreamName=name, EnforceConsumerDeletion=False)
    assert stream_status(kin, name) == "ACTIVE"
    assert len(list_consumers(kin, sarn)[0]) == 3
    kin.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    expect_error(kin.describe_stream_summary, "ResourceNotFoundException", StreamName=name)
    for arn in arns:
        assert consumer_status(kin, arn) is None
    # A new stream of the same name starts without consumers; the old names are free.
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: stream_status(kin, name) == "ACTIVE")
    assert list_consumers(kin, sarn)[0] == []
    for arn in arns:
        assert consumer_status(kin, arn) is None
    register(kin, sarn, "c0")
    # Without consumers, EnforceConsumerDeletion is not needed.
    other, _ = new_stream(kin)
    kin.delete_stream(StreamName=other)
    wait_until(lambda: other not in kin.list_streams()["StreamNames"], message=f"{other} deleted")


def test_consumers_survive_restart(srv, subscribe):
    kin = make_kinesis(srv.endpoint)
    name, sarn = new_stream(kin)
    consumers = [register(kin, sarn, f"c{i}") for i in range(3)]
    kin.deregister_stream_consumer(ConsumerARN=consumers[1]["ConsumerARN"])
    written = put_some(kin, name, 3)
    before, _ = list_consumers(kin, sarn)
    srv.restart()
    kin = make_kinesis(srv.endpoint)
    after, _ = list_consumers(kin, sarn)
    assert after == before
    assert [c["ConsumerARN"] for c in after] == [consumers[0]["ConsumerARN"], consumers[2]["ConsumerARN"]]
    desc = kin.describe_stream_consumer(ConsumerARN=consumers[2]["ConsumerARN"])["ConsumerDescription"]
    assert desc["ConsumerCreationTimestamp"] == consumers[2]["ConsumerCreationTimestamp"]
    assert consumer_status(kin, consumers[1]["ConsumerARN"]) is None
    # The restarted server still counts and checks them, and subscriptions work.
    expect_error(kin.register_stream_consumer, "ResourceInUseException", StreamARN=sarn, ConsumerName="c0")
    sub = subscribe(kin, consumers[0]["ConsumerARN"], Type="TRIM_HORIZON")
    assert triples(sub.wait_records(3)) == written


# ---------------------------------------------------------------------------------------------------
# SubscribeToShard: delivery and starting positions


def test_subscribe_trim_horizon_before_and_after(kin, subscribe):
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    before = put_batch(kin, name, [bytes(range(256)), b"", b"\x00" * 1000, "héllo".encode()], pk="ключ")
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    assert triples(sub.wait_records(len(before))) == before
    after = put_some(kin, name, 5, prefix="after")
    for i in range(3):
        after += put_batch(kin, name, [f"single-{i}".encode()], pk=f"pk{i}")
    records = sub.wait_records(len(before) + len(after))
    assert triples(records) == before + after
    seqs = [int(r["SequenceNumber"]) for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for r in records:
        assert isinstance(r["ApproximateArrivalTimestamp"], datetime.datetime)
    # Once caught up the consumer is not behind, and nothing more arrives.
    assert sub.events[-1]["MillisBehindLatest"] == 0
    assert not sub.ended and sub.error is None


def test_subscribe_at_and_after_sequence_number(kin, subscribe):
    name, sarn = new_stream(kin)
    written = put_some(kin, name, 6)
    at = subscribe(kin, active_consumer(kin, sarn), Type="AT_SEQUENCE_NUMBER", SequenceNumber=written[2][0])
    after = subscribe(kin, active_consumer(kin, sarn), Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=written[2][0])
    last = subscribe(kin, active_consumer(kin, sarn), Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=written[-1][0])
    assert triples(at.wait_records(4)) == written[2:]
    assert triples(after.wait_records(3)) == written[3:]
    more = put_some(kin, name, 2, prefix="more")
    assert triples(at.wait_records(6)) == written[2:] + more
    assert triples(after.wait_records(5)) == written[3:] + more
    assert triples(last.wait_records(2)) == more


def test_subscribe_latest(kin, subscribe):
    name, sarn = new_stream(kin)
    put_some(kin, name, 4, prefix="old")
    sub = subscribe(kin, active_consumer(kin, sarn), Type="LATEST")
    new = put_some(kin, name, 3, prefix="new")
    assert triples(sub.wait_records(3)) == new


def test_subscribe_at_timestamp(kin, subscribe):
    """boto3 sends Timestamp as whole epoch seconds."""
    name, sarn = new_stream(kin)
    early = put_some(kin, name, 3, prefix="early")
    boundary = wait_for_next_second()
    late = put_some(kin, name, 2, prefix="late")
    at = datetime.datetime.fromtimestamp(boundary, datetime.timezone.utc)
    sub = subscribe(kin, active_consumer(kin, sarn), Type="AT_TIMESTAMP", Timestamp=at)
    assert triples(sub.wait_records(2)) == late
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    whole = subscribe(kin, active_consumer(kin, sarn), Type="AT_TIMESTAMP", Timestamp=past)
    assert triples(whole.wait_records(5)) == early + late
    # A timestamp in the future starts at the tip: only what is written afterwards.
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    tip = subscribe(kin, active_consumer(kin, sarn), Type="AT_TIMESTAMP", Timestamp=future)
    newest = put_some(kin, name, 2, prefix="newest")
    assert triples(tip.wait_records(2)) == newest
    assert triples(sub.wait_records(4)) == late + newest


def test_subscribe_multi_shard_routes_per_shard(kin, subscribe):
    """Each shard's subscription gets exactly the records routed to that shard."""
    name, sarn = new_stream(kin, shards=3)
    arn = active_consumer(kin, sarn)
    subs = {sid: subscribe(kin, arn, sid, Type="TRIM_HORIZON") for sid in (shard_id(0), shard_id(1), shard_id(2))}
    reply = kin.put_records(
        StreamName=name, Records=[{"Data": f"d{i}".encode(), "PartitionKey": f"k{i}"} for i in range(60)]
    )
    expected = {sid: [] for sid in subs}
    for i, r in enumerate(reply["Records"]):
        expected[r["ShardId"]].append((r["SequenceNumber"], f"k{i}", f"d{i}".encode()))
    assert all(expected.values()), "the 60 keys should spread over all 3 shards"
    for sid, sub in subs.items():
        assert triples(sub.wait_records(len(expected[sid]))) == expected[sid], sid


# ---------------------------------------------------------------------------------------------------
# SubscribeToShard: continuation, heartbeats, one subscription per consumer and shard


def test_continuation_heartbeat_and_takeover(kin, subscribe):
    """A subscription resumed with AFTER_SEQUENCE_NUMBER = a ContinuationSequenceNumber loses and duplicates
    nothing; an idle subscription gets an empty event (heartbeat) within ~5-6 s; a subscription started 5 s
    or more after the previous one takes over, and the previous one ends."""
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    other_arn = active_consumer(kin, sarn)
    first = subscribe(kin, arn, Type="TRIM_HORIZON")
    a = []
    for i in range(3):
        a += put_some(kin, name, 4, prefix=f"a{i}")
    assert triples(first.wait_records(len(a))) == a
    checkpoint = first.events[-1]["ContinuationSequenceNumber"]  # after every record of `a`
    b = put_some(kin, name, 5, prefix="b")
    assert triples(first.wait_records(len(a) + len(b))) == a + b
    last_records_event = time.monotonic()

    heartbeat = first.wait_heartbeat(timeout=8.0)
    assert time.monotonic() - last_records_event < 8.0
    assert heartbeat["Records"] == [] and heartbeat["MillisBehindLatest"] == 0
    idle_checkpoint = heartbeat["ContinuationSequenceNumber"]  # after every record of `b`

    # The window has passed: a new subscription for the same consumer and shard takes over.
    second = subscribe_when_allowed(subscribe, kin, arn, Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=checkpoint)
    error = first.wait_end(timeout=5.0)
    if error is not None:
        assert error.response["Error"]["Code"] == "ResourceInUseException", error
    # Another consumer resumes from the heartbeat's continuation number.
    third = subscribe(kin, other_arn, Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=idle_checkpoint)
    c = put_some(kin, name, 3, prefix="c")
    assert triples(second.wait_records(len(b) + len(c))) == b + c
    assert triples(third.wait_records(len(c))) == c
    # Nothing went to the subscription that was taken over.
    assert triples(first.records) == a + b


def test_continuation_from_an_empty_shard_loses_nothing(kin, subscribe):
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    first = subscribe(kin, arn, Type="TRIM_HORIZON")
    checkpoint = first.wait_heartbeat(timeout=8.0)["ContinuationSequenceNumber"]
    first.close()
    written = put_some(kin, name, 3)
    second = subscribe_when_allowed(subscribe, kin, arn, Type="AFTER_SEQUENCE_NUMBER", SequenceNumber=checkpoint)
    event = second.next_event()
    while event is not None and not event["Records"]:
        event = second.next_event()
    assert event is not None, second.error
    # The three records were there before the subscription: they come in its first event with records.
    assert triples(event["Records"]) == written


def test_continuation_sequence_numbers_never_go_backwards(kin, subscribe):
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    wait_for_next_second()
    written = put_some(kin, name, 2)
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    assert triples(sub.wait_records(2)) == written
    sub.wait_heartbeat(timeout=8.0)
    numbers = [int(e["ContinuationSequenceNumber"]) for e in sub.events]
    assert numbers == sorted(numbers), numbers


def test_second_subscription_within_five_seconds(kin, subscribe):
    name, sarn = new_stream(kin, shards=2)
    arn = active_consumer(kin, sarn)
    first = subscribe(kin, arn, Type="LATEST")
    for position in ({"Type": "LATEST"}, {"Type": "TRIM_HORIZON"}):
        expect_error(
            kin.subscribe_to_shard,
            "ResourceInUseException",
            f"Another active subscription exists for this consumer: {arn} and shard {SHARD0}; a new subscription "
            "can start 5 seconds after the previous one.",
            ConsumerARN=arn,
            ShardId=SHARD0,
            StartingPosition=position,
        )
    # The window is per consumer and shard: another shard, or another consumer, may subscribe at once.
    neighbour = subscribe(kin, arn, shard_id(1), Type="LATEST")
    other = subscribe(kin, active_consumer(kin, sarn), Type="LATEST")
    # The refused calls did not disturb the live subscription.
    written = put_to(kin, name, [(b"x", 0), (b"y", 2**128 - 1), (b"z", 1)])
    shard0 = [(seq, pk, data) for seq, pk, data, shard in written if shard == SHARD0]
    assert triples(first.wait_records(2)) == shard0
    assert triples(other.wait_records(2)) == shard0
    assert triples(neighbour.wait_records(1)) == [w[:3] for w in written if w[3] == shard_id(1)]
    assert not first.ended


def test_subscribe_errors(kin):
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    written = put_some(kin, name, 2)

    def refused(code, message=None, client=kin, consumer=arn, shard=SHARD0, **position):
        return expect_error(
            client.subscribe_to_shard, code, message, ConsumerARN=consumer, ShardId=shard, StartingPosition=position
        )

    refused(
        "ResourceNotFoundException",
        f"Shard shardId-000000000009 in stream {name} under account {DEFAULT_ACCOUNT} does not exist",
        shard=shard_id(9),
        Type="TRIM_HORIZON",
    )
    unknown = f"{sarn}/consumer/nobody:{int(time.time())}"
    refused("ResourceNotFoundException", f"Consumer {unknown} not found.", consumer=unknown, Type="TRIM_HORIZON")
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        refused("InvalidArgumentException", f"You must specify a starting sequence number with {kind}.", Type=kind)
    for kind in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
        refused(
            "InvalidArgumentException",
            f"Request must not contain a starting sequence number for shard iterator type {kind}.",
            Type=kind,
            SequenceNumber=written[0][0],
        )
    refused(
        "InvalidArgumentException",
        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no "
        "timestamp parameter.",
        Type="AT_TIMESTAMP",
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    for kind in ("TRIM_HORIZON", "LATEST", "AFTER_SEQUENCE_NUMBER"):
        extra = {"SequenceNumber": written[0][0]} if kind == "AFTER_SEQUENCE_NUMBER" else {}
        refused("InvalidArgumentException", None, Type=kind, Timestamp=now, **extra)
    # A sequence number of another shard, or that is not a sequence number of this stream at all.
    other_name, _ = new_stream(kin, shards=2)
    foreign = kin.put_record(StreamName=other_name, Data=b"x", PartitionKey="p", ExplicitHashKey=str(2**127 + 1))
    assert foreign["ShardId"] == shard_id(1)
    refused("InvalidArgumentException", Type="AT_SEQUENCE_NUMBER", SequenceNumber=foreign["SequenceNumber"])
    refused("InvalidArgumentException", Type="AT_SEQUENCE_NUMBER", SequenceNumber="12345")
    # None of the refused calls took the consumer's 5-second window: a subscription starts at once.
    sub = Subscription(kin, arn, SHARD0, {"Type": "TRIM_HORIZON"})
    try:
        assert triples(sub.wait_records(2)) == written
    finally:
        sub.close()


# ---------------------------------------------------------------------------------------------------
# SubscribeToShard: the end of a subscription


def test_split_while_subscribed_ends_with_child_shards(kin, subscribe):
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    before = put_some(kin, name, 4, prefix="parent")
    assert triples(sub.wait_records(4)) == before
    kin.split_shard(StreamName=name, ShardToSplit=SHARD0, NewStartingHashKey=str(2**127))
    wait_until(lambda: stream_status(kin, name) == "ACTIVE", message="split done")
    children = put_to(kin, name, [(b"left", 0), (b"right", 2**127), (b"left2", 5), (b"right2", 2**128 - 1)])
    assert [shard for _, _, _, shard in children] == [shard_id(1), shard_id(2), shard_id(1), shard_id(2)]
    error = sub.wait_end(timeout=15.0)
    assert error is None, error
    assert triples(sub.records) == before  # nothing written after the split comes from the closed parent
    last = sub.events[-1]
    assert last["Records"] == [] and last["MillisBehindLatest"] == 0
    want_children = [
        {
            "ShardId": shard_id(1),
            "ParentShards": [SHARD0],
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)},
        },
        {
            "ShardId": shard_id(2),
            "ParentShards": [SHARD0],
            "HashKeyRange": {"StartingHashKey": str(2**127), "EndingHashKey": str(2**128 - 1)},
        },
    ]
    assert last["ChildShards"] == want_children
    assert all("ChildShards" not in e for e in sub.events[:-1])
    # A new subscription to the closed parent delivers its records, then ChildShards, and ends.
    late = subscribe(kin, active_consumer(kin, sarn), Type="TRIM_HORIZON")
    assert late.wait_end(timeout=10.0) is None
    assert triples(late.records) == before
    assert late.events[-1]["ChildShards"] == want_children
    # The children are subscribable and get the records written after the split.
    for sid in (shard_id(1), shard_id(2)):
        want = [(seq, pk, data) for seq, pk, data, shard in children if shard == sid]
        child = subscribe(kin, arn, sid, Type="TRIM_HORIZON")
        assert triples(child.wait_records(len(want))) == want, sid


def test_deregister_ends_live_subscription(kin, subscribe):
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    before = put_some(kin, name, 2)
    assert triples(sub.wait_records(2)) == before
    kin.deregister_stream_consumer(ConsumerARN=arn)
    put_some(kin, name, 2, prefix="after")  # written for nobody: wakes the subscription
    error = sub.wait_end(timeout=10.0)
    if error is not None:
        assert error.response["Error"]["Code"] in ("ResourceNotFoundException", "ResourceInUseException"), error
    assert triples(sub.records) == before
    expect_error(
        kin.subscribe_to_shard,
        "ResourceNotFoundException",
        ConsumerARN=arn,
        ShardId=SHARD0,
        StartingPosition={"Type": "TRIM_HORIZON"},
    )


def test_delete_stream_ends_live_subscription(kin, subscribe):
    """A subscription does not outlive its stream, not even when a stream of the same name (with a consumer of
    the same name) takes its place."""
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn, "reader")
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    before = put_some(kin, name, 2)
    assert triples(sub.wait_records(2)) == before
    kin.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: stream_status(kin, name) == "ACTIVE")
    new_arn = active_consumer(kin, sarn, "reader")
    put_some(kin, name, 3, prefix="new-stream")  # also wakes the old subscription
    error = sub.wait_end(timeout=10.0)
    if error is not None:
        assert error.response["Error"]["Code"] == "ResourceNotFoundException", error
    assert triples(sub.records) == before
    # The new consumer subscribes to the new stream's records only.
    fresh = subscribe_when_allowed(subscribe, kin, new_arn, Type="TRIM_HORIZON")
    assert [r["Data"] for r in fresh.wait_records(3)] == [b"new-stream-0", b"new-stream-1", b"new-stream-2"]


# ---------------------------------------------------------------------------------------------------
# SubscribeToShard: volume


def test_twenty_thousand_records_arrive_once_in_order(kin, subscribe):
    """20,000 records put in PutRecords batches while subscribed all arrive exactly once, in order, over
    several events (flow control and multi-event delivery)."""
    name, sarn = new_stream(kin)
    arn = active_consumer(kin, sarn)
    sub = subscribe(kin, arn, Type="TRIM_HORIZON")
    written = []
    for batch in range(40):
        datas = [b"%05d-%03d|" % (batch, i) + bytes([batch, i % 256]) * 40 for i in range(500)]
        written += put_batch(kin, name, datas, pk=f"pk{batch}")
    records = sub.wait_records(len(written), timeout=60.0)
    assert len(records) == len(written)
    assert [r["SequenceNumber"] for r in records] == [w[0] for w in written]
    assert triples(records) == written
    assert len(sub.events) > 1
    assert sub.events[-1]["MillisBehindLatest"] == 0
