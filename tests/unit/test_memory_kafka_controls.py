"""The in-memory cluster's controls that the service tests steer it with: acknowledging one
producer's records, what waits per topic, and removing consumed records (DeleteRecords)."""

from __future__ import annotations

from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.ports import Partition


def test_acknowledge_can_answer_one_producer_and_pending_counts_per_topic() -> None:
    cluster = MemoryCluster(auto_acknowledge=False, waits=False)
    cluster.create_topic("a")
    cluster.create_topic("b")
    first, second = cluster.producer(), cluster.producer()
    first.send("a", b"k", b"1")
    second.send("b", b"k", b"2")
    first.send("b", b"k", b"3")
    assert (cluster.pending(), cluster.pending("a"), cluster.pending("b")) == (3, 1, 2)
    assert cluster.acknowledge(producer=second) == 1
    assert [r.value for r in cluster.records("b")] == [b"2"] and cluster.pending("a") == 1
    assert cluster.acknowledge(1, producer=first) == 1
    assert [r.value for r in cluster.records("a")] == [b"1"] and cluster.pending() == 1


def test_deleted_records_are_gone_and_a_reader_starts_after_them() -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("t", partitions=2)
    cluster.create_topic("c", configs={"cleanup.policy": "compact"})
    producer = cluster.producer()
    for i in range(5):
        producer.send("t", value=b"%d" % i, partition=0)
        producer.send("c", key=b"k%d" % (i % 2), value=b"%d" % i)
    producer.flush()
    cluster.delete_records("t", {0: 3, 1: 0})
    cluster.delete_records("c", {0: 4})
    assert [r.offset for r in cluster.records("t")] == [3, 4] and cluster.count("t") == 5
    assert [r.offset for r in cluster.records("c")] == [4]
    producer.send("c", key=b"k0", value=b"5")
    producer.flush()
    assert [(r.offset, r.value) for r in cluster.records("c")] == [(5, b"5")], "compacted on"
    reader = cluster.consumer()
    reader.assign([Partition("t", 0)])
    reader.seek(Partition("t", 0), 0)
    assert [r.offset for r in reader.poll()[Partition("t", 0)]] == [3, 4]


def test_a_topic_can_keep_the_records_of_some_keys_only() -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("c", configs={"cleanup.policy": "compact"})
    producer = cluster.producer()
    producer.send("c", key=b"keep-1", value=b"a")
    producer.send("c", key=b"other", value=b"b")
    producer.flush()
    cluster.retain("c", lambda key: (key or b"").startswith(b"keep-"))
    for key, value in ((b"keep-1", b"c"), (b"other", b"d"), (b"new", b"e"), (b"keep-2", b"f")):
        producer.send("c", key=key, value=value)
    producer.flush()
    assert [(r.key, r.value) for r in cluster.records("c")] == [
        (b"keep-1", b"c"), (b"keep-2", b"f")], "a key counted only supersedes its older record"
    assert cluster.count("c") == 6


def test_a_null_header_value_is_stored_as_kafka_allows() -> None:
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("t")
    producer = cluster.producer()
    producer.send("t", value=b"v", headers=[("h", None)])  # type: ignore[list-item]
    producer.flush()
    assert cluster.records("t")[0].headers == [("h", None)]
