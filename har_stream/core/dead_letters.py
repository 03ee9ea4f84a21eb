"""The headers of a dead-letter record: why it was refused and where it came from.

Part of the wire format (docs/WIRE_FORMAT.md, "Dead letters"); one builder for rejected
sensor records and output the broker refused for good alike.
"""

from __future__ import annotations

HEADER_REASON = "har.error.reason"
HEADER_DETAIL = "har.error.detail"
HEADER_SOURCE_TOPIC = "har.source.topic"
HEADER_SOURCE_PARTITION = "har.source.partition"
HEADER_SOURCE_OFFSET = "har.source.offset"
"""Headers of a dead-letter record; its key and value are the original record's, untouched."""


def dead_letter_headers(reason: str, detail: str, topic: str, partition: int | None = None,
                        offset: int | None = None) -> list[tuple[str, bytes]]:
    """The headers saying why a record went to the dead-letter topic and where it came from:
    the one builder of them (rejected input and undeliverable output alike)."""
    headers = [(HEADER_REASON, reason.encode()), (HEADER_DETAIL, detail.encode()),
               (HEADER_SOURCE_TOPIC, topic.encode())]
    if partition is not None:
        headers.append((HEADER_SOURCE_PARTITION, str(partition).encode()))
    if offset is not None:
        headers.append((HEADER_SOURCE_OFFSET, str(offset).encode()))
    return headers
