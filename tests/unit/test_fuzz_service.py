"""Fuzzing the loop: hostile input interleaved with valid device streams.

A seeded corpus of over 10,000 bad messages (random bytes, truncated and deeply nested JSON,
huge numbers, NaN/Infinity, wrong types, giant arrays, invalid UTF-8, enormous device ids,
control characters, unknown and missing fields) plus hostile but well-formed streams
(out-of-order and duplicate seq, clock jumps, counter restarts, floods of new device ids)
and exact replays of the valid devices' own messages goes through the real `Service`
(decode, recognise, dead-letter, checkpoint) on the in-memory Kafka driver. Checked: nothing
raises; every message the codec refuses is in the DLQ once, with a known reason and its
source offset; the valid devices' results and counts equal a clean run's; the registry stays
within `max_devices`. A hypothesis test then throws arbitrary values at the same path.
(tests/integration/test_reliability_fuzz.py sends a subset through a real broker.)
"""

from __future__ import annotations

import json
import random
import zlib

import numpy as np
from hostile_corpus import corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import Harness, Message
from service_support import batches_of, interleave, synthetic_samples

from har_stream.core import codec
from har_stream.core.records import SensorBatch
from har_stream.service.guards import APP_REASONS, TOO_MANY_DEVICES
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, max_devices=300,
                    metrics_address="")
T0 = 1_700_000_000_000
VALID = {f"valid-{i}": synthetic_samples(3000, seed=300 + i) for i in range(4)}
KNOWN_REASONS = set(codec.REASONS) | set(APP_REASONS)


def _valid_records() -> list[SensorBatch]:
    return interleave({d: batches_of(d, s, 50, T0) for d, s in VALID.items()})


def _run(messages: list[tuple[bytes | None, bytes | None]], partitions: int = 4):  # type: ignore[no-untyped-def]
    h = Harness(SETTINGS, read={"out", "dlq", "counts"})
    placed = h.feed(Message(key, value, i % partitions if key is None  # a key's partition
                            else zlib.crc32(key) % partitions)
                    for i, (key, value) in enumerate(messages))
    h.drain()
    return h.service, h, placed


def _valid_output(h: Harness) -> tuple[dict, dict]:
    results = {}
    for r in h.sent("out"):
        result = codec.decode_result(r.value)
        if result.device_id in VALID:
            results[result.window_id] = (result.activity, result.probabilities)
    counts = {}
    for r in h.sent("counts"):
        c = codec.decode_counts(r.value)
        if c.device_id in VALID:
            counts[c.device_id] = c.windows
    return results, counts


def test_ten_thousand_bad_messages_among_valid_streams() -> None:
    valid = [(b.device_id.encode(), codec.encode_sensor(b)) for b in _valid_records()]
    hostile = corpus()
    rng = random.Random(11)
    assert sum(h.refused for h in hostile) >= 10_000
    rest: list[tuple[bytes | None, bytes | None, bool | None]] = [
        (h.key, h.value, h.refused) for h in hostile]
    rest += [(None, None, None)] * 300  # replays of a valid message already sent
    rng.shuffle(rest)
    messages: list[tuple[bytes | None, bytes | None]] = valid[:4]  # valid devices first
    expected_refused: set[int] = set()
    sent_valid, stream = 4, iter(valid[4:])
    for key, value, refused in rest:
        if refused is None:
            key, value = valid[rng.randrange(max(sent_valid - 8, 1), sent_valid)]
        elif refused:
            expected_refused.add(len(messages))
        messages.append((key, value))
        if rng.random() < 0.05 and sent_valid < len(valid):
            messages.append(next(stream))
            sent_valid += 1
    messages.extend(stream)

    service, h, placed = _run(messages)
    letters = {}
    for letter in h.sent("dlq"):
        headers = dict(letter.headers or [])
        reason = headers[codec.HEADER_REASON].decode()
        assert reason in KNOWN_REASONS and headers[codec.HEADER_DETAIL]
        where = (int(headers[codec.HEADER_SOURCE_PARTITION]),
                 int(headers[codec.HEADER_SOURCE_OFFSET]))
        assert where not in letters, "one dead letter per message"
        letters[where] = reason
    refused_places = {placed[i] for i in expected_refused}
    assert refused_places <= set(letters), "every refused message is in the DLQ"
    extra = {where: reason for where, reason in letters.items() if where not in refused_places}
    assert set(extra.values()) <= {TOO_MANY_DEVICES}, "only the device limit refuses more"
    assert len(service.registry) <= SETTINGS.max_devices

    _, clean, _ = _run(valid)
    got, want = _valid_output(h), _valid_output(clean)
    assert got[0].keys() == want[0].keys() and len(want[0]) > 150
    for window_id, (activity, probabilities) in want[0].items():
        assert got[0][window_id][0] == activity
        np.testing.assert_allclose(list(got[0][window_id][1].values()),
                                   list(probabilities.values()), atol=1e-6)
    assert got[1] == want[1], "counts exact"
    kinds = {h.kind for h in hostile}
    print(f"\n{len(expected_refused)} refused messages in {len(kinds)} kinds, "
          f"{len(extra)} refused by the device limit, {len(messages)} messages in all; "
          f"{len(want[0])} valid windows unchanged")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=6),
    max_leaves=40)


@st.composite
def hostile_values(draw: st.DrawFn) -> bytes | None:
    base = {"device_id": "fuzz", "seq": 0, "t0_ms": T0, "rate_hz": 50,
            "samples": [[0.1, 0.2, 1.0, 0.0, 0.0, 0.0]] * 3}
    kind = draw(st.sampled_from(["bytes", "json", "field", "drop", "text"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "text":
        return draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    body = dict(base)
    if kind == "field":
        body[draw(st.sampled_from([*base, draw(st.text(max_size=10))]))] = draw(JSON)
    else:
        del body[draw(st.sampled_from(sorted(base)))]
    return json.dumps(body).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.none() | st.binary(max_size=20) | st.just(b"fuzz"),
                          hostile_values()), min_size=1, max_size=12))
def test_arbitrary_values_never_break_the_loop(messages: list) -> None:
    expected = []
    for key, value in messages:
        try:
            codec.decode_sensor(value, key, codec.Limits())
        except codec.DecodeError as error:
            expected.append(error.reason)
    service, h, _ = _run(messages, partitions=2)
    reasons = [dict(r.headers or [])[codec.HEADER_REASON].decode() for r in h.sent("dlq")]
    assert sorted(reasons) == sorted(expected), "exactly the refused messages, same reasons"
    assert len(service.registry) <= 1  # only "fuzz" can be accepted
