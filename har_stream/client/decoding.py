"""Which decoder reads which topic, and what makes two records the same record.

Delivery is at least once (a restarted or rebalanced recognizer publishes some records
again, identical), so every record kind has an identity for de-duplication:
results and changes their window id, counts and device records the device's latest window,
days the device and the date (closed or open).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from har_stream.core.codec import decode_counts, decode_result
from har_stream.core.outputs_codec import decode_change, decode_day, decode_device
from har_stream.core.records import ActivityCounts, ActivityResult
from har_stream.core.subscriber_records import ActivityChange, DayTotals, DeviceStatus

Record = ActivityResult | ActivityCounts | ActivityChange | DeviceStatus | DayTotals

KINDS: dict[str, Callable[[bytes], Any]] = {
    "results": decode_result,
    "counts": decode_counts,
    "changes": decode_change,
    "devices": decode_device,
    "daily": decode_day,
}
"""Record kinds and their decoders."""

DEFAULT_TOPICS = {
    "har.activity": "results",
    "har.activity-counts": "counts",
    "har.activity-changes": "changes",
    "har.devices": "devices",
    "har.daily-totals": "daily",
}
"""The recognizer's default topic names and the kind of record each carries."""

__all__ = ["DEFAULT_TOPICS", "KINDS", "Record", "decode", "decode_change", "decode_counts",
           "decode_day", "decode_device", "decode_result", "record_identity"]


def decode(kind: str, value: bytes) -> Record:
    """The typed record of a value of the given kind; raises DecodeError if it is not one."""
    try:
        decoder = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}; kinds are {', '.join(KINDS)}") from None
    record: Record = decoder(value)
    return record


def record_identity(record: Record) -> tuple[str, ...]:
    """A key equal for two deliveries of the same record, different for different records."""
    if isinstance(record, ActivityResult):
        return ("results", record.window_id)
    if isinstance(record, ActivityChange):
        return ("changes", record.window_id)
    if isinstance(record, ActivityCounts):
        return ("counts", record.device_id, str(record.last_epoch), str(record.last_seq))
    if isinstance(record, DeviceStatus):
        return ("devices", record.last_window_id)
    return ("daily", record.device_id, record.day, str(record.last_epoch), str(record.last_seq),
            str(record.closed))
