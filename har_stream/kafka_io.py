"""Kafka clients configured from settings: consumer, producer, admin, and topic creation.

One place maps `KafkaSettings` (bootstrap, TLS, SASL) to kafka-python's keyword arguments,
so every client of the service connects the same way. Constructing a client blocks until a
broker answers or `connect_timeout_s` passes; the latter becomes `BrokerUnavailable` with a
message that says what to check, instead of a retry loop that hangs forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from har_stream.service.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)

TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
UNKNOWN_TOPIC = 3  # Kafka error code UNKNOWN_TOPIC_OR_PARTITION
RECONNECT_BACKOFF_MAX_MS = 1000
CONNECT_GRACE_S = 2.0
"""Beyond the connect timeout, how long a client's construction may take before it is given up."""
UNBOUNDED_DELIVERY_MS = 2**31 - 1
"""Producer delivery timeout of the service (~25 days): while the cluster is unreachable the
producer keeps every record and retries; the service commits nothing meanwhile."""
C = TypeVar("C")


class BrokerUnavailable(RuntimeError):
    """No broker answered within the connect timeout (the message says what to check)."""


class TopicError(RuntimeError):
    """A topic is missing or shaped wrong and the service cannot fix it."""


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python keyword arguments shared by every client: address, TLS, SASL, timeouts."""
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka.bootstrap_servers.split(",") if s.strip()],
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "bootstrap_timeout_ms": int(kafka.connect_timeout_s * 1000),
        # after an outage, notice a returning broker within a second (the library's default
        # backs off up to 30 s); one attempt per second per broker costs nothing
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if "SSL" in kafka.security_protocol:
        config.update(ssl_cafile=kafka.ssl_cafile, ssl_certfile=kafka.ssl_certfile,
                      ssl_keyfile=kafka.ssl_keyfile, ssl_password=kafka.ssl_password,
                      ssl_check_hostname=kafka.ssl_check_hostname)
    if kafka.security_protocol.startswith("SASL"):
        config.update(sasl_mechanism=kafka.sasl_mechanism,
                      sasl_plain_username=kafka.sasl_username,
                      sasl_plain_password=kafka.sasl_password)
    return config


def _unreachable(kafka: KafkaSettings, what: str, exc: BaseException) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"cannot reach Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol}) "
        f"within {kafka.connect_timeout_s:g} s while creating the {what}: {exc}. Check "
        "--bootstrap-servers / HAR_BOOTSTRAP_SERVERS, that the brokers are running, and "
        "the security settings.")


@contextmanager
def _connecting(kafka: KafkaSettings, what: str) -> Iterator[None]:
    try:
        yield
    except KafkaTimeoutError as exc:
        raise _unreachable(kafka, what, exc) from None


def _build(kafka: KafkaSettings, what: str, factory: Callable[..., C], **config: Any) -> C:
    """Construct a client, giving up after the connect timeout whatever the client does.

    kafka-python bounds its bootstrap by `bootstrap_timeout_ms` except inside a TLS
    handshake, which it awaits without a deadline: a TLS client facing a plaintext listener
    (or anything that accepts connections and never answers) would hang for ever. So the
    client is built in a daemon thread that is abandoned when the deadline passes.
    """
    built: dict[str, Any] = {}

    def construct() -> None:
        try:
            built["client"] = factory(**(client_config(kafka) | config))
        except BaseException as exc:  # re-raised below, in the caller's thread
            built["error"] = exc

    worker = threading.Thread(target=construct, name=f"connect-{what}", daemon=True)
    worker.start()
    worker.join(kafka.connect_timeout_s + CONNECT_GRACE_S)
    if worker.is_alive():
        raise BrokerUnavailable(
            f"no Kafka answer from {kafka.bootstrap_servers} ({kafka.security_protocol}) "
            f"within {kafka.connect_timeout_s:g} s while creating the {what}: connections open "
            "but the handshake never completes. Check that --security-protocol / "
            "HAR_SECURITY_PROTOCOL matches the listener (TLS against a plaintext port hangs "
            "like this) and --bootstrap-servers / HAR_BOOTSTRAP_SERVERS.")
    if "error" in built:
        with _connecting(kafka, what):
            raise built["error"]
    return built["client"]


def make_admin(kafka: KafkaSettings) -> KafkaAdminClient:
    return _build(kafka, "admin client", KafkaAdminClient)


def make_producer(kafka: KafkaSettings, *, linger_ms: int = 5,
                  compression_type: str | None = None, unbounded_delivery: bool = False) -> Any:
    """A producer that waits for all in-sync replicas, of the client `kafka.producer_client`.

    Either client has kafka-python's `send` / `flush` / `partitions_for` / `close`.
    `unbounded_delivery`: records never expire while the cluster is away (the service's
    output, which must not be lost); otherwise the clients' default deadlines apply.
    """
    if kafka.producer_client == "librdkafka":
        return _build_rdkafka(kafka, linger_ms, compression_type, unbounded_delivery)
    config: dict[str, Any] = {"acks": "all", "linger_ms": linger_ms,
                              "compression_type": compression_type}
    if unbounded_delivery:
        config["delivery_timeout_ms"] = UNBOUNDED_DELIVERY_MS
    return _build(kafka, "producer", KafkaProducer, **config)


def _build_rdkafka(kafka: KafkaSettings, linger_ms: int, compression_type: str | None,
                   unbounded_delivery: bool) -> Any:
    """librdkafka connects lazily: ask for metadata now, so a dead address fails at start."""
    from har_stream.kafka.rdkafka_producer import RdKafkaProducer

    producer = RdKafkaProducer(kafka, linger_ms=linger_ms, compression_type=compression_type,
                               unbounded_delivery=unbounded_delivery)
    try:
        producer.wait_for_cluster()
    except KafkaError as exc:
        producer.close(timeout=0)
        raise _unreachable(kafka, "producer", exc) from None
    return producer


def make_consumer(kafka: KafkaSettings, group_id: str | None = None,
                  **config: Any) -> KafkaConsumer:
    """A consumer with manual commits that starts from the earliest offset when it has none."""
    defaults = {"group_id": group_id, "enable_auto_commit": False,
                "auto_offset_reset": "earliest"}
    return _build(kafka, "consumer", KafkaConsumer, **(defaults | config))


def make_group_consumer(kafka: KafkaSettings, group_id: str, **config: Any) -> Any:
    """The service's group member, of the client `kafka.consumer_client`: `make_consumer`'s,
    or librdkafka's behind the same calls (`rdkafka_consumer`)."""
    if kafka.consumer_client != "librdkafka":
        return make_consumer(kafka, group_id, **config)
    from har_stream.kafka.rdkafka_consumer import RdKafkaConsumer

    return RdKafkaConsumer(kafka, group_id, **config)


# ---------------------------------------------------------------------------------------------
# topics


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How to create one topic when it is missing."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


def partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each topic that exists (absent topics are left out)."""
    counts = {}
    for topic in admin.describe_topics(names):
        if topic["error_code"] == 0 and topic["partitions"]:
            counts[topic["name"]] = len(topic["partitions"])
    return counts


def ensure_topics(admin: KafkaAdminClient, specs: Mapping[str, TopicSpec],
                  timeout_s: float = 10.0) -> dict[str, int]:
    """Create the missing topics of `specs`, wait until all are visible; their partition counts.

    A topic that another process creates at the same moment counts as existing.
    """
    existing = partition_counts(admin, list(specs))
    missing = {name: spec for name, spec in specs.items() if name not in existing}
    if missing:
        response = admin.create_topics(
            {name: {"num_partitions": s.partitions, "replication_factor": s.replication_factor,
                    "configs": dict(s.configs)} for name, s in missing.items()},
            raise_errors=False)
        for topic in response["topics"]:
            if topic["error_code"] not in (0, TOPIC_EXISTS):
                raise TopicError(f"cannot create topic {topic['name']}: error "
                                 f"{topic['error_code']} {topic.get('error_message') or ''}")
            if topic["error_code"] == 0:
                log.info("created topic %s (%d partitions)", topic["name"],
                         missing[topic["name"]].partitions)
    deadline = time.monotonic() + timeout_s
    while True:
        counts = partition_counts(admin, list(specs))
        if len(counts) == len(specs):
            return counts
        if time.monotonic() > deadline:
            raise TopicError(f"topics {sorted(set(specs) - set(counts))} not visible after "
                             f"{timeout_s:g} s")
        time.sleep(0.1)


def prepare_service_topics(admin: KafkaAdminClient, topics: TopicSettings) -> int:
    """Make sure every topic of the service exists; the sensor topic's partition count.

    The changelog must have exactly as many partitions as the sensor topic: a device's
    state lives in the changelog partition with the number of its input partition, so a
    member restores exactly the partitions it was assigned. It is created compacted.
    """
    names = [topics.sensor_topic, topics.dlq_topic, topics.activity_topic,
             topics.counts_topic, topics.changelog_topic]
    if not topics.create_topics:
        counts = partition_counts(admin, names)
        absent = [n for n in names if n not in counts]
        if absent:
            raise TopicError(f"topics {absent} do not exist; create them or pass "
                             "--create-topics (HAR_CREATE_TOPICS=true)")
    else:
        plain = TopicSpec(topics.partitions, topics.replication_factor)
        sensor = ensure_topics(admin, {topics.sensor_topic: plain})[topics.sensor_topic]
        changelog = TopicSpec(sensor, topics.replication_factor, {"cleanup.policy": "compact"})
        counts = ensure_topics(admin, {topics.dlq_topic: plain, topics.activity_topic: plain,
                                       topics.counts_topic: plain,
                                       topics.changelog_topic: changelog})
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
        except (KafkaError, OSError, RuntimeError) as exc:
            log.warning("closing %s: %s", type(client).__name__, exc)
