"""The state changelog: per-device snapshots in a compacted topic, and reading them back.

Layout: key = device id, value = the device's state snapshot (`DeviceRegistry.snapshot`),
partition = the partition of the sensor topic the device's messages arrive on. The header
`har.source.offset` holds the next sensor offset of that partition the snapshot already
reflects, so that after a restore the messages it covers are recognised as replays and
skipped, however far the committed offset lags behind the snapshot.

Restoring reads the assigned changelog partitions from their beginning up to their high
watermark and keeps the last record per key. That is correct whether or not the broker has
compacted the topic (compaction only removes records that a later one for the same key
supersedes), so it works on Apache Kafka and on brokers that never compact. The end of a
partition is the high watermark reported by fetch responses, not `end_offsets()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from har_stream.kafka.ports import Consumer, Damaged, Headers, Partition, Record

log = logging.getLogger(__name__)

HEADER_COVERS_OFFSET = "har.changelog.covers-offset"
"""Changelog header: next sensor offset (same partition) whose effect the snapshot holds. A
name of its own: `har.source.offset` names the offset of a rejected record in a dead letter."""
LEGACY_HEADER_COVERS_OFFSET = "har.source.offset"
"""The same, as snapshots written before 2026-12-06 carry it (still read)."""


class RestoreError(RuntimeError):
    """The changelog could not be read to its end in time."""


@dataclass(frozen=True, slots=True)
class StoredState:
    """The latest snapshot of one device found in the changelog."""

    device_id: str
    partition: int
    data: bytes
    covers_offset: int  # sensor offsets below this (same partition) are already in `data`
    offset: int  # where this record sits in the changelog partition
    timestamp_ms: int  # when it was written


class Sender(Protocol):
    """What the writer sends through: the service's snapshot outbox, or a producer."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers,
             partition: int | None) -> Any: ...


class ChangelogWriter:
    """Produces snapshots to the changelog partition matching the device's input partition."""

    def __init__(self, producer: Sender, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def write(self, device_id: str, partition: int, data: bytes,
              covers_offset: int) -> Any:
        return self.producer.send(
            self.topic, key=device_id.encode(), value=data, partition=partition,
            headers=[(HEADER_COVERS_OFFSET, str(covers_offset).encode())])


def _stored(record: Record | Damaged) -> StoredState | None:
    """A changelog record as StoredState; None for tombstones, records without a key, and
    records the client could not read whole."""
    key, value = record.key, record.value
    if key is None or value is None or type(record) is Damaged:
        return None
    headers = dict(record.headers or [])
    try:
        covers = int(headers.get(HEADER_COVERS_OFFSET)
                     or headers.get(LEGACY_HEADER_COVERS_OFFSET) or b"0")
    except ValueError:
        covers = 0
    return StoredState(bytes(key).decode("utf-8", "replace"), record.partition,
                       bytes(value), covers, record.offset, record.timestamp)


class ChangelogReader:
    """Reads changelog partitions with its own consumer (no group, so no rebalances)."""

    def __init__(self, consumer: Consumer, topic: str, timeout_s: float = 60.0,
                 poll_ms: int = 100) -> None:
        self.consumer = consumer
        self.topic = topic
        self.timeout_s = timeout_s
        self.poll_ms = poll_ms

    def read_partitions(self, partitions: Iterable[int]) -> dict[str, StoredState]:
        """Every device's last snapshot in the given partitions (tombstones delete)."""
        tps = [Partition(self.topic, p) for p in sorted(set(partitions))]
        if not tps:
            return {}
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        latest: dict[str, StoredState] = {}
        deadline = time.monotonic() + self.timeout_s
        while True:
            for tp_records in self.consumer.poll(timeout_ms=self.poll_ms).values():
                for record in tp_records:
                    state = _stored(record)
                    if state is not None:
                        latest[state.device_id] = state
                    elif record.key is not None and record.value is None:  # a tombstone
                        latest.pop(bytes(record.key).decode("utf-8", "replace"), None)
            if all(self._at_end(tp) for tp in tps):
                break
            if time.monotonic() > deadline:
                raise RestoreError(f"changelog {self.topic} partitions "
                                   f"{[tp.partition for tp in tps]} not read to the end "
                                   f"within {self.timeout_s:g} s")
        self.consumer.assign([])
        return latest

    def read_records(self, locations: Mapping[str, tuple[int, int]]) -> dict[str, StoredState]:
        """The snapshots at known (partition, offset) places, e.g. of evicted devices.

        A device whose record is not where expected (the topic was compacted past it or
        rewritten) is looked up by reading its whole partition instead.
        """
        found: dict[str, StoredState] = {}
        by_partition: dict[int, dict[int, str]] = {}
        for device_id, (partition, offset) in locations.items():
            by_partition.setdefault(partition, {})[offset] = device_id
        missing: set[str] = set()
        for partition, wanted in by_partition.items():
            tp = Partition(self.topic, partition)
            self.consumer.assign([tp])
            for offset in sorted(wanted):
                state = self._record_at(tp, offset)
                if state is not None and state.device_id == wanted[offset]:
                    found[state.device_id] = state
                else:
                    missing.add(wanted[offset])
        if missing:
            log.warning("%d snapshots not at their recorded offsets; scanning their partitions",
                        len(missing))
            partitions = {locations[d][0] for d in missing}
            scanned = self.read_partitions(partitions)
            found.update({d: scanned[d] for d in missing if d in scanned})
        self.consumer.assign([])
        return found

    def _record_at(self, tp: Partition, offset: int) -> StoredState | None:
        self.consumer.seek(tp, offset)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for record in self.consumer.poll(timeout_ms=self.poll_ms, max_records=1).get(tp, []):
                return _stored(record) if record.offset == offset else None
            if self._at_end(tp):
                return None
        raise RestoreError(f"changelog {tp.topic}[{tp.partition}] offset {offset} not read "
                           f"within {self.timeout_s:g} s")

    def _at_end(self, tp: Partition) -> bool:
        highwater = self.consumer.highwater(tp)
        position = self.consumer.position(tp)
        return highwater is not None and position is not None and position >= highwater
