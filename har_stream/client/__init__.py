"""The subscriber client: typed records of every har-stream output topic, de-duplicated.

    from har_stream.client import subscribe, ActivityChange

    for record in subscribe("kafka:9092", topics=["har.activity-changes", "har.devices"],
                            group="my-app"):
        if isinstance(record, ActivityChange):
            print(record.device_id, record.previous, "->", record.activity)

Imports only `har_stream.core` and kafka-python (no TensorFlow, no service): an app installs
har-stream and uses this package alone. docs/CLIENT.md has the full guide.
"""

from __future__ import annotations

from har_stream.client.decoding import (
    DEFAULT_TOPICS,
    KINDS,
    Record,
    decode,
    decode_change,
    decode_counts,
    decode_day,
    decode_device,
    decode_result,
    record_identity,
)
from har_stream.client.dedup import Deduplicator
from har_stream.client.subscription import Subscription, subscribe
from har_stream.core.codec import DecodeError
from har_stream.core.records import ActivityCounts, ActivityResult
from har_stream.core.subscriber_records import (
    ENTER,
    EXIT,
    ActivityChange,
    DayTotals,
    DeviceStatus,
)

__all__ = [
    "DEFAULT_TOPICS", "ENTER", "EXIT", "KINDS", "ActivityChange", "ActivityCounts",
    "ActivityResult", "DayTotals", "DecodeError", "Deduplicator", "DeviceStatus", "Record",
    "Subscription", "decode", "decode_change", "decode_counts", "decode_day", "decode_device",
    "decode_result", "record_identity", "subscribe",
]
