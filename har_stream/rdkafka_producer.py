"""A librdkafka producer (confluent-kafka) behind the part of kafka-python's API we use.

Why: producing is most of the service's CPU with kafka-python (49 µs per 350-byte record,
130 µs per 5.4 KB snapshot, against 3 and 9 µs with librdkafka; docs/PERFORMANCE.md §4).
The delivery logic (`delivery.Outbox`), the changelog writer and the simulator keep calling
`send(...) -> future`, `flush(timeout)`, `partitions_for`, `close`; this adapter maps them:

- futures resolve with a `RecordMetadata` (topic, partition, offset, timestamp) or a
  kafka-python exception (`kafka.errors.for_code` of the broker's error code), so the
  Outbox tells poison records from systemic failures exactly as before;
- delivery reports are served on the caller's thread, in `send` (cheaply, without waiting),
  `serve`, `flush` and `close`: no second Python thread contends for the interpreter lock
  (which, measured, tripled the CPU per record);
- `flush` raises `KafkaTimeoutError` when records are still unacknowledged at its deadline,
  and `send` raises it when the local queue stays full for `max_block_s`;
- keyed records are partitioned with murmur2, as kafka-python and the Java client do, so a
  device lands on the same partition whichever client produced it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import confluent_kafka
from kafka.errors import KafkaError, KafkaTimeoutError, for_code

from har_stream.service.settings import KafkaSettings

client_log = logging.getLogger("kafka.librdkafka")
"""librdkafka's own log and its client-level errors: under `kafka`, like kafka-python's, so
`logsafe.RepeatFilter` thins a reconnect loop to one line (and a count) per template."""

MAX_REQUEST_BYTES = 1024 * 1024
"""Largest record accepted, as kafka-python's `max_request_size` default."""


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    acknowledged_at: float
    """Wall-clock time the broker's acknowledgement arrived (send time + librdkafka's own
    measured latency), whenever the callback happens to run."""


class DeliveryFuture:
    """The outcome of one send: callbacks added before or after it is known all run once.

    Resolved only inside the producer's `send`, `serve`, `flush` or `close`, on the thread
    that calls them, so it needs no lock. Its `_deliver` is librdkafka's delivery callback,
    so a send allocates no closure (the service sends thousands of records per second).
    """

    __slots__ = ("_callbacks", "_errbacks", "_flush", "done", "exception", "sent_at", "value")

    def __init__(self, flush: Callable[[float | None], None], sent_at: float = 0.0) -> None:
        self._flush = flush
        self.sent_at = sent_at
        self.done = False
        self.value: RecordMetadata | None = None
        self.exception: BaseException | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._errbacks: list[Callable[[BaseException], None]] = []

    def is_done(self) -> bool:
        return self.done

    def succeeded(self) -> bool:
        return self.done and self.exception is None

    def add_callback(self, fn: Callable[[Any], None]) -> DeliveryFuture:
        if not self.done:
            self._callbacks.append(fn)
        elif self.exception is None:
            fn(self.value)
        return self

    def add_errback(self, fn: Callable[[BaseException], None]) -> DeliveryFuture:
        if not self.done:
            self._errbacks.append(fn)
        elif self.exception is not None:
            fn(self.exception)
        return self

    def add_both(self, fn: Callable[[Any], None]) -> DeliveryFuture:
        """`fn(metadata)` on success, `fn(exception)` on failure (as kafka-python's futures)."""
        if not self.done:
            self._callbacks.append(fn)
            self._errbacks.append(fn)
        else:
            fn(self.value if self.exception is None else self.exception)
        return self

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """The record's metadata, flushing the producer until it is known."""
        if not self.done:
            self._flush(timeout)
        if self.exception is not None:
            raise self.exception
        assert self.value is not None
        return self.value

    def _deliver(self, error: Any, message: Any) -> None:
        """librdkafka's report: the broker's metadata, or its error as kafka-python's."""
        if error is None:
            self._resolve(RecordMetadata(
                message.topic(), message.partition(), message.offset(),
                message.timestamp()[1], self.sent_at + (message.latency() or 0.0)), None)
        else:
            self._resolve(None, as_kafka_error(error))

    def _resolve(self, value: RecordMetadata | None, exception: BaseException | None) -> None:
        self.done, self.value, self.exception = True, value, exception
        if exception is None:
            for fn in self._callbacks:
                fn(value)
        else:
            for errback in self._errbacks:
                errback(exception)
        self._callbacks, self._errbacks = [], []


def as_kafka_error(error: confluent_kafka.KafkaError) -> KafkaError:
    """librdkafka's error as the kafka-python exception of the same Kafka error code."""
    code = error.code()
    if code > 0:
        return for_code(code)(error.str())
    if code in (confluent_kafka.KafkaError._MSG_TIMED_OUT,
                confluent_kafka.KafkaError._TIMED_OUT,
                confluent_kafka.KafkaError._TIMED_OUT_QUEUE):
        return KafkaTimeoutError(error.str())
    return KafkaError(f"{error.name()}: {error.str()}")


def rdkafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties for the connection settings (address, TLS, SASL)."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(s.strip() for s in kafka.bootstrap_servers.split(",")
                                      if s.strip()),
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol.lower(),
        "reconnect.backoff.max.ms": 1000,
        "socket.connection.setup.timeout.ms": int(kafka.connect_timeout_s * 1000),
    }
    if "SSL" in kafka.security_protocol:
        optional = {"ssl.ca.location": kafka.ssl_cafile,
                    "ssl.certificate.location": kafka.ssl_certfile,
                    "ssl.key.location": kafka.ssl_keyfile,
                    "ssl.key.password": kafka.ssl_password}
        config.update({k: v for k, v in optional.items() if v})
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_check_hostname else "none")
    if kafka.security_protocol.startswith("SASL"):
        config.update({"sasl.mechanisms": kafka.sasl_mechanism,
                       "sasl.username": kafka.sasl_username,
                       "sasl.password": kafka.sasl_password})
    return config


class RdKafkaProducer:
    """kafka-python's producer calls on top of confluent-kafka (see the module doc)."""

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
            "logger": client_log,
            "error_cb": client_error_logger("producer"),
        }
        self.kafka = kafka
        self.max_block_s = max_block_s
        self._producer = confluent_kafka.Producer(config)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> DeliveryFuture:
        future = DeliveryFuture(self.flush, time.time())
        record = (topic, value, key, headers, partition, future)
        try:
            try:
                self._produce(*record)
            except BufferError:  # the local queue is full: wait for acknowledgements
                self._wait_for_room(record)
        except confluent_kafka.KafkaException as exc:
            raise as_kafka_error(exc.args[0]) from None  # e.g. too large: the Outbox decides
        self._producer.poll(0)
        return future

    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 headers: list[tuple[str, bytes]] | None, partition: int | None,
                 future: DeliveryFuture) -> None:
        if headers or partition is not None:
            self._producer.produce(topic, value, key, on_delivery=future._deliver,
                                   headers=headers or None,  # type: ignore[arg-type]
                                   partition=-1 if partition is None else partition)
        else:  # the common case, without the keyword arguments' cost
            self._producer.produce(topic, value, key, on_delivery=future._deliver)

    def _wait_for_room(self, record: tuple[Any, ...]) -> None:
        """Send once the local queue has room, serving acknowledgements meanwhile."""
        deadline = time.monotonic() + self.max_block_s
        while True:
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"local queue still full after {self.max_block_s:g}"
                                        " s; the brokers do not acknowledge") from None
            self._producer.poll(0.05)
            try:
                self._produce(*record)
                return
            except BufferError:
                continue

    def serve(self) -> None:
        """Run the callbacks of the acknowledgements that have arrived (does not wait)."""
        self._producer.poll(0)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged or has failed."""
        remaining = self._producer.flush(-1 if timeout is None else timeout)
        if remaining:
            raise KafkaTimeoutError(f"{remaining} records not acknowledged within {timeout} s")

    def wait_for_cluster(self) -> None:
        """Block until a broker answers (KafkaTimeoutError after the connect timeout)."""
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
            raise as_kafka_error(exc.args[0]) from None

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, waiting up to `timeout` (librdkafka frees the rest)."""
        self._producer.flush(-1 if timeout is None else timeout)


def client_error_logger(role: str) -> Callable[[confluent_kafka.KafkaError], None]:
    """librdkafka's error callback for a client: connection-level errors (e.g. all brokers
    down), which it retries by itself, logged under `role`."""

    def log_error(error: confluent_kafka.KafkaError) -> None:
        client_log.warning("%s: %s", role, error.str())

    return log_error
