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

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from service_support import FakeModel, batches_of

from har_stream.core import codec
from har_stream.kafka import ports
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.ports import Headers, Partition
from har_stream.service.changelog import ChangelogReader, StoredState
from har_stream.service.loop import Service
from har_stream.service.settings import Settings

WALL = 1_700_000_000.0
"""The wall clock of the service and of the cluster (record timestamps)."""
STUCK_STEPS = 100
"""Steps without input, messages waiting, after which `drain` and `step_all` give up."""


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
        self._idle = 0
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
        self._step()
        while self.unread():
            self._step()

    def drain(self, checkpoint_every: int = 1) -> None:
        """Step until every message is polled and a poll brings nothing (rebalances applied),
        checkpointing every `checkpoint_every` steps, then once more."""
        steps = 0
        while self._step() is not None or self.unread():
            steps += 1
            if steps % checkpoint_every == 0:
                self.service.checkpoint()
        self.service.checkpoint()

    def _step(self) -> Any:
        """One step; fails, instead of looping on, a service that stopped polling input
        (held, or paused) while messages wait."""
        output = self.service.step()
        self._idle = 0 if output is not None else self._idle + 1
        if self._idle > STUCK_STEPS and self.unread():
            raise AssertionError(f"{self.unread()} messages wait but {STUCK_STEPS} steps polled "
                                 f"none (held: {self.service.held})")
        return output
