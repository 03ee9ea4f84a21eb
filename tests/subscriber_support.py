"""The subscriber records (activity changes, device records, closed days) reduced to what
must not depend on crashes or polls, offline and as the service published them: the service
tests compare the two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from har_stream.core.records import SensorBatch


@dataclass
class SubscriberView:
    """Subscriber records reduced to what must not depend on crashes or polls: changes by
    confirming window, each device's latest record, closed days by (device, day)."""

    changes: dict[str, tuple]  # window id -> previous, activity, started, confirmed, windows
    devices: dict[str, tuple]  # device -> activity, since, last window id, today's windows
    days: dict[tuple[str, str], dict[str, int]]  # (device, day) -> windows per activity


def _change_row(change: Any) -> tuple:
    return (change.previous, change.activity, change.started_ms, change.confirmed_ms,
            change.windows)


def _device_row(device: Any) -> tuple:
    return (device.activity, device.since_ms, device.last_window_id,
            None if device.today is None else (device.today.day, device.today.windows))


def offline_subscriber_view(model: object, streams: dict[str, np.ndarray],
                            t0_ms: int = 1_700_000_000_000) -> SubscriberView:
    """The subscriber records of each whole stream through one offline `Recognizer` with the
    service's default smoothing and days (one message per device)."""
    from har_stream.core.recognizer import Recognizer
    from har_stream.core.subscriber_outputs import SubscriberSettings

    recognizer = Recognizer(model, subscribers=SubscriberSettings())  # type: ignore[arg-type]
    view = SubscriberView({}, {}, {})
    for device_id, samples in streams.items():
        step = recognizer.process([SensorBatch(device_id, 0, t0_ms, samples)]).subscribers
        assert step is not None
        view.changes |= {c.window_id: _change_row(c) for c in step.changes}
        view.days |= {(d.device_id, d.day): d.windows for d in step.closed_days}
        assert recognizer.subscribers is not None
        device = recognizer.subscribers.device(device_id)
        assert device is not None
        view.devices[device_id] = _device_row(device)
    return view


def published_subscriber_view(changes: list, devices: list, days: list) -> SubscriberView:
    """The same view of what the service published, after the de-duplication subscribers do
    (docs/CLIENT.md): one change per window id, the device record of the latest window."""
    from har_stream.core.outputs_codec import decode_change, decode_day, decode_device

    view = SubscriberView({}, {}, {})
    for record in changes:
        change = decode_change(record.value)
        row = _change_row(change)
        assert view.changes.setdefault(change.window_id, row) == row, "copies differ"
    latest: dict[str, Any] = {}
    for record in devices:
        device = decode_device(record.value)
        if device.device_id not in latest or device.updated_ms >= latest[
                device.device_id].updated_ms:
            latest[device.device_id] = device
    view.devices = {d: _device_row(device) for d, device in latest.items()}
    for record in days:
        day = decode_day(record.value)
        assert day.closed
        key = (day.device_id, day.day)
        assert view.days.setdefault(key, day.windows) == day.windows, "copies differ"
    return view
