"""Sensor batches in, activity results and running counts out: pipeline + model + tally.

Pure and deterministic given its inputs (no I/O, clock injected), so the Kafka loop,
the offline evaluation and the tests all drive the same object.

The model is stateful: each device carries a recurrent state from one window to the
next, kept in the device registry beside its filter state. A poll may hold several
windows of one device; they are classified in rounds (round r = every device's r-th
window), so each window sees the state left by its predecessor. A round's windows go to the
model in slices of `model_batch`: the LiteRT engine runs ~20 % more windows per second in
slices of 32 than in one call of thousands (its activations stay in the CPU cache), and a
window's outputs do not depend on the other windows of its call.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from har_stream.core.pipeline import Pipeline, PipelineConfig, PipelineStats, pipeline_fields
from har_stream.core.records import (
    HOP,
    SAMPLE_PERIOD_MS,
    ActivityCounts,
    ActivityResult,
    SensorBatch,
    WindowBatch,
)
from har_stream.core.state import DeviceRegistry, Field

if TYPE_CHECKING:
    from har_stream.serving import StatefulModel

HOP_SECONDS = HOP * SAMPLE_PERIOD_MS / 1000.0
MODEL_BATCH = 32
"""Default windows per model call; measured in docs/BENCHMARKS.md ("Pipeline with model")."""


@dataclass(frozen=True, slots=True)
class RecognizerOutput:
    results: list[ActivityResult]
    counts: list[ActivityCounts]  # one per device that completed a window, after this step
    windows: WindowBatch
    stats: PipelineStats
    rounds: int  # model calls made


class Recognizer:
    """Per-device streaming recognition with all state in one `DeviceRegistry`."""

    def __init__(
        self,
        model: StatefulModel,
        config: PipelineConfig = PipelineConfig(),
        clock: Callable[[], float] = time.monotonic,
        model_batch: int = MODEL_BATCH,
    ) -> None:
        """`model_batch`: most windows per model call (0: a whole round in one call)."""
        self.model = model
        self.model_batch = model_batch
        self.classes = tuple(model.classes)
        fields = pipeline_fields(config.signal) | {
            "model_state": Field((model.state_size,), "<f4"),
            "counts": Field((len(self.classes),), "<i8"),
            "since_ms": Field((), "<i8"),  # start time of the first counted window
            "last_seq": Field((), "<i8"),  # seq of the last counted window
        }
        self.registry = DeviceRegistry(fields)
        self.pipeline = Pipeline(config, self.registry, clock)

    def process(self, batches: Iterable[SensorBatch]) -> RecognizerOutput:
        step = self.pipeline.process(batches)
        windows = step.windows
        slots = self.registry.slots(windows.device_ids)
        probs, rounds = self._classify(windows, slots)
        best = probs.argmax(axis=1)
        results = self._results(windows, probs, best)
        counts = self._count(windows, slots, best)
        return RecognizerOutput(results, counts, windows, step.stats, rounds)

    def _classify(self, windows: WindowBatch, slots: np.ndarray) -> tuple[np.ndarray, int]:
        """Run the model in rounds so each device's windows see its carried state in order."""
        probs = np.zeros((len(windows), len(self.classes)), np.float32)
        if not len(windows):
            return probs, 0
        rank = _rank_within(slots)
        rounds = int(rank.max()) + 1
        states = self.registry.arrays["model_state"]
        step = self.model_batch if self.model_batch > 0 else len(windows)
        for r in range(rounds):
            rows = np.flatnonzero(rank == r) if rounds > 1 else np.arange(len(windows))
            for start in range(0, len(rows), step):
                part = rows[start:start + step]
                state = states[slots[part]]
                state[windows.fresh[part]] = 0.0
                probs[part], states[slots[part]] = self.model.predict(windows.data[part], state)
        return probs, rounds

    def _results(self, windows: WindowBatch, probs: np.ndarray, best: np.ndarray
                 ) -> list[ActivityResult]:
        classes, version = self.classes, self.model.version
        rows = probs.tolist()
        return [
            ActivityResult(
                device_id=device_id,
                seq=seq,
                t_start_ms=t_start,
                t_end_ms=t_end,
                activity=classes[b],
                confidence=row[b],
                probabilities=dict(zip(classes, row, strict=True)),
                model_version=version,
                record_ts_ms=record_ts,
            )
            for device_id, seq, t_start, t_end, record_ts, b, row in zip(
                windows.device_ids, windows.seqs.tolist(), windows.t_start_ms.tolist(),
                windows.t_end_ms.tolist(), windows.record_ts_ms.tolist(), best.tolist(), rows,
                strict=True)
        ]

    def _count(self, windows: WindowBatch, slots: np.ndarray, best: np.ndarray
               ) -> list[ActivityCounts]:
        """Add each window to its device's tally; one counts record per device touched."""
        if not len(windows):
            return []
        a = self.registry.arrays
        unset = np.unique(slots[a["counts"][slots].sum(axis=1) == 0])
        np.add.at(a["counts"], (slots, best), 1)
        slot_list = slots.tolist()
        if len(unset):
            first_start: dict[int, int] = {}
            for s, t in zip(slot_list, windows.t_start_ms.tolist(), strict=True):
                first_start.setdefault(s, t)
            a["since_ms"][unset] = [first_start[s] for s in unset.tolist()]
        last: dict[str, int] = {}
        for i, device_id in enumerate(windows.device_ids):
            last[device_id] = i
        index = np.fromiter(last.values(), np.int64, len(last))
        last_slots = slots[index]
        last_seqs = windows.seqs[index]
        a["last_seq"][last_slots] = last_seqs
        tallies = a["counts"][last_slots].tolist()
        since = a["since_ms"][last_slots].tolist()
        updated = windows.t_end_ms[index].tolist()
        classes = self.classes
        return [
            ActivityCounts(
                device_id=device_id,
                windows=dict(zip(classes, tally, strict=True)),
                seconds=dict(zip(classes, map(_seconds, tally), strict=True)),
                since_ms=since_ms,
                updated_ms=updated_ms,
                last_seq=last_seq,
            )
            for device_id, tally, since_ms, updated_ms, last_seq in zip(
                last, tallies, since, updated, last_seqs.tolist(), strict=True)
        ]


@functools.lru_cache(maxsize=1 << 14)
def _seconds(windows: int) -> float:
    """Seconds credited to `windows` windows (one hop each); cached: tallies repeat a lot."""
    return round(windows * HOP_SECONDS, 2)


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its key (0 for the first)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(keys)) - group_start
    return rank
