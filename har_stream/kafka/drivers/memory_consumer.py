"""The consumer of the in-memory cluster (`memory.py` has the cluster and its controls).

It shares the cluster's lock and waits on its condition, so a poll waits for the first record
a producer on another thread has stored, as over a broker. Rebalance callbacks run inside
`poll`, on the caller's thread, outside the lock (a listener may call the consumer).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from har_stream.kafka.drivers.memory_log import Log
from har_stream.kafka.drivers.memory_state import ClusterState
from har_stream.kafka.ports import (
    BAD_HEADER,
    CommitFailed,
    Damaged,
    Headers,
    KafkaFailure,
    Partition,
    RebalanceListener,
    Record,
)

REBALANCE_IN_PROGRESS = 27  # Kafka's error code for a commit the group no longer takes


class MemoryConsumer:
    """The consumer port over a `ClusterState` (a group member, or a reader by `assign`)."""

    def __init__(self, cluster: ClusterState, group_id: str | None,
                 auto_offset_reset: str = "earliest") -> None:
        self.cluster = cluster
        self.group_id = group_id
        self.reset_to_end = auto_offset_reset == "latest"
        self.subscription: frozenset[str] = frozenset()
        self.listener: RebalanceListener | None = None
        self.assigned: list[Partition] = []
        self.next_share: set[Partition] | None = None  # the group's last word, for next poll
        self.expelled = False
        self.positions: dict[Partition, int] = {}
        self.paused: set[Partition] = set()
        self.highwaters: dict[Partition, int] = {}
        self.ids: dict[str, str] = {}
        self.closed = False
        self._revoking = False
        self._turn = 0

    # --- group -----------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None
                  ) -> None:
        self._check_open()
        if self.group_id is None:
            raise KafkaFailure("subscribe needs a group id")
        cluster = self.cluster
        with cluster.lock:
            if self.assigned and not self.subscription:
                raise KafkaFailure("assigned partitions by hand: subscribe is not allowed")
            self.subscription = frozenset(topics)
            self.listener = listener
            group = cluster.group(self.group_id)
            if self not in group.members:
                group.members.append(self)
            group.rebalance(cluster.topics)
            cluster.notify()

    def reassign(self, share: set[Partition]) -> None:
        """The group's new share for this member (under the cluster lock)."""
        self.next_share = share

    def _apply_rebalance(self) -> None:
        """Run what the group decided since the last poll: lost (expelled, then join again),
        revoked, assigned; positions come from the committed offsets again."""
        cluster, listener = self.cluster, self.listener
        with cluster.lock:
            lost = None
            if self.expelled:
                lost, self.expelled = list(self.assigned), False
                self.assigned, self.positions = [], {}
                self.paused.clear()
                group = cluster.group(self.group_id or "")
                group.members.append(self)
                group.rebalance(cluster.topics)
            share, old = self.next_share, list(self.assigned)
        if lost is not None and listener is not None:
            listener.on_partitions_lost(lost)
        if share is None:
            return
        if listener is not None and old:
            self._revoking = True
            try:
                listener.on_partitions_revoked(old)
            finally:
                self._revoking = False
        with cluster.lock:
            share = self.next_share if self.next_share is not None else share
            self.next_share = None
            self.assigned = sorted(share)
            self.positions, self.highwaters = {}, {}
            self.paused.clear()
            assigned = list(self.assigned)
        if listener is not None:
            listener.on_partitions_assigned(assigned)

    # --- reading ---------------------------------------------------------------------------

    def assign(self, partitions: Sequence[Partition]) -> None:
        self._check_open()
        if self.subscription:
            raise KafkaFailure("subscribed to a group: assign is not allowed")
        with self.cluster.lock:
            self.assigned = sorted({Partition(*p) for p in partitions})
            kept = set(self.assigned)
            self.positions = {p: n for p, n in self.positions.items() if p in kept}
            self.paused &= kept

    def poll(self, timeout_ms: int = 0, max_records: int = 500
             ) -> Mapping[Partition, list[Record | Damaged]]:
        self._check_open()
        cluster = self.cluster
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self.next_share is not None or self.expelled:
                self._apply_rebalance()
            with cluster.lock:
                if self.next_share is not None or self.expelled:
                    continue
                polled = self._fetch(max_records)
                remaining = deadline - time.monotonic()
                if polled or remaining <= 0 or not cluster.waits:
                    return polled
                cluster.wait(remaining)

    def _fetch(self, room: int) -> dict[Partition, list[Record | Damaged]]:
        """Up to `room` records of the unpaused assigned partitions (under the lock), each
        poll starting at the next partition so none starves."""
        cluster = self.cluster
        if not cluster.reachable:
            return {}
        parts = [p for p in self.assigned if p not in self.paused]
        if not parts:
            return {}
        turn = self._turn % len(parts)
        self._turn += 1
        polled: dict[Partition, list[Record | Damaged]] = {}
        damaged = cluster.damaged
        for p in parts[turn:] + parts[:turn]:
            topic = cluster.topics.get(p.topic)
            if topic is None or p.partition >= len(topic.logs):
                continue
            log = topic.logs[p.partition]
            self.highwaters[p] = log.end
            if room <= 0:
                continue
            position = self.positions.get(p)
            if position is None or position > log.end:
                position = self._starting_position(p, log)
            elif position < log.start:
                position = log.end if self.reset_to_end else log.start
            taken, self.positions[p] = log.read(position, room)
            if not taken:
                continue
            name, number = p
            if damaged:
                polled[p] = [self._damaged(name, number, o, e, damaged[name, number, o])
                             if (name, number, o) in damaged else Record(name, number, o, *e)
                             for o, e in taken]
            else:
                polled[p] = [Record(name, number, o, e[0], e[1], e[2], e[3]) for o, e in taken]
            room -= len(taken)
        return polled

    @staticmethod
    def _damaged(topic: str, partition: int, offset: int,
                 entry: tuple[int, bytes | None, bytes | None, Headers], reason: str) -> Damaged:
        if reason != BAD_HEADER:  # the client could not read it at all
            return Damaged(topic, partition, offset, reason, "damaged in the memory cluster")
        timestamp, key, value, headers = entry
        return Damaged(topic, partition, offset, reason, "damaged in the memory cluster",
                       key, value, timestamp, headers)

    def _starting_position(self, p: Partition, log: Log) -> int:
        group = self.cluster.groups.get(self.group_id) if self.group_id else None
        committed = group.committed.get(p) if group else None
        if committed is not None and log.start <= committed <= log.end:
            return committed
        return log.end if self.reset_to_end else log.start

    def seek(self, partition: Partition, offset: int) -> None:
        with self.cluster.lock:
            if partition not in self.assigned:
                raise KafkaFailure(f"cannot seek {partition}: not assigned")
            self.positions[Partition(*partition)] = offset

    def seek_to_beginning(self, *partitions: Partition) -> None:
        with self.cluster.lock:
            for p in partitions or tuple(self.assigned):
                topic = self.cluster.topics.get(p.topic)
                logs = topic.logs if topic else []
                self.seek(p, logs[p.partition].start if p.partition < len(logs) else 0)

    def assignment(self) -> set[Partition]:
        return set(self.assigned)

    def pause(self, *partitions: Partition) -> None:
        with self.cluster.lock:
            self.paused.update(Partition(*p) for p in partitions)

    def resume(self, *partitions: Partition) -> None:
        with self.cluster.lock:
            self.paused.difference_update(Partition(*p) for p in partitions)

    # --- offsets ---------------------------------------------------------------------------

    def committed(self, partition: Partition) -> int | None:
        if self.group_id is None:
            return None
        cluster = self.cluster
        with cluster.lock:
            cluster.check_reachable("committed offsets")
            group = cluster.groups.get(self.group_id)
            return group.committed.get(partition) if group else None

    def position(self, partition: Partition) -> int | None:
        return self.positions.get(partition)

    def highwater(self, partition: Partition) -> int | None:
        return self.highwaters.get(partition)

    def commit(self, offsets: Mapping[Partition, int], timeout_s: float = 30.0) -> None:
        self._check_open()
        if self.group_id is None:
            raise KafkaFailure("no group id: there is no group to commit to")
        cluster = self.cluster
        if cluster.journal is not None:
            cluster.journal.append("commit")
        with cluster.lock:
            cluster.check_reachable("commit")
            group = cluster.group(self.group_id)
            if self.subscription:  # a member
                if self.expelled or self not in group.members:
                    raise CommitFailed("this member left the group (it rejoins at its next "
                                       "poll)", code=REBALANCE_IN_PROGRESS)
                if self.next_share is not None and not self._revoking:
                    # Kafka takes a member's commits until it joins again, as the others
                    # wait for it; here they do not wait, so what moved away is refused
                    strays = sorted(Partition(*p) for p in offsets
                                    if Partition(*p) not in self.next_share)
                    if strays:
                        raise CommitFailed(f"{strays} moved to another member of the group",
                                           code=REBALANCE_IN_PROGRESS)
            group.committed.update({Partition(*p): int(n) for p, n in offsets.items()})

    # --- cluster ---------------------------------------------------------------------------

    def connected(self) -> bool | None:
        return not self.closed and self.cluster.reachable

    def topics(self) -> set[str]:
        cluster = self.cluster
        with cluster.lock:
            cluster.check_reachable("topics")
            self.ids = {name: topic.id for name, topic in cluster.topics.items()}
        return set(self.ids)

    def topic_id(self, topic: str) -> str | None:
        known = self.ids.get(topic)
        if known is None and self.cluster.reachable:
            found = self.cluster.topics.get(topic)
            if found is not None:
                known = self.ids[topic] = found.id
        return known

    def close(self) -> None:
        if self.closed:
            return
        cluster = self.cluster
        with cluster.lock:
            self.closed = True
            group = cluster.groups.get(self.group_id) if self.group_id else None
            if group is not None and self in group.members:
                group.members.remove(self)
                group.rebalance(cluster.topics)
            cluster.notify()

    def _check_open(self) -> None:
        if self.closed:
            raise KafkaFailure("the consumer is closed")
