"""The producer port on kafka-python: the alternative producer (pure Python).

Its deliveries resolve on kafka-python's sender thread (the port allows it): an
`Acknowledged` stamped with the wall-clock time the acknowledgement arrived (the first
callback of every send records it), or our failure for kafka-python's error
(`drivers.errors`: refused records, timeouts, the rest with the broker's code). A send to a
topic its metadata does not know asks the cluster first (for at most
`MISSING_TOPIC_WAIT_MS`) and raises `TopicMissing` when there is none, where kafka-python
would block the caller for its whole send deadline (60 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from har_stream.kafka.drivers.errors import UNKNOWN_TOPIC, failure
from har_stream.kafka.ports import (
    Acknowledged,
    Headers,
    KafkaFailure,
    KafkaTimeout,
    RecordRefused,
    TopicMissing,
)

MISSING_TOPIC_WAIT_MS = 2000
"""How long `partitions_for` waits for a topic kafka-python's metadata does not know: the
cluster's first answer decides, but kafka-python keeps asking until its deadline."""


def as_failure(exc: BaseException) -> KafkaFailure:
    """kafka-python's exception as ours (by the broker's code it carries, if any)."""
    if isinstance(exc, KafkaFailure):
        return exc
    if isinstance(exc, KafkaTimeoutError):
        return KafkaTimeout(f"{type(exc).__name__}: {exc}")
    code = getattr(exc, "errno", None)
    return failure(code if isinstance(code, int) and code > 0 else None,
                   f"{type(exc).__name__}: {exc}")


class KafkaPythonDelivery:
    """A kafka-python future behind the `Delivery` port."""

    __slots__ = ("acknowledged_at", "future")

    def __init__(self, future: Any) -> None:
        self.future = future
        self.acknowledged_at: float | None = None
        future.add_callback(self._stamp)  # before any other: the time it arrived

    def _stamp(self, _metadata: Any) -> None:
        self.acknowledged_at = time.time()

    def _outcome(self, result: Any) -> Acknowledged | KafkaFailure:
        if isinstance(result, BaseException):
            return as_failure(result)
        return Acknowledged(result.topic, result.partition, result.offset, result.timestamp,
                            self.acknowledged_at)

    def add_both(self, fn: Callable[[Acknowledged | KafkaFailure], object]
                 ) -> KafkaPythonDelivery:
        self.future.add_both(lambda result: fn(self._outcome(result)))
        return self

    def get(self, timeout_s: float | None = None) -> Acknowledged:
        try:
            result = self.future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise as_failure(exc) from None
        outcome = self._outcome(result)
        assert isinstance(outcome, Acknowledged)
        return outcome


class KafkaPythonProducer:
    """`ports.Producer` on kafka-python (see the module doc)."""

    def __init__(self, client: KafkaProducer) -> None:
        self.client = client

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Headers | None = None, partition: int | None = None
             ) -> KafkaPythonDelivery:
        if self.client._metadata.partitions_for_topic(topic) is None and not self.partitions_for(
                topic):  # kafka-python's send would wait for it for 60 s (`max_block_ms`)
            raise TopicMissing(f"topic {topic} does not exist", UNKNOWN_TOPIC)
        if key is None and value is None:  # Kafka stores one; kafka-python refuses to send it
            raise RecordRefused("kafka-python sends no record with neither key nor value")
        try:
            future = self.client.send(topic, value=value, key=key, headers=headers,
                                      partition=partition)
        except KafkaError as exc:  # too large, or the buffer stays full
            raise as_failure(exc) from None
        return KafkaPythonDelivery(future)

    def serve(self) -> None:
        """Nothing to do: kafka-python runs the callbacks on its sender thread."""

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self.client.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise as_failure(exc) from None

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions (empty: no such topic). kafka-python's own call waits for a
        missing topic until its send deadline (60 s), so the wait is bounded here."""
        metadata = self.client._metadata
        known = metadata.partitions_for_topic(topic)
        if known is not None:
            return set(known)
        answered_before = metadata._last_successful_refresh_ms
        try:
            return set(self.client._wait_on_metadata(topic, MISSING_TOPIC_WAIT_MS))
        except KafkaTimeoutError as exc:
            if metadata._last_successful_refresh_ms > answered_before:
                return set()  # the cluster answered: it has no such topic
            raise as_failure(exc) from None  # no answer: nothing is known
        except KafkaError as exc:
            raise as_failure(exc) from None

    def close(self, timeout_s: float | None = None) -> None:
        self.client.close(timeout=timeout_s)
