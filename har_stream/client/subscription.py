"""`subscribe`: typed, de-duplicated records from a cluster, one iterator for every topic.

Built on kafka-python's consumer. With a `group`, the group's members share the partitions
and offsets are committed automatically (the consumer's defaults), so a restarted app
resumes where it left; without one, every partition is read from the start. Records that do
not decode are skipped and counted (`Subscription.rejected`), never raised: one bad record
must not stop a dashboard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from kafka import KafkaConsumer

from har_stream.client.decoding import DEFAULT_TOPICS, KINDS, Record, decode, record_identity
from har_stream.client.dedup import Deduplicator
from har_stream.core.codec import DecodeError

log = logging.getLogger(__name__)

DEFAULT_SUBSCRIPTION = ("har.activity-changes", "har.devices")


class Subscription:
    """An iterator of typed records; close it (or use `with`) to leave the group."""

    def __init__(self, consumer: Any, kinds: Mapping[str, str],
                 dedup: Deduplicator | None, idle_timeout_s: float | None,
                 poll_timeout_ms: int = 500) -> None:
        self.consumer = consumer
        self.kinds = dict(kinds)
        self.dedup = dedup
        self.idle_timeout_s = idle_timeout_s
        self.poll_timeout_ms = poll_timeout_ms
        self.received = 0
        self.rejected = 0

    @property
    def duplicates(self) -> int:
        return self.dedup.duplicates if self.dedup is not None else 0

    def __iter__(self) -> Iterator[Record]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[Record]]:
        """Each poll's new records, an empty list when a poll brought none: for apps that
        also need to act while nothing arrives (redraw, time out)."""
        last = time.monotonic()
        while self.idle_timeout_s is None or time.monotonic() - last < self.idle_timeout_s:
            polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
            if not polled and not self.consumer.assignment():
                last = time.monotonic()  # still joining the group: not idle yet
            batch: list[Record] = []
            for messages in polled.values():
                last = time.monotonic()
                for message in messages:
                    record = self._decode(message.topic, message.value)
                    if record is not None:
                        batch.append(record)
            yield batch

    def _decode(self, topic: str, value: bytes) -> Record | None:
        self.received += 1
        try:
            record = decode(self.kinds[topic], value)
        except DecodeError as error:
            self.rejected += 1
            log.warning("skipped a record of %s that does not decode: %s", topic, error)
            return None
        if self.dedup is not None and not self.dedup.first(record_identity(record)):
            return None
        return record

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def topic_kinds(topics: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """`topics` as {topic: kind}: default names map to their kind, a mapping is checked."""
    if isinstance(topics, Mapping):
        kinds = dict(topics)
    else:
        unknown = [t for t in topics if t not in DEFAULT_TOPICS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a default topic name; pass "
                             "{topic: kind} for renamed topics")
        kinds = {t: DEFAULT_TOPICS[t] for t in topics}
    bad = {k for k in kinds.values() if k not in KINDS}
    if bad or not kinds:
        raise ValueError(f"kinds must be some of {', '.join(KINDS)}; got {sorted(bad)}")
    return kinds


def subscribe(bootstrap: str, topics: Sequence[str] | Mapping[str, str] = DEFAULT_SUBSCRIPTION,
              group: str | None = None, *, dedup_capacity: int = 100_000,
              idle_timeout_s: float | None = None, from_beginning: bool = True,
              **consumer_config: Any) -> Subscription:
    """Subscribe to har-stream's output topics and iterate over their typed records.

    `topics`: default topic names, or {topic: kind} with kinds "results", "counts",
    "changes", "devices", "daily". `group`: a consumer group (offsets committed), or None.
    `dedup_capacity`: identities remembered to drop redelivered records (0: no de-duplication).
    `idle_timeout_s`: end the iteration after this long without a record, counted once the
    consumer has partitions (None: never).
    `from_beginning`: where a group without committed offsets starts. Other keyword arguments
    go to kafka-python's KafkaConsumer (security_protocol, ssl_cafile, sasl_mechanism, ...).
    """
    kinds = topic_kinds(topics)
    config = {"bootstrap_servers": bootstrap, "group_id": group,
              "auto_offset_reset": "earliest" if from_beginning else "latest",
              "enable_auto_commit": group is not None} | consumer_config
    consumer = KafkaConsumer(*kinds, **config)
    dedup = Deduplicator(dedup_capacity) if dedup_capacity > 0 else None
    return Subscription(consumer, kinds, dedup, idle_timeout_s)
