"""Whatever input the codec accepts, every record the recognizer writes meets its own schema.

Hostile or confused devices choose `seq` and `t0_ms` freely (clocks that jump back, times at
the top of the accepted range, seqs that rewind or leap); the results and counts they cause
must still validate against docs/schemas (jsonschema) and decode with the project's own
`decode_result` / `decode_counts`, which a consumer relies on.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from service_support import FakeModel

from har_stream.core.codec import (
    MAX_SAFE_INTEGER,
    MAX_TIME_MS,
    DecodeError,
    decode_counts,
    decode_result,
    decode_sensor,
    encode_counts,
    encode_result,
)
from har_stream.core.pipeline import PipelineConfig
from har_stream.core.recognizer import Recognizer

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
RESULT = Draft202012Validator(json.loads((SCHEMAS / "activity.schema.json").read_text()))
COUNTS = Draft202012Validator(json.loads((SCHEMAS / "activity-counts.schema.json").read_text()))

TIMES = st.one_of(
    st.integers(0, MAX_SAFE_INTEGER + 10),
    st.sampled_from([0, 1, 1000, MAX_TIME_MS - 3000, MAX_TIME_MS, MAX_TIME_MS + 1,
                     MAX_SAFE_INTEGER - 2540, MAX_SAFE_INTEGER]),
)
SEQ_JUMPS = st.one_of(
    st.just(0), st.integers(-200, 300), st.integers(-10**6, 10**6),
    st.sampled_from(["zero", "top"]))


def _message(device: str, seq: int, t0_ms: int, n: int, level: float) -> bytes:
    row = [0.1 * level, -0.2, 1.0, 0.3 * level, 0.0, -0.1]
    return orjson.dumps({"device_id": device, "seq": seq, "t0_ms": t0_ms, "rate_hz": 50,
                         "samples": [row] * n})


@settings(max_examples=120, deadline=None)
@given(data=st.data(), reorder=st.sampled_from([0, 64, 256]))
def test_any_accepted_input_yields_schema_valid_results_and_counts(data, reorder) -> None:
    recognizer = Recognizer(FakeModel(), PipelineConfig(reorder_samples=reorder))
    next_seq = {"a": 0, "b": 0}
    for _ in range(data.draw(st.integers(1, 14), label="steps")):
        batches = []
        for _ in range(data.draw(st.integers(1, 3), label="messages")):
            device = data.draw(st.sampled_from(["a", "b"]))
            n = data.draw(st.integers(1, 130), label="samples")
            jump = data.draw(SEQ_JUMPS, label="seq jump")
            seq = (0 if jump == "zero" else MAX_SAFE_INTEGER - n + 1 if jump == "top"
                   else max(next_seq[device] + jump, 0))
            t0_ms = data.draw(TIMES, label="t0_ms")
            try:
                batch = decode_sensor(_message(device, seq, t0_ms, n,
                                               data.draw(st.floats(-1, 1))))
            except DecodeError:
                continue
            next_seq[device] = seq + n
            batches.append(batch)
        output = recognizer.process(batches)
        for result in output.results:
            value = encode_result(result)
            RESULT.validate(orjson.loads(value))
            assert decode_result(value).window_id == result.window_id
        for counts in output.counts:
            value = encode_counts(counts)
            COUNTS.validate(orjson.loads(value))
            assert decode_counts(value).last_seq == counts.last_seq


@pytest.mark.parametrize("t0_ms", [MAX_TIME_MS + 1, MAX_SAFE_INTEGER])
def test_times_beyond_the_accepted_range_are_rejected(t0_ms: int) -> None:
    with pytest.raises(DecodeError) as error:
        decode_sensor(_message("x", 0, t0_ms, 1, 0.0))
    assert error.value.reason == "out_of_range"


def test_the_latest_accepted_time_leaves_every_output_time_in_range() -> None:
    recognizer = Recognizer(FakeModel())
    batch = decode_sensor(_message("x", 0, MAX_TIME_MS, 128, 0.5))
    (result,) = recognizer.process([batch]).results
    assert result.t_end_ms == MAX_TIME_MS + 127 * 20 <= MAX_SAFE_INTEGER
    RESULT.validate(orjson.loads(encode_result(result)))


@pytest.mark.parametrize("field", ["t_start_ms", "t_end_ms", "seq", "epoch"])
def test_decode_result_rejects_integers_beyond_2_pow_53(field: str) -> None:
    message = {"device_id": "d", "window_id": "d:0:0", "epoch": 0, "seq": 0, "t_start_ms": 0,
               "t_end_ms": 0,
               "activity": "A", "confidence": 1.0, "probabilities": {"A": 1.0},
               "model_version": "v"}
    message[field] = MAX_SAFE_INTEGER + 1
    if field == "seq":
        message["window_id"] = f"d:0:{MAX_SAFE_INTEGER + 1}"
    if field == "epoch":
        message["window_id"] = f"d:{MAX_SAFE_INTEGER + 1}:0"
    with pytest.raises(DecodeError):
        decode_result(orjson.dumps(message))
    assert not RESULT.is_valid(message)
