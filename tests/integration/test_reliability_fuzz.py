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

import dataclasses
import random
from typing import Any

import orjson
import pytest
import raw_records
from hostile_corpus import corpus, unreadable_batches
from kafka.record.default_records import DefaultRecordBatchBuilder
from service_support import (
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    final_counts,
    interleave,
    offline_results,
    send,
    synthetic_samples,
    wait_for,
    window_ids,
)

from har_stream.core import codec
from har_stream.kafka.clients import make_consumer
from har_stream.kafka.poison import HEADER_RAW_HEADERS, SKIP_REASONS
from har_stream.kafka.ports import Partition
from har_stream.service.delivery import HEADER_TRUNCATED, MAX_DEAD_LETTER_KEY, MAX_DEAD_LETTER_VALUE
from har_stream.service.guards import APP_REASONS
from har_stream.service.metrics import REGISTRY
from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
MAX_REQUEST = 1024 * 1024  # kafka-python's default max_request_size
NEAR_LIMIT = MAX_REQUEST - 202  # fits a produce request alone, not with dead-letter headers


def letters_by_source(records: list) -> dict[tuple[int, int], Any]:
    """Dead letters by the (partition, offset) of the message each replaces: one each."""
    letters: dict[tuple[int, int], Any] = {}
    for letter in records:
        headers = dict(letter.headers)
        where = (int(headers[codec.HEADER_SOURCE_PARTITION]),
                 int(headers[codec.HEADER_SOURCE_OFFSET]))
        assert where not in letters, "one dead letter per message"
        letters[where] = letter
    return letters


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
    whole_copy = codec.dead_letter_headers(error.reason, error.detail,
                                           service_settings.topics.sensor_topic, 0, 1)
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
    letters = letters_by_source(dead.poll())
    for letter in letters.values():
        reason = dict(letter.headers)[codec.HEADER_REASON].decode()
        assert reason in set(codec.REASONS) | set(APP_REASONS)
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


# --- records the Kafka client itself cannot read ------------------------------------------------


def _sensor_value(device_id: str, seq: int) -> bytes:
    return orjson.dumps({"device_id": device_id, "seq": seq, "t0_ms": T0_MS,
                         "samples": [[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]}) + b" "


@pytest.mark.parametrize("client", ["librdkafka", "kafka-python"])
def test_records_the_client_cannot_read_never_stop_the_stream(
        service_settings: Settings, client: str) -> None:
    """A header key that is not UTF-8, a batch flagged gzip that does not decompress and a
    batch whose checksum fails, between valid device streams, on both partitions: the
    service stays up; what the client can read is dead-lettered with its reason (headers
    kept byte for byte, a header section the client cannot read too), what it cannot is
    skipped, logged and counted; the valid streams' results equal the offline run; every
    offset is committed."""
    settings = dataclasses.replace(service_settings, kafka=dataclasses.replace(
        service_settings.kafka, consumer_client=client))
    kafka, sensor = settings.kafka, settings.topics.sensor_topic
    streams = {f"poison-ok-{i}": synthetic_samples(960, seed=120 + i) for i in range(4)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 40, T0_MS) for d, s in streams.items()})
    valid = [(b.device_id.encode(), codec.encode_sensor(b)) for b in batches]
    half = len(valid) // 2
    send(kafka, sensor, valid[:half])
    dead_letters: dict[tuple[int, int], tuple[str, list]] = {}  # where -> reason, headers
    skipped: list[tuple[int, int, str]] = []
    for partition in (0, 1):
        key_batch = raw_records.batch([
            (b"poison-k", _sensor_value("poison-k", 0),
             [("ok", b"1"), (raw_records.RawKey(b"\xff\xfe"), b"v")])])
        at = raw_records.produce_batch(kafka, sensor, partition, key_batch)
        # the header with a text key as it was, then the whole header section as stored
        dead_letters[partition, at] = ("bad_header", [
            ("ok", b"1"), (HEADER_RAW_HEADERS, b"\x04\x04ok\x021\x04\xff\xfe\x02v")])
        value_headers = [("trace", b"\xff\xfe\x00"), ("\u00e9t\u00e9", b"")]
        at = raw_records.produce_batch(kafka, sensor, partition, raw_records.batch(
            [(b"poison-v", b"not json", value_headers)]))
        dead_letters[partition, at] = ("not_json", value_headers)
        records = [(b"poison-z", _sensor_value("poison-z", i), []) for i in range(3)]
        at = raw_records.produce_batch(kafka, sensor, partition,
                                       raw_records.undecompressable(records))
        skipped += [(partition, at + i, "bad_compression") for i in range(3)]
        at = raw_records.produce_batch(kafka, sensor, partition,
                                       raw_records.bad_checksum(records[:2]))
        skipped += [(partition, at + i, "bad_checksum") for i in range(2)]
    placed = send(kafka, sensor, valid[half:])
    ends = {p: 1 + max(o for q, o in placed + list(dead_letters) if q == p) for p in (0, 1)}
    for partition in (0, 1):  # unreadable as the very last record too: still committed
        at = raw_records.produce_batch(kafka, sensor, partition, raw_records.bad_checksum(
            [(b"poison-end", _sensor_value("poison-end", 0), [])]))
        skipped.append((partition, at, "bad_checksum"))
        ends[partition] = at + 1

    def skipped_total(reason: str) -> float:
        return REGISTRY.get_sample_value("har_records_skipped_total", {"reason": reason}) or 0.0

    before = {reason: skipped_total(reason) for reason in SKIP_REASONS}
    dead = TopicReader(kafka, settings.topics.dlq_topic)
    results = TopicReader(kafka, settings.topics.activity_topic)
    counts = TopicReader(kafka, settings.topics.counts_topic)
    try:
        with InProcessService(settings, FakeModel()) as service:
            results.until(lambda r: window_ids(r) >= set(expected.results), 90,
                          "valid results", service.check)
            counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts",
                         service.check)
            dead.until(lambda r: len(r) >= len(dead_letters), 30, "dead letters",
                       service.check)
            wait_for(lambda: sum(skipped_total(r) - before[r] for r in SKIP_REASONS)
                     >= len(skipped), 30, "skipped records counted")
            service.check()
        check_results(results.poll(), expected)
        letters = letters_by_source(dead.poll())
        assert set(letters) == set(dead_letters)
        for where, (reason, original) in dead_letters.items():
            headers = letters[where].headers
            assert dict(headers)[codec.HEADER_REASON] == reason.encode()
            assert headers[:len(original)] == original
        for reason in SKIP_REASONS:
            assert skipped_total(reason) - before[reason] == sum(
                1 for *_, why in skipped if why == reason), reason
        group = make_consumer(kafka, settings.group_id)
        try:
            committed = {p: group.committed(Partition(sensor, p)) for p in (0, 1)}
        finally:
            group.close()
        assert committed == ends, "every offset, skipped ones included, is committed"
    finally:
        for reader in (dead, results, counts):
            reader.close()
    print(f"\n{client}: {len(dead_letters)} dead-lettered, {len(skipped)} skipped and counted, "
          f"{len(expected.results)} valid windows unchanged")


@pytest.mark.parametrize("client", ["librdkafka", "kafka-python"])
def test_a_seeded_mix_of_unreadable_batches_between_valid_streams(
        service_settings: Settings, client: str) -> None:
    """`hostile_corpus.unreadable_batches`: invalid UTF-8 of every kind in header keys (plain,
    gzip and zstd batches) and values, batches flagged gzip/snappy/lz4/zstd over plain
    bytes, checksum failures; interleaved with valid streams on both partitions. Each record
    ends as the corpus says, the valid results equal the offline run, and every offset is
    committed."""
    settings = dataclasses.replace(service_settings, kafka=dataclasses.replace(
        service_settings.kafka, consumer_client=client))
    kafka, sensor = settings.kafka, settings.topics.sensor_topic
    streams = {f"mix-ok-{i}": synthetic_samples(640, seed=140 + i) for i in range(4)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    valid = [(b.device_id.encode(), codec.encode_sensor(b)) for b in interleave(
        {d: batches_of(d, s, 40, T0_MS) for d, s in streams.items()})]
    bad = unreadable_batches(24, seed=11)
    dead_letters: dict[tuple[int, int], tuple[str, tuple]] = {}
    skipped: dict[str, int] = {}
    ends: dict[int, int] = {}
    step = max(len(valid) // len(bad), 1)
    for i, item in enumerate(bad):
        placed = send(kafka, sensor, valid[i * step:(i + 1) * step])
        partition = i % 2
        at = raw_records.produce_batch(kafka, sensor, partition, item.data)
        for j in range(item.records):
            if item.outcome == "dead_letter":
                dead_letters[partition, at + j] = (item.reason, item.headers)
            else:
                skipped[item.reason] = skipped.get(item.reason, 0) + 1
        for p, offset in [*placed, (partition, at + item.records - 1)]:
            ends[p] = max(ends.get(p, 0), offset + 1)
    for p, offset in send(kafka, sensor, valid[len(bad) * step:]):
        ends[p] = max(ends.get(p, 0), offset + 1)

    def skipped_total(reason: str) -> float:
        return REGISTRY.get_sample_value("har_records_skipped_total", {"reason": reason}) or 0.0

    before = {reason: skipped_total(reason) for reason in SKIP_REASONS}
    dead = TopicReader(kafka, settings.topics.dlq_topic)
    results = TopicReader(kafka, settings.topics.activity_topic)
    try:
        with InProcessService(settings, FakeModel()) as service:
            results.until(lambda r: window_ids(r) >= set(expected.results), 90,
                          "valid results", service.check)
            dead.until(lambda r: len(r) >= len(dead_letters), 30, "dead letters",
                       service.check)
            wait_for(lambda: sum(skipped_total(r) - before[r] for r in SKIP_REASONS)
                     >= sum(skipped.values()), 30, "skipped records counted")
            service.check()
        check_results(results.poll(), expected)
        letters = {(int(dict(x.headers)[codec.HEADER_SOURCE_PARTITION]),
                    int(dict(x.headers)[codec.HEADER_SOURCE_OFFSET])): x for x in dead.poll()}
        assert set(letters) == set(dead_letters)
        for where, (reason, headers) in dead_letters.items():
            got = letters[where].headers
            assert dict(got)[codec.HEADER_REASON] == reason.encode(), (where, got)
            assert got[:len(headers)] == list(headers), (where, got)
        assert {r: skipped_total(r) - before[r] for r in skipped} == skipped
        group = make_consumer(kafka, settings.group_id)
        try:
            committed = {p: group.committed(Partition(sensor, p)) for p in ends}
        finally:
            group.close()
        assert committed == ends
    finally:
        dead.close()
        results.close()
    print(f"\n{client}: {len(bad)} unreadable batches: {len(dead_letters)} records "
          f"dead-lettered, skipped {skipped}; {len(expected.results)} valid windows unchanged")
