"""The speed-ups give exactly what the general code gives: codec fast path, steady windowing.

The codec's fast path may only accept (never reject), and only what the exact path accepts,
bit for bit; the exact path alone names rejections. The windower's and pipeline's shortcuts for
the steady state (64-sample messages at hop boundaries) must give the general path's windows.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from har_stream.core import pipeline, sensor_codec
from har_stream.core.codec import DecodeError, Limits, decode_sensor, encode_sensor
from har_stream.core.pipeline import Pipeline
from har_stream.core.records import HOP, SAMPLE_PERIOD_MS, WINDOW, SensorBatch
from har_stream.core.windowing import at_hop_boundary, emit_windows

pytestmark = pytest.mark.skipif(sensor_codec._simdjson is None, reason="pysimdjson not installed")


def exact(value: bytes, key: bytes | None = None, limits: Limits = Limits()) -> object:
    """decode_sensor's outcome with the fast path switched off."""
    saved, sensor_codec._simdjson = sensor_codec._simdjson, None
    try:
        return outcome(lambda: decode_sensor(value, key, limits))
    finally:
        sensor_codec._simdjson = saved


def outcome(run: object) -> object:
    try:
        batch = run()  # type: ignore[operator]
    except DecodeError as error:
        return ("rejected", error.reason, error.detail)
    return (batch.device_id, batch.seq, batch.t0_ms, batch.samples.dtype.str,
            batch.samples.shape, batch.samples.tobytes())


def fast(value: bytes, key: bytes | None = None, limits: Limits = Limits()) -> object:
    batch = sensor_codec._fast_batch(value, key, limits, 0)
    return None if batch is None else outcome(lambda: batch)


def assert_agree(value: bytes, key: bytes | None = None, limits: Limits = Limits()) -> None:
    """The fast path declines or matches the exact path; decode_sensor matches it too."""
    expected = exact(value, key, limits)
    got = fast(value, key, limits)
    assert got is None or got == expected
    if expected[0] == "rejected":
        assert got is None
    assert outcome(lambda: decode_sensor(value, key, limits)) == expected


def message(samples: object, **fields: object) -> dict:
    out: dict = {"device_id": "watch-17", "seq": 6400, "t0_ms": 1763762400000, "rate_hz": 50,
                 "samples": samples}
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


ROWS = [[0.01, -0.98, 0.11, 0.002, -0.013, 0.0007]] * 4


def test_fast_path_takes_the_canonical_encoding() -> None:
    samples = np.random.default_rng(0).normal(0, 0.5, (64, 6)).astype(np.float32)
    value = encode_sensor(SensorBatch("device-000001", 128, 2560, samples))
    assert fast(value) is not None
    assert fast(value) == exact(value)


@pytest.mark.parametrize("value", [
    # shapes that the flattening copy and plain counts of brackets and commas cannot tell apart
    orjson.dumps(message([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 12]])),
    orjson.dumps(message([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, [11]], 12])),
    orjson.dumps(message([[1, 2, 3, 4, 5, [6]], [1, 2, 3, 4, 5, 6]])),
    orjson.dumps(message([[1, 2, 3, 4, 5, {"a,b": 1, "c": [2]}], [1, 2, 3, 4, 5, 6]])),
    orjson.dumps(message([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, None]])),
    orjson.dumps(message([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, True]])),
    orjson.dumps(message([[1, 2, 3, 4, 5, "6"]])),
    orjson.dumps(message([[[1, 2, 3, 4, 5, 6]]])),
    orjson.dumps(message([1, 2, 3, 4, 5, 6])),
    orjson.dumps(message([])),
    orjson.dumps(message(ROWS, rate_hz=25)),
    orjson.dumps(message(ROWS, rate_hz=True)),
    orjson.dumps(message(ROWS, seq=-1)),
    orjson.dumps(message(ROWS, seq=6400.0)),
    orjson.dumps(message(ROWS, t0_ms=2**60)),
    orjson.dumps(message(ROWS, seq=2**53 - 2)),
    orjson.dumps(message(ROWS, device_id="-bad")),
    orjson.dumps(message(ROWS, device_id=17)),
    orjson.dumps(message(ROWS, extra=1)),
    orjson.dumps(message([[0, 0, 16.5, 0, 0, 0]])),
    orjson.dumps(message([[0, 0, 0, 0, 0, -35.5]])),
    orjson.dumps(message([[0, 0, 0, 0, 0, 2**64 - 1]])),
    b"\xef\xbb\xbf" + orjson.dumps(message(ROWS)),  # simdjson accepts a byte order mark
    b'{"device_id":"watch-17","seq":1,"seq":2,"t0_ms":0,"samples":[[1,2,3,4,5,6]]}',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,6]],"samples":[[1]]}',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,NaN]]}',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,1e999]]}',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,18446744073709551616]]}',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,6]]} x',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,6],]}',
    b'{"device_id":"w\\u0061tch","seq":1,"t0_ms":0,"samples":[[-0,-0.0,0e0,1e-400,5,6]]}',
    b'{"device_id":"\\ud800","seq":1,"t0_ms":0,"samples":[[1,2,3,4,5,6]]}',
    b'{"device_id":"watch-17","seq":1,"t0_ms":0,"acc":[1,2,3],"gyro":[4,5,6]}',
    b'{"device_id":"watch-17","seq":1,"t_ms":0,"acc":[1,2,3],"gyro":[4,5,6]}',
    b" \n" + orjson.dumps(message(ROWS)) + b"\t",
    json.dumps(message(ROWS), indent=3).encode(),
    b"[]", b"null", b"", b"{}",
])
def test_fast_path_declines_or_agrees_on_odd_messages(value: bytes) -> None:
    assert_agree(value)


def test_fast_path_checks_the_key_and_custom_patterns() -> None:
    value = orjson.dumps(message(ROWS, device_id="a[1],b"))
    lax = Limits(device_id_pattern=r"^[a-z\[\],0-9]+$")
    assert fast(value, None, lax) is None  # brackets in the id would confuse the layout check
    assert_agree(value, None, lax)
    assert_agree(orjson.dumps(message(ROWS)), b"watch-18")
    assert_agree(orjson.dumps(message(ROWS)), b"watch-17")


NUMBER = st.one_of(
    st.floats(-16, 16), st.floats(-16, 16, width=32), st.integers(-16, 16),
    st.sampled_from([0.0, -0.0, 1e-310, -5e-324, 15.999999999999998, 16.0, -16.0]))
TEXT_NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,2})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?",
                            fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(NUMBER, min_size=6, max_size=6), min_size=1, max_size=40),
       st.sampled_from([None, 0, 2]), st.booleans(), st.randoms())
def test_valid_messages_decode_identically_on_both_paths(
    rows: list, indent: int | None, rate: bool, random: object
) -> None:
    fields = message(rows, rate_hz=50 if rate else None)
    names = list(fields)
    random.shuffle(names)  # type: ignore[attr-defined]
    value = json.dumps({n: fields[n] for n in names}, indent=indent).encode()
    assert fast(value) is not None
    assert_agree(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT_NUMBER, min_size=6, max_size=6))
def test_numbers_written_any_way_parse_to_the_same_bits(numbers: list) -> None:
    value = (b'{"device_id":"w","seq":0,"t0_ms":0,"samples":[[' + ",".join(numbers).encode()
             + b"]]}")
    assert_agree(value)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mangled_messages_give_the_exact_paths_outcome(data: st.DataObject) -> None:
    value = bytearray(orjson.dumps(message([[0.5, -0.25, 1, 0.125, -3, 2]] * 3)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(value) - 1))
        what = data.draw(st.sampled_from(["put", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b'[]{},:"-.0123456789eEtfnul x\xef\xff'))
        if what == "put":
            value[at] = byte
        elif what == "insert":
            value.insert(at, byte)
        else:
            del value[at]
    assert_agree(bytes(value))


# --- windowing and the pipeline's steady state ------------------------------------------------


def _general(ring: np.ndarray, n: np.ndarray, chunk: np.ndarray) -> tuple:
    """emit_windows with the shortcut made impossible: the same chunk, fed in two parts."""
    first, state = emit_windows(ring, n, chunk[:, :1])
    second, state = emit_windows(state, n + 1, chunk[:, 1:])
    assert len(first.rows) == 0
    return second, state


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 2**16))
def test_hop_boundary_shortcut_cuts_the_general_windows(hops: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = np.array(hops, np.int64) * HOP
    ring = rng.normal(size=(len(n), WINDOW, 9)).astype(np.float32)
    chunk = rng.normal(size=(len(n), HOP, 9)).astype(np.float32)
    assert at_hop_boundary(n, HOP)
    fast_emitted, fast_ring = emit_windows(ring, n, chunk)
    slow_emitted, slow_ring = _general(ring, n, chunk)
    assert np.array_equal(fast_emitted.rows, slow_emitted.rows)
    assert np.array_equal(fast_emitted.starts, slow_emitted.starts)
    assert fast_emitted.data.tobytes() == slow_emitted.data.tobytes()
    assert fast_ring.tobytes() == slow_ring.tobytes()


def test_hop_boundary_needs_a_full_previous_hop() -> None:
    assert not at_hop_boundary(np.array([0, 64]), HOP)  # a fresh stream: no window yet
    assert not at_hop_boundary(np.array([64, 96]), HOP)
    assert not at_hop_boundary(np.array([64, 128]), 32)
    assert at_hop_boundary(np.array([64, 128]), HOP)


def test_steady_blocks_give_the_windows_of_one_piece_processing(monkeypatch) -> None:
    monkeypatch.setattr(pipeline, "_BLOCK", 3)  # several blocks with few devices
    calls = []
    original = Pipeline._advance_at_hop
    monkeypatch.setattr(Pipeline, "_advance_at_hop",
                        lambda self, *a: calls.append(1) or original(self, *a))
    rng = np.random.default_rng(7)
    devices, messages = 8, 5
    streams = rng.normal(0, 0.5, (devices, messages * HOP, 6)).astype(np.float32)
    live = Pipeline()
    got = []
    for m in range(messages):
        step = live.process([
            SensorBatch(f"d{d}", m * HOP, round(m * HOP * SAMPLE_PERIOD_MS),
                        streams[d, m * HOP:(m + 1) * HOP], record_ts_ms=1000 + m)
            for d in range(devices)])
        got.append(step.windows)
    assert len(calls) == messages - 1  # every message after the first took the shortcut
    for d in range(devices):
        whole = Pipeline().process([SensorBatch(f"d{d}", 0, 0, streams[d])]).windows
        rows = [(w, i) for w in got for i, dev in enumerate(w.device_ids) if dev == f"d{d}"]
        assert [int(w.seqs[i]) for w, i in rows] == whole.seqs.tolist()
        assert [int(w.t_start_ms[i]) for w, i in rows] == whole.t_start_ms.tolist()
        assert [bool(w.fresh[i]) for w, i in rows] == whole.fresh.tolist()
        assert [int(w.record_ts_ms[i]) for w, i in rows] == [1000 + k for k in
                                                            range(1, messages)]
        data = np.stack([w.data[i] for w, i in rows])
        assert data.tobytes() == whole.data.tobytes()


# --- the recognizer's model slices ------------------------------------------------------------


class _CountingModel:
    """Stateful fake whose outputs depend on each window and its state only."""

    classes = ("A", "B", "C")
    state_size = 3
    version = "fake-1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(len(windows))
        new = state * 0.5 + windows.mean(axis=1)[:, :3]
        logits = np.stack([new.sum(1), new[:, 0], -new[:, 1]], axis=1)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return probs.astype(np.float32), new.astype(np.float32)


def test_model_slices_change_calls_not_results() -> None:
    from har_stream.core.recognizer import Recognizer

    rng = np.random.default_rng(3)
    streams = rng.normal(0, 0.5, (9, 64 * 6, 6)).astype(np.float32)
    outputs = {}
    for model_batch in (0, 1, 4):
        model = _CountingModel()
        rec = Recognizer(model, model_batch=model_batch)
        results, counts = [], []
        for m, size in enumerate((200, 64, 120)):  # several windows per device in one poll
            start = sum((200, 64, 120)[:m])
            out = rec.process([SensorBatch(f"d{d}", start, start * 20,
                                           streams[d, start:start + size]) for d in range(9)])
            results += out.results
            counts += out.counts
        outputs[model_batch] = (results, counts)
        assert max(model.calls) <= (model_batch or 9)
    assert outputs[0] == outputs[1] == outputs[4]
    assert len(outputs[0][0]) == 9 * 5


def test_group_where_one_device_completes_two_windows_and_another_none() -> None:
    """Equal-length segments of two devices: as many windows as devices, not one each."""
    rng = np.random.default_rng(11)
    a = rng.normal(0, 0.5, (400, 6)).astype(np.float32)
    b = rng.normal(0, 0.5, (400, 6)).astype(np.float32)
    together = Pipeline()
    together.process([SensorBatch("a", 0, 0, a[:127])])
    # a: a one-sample gap (filled) makes a planned segment of 65 samples ending at 192, so it
    # completes the windows ending at 128 and 192; b starts with 65 samples: no window yet
    step = together.process([SensorBatch("a", 128, 2560, a[128:192], record_ts_ms=7),
                             SensorBatch("b", 1000, 20000, b[:65], record_ts_ms=9)])
    assert step.windows.device_ids == ["a", "a"]
    alone = Pipeline()
    alone.process([SensorBatch("a", 0, 0, a[:127])])
    expected = alone.process([SensorBatch("a", 128, 2560, a[128:192], record_ts_ms=7)]).windows
    assert step.windows.seqs.tolist() == expected.seqs.tolist() == [0, 64]
    assert step.windows.t_start_ms.tolist() == expected.t_start_ms.tolist() == [0, 1280]
    assert step.windows.record_ts_ms.tolist() == expected.record_ts_ms.tolist()
    assert step.windows.data.tobytes() == expected.data.tobytes()
