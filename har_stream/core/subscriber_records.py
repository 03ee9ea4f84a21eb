"""Records for the people who build apps on har-stream's topics: changes, devices, days.

`har.activity` gives one result per 1.28 s window; apps want "you started walking", "sitting
since 9:12" and "2 h sitting today". These records carry exactly that, computed once by the
recognizer from the results (`core.transitions`, `core.daily`, `core.subscriber_outputs`) so
that every subscriber sees the same answer. Frozen and slotted like `core.records`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from har_stream.core.records import HOP, SAMPLE_PERIOD_MS, ActivityResult, window_id

ENTER = "ENTER"
EXIT = "EXIT"
"""Transition types of mobile activity-recognition APIs (Android's ActivityTransition
ACTIVITY_TRANSITION_ENTER / _EXIT); `ActivityChange.transitions` maps a change onto them."""


@dataclass(frozen=True, slots=True)
class ActivityChange:
    """The smoothed activity of a device changed (published to `har.activity-changes`).

    One record per change: `previous` was exited and `activity` entered, both at `started_ms`
    (the start of the first window of the new activity's run). `window_id` / `seq` name the
    window that confirmed the change (at `confirmed_ms`, its end): one change per confirming
    window, so `window_id` is the change's identity for de-duplication. `windows` is the length
    of the run when it was confirmed (1 when a confident window confirmed it at once), so
    `windows - 1` is the delay the smoothing added, in windows.
    """

    device_id: str
    previous: str | None  # None for a device's first activity
    activity: str
    started_ms: int
    confirmed_ms: int
    confidence: float  # of the confirming window
    seq: int
    windows: int
    epoch: int = 0  # of the confirming window

    @property
    def window_id(self) -> str:
        return window_id(self.device_id, self.seq, self.epoch)

    def transitions(self) -> list[tuple[str, str]]:
        """The change as ENTER/EXIT events, in order: EXIT previous (if any), ENTER activity."""
        events = [(EXIT, self.previous)] if self.previous is not None else []
        return [*events, (ENTER, self.activity)]


@dataclass(frozen=True, slots=True)
class DayTotals:
    """Per-activity time of one device on one day, by stream time (window start times).

    A day is `day_start_ms` .. `day_start_ms` + 24 h, cut at midnight of UTC shifted by
    `utc_offset_minutes`; `day` is its date there (YYYY-MM-DD). Each window credits one hop
    (1.28 s) to its activity, as in `har.activity-counts`. `closed` is True once a window of a
    later day arrived: the totals are final (published to `har.daily-totals`); an open day
    is the one shown in the device record.
    """

    device_id: str
    day: str
    day_start_ms: int
    utc_offset_minutes: int
    windows: dict[str, int]
    first_ms: int  # start of the day's first counted window
    last_ms: int  # end of the day's last counted window
    last_seq: int
    closed: bool
    last_epoch: int = 0  # of the day's last counted window

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds of each activity: windows x 1.28 s, rounded to 0.01 s like the counts
        (derived, so the record cannot disagree with itself and costs nothing to build)."""
        return {name: hop_seconds(n) for name, n in self.windows.items()}


def group_by_device(results: Iterable[ActivityResult]) -> dict[str, list[ActivityResult]]:
    """Each device's results in their order, devices in order of first appearance."""
    grouped: dict[str, list[ActivityResult]] = {}
    for result in results:
        grouped.setdefault(result.device_id, []).append(result)
    return grouped


@functools.lru_cache(maxsize=1 << 14)
def hop_seconds(windows: int) -> float:
    """Seconds credited to `windows` windows (one hop, 1.28 s, each), rounded to 0.01 s."""
    return round(windows * HOP * SAMPLE_PERIOD_MS / 1000.0, 2)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What a device is doing now (published to `har.devices`, compacted: latest per device).

    `activity` is the smoothed activity (None until one is confirmed), held since `since_ms`,
    with `confidence` the latest confidence the model gave it. `last_activity` and
    `last_confidence` are the raw answer for the latest window (`last_window_id`, `last_seq`,
    ending at `updated_ms`), which may be a passing TRANSITION or an unconfirmed blip.
    `today` is the open day's totals.
    """

    device_id: str
    activity: str | None
    since_ms: int | None
    confidence: float
    last_activity: str
    last_confidence: float
    last_seq: int
    updated_ms: int
    today: DayTotals | None
    last_epoch: int = 0

    @property
    def last_window_id(self) -> str:
        return window_id(self.device_id, self.last_seq, self.last_epoch)
