"""The wire format in one import: `from har_stream.core import codec`.

Each part is defined in a module of its own: strict JSON and `DecodeError` in `json_codec`,
sensor messages in `sensor_codec`, dead-letter headers in `dead_letters`, results and counts in
`results_codec`, the subscriber records in `outputs_codec`.
"""

from __future__ import annotations

from har_stream.core.dead_letters import (
    HEADER_DETAIL,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    dead_letter_headers,
)
from har_stream.core.json_codec import (
    MAX_DETAIL_CHARS,
    MAX_SAFE_INTEGER,
    MAX_TIME_MS,
    REASONS,
    DecodeError,
)
from har_stream.core.results_codec import decode_counts, decode_result, encode_counts, encode_result
from har_stream.core.sensor_codec import Limits, decode_sensor, encode_sensor

__all__ = [
    "HEADER_DETAIL", "HEADER_REASON", "HEADER_SOURCE_OFFSET", "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC", "MAX_DETAIL_CHARS", "MAX_SAFE_INTEGER", "MAX_TIME_MS", "REASONS",
    "DecodeError", "Limits", "dead_letter_headers", "decode_counts", "decode_result",
    "decode_sensor", "encode_counts", "encode_result", "encode_sensor",
]
