"""Strict JSON for the wire format: parsing, typed fields, and errors that name the field.

Shared by the sensor codec and the results codec. Every problem is a `DecodeError` with a
stable `reason` (a bounded label for metrics and the dead-letter header) and a log-safe
`detail` that says which field is wrong and how, without echoing hostile input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson

from har_stream.core.logsafe import escape

REASONS = (
    "message_too_large", "bad_encoding", "not_json", "not_object", "missing_field",
    "unknown_field", "wrong_type", "non_finite", "bad_sample_width", "out_of_range",
    "empty_batch", "too_many_samples", "bad_device_id", "negative_seq", "bad_rate",
    "key_mismatch", "inconsistent_field",
)
"""Every `DecodeError.reason`: a closed set, safe as a Prometheus label value."""

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest seq accepted and largest integer written: every JSON consumer represents it exactly."""
MAX_TIME_MS = 253_402_300_799_999
"""Latest sensor time accepted (9999-12-31T23:59:59.999Z, the end of ISO 8601 and of most
date types): a stream's window times (its first time + 20 ms per sample) then stay below
MAX_SAFE_INTEGER for ~278,000 years of samples (docs/WIRE_FORMAT.md, "Time")."""
MAX_DETAIL_CHARS = 300


class DecodeError(Exception):
    """A message that cannot become a record: `reason` is one of REASONS, `detail` says where.

    `detail` is single-line printable ASCII of bounded length whatever the input held, so it
    can go into logs and Kafka headers as is.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown decode reason {reason!r}")
        detail = escape(detail, MAX_DETAIL_CHARS)
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


# --- typed field access shared by the decoders -----------------------------------------------


def integer(message: dict, name: str, minimum: int | None = None) -> int:
    return whole(message[name], name, minimum)


def whole(x: Any, where: str, minimum: int | None) -> int:
    """An integer that every JSON consumer reads exactly (at most MAX_SAFE_INTEGER)."""
    if type(x) is float and not math.isfinite(x):
        raise DecodeError("non_finite", f"{where}: {x!r} is not a finite number")
    if (type(x) is float or type(x) is int) and abs(x) > MAX_SAFE_INTEGER:
        # an integer of 2^64 or more arrives from orjson as a double: out of range, not a
        # float where an integer belongs (docs/WIRE_FORMAT.md)
        raise DecodeError("out_of_range", f"{where}: {show(x) if type(x) is int else f'{x:g}'}"
                                          f" is beyond +-{MAX_SAFE_INTEGER}")
    if type(x) is not int:  # excludes bool, and 6400.0: a count must be written as an integer
        raise wrong_type(where, "an integer", x)
    if minimum is not None and x < minimum:
        raise DecodeError("out_of_range", f"{where}: {x} is below {minimum}")
    if x > MAX_SAFE_INTEGER:
        raise DecodeError("out_of_range", f"{where}: {show(x)} is above {MAX_SAFE_INTEGER}")
    return x


def number(x: Any, where: str, low: float, high: float) -> float:
    if type(x) is not float and type(x) is not int:
        raise wrong_type(where, "a number", x)
    if not math.isfinite(x):
        raise DecodeError("non_finite", f"{where}: {x!r} is not a finite number")
    if not low <= x <= high:
        raise DecodeError("out_of_range", f"{where}: {x!r} is outside {low:g}..{high:g}")
    return float(x)


def string(message: dict, name: str) -> str:
    x = message[name]
    if type(x) is not str:
        raise wrong_type(name, "a string", x)
    return x


def mapping(message: dict, name: str, check: Callable[[Any, str], Any]) -> dict:
    x = message[name]
    if type(x) is not dict:
        raise wrong_type(name, "an object", x)
    return {key: check(v, f"{name}[{show(key)}]") for key, v in x.items()}


def wrong_type(where: str, expected: str, x: Any) -> DecodeError:
    return DecodeError("wrong_type", f"{where}: expected {expected}, got {describe(x)}")


# ---------------------------------------------------------------------------------------------
# parsing and log-safe messages


def load(value: bytes) -> tuple[Any, DecodeError | None]:
    """Parse JSON with orjson; map its failures to reasons.

    orjson rejects NaN, Infinity and numbers that overflow a double, without saying where.
    For those, the lenient standard parser reads the message again so that validation can
    name the offending field; the returned error is raised if validation finds nothing else.
    """
    try:
        return orjson.loads(value), None
    except orjson.JSONDecodeError as error:
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise DecodeError("bad_encoding", f"invalid UTF-8 at byte {bad.start}: "
                                              f"{bad.reason}") from None
        where = f"line {error.lineno} column {error.colno}"
        if text.startswith("\ufeff"):
            raise DecodeError("bad_encoding", "message starts with a byte order mark") from None
        if "surrogate" in error.msg:
            raise DecodeError("bad_encoding", f"unpaired surrogate escape at {where}") from None
        token = error.doc[max(error.pos - 1, 0):error.pos + 9]
        if "infinity" in error.msg or "NaN" in token or "Infinity" in token:
            try:
                message = json.loads(text, parse_int=_parse_int)
            except (ValueError, RecursionError):
                pass  # not only a non-finite number: report orjson's finding
            else:
                return message, DecodeError(
                    "non_finite", f"NaN, Infinity or a number too large for a double at {where}")
        raise DecodeError("not_json", f"{error.msg} at {where}") from None


_INT_DIGITS = 4000
"""Longest integer literal converted exactly (Python refuses more than 4300 digits)."""


def _parse_int(literal: str) -> int:
    """An integer literal as an int; beyond `_INT_DIGITS` digits one of the same length (its
    value is out of every range anyway), so a 5,000-digit number is `out_of_range` like a
    400-digit one instead of unreadable JSON."""
    digits = literal.lstrip("-")
    if len(digits) <= _INT_DIGITS:
        return int(literal)
    return (-1 if literal.startswith("-") else 1) * 10 ** (len(digits) - 1)


def describe(x: Any) -> str:
    """A value's JSON type and a short, safe rendering of it."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean " + ("true" if x else "false")
    if isinstance(x, int):
        return f"integer {show(x)}"
    if isinstance(x, float):
        return f"number {x!r}"
    if isinstance(x, str):
        return f"string {show(x)}"
    if isinstance(x, list):
        return f"an array of length {len(x)}"
    if isinstance(x, dict):
        return f"an object with {len(x)} fields"
    return type(x).__name__


def show(x: Any, limit: int = 40) -> str:
    """Quote a value from the input, cut to `limit` characters, every odd character escaped."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if abs(x) < 10**20 else f"<an integer of {x.bit_length()} bits>"
    text = str(x)
    shown = ascii(text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def check_object(message: Any, fields: tuple[str, ...], where: str = "top level") -> None:
    """`message` is an object with exactly `fields` (`where` names it in the detail)."""
    if type(message) is not dict:
        raise DecodeError("not_object", f"{where} is {describe(message)}, expected an object")
    unknown = [name for name in message if name not in fields]
    if unknown:
        raise DecodeError("unknown_field", f"unknown field {show(unknown[0])}")
    missing = [name for name in fields if name not in message]
    if missing:
        raise DecodeError("missing_field", f"missing field {missing[0]!r}")


def finite(x: Any, what: str) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{what} is {x!r}; only finite numbers can be encoded")
    return x
