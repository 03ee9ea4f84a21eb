"""The in-memory cluster's state and controls, below its clients (see `memory.py`).

Why apart: the consumer, producer and admin of the cluster work on this state, and the
cluster (`memory.MemoryCluster`) builds them; with the state below both, neither imports the
other's module. What the state needs of a producer (`Sender`) and of a group member
(`memory_log.Member`) it names as protocols.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from har_stream.kafka.drivers.errors import UNKNOWN_TOPIC
from har_stream.kafka.drivers.memory_log import (
    MAX_RECORD_BYTES,
    Group,
    Member,
    Refusal,
    Retention,
    Topic,
)
from har_stream.kafka.ports import Headers, KafkaTimeout, Partition, Record, TopicMissing


class Sender(Protocol):
    """A producer as the cluster acknowledges it: its records in flight, oldest first."""

    @property
    def outgoing(self) -> Sequence[Any]: ...

    def acknowledge_oldest(self) -> None: ...


class ClusterState:
    """The cluster without its clients: what they share, and the controls (`memory.py`)."""

    def __init__(self, *, auto_acknowledge: bool = True, waits: bool = True,
                 max_record_bytes: int = MAX_RECORD_BYTES,
                 wall: Callable[[], float] = time.time) -> None:
        self.auto_acknowledge = auto_acknowledge
        self.waits = waits
        self.max_record_bytes = max_record_bytes
        self.wall = wall
        self.refuse: Refusal | None = None
        self.refuse_at_send: Refusal | None = None
        self.journal: list[str] | None = None
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.topics: dict[str, Topic] = {}
        self.groups: dict[str, Group] = {}
        self.damaged: dict[tuple[str, int, int], str] = {}
        self.producers: list[Sender] = []
        self._reachable = True
        self.sequence = itertools.count()
        self.waiting = 0  # threads waiting on `changed`: nobody to wake, no notify

    # --- controls --------------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        return self._reachable

    @reachable.setter
    def reachable(self, value: bool) -> None:
        with self.lock:
            self._reachable = value
            self.notify()

    def check_reachable(self, what: str) -> None:
        if not self._reachable:
            raise KafkaTimeout(f"{what}: no connection to the (in-memory) cluster")

    def retain(self, topic: str, keep: Retention) -> None:
        """Which records `topic` keeps: all (True), none (False: counted only, for volume),
        or those whose key `keep(key)` accepts. Offsets advance either way."""
        with self.lock:
            for log in self.topic(topic).logs:
                log.keep(keep)

    def delete_records(self, topic: str, before: Mapping[int, int]) -> None:
        """Remove each partition's records below its offset (Kafka's DeleteRecords): volume
        tests drop what the service consumed. Offsets and the end stay."""
        with self.lock:
            for partition, offset in before.items():
                self.topic(topic).logs[partition].delete_below(offset)

    def put(self, topic: str, partition: int, key: bytes | None = None,
            value: bytes | None = None, headers: Headers | None = None,
            timestamp_ms: int | None = None) -> int:
        """Store a record as another client would have (no producer, no refusal); its
        offset."""
        with self.lock:
            stamp = int(self.wall() * 1000) if timestamp_ms is None else timestamp_ms
            offset = self.topic(topic).logs[partition].append(
                (stamp, key, value, list(headers or [])))
            self.notify()
            return offset

    def rebalance(self, group_id: str) -> None:
        """Make the group rebalance (as a member joining and leaving at once does): each
        member hears revoked, then assigned, in its next poll."""
        with self.lock:
            self.group(group_id).rebalance(self.topics)
            self.notify()

    def damage(self, topic: str, partition: int, offset: int, reason: str) -> None:
        """Polls hand `Damaged(reason)` at this offset instead of the record."""
        with self.lock:
            self.damaged[topic, partition, offset] = reason

    def expel(self, member: Member) -> None:
        """Throw a member out of its group (as a missed poll deadline does): its next poll
        reports its partitions lost and joins again; the others rebalance."""
        with self.lock:
            group = self.groups.get(member.group_id or "")
            if group is None or member not in group.members:
                return
            group.members.remove(member)
            member.expelled = True
            group.rebalance(self.topics)
            self.notify()

    def acknowledge(self, n: int | None = None, producer: Sender | None = None) -> int:
        """Acknowledge the oldest `n` records sent (None: all), across producers or of
        `producer` only (a broker answering one connection first); how many were. Their
        callbacks run at their producer's next serve/flush/send."""
        with self.lock:
            if not self._reachable:
                return 0
            done = 0
            while n is None or done < n:
                heads = [p for p in ([producer] if producer else self.producers) if p.outgoing]
                if not heads:
                    break
                min(heads, key=lambda p: p.outgoing[0][0]).acknowledge_oldest()
                done += 1
            self.notify()
            return done

    def pending(self, topic: str | None = None) -> int:
        """Records sent (to `topic`; None: anywhere) and not yet acknowledged or failed."""
        with self.lock:
            if topic is None:
                return sum(len(p.outgoing) for p in self.producers)
            return sum(sent[1] == topic for p in self.producers for sent in p.outgoing)

    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise TopicMissing(f"no topic {name!r}", code=UNKNOWN_TOPIC)
        return topic

    def records(self, topic: str) -> list[Record]:
        """What `topic` holds now, partition by partition, in offset order."""
        with self.lock:
            return [Record(topic, p, offset, *entry)
                    for p, log in enumerate(self.topic(topic).logs)
                    for offset, entry in log.live()]

    def count(self, topic: str) -> int:
        """Records ever stored in `topic` (kept or not)."""
        with self.lock:
            return sum(log.end for log in self.topic(topic).logs)

    def committed_offsets(self, group_id: str) -> dict[Partition, int]:
        with self.lock:
            group = self.groups.get(group_id)
            return dict(group.committed) if group else {}

    # --- used by the clients ---------------------------------------------------------------

    def wait(self, timeout_s: float | None) -> None:
        """Wait for a change (under the lock): a record stored, a member, reachability."""
        self.waiting += 1
        try:
            self.changed.wait(timeout_s)
        finally:
            self.waiting -= 1

    def notify(self) -> None:
        """Wake the waiting clients (under the lock)."""
        if self.waiting:
            self.changed.notify_all()

    def group(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group()
        return group

    def rebalance_subscribers(self, topic: str) -> None:
        for group in self.groups.values():
            if any(topic in m.subscription for m in group.members):
                group.rebalance(self.topics)
