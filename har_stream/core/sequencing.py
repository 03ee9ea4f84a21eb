"""One device's messages of a step, checked against its stream and cut into segments.

A device's stream is the run of samples from its latest (re)start: sample `seq` has time
`origin_ms + 20 * (seq - origin)`, where `origin` / `origin_ms` are the seq and `t0_ms` of the
message that started it. Later messages' `t0_ms` are not used, so a clock that jumps (or a
message whose time contradicts its seq) cannot give windows times out of order or below 0.

Per message, in arrival order (docs/WIRE_FORMAT.md, "Sequence handling"):
- it continues the stream (seq = expected): its samples are appended;
- it starts behind (seq < expected, at most `max_rewind` back): the samples the stream already
  holds are dropped, counted as duplicates, or as late when they fall in the stream's latest
  gap (they arrived after the stream had moved past them);
- it starts ahead (a gap) and ends within `reorder` samples of the expected seq: it is held
  back (per device, part of the device's state and its snapshot) until the messages before it
  arrive, then put back in order (`reordered_messages`);
- otherwise, held samples are first released in seq order as if they had just arrived, then:
  a gap of at most `max_gap` samples is filled by holding the last value; a larger gap, or a
  rewind further than `max_rewind` (the device restarted its counter), restarts the stream.

Held messages live in a sparse store beside the registry (`held.HeldMessages`, attached to
it so they are in the device's snapshot): only devices that hold something cost anything.
Every held seq lies in [expected, expected + reorder), so a device holds at most `reorder`
samples, and the expected seq never moves back while anything is held (rewinds release
first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from har_stream.core.held import HeldMessages
from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch
from har_stream.core.state import DeviceRegistry, Field

PERIOD_MS = int(SAMPLE_PERIOD_MS)
assert PERIOD_MS == SAMPLE_PERIOD_MS, "stream times count whole milliseconds per sample"


@dataclass(slots=True)
class PipelineStats:
    """What the sequence checks did in one step (exported as metrics)."""

    duplicate_samples: int = 0
    gap_samples_filled: int = 0
    stream_resets: int = 0
    late_samples: int = 0
    """Samples that arrived after the stream had moved past their place (dropped)."""
    reordered_messages: int = 0
    """Messages that arrived after their successors and were put back in order."""


def sequencing_fields() -> dict[str, Field]:
    """Per-device state of the sequence checks (with the pipeline's `origin` and `n`; held
    messages are in the `HeldMessages` store)."""
    return {
        "origin_ms": Field((), "<i8"),  # time of the stream's first sample
        "skip_from": Field((), "<i8"),  # the stream's latest gap: seqs [from, to) it passed
        "skip_to": Field((), "<i8"),  # without their samples (filled, or jumped by a restart)
    }


@dataclass(slots=True)
class Segment:
    """Consecutive samples of one device within one step, ready to filter."""

    device_id: str
    restart: bool  # the stream (re)starts at this segment's first sample
    seq: int  # seq of the first sample
    t0_ms: int = 0  # time of the first sample: the stream's origin time on a restart
    parts: list[np.ndarray] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # seq after each part's last sample
    record_ts: list[int] = field(default_factory=list)  # broker timestamp of each part

    @property
    def length(self) -> int:
        return self.ends[-1] - self.seq

    def add(self, samples: np.ndarray, record_ts: int) -> None:
        self.parts.append(samples)
        self.ends.append(self.ends[-1] + len(samples) if self.ends else self.seq + len(samples))
        self.record_ts.append(record_ts)


class DevicePlanner:
    """Plans one device's messages of a step into segments (see the module doc)."""

    def __init__(self, registry: DeviceRegistry, max_gap: int, max_rewind: int,
                 held: HeldMessages | None, stats: PipelineStats) -> None:
        """`held`: the store of held messages (None: reordering off)."""
        self.registry, self.stats, self.store = registry, stats, held
        self.max_gap, self.max_rewind = max_gap, max_rewind
        self.reorder = 0 if held is None else held.allowance

    def plan(self, device_id: str, batches: Sequence[SensorBatch]) -> list[Segment]:
        reg = self.registry
        slot = reg.get(device_id)
        self.device_id = device_id
        self.segments: list[Segment] = []
        self.expected: int | None = None
        self.last_raw: np.ndarray | None = None
        self.skip = (0, 0)
        if slot is not None:
            a = reg.arrays
            self.expected = int(a["origin"][slot] + a["n"][slot])
            self.last_raw = a["median"][slot, -1].copy()
            self.skip = (int(a["skip_from"][slot]), int(a["skip_to"][slot]))
        self.held = None if self.store is None else self.store.of(device_id)
        for batch in batches:
            if len(batch.samples):
                self._arrive(batch)
        if self.held is not None:
            assert self.store is not None
            self.store.settle(device_id, self.held)
        if self.segments or (self.held is not None and self.held.count):
            slot = reg.slot(device_id)
            reg.arrays["skip_from"][slot], reg.arrays["skip_to"][slot] = self.skip
        return self.segments

    def _arrive(self, batch: SensorBatch) -> None:
        held, expected = self.held, self.expected
        if held is not None and expected is not None:
            gap = batch.seq - expected
            if gap > 0 or gap < -self.max_rewind:  # it does not continue the stream
                if self._fits(batch):
                    self._hold(batch)
                    return
                if held.count:
                    self._release()
                    if self._fits(batch):
                        self._hold(batch)
                        return
        self._take(batch.seq, batch.t0_ms, batch.samples, batch.record_ts_ms)
        if held is not None and held.count and self._drain():
            self.stats.reordered_messages += 1

    def _fits(self, batch: SensorBatch) -> bool:
        assert self.expected is not None
        return self.expected < batch.seq and batch.seq + len(batch.samples) <= (
            self.expected + self.reorder)

    def _hold(self, batch: SensorBatch) -> None:
        assert self.held is not None
        self.stats.duplicate_samples += self.held.put(
            batch.seq, batch.t0_ms, batch.samples, batch.record_ts_ms)

    def _drain(self) -> bool:
        """Append the held samples that now continue the stream; True if there were any."""
        assert self.held is not None and self.expected is not None
        if not self.held.holds(self.expected):
            return False
        for p in self.held.take_run(self.expected):
            self._take(p.seq, p.t0_ms, p.samples, p.record_ts)
        return True

    def _release(self) -> None:
        """Everything held, in seq order, as if it had arrived now (the allowance ran out)."""
        assert self.held is not None
        while self.held.count:
            for p in self.held.take_run(self.held.first()):
                self._take(p.seq, p.t0_ms, p.samples, p.record_ts)

    def _take(self, seq: int, t0_ms: int, samples: np.ndarray, record_ts: int) -> None:
        """Apply one message (or held piece) to the stream: continue, fill, drop, restart."""
        stats, expected = self.stats, self.expected
        gap = 0 if expected is None else seq - expected
        if expected is None or gap > self.max_gap or gap < -self.max_rewind:
            if expected is not None:
                stats.stream_resets += 1
                self.skip = (expected, seq) if gap > 0 else (0, 0)
            self.segments.append(Segment(self.device_id, restart=True, seq=seq, t0_ms=t0_ms))
        else:
            if gap > 0:
                assert self.last_raw is not None
                samples = np.concatenate([np.repeat(self.last_raw[None], gap, axis=0), samples])
                stats.gap_samples_filled += gap
                self.skip = (expected, seq)
            elif gap < 0:
                behind = min(-gap, len(samples))
                late = max(0, min(seq + behind, self.skip[1]) - max(seq, self.skip[0]))
                stats.late_samples += late
                stats.duplicate_samples += behind - late
                samples = samples[behind:]
            if not len(samples):
                return
            if not self.segments:
                self.segments.append(Segment(self.device_id, restart=False, seq=expected))
        self.segments[-1].add(samples, record_ts)
        self.expected = self.segments[-1].ends[-1]
        self.last_raw = samples[-1]
        if self.held is not None and expected is not None and self.held.count:
            self.stats.duplicate_samples += self.held.drop(max(expected, seq), self.expected)
