"""The results and counts codec: full-precision round trips, and every invalid record named."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from codec_support import dump, literal
from hypothesis import given, settings
from hypothesis import strategies as st

from har_stream.core import results_codec
from har_stream.core.codec import (
    DecodeError,
    decode_counts,
    decode_result,
    encode_counts,
    encode_result,
)
from har_stream.core.records import ACTIVITIES, ActivityCounts, ActivityResult


def result_example(**fields: object) -> ActivityResult:
    probabilities = dict(zip(ACTIVITIES, [0.9412, 0.0371, 0.0198, 0.0009, 0.0008, 0.0002],
                             strict=True))
    values: dict = {"device_id": "watch-17", "seq": 6400, "t_start_ms": 1763762400000,
                    "t_end_ms": 1763762402540, "activity": "WALKING", "confidence": 0.9412,
                    "probabilities": probabilities, "model_version": "cnn-gru-1"}
    return ActivityResult(**(values | fields))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=6, max_size=6), st.integers(0, 2**50))
def test_result_round_trips_at_full_precision(probabilities: list, seq: int) -> None:
    result = result_example(seq=seq, confidence=max(probabilities),
                            probabilities=dict(zip(ACTIVITIES, probabilities, strict=True)))
    value = encode_result(result)
    assert orjson.loads(value)["window_id"] == f"watch-17:0:{seq}"
    assert decode_result(value) == result


def test_result_encoding_accepts_numpy_scalars() -> None:
    result = result_example(seq=np.int64(64), confidence=np.float32(0.75),
                            probabilities={name: np.float32(0.25) for name in ACTIVITIES[:4]})
    decoded = decode_result(encode_result(result))
    assert decoded.seq == 64 and decoded.confidence == 0.75
    assert decoded.probabilities == {name: 0.25 for name in ACTIVITIES[:4]}


def test_result_encoding_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="confidence"):
        encode_result(result_example(confidence=math.nan))
    with pytest.raises(ValueError, match="WALKING"):
        encode_result(result_example(probabilities={"WALKING": math.inf}))


@pytest.mark.parametrize("field", results_codec._RESULT_FIELDS)
def test_decode_result_names_a_missing_field(field: str) -> None:
    message = orjson.loads(encode_result(result_example()))
    del message[field]
    with pytest.raises(DecodeError) as raised:
        decode_result(dump(message))
    assert raised.value.reason == "missing_field" and repr(field) in raised.value.detail


@pytest.mark.parametrize(("change", "reason", "mention"), [
    ({"window_id": "watch-17:0:6464"}, "inconsistent_field", "window_id"),
    ({"window_id": "watch-17:6400"}, "inconsistent_field", "window_id"),
    ({"epoch": 1}, "inconsistent_field", "window_id"),
    ({"confidence": 1.5}, "out_of_range", "confidence"),
    ({"probabilities": {"WALKING": -0.1}}, "out_of_range", "probabilities['WALKING']"),
    ({"probabilities": {"WALKING": "high"}}, "wrong_type", "probabilities['WALKING']"),
    ({"seq": "6400"}, "wrong_type", "seq"),
    ({"seq": -1}, "out_of_range", "seq"),
    ({"model_version": None}, "wrong_type", "model_version"),
    ({"extra": 1}, "unknown_field", "extra"),
])
def test_decode_result_rejects_invalid_results(change: dict, reason: str, mention: str) -> None:
    message = orjson.loads(encode_result(result_example())) | change
    with pytest.raises(DecodeError) as raised:
        decode_result(dump(message))
    assert raised.value.reason == reason and mention in raised.value.detail


def counts_example(**fields: object) -> ActivityCounts:
    values: dict = {"device_id": "watch-17", "windows": {"WALKING": 3, "SITTING": 1},
                    "seconds": {"WALKING": 3.84, "SITTING": 1.28}, "since_ms": 1763762400000,
                    "updated_ms": 1763762407660, "last_seq": 192}
    return ActivityCounts(**(values | fields))


def test_counts_round_trip() -> None:
    for counts in [counts_example(), counts_example(windows={}, seconds={}, last_seq=-1)]:
        assert decode_counts(encode_counts(counts)) == counts


@pytest.mark.parametrize(("change", "reason"), [
    ({"windows": {"WALKING": 2.5}}, "wrong_type"),
    ({"windows": {"WALKING": -1}}, "out_of_range"),
    ({"seconds": {"WALKING": -1.28}}, "out_of_range"),
    ({"last_seq": -2}, "out_of_range"),
    ({"since_ms": None}, "wrong_type"),
    ({"extra": 1}, "unknown_field"),
])
def test_decode_counts_rejects_invalid_counts(change: dict, reason: str) -> None:
    message = orjson.loads(encode_counts(counts_example())) | change
    with pytest.raises(DecodeError) as raised:
        decode_counts(dump(message))
    assert raised.value.reason == reason and next(iter(change)) in raised.value.detail


def test_decode_counts_names_a_non_finite_field() -> None:
    value = literal(orjson.loads(encode_counts(counts_example())), 3.84, "NaN")
    with pytest.raises(DecodeError) as raised:
        decode_counts(value)
    assert raised.value.reason == "non_finite" and "seconds['WALKING']" in raised.value.detail
