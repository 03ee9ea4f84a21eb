"""The producer port on librdkafka (confluent-kafka): the service's default producer.

Why: producing is most of the service's CPU with kafka-python (7.8× librdkafka's CPU per
350-byte record, 12.9× per 5.4 KB snapshot: `har-stream bench produce`, docs/BENCHMARKS.md).
How it keeps the port (`ports.Producer`):

- a `Delivery` resolves with an `Acknowledged` (topic, partition, offset, timestamp, the
  wall-clock time of the acknowledgement) or a `KafkaFailure` of the error's code
  (`drivers.errors`), so the Outbox tells refused records from systemic failures;
- delivery reports are served on the caller's thread, in `send` (cheaply, without waiting),
  `serve`, `flush` and `close`: no second Python thread contends for the interpreter lock
  (which, measured, tripled the CPU per record);
- `flush` raises `KafkaTimeout` when records are still unacknowledged at its deadline, and
  `send` raises it when the local queue stays full for `max_block_s`;
- keyed records are partitioned with murmur2, as kafka-python and the Java client do, so a
  device lands on the same partition whichever client produced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import confluent_kafka

from har_stream.kafka.connect import client_error_logger, client_log, rdkafka_config
from har_stream.kafka.drivers.errors import UNKNOWN_TOPIC, failure
from har_stream.kafka.ports import Acknowledged, Headers, KafkaFailure, KafkaTimeout
from har_stream.kafka.settings import KafkaSettings

MAX_REQUEST_BYTES = 1024 * 1024
"""Largest record accepted, as kafka-python's `max_request_size` default."""

_TIMEOUTS = frozenset((confluent_kafka.KafkaError._MSG_TIMED_OUT,
                       confluent_kafka.KafkaError._TIMED_OUT,
                       confluent_kafka.KafkaError._TIMED_OUT_QUEUE))
_MISSING = frozenset((confluent_kafka.KafkaError._UNKNOWN_TOPIC,
                      confluent_kafka.KafkaError._UNKNOWN_PARTITION))


def as_failure(error: confluent_kafka.KafkaError) -> KafkaFailure:
    """librdkafka's error as ours: the broker's codes through `drivers.errors`, the local
    timeouts as `KafkaTimeout`, other local errors generic with librdkafka's name."""
    code = error.code()
    if code > 0:
        return failure(code, error.str())
    if code in _TIMEOUTS:
        return KafkaTimeout(f"{error.name()}: {error.str()}")
    if code in _MISSING:
        return failure(UNKNOWN_TOPIC, f"{error.name()}: {error.str()}")
    return KafkaFailure(f"{error.name()}: {error.str()}")


class RdKafkaDelivery:
    """The outcome of one send: callbacks added before or after it is known all run once.

    Resolved only inside the producer's `send`, `serve`, `flush` or `close`, on the thread
    that calls them, so it needs no lock. Its `_deliver` is librdkafka's delivery callback,
    so a send allocates no closure (the service sends thousands of records per second).
    """

    __slots__ = ("_callbacks", "_flush", "done", "outcome", "sent_at")

    def __init__(self, flush: Callable[[float | None], None], sent_at: float = 0.0) -> None:
        self._flush = flush
        self.sent_at = sent_at
        self.done = False
        self.outcome: Acknowledged | KafkaFailure | None = None
        self._callbacks: list[Callable[[Acknowledged | KafkaFailure], object]] = []

    def add_both(self, fn: Callable[[Acknowledged | KafkaFailure], object]) -> RdKafkaDelivery:
        """`fn(acknowledged)` on success, `fn(failure)` on failure, once."""
        if not self.done:
            self._callbacks.append(fn)
        else:
            fn(self.outcome)  # type: ignore[arg-type]
        return self

    def get(self, timeout_s: float | None = None) -> Acknowledged:
        """Where the record was stored, flushing the producer until it is known."""
        if not self.done:
            self._flush(timeout_s)
        if isinstance(self.outcome, KafkaFailure):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome

    def _deliver(self, error: Any, message: Any) -> None:
        """librdkafka's report: where the broker stored the record, or its error as ours."""
        if error is None:
            self._resolve(Acknowledged(
                message.topic(), message.partition(), message.offset(),
                message.timestamp()[1], self.sent_at + (message.latency() or 0.0)))
        else:
            self._resolve(as_failure(error))

    def _resolve(self, outcome: Acknowledged | KafkaFailure) -> None:
        self.done, self.outcome = True, outcome
        for fn in self._callbacks:
            fn(outcome)
        self._callbacks = []


class RdKafkaProducer:
    """`ports.Producer` on confluent-kafka (see the module doc)."""

    def __init__(self, kafka: KafkaSettings, *, acks: str = "all", linger_ms: int = 5,
                 compression_type: str | None = None, unbounded_delivery: bool = False,
                 max_block_s: float = 60.0) -> None:
        config = rdkafka_config(kafka) | {
            "acks": acks,
            "linger.ms": linger_ms,
            "compression.type": compression_type or "none",
            "partitioner": "murmur2_random",
            # one request in flight per broker: records of a partition stay in order across
            # retries without the idempotent producer, whose ids a broker that restarts empty
            # forgets (librdkafka then holds the records for ever; measured with tansu)
            "enable.idempotence": False,
            "max.in.flight.requests.per.connection": 1,
            "message.max.bytes": MAX_REQUEST_BYTES,
            # 0 = no deadline: while the cluster is away, records wait and are retried
            "message.timeout.ms": 0 if unbounded_delivery else 120_000,
            "queue.buffering.max.kbytes": 64 * 1024,
            # a missing topic is never created with the broker's default layout by a send
            "allow.auto.create.topics": False,
            "logger": client_log,
            "error_cb": client_error_logger("producer"),
        }
        self.kafka = kafka
        self.max_block_s = max_block_s
        self._producer = confluent_kafka.Producer(config)

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Headers | None = None, partition: int | None = None) -> RdKafkaDelivery:
        delivery = RdKafkaDelivery(self.flush, time.time())
        record = (topic, value, key, headers, partition, delivery)
        try:
            try:
                self._produce(*record)
            except BufferError:  # the local queue is full: wait for acknowledgements
                self._wait_for_room(record)
        except confluent_kafka.KafkaException as exc:
            raise as_failure(exc.args[0]) from None  # e.g. too large: the Outbox decides
        self._producer.poll(0)
        return delivery

    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 headers: Headers | None, partition: int | None,
                 delivery: RdKafkaDelivery) -> None:
        if headers or partition is not None:
            self._producer.produce(topic, value, key, on_delivery=delivery._deliver,
                                   headers=headers or None,  # type: ignore[arg-type]
                                   partition=-1 if partition is None else partition)
        else:  # the common case, without the keyword arguments' cost
            self._producer.produce(topic, value, key, on_delivery=delivery._deliver)

    def _wait_for_room(self, record: tuple[Any, ...]) -> None:
        """Send once the local queue has room, serving acknowledgements meanwhile."""
        deadline = time.monotonic() + self.max_block_s
        while True:
            if time.monotonic() > deadline:
                raise KafkaTimeout(f"local queue still full after {self.max_block_s:g} s; "
                                   "the brokers do not acknowledge") from None
            self._producer.poll(0.05)
            try:
                self._produce(*record)
                return
            except BufferError:
                continue

    def serve(self) -> None:
        """Run the callbacks of the acknowledgements that have arrived (does not wait)."""
        self._producer.poll(0)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged or has failed."""
        remaining = self._producer.flush(-1 if timeout_s is None else timeout_s)
        if remaining:
            raise KafkaTimeout(f"{remaining} records not acknowledged within {timeout_s} s")

    def wait_for_cluster(self) -> None:
        """Block until a broker answers (`KafkaFailure` after the connect timeout)."""
        self._metadata(None)

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, from the cluster's metadata (fetched now)."""
        found = self._metadata(topic).topics.get(topic)
        if found is None or found.error is not None:
            return set()
        return set(found.partitions)

    def _metadata(self, topic: str | None) -> Any:
        try:
            return self._producer.list_topics(topic, timeout=self.kafka.connect_timeout_s)
        except confluent_kafka.KafkaException as exc:
            raise as_failure(exc.args[0]) from None

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued, waiting up to `timeout_s` (librdkafka frees the rest)."""
        self._producer.flush(-1 if timeout_s is None else timeout_s)
