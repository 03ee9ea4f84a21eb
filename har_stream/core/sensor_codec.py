"""Sensor messages: bytes ⇄ `SensorBatch`, with strict validation of input we do not control.

`decode_sensor` trusts nothing: any problem raises `DecodeError` with a stable `reason` and a
precise, log-safe `detail` (`core.json_codec`). Decoding is per message and pure, so one bad
message never affects another. The format is documented in docs/WIRE_FORMAT.md and the JSON
Schemas in docs/schemas/; the codec accepts a subset of what the schemas allow. A rejected
record goes to the dead-letter topic with the headers `core.dead_letters` builds.

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
import math
import re
import threading
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

try:  # optional: without it every message takes the exact path (same results, slower)
    import simdjson as _simdjson
except ImportError:  # pragma: no cover - the package is a declared dependency
    _simdjson = None  # type: ignore[assignment]

from har_stream.core.json_codec import (
    MAX_SAFE_INTEGER,
    MAX_TIME_MS,
    DecodeError,
    describe,
    integer,
    load,
    show,
    wrong_type,
)
from har_stream.core.records import RATE_HZ, SAMPLE_FIELDS, SensorBatch


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
    value: bytes | None, key: bytes | None = None, limits: Limits = _DEFAULT_LIMITS, *,
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
    message, parse_error = load(value)
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
            or not 0 <= t0_ms <= MAX_TIME_MS):
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
        raise DecodeError("not_object", f"top level is {describe(message)}, expected an object")
    single = "samples" not in message and not _SINGLE_ONLY.isdisjoint(message)
    form, fields = ("one-sample", _SINGLE_FIELDS) if single else ("batch", _BATCH_FIELDS)
    _check_field_names(message, fields, form)
    device_id = _device_id(message["device_id"], key, limits)
    seq = integer(message, "seq")
    if seq < 0:
        raise DecodeError("negative_seq", f"seq: {seq} is negative")
    time_field = "t_ms" if single else "t0_ms"
    t0_ms = integer(message, time_field)
    if not 0 <= t0_ms <= MAX_TIME_MS:
        raise DecodeError("out_of_range", f"{time_field}: {t0_ms} is outside 0..{MAX_TIME_MS}")
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
        raise DecodeError("unknown_field", f"unknown field {show(unknown[0])}; the {form} form "
                                           f"has fields {', '.join(fields)}")
    for name in fields:
        if name not in message and name != "rate_hz":
            hint = "" if form == "one-sample" else " (or t_ms, acc and gyro for one sample)"
            raise DecodeError("missing_field", f"missing field {name!r}{hint}")


def _device_id(device_id: Any, key: bytes | None, limits: Limits) -> str:
    if type(device_id) is not str:
        raise wrong_type("device_id", "a string", device_id)
    if len(device_id) > limits.max_device_id_len:
        raise DecodeError("bad_device_id", f"device_id: {len(device_id)} characters, the limit "
                                           f"is {limits.max_device_id_len}")
    if not _compiled(limits.device_id_pattern).fullmatch(device_id):
        raise DecodeError("bad_device_id", f"device_id: {show(device_id)} does not match "
                                           f"{limits.device_id_pattern}")
    if key is not None and key != device_id.encode():
        shown = show(bytes(key).decode("utf-8", "backslashreplace"))
        raise DecodeError("key_mismatch", f"record key {shown} differs from device_id "
                                          f"{show(device_id)}")
    return device_id


def _check_rate(rate: Any, limits: Limits) -> None:
    if type(rate) is not int and type(rate) is not float:
        raise wrong_type("rate_hz", "a number", rate)
    if not math.isfinite(rate):
        raise DecodeError("non_finite", f"rate_hz: {rate!r} is not a finite number")
    if rate != limits.rate_hz:
        raise DecodeError("bad_rate", f"rate_hz: {rate!r} Hz, every device must sample at "
                                      f"{limits.rate_hz:g} Hz")


def _sample_rows(message: dict, raw: bytes | None, device_id: str, limits: Limits) -> np.ndarray:
    """The `samples` field as a float64 (n, 6) array, without a Python loop when possible."""
    samples = message["samples"]
    if type(samples) is not list:
        raise wrong_type("samples", "an array of samples", samples)
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
            raise wrong_type(f"samples[{i}]", "an array of 6 numbers", row)
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
            raise wrong_type(name, "an array of 3 numbers", axes)
        if len(axes) != 3:
            raise DecodeError("bad_sample_width",
                              f"{name}: {len(axes)} values, expected 3 (x, y, z)")
        for j, x in enumerate(axes):
            _check_number(x, f"{name}[{j}]")
        row.extend(axes)
    return np.array([row], dtype=np.float64)


def _check_number(x: Any, where: str) -> None:
    if type(x) is not float and type(x) is not int:
        raise wrong_type(where, "a number", x)
    if type(x) is int and abs(x) > 2**64:
        raise DecodeError("out_of_range", f"{where}: {show(x)} is far out of range")


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


