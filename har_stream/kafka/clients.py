"""Kafka clients configured from settings: consumer, producer, admin, and topic creation.

Each factory returns a port (`ports.Consumer`, `ports.Producer`, `ports.Admin`) of the
library the settings choose (`KafkaSettings.consumer_client` / `producer_client`; the admin
is kafka-python's for both, `drivers.kafka_python_admin` says why). Every client connects the
same way (`connect`: address, TLS, SASL) and never creates a topic by asking for it.
Constructing a client blocks until a broker answers or `connect_timeout_s` passes; the
latter becomes `BrokerUnavailable` with a message that says what to check, instead of a
retry loop that hangs forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from har_stream.kafka.connect import BrokerUnavailable, build, never_create_topics, unreachable
from har_stream.kafka.ports import Admin, Consumer, KafkaFailure, Producer, TopicLayout
from har_stream.kafka.settings import KafkaSettings, TopicSettings

__all__ = ["BrokerUnavailable", "TopicError", "close_quietly", "ensure_topics", "make_admin",
           "make_consumer", "make_producer", "prepare_service_topics"]

log = logging.getLogger(__name__)

UNBOUNDED_DELIVERY_MS = 2**31 - 1
"""Producer delivery timeout of the service (~25 days): while the cluster is unreachable the
producer keeps every record and retries; the service commits nothing meanwhile."""


class TopicError(RuntimeError):
    """A topic is missing or shaped wrong and the service cannot fix it."""


def make_admin(kafka: KafkaSettings) -> Admin:
    from kafka import KafkaAdminClient

    from har_stream.kafka.drivers.kafka_python_admin import KafkaPythonAdmin

    return KafkaPythonAdmin(build(kafka, "admin client", KafkaAdminClient))


def make_producer(kafka: KafkaSettings, *, linger_ms: int = 5,
                  compression_type: str | None = None,
                  unbounded_delivery: bool = False) -> Producer:
    """A producer that waits for all in-sync replicas, of the client `kafka.producer_client`.

    `unbounded_delivery`: records never expire while the cluster is away (the service's
    output, which must not be lost); otherwise the clients' default deadlines apply.
    """
    if kafka.producer_client == "librdkafka":
        return _build_rdkafka(kafka, linger_ms, compression_type, unbounded_delivery)
    from kafka import KafkaProducer

    from har_stream.kafka.drivers.kafka_python_producer import KafkaPythonProducer

    config: dict[str, Any] = {"acks": "all", "linger_ms": linger_ms,
                              "compression_type": compression_type,
                              "allow_auto_create_topics": False}
    if unbounded_delivery:
        config["delivery_timeout_ms"] = UNBOUNDED_DELIVERY_MS
    return KafkaPythonProducer(never_create_topics(build(kafka, "producer", KafkaProducer,
                                                         **config)))


def _build_rdkafka(kafka: KafkaSettings, linger_ms: int, compression_type: str | None,
                   unbounded_delivery: bool) -> Producer:
    """librdkafka connects lazily: ask for metadata now, so a dead address fails at start."""
    from har_stream.kafka.drivers.librdkafka_producer import RdKafkaProducer

    producer = RdKafkaProducer(kafka, linger_ms=linger_ms, compression_type=compression_type,
                               unbounded_delivery=unbounded_delivery)
    try:
        producer.wait_for_cluster()
    except KafkaFailure as exc:
        producer.close(timeout_s=0)
        raise unreachable(kafka, "producer", exc) from None
    return producer


def make_consumer(kafka: KafkaSettings, group_id: str | None = None, **config: Any) -> Consumer:
    """A consumer of the client `kafka.consumer_client`, with manual commits, that starts
    from the earliest offset when its group has none (`group_id` None: no group, for
    readers of assigned partitions). `config`: kafka-python's keyword arguments
    (`fetch_max_wait_ms`, `session_timeout_ms`, ...); librdkafka's driver takes those it
    has a counterpart for.

    Like every client of the service it never creates a topic by asking for it: a topic
    that is missing (a broker that came back empty) must not come back with the broker's
    default layout (docs/RELIABILITY.md)."""
    if kafka.consumer_client == "librdkafka":
        from har_stream.kafka.drivers.librdkafka_consumer import RdKafkaConsumer

        consumer = RdKafkaConsumer(kafka, group_id, **config)
        try:  # librdkafka connects lazily: ask now, so a dead address fails at start
            consumer.topics()
        except KafkaFailure as exc:
            close_quietly(consumer)
            raise unreachable(kafka, "consumer", exc) from None
        return consumer
    from har_stream.kafka.drivers.kafka_python_consumer import (
        GuardedKafkaConsumer,
        KafkaPythonConsumer,
    )

    defaults = {"group_id": group_id, "enable_auto_commit": False,
                "auto_offset_reset": "earliest", "allow_auto_create_topics": False}
    client = never_create_topics(build(kafka, "consumer", GuardedKafkaConsumer,
                                       **(defaults | config)))
    client.har_kafka_settings = kafka  # to read a record it cannot parse (`poison`)
    return KafkaPythonConsumer(client, kafka.connect_timeout_s)


# ---------------------------------------------------------------------------------------------
# topics


def ensure_topics(admin: Admin, specs: Mapping[str, TopicLayout],
                  timeout_s: float = 10.0) -> dict[str, int]:
    """Create the missing topics of `specs`, wait until all are visible; their partition counts.

    A topic that another process creates at the same moment counts as existing.
    """
    existing = admin.partition_counts(specs)
    missing = {name: spec for name, spec in specs.items() if name not in existing}
    if missing:
        try:
            admin.create_topics(missing)
        except KafkaFailure as exc:
            raise TopicError(str(exc)) from None
    deadline = time.monotonic() + timeout_s
    while True:
        counts = admin.partition_counts(specs)
        if len(counts) == len(specs):
            return counts
        if time.monotonic() > deadline:
            raise TopicError(f"topics {sorted(set(specs) - set(counts))} not visible after "
                             f"{timeout_s:g} s")
        time.sleep(0.1)


def prepare_service_topics(admin: Admin, topics: TopicSettings) -> int:
    """Make sure every topic of the service exists; the sensor topic's partition count.

    The changelog must have exactly as many partitions as the sensor topic: a device's
    state lives in the changelog partition with the number of its input partition, so a
    member restores exactly the partitions it was assigned. It is created compacted, and so
    is the devices topic (the latest record per device is its status); the others keep
    records for the broker's retention.
    """
    names = topics.names()
    if not topics.create_topics:
        counts = admin.partition_counts(names)
        absent = [n for n in names if n not in counts]
        if absent:
            raise TopicError(f"topics {absent} do not exist; create them or pass "
                             "--create-topics (HAR_CREATE_TOPICS=true)")
    else:
        plain = TopicLayout(topics.partitions, topics.replication_factor)
        sensor = ensure_topics(admin, {topics.sensor_topic: plain})[topics.sensor_topic]
        compacted = TopicLayout(topics.partitions, topics.replication_factor,
                                {"cleanup.policy": "compact"})
        changelog = TopicLayout(sensor, topics.replication_factor, {"cleanup.policy": "compact"})
        specs = dict.fromkeys(names, plain) | {topics.devices_topic: compacted,
                                               topics.changelog_topic: changelog}
        del specs[topics.sensor_topic]
        counts = ensure_topics(admin, specs)
        counts[topics.sensor_topic] = sensor
    sensor_partitions = counts[topics.sensor_topic]
    if counts[topics.changelog_topic] != sensor_partitions:
        raise TopicError(
            f"the changelog topic {topics.changelog_topic} has {counts[topics.changelog_topic]} "
            f"partitions but the sensor topic {topics.sensor_topic} has {sensor_partitions}; "
            "they must match (state partition = input partition)")
    return sensor_partitions


def close_quietly(*clients: Any) -> None:
    """Close clients, logging instead of raising (used on shutdown paths)."""
    for client in clients:
        if client is None:
            continue
        try:
            client.close()
        except Exception as exc:  # a library's own error: nothing left to do about it
            log.warning("closing %s: %s", type(client).__name__, exc)
