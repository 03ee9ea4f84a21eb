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

Held samples live in fixed-size per-device arrays indexed by `seq % reorder`: every held seq
lies in [expected, expected + reorder), so indices never collide, and the expected seq never
moves back while anything is held (rewinds release first).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch
from har_stream.core.signal import RAW
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


def sequencing_fields(reorder: int) -> dict[str, Field]:
    """Per-device state of the sequence checks (with the pipeline's `origin` and `n`)."""
    fields = {
        "origin_ms": Field((), "<i8"),  # time of the stream's first sample
        "skip_from": Field((), "<i8"),  # the stream's latest gap: seqs [from, to) it passed
        "skip_to": Field((), "<i8"),  # without their samples (filled, or jumped by a restart)
    }
    if reorder > 0:
        fields |= {
            "held": Field((reorder, RAW), "<f4"),  # held samples at index seq % reorder
            "held_mask": Field((reorder,), "u1"),
            "held_ts": Field((reorder,), "<i8"),  # broker timestamp of each one's message
            "held_ms": Field((reorder,), "<i8"),  # time each one's message gives it
            "held_n": Field((), "<i8"),  # samples held
        }
    return fields


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


class _Held:
    """A device's held samples: views of its registry rows (copies for a device without a
    slot yet, saved once it has one)."""

    def __init__(self, registry: DeviceRegistry, slot: int | None, size: int) -> None:
        a = registry.arrays
        self.views = slot is not None
        if slot is None:
            self.data = np.zeros((size, RAW), np.float32)
            self.mask = np.zeros(size, np.uint8)
            self.ts = np.zeros(size, np.int64)
            self.ms = np.zeros(size, np.int64)
            self.count = 0
        else:
            self.data, self.mask, self.ts, self.ms = (
                a[k][slot] for k in ("held", "held_mask", "held_ts", "held_ms"))
            self.count = int(a["held_n"][slot])
        self.size = size

    def save(self, registry: DeviceRegistry, slot: int) -> None:
        a = registry.arrays
        if not self.views:
            a["held"][slot], a["held_ts"][slot], a["held_ms"][slot] = self.data, self.ts, self.ms
            a["held_mask"][slot] = self.mask
        a["held_n"][slot] = self.count

    def put(self, batch: SensorBatch) -> int:
        """Hold a message's samples; how many were held already (duplicates)."""
        n = len(batch.samples)
        index = (batch.seq + np.arange(n)) % self.size
        again = int(self.mask[index].sum())
        self.data[index] = batch.samples
        self.ts[index] = batch.record_ts_ms
        self.ms[index] = batch.t0_ms + np.arange(n, dtype=np.int64) * PERIOD_MS
        self.mask[index] = 1
        self.count += n - again
        return again

    def drop(self, start: int, stop: int) -> int:
        """Forget held samples of seqs [start, stop) (the stream has them); how many."""
        if stop <= start or not self.count:
            return 0
        index = slice(None) if stop - start >= self.size else (
            np.arange(start, stop) % self.size)
        dropped = int(self.mask[index].sum())
        self.mask[index] = 0
        self.count -= dropped
        return dropped

    def first(self, expected: int) -> int:
        """The smallest held seq (all lie in [expected, expected + size))."""
        index = np.flatnonzero(self.mask)
        return expected + int(((index - expected) % self.size).min())

    def take_run(self, seq: int) -> list[tuple[int, int, np.ndarray, int]]:
        """Remove the consecutive held samples from `seq` on, as (seq, time, samples, record
        ts) pieces of one broker timestamp each."""
        index = (seq + np.arange(self.size)) % self.size
        present = self.mask[index]
        length = self.size if present.all() else int(np.argmin(present))
        index = index[:length]
        self.mask[index] = 0
        self.count -= length
        ts = self.ts[index]
        cuts = [0, *(np.flatnonzero(np.diff(ts)) + 1).tolist(), length]
        return [(seq + a, int(self.ms[index[a]]), self.data[index[a:b]], int(ts[a]))
                for a, b in itertools.pairwise(cuts)]


class DevicePlanner:
    """Plans one device's messages of a step into segments (see the module doc)."""

    def __init__(self, registry: DeviceRegistry, max_gap: int, max_rewind: int, reorder: int,
                 stats: PipelineStats) -> None:
        self.registry, self.stats = registry, stats
        self.max_gap, self.max_rewind, self.reorder = max_gap, max_rewind, reorder

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
        self.held = _Held(reg, slot, self.reorder) if self.reorder else None
        for batch in batches:
            if len(batch.samples):
                self._arrive(batch)
        if self.segments or (self.held and (self.held.count or self.held.views)):
            slot = reg.slot(device_id)
            reg.arrays["skip_from"][slot], reg.arrays["skip_to"][slot] = self.skip
            if self.held:
                self.held.save(reg, slot)
        return self.segments

    def _arrive(self, batch: SensorBatch) -> None:
        held, expected = self.held, self.expected
        if held is not None and expected is not None:
            gap = batch.seq - expected
            if gap > 0 or gap < -self.max_rewind:  # it does not continue the stream
                if self._fits(batch):
                    self.stats.duplicate_samples += held.put(batch)
                    return
                if held.count:
                    self._release()
                    if self._fits(batch):
                        self.stats.duplicate_samples += held.put(batch)
                        return
        self._take(batch.seq, batch.t0_ms, batch.samples, batch.record_ts_ms)
        if held is not None and held.count and self._drain():
            self.stats.reordered_messages += 1

    def _fits(self, batch: SensorBatch) -> bool:
        assert self.expected is not None
        return self.expected < batch.seq and batch.seq + len(batch.samples) <= (
            self.expected + self.reorder)

    def _drain(self) -> bool:
        """Append the held samples that now continue the stream; True if there were any."""
        assert self.held is not None and self.expected is not None
        if not self.held.mask[self.expected % self.reorder]:
            return False
        for seq, t0_ms, samples, record_ts in self.held.take_run(self.expected):
            self._take(seq, t0_ms, samples, record_ts)
        return True

    def _release(self) -> None:
        """Everything held, in seq order, as if it had arrived now (the allowance ran out)."""
        assert self.held is not None and self.expected is not None
        while self.held.count:
            for seq, t0_ms, samples, record_ts in self.held.take_run(
                    self.held.first(self.expected)):
                self._take(seq, t0_ms, samples, record_ts)

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
