"""Which devices this group member holds, per sensor partition, and where their state is.

A device's state lives with the partition its messages arrive on: this member holds it while
it owns that partition, snapshots it to the changelog partition of the same number, and
reloads it from there when the partition comes (back) to it. The bookkeeping, all keyed by
sensor partition number:
- `owned`: partitions assigned and ready (their devices restored);
- `device_partition`: each device with state here (or evicted) and its partition;
- `processed` / `committed`: offset after the last message handled / last committed;
- `partition_guard` / `device_guard`: offsets below which messages are replays whose effect
  the state already holds (kept state after a rebalance; restored snapshots newer than the
  committed offset), so they are skipped instead of being applied twice;
- `dirty`: devices touched since the last snapshot; `snapshot_at`: where each device's
  latest snapshot sits in the changelog; `evicted`: idle devices dropped from memory, with
  the place of their snapshot for a quick reload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from har_stream.core.logsafe import escape
from har_stream.core.state import DeviceRegistry, StateFormatError
from har_stream.service import metrics
from har_stream.service.changelog import ChangelogReader

log = logging.getLogger(__name__)

_UNKNOWN = object()
Location = tuple[int, int]  # (changelog partition, offset)


class Ownership:
    """Partition and device bookkeeping of one member (see the module doc)."""

    def __init__(self, registry: DeviceRegistry, reader: ChangelogReader,
                 committed_offset: Callable[[int], int | None], idle_ttl_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.reader = reader
        self.committed_offset = committed_offset
        self.idle_ttl_s = idle_ttl_s
        self.clock, self.wall = clock, wall
        self.owned: set[int] = set()
        self.released: dict[int, object] = {}  # revoked partition -> our committed offset
        self.device_partition: dict[str, int] = {}
        self.processed: dict[int, int] = {}
        self.committed: dict[int, int | None] = {}
        self.partition_guard: dict[int, int] = {}
        self.device_guard: dict[str, int] = {}
        self.snapshot_at: dict[str, Location] = {}
        self.evicted: dict[str, Location] = {}
        self.dirty: set[str] = set()

    # --- messages ------------------------------------------------------------------------------

    def is_replay(self, partition: int, offset: int) -> bool:
        """Marks the message handled; True when kept state already reflects it."""
        self.processed[partition] = offset + 1
        return offset < self.partition_guard.get(partition, -1)

    def is_covered(self, device_id: str, offset: int) -> bool:
        """True when the device's restored snapshot already reflects this message."""
        return offset < self.device_guard.get(device_id, -1)

    def touched(self, device_id: str, partition: int) -> None:
        self.device_partition[device_id] = partition
        self.dirty.add(device_id)

    # --- checkpoints ---------------------------------------------------------------------------

    def to_snapshot(self) -> list[tuple[str, int, int]]:
        """(device, partition, covered offset) of every dirty device of an owned partition.

        Devices of partitions revoked in a rebalance still in progress stay dirty: the
        partition may come back with their state kept.
        """
        out, still_dirty = [], set()
        for device_id in self.dirty:
            partition = self.device_partition.get(device_id)
            if partition is None or device_id not in self.registry:
                continue
            if partition in self.owned:
                out.append((device_id, partition, self.processed[partition]))
            elif partition in self.released:
                still_dirty.add(device_id)
        self.dirty = still_dirty
        return out

    def to_commit(self) -> dict[int, int]:
        """Offsets of owned partitions that moved since their last commit."""
        return {p: o for p, o in self.processed.items()
                if p in self.owned and o != self.committed.get(p)}

    def commit_done(self, offsets: dict[int, int]) -> None:
        self.committed.update(offsets)
        for device_id in [d for d, g in self.device_guard.items()
                          if g <= self.processed.get(self.device_partition.get(d, -1), -1)]:
            del self.device_guard[device_id]

    def evict_idle(self) -> int:
        """Drop idle devices whose latest state is in the changelog; how many."""
        evicted = 0
        for device_id in self.registry.idle(self.clock(), self.idle_ttl_s):
            if device_id in self.dirty or device_id not in self.snapshot_at:
                continue
            self.evicted[device_id] = self.snapshot_at.pop(device_id)
            self.registry.remove(device_id)
            evicted += 1
        if evicted:
            self.registry.shrink()
        return evicted

    # --- partition assignment ------------------------------------------------------------------

    def apply(self, events: Sequence[tuple[str, frozenset[int]]]) -> None:
        """Bring device state in line with the partitions the consumer now owns.

        A partition given back to us after an eager rebalance keeps its in-memory state
        when nobody committed on it meanwhile (the committed offset is still ours);
        otherwise its state is read from the changelog.
        """
        for kind, partitions in events:
            log.info("partitions %s: %s", kind, sorted(partitions))
            if kind == "revoked":
                for p in partitions & self.owned:
                    self.owned.discard(p)
                    self.released[p] = self.committed.get(p, _UNKNOWN)
            elif kind == "lost":
                for p in partitions:
                    self.owned.discard(p)
                    self.released.pop(p, None)
                    self._drop(p)
            elif kind == "assigned":
                self._assign(partitions)
        if events:
            self.registry.shrink()  # between steps: no slot is held now
        metrics.ASSIGNED_PARTITIONS.set(len(self.owned))

    def _assign(self, partitions: frozenset[int]) -> None:
        committed_now = {p: self.committed_offset(p) for p in partitions}
        to_restore: list[int] = []
        for p in sorted(partitions):
            ours = self.released.pop(p, _UNKNOWN)
            if p in self.owned:
                continue
            if ours is not _UNKNOWN and ours == committed_now[p]:
                self.partition_guard[p] = self.processed.get(p, -1)
                self.owned.add(p)
            else:
                self._drop(p)
                to_restore.append(p)
        for p in list(self.released):
            self._drop(p)
        self.released.clear()
        if to_restore:
            self._restore(to_restore, committed_now)

    def _drop(self, partition: int) -> None:
        for device_id in [d for d, p in self.device_partition.items() if p == partition]:
            self.registry.remove(device_id)
            self.dirty.discard(device_id)
            self.device_guard.pop(device_id, None)
            self.snapshot_at.pop(device_id, None)
            self.evicted.pop(device_id, None)
            del self.device_partition[device_id]
        for table in (self.processed, self.committed, self.partition_guard):
            table.pop(partition, None)

    def _restore(self, partitions: list[int], committed: dict[int, int | None]) -> None:
        """Load the latest snapshot of every device of `partitions` from the changelog.

        Snapshots older than the idle TTL stay in the changelog (evicted) until their device
        sends again, so a restore does not undo eviction.
        """
        started = time.perf_counter()
        with metrics.STAGE_DURATION.labels(stage="restore").time():
            stored = self.reader.read_partitions(partitions)
        now_wall, restored = self.wall(), 0
        for device_id, state in stored.items():
            location = (state.partition, state.offset)
            self.device_partition[device_id] = state.partition
            if state.covers_offset > (committed[state.partition] or 0):
                self.device_guard[device_id] = state.covers_offset
            if self.idle_ttl_s > 0 and state.timestamp_ms / 1000.0 < now_wall - self.idle_ttl_s:
                self.evicted[device_id] = location
                continue
            if self._load(device_id, state.data):
                self.snapshot_at[device_id] = location
                restored += 1
        for p in partitions:
            self.committed[p] = committed[p]
            self.owned.add(p)
        metrics.STATE_RESTORES.inc(restored)
        metrics.RESTORE_EVENTS.inc()
        log.info("restored %d devices (%d idle left in the changelog) of partitions %s "
                 "in %.3f s", restored, len(stored) - restored, partitions,
                 time.perf_counter() - started)

    def restore_evicted(self, device_ids: Iterable[str]) -> None:
        """Bring back evicted devices that sent data again, from their changelog record."""
        wanted = {d: self.evicted[d] for d in set(device_ids) if d in self.evicted}
        if not wanted:
            return
        with metrics.STAGE_DURATION.labels(stage="restore").time():
            stored = self.reader.read_records(wanted)
        restored = 0
        for device_id, location in wanted.items():
            del self.evicted[device_id]
            state = stored.get(device_id)
            if state is None:
                log.warning("device %s: evicted state not found; it starts afresh",
                            escape(device_id))
            elif self._load(device_id, state.data):
                self.snapshot_at[device_id] = location
                restored += 1
        metrics.STATE_RESTORES.inc(restored)

    def _load(self, device_id: str, data: Any) -> bool:
        try:
            self.registry.restore(device_id, data, now_s=self.clock())
        except StateFormatError as exc:
            log.warning("device %s: changelog state unusable (%s); it starts afresh",
                        escape(device_id), exc)
            return False
        return True
