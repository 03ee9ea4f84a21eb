"""Bytes ⇄ records for the subscriber topics: activity changes, devices, daily totals.

Our own output, validated on decode like results and counts (`core.codec`), so a subscriber
can trust a decoded record: every problem raises `codec.DecodeError` with a reason from
`codec.REASONS`. The formats are documented in docs/WIRE_FORMAT.md and the JSON Schemas
`activity-change`, `device`, `daily-totals` in docs/schemas/.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from har_stream.core.json_codec import DecodeError, check_object, finite, mapping, wrong_type
from har_stream.core.records import window_id
from har_stream.core.subscriber_records import ActivityChange, DayTotals, DeviceStatus

_CHANGE_FIELDS = ("device_id", "window_id", "epoch", "seq", "previous", "activity", "started_ms",
                  "confirmed_ms", "confidence", "windows")
_DAY_FIELDS = ("device_id", "day", "day_start_ms", "utc_offset_minutes", "windows", "seconds",
               "first_ms", "last_ms", "last_epoch", "last_seq", "closed")
_DEVICE_FIELDS = ("device_id", "activity", "since_ms", "confidence", "last_activity",
                  "last_confidence", "last_window_id", "last_epoch", "last_seq", "updated_ms",
                  "today")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def encode_change(change: ActivityChange) -> bytes:
    """The `har.activity-changes` value of one change."""
    return orjson.dumps({
        "device_id": change.device_id, "window_id": change.window_id,
        "epoch": int(change.epoch), "seq": int(change.seq),
        "previous": change.previous, "activity": change.activity,
        "started_ms": int(change.started_ms), "confirmed_ms": int(change.confirmed_ms),
        "confidence": finite(change.confidence, "confidence"), "windows": int(change.windows),
    })


def decode_change(value: bytes) -> ActivityChange:
    """Parse and validate a `har.activity-changes` value; raise DecodeError if it is not one."""
    message = _object(value, _CHANGE_FIELDS)
    change = ActivityChange(
        device_id=_string(message, "device_id"),
        previous=_string(message, "previous", nullable=True),
        activity=_string(message, "activity"),
        started_ms=_integer(message, "started_ms", 0),
        confirmed_ms=_integer(message, "confirmed_ms", 0),
        confidence=_number(message, "confidence", 0.0, 1.0),
        seq=_integer(message, "seq", 0),
        windows=_integer(message, "windows", 1),
        epoch=_integer(message, "epoch", 0),
    )
    _check_window_id(message, "window_id", change.device_id, change.seq, change.epoch)
    return change


def encode_day(day: DayTotals) -> bytes:
    """The `har.daily-totals` value of one device's day (also the device record's `today`)."""
    return orjson.dumps(_day_dict(day))


def decode_day(value: bytes) -> DayTotals:
    """Parse and validate a `har.daily-totals` value; raise DecodeError if it is not one."""
    return _day_from(_object(value, _DAY_FIELDS))


def encode_device(device: DeviceStatus) -> bytes:
    """The `har.devices` value of a device's current status."""
    return orjson.dumps({
        "device_id": device.device_id, "activity": device.activity,
        "since_ms": None if device.since_ms is None else int(device.since_ms),
        "confidence": finite(device.confidence, "confidence"),
        "last_activity": device.last_activity,
        "last_confidence": finite(device.last_confidence, "last_confidence"),
        "last_window_id": device.last_window_id, "last_epoch": int(device.last_epoch),
        "last_seq": int(device.last_seq),
        "updated_ms": int(device.updated_ms),
        "today": None if device.today is None else _day_dict(device.today),
    })


def decode_device(value: bytes) -> DeviceStatus:
    """Parse and validate a `har.devices` value; raise DecodeError if it is not one."""
    message = _object(value, _DEVICE_FIELDS)
    today = message["today"]
    if today is not None:
        check_object(today, _DAY_FIELDS, "today")
    device = DeviceStatus(
        device_id=_string(message, "device_id"),
        activity=_string(message, "activity", nullable=True),
        since_ms=_integer(message, "since_ms", 0, nullable=True),
        confidence=_number(message, "confidence", 0.0, 1.0),
        last_activity=_string(message, "last_activity"),
        last_confidence=_number(message, "last_confidence", 0.0, 1.0),
        last_seq=_integer(message, "last_seq", 0),
        updated_ms=_integer(message, "updated_ms", 0),
        today=None if today is None else _day_from(today),
        last_epoch=_integer(message, "last_epoch", 0),
    )
    if (device.activity is None) != (device.since_ms is None):
        raise DecodeError("inconsistent_field", "activity and since_ms must both be null or "
                                                "both be set")
    if device.today is not None and device.today.device_id != device.device_id:
        raise DecodeError("inconsistent_field", "today.device_id differs from device_id")
    _check_window_id(message, "last_window_id", device.device_id, device.last_seq,
                     device.last_epoch)
    return device


def _day_dict(day: DayTotals) -> dict[str, Any]:
    return {
        "device_id": day.device_id, "day": day.day, "day_start_ms": int(day.day_start_ms),
        "utc_offset_minutes": int(day.utc_offset_minutes),
        "windows": {str(name): int(n) for name, n in day.windows.items()},
        "seconds": {str(name): finite(s, f"seconds of {name}") for name, s in day.seconds.items()},
        "first_ms": int(day.first_ms), "last_ms": int(day.last_ms),
        "last_epoch": int(day.last_epoch), "last_seq": int(day.last_seq),
        "closed": bool(day.closed),
    }


def _day_from(message: dict) -> DayTotals:
    """A day's totals; its seconds must be its windows x 1.28 s (they are derived)."""
    label = _string(message, "day")
    if not _DAY.fullmatch(label):
        raise DecodeError("wrong_type", f"day: {label[:40]!a} is not a date YYYY-MM-DD")
    closed = message["closed"]
    if type(closed) is not bool:
        raise DecodeError("wrong_type", f"closed: expected a boolean, got {type(closed).__name__}")
    day = DayTotals(
        device_id=_string(message, "device_id"), day=label,
        day_start_ms=_integer(message, "day_start_ms", None),
        utc_offset_minutes=_integer(message, "utc_offset_minutes", -1439, 1439),
        windows=mapping(message, "windows", lambda v, w: _whole(v, w, 0, None)),
        first_ms=_integer(message, "first_ms", 0), last_ms=_integer(message, "last_ms", 0),
        last_seq=_integer(message, "last_seq", 0), closed=closed,
        last_epoch=_integer(message, "last_epoch", 0),
    )
    seconds = mapping(message, "seconds", lambda v, w: _real(v, w, 0.0, math.inf))
    if seconds != day.seconds:
        raise DecodeError("inconsistent_field", "seconds: not the windows x 1.28 s of each "
                                                "activity")
    return day


# ---------------------------------------------------------------------------------------------
# parsing and typed field access


def _object(value: bytes, fields: tuple[str, ...]) -> dict:
    if value is None:
        raise DecodeError("not_json", "message value is null (a tombstone)")
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise DecodeError("not_json", f"{error.msg} at line {error.lineno} column "
                                      f"{error.colno}") from None
    check_object(message, fields)
    return message


def _check_window_id(message: dict, name: str, device_id: str, seq: int, epoch: int) -> None:
    stated, wanted = _string(message, name), window_id(device_id, seq, epoch)
    if stated != wanted:
        raise DecodeError("inconsistent_field", f"{name}: {stated[:40]!a}, but device_id, "
                                                f"epoch and seq give {wanted!a}")


def _string(message: dict, name: str, nullable: bool = False) -> Any:
    x = message[name]
    if nullable and x is None:
        return None
    if type(x) is not str:
        raise wrong_type(name, "a string", x)
    return x


def _integer(message: dict, name: str, minimum: int | None, maximum: int | None = None,
             nullable: bool = False) -> Any:
    x = message[name]
    if nullable and x is None:
        return None
    return _whole(x, name, minimum, maximum)


def _whole(x: Any, where: str, minimum: int | None, maximum: int | None) -> int:
    if type(x) is not int:
        raise wrong_type(where, "an integer", x)
    if (minimum is not None and x < minimum) or (maximum is not None and x > maximum):
        raise DecodeError("out_of_range", f"{where}: {x} is outside {minimum}..{maximum}")
    return x


def _number(message: dict, name: str, low: float, high: float) -> float:
    return _real(message[name], name, low, high)


def _real(x: Any, where: str, low: float, high: float) -> float:
    if type(x) is not float and type(x) is not int:
        raise wrong_type(where, "a number", x)
    if not low <= x <= high:
        raise DecodeError("out_of_range", f"{where}: {x!r} is outside {low:g}..{high:g}")
    return float(x)
