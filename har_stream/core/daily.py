"""Daily totals per device: seconds of each activity per day, by stream time.

A window belongs to the day of its start time (`t_start_ms`), days cut at midnight UTC
shifted by `utc_offset_minutes` (a fixed offset: a deployment for one time zone sets it;
daylight saving is not followed). Stream time, never the consumer's clock, so a replay or a
late consumer gets the same days. Each window credits one hop (1.28 s) to its raw activity,
the convention of `har.activity-counts`, so a day's seconds add up to its stream time and
agree with the counts.

A device has one open day. The first window of a later day closes it: its final totals are
returned (for `har.daily-totals`) and the new day opens. Days without windows produce no
record. A window dated before the open day (the device's clock went back) is not counted:
a closed day is never reopened. A day whose device goes silent stays open until the device
returns; the device record shows it meanwhile.

State lives in `DeviceRegistry` fields (`daily_fields`) and `update` is a pure function of
that state and the results, so a restored device continues its day exactly.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from har_stream.core.records import ActivityResult
from har_stream.core.state import DeviceRegistry, Field
from har_stream.core.subscriber_records import DayTotals, group_by_device

DAY_MS = 86_400_000
_EPOCH = dt.date(1970, 1, 1)
_SCALARS = ("day_index", "day_first_ms", "day_last_ms", "day_last_seq", "day_last_epoch")


@dataclass(frozen=True, slots=True)
class DailySettings:
    utc_offset_minutes: int = 0
    """Days start at midnight of UTC plus this many minutes (e.g. 60 for CET, -300 for EST)."""

    def __post_init__(self) -> None:
        if not -1440 < self.utc_offset_minutes < 1440:
            raise ValueError(f"utc_offset_minutes must be within ±1439, not "
                             f"{self.utc_offset_minutes}")


def daily_fields(n_classes: int) -> dict[str, Field]:
    """Per-device state of the open day; a device without an open day has no windows in it."""
    return {
        "day_index": Field((), "<i8"),  # days since 1970-01-01 in the offset's calendar
        "day_windows": Field((n_classes,), "<i8"),
        "day_first_ms": Field((), "<i8"),
        "day_last_ms": Field((), "<i8"),
        "day_last_seq": Field((), "<i8"),
        "day_last_epoch": Field((), "<i8"),
    }


def day_of(t_ms: int, utc_offset_minutes: int) -> int:
    """Index of the day holding `t_ms` (days since 1970-01-01 in the offset's calendar)."""
    return (t_ms + utc_offset_minutes * 60_000) // DAY_MS


@functools.lru_cache(maxsize=4096)
def day_label(day_index: int) -> str:
    return (_EPOCH + dt.timedelta(days=day_index)).isoformat()


class DailyTotals:
    """Open-day tallies of every device, in a registry (its own one unless given)."""

    def __init__(self, classes: Sequence[str], settings: DailySettings = DailySettings(),
                 registry: DeviceRegistry | None = None) -> None:
        self.classes = tuple(classes)
        self.settings = settings
        fields = daily_fields(len(self.classes))
        self.registry = DeviceRegistry(fields) if registry is None else registry
        if any(self.registry.fields.get(name) != spec for name, spec in fields.items()):
            raise ValueError("the registry lacks the daily totals' fields")
        self._index = {name: i for i, name in enumerate(self.classes)}

    def update(self, results: Sequence[ActivityResult]
               ) -> tuple[list[DayTotals], list[DayTotals]]:
        """Count one poll's results (each device's in window order); return the days they
        closed, in order, and the open day of every device touched.

        Fields are gathered once per poll into Python lists and scattered back once, so the
        per-device work is plain Python (see `ActivityTransitions.update`)."""
        return self.update_grouped(group_by_device(results))

    def update_grouped(self, by_device: Mapping[str, list[ActivityResult]]
                       ) -> tuple[list[DayTotals], list[DayTotals]]:
        """`update` of results already grouped by device."""
        if not by_device:
            return [], []
        registry = self.registry
        slots = np.fromiter(map(registry.slot, by_device), np.int64, len(by_device))
        a = registry.arrays
        counts = a["day_windows"][slots].tolist()
        scalars = [a[name][slots].tolist() for name in _SCALARS]
        closed: list[DayTotals] = []
        opened: list[DayTotals] = []
        for i, (device_id, windows) in enumerate(by_device.items()):
            today, *fields = self._device(device_id, windows, counts[i],
                                          [c[i] for c in scalars], closed)
            for column, value in zip(scalars, fields, strict=True):
                column[i] = value
            opened.append(today)
        a["day_windows"][slots] = counts
        for name, column in zip(_SCALARS, scalars, strict=True):
            a[name][slots] = column
        return closed, opened

    def today(self, device_id: str) -> DayTotals | None:
        """The device's open day, None if it has none."""
        slot = self.registry.get(device_id)
        if slot is None:
            return None
        a = self.registry.arrays
        counts = a["day_windows"][slot].tolist()
        if not any(counts):
            return None
        day, first_ms, last_ms, last_seq, epoch = (int(a[name][slot]) for name in _SCALARS)
        return self._totals(device_id, counts, day, first_ms, last_ms, (epoch, last_seq), False)

    def _device(self, device_id: str, windows: list[ActivityResult], counts: list[int],
                scalars: list[int], closed: list[DayTotals]
                ) -> tuple[DayTotals, int, int, int, int, int]:
        """One device's windows into its open day (`counts` is updated in place)."""
        day, first_ms, last_ms, last_seq, epoch = scalars
        opened = any(counts)
        offset, index = self.settings.utc_offset_minutes, self._index
        for w in windows:
            activity = index[w.activity]
            window_day = day_of(w.t_start_ms, offset)
            if opened and window_day < day:
                continue  # before the open day: a closed day is never reopened
            if opened and window_day > day:
                closed.append(self._totals(device_id, counts, day, first_ms, last_ms,
                                           (epoch, last_seq), True))
                counts[:] = [0] * len(counts)
            if not opened or window_day != day:
                opened, day, first_ms = True, window_day, w.t_start_ms
            counts[activity] += 1
            last_ms, last_seq, epoch = w.t_end_ms, w.seq, w.epoch
        today = self._totals(device_id, counts, day, first_ms, last_ms, (epoch, last_seq), False)
        return today, day, first_ms, last_ms, last_seq, epoch

    def _totals(self, device_id: str, counts: list[int], day: int, first_ms: int, last_ms: int,
                last: tuple[int, int], closed: bool) -> DayTotals:
        """`last`: epoch and seq of the day's last counted window."""
        offset = self.settings.utc_offset_minutes
        return DayTotals(
            device_id=device_id, day=day_label(day),
            day_start_ms=day * DAY_MS - offset * 60_000, utc_offset_minutes=offset,
            windows=dict(zip(self.classes, counts, strict=True)),
            first_ms=first_ms, last_ms=last_ms, last_seq=last[1], closed=closed,
            last_epoch=last[0])
