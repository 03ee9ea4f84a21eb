"""One call per poll: the results in, every subscriber record out (changes, devices, days).

`Recognizer(..., subscribers=SubscriberSettings(...))` runs this on each step's results: its
fields (`subscriber_fields`) join the recognizer's registry, so the smoother's and the day's
state are snapshot, restored, moved and evicted with the rest of the device, and an offline
replay gives the same records as the service. The service sends the three lists to their
topics (`har.activity-changes`, `har.devices`, `har.daily-totals`), keyed by device id
(`service/subscriber_publisher.py`). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from har_stream.core.daily import DailySettings, DailyTotals, daily_fields
from har_stream.core.outputs_codec import encode_change, encode_day, encode_device
from har_stream.core.records import ActivityResult
from har_stream.core.state import DeviceRegistry, Field
from har_stream.core.subscriber_records import (
    ActivityChange,
    DayTotals,
    DeviceStatus,
    group_by_device,
)
from har_stream.core.transitions import ActivityTransitions, SmoothingSettings, transition_fields

_SMOOTHING = SmoothingSettings()
_DAILY = DailySettings()


@dataclass(frozen=True, slots=True)
class SubscriberSettings:
    """How the subscriber records are derived: the smoothing and where days are cut."""

    smoothing: SmoothingSettings = _SMOOTHING
    daily: DailySettings = _DAILY


def subscriber_fields(classes: Sequence[str]) -> dict[str, Field]:
    """Per-device state of the subscriber outputs, to add to the recognizer's fields."""
    return transition_fields() | daily_fields(len(classes))


@dataclass(frozen=True, slots=True)
class SubscriberStep:
    changes: list[ActivityChange]  # per device in window order
    devices: list[DeviceStatus]  # one per device with results in the poll
    closed_days: list[DayTotals]  # per device in day order
    suppressed: int = 0  # runs of a new activity that ended unconfirmed (blips smoothed away)

    def encoded(self) -> dict[str, list[tuple[bytes, bytes]]]:
        """(key, value) of every record, per kind ("changes", "devices", "daily"): what the
        service sends to `har.activity-changes`, `har.devices` and `har.daily-totals`."""
        return {
            "changes": [(c.device_id.encode(), encode_change(c)) for c in self.changes],
            "devices": [(d.device_id.encode(), encode_device(d)) for d in self.devices],
            "daily": [(d.device_id.encode(), encode_day(d)) for d in self.closed_days],
        }


class SubscriberOutputs:
    """Activity changes, device records and daily totals of every device."""

    def __init__(self, classes: Sequence[str], smoothing: SmoothingSettings = _SMOOTHING,
                 daily: DailySettings = _DAILY,
                 registry: DeviceRegistry | None = None) -> None:
        self.classes = tuple(classes)
        if registry is None:
            registry = DeviceRegistry(subscriber_fields(self.classes))
        self.registry = registry
        self.transitions = ActivityTransitions(self.classes, smoothing, registry)
        self.days = DailyTotals(self.classes, daily, registry)

    def process(self, results: Sequence[ActivityResult]) -> SubscriberStep:
        by_device = group_by_device(results)
        closed, opened = self.days.update_grouped(by_device)
        today = {day.device_id: day for day in opened}
        before = self.transitions.suppressed
        changes, devices = self.transitions.update_grouped(by_device, today)
        return SubscriberStep(changes, devices, closed, self.transitions.suppressed - before)

    def device(self, device_id: str) -> DeviceStatus | None:
        """The device's current record, None for a device never seen."""
        return self.transitions.state(device_id, self.days.today(device_id))
