"""The sensor codec: every rejection reason, both sensor forms, round trips, decode's purity."""

from __future__ import annotations

import json
import pickle

import numpy as np
import orjson
import pytest
from codec_support import dump, literal
from hypothesis import given, settings
from hypothesis import strategies as st

from har_stream.core import codec, sensor_codec
from har_stream.core.codec import (
    MAX_DETAIL_CHARS,
    REASONS,
    DecodeError,
    Limits,
    dead_letter_headers,
    decode_sensor,
    encode_sensor,
)
from har_stream.core.records import SensorBatch

SAMPLES = [[0.01, -0.98, 0.11, 0.002, -0.013, 0.0007],
           [0.02, -0.97, 0.12, 0.003, -0.014, 0.0008],
           [0.03, -0.96, 0.13, 0.004, -0.015, 0.0009],
           [0.04, -0.95, 0.14, 0.005, -0.016, 0.0010]]


def batch(**fields: object) -> dict:
    """A valid batch-form message with some fields replaced (None removes a field)."""
    message: dict = {"device_id": "watch-17", "seq": 6400, "t0_ms": 1763762400000,
                     "rate_hz": 50, "samples": [list(row) for row in SAMPLES]}
    message.update(fields)
    return {name: value for name, value in message.items() if value is not None}


def single(**fields: object) -> dict:
    """A valid one-sample message with some fields replaced (None removes a field)."""
    message: dict = {"device_id": "watch-17", "seq": 6403, "t_ms": 1763762400060,
                     "acc": [0.01, -0.98, 0.11], "gyro": [0.002, -0.013, 0.0007]}
    message.update(fields)
    return {name: value for name, value in message.items() if value is not None}


def with_sample(i: int, j: int, value: object) -> dict:
    samples = [list(row) for row in SAMPLES]
    samples[i][j] = value
    return batch(samples=samples)


# reason, value, key, detail must mention
REJECTIONS = [
    ("message_too_large", b'{"device_id": "w"' + b" " * 262144 + b"}", None, "262162 bytes"),
    ("bad_encoding", b'{"device_id": "w\xff\xfe", "seq": 1}', None, "byte 16"),
    ("bad_encoding", b'\xef\xbb\xbf{"device_id": "w"}', None, "byte order mark"),
    ("bad_encoding", b'{"device_id": "\\ud800"}', None, "surrogate"),
    ("not_json", b'{"device_id": "w", "seq": ', None, "line 1"),
    ("not_json", b"", None, "line 1"),
    ("not_json", b'[1 "NaN"]', None, "column 4"),
    ("not_object", b"[1, 2]", None, "array"),
    ("not_object", b'"watch-17"', None, "string"),
    ("missing_field", dump(batch(seq=None)), None, "'seq'"),
    ("missing_field", dump(batch(samples=None)), None, "'samples'"),
    ("missing_field", dump(single(gyro=None)), None, "'gyro'"),
    ("unknown_field", dump(batch(temperature=21.5)), None, "'temperature'"),
    ("unknown_field", dump(batch(acc=[0, 0, 1])), None, "'acc'"),
    ("wrong_type", dump(batch(seq="6400")), None, "seq"),
    ("wrong_type", dump(batch(seq=6400.0)), None, "seq"),
    ("wrong_type", dump(batch(seq=True)), None, "seq"),
    ("wrong_type", dump(batch(t0_ms=1.5)), None, "t0_ms"),
    ("wrong_type", dump(batch(device_id=17)), None, "device_id"),
    ("wrong_type", dump(batch(rate_hz="50")), None, "rate_hz"),
    ("wrong_type", dump(batch(samples={"0": [0] * 6})), None, "samples"),
    ("wrong_type", dump(batch(samples=[[0] * 6, 7])), None, "samples[1]"),
    ("wrong_type", dump(with_sample(2, 4, "0.5")), None, "samples[2][4] (gyro_y)"),
    ("wrong_type", dump(with_sample(1, 0, True)), None, "samples[1][0] (acc_x)"),
    ("wrong_type", dump(with_sample(3, 5, None)), None, "samples[3][5] (gyro_z)"),
    ("wrong_type", dump(with_sample(0, 1, [0.5])), None, "samples[0][1] (acc_y)"),
    ("wrong_type", dump(single(acc=[0, "x", 1])), None, "acc[1]"),
    ("wrong_type", dump(single(gyro=0.0)), None, "gyro"),
    ("non_finite", literal(with_sample(3, 4, 7.25), 7.25, "NaN"), None, "samples[3][4] (gyro_y)"),
    ("non_finite", literal(with_sample(1, 2, 7.25), 7.25, "Infinity"), None, "samples[1][2]"),
    ("non_finite", literal(with_sample(0, 0, 7.25), 7.25, "-Infinity"), None, "samples[0][0]"),
    ("non_finite", literal(with_sample(2, 3, 7.25), 7.25, "1e999"), None, "samples[2][3]"),
    ("non_finite", literal(single(gyro=[0, 0, 7.25]), 7.25, "NaN"), None, "gyro[2]"),
    ("non_finite", literal(batch(rate_hz=7.25), 7.25, "NaN"), None, "rate_hz"),
    ("bad_sample_width", dump(batch(samples=SAMPLES[:2] + [[0] * 5])), None, "samples[2]"),
    ("bad_sample_width", dump(batch(samples=[[0] * 7])), None, "samples[0]"),
    ("bad_sample_width", dump(single(acc=[0, 1])), None, "acc"),
    ("out_of_range", dump(with_sample(1, 2, 16.5)), None, "samples[1][2] (acc_z)"),
    ("out_of_range", dump(with_sample(3, 3, -35.01)), None, "samples[3][3] (gyro_x)"),
    ("out_of_range", dump(with_sample(0, 0, 1e39)), None, "samples[0][0]"),  # inf as float32
    ("out_of_range", dump(with_sample(0, 4, 2**64 - 1)), None, "samples[0][4]"),
    ("out_of_range", dump(single(acc=[0, 0, -16.25])), None, "acc[2]"),
    ("out_of_range", dump(batch(t0_ms=-1)), None, "t0_ms"),
    ("out_of_range", dump(batch(t0_ms=codec.MAX_TIME_MS + 1)), None, "t0_ms"),
    ("out_of_range", dump(single(t_ms=2**60)), None, "t_ms"),
    ("out_of_range", dump(batch(seq=2**53 - 2)), None, "seq"),
    ("empty_batch", dump(batch(samples=[])), None, "samples"),
    ("too_many_samples", dump(batch(samples=[[0] * 6] * 501)), None, "samples: 501"),
    ("bad_device_id", dump(batch(device_id="")), None, "device_id"),
    ("bad_device_id", dump(batch(device_id="-watch")), None, "device_id"),
    ("bad_device_id", dump(batch(device_id="watch 17")), None, "device_id"),
    ("bad_device_id", dump(batch(device_id="watch-17\n")), None, "device_id"),
    ("bad_device_id", dump(batch(device_id="w" * 129)), None, "device_id: 129 characters"),
    ("negative_seq", dump(batch(seq=-64)), None, "seq: -64"),
    ("bad_rate", dump(batch(rate_hz=25)), None, "rate_hz: 25"),
    ("bad_rate", dump(single(rate_hz=50.5)), None, "rate_hz"),
    ("key_mismatch", dump(batch()), b"watch-18", "'watch-18'"),
    ("key_mismatch", dump(batch()), b"", "device_id"),
]


@pytest.mark.parametrize(("reason", "value", "key", "mention"), REJECTIONS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REJECTIONS)])
def test_rejection_has_exact_reason_and_names_the_field(
    reason: str, value: bytes, key: bytes | None, mention: str
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_sensor(value, key)
    assert raised.value.reason == reason
    assert mention in raised.value.detail


def test_every_sensor_reason_has_a_rejection_case() -> None:
    covered = {reason for reason, *_ in REJECTIONS}
    assert covered == set(REASONS) - {"inconsistent_field"}


def test_limits_are_configurable() -> None:
    tight = Limits(max_acc_g=2.0, max_samples=3, max_message_bytes=10_000, max_device_id_len=5,
                   device_id_pattern=r"[a-z]+-\d+")
    assert decode_sensor(dump(batch(device_id="wa-17", samples=SAMPLES[:3])), None, tight)
    for message, reason in [
        (batch(device_id="wa-17", samples=SAMPLES[:3] + [[0.5] * 6]), "too_many_samples"),
        (batch(device_id="wa-17", samples=[[2.5, 0, 0, 0, 0, 0]]), "out_of_range"),
        (batch(device_id="watch-17"), "bad_device_id"),
        (batch(device_id="wa_17"), "bad_device_id"),
        (batch(device_id="wa-17", samples=[[0] * 6] * 3, pad="x" * 10_000), "message_too_large"),
    ]:
        with pytest.raises(DecodeError) as raised:
            decode_sensor(dump(message), None, tight)
        assert raised.value.reason == reason
    with pytest.raises(DecodeError, match="bad_rate"):
        decode_sensor(dump(batch()), None, Limits(rate_hz=25.0))
    assert decode_sensor(dump(batch(rate_hz=25)), None, Limits(rate_hz=25.0)).seq == 6400


HOSTILE = [
    dump(batch(**{"x\n\r\x1b[31m" + "y" * 100_000: 1})),
    dump(batch(device_id="\u202ewatch\nINFO fake log line")),
    dump(batch(device_id="a" * 100_000)),
    dump(batch(seq="\n" * 50_000)),
    dump(batch()),  # with a hostile key
]


@pytest.mark.parametrize("value", HOSTILE)
def test_detail_is_one_short_printable_ascii_line(value: bytes) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_sensor(value, "w\n\u2028\x00".encode() + b"\xff" * 1000)
    detail = raised.value.detail
    assert detail.isascii() and detail.isprintable()
    assert len(detail) <= MAX_DETAIL_CHARS
    assert len(str(raised.value)) <= MAX_DETAIL_CHARS + len(raised.value.reason) + 2


def test_decode_error_rejects_unknown_reasons_and_survives_pickling() -> None:
    with pytest.raises(ValueError):
        DecodeError("something_else", "detail")
    error = pickle.loads(pickle.dumps(DecodeError("bad_rate", "rate_hz: 25 Hz")))
    assert (error.reason, error.detail, str(error)) == (
        "bad_rate", "rate_hz: 25 Hz", "bad_rate: rate_hz: 25 Hz")


def test_dead_letter_headers_carry_reason_detail_and_source() -> None:
    error = DecodeError("out_of_range", "samples[1][2] (acc_z): 16.5 g")
    headers = dict(dead_letter_headers(error.reason, error.detail, "har.sensor", 3, 1234))
    assert headers == {
        "har.error.reason": b"out_of_range", "har.error.detail": b"samples[1][2] (acc_z): 16.5 g",
        "har.source.topic": b"har.sensor", "har.source.partition": b"3",
        "har.source.offset": b"1234",
    }
    output = dict(dead_letter_headers("undeliverable_output", "refused", "har.activity"))
    assert set(output) == {"har.error.reason", "har.error.detail", "har.source.topic"}


# -- happy paths ---------------------------------------------------------------------------------


def test_batch_form_decodes_to_a_float32_c_contiguous_array() -> None:
    decoded = decode_sensor(dump(batch()), b"watch-17", record_ts_ms=1763762400123)
    assert (decoded.device_id, decoded.seq, decoded.t0_ms, decoded.record_ts_ms) == (
        "watch-17", 6400, 1763762400000, 1763762400123)
    assert decoded.samples.dtype == np.float32 and decoded.samples.flags.c_contiguous
    np.testing.assert_array_equal(decoded.samples, np.array(SAMPLES, np.float32))


def test_one_sample_form_decodes_to_a_batch_of_one() -> None:
    decoded = decode_sensor(dump(single()))
    assert (decoded.device_id, decoded.seq, decoded.t0_ms, decoded.record_ts_ms) == (
        "watch-17", 6403, 1763762400060, 0)
    np.testing.assert_array_equal(
        decoded.samples, np.array([[0.01, -0.98, 0.11, 0.002, -0.013, 0.0007]], np.float32))
    assert decoded.samples.flags.c_contiguous


@pytest.mark.parametrize("value", [
    dump(batch(rate_hz=None)),
    dump(batch(rate_hz=50.0)),
    json.dumps(batch(), indent=2).encode(),
    bytearray(dump(batch())),
    memoryview(dump(batch())),
])
def test_equivalent_spellings_decode_alike(value: bytes) -> None:
    np.testing.assert_array_equal(decode_sensor(value).samples, np.array(SAMPLES, np.float32))


@pytest.mark.parametrize("device_id", ["user-1", "fitbit", "true", "false", "null", "a.b:c@d_e-f"])
def test_device_ids_with_letters_of_json_literals_decode(device_id: str) -> None:
    decoded = decode_sensor(dump(batch(device_id=device_id)), device_id.encode())
    assert decoded.device_id == device_id
    np.testing.assert_array_equal(decoded.samples, np.array(SAMPLES, np.float32))


def test_integers_and_limits_themselves_are_valid_sample_values() -> None:
    samples = [[0, 0, 1, 0, 0, 0], [16, -16, 16.0, 35, -35, 35.0]]
    np.testing.assert_array_equal(decode_sensor(dump(batch(samples=samples))).samples, samples)


def test_the_largest_batch_is_accepted() -> None:
    assert len(decode_sensor(dump(batch(samples=[[0.5] * 6] * 500))).samples) == 500


# -- the fast path agrees with the exact checks --------------------------------------------------

ODD_VALUES = st.one_of(st.booleans(), st.none(), st.sampled_from(["", "1.5", "u", '"', "NaN"]),
                       st.just({}), st.just({"a": 1}), st.lists(st.floats(-1, 1), max_size=7),
                       st.integers(-40, 40), st.floats(-40, 40))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.floats(-16, 16), min_size=6, max_size=6), min_size=1, max_size=8),
       st.data())
def test_fast_path_and_exact_path_agree(rows: list, data: st.DataObject) -> None:
    """Whatever odd value lands anywhere in samples, the outcome equals the exact check's."""
    for _ in range(data.draw(st.integers(0, 2))):
        i = data.draw(st.integers(0, len(rows) - 1))
        where = data.draw(st.sampled_from(["element", "row"]))
        if where == "row" or not isinstance(rows[i], list) or len(rows[i]) < 6:
            rows[i] = data.draw(ODD_VALUES)
        else:
            rows[i][data.draw(st.integers(0, 5))] = data.draw(ODD_VALUES)
    device_id = data.draw(st.sampled_from(["watch-17", "true", "fu", "null-7"]))
    message = batch(device_id=device_id, samples=rows)

    def outcome(run: object) -> object:
        try:
            return run().samples.tobytes()  # type: ignore[operator]
        except DecodeError as error:
            return error.reason, error.detail

    fast = outcome(lambda: decode_sensor(dump(message)))
    exact = outcome(lambda: sensor_codec._sensor_from(message, None, Limits(), None, 0))
    assert fast == exact


# -- round trips ---------------------------------------------------------------------------------

SAMPLE_ROWS = st.lists(
    st.tuples(*[st.floats(-16, 16, width=32)] * 3, *[st.floats(-35, 35, width=32)] * 3),
    min_size=1, max_size=500)


@settings(max_examples=200, deadline=None)
@given(SAMPLE_ROWS, st.integers(0, 2**40), st.integers(0, 2**45),
       st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}", fullmatch=True))
def test_encode_then_decode_gives_back_the_same_float32_values(
    rows: list, seq: int, t0_ms: int, device_id: str
) -> None:
    samples = np.array(rows, np.float32)
    decoded = decode_sensor(encode_sensor(SensorBatch(device_id, seq, t0_ms, samples)))
    assert (decoded.device_id, decoded.seq, decoded.t0_ms) == (device_id, seq, t0_ms)
    assert decoded.samples.tobytes() == samples.tobytes()  # bit for bit, -0.0 included


VALID_MESSAGES = st.fixed_dictionaries(
    {"device_id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}", fullmatch=True),
     "seq": st.integers(0, 2**50), "t0_ms": st.integers(0, codec.MAX_TIME_MS),
     "samples": st.lists(st.tuples(*[st.floats(-16, 16)] * 3, *[st.floats(-35, 35)] * 3)
                         .map(list), min_size=1, max_size=60)},
    optional={"rate_hz": st.sampled_from([50, 50.0])},
)


@settings(max_examples=200, deadline=None)
@given(VALID_MESSAGES, st.sampled_from([None, 0, 2]), st.randoms())
def test_any_valid_message_decodes_and_reencodes_identically(
    message: dict, indent: int | None, random: object
) -> None:
    names = list(message)
    random.shuffle(names)  # type: ignore[attr-defined]
    value = json.dumps({name: message[name] for name in names}, indent=indent).encode()
    decoded = decode_sensor(value, message["device_id"].encode())
    np.testing.assert_array_equal(decoded.samples, np.array(message["samples"], np.float32))
    encoded = encode_sensor(decoded)
    again = decode_sensor(encoded)
    assert (again.device_id, again.seq, again.t0_ms) == (
        message["device_id"], message["seq"], message["t0_ms"])
    assert again.samples.tobytes() == decoded.samples.tobytes()
    assert encode_sensor(again) == encoded


def test_encode_sensor_refuses_what_decode_would_reject() -> None:
    for shape in [(0, 6), (3, 5), (6,)]:
        with pytest.raises(ValueError):
            encode_sensor(SensorBatch("w", 0, 0, np.zeros(shape, np.float32)))


# -- purity --------------------------------------------------------------------------------------


def test_bad_messages_among_good_ones_leave_the_good_ones_intact() -> None:
    good = [dump(batch(device_id=f"watch-{i}", seq=64 * i, samples=[[i / 10] * 6] * (i + 1)))
            for i in range(5)]
    bad = [value for _, value, key, _ in REJECTIONS if key is None][:20]
    mixed = [value for pair in zip(good, bad[:5], strict=True) for value in pair] + bad[5:]
    decoded, reasons = [], []
    for value in mixed:
        try:
            decoded.append(decode_sensor(value))
        except DecodeError as error:
            reasons.append(error.reason)
    assert len(reasons) == len(bad)
    assert [d.device_id for d in decoded] == [f"watch-{i}" for i in range(5)]
    for i, d in enumerate(decoded):
        alone = decode_sensor(good[i])
        assert (d.seq, d.t0_ms) == (alone.seq, alone.t0_ms) == (64 * i, 1763762400000)
        np.testing.assert_array_equal(d.samples, np.full((i + 1, 6), i / 10, np.float32))
        assert d.samples is not alone.samples and not np.shares_memory(d.samples, alone.samples)


@pytest.mark.parametrize(("literal", "reason"), [
    ("18446744073709551616", "out_of_range"),  # 2^64: orjson reads it as a double
    ("-18446744073709551616", "out_of_range"),
    ("9" * 5000, "out_of_range"),  # beyond Python's 4300-digit conversion limit
    ("1" + "0" * 400, "out_of_range"),
    ("1e400", "non_finite"),
    ("null", "wrong_type"),
    ("6400.0", "wrong_type"),
])
def test_huge_integers_are_out_of_range_whatever_their_spelling(literal: str, reason: str) -> None:
    for field in ("seq", "t0_ms"):
        body = {"device_id": "d", "seq": 0, "t0_ms": 1, "samples": [[0, 0, 1, 0, 0, 0]]}
        text = orjson.dumps(body).decode().replace(f'"{field}":{body[field]}',
                                                   f'"{field}":{literal}')
        with pytest.raises(DecodeError) as caught:
            decode_sensor(text.encode())
        assert caught.value.reason == reason, (field, caught.value)


def test_a_5000_digit_sample_is_out_of_range_not_unreadable_json() -> None:
    text = '{"device_id":"d","seq":0,"t0_ms":1,"samples":[[%s,0,1,0,0,0]]}' % ("9" * 5000)
    with pytest.raises(DecodeError) as caught:
        decode_sensor(text.encode())
    assert caught.value.reason == "out_of_range"
