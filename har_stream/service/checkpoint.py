"""Checkpoints: snapshots and offset commits that go on between loop steps, never stopping it.

A checkpoint makes the changelog and the committed offsets agree, so that after a crash or a
rebalance the next owner restores each device from a snapshot at least as new as the commit
and replays the rest. One is in flight at a time (`Checkpoints.current`); its steps:

  1. begin (`Checkpoints.begin`): list the devices changed since their last snapshot and
     take the offsets after the last processed message of every owned partition; mark the
     output sent so far (an `Outbox` epoch). Nothing is sent. Each listed device is written
     as of this moment: its snapshot is taken when sent, or copied first if a message is
     about to change it (`ownership.PendingSnapshots`).
  2. `Phase.RESULTS`: wait until everything sent before the checkpoint began is acknowledged
     by all in-sync replicas; a snapshot must never cover a window whose result could still
     be lost.
  3. `Phase.SNAPSHOTS`: send the snapshots to the changelog, a bounded slice per loop turn
     (`SNAPSHOTS_PER_STEP`, `SNAPSHOTS_PER_IDLE_STEP`), never more than
     `MAX_SNAPSHOTS_IN_FLIGHT` unacknowledged, so the producer's buffer stays bounded.
  4. `Phase.ACKNOWLEDGE`: wait until the broker acknowledges every snapshot.
  5. commit the offsets of step 1 and record where each device's snapshot now lives.

`advance` takes the checkpoint as far as acknowledgements allow and never waits. While it
waits and the broker answers none of our sends for `produce_timeout_s`, `hold` is called (the
service pauses its partitions and commits nothing until the checkpoint completes); waiting is
measured from the broker's last answer, not from the start, so a long but moving backlog (a
flood of new devices) is no reason to stop consuming. A rebalance `abandon`s the checkpoint in
flight: its devices are snapshotted again by the next one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from har_stream.core.state import DeviceRegistry
from har_stream.kafka.ports import KafkaTimeout
from har_stream.service import metrics
from har_stream.service.changelog import ChangelogWriter
from har_stream.service.delivery import Outbox
from har_stream.service.ownership import Ownership, PendingSnapshots

SNAPSHOTS_PER_STEP = 250
"""Snapshots a checkpoint takes and sends after one step: ~5-15 ms of the loop's time, so
sending those of thousands of devices delays no step by much more (docs/PERFORMANCE.md §5),
and the loop keeps polling while those of a flood of devices go out (docs/RELIABILITY.md)."""
SNAPSHOTS_PER_IDLE_STEP = 1000
"""The same after a step that polled nothing: no live message waits for it, and a flood's
100,000 snapshots go out in 100 slices instead of 400 (docs/RELIABILITY.md)."""
MAX_SNAPSHOTS_IN_FLIGHT = 4000
"""Snapshots sent and not yet acknowledged, at most (~22 MB): beyond it a checkpoint waits
for acknowledgements before sending more, so the producer's buffer (kafka-python: 32 MB)
never fills and blocks the loop, and memory stays bounded however many devices changed."""

class Phase(enum.Enum):
    """What a checkpoint in flight waits for (steps 2-4 of the module doc)."""

    RESULTS = "results"
    SNAPSHOTS = "state snapshots"
    ACKNOWLEDGE = "state snapshots acknowledged"


@dataclass(slots=True)
class InFlight:
    """A checkpoint in flight: the state and offsets as of its start."""

    started: float
    output_epoch: int  # the Outbox epoch of everything sent before it began
    snapshots: PendingSnapshots  # those not sent yet
    offsets: dict[int, int]  # sensor partition -> offset to commit
    phase: Phase = Phase.RESULTS
    sent: list[tuple[str, int, Any]] = field(default_factory=list)  # device, partition, future
    snapshot_epoch: int = 0  # the snapshot Outbox epoch once all are sent
    answers: int = 0  # the broker's answers to our sends when last seen
    progress_at: float = 0.0  # when they last grew (0: not since the start)


class Checkpoints:
    """The checkpoint protocol of one consumer-group member (see the module doc)."""

    def __init__(self, outbox: Outbox, snapshot_outbox: Outbox, writer: ChangelogWriter,
                 ownership: Ownership, registry: DeviceRegistry, clock: Callable[[], float],
                 produce_timeout_s: float, delivered: Callable[[Outbox, int, str], bool],
                 hold: Callable[[BaseException], None], held: Callable[[], bool],
                 commit: Callable[[dict[int, int]], None]) -> None:
        """`delivered(outbox, epoch, what)` says whether everything sent before `epoch` is
        acknowledged (raising on a systemic refusal); `hold(exc)` pauses the service and
        `held()` says whether it is paused; `commit(offsets)` commits the consumer's
        offsets."""
        self.outbox, self.snapshot_outbox, self.writer = outbox, snapshot_outbox, writer
        self.ownership, self.registry, self.clock = ownership, registry, clock
        self.produce_timeout_s = produce_timeout_s
        self.delivered, self.hold, self.held, self.commit = delivered, hold, held, commit
        self.current: InFlight | None = None

    def begin(self) -> None:
        """Step 1: list the changed devices and the offsets to commit; send nothing yet."""
        snapshots = PendingSnapshots(self.registry, self.ownership.to_snapshot())
        self.ownership.in_flight = snapshots  # copies a device's state before it changes
        self.current = InFlight(self.clock(), self.outbox.mark(), snapshots,
                                self.ownership.to_commit(), answers=self.answers())

    def advance(self, limit: int | None = SNAPSHOTS_PER_STEP) -> bool:
        """Steps 2-5 as far as acknowledgements allow, sending at most `limit` snapshots
        (None: all); True once the checkpoint is committed (and `current` is None)."""
        checkpoint = self.current
        assert checkpoint is not None
        if checkpoint.phase is Phase.RESULTS:
            if not self.delivered(self.outbox, checkpoint.output_epoch, Phase.RESULTS.value):
                return self._overdue(checkpoint)
            checkpoint.phase = Phase.SNAPSHOTS
        if checkpoint.phase is Phase.SNAPSHOTS:
            self._send_snapshots(checkpoint, limit)
            if checkpoint.snapshots:
                return self._overdue(checkpoint)
            self.ownership.in_flight = None
            checkpoint.snapshot_epoch = self.snapshot_outbox.mark()
            checkpoint.phase = Phase.ACKNOWLEDGE
        if not self.delivered(self.snapshot_outbox, checkpoint.snapshot_epoch,
                              Phase.SNAPSHOTS.value):
            return self._overdue(checkpoint)
        for device_id, partition, future in checkpoint.sent:
            self.ownership.snapshot_at[device_id] = (partition, future.get(0).offset)
        metrics.STATE_SNAPSHOTS.inc(len(checkpoint.sent))
        with metrics.STAGE_DURATION.labels(stage="commit").time():
            self.commit(checkpoint.offsets)
        self.current = None
        return True

    def abandon(self) -> None:
        """Drop the checkpoint in flight (a rebalance: its snapshots and offsets may no longer
        be this member's to write); its devices count as changed again."""
        checkpoint, self.current = self.current, None
        if checkpoint is None:
            return
        self.ownership.in_flight = None
        self.ownership.dirty.update(item[0] for item in checkpoint.sent)
        self.ownership.dirty.update(checkpoint.snapshots.device_ids())

    def sending(self) -> bool:
        """Snapshots are going out or awaited (the loop polls briefly meanwhile)."""
        return self.current is not None and self.current.phase is not Phase.RESULTS

    def answers(self) -> int:
        """The broker's answers to every send so far, results and snapshots."""
        return self.outbox.answers + self.snapshot_outbox.answers

    def _send_snapshots(self, checkpoint: InFlight, limit: int | None) -> None:
        take = len(checkpoint.snapshots) if limit is None else limit
        take = min(take, MAX_SNAPSHOTS_IN_FLIGHT - self.snapshot_outbox.in_flight())
        if take > 0 and checkpoint.snapshots:
            with metrics.STAGE_DURATION.labels(stage="snapshot").time():
                checkpoint.sent += [
                    (device_id, partition, self.writer.write(device_id, partition, data, covers))
                    for device_id, partition, covers, data in checkpoint.snapshots.take(take)]

    def _overdue(self, checkpoint: InFlight) -> bool:
        """Hold once the broker has answered none of our sends for the produce timeout while
        the checkpoint waits for it; always False (not done)."""
        now, answers = self.clock(), self.answers()
        if answers != checkpoint.answers:
            checkpoint.answers, checkpoint.progress_at = answers, now
        waited = now - max(checkpoint.progress_at, checkpoint.started)
        if not self.held() and waited > self.produce_timeout_s:
            self.hold(KafkaTimeout(f"no acknowledgement for {waited:.0f} s while a "
                                        f"checkpoint waits for {len(checkpoint.snapshots)} "
                                        "snapshots and the output before them"))
        return False
