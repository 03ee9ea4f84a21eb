"""The in-memory cluster's test controls (the port semantics are the contract suite's).

What a test steers: acknowledgements held and released, the cluster out of reach, records
refused at send or at acknowledgement, a damaged record, a topic that only counts, a member
expelled, a compacted topic; and what a test reads: the records a topic holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import pytest

from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.drivers.memory_log import COMPACT_REBUILD_AT
from har_stream.kafka.ports import (
    BAD_CHECKSUM,
    BAD_HEADER,
    Acknowledged,
    CommitFailed,
    Damaged,
    KafkaFailure,
    KafkaTimeout,
    Partition,
    Record,
    RecordRefused,
    TopicMissing,
)


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    def on_partitions_revoked(self, partitions: list[Partition]) -> None:
        self.events.append(("revoked", {p.partition for p in partitions}))

    def on_partitions_assigned(self, partitions: list[Partition]) -> None:
        self.events.append(("assigned", {p.partition for p in partitions}))

    def on_partitions_lost(self, partitions: list[Partition]) -> None:
        self.events.append(("lost", {p.partition for p in partitions}))


def _values(polled: Mapping[Partition, list[Record | Damaged]]) -> list[bytes | None]:
    return [r.value for records in polled.values() for r in records]


def test_held_acknowledgements_wait_for_the_test_oldest_first_across_producers() -> None:
    cluster = MemoryCluster(auto_acknowledge=False, waits=False)
    cluster.create_topic("t")
    first, second = cluster.producer(), cluster.producer()
    outcomes: list[object] = []
    first.send("t", value=b"a").add_both(outcomes.append)
    second.send("t", value=b"b").add_both(outcomes.append)
    first.send("t", value=b"c").add_both(outcomes.append)
    first.serve()
    second.serve()
    assert outcomes == [] and cluster.pending() == 3 and cluster.records("t") == []
    with pytest.raises(KafkaTimeout):
        first.flush(5.0)

    assert cluster.acknowledge(2) == 2
    assert [r.value for r in cluster.records("t")] == [b"a", b"b"]
    assert outcomes == [], "callbacks run in their producer's next call"
    first.serve()
    second.serve()
    assert [o.offset for o in outcomes] == [0, 1]  # type: ignore[attr-defined]
    assert cluster.acknowledge() == 1
    first.flush()
    assert [o.offset for o in outcomes] == [0, 1, 2]  # type: ignore[attr-defined]


def test_automatic_acknowledgement_happens_at_the_producers_next_call() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t")
    producer = cluster.producer()
    delivery = producer.send("t", value=b"a")
    assert cluster.records("t") == []
    producer.send("t", value=b"b")
    assert [r.value for r in cluster.records("t")] == [b"a"]
    assert delivery.get(0).offset == 0
    producer.serve()
    assert cluster.count("t") == 2


def test_an_unreachable_cluster_answers_nothing_and_keeps_what_was_sent() -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("t", partitions=2)
    producer, consumer = cluster.producer(), cluster.consumer("g")
    consumer.assign([Partition("t", 0)])
    cluster.reachable = False
    assert consumer.connected() is False
    delivery = producer.send("t", value=b"a", partition=0)
    with pytest.raises(KafkaTimeout):
        producer.flush(1.0)
    for call in (consumer.topics, lambda: consumer.commit({Partition("t", 0): 0}),
                 lambda: consumer.committed(Partition("t", 0)),
                 lambda: producer.partitions_for("t"), lambda: cluster.admin().create_topics(
                     {})):
        with pytest.raises(KafkaTimeout):
            call()
    assert cluster.acknowledge() == 0 and cluster.pending() == 1
    assert consumer.poll(timeout_ms=100) == {}

    cluster.reachable = True
    producer.flush()
    assert delivery.get(0).offset == 0
    assert _values(consumer.poll()) == [b"a"] and consumer.connected() is True


def test_refusals_at_acknowledgement_fail_the_delivery_and_at_send_raise() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t")
    cluster.refuse = lambda topic, key, value, headers, partition: (
        RecordRefused("invalid", code=87) if value == b"bad" else None)
    cluster.refuse_at_send = lambda topic, key, value, headers, partition: (
        KafkaTimeout("queue full") if key == b"full" else None)
    producer = cluster.producer()
    with pytest.raises(KafkaTimeout):
        producer.send("t", key=b"full", value=b"x")
    bad, good = producer.send("t", value=b"bad"), producer.send("t", value=b"good")
    producer.flush()
    with pytest.raises(RecordRefused):
        bad.get()
    assert good.get().offset == 0
    assert [r.value for r in cluster.records("t")] == [b"good"]
    with pytest.raises(RecordRefused):
        producer.send("t", value=b"x" * (cluster.max_record_bytes + 1))


def test_a_damaged_record_comes_as_damaged_in_its_place() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t")
    producer = cluster.producer()
    for n in range(4):
        producer.send("t", key=b"k", value=f"v{n}".encode(), headers=[("h", b"1")])
    producer.flush()
    cluster.damage("t", 0, 1, BAD_CHECKSUM)
    cluster.damage("t", 0, 2, BAD_HEADER)
    consumer = cluster.consumer()
    consumer.assign([Partition("t", 0)])
    got = consumer.poll()[Partition("t", 0)]
    assert [type(r) for r in got] == [Record, Damaged, Damaged, Record]
    skipped, readable = got[1], got[2]
    assert isinstance(skipped, Damaged) and isinstance(readable, Damaged)
    assert (skipped.offset, skipped.reason, skipped.readable, skipped.value) == (
        1, BAD_CHECKSUM, False, None)
    assert (readable.offset, readable.readable, readable.key, readable.value,
            readable.headers) == (2, True, b"k", b"v2", [("h", b"1")])


def test_a_topic_that_does_not_retain_counts_its_records_only() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("bulk", partitions=2, retain=False)
    producer = cluster.producer()
    acknowledged = [producer.send("bulk", key=f"d{n}".encode(), value=b"v") for n in range(50)]
    producer.flush()
    assert cluster.count("bulk") == 50 and cluster.records("bulk") == []
    assert sorted(d.get().offset for d in acknowledged if d.get().partition == 0) == list(
        range(sum(1 for d in acknowledged if d.get().partition == 0)))
    consumer = cluster.consumer()
    consumer.assign([Partition("bulk", 0), Partition("bulk", 1)])
    assert consumer.poll() == {}
    assert (consumer.highwater(Partition("bulk", 0)) or 0) + (
        consumer.highwater(Partition("bulk", 1)) or 0) == 50


def test_an_expelled_member_hears_lost_then_joins_again_and_cannot_commit_meanwhile() -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("t", partitions=4)
    a, b = cluster.consumer("g"), cluster.consumer("g")
    heard_a, heard_b = Listener(), Listener()
    a.subscribe(["t"], heard_a)
    b.subscribe(["t"], heard_b)
    a.poll()
    b.poll()
    assert heard_a.events == [("assigned", {0, 1})] and heard_b.events == [
        ("assigned", {2, 3})], "range assignment in join order; the first join folded in"

    cluster.expel(a)
    with pytest.raises(CommitFailed):
        a.commit({Partition("t", 0): 1})
    b.poll()
    assert heard_b.events[1:] == [("revoked", {2, 3}), ("assigned", {0, 1, 2, 3})]
    a.poll()
    assert heard_a.events[1:] == [("lost", {0, 1}), ("assigned", {2, 3})], "joined last"
    b.poll()
    assert heard_b.events[3:] == [("revoked", {0, 1, 2, 3}), ("assigned", {0, 1})]
    assert cluster.committed_offsets("g") == {}


def test_a_member_cannot_commit_what_moves_away_but_may_while_it_is_revoked() -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("t", partitions=2)
    a = cluster.consumer("g")

    class CommitsOnRevoke(Listener):
        def on_partitions_revoked(self, partitions: list[Partition]) -> None:
            super().on_partitions_revoked(partitions)
            a.commit({p: 0 for p in partitions})

    a.subscribe(["t"], CommitsOnRevoke())
    a.poll()
    b = cluster.consumer("g")
    b.subscribe(["t"])
    with pytest.raises(CommitFailed):
        a.commit({Partition("t", 1): 0})
    a.commit({Partition("t", 0): 0})  # still its own after the rebalance
    a.poll()  # the revocation commits both: allowed inside the callback
    assert cluster.committed_offsets("g") == {Partition("t", 0): 0, Partition("t", 1): 0}
    assert a.assignment() == {Partition("t", 0)}
    a.commit({Partition("t", 1): 1})  # joined again: as Kafka, the group does not check
    assert cluster.committed_offsets("g")[Partition("t", 1)] == 1


def test_a_compacted_topic_keeps_the_latest_record_per_key() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("log", configs={"cleanup.policy": "compact"})
    producer = cluster.producer()
    writes = 3 * COMPACT_REBUILD_AT
    for n in range(writes):
        producer.send("log", key=f"d{n % 10}".encode(), value=str(n).encode(), partition=0)
    refused = producer.send("log", value=b"no key", partition=0)
    producer.flush()
    with pytest.raises(RecordRefused):
        refused.get()
    latest = cluster.records("log")
    assert [(r.key, r.value, r.offset) for r in latest] == [
        (f"d{n % 10}".encode(), str(n).encode(), n) for n in range(writes - 10, writes)]
    consumer = cluster.consumer()
    consumer.assign([Partition("log", 0)])
    consumer.seek(Partition("log", 0), writes - 5)
    assert [r.offset for r in consumer.poll()[Partition("log", 0)]] == list(
        range(writes - 5, writes))


def test_no_topic_is_created_by_sending_and_a_recreated_one_has_a_new_id() -> None:
    cluster = MemoryCluster()
    producer = cluster.producer()
    early = producer.send("late", value=b"waits", partition=0)
    lost = producer.send("never", value=b"x")
    producer.flush()
    for delivery in (early, lost):
        with pytest.raises(TopicMissing):
            delivery.get()
    assert set(cluster.topics) == set()
    first_id = cluster.create_topic("late")
    cluster.admin().delete_topics(["late"])
    with pytest.raises(KafkaFailure):
        cluster.admin().delete_topics(["late"])
    assert cluster.create_topic("late") != first_id


def test_a_poll_waits_for_a_record_sent_from_another_thread() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("t")
    consumer = cluster.consumer()
    consumer.assign([Partition("t", 0)])
    producer = cluster.producer()

    def send() -> None:
        producer.send("t", value=b"hello")
        producer.flush()

    sender = threading.Timer(0.05, send)
    sender.start()
    started = time.monotonic()
    polled = consumer.poll(timeout_ms=60_000)
    waited_s = time.monotonic() - started
    sender.join()
    assert _values(polled) == [b"hello"]
    assert waited_s < 30, "woken by the record, not by the end of the poll's timeout"
    assert isinstance(producer.send("t", value=b"x").get(1.0), Acknowledged)


def test_a_forced_rebalance_revokes_and_gives_back_and_put_stores_as_another_client() -> None:
    cluster = MemoryCluster(waits=False, wall=lambda: 1_700_000_000.0)
    cluster.create_topic("t", partitions=2)
    member, heard = cluster.consumer("g"), Listener()
    member.subscribe(["t"], heard)
    assert cluster.put("t", 1, b"k", b"v", [("h", b"1")]) == 0
    assert cluster.put("t", 1, b"k", b"w", timestamp_ms=5) == 1
    got = member.poll()[Partition("t", 1)]
    assert [(r.offset, r.timestamp, r.value, r.headers) for r in got] == [
        (0, 1_700_000_000_000, b"v", [("h", b"1")]), (1, 5, b"w", [])]
    member.commit({Partition("t", 1): 1})
    cluster.rebalance("g")
    assert member.poll()[Partition("t", 1)][0].offset == 1, "positions from the commits"
    assert heard.events == [("assigned", {0, 1}), ("revoked", {0, 1}), ("assigned", {0, 1})]


def test_a_topic_may_keep_the_records_of_some_keys_only() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("log", configs={"cleanup.policy": "compact"})
    cluster.retain("log", lambda key: key is not None and key.startswith(b"back-"))
    producer = cluster.producer()
    for key in (b"gone-1", b"back-1", b"gone-2", b"back-1"):
        producer.send("log", key=key, value=b"s")
    producer.flush()
    assert [(r.key, r.offset) for r in cluster.records("log")] == [(b"back-1", 3)]
    assert cluster.count("log") == 4


def test_the_journal_keeps_the_order_of_sends_flushes_and_commits() -> None:
    cluster = MemoryCluster()
    cluster.create_topic("out")
    cluster.journal = []
    producer, consumer = cluster.producer(), cluster.consumer("g")
    producer.send("out", value=b"r")
    producer.serve()
    producer.flush()
    consumer.commit({Partition("out", 0): 1})
    assert cluster.journal == ["send out", "flush", "commit"]
