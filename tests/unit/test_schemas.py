"""The JSON Schemas in docs/schemas agree with the codec: what the codec accepts, they accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from har_stream.core.codec import (
    MAX_SAFE_INTEGER,
    DecodeError,
    Limits,
    decode_counts,
    decode_result,
    decode_sensor,
    encode_counts,
    encode_result,
    encode_sensor,
)
from har_stream.core.records import ACTIVITIES, ActivityCounts, ActivityResult, SensorBatch

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
DECODERS = {"sensor": decode_sensor, "activity": decode_result, "activity-counts": decode_counts}


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


SENSOR = validator("sensor")


def codec_accepts(message: Any) -> bool:
    try:
        decode_sensor(orjson.dumps(message))
    except DecodeError:
        return False
    return True


@pytest.mark.parametrize("name", DECODERS)
def test_schema_is_valid_draft_2020_12_with_descriptions(name: str) -> None:
    document = schema(name)
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["description"] and document["examples"]


@pytest.mark.parametrize("name", DECODERS)
def test_schema_examples_validate_and_decode(name: str) -> None:
    for example in schema(name)["examples"]:
        validator(name).validate(example)
        DECODERS[name](orjson.dumps(example))


def test_sensor_schema_states_the_default_limits() -> None:
    limits, defs = Limits(), schema("sensor")["$defs"]
    assert defs["device_id"]["maxLength"] == limits.max_device_id_len
    assert defs["device_id"]["pattern"] == limits.device_id_pattern
    assert defs["batch"]["properties"]["samples"]["maxItems"] == limits.max_samples
    assert defs["acc"]["maximum"] == -defs["acc"]["minimum"] == limits.max_acc_g
    assert defs["gyro"]["maximum"] == -defs["gyro"]["minimum"] == limits.max_gyro_rad_s
    assert defs["rate_hz"]["const"] == limits.rate_hz
    assert defs["seq"]["maximum"] == defs["time_ms"]["maximum"] == MAX_SAFE_INTEGER
    assert f"at most {limits.max_message_bytes} bytes" in schema("sensor")["description"]


DEVICE_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}", fullmatch=True)
ACC = st.floats(-16, 16)
GYRO = st.floats(-35, 35)
BATCHES = st.fixed_dictionaries(
    {"device_id": DEVICE_IDS, "seq": st.integers(0, 2**52), "t0_ms": st.integers(0, 2**52),
     "samples": st.lists(st.tuples(ACC, ACC, ACC, GYRO, GYRO, GYRO).map(list),
                         min_size=1, max_size=40)},
    optional={"rate_hz": st.sampled_from([50, 50.0])})
SINGLES = st.fixed_dictionaries(
    {"device_id": DEVICE_IDS, "seq": st.integers(0, 2**52), "t_ms": st.integers(0, 2**52),
     "acc": st.lists(ACC, min_size=3, max_size=3), "gyro": st.lists(GYRO, min_size=3, max_size=3)},
    optional={"rate_hz": st.sampled_from([50, 50.0])})
VALID = st.one_of(BATCHES, SINGLES)


@settings(max_examples=200, deadline=None)
@given(VALID)
def test_valid_messages_pass_both_the_codec_and_the_schema(message: dict) -> None:
    assert codec_accepts(message)
    SENSOR.validate(message)


ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 16, 16.0000001, -16.0000001, 35, 35.0000001, 50, 50.0, 25, 6400.0,
                     2**53, 2**53 - 1, 1e39, -1e39, 5e-324]),
    st.sampled_from(["", "watch-17", "watch 17", "-w", "w\n", "a" * 129, "50", "1.5"]),
    st.lists(st.floats(-40, 40), max_size=7), st.just({}), st.just({"x": 1}))
FIELDS = ["device_id", "seq", "t0_ms", "t_ms", "rate_hz", "samples", "acc", "gyro", "extra"]


@st.composite
def near_valid(draw: st.DrawFn) -> dict:
    """A valid message with one to three random changes: fields, rows or single values."""
    message = draw(VALID)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "set", "row", "value", "width"]))
        rows = message.get("samples") or message.get("acc")
        if kind == "drop" and message:
            del message[draw(st.sampled_from(sorted(message)))]
        elif kind == "set":
            message[draw(st.sampled_from(FIELDS))] = draw(ODD)
        elif isinstance(rows, list) and rows:
            i = draw(st.integers(0, len(rows) - 1))
            target = rows[i] if "samples" in message and isinstance(rows[i], list) else rows
            if kind == "row":
                rows[i] = draw(ODD)
            elif kind == "width":
                if draw(st.booleans()):
                    target.extend([0.0] * draw(st.integers(1, 2)))
                elif target:
                    target.pop()
            elif target:
                target[draw(st.integers(0, len(target) - 1))] = draw(ODD)
    return message


@settings(max_examples=1500, deadline=None)
@given(near_valid())
def test_whatever_the_codec_accepts_the_schema_accepts(message: dict) -> None:
    """Equivalently: whatever the schema rejects, the codec rejects."""
    if codec_accepts(message):
        SENSOR.validate(message)


SCHEMA_INVALID = [
    {},
    [],
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": []},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0] * 6] * 501},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0] * 5]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0, 0, 16.5, 0, 0, 0]]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0, 0, 0, 0, 0, -35.5]]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0, 0, 0, 0, 0, True]]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0, 0, 0, 0, 0, None]]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0, 0, 0, 0, 0, "0"]]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0] * 6], "rate_hz": 100},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0] * 6], "unit": "g"},
    {"device_id": "watch-17", "seq": -1, "t0_ms": 0, "samples": [[0] * 6]},
    {"device_id": "watch-17", "seq": "1", "t0_ms": 0, "samples": [[0] * 6]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": -5, "samples": [[0] * 6]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 2**53, "samples": [[0] * 6]},
    {"device_id": "", "seq": 1, "t0_ms": 0, "samples": [[0] * 6]},
    {"device_id": "watch 17", "seq": 1, "t0_ms": 0, "samples": [[0] * 6]},
    {"device_id": "w" * 129, "seq": 1, "t0_ms": 0, "samples": [[0] * 6]},
    {"device_id": 17, "seq": 1, "t0_ms": 0, "samples": [[0] * 6]},
    {"device_id": "watch-17", "seq": 1, "t_ms": 0, "acc": [0, 0, 1], "gyro": [0, 0]},
    {"device_id": "watch-17", "seq": 1, "t_ms": 0, "acc": [0, 0, 17], "gyro": [0, 0, 0]},
    {"device_id": "watch-17", "seq": 1, "t_ms": 0, "acc": [0, 0, 1]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "acc": [0, 0, 1], "gyro": [0, 0, 0]},
    {"device_id": "watch-17", "seq": 1, "t0_ms": 0, "samples": [[0] * 6], "acc": [0, 0, 1]},
]


@pytest.mark.parametrize("message", SCHEMA_INVALID)
def test_what_the_schema_rejects_the_codec_rejects(message: Any) -> None:
    assert not SENSOR.is_valid(message)
    assert not codec_accepts(message)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(ACC, ACC, ACC, GYRO, GYRO, GYRO), min_size=1, max_size=50),
       DEVICE_IDS, st.integers(0, 2**50))
def test_encoded_sensor_messages_validate(rows: list, device_id: str, seq: int) -> None:
    value = encode_sensor(SensorBatch(device_id, seq, 1763762400000, np.array(rows, np.float32)))
    SENSOR.validate(orjson.loads(value))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=len(ACTIVITIES), max_size=len(ACTIVITIES)),
       DEVICE_IDS, st.integers(0, 2**50))
def test_encoded_results_validate(probabilities: list, device_id: str, seq: int) -> None:
    result = ActivityResult(device_id, seq, 1763762400000, 1763762402540,
                            ACTIVITIES[int(np.argmax(probabilities))], max(probabilities),
                            dict(zip(ACTIVITIES, probabilities, strict=True)), "cnn-gru-1")
    validator("activity").validate(orjson.loads(encode_result(result)))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=len(ACTIVITIES), max_size=len(ACTIVITIES)),
       DEVICE_IDS, st.integers(-1, 2**50))
def test_encoded_counts_validate(windows: list, device_id: str, last_seq: int) -> None:
    counts = ActivityCounts(device_id, dict(zip(ACTIVITIES, windows, strict=True)),
                            {name: n * 1.28 for name, n in zip(ACTIVITIES, windows, strict=True)},
                            1763762400000, 1763762407660, last_seq)
    validator("activity-counts").validate(orjson.loads(encode_counts(counts)))
