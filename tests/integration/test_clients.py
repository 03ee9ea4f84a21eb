"""Both Kafka clients against the real broker: same partitions, acknowledgements, refusals.

The service produces and consumes with librdkafka by default (`producer_client`,
`consumer_client`); kafka-python stays selectable for either. Whichever produced a device's
records, they must land on the same partition (the Java client's murmur2), and with either
client the service's output must be the offline run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest
from kafka.partitioner import murmur2
from service_support import (
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    final_counts,
    interleave,
    offline_results,
    send_batches,
    synthetic_samples,
    window_ids,
)

from har_stream.kafka.clients import BrokerUnavailable, make_consumer, make_producer
from har_stream.kafka.drivers.librdkafka_producer import RdKafkaProducer
from har_stream.kafka.ports import Acknowledged, KafkaTimeout, RecordRefused
from har_stream.service.settings import KafkaSettings, Settings
from har_stream.tools.broker import free_port

pytestmark = pytest.mark.integration
CLIENTS = ("librdkafka", "kafka-python")
T0_MS = 1_700_000_000_000


@pytest.mark.parametrize("client", CLIENTS)
def test_keyed_records_land_where_the_java_partitioner_puts_them_and_are_acknowledged(
        service_settings: Settings, client: str) -> None:
    kafka = dataclasses.replace(service_settings.kafka, producer_client=client)
    topic = service_settings.topics.activity_topic
    producer = make_producer(kafka)
    started = time.time()
    try:
        partitions = sorted(producer.partitions_for(topic))
        keys = [f"device-{i}".encode() for i in range(40)]
        futures = [producer.send(topic, key=k, value=b"v" * 300) for k in keys]
        producer.flush(30)
    finally:
        producer.close(5)
    metadata = [f.get(0) for f in futures]
    assert all(type(m) is Acknowledged for m in metadata)
    expected = [(murmur2(k) & 0x7FFFFFFF) % len(partitions) for k in keys]
    assert [m.partition for m in metadata] == expected
    assert len({(m.partition, m.offset) for m in metadata}) == len(keys)
    assert all(m.topic == topic and m.offset >= 0 for m in metadata)
    # when the broker acknowledged, not when we asked
    assert all(started <= (m.acknowledged_at or 0) <= time.time() for m in metadata)


def test_a_record_over_the_request_limit_is_refused_at_send(kafka_settings: KafkaSettings
                                                            ) -> None:
    producer = make_producer(kafka_settings)
    try:
        with pytest.raises(RecordRefused):
            producer.send("any-topic", key=b"k", value=b"x" * (1024 * 1024 + 1))
    finally:
        producer.close(5)


def test_without_a_broker_start_fails_fast_and_flush_times_out_keeping_the_records() -> None:
    dead = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", connect_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="while creating the producer"):
        make_producer(dead)
    assert time.monotonic() - started < 1 + 5
    producer = RdKafkaProducer(dead, unbounded_delivery=True)  # as after an outage began
    try:
        future = producer.send("t", key=b"k", value=b"v", partition=0)
        with pytest.raises(KafkaTimeout):
            producer.flush(0.5)
        assert not future.done, "an undeliverable record waits, it does not expire"
    finally:
        producer.close(0)


@pytest.mark.parametrize("client", CLIENTS)
def test_without_a_broker_a_consumer_fails_fast_too(client: str) -> None:
    dead = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", connect_timeout_s=1,
                         consumer_client=client)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="while creating the consumer"):
        make_consumer(dead, "group")
    assert time.monotonic() - started < 1 + 5


def test_kafka_python_members_polling_briefly_in_turn_settle_when_one_joins(
        kafka_settings: KafkaSettings) -> None:
    """kafka-python 3.0 drops a group join that finished between two polls and sends another,
    which starts a new rebalance: members polling 50 ms in turn on one thread used to
    rebalance for ever (`drivers/kafka_python_consumer._keep_finished_join`)."""
    from service_support import unique

    from har_stream.kafka.clients import close_quietly, make_admin, make_consumer
    from har_stream.kafka.ports import CommitFailed, Partition, TopicLayout

    kafka = dataclasses.replace(kafka_settings, consumer_client="kafka-python")
    topic, group = unique("join"), unique("group")
    admin = make_admin(kafka)
    admin.create_topics({topic: TopicLayout(4)})
    everything = {Partition(topic, p) for p in range(4)}
    members = [make_consumer(kafka, group, session_timeout_ms=6000,
                                   heartbeat_interval_ms=500) for _ in range(2)]
    try:
        members[0].subscribe([topic])
        deadline = time.monotonic() + 20
        while members[0].assignment() != everything and time.monotonic() < deadline:
            members[0].poll(timeout_ms=50)
        assert members[0].assignment() == everything
        producer = make_producer(kafka)
        for i in range(32):
            producer.send(topic, key=f"k{i}".encode(), value=b"v")
        producer.close(10)
        members[1].subscribe([topic])
        started = time.monotonic()
        while time.monotonic() - started < 20:
            for member in members:
                polled = member.poll(timeout_ms=50)
                if polled:  # as a member does: commit what it polled (refused: moved)
                    with contextlib.suppress(CommitFailed):
                        member.commit({p: rs[-1].offset + 1 for p, rs in polled.items()})
            first, second = (m.assignment() for m in members)
            if first and second and not first & second and first | second == everything:
                break
        else:
            raise AssertionError(f"no settled assignment within 20 s: {first}, {second}")
        print(f"\nshared after {time.monotonic() - started:.1f} s")
    finally:
        close_quietly(*members)
        admin.delete_topics([topic])
        close_quietly(admin)


@pytest.mark.parametrize("role", ["producer_client", "consumer_client"])
def test_the_service_with_a_kafka_python_client_matches_the_offline_run(
        service_settings: Settings, role: str) -> None:
    settings = dataclasses.replace(
        service_settings,
        kafka=dataclasses.replace(service_settings.kafka, **{role: "kafka-python"}))
    streams = {f"kp-{i}": synthetic_samples(900, seed=60 + i) for i in range(3)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    send_batches(settings.kafka, settings.topics.sensor_topic,
                 interleave({d: batches_of(d, s, 50, T0_MS) for d, s in streams.items()}))
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)
    with InProcessService(settings, FakeModel()) as service:
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "results",
                      service.check)
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts",
                     service.check)
    check_results(results.poll(), expected)
    results.close()
    counts.close()
