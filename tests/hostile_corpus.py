"""A seeded corpus of hostile sensor messages, for the fuzz tests of the loop.

`corpus()` returns at least 10,000 messages the codec must refuse (random bytes, truncated and
deeply nested JSON, huge numbers, NaN/Infinity, wrong types, giant arrays, invalid UTF-8,
enormous device ids, control characters, unknown and missing fields, tombstones) followed by
well-formed messages from attacker devices that misbehave in time and sequence (rewinds,
repeats, clock jumps, the last valid seq, more device ids than a process admits).

`unreadable_batches()` returns record batches that no Kafka client reads whole (header keys
that are not UTF-8, batches flagged with a codec over plain bytes, checksum failures), each
with what the service must do with its records; they are produced as is with
`raw_records.produce_batch`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

T0 = 1_700_000_000_000


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
            body["t0_ms"] = rng.choice([0, T0 - 10**9, T0 + 10**12, 253_402_300_799_999])
        elif pattern == 3:
            body["seq"] = 2**53 - 1 - len(body["samples"]) + 1  # the very last valid seq
        yield Hostile(device_id.encode(), orjson.dumps(body), False, "hostile stream")


def corpus(count: int = 10_000, seed: int = 7) -> list[Hostile]:
    rng = random.Random(seed)
    bad = [_bad(rng, i % 12) for i in range(count)]
    return bad + list(_well_formed_hostile(rng, count // 10))


# --- batches the Kafka client itself cannot read --------------------------------------------


@dataclass(frozen=True)
class Unreadable:
    """A record batch written as is (`raw_records.produce_batch`) and what the service must do
    with each of its records: dead-letter them with `reason`, or skip and count them."""

    data: bytes
    records: int
    outcome: str  # "dead_letter" or "skip"
    reason: str
    kind: str
    headers: tuple = ()  # dead letters: the headers expected before the error headers


_NOT_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28",
             b"abc\x80", b"\xe2\x82")
_CODECS = (1, 2, 3, 4)  # gzip, snappy, lz4, zstd


def unreadable_batches(count: int = 24, seed: int = 11) -> list[Unreadable]:
    """Seeded batches no client reads whole: header keys that are not UTF-8 (in plain and
    compressed batches, beside text-keyed headers), header values that are not UTF-8 (data:
    delivered untouched), batches flagged with a codec whose bytes are not of it, batches
    whose checksum fails. Every value is a refused sensor message, so a record that is
    delivered by mistake shows up as a dead letter with another reason."""
    import raw_records
    from kafka.record.util import encode_varint

    rng = random.Random(seed)
    out: list[Unreadable] = []
    for i in range(count):
        kind = i % 4
        n = rng.randint(1, 4)
        values = [b"hostile %d %d " % (i, j) for j in range(n)]
        if kind == 0:
            bad = rng.choice(_NOT_UTF8)
            text = [(f"t{j}", rng.randbytes(rng.randint(0, 5)))
                    for j in range(rng.randint(0, 2))]
            headers = [*text, (raw_records.RawKey(bad), rng.randbytes(3))]
            codec = rng.choice((0, 0, 1, 4))  # compressible values: the codec is kept
            data = raw_records.batch([(b"k", values[0] + b" " * 400, headers)],
                                     compression=codec)
            section = bytearray()
            encode_varint(len(headers), section.append)
            for name, content in headers:
                raw = name.encode("utf-8")
                encode_varint(len(raw), section.append)
                section += raw
                encode_varint(len(content), section.append)
                section += content
            out.append(Unreadable(bytes(data), 1, "dead_letter", "bad_header",
                                  f"header key {bad!r}, codec {codec}",
                                  (*text, ("har.source.headers", bytes(section)))))
        elif kind == 1:
            headers = [("v", rng.choice(_NOT_UTF8)), ("null", None)]
            data = raw_records.batch([(b"k", value, headers) for value in values])
            # a null header value is copied as empty (`delivery.bounded_dead_letter`)
            out.append(Unreadable(bytes(data), n, "dead_letter", "not_json",
                                  "header values not UTF-8", (headers[0], ("null", b""))))
        elif kind == 2:
            codec = rng.choice(_CODECS)
            data = raw_records.undecompressable([(b"k", value, []) for value in values],
                                                codec=codec)
            out.append(Unreadable(bytes(data), n, "skip", "bad_compression",
                                  f"codec {codec} over plain bytes"))
        else:
            data = raw_records.bad_checksum([(b"k", value, []) for value in values])
            out.append(Unreadable(bytes(data), n, "skip", "bad_checksum", "checksum"))
    return out
