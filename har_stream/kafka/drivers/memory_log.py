"""The in-memory cluster's storage: partition logs, topics, groups, the partitioner.

Kept apart from the cluster (`memory.py`) because it is the part that must be fast: a log
is two parallel lists (offsets, entries) read by bisection, so a poll costs what it hands
over, and compaction leaves holes that are swept out once they dominate.
"""

from __future__ import annotations

import struct
import uuid
from bisect import bisect_left
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Protocol

from har_stream.kafka.ports import Headers, KafkaFailure, Partition, TopicLayout

Entry = tuple[int, bytes | None, bytes | None, Headers]  # timestamp, key, value, headers
Refusal = Callable[[str, bytes | None, bytes | None, Headers, int], KafkaFailure | None]
Retention = bool | Callable[[bytes | None], bool]  # kept: all, none, or by key
MAX_RECORD_BYTES = 1_048_576
"""As kafka-python's `max_request_size` default: a larger record is refused at `send`."""
ENTRY_OVERHEAD = 70
"""Bytes a record of a v2 batch of one takes beyond its key, value and headers."""
COMPACT_REBUILD_AT = 1024
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's `Utils.murmur2`), unsigned 32-bit."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * m) & _MASK
        k ^= k >> 24
        h = ((h * m) & _MASK) ^ ((k * m) & _MASK)
    rest = length % 4
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h = ((h ^ data[whole]) * m) & _MASK
    h ^= h >> 13
    h = (h * m) & _MASK
    return h ^ (h >> 15)


@lru_cache(maxsize=1 << 18)  # a fleet's device ids: hashed once each, not per record
def partition_of(key: bytes, partitions: int) -> int:
    """Where the Java client (and every driver of ours) puts a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Log:
    """One partition: offsets and entries side by side, sorted by offset. Compaction leaves
    a hole (None) where a key's older record was, and rebuilds the lists when holes
    dominate; `start` is the first offset a reader can get (the end when nothing is kept)."""

    __slots__ = ("end", "entries", "holes", "latest", "offsets", "retain", "start")

    def __init__(self, compact: bool) -> None:
        self.offsets: list[int] = []
        self.entries: list[Entry | None] = []
        self.start = self.end = self.holes = 0
        self.latest: dict[bytes, int] | None = {} if compact else None  # key -> index
        self.retain: Retention = True

    def append(self, entry: Entry) -> int:
        offset = self.end
        self.end += 1
        retain = self.retain
        if retain is not True:
            if retain is False:
                self.start = self.end
                return offset
            if not retain(entry[1]):  # this key is counted, not kept: it still supersedes
                if self.latest is not None and self._drop_latest(entry[1]) is not None:
                    del self.latest[entry[1]]  # type: ignore[arg-type]
                return offset
        if self.latest is not None:
            key: bytes = entry[1]  # type: ignore[assignment]  # compacted: always keyed
            self._drop_latest(key)
            self.latest[key] = len(self.entries)
        self.offsets.append(offset)
        self.entries.append(entry)
        if self.holes > COMPACT_REBUILD_AT and self.holes * 2 > len(self.entries):
            self._rebuild()
        return offset

    def _drop_latest(self, key: bytes | None) -> int | None:
        """Compaction: the key's older record becomes a hole (its index, None if none)."""
        older = self.latest.get(key) if self.latest is not None and key is not None else None
        if older is not None:
            self.entries[older] = None
            self.holes += 1
        return older

    def delete_below(self, offset: int) -> None:
        """Kafka's DeleteRecords: the records below `offset` go; offsets and the end stay."""
        cut = bisect_left(self.offsets, offset)
        del self.offsets[:cut], self.entries[:cut]
        self.start = max(self.start, min(offset, self.end))
        if self.latest is not None:  # compacted: its index of the latest records
            self._rebuild()

    def keep(self, retain: Retention) -> None:
        """From now on keep what `retain` says (False: drop what is kept now as well)."""
        self.retain = retain
        if retain is False:
            self.offsets, self.entries, self.start, self.holes = [], [], self.end, 0
            self.latest = {} if self.latest is not None else None

    def _rebuild(self) -> None:
        kept = [(o, e) for o, e in zip(self.offsets, self.entries, strict=True) if e is not None]
        self.offsets = [o for o, _ in kept]
        self.entries = [e for _, e in kept]
        self.latest = {e[1]: i for i, (_, e) in enumerate(kept)}  # type: ignore[misc]
        self.holes = 0

    def read(self, position: int, limit: int) -> tuple[list[tuple[int, Entry]], int]:
        """Up to `limit` records from `position`, and the position after them."""
        offsets, entries = self.offsets, self.entries
        i = bisect_left(offsets, position)
        n = len(offsets)
        taken: list[tuple[int, Entry]] = []
        while i < n and len(taken) < limit:
            entry = entries[i]
            if entry is not None:
                taken.append((offsets[i], entry))
            i += 1
        return taken, offsets[i] if i < n else self.end

    def live(self) -> list[tuple[int, Entry]]:
        return [(o, e) for o, e in zip(self.offsets, self.entries, strict=True)
                if e is not None]


class Topic:
    __slots__ = ("compact", "configs", "id", "logs", "name")

    def __init__(self, name: str, layout: TopicLayout) -> None:
        self.name = name
        self.id = uuid.uuid4().hex
        self.configs = dict(layout.configs)
        self.compact = "compact" in self.configs.get("cleanup.policy", "")
        self.logs = [Log(self.compact) for _ in range(layout.partitions)]


class Member(Protocol):
    """A group member as its group sees it (`memory_consumer.MemoryConsumer`)."""

    group_id: str | None
    subscription: frozenset[str]
    expelled: bool

    def reassign(self, share: set[Partition]) -> None: ...


class Group:
    """A consumer group: its members in join order, and its committed offsets."""

    def __init__(self) -> None:
        self.members: list[Member] = []
        self.committed: dict[Partition, int] = {}

    def rebalance(self, topics: Mapping[str, Topic]) -> None:
        """Range assignment per topic among the members subscribed to it; each member
        applies its new share at its next poll."""
        shares: dict[int, set[Partition]] = {id(m): set() for m in self.members}
        for name in sorted({t for m in self.members for t in m.subscription}):
            topic = topics.get(name)
            if topic is None:
                continue
            takers = [m for m in self.members if name in m.subscription]
            count, extra = divmod(len(topic.logs), len(takers))
            first = 0
            for i, member in enumerate(takers):
                size = count + (1 if i < extra else 0)
                shares[id(member)].update(Partition(name, p)
                                          for p in range(first, first + size))
                first += size
        for member in self.members:
            member.reassign(shares[id(member)])


def entry_size(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    return (len(key or b"") + len(value or b"")
            + sum(len(k) + len(v or b"") for k, v in headers or ())  # a null value: Kafka's -1
            + ENTRY_OVERHEAD)

