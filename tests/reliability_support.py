"""The service's tests on the in-memory Kafka driver: the real `Service` on a `MemoryCluster`.

Why: the loop's guarantees are statements about what Kafka holds (results acknowledged before
the snapshots that reflect them, snapshots before the commit, nothing committed past
unacknowledged output), so its tests drive it through the same ports as production, against
the in-memory cluster (har_stream/kafka/drivers/memory.py), which keeps Kafka's semantics at
memory speed, instead of stand-ins that guess which calls matter. `Harness` wires the service
as `runner.run` does: a group member subscribed with `service.events`, a producer for the
output and one for the changelog, a `ChangelogReader` over a consumer of its own. A test
produces sensor messages (`feed`), steps the loop, and reads what the cluster holds
(`sent`, `committed`, `snapshots`); faults are the cluster's controls (`reachable`,
`refuse`, `acknowledge`, `expel`, topics deleted and created again).
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from kafka.future import Future
from service_support import FakeModel, batches_of

from har_stream.core import codec
from har_stream.kafka import ports
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.ports import Acknowledged, Headers, KafkaTimeout, Partition
from har_stream.service.changelog import HEADER_COVERS_OFFSET, ChangelogReader, StoredState
from har_stream.service.loop import Service
from har_stream.service.settings import Settings

WALL = 1_700_000_000.0
"""The wall clock of the service and of the cluster (record timestamps)."""


class Message(NamedTuple):
    """A sensor message to produce: the cluster gives it its offset."""

    key: bytes | None
    value: bytes | None
    partition: int = 0
    headers: Headers | None = None


def sensor_messages(device_id: str, samples: np.ndarray, partition: int = 0,
                    per_message: int = 50) -> list[Message]:
    return [Message(device_id.encode(), codec.encode_sensor(b), partition)
            for b in batches_of(device_id, samples, per_message)]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingReader(ChangelogReader):
    """The real changelog reader, noting which partitions and records the service asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.partition_reads: list[list[int]] = []
        self.record_reads: list[dict[str, tuple[int, int]]] = []

    def read_partitions(self, partitions: Iterable[int]) -> dict[str, StoredState]:
        wanted = sorted(set(partitions))
        self.partition_reads.append(wanted)
        return super().read_partitions(wanted)

    def read_records(self, locations: Any) -> dict[str, StoredState]:
        self.record_reads.append(dict(locations))
        return super().read_records(locations)


def create_topics(cluster: MemoryCluster, settings: Settings, partitions: int = 8,
                  read: Iterable[str] | None = None) -> None:
    """The service's topics as `prepare_service_topics` lays them out: the changelog with the
    sensor topic's partitions, changelog and devices compacted; the other outputs get one
    partition, so that `sent` lists them in the order they were acknowledged. Outputs not in
    `read` (None: all) are counted, not kept (volume tests)."""
    topics = settings.topics
    compact = {"cleanup.policy": "compact"}
    cluster.create_topic(topics.sensor_topic, partitions)
    cluster.create_topic(topics.changelog_topic, partitions, compact)
    for name in topics.names():
        if name not in (topics.sensor_topic, topics.changelog_topic):
            cluster.create_topic(name, 1, compact if name == topics.devices_topic else None,
                                 retain=read is None or name in read)


class Harness:
    """The real `Service` on a `MemoryCluster` (see the module doc).

    The cluster never blocks (`waits=False`: the service's clock is a `Clock` a test moves);
    `auto_acknowledge=False` leaves acknowledgements to `cluster.acknowledge`. Pass the
    `cluster` of another harness to run a second member, or a restarted service, on it.
    """

    def __init__(self, settings: Settings, model: Any = None, *, clock: Clock | None = None,
                 partitions: int = 8, read: Iterable[str] | None = None,
                 auto_acknowledge: bool = True, cluster: MemoryCluster | None = None) -> None:
        self.settings, self.topics = settings, settings.topics
        if cluster is None:
            cluster = MemoryCluster(auto_acknowledge=auto_acknowledge, waits=False,
                                    wall=lambda: WALL)
            create_topics(cluster, settings, partitions, read)
        self.cluster = cluster
        self.clock = clock or Clock()
        self.feeder = cluster.producer()
        self.consumer = cluster.consumer(settings.group_id)
        self.producer, self.snapshot_producer = cluster.producer(), cluster.producer()
        self.reader = CountingReader(cluster.consumer(), self.topics.changelog_topic,
                                     timeout_s=settings.restore_timeout_s)
        self.service = Service(settings, model if model is not None else FakeModel(),
                               self.consumer, self.producer, self.reader, clock=self.clock,
                               wall=lambda: WALL, snapshot_producer=self.snapshot_producer)
        self.consumer.subscribe([self.topics.sensor_topic], listener=self.service.events)
        self.polls: list[tuple[int, int]] = []  # (timeout_ms, max_records) of every poll
        poll = self.consumer.poll

        def noted(timeout_ms: int = 0, max_records: int = 500) -> Any:
            self.polls.append((timeout_ms, max_records))
            return poll(timeout_ms, max_records)

        self.consumer.poll = noted  # type: ignore[method-assign]

    def feed(self, messages: Iterable[Message]) -> list[tuple[int, int]]:
        """Produce sensor messages (acknowledged at once); their (partition, offset)."""
        topic, send = self.topics.sensor_topic, self.feeder.send
        outcomes: list[ports.Acknowledged | ports.KafkaFailure] = []
        for m in messages:
            send(topic, m.key, m.value, m.headers, m.partition).add_both(outcomes.append)
        self.cluster.acknowledge(producer=self.feeder)
        self.feeder.serve()
        failures = [o for o in outcomes if isinstance(o, ports.KafkaFailure)]
        if failures:
            raise failures[0]
        return [(a.partition, a.offset) for a in outcomes]  # type: ignore[union-attr]

    def acknowledge(self, n: int | None = None, producer: Any = None) -> int:
        """The cluster acknowledges the oldest `n` records (None: all; `producer`: only its
        own), and their callbacks run, as at the loop's next poll; how many."""
        count = self.cluster.acknowledge(n, producer)
        self.producer.serve()
        self.snapshot_producer.serve()
        return count

    def rebalance(self) -> None:
        """Another member joins the group and leaves before this one polls again: at its
        next poll, every partition is revoked and assigned back (nobody committed)."""
        other = self.cluster.consumer(self.settings.group_id)
        other.subscribe([self.topics.sensor_topic])
        other.close()

    def sent(self, topic: str) -> list[ports.Record]:
        """What `topic` holds (acknowledged records only)."""
        return self.cluster.records(topic)

    def committed(self) -> dict[int, int]:
        """The group's committed offsets of the sensor topic, by partition."""
        return {p.partition: n for p, n in
                self.cluster.committed_offsets(self.settings.group_id).items()
                if p.topic == self.topics.sensor_topic}

    def snapshots(self) -> dict[str, StoredState]:
        """Each device's latest snapshot in the changelog, read as a restore reads it."""
        reader = ChangelogReader(self.cluster.consumer(), self.topics.changelog_topic)
        partitions = len(self.cluster.topic(self.topics.changelog_topic).logs)
        return reader.read_partitions(range(partitions))

    def unread(self) -> int:
        """Sensor messages the service has not polled yet."""
        topic = self.topics.sensor_topic
        committed = self.committed()
        return sum(max(log.end - (self.consumer.position(Partition(topic, p))
                                  or committed.get(p, log.start)), 0)
                   for p, log in enumerate(self.cluster.topic(topic).logs))

    def step_all(self) -> None:
        """Step at least once (rebalances applied), then until every message is polled."""
        self.service.step()
        while self.unread():
            self.service.step()

    def drain(self, checkpoint_every: int = 1) -> None:
        """Step until every message is polled and a poll brings nothing (rebalances applied),
        checkpointing every `checkpoint_every` steps, then once more."""
        steps = 0
        while self.service.step() is not None or self.unread():
            steps += 1
            if steps % checkpoint_every == 0:
                self.service.checkpoint()
        self.service.checkpoint()


# --- the stand-ins being replaced ---
@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)
    timestamp: int = 1_700_000_000_000


def Metadata(topic: str, partition: int, offset: int) -> Acknowledged:
    return Acknowledged(topic, partition, offset, 1_700_000_000_000)


TP = Partition


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list
    partition: int


class LeanProducer:
    """Acknowledges at flush; keeps records of the topics in `keep` (all: None), and the
    changelog as a dict. `refuse(record) -> exception or None` simulates broker refusals;
    `refuse_at_send` the same, raised by `send` itself (as kafka-python does for records
    larger than max_request_size)."""

    def __init__(self, changelog_topic: str, keep: set[str] | None = None) -> None:
        self.changelog_topic = changelog_topic
        self.keep = keep
        self.sent: dict[str, list[Sent]] = defaultdict(list)
        self.snapshots: dict[str, StoredState] = {}
        self.refuse: Callable[[Sent], BaseException | None] = lambda _record: None
        self.refuse_at_send: Callable[[Sent], BaseException | None] = lambda _record: None
        self.keep_snapshot: Callable[[str], bool] = lambda _device: True
        self.flush_blocks = False  # True: flush times out (an unreachable broker)
        self._pending: list[tuple[Future, Sent]] = []
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._lock = threading.Lock()
        self.sends = 0

    def send(self, topic: str, key: Any = None, value: Any = None, headers: Any = None,
             partition: int | None = None) -> Future:
        record = Sent(topic, key, value, list(headers or []), partition or 0)
        error = self.refuse_at_send(record)
        if error is not None:
            raise error
        self.sends += 1
        future = Future()
        with self._lock:
            self._pending.append((future, record))
        return future

    def serve(self) -> None:
        pass

    def flush(self, timeout_s: float | None = None) -> None:
        if self.flush_blocks:
            raise KafkaTimeout(f"flush not done within {timeout_s} s")
        with self._lock:
            pending, self._pending = self._pending, []
        for future, record in pending:
            error = self.refuse(record)
            if error is not None:
                future.failure(error)
                continue
            offset = self._offsets[record.topic, record.partition]
            self._offsets[record.topic, record.partition] += 1
            if record.topic == self.changelog_topic:
                device = record.key.decode()
                if not self.keep_snapshot(device):  # a real changelog keeps it, out of process
                    future.success(Metadata(record.topic, record.partition, offset))
                    continue
                covers = int(dict(record.headers)[HEADER_COVERS_OFFSET])
                self.snapshots[device] = StoredState(device, record.partition, record.value,
                                                     covers, offset, 1_700_000_000_000)
            elif self.keep is None or record.topic in self.keep:
                self.sent[record.topic].append(record)
            future.success(Metadata(record.topic, record.partition, offset))

    def pending(self) -> int:
        return len(self._pending)


class QueueConsumer:
    """Serves queued records per poll (at most `max_records`), firing rebalance events first.

    `feed(records)` appends; `rebalance(kind, partitions)` queues an event for the next poll.
    Paused partitions are not served. `connections` > 0: connected; `ids`: topic ids.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.queue: deque[Record] = deque()
        self.listener: Any = None
        self.events: list[tuple[str, list[int]]] = []
        self.committed_offsets: dict[int, int] = {}
        self.paused: set[int] = set()
        self.polls: list[int | None] = []  # max_records of every poll
        self.connections = 1.0
        self.ids: dict[str, str] = {}

    def feed(self, records: Iterable[Record]) -> None:
        self.queue.extend(records)

    def rebalance(self, kind: str, partitions: list[int]) -> None:
        self.events.append((kind, partitions))

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.polls.append(max_records)
        for kind, partitions in self.events:
            getattr(self.listener, f"on_partitions_{kind}")([TP(self.topic, p)
                                                             for p in partitions])
        self.events = []
        polled: dict[TP, list[Record]] = defaultdict(list)
        taken = 0
        kept: deque[Record] = deque()
        while self.queue and taken < (max_records or 500):
            record = self.queue.popleft()
            if record.partition in self.paused:
                kept.append(record)
                continue
            polled[TP(record.topic, record.partition)].append(record)
            taken += 1
        self.queue.extendleft(reversed(kept))
        return dict(polled)

    def committed(self, tp: Any) -> int | None:
        return self.committed_offsets.get(tp.partition)

    def commit(self, offsets: dict, timeout_s: float = 30.0) -> None:
        for tp, offset in offsets.items():
            self.committed_offsets[tp.partition] = offset

    def highwater(self, tp: Any) -> None:
        return None

    def assignment(self) -> set[TP]:
        return {TP(self.topic, p) for p in range(8)}

    def pause(self, *tps: TP) -> None:
        self.paused.update(tp.partition for tp in tps)

    def resume(self, *tps: TP) -> None:
        self.paused.difference_update(tp.partition for tp in tps)

    def connected(self) -> bool:
        return self.connections > 0

    def topics(self) -> set[str]:
        return set(self.ids) or {self.topic}

    def topic_id(self, topic: str) -> str | None:
        return self.ids.get(topic)


class DictChangelog:
    """`ChangelogReader` over a LeanProducer's latest snapshots."""

    def __init__(self, producer: LeanProducer) -> None:
        self.producer = producer
        self.record_reads = 0

    def read_partitions(self, partitions: Iterable[int]) -> dict[str, StoredState]:
        wanted = set(partitions)
        return {d: s for d, s in self.producer.snapshots.items() if s.partition in wanted}

    def read_records(self, locations: dict) -> dict[str, StoredState]:
        self.record_reads += len(locations)
        return {d: self.producer.snapshots[d] for d in locations
                if d in self.producer.snapshots}


def make_service(settings: Any, model: Any, keep: set[str] | None = None,
                 clock: Clock | None = None) -> tuple[Any, QueueConsumer, LeanProducer]:
    """A real `app.Service` wired to the stand-ins above (partitions 0..7 assigned)."""
    from har_stream.service.loop import Service

    consumer = QueueConsumer(settings.topics.sensor_topic)
    producer = LeanProducer(settings.topics.changelog_topic, keep)
    service = Service(settings, model, consumer, producer, DictChangelog(producer),
                      clock=clock or Clock(), wall=lambda: 1_700_000_000.0)
    consumer.listener = service.events
    consumer.rebalance("assigned", list(range(8)))
    return service, consumer, producer


def drain(service: Any, consumer: QueueConsumer, checkpoint_every: int = 1) -> None:
    """Step until the queue is empty, checkpointing every `checkpoint_every` steps."""
    steps = 0
    while consumer.queue or consumer.events:
        service.step()
        steps += 1
        if steps % checkpoint_every == 0:
            service.checkpoint()
    service.checkpoint()


