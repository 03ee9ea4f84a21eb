"""Records through every driver: what goes in comes out, where the port says it lands.

A record's key, value and headers come back as sent (no key, an empty value and no headers
included); a keyed record lands on murmur2(key) % partitions whichever driver sent it, an
explicit partition wins; an `Acknowledged` says where and when; a record larger than the
client will ever send is `RecordRefused`, and the records after it are unharmed; a record
the client cannot read whole comes as `Damaged` at its offset, the partition goes on.
"""

from __future__ import annotations

import time

import pytest
from contract_support import WAIT_S, Kafka, consume, send_all
from kafka.partitioner import murmur2 as reference_murmur2

from har_stream.kafka.ports import (
    BAD_CHECKSUM,
    BAD_COMPRESSION,
    BAD_HEADER,
    Acknowledged,
    Damaged,
    KafkaFailure,
    Partition,
    Record,
    RecordRefused,
)


def test_a_record_comes_back_with_its_key_value_and_headers(driver: Kafka) -> None:
    topic = driver.topic()
    sent = [(b"device-1", b'{"x": 1}', [("har.kind", b"sensor"), ("empty", b"")]),
            (None, b"no key", [("only", b"one")]),
            (b"device-2", b"", []),
            (b"device-3", None, [("tombstone", b"1")])]
    producer = driver.producer()
    deliveries = [producer.send(topic, key=k, value=v, headers=h, partition=0)
                  for k, v, h in sent]
    producer.flush(WAIT_S)
    assert [d.get(WAIT_S).offset for d in deliveries] == [0, 1, 2, 3]

    consumer = driver.consumer()
    consumer.assign([Partition(topic, 0)])
    got = consume(consumer, len(sent))
    assert all(isinstance(r, Record) for r in got)
    assert [(r.topic, r.partition, r.offset) for r in got] == [(topic, 0, n) for n in range(4)]
    assert [(r.key, r.value, list(r.headers or [])) for r in got] == [
        (k, v, h) for k, v, h in sent]


def test_keyed_records_land_on_murmur2_of_the_key_an_explicit_partition_wins(
        driver: Kafka) -> None:
    topic = driver.topic(partitions=5)
    keys = [f"device-{n}".encode() for n in range(40)]
    acknowledged = send_all(driver.producer(), topic, [b"v"] * len(keys), partition=None,
                            key=lambda i: keys[i])
    expected = [(reference_murmur2(k) & 0x7FFFFFFF) % 5 for k in keys]
    assert [a.partition for a in acknowledged] == expected
    assert len(set(expected)) == 5, "the keys spread over every partition"

    explicit = send_all(driver.producer(), topic, [b"v"] * 3, partition=3,
                        key=lambda _i: keys[0])
    assert [a.partition for a in explicit] == [3, 3, 3]


def test_acknowledged_says_where_the_record_is_and_callbacks_run_once(driver: Kafka) -> None:
    topic = driver.topic(partitions=2)
    producer = driver.producer()
    before_ms = time.time() * 1000
    outcomes: list[Acknowledged | KafkaFailure] = []
    deliveries = [producer.send(topic, key=b"k", value=f"v{n}".encode(), partition=1)
                  .add_both(outcomes.append) for n in range(3)]
    producer.flush(WAIT_S)
    producer.serve()
    after = time.time()
    assert outcomes == [d.get(0) for d in deliveries], "each callback once, in send order"
    for n, acknowledged in enumerate(outcomes):
        assert isinstance(acknowledged, Acknowledged)
        assert (acknowledged.topic, acknowledged.partition, acknowledged.offset) == (
            topic, 1, n)
        assert before_ms - 1000 <= acknowledged.timestamp <= after * 1000 + 1000
        assert acknowledged.acknowledged_at is None or (
            before_ms / 1000 - 1 <= acknowledged.acknowledged_at <= after + 1)

    consumer = driver.consumer()
    consumer.assign([Partition(topic, 1)])
    got = consume(consumer, 3)
    assert [r.timestamp for r in got] == [a.timestamp for a in outcomes]  # type: ignore[union-attr]
    late: list[object] = []
    deliveries[0].add_both(late.append)
    producer.serve()
    assert late == [outcomes[0]], "a callback added after the outcome runs too"


def test_a_record_too_large_to_send_is_refused_and_the_rest_goes_on(driver: Kafka) -> None:
    topic = driver.topic()
    producer = driver.producer()
    huge = b"x" * (3 * 1024 * 1024)
    with pytest.raises(RecordRefused):
        producer.send(topic, key=b"k", value=huge, partition=0).get(WAIT_S)
    assert [a.offset for a in send_all(producer, topic, [b"small"])] == [0]


def test_a_record_that_cannot_be_read_whole_comes_as_damaged_in_its_place(
        driver: Kafka) -> None:
    topic = driver.topic()
    producer = driver.producer()
    send_all(producer, topic, [b"before"])
    placed = [driver.unreadable(topic, 0, reason, b"k", b"value ")
              for reason in (BAD_HEADER, BAD_CHECKSUM, BAD_COMPRESSION)]
    assert placed == [1, 2, 3]
    send_all(producer, topic, [b"after"])
    consumer = driver.consumer()
    consumer.assign([Partition(topic, 0)])
    got = consume(consumer, 5)
    assert [(type(r).__name__, r.offset) for r in got] == [
        ("Record", 0), ("Damaged", 1), ("Damaged", 2), ("Damaged", 3), ("Record", 4)]
    header, checksum, compression = got[1:4]
    assert isinstance(header, Damaged) and isinstance(checksum, Damaged)
    assert isinstance(compression, Damaged)
    assert (header.reason, header.readable, header.key, header.value) == (
        BAD_HEADER, True, b"k", b"value ")
    assert ("ok", b"1") in (header.headers or []), "its text-keyed headers as stored"
    assert [(d.reason, d.readable) for d in (checksum, compression)] == [
        (BAD_CHECKSUM, False), (BAD_COMPRESSION, False)]
    assert consumer.position(Partition(topic, 0)) == 5, "past them"


def test_a_record_of_neither_key_nor_value_is_stored_or_refused_at_once(driver: Kafka) -> None:
    topic = driver.topic()
    producer = driver.producer()
    try:
        delivery = producer.send(topic, key=None, value=None, partition=0)
    except RecordRefused:  # a client that never sends one says so, in the port's terms
        return
    producer.flush(WAIT_S)
    assert delivery.get(WAIT_S).offset == 0
    consumer = driver.consumer()
    consumer.assign([Partition(topic, 0)])
    assert [(r.key, r.value) for r in consume(consumer, 1)] == [(None, None)]
