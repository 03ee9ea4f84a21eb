"""Sensor batches of many devices in, every window that became ready out. No model, no I/O.

`Pipeline.process` runs in two parts:
  1. per device, in message order, the sequence checks (pure Python, per message, never
     per sample): duplicates are dropped, small gaps are filled by holding the last value,
     large gaps and rewinds restart the device's stream. The result is one or more
     segments of consecutive samples per device;
  2. vectorised across devices, one round per segment index: restart the streams that
     need it, then filter and window every group of segments of equal length at once.

Training, offline evaluation and the live service all cut windows with this code, so a
model is trained on exactly what it will be served (`replay` runs a whole recording).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from har_stream.core.records import (
    CHANNELS,
    HOP,
    SAMPLE_PERIOD_MS,
    WINDOW,
    SensorBatch,
    WindowBatch,
)
from har_stream.core.signal import MEDIAN_HISTORY, RAW, FilterBank, FilterState, SignalSettings
from har_stream.core.state import DeviceRegistry, Field
from har_stream.core.windowing import at_hop_boundary, emit_windows

_BLOCK = 1024
"""Devices filtered and windowed together in the steady state: their intermediate arrays
(about 15 KB per device) stay in the CPU cache, which measured ~20 % faster than one block."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """How streams are conditioned and how sequence faults are handled."""

    signal: SignalSettings = field(default_factory=SignalSettings)
    max_gap: int = 5
    """Missing samples up to this many are filled by holding the last value."""
    max_rewind: int = 3000
    """A message starting at most this far behind the expected seq holds duplicates (dropped);
    further back means the device restarted its counter, so its stream restarts."""


@dataclass(slots=True)
class PipelineStats:
    """What the sequence checks did in one step (exported as metrics)."""

    duplicate_samples: int = 0
    gap_samples_filled: int = 0
    stream_resets: int = 0


@dataclass(frozen=True, slots=True)
class PipelineStep:
    windows: WindowBatch
    stats: PipelineStats


def pipeline_fields(settings: SignalSettings) -> dict[str, Field]:
    """The per-device state the pipeline keeps in the registry."""
    sections = FilterBank(settings).sections
    return {
        "median": Field((MEDIAN_HISTORY, RAW), "<f4"),
        "noise_zi": Field((sections, 2, RAW), "<f4"),
        "gravity_zi": Field((sections, 2, 3), "<f4"),
        "ring": Field((WINDOW, len(CHANNELS)), "<f4"),
        "n": Field((), "<i8"),  # samples in the current stream
        "origin": Field((), "<i8"),  # seq of the current stream's first sample
    }


@dataclass(slots=True)
class _Segment:
    """Consecutive samples of one device within one step, ready to filter."""

    device_id: str
    restart: bool  # the stream (re)starts at this segment's first sample
    seq: int  # seq of the first sample
    parts: list[np.ndarray] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # seq after each message's last sample
    record_ts: list[int] = field(default_factory=list)
    anchor_seq: int = 0  # (seq, time) of the latest message: window times derive from it
    anchor_ms: int = 0

    @property
    def length(self) -> int:
        return self.ends[-1] - self.seq

    def add(self, samples: np.ndarray, batch: SensorBatch) -> None:
        self.parts.append(samples)
        self.ends.append(self.ends[-1] + len(samples) if self.ends else self.seq + len(samples))
        self.record_ts.append(batch.record_ts_ms)
        self.anchor_seq, self.anchor_ms = batch.seq, batch.t0_ms


class Pipeline:
    """Per-device conditioning and windowing, with all state in a `DeviceRegistry`."""

    def __init__(
        self,
        config: PipelineConfig = PipelineConfig(),
        registry: DeviceRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.filters = FilterBank(config.signal)
        self.registry = (DeviceRegistry(pipeline_fields(config.signal)) if registry is None
                         else registry)
        self.clock = clock

    def process(self, batches: Iterable[SensorBatch]) -> PipelineStep:
        """Sequence-check each device's batches, then filter and window them, vectorised.

        Steps: (1) devices with one batch that continues their stream exactly (the usual
        case) skip the per-device checks; (2) the others are planned into segments one
        device at a time; (3) every group of equal-length runs is filtered and windowed
        in one vectorised call, segment round by segment round.
        """
        batches = list(batches)
        stats = PipelineStats()
        steady_groups, others = self._split_steady(batches)
        pieces = [self._advance(g) for g in steady_groups]
        by_device: dict[str, list[SensorBatch]] = defaultdict(list)
        for batch in others:
            by_device[batch.device_id].append(batch)
        plans = [self._plan(d, bs, stats) for d, bs in by_device.items()]
        for round_index in range(max((len(p) for p in plans), default=0)):
            segments = [p[round_index] for p in plans if len(p) > round_index]
            self._restart([s for s in segments if s.restart])
            pieces.extend(self._advance(g) for g in _groups(segments, self.registry))
        touched = [g.slots for g in steady_groups]
        if by_device:
            touched.append(self.registry.slots([d for d in by_device if d in self.registry]))
        if touched:
            self.registry.touch(np.concatenate(touched), self.clock())
        return PipelineStep(_concat(pieces), stats)

    def _split_steady(self, batches: list[SensorBatch]
                      ) -> tuple[list[_Group], list[SensorBatch]]:
        """Groups of batches that exactly continue a known device's stream (its only batch this
        step), by length; and the other batches. Per batch only a few attribute reads."""
        if not batches:
            return [], []
        reg = self.registry
        device_ids = [b.device_id for b in batches]
        slots = reg.find(device_ids)
        known = slots >= 0
        if len(set(device_ids)) != len(device_ids):
            seen = Counter(device_ids)
            known &= np.fromiter((seen[d] == 1 for d in device_ids), bool, len(device_ids))
        count = len(batches)
        seqs = np.fromiter((b.seq for b in batches), np.int64, count)
        lengths = np.fromiter((len(b.samples) for b in batches), np.int64, count)
        safe = np.where(known, slots, 0)
        expected = reg.arrays["origin"][safe] + reg.arrays["n"][safe]
        steady = known & (lengths > 0) & (seqs == expected)
        if not steady.any():
            return [], batches
        groups = []
        for length in np.unique(lengths[steady]).tolist():
            index = np.flatnonzero(steady & (lengths == length))
            every = len(index) == count
            members = batches if every else [batches[i] for i in index.tolist()]
            groups.append(_Group(
                device_ids=device_ids if every else [device_ids[i] for i in index.tolist()],
                slots=slots[index],
                raw=np.concatenate([b.samples for b in members]).reshape(len(index), length, RAW),
                anchor_seq=seqs[index],
                anchor_ms=np.fromiter((b.t0_ms for b in members), np.int64, len(members)),
                record_ts=np.fromiter((b.record_ts_ms for b in members), np.int64, len(members)),
                split={},
            ))
        others = [] if steady.all() else [batches[i] for i in np.flatnonzero(~steady).tolist()]
        return groups, others

    def _plan(self, device_id: str, batches: list[SensorBatch], stats: PipelineStats
              ) -> list[_Segment]:
        """Split one device's batches into segments of consecutive samples."""
        reg, cfg = self.registry, self.config
        slot = reg.get(device_id)
        expected: int | None = None
        last_raw: np.ndarray | None = None
        if slot is not None:
            expected = int(reg.arrays["origin"][slot] + reg.arrays["n"][slot])
            last_raw = reg.arrays["median"][slot, -1]
        segments: list[_Segment] = []
        for batch in batches:
            samples, seq = batch.samples, batch.seq
            if not len(samples):
                continue
            gap = 0 if expected is None else seq - expected
            if expected is None or gap > cfg.max_gap or gap < -cfg.max_rewind:
                stats.stream_resets += expected is not None
                segments.append(_Segment(device_id, restart=True, seq=seq))
            else:
                if gap > 0:
                    assert last_raw is not None
                    samples = np.concatenate([np.repeat(last_raw[None], gap, axis=0), samples])
                    stats.gap_samples_filled += gap
                elif gap < 0:
                    dropped = min(-gap, len(samples))
                    stats.duplicate_samples += dropped
                    samples = samples[dropped:]
                if not len(samples):
                    continue
                if not segments:
                    segments.append(_Segment(device_id, restart=False, seq=expected))
            segments[-1].add(samples, batch)
            expected = segments[-1].ends[-1]
            last_raw = samples[-1]
        return segments

    def _restart(self, segments: list[_Segment]) -> None:
        """Start fresh streams: filters settled on the first sample, empty buffer, n = 0."""
        if not segments:
            return
        reg = self.registry
        slots = np.array([reg.slot(s.device_id) for s in segments], np.int64)
        first = np.stack([s.parts[0][0] for s in segments])
        self._store(slots, self.filters.initial_state(first))
        reg.arrays["ring"][slots] = 0
        reg.arrays["n"][slots] = 0
        reg.arrays["origin"][slots] = [s.seq for s in segments]

    def _advance(self, group: _Group) -> WindowBatch:
        """Filter and window equal-length runs of several devices (one vectorised step)."""
        reg, slots = self.registry, group.slots
        n = reg.arrays["n"][slots]
        if at_hop_boundary(n, group.raw.shape[1]):
            return self._advance_at_hop(group, n)
        filtered, state = self.filters.apply(group.raw, self._load(slots))
        self._store(slots, state)
        emitted, reg.arrays["ring"][slots] = emit_windows(reg.arrays["ring"][slots], n, filtered)
        reg.arrays["n"][slots] = n + group.raw.shape[1]
        if not len(emitted.rows):
            return WindowBatch.empty()
        return self._windows(group, emitted.rows, emitted.starts, emitted.data)

    def _advance_at_hop(self, group: _Group, n: np.ndarray) -> WindowBatch:
        """The steady state: HOP new samples per device, one window each, in cache-sized blocks.

        Each block of devices is filtered and windowed while its arrays are still in the CPU
        cache, and writes its windows straight into the step's window array; the numbers are
        those of the general path (the same calls on fewer rows).
        """
        ring = self.registry.arrays["ring"]
        data = np.empty((len(n), WINDOW, len(CHANNELS)), np.float32)
        for start in range(0, len(n), _BLOCK):
            block = slice(start, start + _BLOCK)
            slots = group.slots[block]
            filtered, state = self.filters.apply(group.raw[block], self._load(slots))
            self._store(slots, state)
            windows = data[block]
            windows[:, :HOP] = ring[slots, HOP:]
            windows[:, HOP:] = filtered
            ring[slots] = windows
        self.registry.arrays["n"][group.slots] = n + HOP
        return self._windows(group, np.arange(len(n)), n - HOP, data)

    def _windows(self, group: _Group, rows: np.ndarray, starts: np.ndarray, data: np.ndarray
                 ) -> WindowBatch:
        """Ids, times and record timestamps of the windows `data` cut from `group`'s rows."""
        # one window per row, in row order (a row may also emit two windows while another
        # emits none, so the count alone does not tell)
        every = len(rows) == len(group.device_ids) and bool(np.all(rows == np.arange(len(rows))))
        seqs = self.registry.arrays["origin"][group.slots][rows] + starts
        anchor_seq = group.anchor_seq if every else group.anchor_seq[rows]
        anchor_ms = group.anchor_ms if every else group.anchor_ms[rows]
        offsets = np.rint((seqs - anchor_seq) * SAMPLE_PERIOD_MS).astype(np.int64)
        t_start = anchor_ms + offsets
        return WindowBatch(
            device_ids=group.device_ids if every else [group.device_ids[r] for r in rows.tolist()],
            seqs=seqs,
            t_start_ms=t_start,
            t_end_ms=t_start + round((WINDOW - 1) * SAMPLE_PERIOD_MS),
            record_ts_ms=group.record_ts_of(rows, seqs + WINDOW - 1),
            fresh=starts == 0,
            data=data,
        )

    def _load(self, slots: np.ndarray) -> FilterState:
        a = self.registry.arrays
        return FilterState(
            a["median"][slots],
            a["noise_zi"][slots].swapaxes(0, 1),
            a["gravity_zi"][slots].swapaxes(0, 1),
        )

    def _store(self, slots: np.ndarray, state: FilterState) -> None:
        a = self.registry.arrays
        a["median"][slots] = state.median
        a["noise_zi"][slots] = state.noise_zi.swapaxes(0, 1)
        a["gravity_zi"][slots] = state.gravity_zi.swapaxes(0, 1)


@dataclass(frozen=True, slots=True)
class _Group:
    """Runs of k consecutive samples of several devices, ready for one vectorised step."""

    device_ids: list[str]
    slots: np.ndarray  # int64 (G,)
    raw: np.ndarray  # float32 (G, k, 6)
    anchor_seq: np.ndarray  # int64 (G,) (seq, time) of the latest message: window times
    anchor_ms: np.ndarray  # int64 (G,)
    record_ts: np.ndarray  # int64 (G,) broker timestamp of the latest message
    split: dict[int, tuple[list[int], list[int]]]  # row -> (message end seqs, record ts)

    def record_ts_of(self, rows: np.ndarray, last_seqs: np.ndarray) -> np.ndarray:
        """Broker timestamp of the message that delivered each window's last sample."""
        out = self.record_ts[rows]
        for i, row in enumerate(rows.tolist()):
            if row in self.split:
                ends, stamps = self.split[row]
                out[i] = stamps[int(np.searchsorted(ends, last_seqs[i], side="right"))]
        return out


def _groups(runs: list[SensorBatch] | list[_Segment], registry: DeviceRegistry
            ) -> list[_Group]:
    """Group single batches or planned segments by length, one `_Group` per length."""
    by_length: dict[int, list] = defaultdict(list)
    for run in runs:
        by_length[run.length if isinstance(run, _Segment) else len(run.samples)].append(run)
    return [_group_of(members, registry) for members in by_length.values()]


def _group_of(runs: list, registry: DeviceRegistry) -> _Group:
    device_ids = [r.device_id for r in runs]
    if runs and isinstance(runs[0], _Segment):
        raw = np.stack([s.parts[0] if len(s.parts) == 1 else np.concatenate(s.parts)
                        for s in runs])
        anchors = [(s.anchor_seq, s.anchor_ms, s.record_ts[-1]) for s in runs]
        split = {i: (s.ends, s.record_ts) for i, s in enumerate(runs) if len(s.ends) > 1}
    else:
        raw = np.stack([b.samples for b in runs])
        anchors = [(b.seq, b.t0_ms, b.record_ts_ms) for b in runs]
        split = {}
    seq, ms, ts = (np.array(a, np.int64) for a in zip(*anchors, strict=True))
    return _Group(device_ids, registry.slots(device_ids), raw, seq, ms, ts, split)


def _concat(pieces: list[WindowBatch]) -> WindowBatch:
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        return WindowBatch.empty()
    if len(pieces) == 1:
        return pieces[0]
    return WindowBatch(
        device_ids=[d for p in pieces for d in p.device_ids],
        seqs=np.concatenate([p.seqs for p in pieces]),
        t_start_ms=np.concatenate([p.t_start_ms for p in pieces]),
        t_end_ms=np.concatenate([p.t_end_ms for p in pieces]),
        record_ts_ms=np.concatenate([p.record_ts_ms for p in pieces]),
        fresh=np.concatenate([p.fresh for p in pieces]),
        data=np.concatenate([p.data for p in pieces]),
    )


def replay(
    acc: np.ndarray,
    gyro: np.ndarray,
    device_id: str = "recording",
    chunk: int | None = None,
    t0_ms: int = 0,
    config: PipelineConfig = PipelineConfig(),
) -> WindowBatch:
    """Windows of one whole recording, through exactly the service's code path.

    `chunk` splits the recording into messages of that many samples (None: one message);
    the windows are the same either way. Window seqs are sample indices in the recording.
    """
    samples = np.concatenate([acc, gyro], axis=1).astype(np.float32)
    step = chunk or max(len(samples), 1)
    pipeline = Pipeline(config)
    pieces = [
        pipeline.process([SensorBatch(device_id, start, t0_ms + round(start * SAMPLE_PERIOD_MS),
                                      samples[start:start + step])]).windows
        for start in range(0, len(samples), step)
    ]
    return _concat(pieces)
