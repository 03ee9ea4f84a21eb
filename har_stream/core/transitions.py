"""Activity changes with hysteresis: the per-window answers smoothed into what apps announce.

Raw results flicker: on the demo's streams one change in six lasts a single window. A new
activity is therefore *entered* only when it holds for `hold_windows` consecutive windows,
or at once when one window says it with confidence ≥ `enter_confidence`; otherwise the
current activity stays. Rules, in the order they apply to each window:

- a *passing* class (TRANSITION by default: the model's label for postural transitions) is
  never entered and neither extends nor breaks a run: a stand-to-sit shows as
  STANDING … TRANSITION, SITTING, SITTING and enters SITTING;
- a window of the current activity ends any run of another activity;
- a window of another activity starts a run of it, or extends the run of the same activity;
  a gap in stream time longer than `max_gap_ms` between windows starts the run afresh;
- the run is confirmed when it reaches `hold_windows` windows or its latest window has
  confidence ≥ `enter_confidence` (> 1: never). The change starts at the run's first window.

Low-confidence windows are not special: they count in runs like any other, because N agreeing
windows are evidence however unsure each was, and a confident window can only enter at once.

State lives in `DeviceRegistry` fields (`transition_fields`), so it is snapshot and restored
with the device's other state, and `update` is a pure function of that state and the results:
replaying the same results from the same snapshot gives the same changes, which carry the
confirming window's id for de-duplication downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from har_stream.core.records import ActivityResult
from har_stream.core.state import DeviceRegistry, Field
from har_stream.core.subscriber_records import ActivityChange

PASSING = ("TRANSITION",)


@dataclass(frozen=True, slots=True)
class SmoothingSettings:
    """Hysteresis of the activity changes (defaults chosen in docs/SUBSCRIBERS.md)."""

    hold_windows: int = 2
    """Consecutive windows a new activity must hold before it is entered."""
    enter_confidence: float = 0.9
    """A window with at least this confidence enters its activity at once (> 1: never)."""
    max_gap_ms: int = 10_000
    """Stream time between two window starts beyond which a run starts afresh."""
    passing: tuple[str, ...] = PASSING
    """Classes never entered as an activity (passing states)."""

    def __post_init__(self) -> None:
        if self.hold_windows < 1:
            raise ValueError(f"hold_windows must be at least 1, not {self.hold_windows}")
        if self.max_gap_ms < 0:
            raise ValueError(f"max_gap_ms must not be negative, not {self.max_gap_ms}")


@dataclass(frozen=True, slots=True)
class Smoothed:
    """A device's smoothed state after an update (the device record's fields)."""

    device_id: str
    activity: str | None
    since_ms: int | None
    confidence: float
    last_activity: str
    last_confidence: float
    last_seq: int
    updated_ms: int


def transition_fields() -> dict[str, Field]:
    """Per-device state of the smoother. Activities are stored as class index + 1 (0: none),
    because the registry zeroes a new device's slot."""
    return {
        "smooth_activity": Field((), "<i2"),
        "smooth_since_ms": Field((), "<i8"),
        "smooth_confidence": Field((), "<f8"),
        "smooth_run_activity": Field((), "<i2"),
        "smooth_run_windows": Field((), "<i8"),
        "smooth_run_start_ms": Field((), "<i8"),
        "smooth_last_activity": Field((), "<i2"),  # 0: no window seen yet
        "smooth_last_confidence": Field((), "<f8"),
        "smooth_last_seq": Field((), "<i8"),
        "smooth_last_start_ms": Field((), "<i8"),
        "smooth_last_end_ms": Field((), "<i8"),
    }


_NAMES = tuple(transition_fields())


class ActivityTransitions:
    """The smoother for every device, its state in a registry (its own one unless given)."""

    def __init__(self, classes: Sequence[str], settings: SmoothingSettings = SmoothingSettings(),
                 registry: DeviceRegistry | None = None) -> None:
        self.classes = tuple(classes)
        self.settings = settings
        self.registry = DeviceRegistry(transition_fields()) if registry is None else registry
        missing = set(_NAMES) - set(self.registry.fields)
        if missing:
            raise ValueError(f"the registry lacks the smoother's fields {sorted(missing)}")
        self._code = {name: i + 1 for i, name in enumerate(self.classes)}
        self._passing = frozenset(self._code[n] for n in settings.passing if n in self._code)

    def update(self, results: Sequence[ActivityResult]) -> tuple[list[ActivityChange],
                                                                 list[Smoothed]]:
        """Feed one poll's results (each device's in window order, devices interleaved as they
        come); return the changes they confirm, in result order per device, and the smoothed
        state of every device touched. Raises KeyError for an activity not in `classes`."""
        by_device: dict[str, list[ActivityResult]] = {}
        for result in results:
            by_device.setdefault(result.device_id, []).append(result)
        changes: list[ActivityChange] = []
        states: list[Smoothed] = []
        for device_id, windows in by_device.items():
            states.append(self._device(device_id, windows, changes))
        return changes, states

    def state(self, device_id: str) -> Smoothed | None:
        """The device's smoothed state, None for a device never seen."""
        slot = self.registry.get(device_id)
        if slot is None or not self.registry.arrays["smooth_last_activity"][slot]:
            return None
        return self._smoothed(device_id, self._load(slot))

    def _device(self, device_id: str, windows: list[ActivityResult],
                changes: list[ActivityChange]) -> Smoothed:
        slot = self.registry.slot(device_id)
        s = self._load(slot)
        hold, enter = self.settings.hold_windows, self.settings.enter_confidence
        max_gap, code, passing = self.settings.max_gap_ms, self._code, self._passing
        for w in windows:
            a, p = code[w.activity], float(w.confidence)
            gap = bool(s["smooth_last_activity"]) and (
                w.t_start_ms - s["smooth_last_start_ms"] > max_gap)
            s["smooth_last_activity"], s["smooth_last_confidence"] = a, p
            s["smooth_last_seq"] = w.seq
            s["smooth_last_start_ms"], s["smooth_last_end_ms"] = w.t_start_ms, w.t_end_ms
            if gap:
                s["smooth_run_activity"], s["smooth_run_windows"] = 0, 0
            if a in passing:
                continue
            if a == s["smooth_activity"]:
                s["smooth_confidence"] = p
                s["smooth_run_activity"], s["smooth_run_windows"] = 0, 0
                continue
            if a == s["smooth_run_activity"]:
                s["smooth_run_windows"] += 1
            else:
                s["smooth_run_activity"], s["smooth_run_windows"] = a, 1
                s["smooth_run_start_ms"] = w.t_start_ms
            if s["smooth_run_windows"] >= hold or p >= enter:
                previous = s["smooth_activity"]
                changes.append(ActivityChange(
                    device_id=device_id,
                    previous=self.classes[previous - 1] if previous else None,
                    activity=w.activity, started_ms=s["smooth_run_start_ms"],
                    confirmed_ms=w.t_end_ms, confidence=p, seq=w.seq,
                    windows=s["smooth_run_windows"]))
                s["smooth_activity"], s["smooth_since_ms"] = a, s["smooth_run_start_ms"]
                s["smooth_confidence"] = p
                s["smooth_run_activity"], s["smooth_run_windows"] = 0, 0
        arrays = self.registry.arrays
        for name in _NAMES:
            arrays[name][slot] = s[name]
        return self._smoothed(device_id, s)

    def _load(self, slot: int) -> dict[str, Any]:
        """The device's fields as Python numbers (fast to update one window at a time)."""
        arrays = self.registry.arrays
        return {name: arrays[name][slot].item() for name in _NAMES}

    def _smoothed(self, device_id: str, s: dict[str, Any]) -> Smoothed:
        current = int(s["smooth_activity"])
        return Smoothed(
            device_id=device_id,
            activity=self.classes[current - 1] if current else None,
            since_ms=int(s["smooth_since_ms"]) if current else None,
            confidence=float(s["smooth_confidence"]),
            last_activity=self.classes[int(s["smooth_last_activity"]) - 1],
            last_confidence=float(s["smooth_last_confidence"]),
            last_seq=int(s["smooth_last_seq"]),
            updated_ms=int(s["smooth_last_end_ms"]),
        )


def smoothed_per_window(changes: Sequence[ActivityChange], seqs: np.ndarray,
                        classes: Sequence[str]) -> np.ndarray:
    """Class index of the smoothed activity after each window of one device (-1: none yet),
    rebuilt from its changes: a change holds from its confirming window on."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.full(len(seqs), -1, np.int64)
    for change in changes:
        out[seqs >= change.seq] = index[change.activity]
    return out
