"""Subscriber records: the codec round-trips them and its output validates against the schemas."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from har_stream.core.codec import DecodeError
from har_stream.core.outputs_codec import (
    decode_change,
    decode_day,
    decode_device,
    encode_change,
    encode_day,
    encode_device,
)
from har_stream.core.subscriber_records import ActivityChange, DayTotals, DeviceStatus

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
DECODERS = {"activity-change": decode_change, "daily-totals": decode_day,
            "device": decode_device}
ENCODERS = {"activity-change": encode_change, "daily-totals": encode_day,
            "device": encode_device}
CLASSES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING",
           "TRANSITION")


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))


@pytest.mark.parametrize("name", DECODERS)
def test_schema_is_valid_draft_2020_12_and_its_examples_decode(name: str) -> None:
    document = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["description"] and document["examples"]
    for example in document["examples"]:
        validator(name).validate(example)
        assert orjson.loads(ENCODERS[name](DECODERS[name](orjson.dumps(example)))) == example


DEVICE_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}", fullmatch=True)
ACTIVITY = st.sampled_from(CLASSES)
TIMES = st.integers(0, 2**52)
UNIT = st.floats(0, 1)
CHANGES = st.builds(ActivityChange, DEVICE_IDS, st.none() | ACTIVITY, ACTIVITY, TIMES, TIMES,
                    UNIT, st.integers(0, 2**52), st.integers(1, 10**6))


@st.composite
def days(draw: st.DrawFn, device_id: str | None = None, closed: bool | None = None) -> DayTotals:
    counts = draw(st.lists(st.integers(0, 10**5), min_size=len(CLASSES), max_size=len(CLASSES)))
    return DayTotals(
        device_id=device_id or draw(DEVICE_IDS), day=draw(st.dates()).isoformat(),
        day_start_ms=draw(st.integers(-86_400_000, 2**52)),
        utc_offset_minutes=draw(st.integers(-1439, 1439)),
        windows=dict(zip(CLASSES, counts, strict=True)),
        first_ms=draw(TIMES), last_ms=draw(TIMES), last_seq=draw(st.integers(0, 2**52)),
        closed=draw(st.booleans()) if closed is None else closed)


@st.composite
def devices(draw: st.DrawFn) -> DeviceStatus:
    device_id = draw(DEVICE_IDS)
    activity = draw(st.none() | ACTIVITY)
    return DeviceStatus(
        device_id=device_id, activity=activity,
        since_ms=None if activity is None else draw(TIMES),
        confidence=draw(UNIT), last_activity=draw(ACTIVITY), last_confidence=draw(UNIT),
        last_seq=draw(st.integers(0, 2**52)), updated_ms=draw(TIMES),
        today=draw(st.none() | days(device_id, closed=False)))


@settings(max_examples=100, deadline=None)
@given(CHANGES)
def test_changes_validate_and_round_trip(change: ActivityChange) -> None:
    value = encode_change(change)
    validator("activity-change").validate(orjson.loads(value))
    assert decode_change(value) == change


@settings(max_examples=100, deadline=None)
@given(days())
def test_days_validate_and_round_trip(day: DayTotals) -> None:
    value = encode_day(day)
    validator("daily-totals").validate(orjson.loads(value))
    assert decode_day(value) == day


@settings(max_examples=100, deadline=None)
@given(devices())
def test_devices_validate_and_round_trip(device: DeviceStatus) -> None:
    value = encode_device(device)
    validator("device").validate(orjson.loads(value))
    assert decode_device(value) == device


def _example(name: str, index: int = 0) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())["examples"][index]


@pytest.mark.parametrize(("name", "change", "reason"), [
    ("activity-change", {"window_id": "watch-17:0:1"}, "inconsistent_field"),
    ("activity-change", {"windows": 0}, "out_of_range"),
    ("activity-change", {"confidence": 1.5}, "out_of_range"),
    ("activity-change", {"activity": None}, "wrong_type"),
    ("activity-change", {"extra": 1}, "unknown_field"),
    ("daily-totals", {"day": "6 Dec"}, "wrong_type"),
    ("daily-totals", {"closed": 0}, "wrong_type"),
    ("daily-totals", {"windows": {"WALKING": -1}}, "out_of_range"),
    ("daily-totals", {"utc_offset_minutes": 1440}, "out_of_range"),
    ("daily-totals", {"seconds": {"WALKING": 1.0}}, "inconsistent_field"),
    ("device", {"since_ms": None}, "inconsistent_field"),
    ("device", {"last_window_id": "x:1"}, "inconsistent_field"),
    ("device", {"today": {"device_id": "x"}}, "missing_field"),
    ("device", {"today": 5}, "not_object"),
])
def test_what_the_decoder_rejects_the_schema_rejects(name: str, change: dict,
                                                     reason: str) -> None:
    message = _example(name) | change
    with pytest.raises(DecodeError) as error:
        DECODERS[name](orjson.dumps(message))
    assert error.value.reason == reason
    if reason != "inconsistent_field":  # cross-field rules are the codec's alone
        assert not validator(name).is_valid(message)


def test_tombstones_and_garbage_are_decode_errors() -> None:
    for decode in DECODERS.values():
        for value in (b"", b"[1]", b"{", None):
            with pytest.raises(DecodeError):
                decode(value)  # type: ignore[arg-type]
