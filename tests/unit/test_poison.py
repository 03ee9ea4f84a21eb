"""Records the Kafka client cannot hand over: the loop's handling, the raw reader, the check
for a deleted sensor topic. The clients against a real broker: tests/integration/
test_reliability_fuzz.py and test_reliability_topics.py."""

from __future__ import annotations

import logging

import pytest
import raw_records
from reliability_support import Harness, Message
from service_support import batches_of, synthetic_samples

from har_stream.core import codec
from har_stream.kafka.poison import BAD_CHECKSUM, BAD_HEADER, HEADER_RAW_HEADERS
from har_stream.kafka.raw_fetch import _batch_at, _record_in
from har_stream.service import metrics
from har_stream.service.loop import ServiceError
from har_stream.service.settings import Settings, TopicSettings

TOPICS = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                       counts_topic="counts", changelog_topic="log")
SETTINGS = Settings(topics=TOPICS, commit_interval_s=0, idle_ttl_s=0, metrics_address="")


def _valid(count: int) -> list[Message]:
    batches = batches_of("dev", synthetic_samples(50 * count, seed=5), 50)
    return [Message(b"dev", codec.encode_sensor(b)) for b in batches]


def test_damaged_records_are_skipped_or_dead_lettered_and_their_offsets_committed(
        caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(SETTINGS)
    skipped = metrics.RECORDS_SKIPPED.labels(reason=BAD_CHECKSUM)
    before = skipped._value.get()
    raw = [("ok", b"1"), (HEADER_RAW_HEADERS, b"\x02\x04\xff\xfe\x02v")]
    placed = h.feed([*_valid(3), Message(b"dev", b"{}"), Message(b"dev", b"{}", 0, raw),
                     *_valid(3)])
    assert placed[3:5] == [(0, 3), (0, 4)]
    h.cluster.damage("in", 0, 3, BAD_CHECKSUM)  # the client cannot read it at all
    h.cluster.damage("in", 0, 4, BAD_HEADER)  # a header key that is not text
    with caplog.at_level(logging.ERROR):
        h.drain()
    assert skipped._value.get() - before == 1
    assert "skipped in[0]@3" in caplog.text and "bad_checksum" in caplog.text
    (letter,) = h.sent("dlq")
    headers = dict(letter.headers or [])
    assert (letter.key, letter.value) == (b"dev", b"{}")
    assert headers[codec.HEADER_REASON] == b"bad_header"
    assert headers[HEADER_RAW_HEADERS] == raw[1][1] and headers["ok"] == b"1"
    assert headers[codec.HEADER_SOURCE_OFFSET] == b"4"
    assert h.committed()[0] == 8, "past the damaged records too"
    assert h.sent("out"), "the valid records around them are processed"


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
    h = Harness(SETTINGS)
    h.feed(_valid(3))
    h.service.step()
    h.cluster.admin().delete_topics(["in"])  # the group gives this member nothing
    with pytest.raises(ServiceError, match="no longer exists"):
        h.service.step()
