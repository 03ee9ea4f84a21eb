"""The contract suite's harness: a driver's clients and topics for one test, and the waits
every test needs (they end as soon as what they wait for shows, so they cost a real broker
only its own latency)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from har_stream.kafka.ports import (
    Admin,
    Consumer,
    Damaged,
    Partition,
    Producer,
    Record,
    TopicLayout,
)

WAIT_S = 20.0
"""How long a test waits for the cluster to show something before it fails (never reached
when the driver works: the waits end as soon as the awaited thing shows)."""


CLOSE_S = 2.0
"""How long closing a test's producer may wait for records it still holds."""


class Listener:
    """A rebalance listener that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, frozenset[Partition]]] = []
        self.types: set[type] = set()  # of the partitions it was given: ours, not a library's

    def _heard(self, kind: str, partitions: list[Partition]) -> None:
        self.types.update(type(p) for p in partitions)
        self.events.append((kind, frozenset(partitions)))

    def on_partitions_revoked(self, partitions: list[Partition]) -> None:
        self._heard("revoked", partitions)

    def on_partitions_assigned(self, partitions: list[Partition]) -> None:
        self._heard("assigned", partitions)

    def on_partitions_lost(self, partitions: list[Partition]) -> None:
        self._heard("lost", partitions)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


class Kafka:
    """One driver's admin, clients and topics for one test; everything closed after it."""

    def __init__(self, name: str, admin: Admin, producer: Callable[[], Producer],
                 consumer: Callable[[str | None], Consumer],
                 member: Callable[[str], Consumer],
                 unreadable: Callable[[str, int, str, bytes, bytes], int]) -> None:
        self.name = name
        self.admin = admin
        self._producer, self._consumer, self._member = producer, consumer, member
        self.unreadable = unreadable
        self.cut: Callable[[], None] = _cannot
        """Cut every client off the cluster (the `severable` fixture's drivers)."""
        self.restore: Callable[[], None] = _cannot
        """`unreadable(topic, partition, reason, key, value)`: write a record no client can
        read whole (`reason`: one of ports' BAD_HEADER, BAD_CHECKSUM, BAD_COMPRESSION), with
        the header ("ok", b"1"); its offset."""
        self._consumers: list[Consumer] = []
        self._producers: list[Producer] = []
        self._topics: list[str] = []

    def name_topic(self) -> str:
        return f"contract-{uuid.uuid4().hex[:10]}"

    def topic(self, partitions: int = 1, configs: Mapping[str, str] | None = None) -> str:
        """A new topic of its own, created through the driver's admin."""
        name = self.name_topic()
        assert self.admin.create_topics({name: TopicLayout(partitions, 1, dict(configs or {}))}
                                        ) == {name}
        self._topics.append(name)
        return name

    def producer(self) -> Producer:
        producer = self._producer()
        self._producers.append(producer)
        return producer

    def consumer(self, group_id: str | None = None) -> Consumer:
        """A consumer that reads chosen partitions (`assign`), committing to `group_id`."""
        consumer = self._consumer(group_id)
        self._consumers.append(consumer)
        return consumer

    def member(self, group_id: str) -> Consumer:
        """A consumer meant to `subscribe` as a member of `group_id`."""
        member = self._member(group_id)
        self._consumers.append(member)
        return member

    def close(self) -> None:
        """Producers (not waiting long for what a test left undeliverable), consumers, the
        test's topics, the admin."""
        for producer in self._producers:
            with contextlib.suppress(Exception):
                producer.close(CLOSE_S)
        for consumer in self._consumers:
            with contextlib.suppress(Exception):  # closed by the test already
                consumer.close()
        for topic in self._topics:
            with contextlib.suppress(Exception):  # deleted by the test itself, say
                self.admin.delete_topics([topic])
        self.admin.close()


def _cannot() -> None:
    raise AssertionError("this driver's cluster cannot be cut off: use `severable`")


def group_name() -> str:
    return f"contract-group-{uuid.uuid4().hex[:8]}"


def send_all(producer: Producer, topic: str, values: list[bytes], partition: int | None = 0,
             key: Callable[[int], bytes | None] = lambda _i: None) -> list[Any]:
    """Send `values` and wait for every acknowledgement; the `Acknowledged` of each."""
    deliveries = [producer.send(topic, key=key(i), value=v, partition=partition)
                  for i, v in enumerate(values)]
    producer.flush(WAIT_S)
    return [d.get(WAIT_S) for d in deliveries]


def consume(consumer: Consumer, count: int, wait_s: float = WAIT_S,
            max_records: int = 500) -> list[Record | Damaged]:
    """Poll until `count` records came (or the wait ends); them, in the order handed over."""
    got: list[Record | Damaged] = []
    deadline = time.monotonic() + wait_s
    while len(got) < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100, max_records=max_records).values():
            got.extend(records)
    return got


def poll_until(consumers: list[Consumer], done: Callable[[], bool], wait_s: float = WAIT_S,
               seen: list[Record | Damaged] | None = None) -> bool:
    """Poll every consumer in turn until `done()`; records polled meanwhile go to `seen`."""
    deadline = time.monotonic() + wait_s
    while not done():
        if time.monotonic() > deadline:
            return False
        for consumer in consumers:
            for records in consumer.poll(timeout_ms=50).values():
                if seen is not None:
                    seen.extend(records)
    return True
