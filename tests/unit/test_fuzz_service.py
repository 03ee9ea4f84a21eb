"""Fuzzing the loop: hostile input interleaved with valid device streams.

A seeded corpus of over 10,000 bad messages (random bytes, truncated and deeply nested JSON,
huge numbers, NaN/Infinity, wrong types, giant arrays, invalid UTF-8, enormous device ids,
control characters, unknown and missing fields) plus hostile but well-formed streams
(out-of-order and duplicate seq, clock jumps, counter restarts, floods of new device ids)
and exact replays of the valid devices' own messages goes through the real `app.Service`
(decode, recognise, dead-letter, checkpoint) on in-memory Kafka stand-ins. Checked: nothing
raises; every message the codec refuses is in the DLQ once, with a known reason and its
source offset; the valid devices' results and counts equal a clean run's; the registry stays
within `max_devices`. A hypothesis test then throws arbitrary values at the same path.
(tests/integration/test_reliability_fuzz.py sends a subset through a real broker.)
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import Record, make_service
from service_support import FakeModel, batches_of, interleave, synthetic_samples

from har_stream import codec
from har_stream.config import Settings, TopicSettings
from har_stream.guards import APP_REASONS, TOO_MANY_DEVICES
from har_stream.records import SensorBatch

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, max_devices=300,
                    metrics_address="")
T0 = 1_700_000_000_000
VALID = {f"valid-{i}": synthetic_samples(3000, seed=300 + i) for i in range(4)}
KNOWN_REASONS = set(codec.REASONS) | set(APP_REASONS)


@dataclass(frozen=True)
class Hostile:
    key: bytes | None
    value: bytes | None
    refused: bool  # the codec must refuse it (else: well-formed, for the pipeline to absorb)
    kind: str


def _good_body(rng: random.Random, device_id: str = "attacker") -> dict:
    n = rng.randint(1, 60)
    samples = np.round(np.array([[rng.uniform(-2, 2) for _ in range(6)] for _ in range(n)]), 4)
    return {"device_id": device_id, "seq": rng.randint(0, 10**6), "t0_ms": T0,
            "rate_hz": 50, "samples": samples.tolist()}


def _bad(rng: random.Random, kind: int) -> Hostile:
    body = _good_body(rng)
    encoded = orjson.dumps(body)
    key = b"attacker"
    if kind == 0:
        return Hostile(key, rng.randbytes(rng.randint(0, 300)), True, "random bytes")
    if kind == 1:
        return Hostile(key, encoded[:rng.randint(0, len(encoded) - 1)], True, "truncated")
    if kind == 2:
        depth = rng.choice([50, 1000, 5000, 100_000])
        opener = rng.choice([b"[", b'{"a":'])
        return Hostile(key, opener * depth + b"1", True, "deeply nested")
    if kind == 3:
        number = rng.choice(["1e400", "-1e400", "1" + "0" * 400, "9" * 5000, "1e-400e5"])
        where = rng.choice(["sample", "seq", "t0_ms", "rate_hz"])
        text = encoded.decode()
        if where == "sample":
            text = text.replace('"samples":[[', f'"samples":[[{number},', 1)
        else:
            text = text.replace(f'"{where}":', f'"{where}":{number},"x{where}":', 1)
        return Hostile(key, text.encode(), True, "huge number")
    if kind == 4:
        literal = rng.choice(["NaN", "Infinity", "-Infinity", "nan", "inf"])
        text = encoded.decode().replace('"samples":[[', f'"samples":[[{literal},', 1)
        return Hostile(key, text.encode(), True, "non-finite")
    if kind == 5:
        field = rng.choice(["device_id", "seq", "t0_ms", "rate_hz", "samples"])
        body[field] = rng.choice([None, True, "12", [], {}, 1.5, [[None] * 6], [["1"] * 6],
                                  [[True] * 6], -1])
        return Hostile(key, orjson.dumps(body), True, "wrong type")
    if kind == 6:
        shape = rng.choice(["rows", "width", "bytes"])
        if shape == "rows":
            body["samples"] = [[0.1] * 6] * rng.randint(501, 3000)
        elif shape == "width":
            body["samples"] = [[0.1] * rng.choice([0, 1, 5, 7, 100])] * 3
        else:
            body["samples"] = [[0.1] * 6] * 30
            return Hostile(key, orjson.dumps(body) + b" " * (256 * 1024), True, "giant")
        return Hostile(key, orjson.dumps(body), True, "giant array")
    if kind == 7:
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28"])
        spot = rng.choice(["id", "bom", "end"])
        if spot == "id":
            return Hostile(key, encoded.replace(b'"attacker"', b'"att' + bad + b'"'), True,
                           "invalid utf-8")
        if spot == "bom":
            return Hostile(key, b"\xef\xbb\xbf" + encoded, True, "byte order mark")
        return Hostile(key, encoded + bad, True, "invalid utf-8")
    if kind == 8:
        device_id = rng.choice(["d" * rng.randint(129, 20_000), "ok" + "é" * 200])
        body["device_id"] = device_id
        return Hostile(device_id.encode(), orjson.dumps(body), True, "enormous device id")
    if kind == 9:
        control = "".join(chr(rng.randint(0, 31)) for _ in range(3)) + "\u202e\u0085"
        if rng.random() < 0.5:
            body["device_id"] = "dev" + control
            return Hostile(body["device_id"].encode(), orjson.dumps(body), True, "control chars")
        body["extra" + control] = 1
        return Hostile(key, orjson.dumps(body), True, "control chars in a field name")
    if kind == 10:
        change = rng.choice(["missing", "unknown", "key", "empty", "negative", "rate"])
        if change == "missing":
            del body[rng.choice(["device_id", "seq", "t0_ms", "samples"])]
        elif change == "unknown":
            body["firmware"] = "1.0"
        elif change == "key":
            key = b"someone-else"
        elif change == "empty":
            body["samples"] = []
        elif change == "negative":
            body["seq"] = -rng.randint(1, 10**9)
        else:
            body["rate_hz"] = rng.choice([0, 49.9, 100, 5e3])
        return Hostile(key, orjson.dumps(body), True, change)
    return Hostile(None, None, True, "tombstone")


def _well_formed_hostile(rng: random.Random, n: int) -> Iterator[Hostile]:
    """Valid messages from attacker devices that misbehave in time and sequence."""
    for i in range(n):
        device_id = f"attacker-{rng.randint(0, 999)}"  # > max_devices distinct ids
        body = _good_body(rng, device_id)
        pattern = i % 4
        if pattern == 1:
            body["seq"] = rng.choice([0, 5, 3, 2**40])  # rewinds and repeats
        elif pattern == 2:
            body["t0_ms"] = rng.choice([0, T0 - 10**9, T0 + 10**12, 2**53 - 10**6])
        elif pattern == 3:
            body["seq"] = 2**53 - 1 - len(body["samples"]) + 1  # the very last valid seq
        yield Hostile(device_id.encode(), orjson.dumps(body), False, "hostile stream")


def corpus(count: int = 10_000, seed: int = 7) -> list[Hostile]:
    rng = random.Random(seed)
    bad = [_bad(rng, i % 12) for i in range(count)]
    return bad + list(_well_formed_hostile(rng, count // 10))


def _valid_records() -> list[SensorBatch]:
    return interleave({d: batches_of(d, s, 50, T0) for d, s in VALID.items()})


def _run(messages: list[tuple[bytes | None, bytes | None]], partitions: int = 4):  # type: ignore[no-untyped-def]
    service, consumer, producer = make_service(SETTINGS, FakeModel(), keep={"out", "dlq",
                                                                            "counts"})
    offsets = [0] * partitions
    placed = []
    for i, (key, value) in enumerate(messages):
        p = i % partitions if key is None else zlib.crc32(key) % partitions  # a key's partition
        consumer.feed([Record("in", p, offsets[p], key, value)])
        placed.append((p, offsets[p]))
        offsets[p] += 1
    while consumer.queue or consumer.events:
        service.step()
        service.checkpoint()
    return service, producer, placed


def _valid_output(producer) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    results = {}
    for r in producer.sent["out"]:
        result = codec.decode_result(r.value)
        if result.device_id in VALID:
            results[result.window_id] = (result.activity, result.probabilities)
    counts = {}
    for r in producer.sent["counts"]:
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

    service, producer, placed = _run(messages)
    letters = {}
    for letter in producer.sent["dlq"]:
        headers = dict(letter.headers)
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
    got, want = _valid_output(producer), _valid_output(clean)
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
    service, producer, _ = _run(messages, partitions=2)
    reasons = [dict(r.headers)[codec.HEADER_REASON].decode() for r in producer.sent["dlq"]]
    assert sorted(reasons) == sorted(expected), "exactly the refused messages, same reasons"
    assert len(service.registry) <= 1  # only "fuzz" can be accepted
