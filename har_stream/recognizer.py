"""Sensor batches in, activity results and running counts out: pipeline + model + tally.

Pure and deterministic given its inputs (no I/O, clock injected), so the Kafka loop,
the offline evaluation and the tests all drive the same object.

The model is stateful: each device carries a recurrent state from one window to the
next, kept in the device registry beside its filter state. A poll may hold several
windows of one device; they are classified in rounds (round r = every device's r-th
window), so each window sees the state left by its predecessor, with one batched model
call per round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from har_stream.pipeline import Pipeline, PipelineConfig, PipelineStats, pipeline_fields
from har_stream.records import (
    HOP,
    SAMPLE_PERIOD_MS,
    ActivityCounts,
    ActivityResult,
    SensorBatch,
    WindowBatch,
)
from har_stream.state import DeviceRegistry, Field

if TYPE_CHECKING:
    from har_stream.model import StatefulModel

HOP_SECONDS = HOP * SAMPLE_PERIOD_MS / 1000.0


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
    ) -> None:
        self.model = model
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
        probs, rounds = self._classify(windows)
        results = self._results(windows, probs)
        counts = self._count(windows, probs.argmax(axis=1) if len(windows) else np.zeros(0, int))
        return RecognizerOutput(results, counts, windows, step.stats, rounds)

    def _classify(self, windows: WindowBatch) -> tuple[np.ndarray, int]:
        """Run the model in rounds so each device's windows see its carried state in order."""
        probs = np.zeros((len(windows), len(self.classes)), np.float32)
        if not len(windows):
            return probs, 0
        slots = self.registry.slots(windows.device_ids)
        rank = _rank_within(slots)
        states = self.registry.arrays["model_state"]
        for r in range(int(rank.max()) + 1):
            rows = np.flatnonzero(rank == r)
            state = states[slots[rows]]
            state[windows.fresh[rows]] = 0.0
            probs[rows], states[slots[rows]] = self.model.predict(windows.data[rows], state)
        return probs, int(rank.max()) + 1

    def _results(self, windows: WindowBatch, probs: np.ndarray) -> list[ActivityResult]:
        classes, version = self.classes, self.model.version
        best = probs.argmax(axis=1)
        rows = probs.tolist()
        return [
            ActivityResult(
                device_id=device_id,
                seq=int(windows.seqs[i]),
                t_start_ms=int(windows.t_start_ms[i]),
                t_end_ms=int(windows.t_end_ms[i]),
                activity=classes[best[i]],
                confidence=rows[i][best[i]],
                probabilities=dict(zip(classes, rows[i], strict=True)),
                model_version=version,
                record_ts_ms=int(windows.record_ts_ms[i]),
            )
            for i, device_id in enumerate(windows.device_ids)
        ]

    def _count(self, windows: WindowBatch, best: np.ndarray) -> list[ActivityCounts]:
        """Add each window to its device's tally; one counts record per device touched."""
        if not len(windows):
            return []
        a = self.registry.arrays
        slots = self.registry.slots(windows.device_ids)
        unset = np.unique(slots[a["counts"][slots].sum(axis=1) == 0])
        np.add.at(a["counts"], (slots, best), 1)
        first_start: dict[int, int] = {}
        for s, t in zip(slots.tolist(), windows.t_start_ms.tolist(), strict=True):
            first_start.setdefault(s, t)
        a["since_ms"][unset] = [first_start[s] for s in unset.tolist()]
        last: dict[str, int] = {}
        for i, device_id in enumerate(windows.device_ids):
            last[device_id] = i
        out = []
        for device_id, i in last.items():
            slot = slots[i]
            a["last_seq"][slot] = windows.seqs[i]
            tally = a["counts"][slot].tolist()
            out.append(ActivityCounts(
                device_id=device_id,
                windows=dict(zip(self.classes, tally, strict=True)),
                seconds={c: round(n * HOP_SECONDS, 2) for c, n in zip(self.classes, tally,
                                                                        strict=True)},
                since_ms=int(a["since_ms"][slot]),
                updated_ms=int(windows.t_end_ms[i]),
                last_seq=int(windows.seqs[i]),
            ))
        return out


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its key (0 for the first)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(keys)) - group_start
    return rank
