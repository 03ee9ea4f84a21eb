"""Reading by hand through every driver: assign, seek, positions, commits, pause and resume.

Offsets are Kafka's: `commit({p: n})` means records below n are done, a consumer of the
group starts at n; `position` is the next offset a poll hands over; `highwater` the end of
the partition as of the last fetch. A paused partition delivers nothing and, resumed,
delivers everything it held back, once.
"""

from __future__ import annotations

import threading
import time

from contract_support import Kafka, consume, group_name, poll_until, send_all

from har_stream.kafka.ports import Partition


def _values(n: int, tag: str = "v") -> list[bytes]:
    return [f"{tag}{i}".encode() for i in range(n)]


def test_commit_is_the_next_offset_to_read_and_a_new_reader_starts_there(
        driver: Kafka) -> None:
    topic, group = driver.topic(), group_name()
    p = Partition(topic, 0)
    send_all(driver.producer(), topic, _values(10))
    first = driver.consumer(group)
    first.assign([p])
    assert first.committed(p) is None, "nothing committed yet"
    assert [r.offset for r in consume(first, 10)] == list(range(10))
    assert first.position(p) == 10
    first.commit({p: 4})
    assert first.committed(p) == 4
    first.close()

    second = driver.consumer(group)
    second.assign([p])
    assert second.committed(p) == 4
    assert [r.offset for r in consume(second, 6)] == list(range(4, 10))
    assert second.position(p) == 10


def test_seek_moves_the_next_poll_and_seek_to_beginning_starts_over(driver: Kafka) -> None:
    topic = driver.topic(partitions=2)
    send_all(driver.producer(), topic, _values(8), partition=1)
    p = Partition(topic, 1)
    consumer = driver.consumer()
    consumer.assign([p])
    assert [r.offset for r in consume(consumer, 8)] == list(range(8))
    consumer.seek(p, 5)
    assert [r.value for r in consume(consumer, 3)] == _values(8)[5:]
    consumer.seek_to_beginning(p)
    assert [r.offset for r in consume(consumer, 8)] == list(range(8))
    consumer.seek(p, 2)
    consumer.seek_to_beginning()  # no partition named: every assigned one
    assert consume(consumer, 1)[0].offset == 0


def test_assign_reads_exactly_the_partitions_given(driver: Kafka) -> None:
    topic = driver.topic(partitions=3)
    producer = driver.producer()
    for partition in range(3):
        send_all(producer, topic, _values(4, f"p{partition}-"), partition=partition)
    consumer = driver.consumer()
    consumer.assign([Partition(topic, 2), Partition(topic, 0)])
    assert consumer.assignment() == {Partition(topic, 2), Partition(topic, 0)}
    got = consume(consumer, 8)
    assert sorted(r.value or b"" for r in got) == sorted(_values(4, "p0-") + _values(4, "p2-"))
    by_partition = {p: [r.offset for r in got if r.partition == p] for p in (0, 2)}
    assert by_partition == {0: [0, 1, 2, 3], 2: [0, 1, 2, 3]}, "offset order per partition"
    consumer.assign([])
    assert consumer.assignment() == set()
    assert consume(consumer, 1, wait_s=0.5) == []


def test_a_poll_hands_at_most_max_records_grouped_by_partition(driver: Kafka) -> None:
    topic = driver.topic(partitions=2)
    producer = driver.producer()
    send_all(producer, topic, _values(10), partition=0)
    send_all(producer, topic, _values(10), partition=1)
    consumer = driver.consumer()
    consumer.assign([Partition(topic, 0), Partition(topic, 1)])
    seen: dict[int, list[int]] = {0: [], 1: []}
    while sum(map(len, seen.values())) < 20:
        polled = consumer.poll(timeout_ms=200, max_records=3)
        assert sum(map(len, polled.values())) <= 3
        for partition, records in polled.items():
            assert type(partition) is Partition, "keyed by our Partition, not a library's"
            assert all(r.partition == partition.partition for r in records)
            seen[partition.partition].extend(r.offset for r in records)
    assert seen == {0: list(range(10)), 1: list(range(10))}


def test_highwater_is_the_partition_end_as_of_the_last_fetch(driver: Kafka) -> None:
    topic = driver.topic()
    p = Partition(topic, 0)
    producer = driver.producer()
    send_all(producer, topic, _values(5))
    consumer = driver.consumer()
    consumer.assign([p])
    assert consumer.highwater(p) is None, "nothing fetched yet"
    consume(consumer, 5)
    assert consumer.highwater(p) == 5
    send_all(producer, topic, _values(3))
    consume(consumer, 3)
    assert consumer.highwater(p) == 8
    assert consumer.position(p) == 8


def test_a_paused_partition_delivers_nothing_until_resumed_then_all_of_it(
        driver: Kafka) -> None:
    topic = driver.topic(partitions=2)
    producer = driver.producer()
    p0, p1 = Partition(topic, 0), Partition(topic, 1)
    consumer = driver.consumer()
    consumer.assign([p0, p1])
    consumer.pause(p0)
    send_all(producer, topic, _values(6), partition=0)
    send_all(producer, topic, _values(6), partition=1)
    got = consume(consumer, 6)
    assert {r.partition for r in got} == {1}
    more: list = []
    send_all(producer, topic, _values(2, "late"), partition=1)
    assert poll_until([consumer], lambda: len(more) >= 2, seen=more)
    assert {r.partition for r in more} == {1}, "still nothing of the paused partition"

    consumer.resume(p0)
    resumed = consume(consumer, 6)
    assert [(r.partition, r.offset) for r in resumed] == [(0, n) for n in range(6)]
    assert consume(consumer, 1, wait_s=0.5) == [], "nothing twice"


def test_what_a_consumer_does_not_know_is_none(driver: Kafka) -> None:
    topic = driver.topic(partitions=2)
    send_all(driver.producer(), topic, _values(3))
    p0, p1 = Partition(topic, 0), Partition(topic, 1)
    reader = driver.consumer()  # no group: nothing committed, nothing to commit to
    reader.assign([p0])
    consume(reader, 3)
    assert reader.committed(p0) is None
    assert (reader.position(p1), reader.highwater(p1)) == (None, None), "not assigned"
    assert (reader.position(p0), reader.highwater(p0)) == (3, 3)


def test_a_seek_before_the_first_fetch_is_where_reading_starts(driver: Kafka) -> None:
    topic = driver.topic()
    send_all(driver.producer(), topic, _values(8))
    p = Partition(topic, 0)
    consumer = driver.consumer()
    consumer.assign([p])
    consumer.seek(p, 5)
    assert [r.offset for r in consume(consumer, 3)] == [5, 6, 7]


def test_a_poll_returns_as_soon_as_a_record_arrives(driver: Kafka) -> None:
    topic = driver.topic()
    p = Partition(topic, 0)
    consumer = driver.consumer()
    consumer.assign([p])
    assert consume(consumer, 1, wait_s=0.5) == []  # connected, position known: nothing yet
    producer = driver.producer()
    sender = threading.Timer(0.3, lambda: send_all(producer, topic, [b"now"]))
    sender.start()
    started = time.monotonic()
    polled = consumer.poll(timeout_ms=30_000)
    waited_s = time.monotonic() - started
    sender.join()
    got = [r.value for records in polled.values() for r in records]
    got += [r.value for r in consume(consumer, 1 - len(got))]  # a first poll may be empty
    assert got == [b"now"]
    assert waited_s < 15, "the poll ended when the record came, not at its timeout"
