"""Hostile input through a real broker: a slice of the fuzz corpus, plus messages at the size
limit, interleaved with valid device streams.

Checked end to end: the service stays up; every message the codec refuses is in the DLQ once,
with a known reason, its source partition and offset, and the original bytes (cut, with
`har.error.truncated`, when they are too large to copy); the valid devices' results and
counts equal the offline run. A message just under the producer's 1 MiB request limit is the
poison case: its dead letter, with the error headers added, would no longer fit, and used to
stop the service at every restart.
"""

from __future__ import annotations

import random

import pytest
from hostile_corpus import corpus
from kafka.record.default_records import DefaultRecordBatchBuilder
from service_support import (
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    final_counts,
    offline_results,
    send,
    synthetic_samples,
    window_ids,
)

from har_stream.core import codec
from har_stream.service.delivery import HEADER_TRUNCATED, MAX_DEAD_LETTER_KEY, MAX_DEAD_LETTER_VALUE
from har_stream.service.guards import APP_REASONS
from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
MAX_REQUEST = 1024 * 1024  # kafka-python's default max_request_size
NEAR_LIMIT = MAX_REQUEST - 202  # fits a produce request alone, not with dead-letter headers


def test_hostile_input_through_the_broker(service_settings: Settings) -> None:
    streams = {f"fuzz-ok-{i}": synthetic_samples(1600, seed=80 + i) for i in range(3)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    valid = [(b.device_id.encode(), codec.encode_sensor(b)) for d, s in streams.items()
             for b in batches_of(d, s, 50, T0_MS)]
    rng = random.Random(5)
    hostile = [h for h in corpus(1200, seed=3) if h.refused and h.value is not None]
    hostile = rng.sample(hostile, 400)
    giants = [(b"fuzz-giant", b"[" + b" " * NEAR_LIMIT + b"]"),
              (b"fuzz-giant", b"x" * (300 * 1024))]
    items: list[tuple[bytes | None, bytes]] = []
    refused: set[int] = set()
    firsts = {key: value for key, value in reversed(valid)}  # each device's first message
    items.extend(firsts.items())
    rest = [(h.key, h.value, True) for h in hostile] + [(k, v, True) for k, v in giants]
    rest += [(k, v, False) for k, v in valid if (k, v) not in firsts.items()]
    # a device's valid messages keep their order; everything else is shuffled among them
    order = [i for i, (_, _, bad) in enumerate(rest) if bad]
    rng.shuffle(order)
    queue = [i for i, (_, _, bad) in enumerate(rest) if not bad]
    merged = []
    while order or queue:
        pick = order if order and (not queue or rng.random() < 0.4) else queue
        merged.append(rest[pick.pop(0)])
    for key, value, bad in merged:
        if bad:
            refused.add(len(items))
        items.append((key, value))
    placed = send(service_settings.kafka, service_settings.topics.sensor_topic, items)
    error = codec.DecodeError("message_too_large", f"message has {len(giants[0][1])} bytes, "
                              "the limit is 262144")
    whole_copy = codec.dead_letter_headers(error, service_settings.topics.sensor_topic, 0, 1)
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(
        giants[0][0], giants[0][1], whole_copy) > MAX_REQUEST, "precondition: a poison copy"

    dead = TopicReader(service_settings.kafka, service_settings.topics.dlq_topic)
    results = TopicReader(service_settings.kafka, service_settings.topics.activity_topic)
    counts = TopicReader(service_settings.kafka, service_settings.topics.counts_topic)
    with InProcessService(service_settings, FakeModel()) as service:
        dead.until(lambda r: len(r) >= len(refused), 90, "every dead letter", service.check)
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "valid results",
                      service.check)
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts",
                     service.check)
        service.check()
    check_results(results.poll(), expected)
    letters = {}
    for letter in dead.poll():
        headers = dict(letter.headers)
        where = (int(headers[codec.HEADER_SOURCE_PARTITION]),
                 int(headers[codec.HEADER_SOURCE_OFFSET]))
        assert where not in letters, "one dead letter per message"
        letters[where] = letter
        assert headers[codec.HEADER_REASON].decode() in set(codec.REASONS) | set(APP_REASONS)
    assert {placed[i] for i in refused} == set(letters)
    for i in refused:
        letter = letters[placed[i]]
        key, value = items[i]
        cut = [f"key={len(key)}"] if key and len(key) > MAX_DEAD_LETTER_KEY else []
        cut += [f"value={len(value)}"] if len(value) > MAX_DEAD_LETTER_VALUE else []
        assert letter.key == (key[:MAX_DEAD_LETTER_KEY] if key else key)
        assert letter.value == value[:MAX_DEAD_LETTER_VALUE]
        assert dict(letter.headers).get(HEADER_TRUNCATED) == (",".join(cut).encode() or None)
    giant = letters[placed[items.index(giants[0])]]
    assert dict(giant.headers)[codec.HEADER_REASON] == b"message_too_large"
    print(f"\n{len(refused)} hostile messages through the broker, all dead-lettered with a "
          f"reason; {len(expected.results)} valid windows unchanged")
    for reader in (dead, results, counts):
        reader.close()
