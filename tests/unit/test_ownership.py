"""`Ownership`, the replay guard, on its own: which messages are replays, which devices a
checkpoint snapshots, what a rebalance keeps, drops and restores (docs: its module doc)."""

from __future__ import annotations

import numpy as np
from reliability_support import CountingReader

from har_stream.core.state import DeviceRegistry, Field
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.service.changelog import ChangelogWriter
from har_stream.service.ownership import Ownership

WALL = 1_700_000_000.0


class Changelog:
    """A changelog topic on an in-memory cluster, written by the service's writer and read by
    its reader (`.reader.partition_reads`: the restores asked for)."""

    def __init__(self, partitions: int = 2) -> None:
        self.cluster = MemoryCluster(waits=False, wall=lambda: WALL)
        self.cluster.create_topic("log", partitions, {"cleanup.policy": "compact"})
        self.producer = self.cluster.producer()
        self.writer = ChangelogWriter(self.producer, "log")
        self.reader = CountingReader(self.cluster.consumer(), "log")

    def write(self, device_id: str, partition: int, data: bytes, covers_offset: int) -> int:
        """Write a snapshot; its offset in the changelog."""
        delivery = self.writer.write(device_id, partition, data, covers_offset)
        self.producer.flush()
        return delivery.get(0).offset


def registry() -> DeviceRegistry:
    return DeviceRegistry({"n": Field((), "<i8")})


def snapshot_of(n: int) -> bytes:
    source = registry()
    source.arrays["n"][source.slot("x")] = n
    return source.snapshot("x")


def ownership(changelog: Changelog | None = None, committed: dict[int, int | None] | None = None,
              ttl_s: float = 0.0) -> Ownership:
    committed = committed if committed is not None else {}
    return Ownership(registry(), (changelog or Changelog()).reader, committed.get, ttl_s,
                     clock=lambda: 100.0, wall=lambda: WALL)


def test_messages_below_a_restored_snapshot_are_replays_of_that_device_only() -> None:
    changelog = Changelog()
    for older in range(3):
        changelog.write("a", 0, snapshot_of(older), covers_offset=10 * older)
    assert changelog.write("a", 0, snapshot_of(7), covers_offset=50) == 3
    own = ownership(changelog, committed={0: 40})
    own.apply([("assigned", frozenset({0}))])
    assert own.registry.arrays["n"][own.registry.get("a")] == 7
    assert own.is_covered("a", 45) and not own.is_covered("a", 50)
    assert not own.is_covered("b", 45), "another device of the partition is not covered"
    assert own.snapshot_at["a"] == (0, 3)


def test_a_checkpoint_lists_the_touched_devices_of_owned_partitions_with_their_offsets() -> None:
    own = ownership()
    own.apply([("assigned", frozenset({0, 1}))])
    for partition, offset, device in ((0, 9, "a"), (1, 4, "b")):
        assert not own.is_replay(partition, offset)
        own.registry.slot(device)
        own.touched(device, partition)
    assert sorted(own.to_snapshot()) == [("a", 0, 10), ("b", 1, 5)]
    assert own.to_snapshot() == [], "listed once: clean until touched again"
    assert own.to_commit() == {0: 10, 1: 5}
    own.commit_done({0: 10, 1: 5})
    assert own.to_commit() == {}, "nothing moved since the commit"


def test_a_partition_given_back_with_our_commit_keeps_its_state_and_skips_replays() -> None:
    committed: dict[int, int | None] = {0: 10}
    changelog = Changelog()
    own = ownership(changelog, committed)
    own.apply([("assigned", frozenset({0}))])
    for offset in range(10, 15):
        own.is_replay(0, offset)
    own.registry.slot("a")
    own.touched("a", 0)
    own.commit_done({0: 10})
    own.apply([("revoked", frozenset({0})), ("assigned", frozenset({0}))])
    assert "a" in own.registry, "nobody committed meanwhile: the state is kept"
    assert own.is_replay(0, 12) and not own.is_replay(0, 15), "redelivered messages skipped"
    assert changelog.reader.partition_reads == [[0]], "no second restore"


def test_a_partition_another_member_committed_on_is_restored_from_the_changelog() -> None:
    committed: dict[int, int | None] = {0: 10}
    changelog = Changelog()
    own = ownership(changelog, committed)
    own.apply([("assigned", frozenset({0}))])
    own.registry.slot("a")
    own.touched("a", 0)
    own.apply([("revoked", frozenset({0}))])
    committed[0] = 30  # the partition's other owner moved on
    changelog.write("a", 0, snapshot_of(3), covers_offset=30)  # with a newer snapshot
    own.apply([("assigned", frozenset({0}))])
    assert own.registry.arrays["n"][own.registry.get("a")] == 3, "its newer snapshot"
    assert not own.is_covered("a", 29), "covered offset not above the commit: no guard"


def test_a_lost_partition_drops_its_devices_and_their_bookkeeping() -> None:
    own = ownership()
    own.apply([("assigned", frozenset({0, 1}))])
    for device, partition in (("a", 0), ("b", 1)):
        own.is_replay(partition, 0)
        own.registry.slot(device)
        own.touched(device, partition)
    own.apply([("lost", frozenset({0}))])
    assert "a" not in own.registry and "b" in own.registry
    assert own.to_snapshot() == [("b", 1, 1)]
    assert 0 not in own.to_commit()


def test_idle_devices_are_evicted_only_once_their_state_is_in_the_changelog() -> None:
    own = ownership(ttl_s=10.0)
    own.apply([("assigned", frozenset({0}))])
    for device in ("a", "b"):
        own.registry.touch(np.array([own.registry.slot(device)]), 0.0)
        own.touched(device, 0)
    own.is_replay(0, 0)
    own.to_snapshot()
    own.snapshot_at["a"] = (0, 5)  # only a's snapshot is acknowledged
    assert own.evict_idle() == 1
    assert "a" not in own.registry and own.evicted["a"] == (0, 5) and "b" in own.registry
