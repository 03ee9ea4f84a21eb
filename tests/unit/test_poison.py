"""Records the Kafka client cannot hand over: the loop's handling, the raw reader, the check
for a deleted sensor topic. The clients against a real broker: tests/integration/
test_reliability_fuzz.py and test_reliability_topics.py."""

from __future__ import annotations

import logging

import pytest
import raw_records
from reliability_support import Record, make_service
from service_support import FakeModel, batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.kafka.poison import BAD_CHECKSUM, BAD_HEADER, HEADER_RAW_HEADERS, Damaged
from har_stream.kafka.raw_fetch import _batch_at, _record_in
from har_stream.service import metrics
from har_stream.service.loop import ServiceError
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, metrics_address="")


def _valid(offsets: range) -> list[Record]:
    batches = batches_of("dev", synthetic_samples(50 * len(offsets), seed=5), 50)
    return [Record("in", 0, o, b"dev", codec.encode_sensor(b))
            for o, b in zip(offsets, batches, strict=True)]


def test_damaged_records_are_skipped_or_dead_lettered_and_their_offsets_committed(
        caplog: pytest.LogCaptureFixture) -> None:
    service, consumer, producer = make_service(SETTINGS, FakeModel())
    skipped = metrics.RECORDS_SKIPPED.labels(reason=BAD_CHECKSUM)
    before = skipped._value.get()
    raw = [("ok", b"1"), (HEADER_RAW_HEADERS, b"\x02\x04\xff\xfe\x02v")]
    consumer.feed([*_valid(range(0, 3)),
                   Damaged("in", 0, 3, BAD_CHECKSUM, "checksum"),  # type: ignore[list-item]
                   Damaged("in", 0, 4, BAD_HEADER, "header key", b"dev", b"{}", 1, raw),
                   *_valid(range(5, 8))])
    with caplog.at_level(logging.ERROR):
        while consumer.queue or consumer.events:
            service.step()
            service.checkpoint()
    assert skipped._value.get() - before == 1
    assert "skipped in[0]@3" in caplog.text and "bad_checksum" in caplog.text
    (letter,) = producer.sent["dlq"]
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (b"dev", b"{}")
    assert headers[codec.HEADER_REASON] == b"bad_header"
    assert headers[HEADER_RAW_HEADERS] == raw[1][1] and headers["ok"] == b"1"
    assert headers[codec.HEADER_SOURCE_OFFSET] == b"4"
    assert consumer.committed_offsets[0] == 8, "past the damaged records too"
    assert producer.sent["out"], "the valid records around them are processed"


def test_the_raw_reader_finds_a_record_in_a_compressed_batch_without_decoding_headers() -> None:
    first = raw_records.batch([(b"a", b"1" * 300, [])])
    second = raw_records.batch([
        (b"k0", b"v" * 300, []),
        (b"k1", b"w" * 300, [("ok", b"1"), (raw_records.RawKey(b"\xff\xfe"), None)])],
        compression=raw_records.GZIP)
    second[0:8] = (1).to_bytes(8, "big")  # the broker sets the base offset
    data = bytes(first + second)
    start, end, size = _batch_at(data, 2)  # type: ignore[misc]
    assert (start, end) == (len(first), 3)
    record = _record_in(data[start:start + size], 2)
    assert record is not None
    assert (record.key, record.value) == (b"k1", b"w" * 300)
    assert record.headers == [(b"ok", b"1"), (b"\xff\xfe", None)]
    assert record.raw_headers == b"\x04\x04ok\x021\x04\xff\xfe\x01"
    assert _batch_at(data, 3) is None


def test_a_rebalance_that_leaves_no_partitions_checks_that_the_sensor_topic_exists() -> None:
    service, consumer, _producer = make_service(SETTINGS, FakeModel())

    present = {"in"}
    consumer.topic_id = lambda topic: "id-1" if topic in present else None  # type: ignore[method-assign]
    consumer.topics = lambda: set(present)  # type: ignore[method-assign]
    consumer.feed(_valid(range(0, 3)))
    service.step()
    present.clear()  # the topic is deleted: the group gives this member nothing
    consumer.rebalance("revoked", list(range(8)))
    consumer.rebalance("assigned", [])
    with pytest.raises(ServiceError, match="no longer exists"):
        service.step()
