"""The producer of the in-memory cluster (`memory.py` has the cluster and its controls).

A record sent waits in its producer until the cluster acknowledges it (automatically at the
producer's next serve/flush/send, or by the test's `cluster.acknowledge`); only then is it
stored and readable. Delivery callbacks run inside `serve`, `flush`, `send` or `close`, on
the caller's thread, outside the cluster's lock; `flush` waits on the cluster's condition.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable

from har_stream.kafka.drivers.errors import INVALID_RECORD, MESSAGE_TOO_LARGE, UNKNOWN_TOPIC
from har_stream.kafka.drivers.memory_log import ENTRY_OVERHEAD, entry_size, partition_of
from har_stream.kafka.drivers.memory_state import ClusterState
from har_stream.kafka.ports import (
    Acknowledged,
    Headers,
    KafkaFailure,
    KafkaTimeout,
    RecordRefused,
    TopicMissing,
)

Outcome = Acknowledged | KafkaFailure


class MemoryDelivery:
    """The outcome of one send: set at acknowledgement, callbacks run by the producer."""

    __slots__ = ("callbacks", "fired", "outcome", "producer")

    def __init__(self, producer: MemoryProducer) -> None:
        self.producer = producer
        self.outcome: Outcome | None = None
        self.callbacks: list[Callable[[Outcome], object]] | None = None
        self.fired = False

    def add_both(self, fn: Callable[[Outcome], object]) -> MemoryDelivery:
        if self.fired:
            fn(self.outcome)  # type: ignore[arg-type]  # fired: the outcome is set
        elif self.callbacks is None:
            self.callbacks = [fn]
        else:
            self.callbacks.append(fn)
        return self

    def get(self, timeout_s: float | None = None) -> Acknowledged:
        self.producer.wait_for(lambda: self.outcome is not None, timeout_s)
        outcome = self.outcome
        if isinstance(outcome, KafkaFailure):
            raise outcome
        assert outcome is not None
        return outcome


Outgoing = tuple[int, str, int | None, bytes | None, bytes | None, Headers, int, MemoryDelivery]


class MemoryProducer:
    """The producer port over a `ClusterState`."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self.outgoing: deque[Outgoing] = deque()  # sent, not yet acknowledged, oldest first
        self.settled: list[MemoryDelivery] = []  # outcome known, callbacks not yet run
        self.closed = False
        self._next_partition = 0

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Headers | None = None, partition: int | None = None) -> MemoryDelivery:
        cluster = self.cluster
        if self.closed:
            raise KafkaFailure("the producer is closed")
        if headers:
            headers = list(headers)
            size = entry_size(key, value, headers)
        else:
            headers = []
            size = (len(key) if key else 0) + (len(value) if value else 0) + ENTRY_OVERHEAD
        if size > cluster.max_record_bytes:
            raise RecordRefused(f"record of {size} bytes to {topic}: more than "
                                f"{cluster.max_record_bytes}", code=MESSAGE_TOO_LARGE)
        if partition is None:
            partition = self._choose(topic, key)
        if cluster.refuse_at_send is not None:
            failure = cluster.refuse_at_send(topic, key, value, headers,
                                             -1 if partition is None else partition)
            if failure is not None:
                raise failure
        if cluster.journal is not None:
            cluster.journal.append(f"send {topic}")
        delivery = MemoryDelivery(self)
        with cluster.lock:
            if self.outgoing and cluster.auto_acknowledge and cluster.reachable:
                self._acknowledge_all()
            self.outgoing.append((next(cluster.sequence), topic, partition, key, value,
                                  headers, int(cluster.wall() * 1000), delivery))
        if self.settled:
            self._run_callbacks()
        return delivery

    def _choose(self, topic: str, key: bytes | None) -> int | None:
        known = self.cluster.topics.get(topic)
        if known is None:
            return None  # decided at acknowledgement, if it exists by then
        if key is not None:
            return partition_of(key, len(known.logs))
        self._next_partition += 1
        return self._next_partition % len(known.logs)

    def acknowledge_oldest(self) -> None:
        """Store (or fail) the oldest record sent (under the cluster lock)."""
        _, topic, partition, key, value, headers, timestamp, delivery = self.outgoing.popleft()
        cluster = self.cluster
        known = cluster.topics.get(topic)
        outcome: Outcome
        if partition is None and known is not None:
            partition = self._choose(topic, key)
        if known is None or partition is None:
            outcome = TopicMissing(f"no topic {topic!r}", code=UNKNOWN_TOPIC)
        elif not 0 <= partition < len(known.logs):
            outcome = KafkaFailure(f"{topic} has no partition {partition}", code=UNKNOWN_TOPIC)
        elif cluster.refuse is not None and (refused := cluster.refuse(
                topic, key, value, headers, partition)) is not None:
            outcome = refused
        elif known.compact and key is None:
            outcome = RecordRefused(f"{topic} is compacted: a record needs a key",
                                    code=INVALID_RECORD)
        else:
            offset = known.logs[partition].append((timestamp, key, value, headers))
            outcome = Acknowledged(topic, partition, offset, timestamp, cluster.wall())
        delivery.outcome = outcome
        self.settled.append(delivery)

    def _acknowledge_all(self) -> None:
        while self.outgoing:
            self.acknowledge_oldest()
        self.cluster.notify()

    def _run_callbacks(self) -> None:
        if not self.settled:
            return
        with self.cluster.lock:
            settled, self.settled = self.settled, []
        error: BaseException | None = None
        for delivery in settled:
            delivery.fired = True
            callbacks, delivery.callbacks = delivery.callbacks, None
            for fn in callbacks or ():
                try:
                    fn(delivery.outcome)  # type: ignore[arg-type]  # settled: set
                except Exception as exc:  # the others still run; the first is raised after
                    error = error or exc
        if error is not None:
            raise error

    def serve(self) -> None:
        cluster = self.cluster
        if self.outgoing and cluster.auto_acknowledge and cluster.reachable:
            with cluster.lock:
                self._acknowledge_all()
        self._run_callbacks()

    def wait_for(self, done: Callable[[], bool], timeout_s: float | None) -> None:
        """Serve until `done()`; `KafkaTimeout` after `timeout_s` (at once when the cluster
        does not wait)."""
        cluster = self.cluster
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            self.serve()
            with cluster.lock:
                while not done():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if not cluster.waits or (remaining is not None and remaining <= 0):
                        raise KafkaTimeout(f"{len(self.outgoing)} records not acknowledged "
                                           f"within {timeout_s} s")
                    cluster.wait(remaining)
                    if cluster.auto_acknowledge and cluster.reachable:
                        self._acknowledge_all()
        finally:
            self._run_callbacks()

    def flush(self, timeout_s: float | None = None) -> None:
        if self.cluster.journal is not None:
            self.cluster.journal.append("flush")
        self.wait_for(lambda: not self.outgoing, timeout_s)

    def partitions_for(self, topic: str) -> set[int]:
        cluster = self.cluster
        with cluster.lock:
            cluster.check_reachable("partitions")
            known = cluster.topics.get(topic)
            return set(range(len(known.logs))) if known else set()

    def close(self, timeout_s: float | None = None) -> None:
        if self.closed:
            return
        with contextlib.suppress(KafkaTimeout):
            self.flush(timeout_s)
        cluster = self.cluster
        with cluster.lock:
            self.closed = True
            while self.outgoing:
                delivery = self.outgoing.popleft()[-1]
                delivery.outcome = KafkaTimeout("the producer closed before an acknowledgement")
                self.settled.append(delivery)
            if self in cluster.producers:
                cluster.producers.remove(self)
        self._run_callbacks()
