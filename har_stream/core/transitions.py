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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from har_stream.core.records import ActivityResult
from har_stream.core.state import DeviceRegistry, Field
from har_stream.core.subscriber_records import (
    ActivityChange,
    DayTotals,
    DeviceStatus,
    group_by_device,
)

PASSING = ("TRANSITION",)


@dataclass(frozen=True, slots=True)
class SmoothingSettings:
    """Hysteresis of the activity changes (defaults chosen in docs/SUBSCRIBERS.md)."""

    hold_windows: int = 1
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
        "smooth_last_epoch": Field((), "<i8"),
    }


_NAMES = tuple(transition_fields())


class ActivityTransitions:
    """The smoother for every device, its state in a registry (its own one unless given)."""

    def __init__(self, classes: Sequence[str], settings: SmoothingSettings = SmoothingSettings(),
                 registry: DeviceRegistry | None = None) -> None:
        self.classes = tuple(classes)
        self.settings = settings
        self.registry = DeviceRegistry(transition_fields()) if registry is None else registry
        missing = [name for name, spec in transition_fields().items()
                   if self.registry.fields.get(name) != spec]
        if missing:
            raise ValueError(f"the registry lacks the smoother's fields {missing}")
        self._code = {name: i + 1 for i, name in enumerate(self.classes)}
        self.suppressed = 0
        """Runs of a new activity that ended unconfirmed (blips smoothed away), ever; a
        statistic for metrics, not state: a replay counts its runs again."""
        self._passing = frozenset(self._code[n] for n in settings.passing if n in self._code)

    def update(self, results: Sequence[ActivityResult]) -> tuple[list[ActivityChange],
                                                                 list[DeviceStatus]]:
        """Feed one poll's results (each device's in window order, devices interleaved as they
        come); return the changes they confirm, in result order per device, and the status
        of every device touched (`today` None). Raises KeyError for an activity not in
        `classes`."""
        return self.update_grouped(group_by_device(results))

    def update_grouped(self, by_device: Mapping[str, list[ActivityResult]],
                       today: Mapping[str, DayTotals] | None = None
                       ) -> tuple[list[ActivityChange], list[DeviceStatus]]:
        """`update` of results already grouped by device; `today` fills the statuses' days.

        The devices' fields are gathered once per poll into Python lists and scattered back
        once: per device, only plain Python runs (a numpy scalar access per field and device
        would cost more than the smoothing itself)."""
        if not by_device:
            return [], []
        today = today or {}
        registry = self.registry
        slots = np.fromiter(map(registry.slot, by_device), np.int64, len(by_device))
        columns = [registry.arrays[name][slots].tolist() for name in _NAMES]
        rows = list(zip(*columns, strict=True))
        changes: list[ActivityChange] = []
        states: list[DeviceStatus] = []
        for i, (device_id, windows) in enumerate(by_device.items()):
            rows[i] = row = self._device(device_id, windows, rows[i], changes)
            states.append(self._status(device_id, row, today.get(device_id)))
        for name, column in zip(_NAMES, zip(*rows, strict=True), strict=True):
            registry.arrays[name][slots] = column
        return changes, states

    def state(self, device_id: str, today: DayTotals | None = None) -> DeviceStatus | None:
        """The device's status (with `today` as its day), None for a device never seen."""
        slot = self.registry.get(device_id)
        if slot is None or not self.registry.arrays["smooth_last_activity"][slot]:
            return None
        row = tuple(self.registry.arrays[name][slot].item() for name in _NAMES)
        return self._status(device_id, row, today)

    def _device(self, device_id: str, windows: list[ActivityResult], row: tuple,
                changes: list[ActivityChange]) -> tuple:
        """One device's windows through the rules; `row` is its fields in `_NAMES` order."""
        (current, since, confidence, run_activity, run_windows, run_start, last_activity,
         last_confidence, last_seq, last_start, last_end, last_epoch) = row
        hold, enter = self.settings.hold_windows, self.settings.enter_confidence
        max_gap, code, passing = self.settings.max_gap_ms, self._code, self._passing
        suppressed = 0
        for w in windows:
            a, p = code[w.activity], float(w.confidence)
            if last_activity and w.t_start_ms - last_start > max_gap:
                suppressed += run_windows > 0
                run_activity = run_windows = 0
            last_activity, last_confidence, last_seq, last_epoch = a, p, w.seq, w.epoch
            last_start, last_end = w.t_start_ms, w.t_end_ms
            if a in passing:
                continue
            if a == current:
                confidence = p
                suppressed += run_windows > 0
                run_activity = run_windows = 0
                continue
            if a == run_activity:
                run_windows += 1
            else:
                suppressed += run_windows > 0
                run_activity, run_windows, run_start = a, 1, w.t_start_ms
            if run_windows >= hold or p >= enter:
                changes.append(ActivityChange(
                    device_id=device_id,
                    previous=self.classes[current - 1] if current else None,
                    activity=w.activity, started_ms=run_start, confirmed_ms=w.t_end_ms,
                    confidence=p, seq=w.seq, windows=run_windows, epoch=w.epoch))
                current, since, confidence = a, run_start, p
                run_activity = run_windows = 0
        self.suppressed += suppressed
        return (current, since, confidence, run_activity, run_windows, run_start, last_activity,
                last_confidence, last_seq, last_start, last_end, last_epoch)

    def _status(self, device_id: str, row: tuple, today: DayTotals | None) -> DeviceStatus:
        (current, since, confidence, *_, last_activity, last_confidence, last_seq, _, end,
         last_epoch) = row
        classes = self.classes
        return DeviceStatus(device_id, classes[current - 1] if current else None,
                            since if current else None, confidence,
                            classes[last_activity - 1], last_confidence, last_seq, end, today,
                            last_epoch)


def smoothed_per_window(changes: Sequence[ActivityChange], seqs: np.ndarray,
                        classes: Sequence[str]) -> np.ndarray:
    """Class index of the smoothed activity after each window of one device (-1: none yet),
    rebuilt from its changes: a change holds from its confirming window on."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.full(len(seqs), -1, np.int64)
    for change in changes:
        out[seqs >= change.seq] = index[change.activity]
    return out
