"""Bytes ⇄ records for every Kafka topic of har-stream, with strict validation of sensor input.

Sensor messages come from devices we do not control, so `decode_sensor` trusts nothing: any
problem raises `DecodeError` with a stable `reason` (a bounded label for metrics and the
dead-letter header) and a precise, log-safe `detail`. Decoding is per message and pure, so one
bad message never affects another. The format is documented in docs/WIRE_FORMAT.md and the
JSON Schemas in docs/schemas/; the codec accepts a subset of what the schemas allow.

Speed: a well-formed batch takes a fast path (`_fast_batch`) that parses with simdjson and copies
the samples straight into a float64 array, with no Python object per number; it only accepts,
and never rejects: anything it is not sure of goes to the exact path, which alone decides every
rejection and its reason. The exact path parses with orjson and checks samples with numpy; the
cases numpy would silently coerce (strings, booleans, null) are ruled out by cheap byte counts
over the raw message, and only when those are inconclusive does a per-element check run.
Both paths give bit-identical batches (both parsers round every number correctly).
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

try:  # optional: without it every message takes the exact path (same results, slower)
    import simdjson as _simdjson
except ImportError:  # pragma: no cover - the package is a declared dependency
    _simdjson = None  # type: ignore[assignment]

from har_stream.core.records import (
    RATE_HZ,
    SAMPLE_FIELDS,
    ActivityCounts,
    ActivityResult,
    SensorBatch,
)

REASONS = (
    "message_too_large", "bad_encoding", "not_json", "not_object", "missing_field",
    "unknown_field", "wrong_type", "non_finite", "bad_sample_width", "out_of_range",
    "empty_batch", "too_many_samples", "bad_device_id", "negative_seq", "bad_rate",
    "key_mismatch", "inconsistent_field",
)
"""Every `DecodeError.reason`: a closed set, safe as a Prometheus label value."""

HEADER_REASON = "har.error.reason"
HEADER_DETAIL = "har.error.detail"
HEADER_SOURCE_TOPIC = "har.source.topic"
HEADER_SOURCE_PARTITION = "har.source.partition"
HEADER_SOURCE_OFFSET = "har.source.offset"
"""Headers of a dead-letter record; its key and value are the original record's, untouched."""

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest seq / timestamp accepted: every JSON consumer can represent it exactly."""
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class Limits:
    """What a sensor message may contain; generous for real devices, tight for hostile input."""

    max_acc_g: float = 16.0
    max_gyro_rad_s: float = 35.0
    max_samples: int = 500
    max_message_bytes: int = 256 * 1024
    max_device_id_len: int = 128
    device_id_pattern: str = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
    rate_hz: float = RATE_HZ


class DecodeError(Exception):
    """A message that cannot become a record: `reason` is one of REASONS, `detail` says where.

    `detail` is single-line printable ASCII of bounded length whatever the input held, so it
    can go into logs and Kafka headers as is.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown decode reason {reason!r}")
        detail = _log_safe(detail)
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def dead_letter_headers(
    error: DecodeError, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers of the dead-letter copy of a rejected record (kafka-python's format)."""
    return [
        (HEADER_REASON, error.reason.encode()),
        (HEADER_DETAIL, error.detail.encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]


# ---------------------------------------------------------------------------------------------
# sensor messages

_BATCH_FIELDS = ("device_id", "seq", "t0_ms", "rate_hz", "samples")
_SINGLE_FIELDS = ("device_id", "seq", "t_ms", "rate_hz", "acc", "gyro")
_SINGLE_ONLY = frozenset(("t_ms", "acc", "gyro"))
_ALLOWED: dict[tuple[str, ...], frozenset[str]] = {
    fields: frozenset(fields) for fields in (_BATCH_FIELDS, _SINGLE_FIELDS)}
_REQUIRED = {fields: allowed - {"rate_hz"} for fields, allowed in _ALLOWED.items()}
_DEFAULT_LIMITS = Limits()
# No field name and no JSON number contains "u" or "f"; true and null contain "u", false "f".
_BOOL_NULL_LETTERS = (b"u", b"f")


def decode_sensor(
    value: bytes, key: bytes | None = None, limits: Limits = _DEFAULT_LIMITS, *,
    record_ts_ms: int = 0,
) -> SensorBatch:
    """Validate one `har.sensor` record and return its samples; raise DecodeError if invalid.

    Accepts the batch form (`t0_ms`, `samples`) and the one-sample form (`t_ms`, `acc`,
    `gyro`). `key` is the Kafka key: when present it must equal the device id.
    """
    if value is None:
        raise DecodeError("not_json", "message value is null (a tombstone)")
    if not isinstance(value, bytes):
        value = bytes(value)
    if len(value) > limits.max_message_bytes:
        raise DecodeError(
            "message_too_large",
            f"message has {len(value)} bytes, the limit is {limits.max_message_bytes}",
        )
    if _simdjson is not None:
        fast = _fast_batch(value, key, limits, record_ts_ms)
        if fast is not None:
            return fast
    message, parse_error = _load(value)
    batch = _sensor_from(message, key, limits, value if parse_error is None else None,
                         record_ts_ms)
    if parse_error is not None:
        raise parse_error
    return batch


# --- the fast path ---------------------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"
_BATCH_NAMES = (frozenset(_BATCH_FIELDS), frozenset(_BATCH_FIELDS) - {"rate_hz"})
_STRUCTURE = b"[],"
_STRUCTURE_CHARS = frozenset(_STRUCTURE.decode())
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in _STRUCTURE)
_parsers = threading.local()


def _fast_batch(value: bytes, key: bytes | None, limits: Limits, record_ts_ms: int
                ) -> SensorBatch | None:
    """The batch form decoded without a Python object per number, or None when in doubt.

    Returns only what the exact path would return, bit for bit; it never raises DecodeError,
    so every rejection and its reason come from the exact path. Why its checks suffice:
    simdjson validates the JSON (UTF-8, grammar, numbers; it accepts a byte order mark, so
    that is excluded first) and `as_buffer` copies only numbers and nested arrays, raising on
    anything else. The field names are then exact and every value outside `samples` is a
    scalar or a device id without brackets or commas, so the message's brackets and commas,
    less the commas between fields, are those of `samples` alone: comparing them with the
    layout of n rows of 6 proves the shape that the flattening copy does not show.
    """
    if value.startswith(_BOM):
        return None
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = _simdjson.Parser()
    try:
        document = parser.parse(value)
    except Exception:  # any parse problem: the exact path names it
        _parsers.parser = None  # never reuse a parser in an unknown state
        return None
    try:
        return _fast_fields(document, value, key, limits, record_ts_ms)
    except Exception:  # e.g. a string among the samples: the exact path decides
        return None
    finally:
        del document  # the parser may only parse again once no proxy of this document lives


def _fast_fields(document: Any, value: bytes, key: bytes | None, limits: Limits,
                 record_ts_ms: int) -> SensorBatch | None:
    if type(document) is not _simdjson.Object:
        return None
    names = frozenset(document.keys())
    if names not in _BATCH_NAMES or len(document) != len(names):
        return None  # other fields, or a name twice (parsers disagree on which one counts)
    device_id = document["device_id"]
    if (type(device_id) is not str or len(device_id) > limits.max_device_id_len
            or not _compiled(limits.device_id_pattern).fullmatch(device_id)
            or not _STRUCTURE_CHARS.isdisjoint(device_id)
            or (key is not None and key != device_id.encode())):
        return None
    seq, t0_ms = document["seq"], document["t0_ms"]
    if (type(seq) is not int or type(t0_ms) is not int or seq < 0
            or not 0 <= t0_ms <= MAX_SAFE_INTEGER):
        return None
    if "rate_hz" in document:
        rate = document["rate_hz"]
        if (type(rate) is not int and type(rate) is not float) or rate != limits.rate_hz:
            return None
    samples = document["samples"]
    if type(samples) is not _simdjson.Array:
        return None
    n = len(samples)
    if not 0 < n <= limits.max_samples or seq + n - 1 > MAX_SAFE_INTEGER:
        return None
    flat = np.frombuffer(samples.as_buffer(of_type="d"), np.float64)
    if len(flat) != 6 * n or value.translate(None, _NOT_STRUCTURE).strip(b",") != _layout(n):
        return None
    rows = flat.reshape(n, 6)
    magnitudes = np.abs(rows)
    # one reduction in the usual case; the per-column bounds only when some value is large
    if (not _largest(magnitudes, None) <= min(limits.max_acc_g, limits.max_gyro_rad_s)
            and not (magnitudes <= _bounds(limits.max_acc_g, limits.max_gyro_rad_s)).all()):
        return None
    return SensorBatch(device_id, seq, t0_ms, rows.astype(np.float32), record_ts_ms)


_largest = np.maximum.reduce  # ndarray.max without its Python-level wrapper


@functools.lru_cache(maxsize=1024)
def _layout(n: int) -> bytes:
    """Brackets and commas of a `samples` array of n rows of 6 numbers."""
    return b"[" + b",".join([b"[,,,,,]"] * n) + b"]"


# --- the exact path --------------------------------------------------------------------------


def _sensor_from(
    message: Any, key: bytes | None, limits: Limits, raw: bytes | None, record_ts_ms: int
) -> SensorBatch:
    """Validate a parsed message in a fixed order; `raw` None forces the exact sample checks."""
    if type(message) is not dict:
        raise DecodeError("not_object", f"top level is {_describe(message)}, expected an object")
    single = "samples" not in message and not _SINGLE_ONLY.isdisjoint(message)
    form, fields = ("one-sample", _SINGLE_FIELDS) if single else ("batch", _BATCH_FIELDS)
    _check_field_names(message, fields, form)
    device_id = _device_id(message["device_id"], key, limits)
    seq = _integer(message, "seq")
    if seq < 0:
        raise DecodeError("negative_seq", f"seq: {seq} is negative")
    time_field = "t_ms" if single else "t0_ms"
    t0_ms = _integer(message, time_field)
    if not 0 <= t0_ms <= MAX_SAFE_INTEGER:
        raise DecodeError("out_of_range", f"{time_field}: {t0_ms} is outside 0..{MAX_SAFE_INTEGER}")
    if "rate_hz" in message:
        _check_rate(message["rate_hz"], limits)
    samples = _one_sample(message) if single else _sample_rows(message, raw, device_id, limits)
    _check_sample_values(samples, limits, single)
    if seq + len(samples) - 1 > MAX_SAFE_INTEGER:
        raise DecodeError("out_of_range", f"seq: {seq} + {len(samples)} samples passes "
                                          f"{MAX_SAFE_INTEGER}")
    return SensorBatch(device_id, seq, t0_ms, samples.astype(np.float32), record_ts_ms)


def _check_field_names(message: dict, fields: tuple[str, ...], form: str) -> None:
    names = message.keys()
    if names <= _ALLOWED[fields] and names >= _REQUIRED[fields]:
        return  # the usual case, without building the diagnostics below
    unknown = [name for name in message if name not in fields]
    if unknown:
        raise DecodeError("unknown_field", f"unknown field {_show(unknown[0])}; the {form} form "
                                           f"has fields {', '.join(fields)}")
    for name in fields:
        if name not in message and name != "rate_hz":
            hint = "" if form == "one-sample" else " (or t_ms, acc and gyro for one sample)"
            raise DecodeError("missing_field", f"missing field {name!r}{hint}")


def _device_id(device_id: Any, key: bytes | None, limits: Limits) -> str:
    if type(device_id) is not str:
        raise _wrong_type("device_id", "a string", device_id)
    if len(device_id) > limits.max_device_id_len:
        raise DecodeError("bad_device_id", f"device_id: {len(device_id)} characters, the limit "
                                           f"is {limits.max_device_id_len}")
    if not _compiled(limits.device_id_pattern).fullmatch(device_id):
        raise DecodeError("bad_device_id", f"device_id: {_show(device_id)} does not match "
                                           f"{limits.device_id_pattern}")
    if key is not None and key != device_id.encode():
        shown = _show(bytes(key).decode("utf-8", "backslashreplace"))
        raise DecodeError("key_mismatch", f"record key {shown} differs from device_id "
                                          f"{_show(device_id)}")
    return device_id


def _check_rate(rate: Any, limits: Limits) -> None:
    if type(rate) is not int and type(rate) is not float:
        raise _wrong_type("rate_hz", "a number", rate)
    if not math.isfinite(rate):
        raise DecodeError("non_finite", f"rate_hz: {rate!r} is not a finite number")
    if rate != limits.rate_hz:
        raise DecodeError("bad_rate", f"rate_hz: {rate!r} Hz, every device must sample at "
                                      f"{limits.rate_hz:g} Hz")


def _sample_rows(message: dict, raw: bytes | None, device_id: str, limits: Limits) -> np.ndarray:
    """The `samples` field as a float64 (n, 6) array, without a Python loop when possible."""
    samples = message["samples"]
    if type(samples) is not list:
        raise _wrong_type("samples", "an array of samples", samples)
    n = len(samples)
    if n == 0:
        raise DecodeError("empty_batch", "samples: the array is empty")
    if n > limits.max_samples:
        raise DecodeError("too_many_samples", f"samples: {n} samples, the limit is "
                                              f"{limits.max_samples} per message")
    if raw is not None and _only_numbers_in_samples(raw, message, device_id):
        try:
            if set(map(len, samples)) == {6}:
                return np.fromiter(chain.from_iterable(samples), np.float64, n * 6).reshape(n, 6)
        except (TypeError, ValueError):
            pass  # a row or element that is not a number: the exact checks below name it
    return _checked_sample_rows(samples)


def _only_numbers_in_samples(raw: bytes, message: dict, device_id: str) -> bool:
    """True when the message provably holds no string, boolean or null beyond the expected.

    numpy would turn "1.5" into 1.5, true into 1.0 and null into nan, so these must be ruled
    out before it converts samples. The only strings of a valid message are its field names
    and the device id, which contain no quote; any other string adds quote characters. Field
    names and numbers contain no "u" or "f"; true and null add a "u", false an "f".
    """
    if raw.count(b'"') != 2 * len(message) + 2:
        return False
    if _BOOL_NULL_LETTERS[0] in raw or _BOOL_NULL_LETTERS[1] in raw:
        letters = raw.count(b"u") + raw.count(b"f")
        return letters == device_id.count("u") + device_id.count("f")
    return True


def _checked_sample_rows(samples: list) -> np.ndarray:
    """The exact, slow check of every sample, for messages the fast path cannot vouch for."""
    for i, row in enumerate(samples):
        if type(row) is not list:
            raise _wrong_type(f"samples[{i}]", "an array of 6 numbers", row)
        if len(row) != len(SAMPLE_FIELDS):
            raise DecodeError("bad_sample_width", f"samples[{i}]: {len(row)} values, expected 6 "
                                                  f"({', '.join(SAMPLE_FIELDS)})")
        for j, x in enumerate(row):
            _check_number(x, f"samples[{i}][{j}] ({SAMPLE_FIELDS[j]})")
    return np.array(samples, dtype=np.float64)


def _one_sample(message: dict) -> np.ndarray:
    row: list = []
    for name in ("acc", "gyro"):
        axes = message[name]
        if type(axes) is not list:
            raise _wrong_type(name, "an array of 3 numbers", axes)
        if len(axes) != 3:
            raise DecodeError("bad_sample_width",
                              f"{name}: {len(axes)} values, expected 3 (x, y, z)")
        for j, x in enumerate(axes):
            _check_number(x, f"{name}[{j}]")
        row.extend(axes)
    return np.array([row], dtype=np.float64)


def _check_number(x: Any, where: str) -> None:
    if type(x) is not float and type(x) is not int:
        raise _wrong_type(where, "a number", x)
    if type(x) is int and abs(x) > 2**64:
        raise DecodeError("out_of_range", f"{where}: {_show(x)} is far out of range")


def _check_sample_values(samples: np.ndarray, limits: Limits, single: bool) -> None:
    """Vectorised finiteness and range check; on failure, name the first offending value."""
    bounds = _bounds(limits.max_acc_g, limits.max_gyro_rad_s)
    within = np.abs(samples) <= bounds  # False for nan and inf too
    if within.all():
        return
    finite = np.isfinite(samples)
    reason = "out_of_range" if finite.all() else "non_finite"
    i, j = (np.argwhere(~finite) if reason == "non_finite" else np.argwhere(~within))[0]
    name = f"{('acc', 'gyro')[j // 3]}[{j % 3}]" if single else (
        f"samples[{i}][{j}] ({SAMPLE_FIELDS[j]})")
    x = float(samples[i, j])
    if reason == "non_finite":
        raise DecodeError(reason, f"{name}: {x!r} is not a finite number")
    unit = "g" if j < 3 else "rad/s"
    bound = float(bounds[j])
    raise DecodeError(reason, f"{name}: {x:.9g} {unit} is outside [{-bound:g}, {bound:g}] {unit}")


@functools.lru_cache(maxsize=16)
def _bounds(max_acc: float, max_gyro: float) -> np.ndarray:
    bounds = np.array([max_acc] * 3 + [max_gyro] * 3, dtype=np.float64)
    bounds.flags.writeable = False
    return bounds


@functools.lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def encode_sensor(batch: SensorBatch) -> bytes:
    """The batch-form message of `batch` (for the simulator and tests).

    float32 samples are written in their shortest exact form, so decoding gives back the same
    float32 values bit for bit.
    """
    samples = np.ascontiguousarray(batch.samples, dtype=np.float32)
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] != len(SAMPLE_FIELDS):
        raise ValueError(f"samples must have shape (n >= 1, 6), not {samples.shape}")
    message = {
        "device_id": batch.device_id, "seq": int(batch.seq), "t0_ms": int(batch.t0_ms),
        "rate_hz": int(RATE_HZ) if float(RATE_HZ).is_integer() else RATE_HZ, "samples": samples,
    }
    return orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)


# ---------------------------------------------------------------------------------------------
# results and counts (our own output: validated so that consumers can trust a decoded record)

_RESULT_FIELDS = ("device_id", "window_id", "seq", "t_start_ms", "t_end_ms", "activity",
                  "confidence", "probabilities", "model_version")
_COUNTS_FIELDS = ("device_id", "windows", "seconds", "since_ms", "updated_ms", "last_seq")


def encode_result(result: ActivityResult) -> bytes:
    """The `har.activity` value of one window's classification, probabilities at full precision."""
    probabilities = {str(name): _finite(p, f"probability of {name}")
                     for name, p in result.probabilities.items()}
    return orjson.dumps({
        "device_id": result.device_id, "window_id": result.window_id, "seq": int(result.seq),
        "t_start_ms": int(result.t_start_ms), "t_end_ms": int(result.t_end_ms),
        "activity": result.activity, "confidence": _finite(result.confidence, "confidence"),
        "probabilities": probabilities, "model_version": result.model_version,
    })


def decode_result(value: bytes) -> ActivityResult:
    """Parse and validate a `har.activity` value; raise DecodeError if it is not one."""
    message, parse_error = _load(value)
    result = _result_from(message)
    if parse_error is not None:
        raise parse_error
    return result


def _result_from(message: Any) -> ActivityResult:
    _check_object(message, _RESULT_FIELDS)
    result = ActivityResult(
        device_id=_string(message, "device_id"),
        seq=_integer(message, "seq", minimum=0),
        t_start_ms=_integer(message, "t_start_ms", minimum=0),
        t_end_ms=_integer(message, "t_end_ms", minimum=0),
        activity=_string(message, "activity"),
        confidence=_number(message["confidence"], "confidence", 0.0, 1.0),
        probabilities=_mapping(message, "probabilities",
                               lambda v, where: _number(v, where, 0.0, 1.0)),
        model_version=_string(message, "model_version"),
    )
    stated = _string(message, "window_id")
    if stated != result.window_id:
        raise DecodeError("inconsistent_field", f"window_id: {_show(stated)}, but device_id and "
                                                f"seq give {_show(result.window_id)}")
    return result


def encode_counts(counts: ActivityCounts) -> bytes:
    """The `har.activity-counts` value of a device's running tally."""
    return orjson.dumps({
        "device_id": counts.device_id,
        "windows": {str(name): int(n) for name, n in counts.windows.items()},
        "seconds": {str(name): _finite(s, f"seconds of {name}")
                    for name, s in counts.seconds.items()},
        "since_ms": int(counts.since_ms), "updated_ms": int(counts.updated_ms),
        "last_seq": int(counts.last_seq),
    })


def decode_counts(value: bytes) -> ActivityCounts:
    """Parse and validate a `har.activity-counts` value; raise DecodeError if it is not one."""
    message, parse_error = _load(value)
    _check_object(message, _COUNTS_FIELDS)
    counts = ActivityCounts(
        device_id=_string(message, "device_id"),
        windows=_mapping(message, "windows", lambda v, where: _whole(v, where, 0)),
        seconds=_mapping(message, "seconds", lambda v, where: _number(v, where, 0.0, math.inf)),
        since_ms=_integer(message, "since_ms", minimum=0),
        updated_ms=_integer(message, "updated_ms", minimum=0),
        last_seq=_integer(message, "last_seq", minimum=-1),
    )
    if parse_error is not None:
        raise parse_error
    return counts


def _check_object(message: Any, fields: tuple[str, ...]) -> None:
    if type(message) is not dict:
        raise DecodeError("not_object", f"top level is {_describe(message)}, expected an object")
    unknown = [name for name in message if name not in fields]
    if unknown:
        raise DecodeError("unknown_field", f"unknown field {_show(unknown[0])}")
    missing = [name for name in fields if name not in message]
    if missing:
        raise DecodeError("missing_field", f"missing field {missing[0]!r}")


def _finite(x: Any, what: str) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{what} is {x!r}; only finite numbers can be encoded")
    return x


# ---------------------------------------------------------------------------------------------
# typed field access shared by the decoders


def _integer(message: dict, name: str, minimum: int | None = None) -> int:
    return _whole(message[name], name, minimum)


def _whole(x: Any, where: str, minimum: int | None) -> int:
    if type(x) is not int:  # excludes bool, and 6400.0: a count must be written as an integer
        raise _wrong_type(where, "an integer", x)
    if minimum is not None and x < minimum:
        raise DecodeError("out_of_range", f"{where}: {x} is below {minimum}")
    return x


def _number(x: Any, where: str, low: float, high: float) -> float:
    if type(x) is not float and type(x) is not int:
        raise _wrong_type(where, "a number", x)
    if not math.isfinite(x):
        raise DecodeError("non_finite", f"{where}: {x!r} is not a finite number")
    if not low <= x <= high:
        raise DecodeError("out_of_range", f"{where}: {x!r} is outside {low:g}..{high:g}")
    return float(x)


def _string(message: dict, name: str) -> str:
    x = message[name]
    if type(x) is not str:
        raise _wrong_type(name, "a string", x)
    return x


def _mapping(message: dict, name: str, check: Callable[[Any, str], Any]) -> dict:
    x = message[name]
    if type(x) is not dict:
        raise _wrong_type(name, "an object", x)
    return {key: check(v, f"{name}[{_show(key)}]") for key, v in x.items()}


def _wrong_type(where: str, expected: str, x: Any) -> DecodeError:
    return DecodeError("wrong_type", f"{where}: expected {expected}, got {_describe(x)}")


# ---------------------------------------------------------------------------------------------
# parsing and log-safe messages


def _load(value: bytes) -> tuple[Any, DecodeError | None]:
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
                message = json.loads(text)
            except (ValueError, RecursionError):
                pass  # not only a non-finite number: report orjson's finding
            else:
                return message, DecodeError(
                    "non_finite", f"NaN, Infinity or a number too large for a double at {where}")
        raise DecodeError("not_json", f"{error.msg} at {where}") from None


def _describe(x: Any) -> str:
    """A value's JSON type and a short, safe rendering of it."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "boolean " + ("true" if x else "false")
    if isinstance(x, int):
        return f"integer {_show(x)}"
    if isinstance(x, float):
        return f"number {x!r}"
    if isinstance(x, str):
        return f"string {_show(x)}"
    if isinstance(x, list):
        return f"an array of length {len(x)}"
    if isinstance(x, dict):
        return f"an object with {len(x)} fields"
    return type(x).__name__


def _show(x: Any, limit: int = 40) -> str:
    """Quote a value from the input, cut to `limit` characters, every odd character escaped."""
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x) if abs(x) < 10**20 else f"<an integer of {x.bit_length()} bits>"
    text = str(x)
    shown = ascii(text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def _log_safe(text: str) -> str:
    """Single-line printable ASCII, at most MAX_DETAIL_CHARS long."""
    if not (text.isascii() and text.isprintable()):
        text = text[: 4 * MAX_DETAIL_CHARS].encode("unicode_escape").decode("ascii")
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 3] + "..."
    return text
