"""What the demo scores: each window's result against the recording's ground truth.

The demo ends with an accuracy, so it needs the true activity of each window it will see
and a tally of the results that arrive. Both follow the offline evaluation: a window counts
only if it lies inside one basic-activity segment, and each window counts once however often
its result is delivered (the service delivers at least once). Pure bookkeeping, no Kafka and
no terminal, so the live view (`demo_view`) and the orchestration (`demo_cluster`) share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from har_stream.core.records import HOP, WINDOW


@dataclass
class DeviceView:
    """What the live view shows for one device."""

    activity: str = "-"
    confidence: float = 0.0
    truth: str = "-"
    windows: int = 0
    last: tuple[int, int] = (-1, -1)  # epoch and seq of the latest window shown


@dataclass
class Scoreboard:
    """Results seen so far, de-duplicated by window id, scored against the ground truth."""

    truth: dict[str, dict[int, str]]  # device -> window seq -> basic activity (labelled only)
    since_ms: int = 0  # results of windows starting earlier belong to an earlier run
    devices: dict[str, DeviceView] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    labelled: int = 0
    correct: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, result: Any) -> None:
        if result.window_id in self.seen or result.t_start_ms < self.since_ms:
            return
        self.seen.add(result.window_id)
        view = self.devices.setdefault(result.device_id, DeviceView())
        view.windows += 1
        truth = self.truth.get(result.device_id, {}).get(result.seq)
        if truth is not None:
            self.labelled += 1
            self.correct += result.activity == truth
        if (result.epoch, result.seq) > view.last:
            view.activity, view.confidence, view.last = (
                result.activity, result.confidence, (result.epoch, result.seq))
            view.truth = truth or "(no single label)"

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else float("nan")

    def summary(self) -> str:
        return (f"accuracy {100 * self.accuracy:.1f} % over {self.labelled:,} labelled windows "
                f"({self.correct:,} right; {len(self.seen):,} windows from "
                f"{len(self.devices)} devices)")


def window_truth(stream: Any, names: dict[int, str]) -> dict[int, str]:
    """Basic activity of each window lying inside one labelled segment (evaluation rule)."""
    from har_stream.training.hapt import BASIC_ACTIVITY_IDS

    n = len(stream.samples)
    seqs = np.arange(0, max(n - WINDOW + 1, 0), HOP)
    # one run of identical labels covering the whole window; 0 = unlabelled
    per_sample = stream.truth
    change = np.concatenate([[0], np.cumsum(np.diff(per_sample) != 0)])
    out = {}
    for seq in seqs.tolist():
        activity = int(per_sample[seq])
        if activity in BASIC_ACTIVITY_IDS and change[seq] == change[seq + WINDOW - 1]:
            out[seq] = names[activity]
    return out
