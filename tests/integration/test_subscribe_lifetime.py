"""SubscribeToShard's lifetime: a subscription ends by itself after --subscription-seconds (300 s on AWS,
shortened here), and a graceful stop ends live subscriptions instead of waiting for them."""

import time

from conftest import make_kinesis, unique_name, wait_until


def subscribe(kin):
    name = unique_name("life")
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")
    arn = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    consumer = kin.register_stream_consumer(StreamARN=arn, ConsumerName="c")["Consumer"]
    r = kin.subscribe_to_shard(
        ConsumerARN=consumer["ConsumerARN"], ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"}
    )
    return name, consumer, r["EventStream"]


def test_subscription_ends_after_its_lifetime_and_can_be_renewed(eddy_factory):
    # longer than the 5 s in which a consumer may not subscribe to the shard again
    srv = eddy_factory("--subscription-seconds", "6")
    kin = make_kinesis(srv.endpoint)
    name, consumer, events = subscribe(kin)
    start = time.monotonic()
    kin.put_record(StreamName=name, Data=b"one", PartitionKey="p")
    seen = [r["Data"] for ev in events for r in ev["SubscribeToShardEvent"]["Records"]]
    elapsed = time.monotonic() - start
    assert seen == [b"one"]
    assert 5.5 <= elapsed < 15, elapsed
    # the ended subscription is gone and 5 s have passed since it started: a new one is accepted at once
    again = kin.subscribe_to_shard(
        ConsumerARN=consumer["ConsumerARN"], ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"}
    )["EventStream"]
    first = next(iter(again))["SubscribeToShardEvent"]
    assert [r["Data"] for r in first["Records"]] == [b"one"]
    again.close()


def test_graceful_stop_ends_live_subscriptions(eddy_factory):
    srv = eddy_factory()
    kin = make_kinesis(srv.endpoint)
    _, _, events = subscribe(kin)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 1.5, "the stop waited for the subscription's grace period"
    # the stream ended: iterating it finishes (it would block if the subscription were still open)
    remaining = list(events)
    assert all("SubscribeToShardEvent" in ev for ev in remaining)
