"""A flood of new devices: a fleet starting at once, or an attacker inventing device ids.

20,000 devices send one short message each, all at once, through the real `Service` on the
in-memory Kafka driver, driven as `Service.run` drives it: each turn a step (a poll of at most
`max_poll_records`), then the checkpoint's share of the turn (`checkpoint_tick`). The clock
moves by an idle poll's wait per turn. Checked on counts and turns, not on time:

- the checkpoint after the flood snapshots each new device once, at most
  `SNAPSHOTS_PER_STEP` per turn that processed input and `SNAPSHOTS_PER_IDLE_STEP` per idle
  one (not all at its start: that held every state twice), and
  commits within a bounded number of turns, so a crash replays at most a commit interval
  plus that;
- the next checkpoint snapshots only the devices that changed since;
- `har_active_devices` equals the devices held after every turn, not only after checkpoints;
- a healthy broker working through the snapshot backlog is not reported as "not
  acknowledged" (that paused consumption for nothing), while one that stops acknowledging
  still is; the snapshots waiting in the producer stay below `MAX_SNAPSHOTS_IN_FLIGHT`;
- a device changed while the checkpoint is in flight is written as it was at its start;
- while snapshots go out, polls wait `CHECKPOINT_POLL_MS`, not an idle poll's 200 ms (which
  paced a 100,000-device checkpoint to 20 s and more), except while held.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable

import pytest
from reliability_support import Clock, Harness, Message, sensor_messages
from service_support import synthetic_samples

from har_stream.core import codec
from har_stream.core.records import SensorBatch
from har_stream.service import metrics
from har_stream.service.checkpoint import (
    MAX_SNAPSHOTS_IN_FLIGHT,
    SNAPSHOTS_PER_IDLE_STEP,
    SNAPSHOTS_PER_STEP,
)
from har_stream.service.loop import CHECKPOINT_POLL_MS
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=5.0, produce_timeout_s=5.0,
                    metrics_address="")
DEVICES = 20_000
PARTITIONS = 8
TURN_S = 0.2  # an idle poll's wait (`poll_timeout_ms`)
T0 = 1_700_000_000_000


class Flood:
    """The service on a cluster that acknowledges the oldest records a turn, its registry's
    snapshots counted, and the flood's records. The changelog is counted, not kept, unless
    a test reads it back (20,000 snapshots of 5 kB)."""

    def __init__(self, settings: Settings = SETTINGS, keep_changelog: bool = False) -> None:
        self.clock = Clock()
        self.harness = Harness(settings, clock=self.clock, partitions=PARTITIONS,
                               read={"dlq"}, auto_acknowledge=False)
        if not keep_changelog:
            self.harness.cluster.retain(TOPICS.changelog_topic, False)
        self.service, self.cluster = self.harness.service, self.harness.cluster
        self.snapshots_taken = 0
        registry = self.service.registry
        take = registry.snapshot

        def counted(device_id: str) -> bytes:
            self.snapshots_taken += 1
            return take(device_id)

        registry.snapshot = counted  # type: ignore[method-assign]
        self.ends: dict[int, int] = {}

    def feed(self, device_ids: list[str], seq: int = 0) -> None:
        burst = synthetic_samples(10, seed=1)  # a short message: state allocated, no window
        template = codec.encode_sensor(SensorBatch("flood-00000", seq, T0 + seq * 20, burst))
        self.place(Message(d.encode(), template.replace(b"flood-00000", d.encode()),
                           int(d.rsplit("-", 1)[1]) % PARTITIONS) for d in device_ids)

    def place(self, messages: Iterable[Message]) -> None:
        for partition, offset in self.harness.feed(messages):
            self.ends[partition] = max(self.ends.get(partition, 0), offset + 1)

    def poll_waits(self) -> list[int]:
        return [timeout_ms for timeout_ms, _ in self.harness.polls]

    def turn(self, acknowledge: int | None = None) -> tuple[int, bool]:
        """One turn of `Service.run`; the snapshots it took, and whether it polled input.
        The broker acknowledges the oldest `acknowledge` records first (None: all)."""
        before = self.snapshots_taken
        self.clock.now += TURN_S
        self.harness.acknowledge(acknowledge)
        idle = self.service.step() is None
        self.service.checkpoint_tick(idle=idle)
        return self.snapshots_taken - before, not idle

    def changelog_writes(self) -> int:
        return self.cluster.count(TOPICS.changelog_topic)

    def all_committed(self) -> bool:
        return self.harness.committed() == self.ends


def _active_devices() -> float:
    return metrics.ACTIVE_DEVICES._value.get()  # type: ignore[attr-defined]


def _not_acknowledged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not acknowledged" in r.getMessage()]


def test_the_checkpoint_after_a_flood_is_bounded_per_turn_and_snapshots_changed_devices_only(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    flood = Flood()
    ids = [f"flood-{i:05d}" for i in range(DEVICES)]
    flood.feed(ids)
    most_per_turn, most_with_input, turns = 0, 0, 0
    while not flood.all_committed():
        taken, had_input = flood.turn()
        most_per_turn = max(most_per_turn, taken)
        if had_input:
            most_with_input = max(most_with_input, taken)
        turns += 1
        assert _active_devices() == len(flood.service.registry), f"turn {turns}"
        assert turns < 200, "the flood's checkpoint never completed"
    assert len(flood.service.registry) == DEVICES
    assert most_per_turn <= SNAPSHOTS_PER_IDLE_STEP, "a turn's share of the checkpoint is bounded"
    assert most_with_input <= SNAPSHOTS_PER_STEP, "smaller while live input is processed"
    # consumed in DEVICES / max_poll_records turns, the first checkpoint due after the commit
    # interval, then one idle turn per slice of snapshots and one for the acknowledgements
    consumed = math.ceil(DEVICES / SETTINGS.max_poll_records)
    due = math.ceil(SETTINGS.commit_interval_s / TURN_S)
    assert turns <= max(consumed, due) + math.ceil(DEVICES / SNAPSHOTS_PER_IDLE_STEP) + 3
    assert flood.changelog_writes() == DEVICES, "each new device snapshotted once"
    assert flood.snapshots_taken == DEVICES
    # idle polls do not pace the slices: they wait briefly while snapshots go out
    assert flood.poll_waits().count(CHECKPOINT_POLL_MS) >= DEVICES // SNAPSHOTS_PER_IDLE_STEP - 1

    changed = ids[:10]
    flood.feed(changed, seq=10)
    for _ in range(due + 3):
        flood.turn()
    assert flood.all_committed()
    assert flood.changelog_writes() == DEVICES + len(changed), "only the devices that changed"
    assert flood.snapshots_taken == DEVICES + len(changed)
    assert not _not_acknowledged(caplog) and not flood.service.held


def test_a_broker_working_through_the_snapshot_backlog_is_not_taken_for_an_unreachable_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """100 acknowledgements a turn: the flood's 20,000 snapshots take 40 s of turns, eight
    produce timeouts, yet the broker answers all along."""
    caplog.set_level(logging.INFO)
    flood = Flood()
    flood.feed([f"flood-{i:05d}" for i in range(DEVICES)])
    turns, most_waiting = 0, 0
    while not flood.all_committed():
        flood.turn(acknowledge=100)
        most_waiting = max(most_waiting, flood.cluster.pending())
        turns += 1
        assert not flood.service.held, f"turn {turns}: held with a healthy broker"
        assert turns < 400
    assert turns * TURN_S > 4 * SETTINGS.produce_timeout_s
    assert not _not_acknowledged(caplog)
    assert most_waiting <= MAX_SNAPSHOTS_IN_FLIGHT, "the producer's buffer stays bounded"

    flood.feed([f"flood-{i:05d}" for i in range(DEVICES, DEVICES + 5)])
    for _ in range(math.ceil(2 * SETTINGS.produce_timeout_s / TURN_S)):  # acknowledges nothing
        flood.turn(acknowledge=0)
    assert flood.service.held and len(_not_acknowledged(caplog)) == 1, "a real stall still is"
    assert flood.poll_waits()[-1] == SETTINGS.poll_timeout_ms, "held: no quick polls in an outage"


def test_a_device_changed_while_the_checkpoint_is_in_flight_is_written_as_of_its_start(
) -> None:
    flood = Flood(dataclasses.replace(SETTINGS, idle_ttl_s=0), keep_changelog=True)
    service, harness = flood.service, flood.harness
    samples = synthetic_samples(1000, seed=5)
    first = {f"dev-{d}": sensor_messages(f"dev-{d}", samples)[:10] for d in range(3)}
    flood.place(m for messages in first.values() for m in messages)
    while harness.unread():
        service.step()
    expected = {d: service.registry.snapshot(d) for d in first}
    service._begin_checkpoint()
    harness.acknowledge()  # the results
    assert not service._advance_checkpoint(limit=1)  # one snapshot out, two waiting
    later = {d: sensor_messages(d, samples)[10:20] for d in first}
    flood.place(m for messages in later.values() for m in messages)
    while harness.unread():  # all three change before the other two are sent
        service.step()
    assert any(service.registry.snapshot(d) != expected[d] for d in first)
    while not service._advance_checkpoint(limit=1):
        harness.acknowledge()
    stored = harness.snapshots()
    for device_id, data in expected.items():
        assert stored[device_id].data == data and stored[device_id].covers_offset == 30, device_id
    assert harness.committed() == {0: 30}
    assert service.ownership.dirty == set(first), "snapshotted again by the next checkpoint"
