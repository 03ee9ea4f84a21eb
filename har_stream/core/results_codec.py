"""Results and counts: `ActivityResult` / `ActivityCounts` ⇄ bytes, for `har.activity` and
`har.activity-counts`. Encoding is what the service writes; decoding is strict (what a
subscriber or a test reads back must validate against docs/schemas/).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from har_stream.core.json_codec import (
    DecodeError,
    check_object,
    finite,
    integer,
    load,
    mapping,
    number,
    show,
    string,
    whole,
)
from har_stream.core.records import ActivityCounts, ActivityResult

# Our own output, validated when decoded so that consumers can trust a decoded record.

_RESULT_FIELDS = ("device_id", "window_id", "epoch", "seq", "t_start_ms", "t_end_ms",
                  "activity",
                  "confidence", "probabilities", "model_version")
_COUNTS_FIELDS = ("device_id", "windows", "seconds", "since_ms", "updated_ms", "last_epoch",
                  "last_seq")


def encode_result(result: ActivityResult) -> bytes:
    """The `har.activity` value of one window's classification, probabilities at full precision."""
    probabilities = {str(name): finite(p, f"probability of {name}")
                     for name, p in result.probabilities.items()}
    return orjson.dumps({
        "device_id": result.device_id, "window_id": result.window_id,
        "epoch": int(result.epoch), "seq": int(result.seq),
        "t_start_ms": int(result.t_start_ms), "t_end_ms": int(result.t_end_ms),
        "activity": result.activity, "confidence": finite(result.confidence, "confidence"),
        "probabilities": probabilities, "model_version": result.model_version,
    })


def decode_result(value: bytes) -> ActivityResult:
    """Parse and validate a `har.activity` value; raise DecodeError if it is not one."""
    message, parse_error = load(value)
    result = _result_from(message)
    if parse_error is not None:
        raise parse_error
    return result


def _result_from(message: Any) -> ActivityResult:
    check_object(message, _RESULT_FIELDS)
    result = ActivityResult(
        device_id=string(message, "device_id"),
        seq=integer(message, "seq", minimum=0),
        t_start_ms=integer(message, "t_start_ms", minimum=0),
        t_end_ms=integer(message, "t_end_ms", minimum=0),
        activity=string(message, "activity"),
        confidence=number(message["confidence"], "confidence", 0.0, 1.0),
        probabilities=mapping(message, "probabilities",
                               lambda v, where: number(v, where, 0.0, 1.0)),
        model_version=string(message, "model_version"),
        epoch=integer(message, "epoch", minimum=0),
    )
    stated = string(message, "window_id")
    if stated != result.window_id:
        raise DecodeError("inconsistent_field", f"window_id: {show(stated)}, but device_id, "
                                                f"epoch and seq give {show(result.window_id)}")
    return result


def encode_counts(counts: ActivityCounts) -> bytes:
    """The `har.activity-counts` value of a device's running tally."""
    return orjson.dumps({
        "device_id": counts.device_id,
        "windows": {str(name): int(n) for name, n in counts.windows.items()},
        "seconds": {str(name): finite(s, f"seconds of {name}")
                    for name, s in counts.seconds.items()},
        "since_ms": int(counts.since_ms), "updated_ms": int(counts.updated_ms),
        "last_epoch": int(counts.last_epoch), "last_seq": int(counts.last_seq),
    })


def decode_counts(value: bytes) -> ActivityCounts:
    """Parse and validate a `har.activity-counts` value; raise DecodeError if it is not one."""
    message, parse_error = load(value)
    check_object(message, _COUNTS_FIELDS)
    counts = ActivityCounts(
        device_id=string(message, "device_id"),
        windows=mapping(message, "windows", lambda v, where: whole(v, where, 0)),
        seconds=mapping(message, "seconds", lambda v, where: number(v, where, 0.0, math.inf)),
        since_ms=integer(message, "since_ms", minimum=0),
        updated_ms=integer(message, "updated_ms", minimum=0),
        last_seq=integer(message, "last_seq", minimum=-1),
        last_epoch=integer(message, "last_epoch", minimum=0),
    )
    if parse_error is not None:
        raise parse_error
    return counts


