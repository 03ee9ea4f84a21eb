"""SubscriberPublisher: what goes to which topic, and device records held for the checkpoint."""

from __future__ import annotations

from har_stream.core.subscriber_outputs import SubscriberOutputs
from har_stream.core.subscriber_records import ActivityResult
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.service.delivery import Outbox
from har_stream.service.settings import TopicSettings
from har_stream.service.subscriber_publisher import SubscriberPublisher

CLASSES = ("WALKING", "SITTING")
TOPICS = TopicSettings()


def outbox(compact_devices: bool = True) -> tuple[MemoryCluster, Outbox]:
    """The service's outbox on an in-memory cluster with the subscriber topics (the devices
    topic compacted, as the service creates it, or keeping every record)."""
    cluster = MemoryCluster(waits=False)
    for topic in (TOPICS.changes_topic, TOPICS.daily_topic, TOPICS.dlq_topic):
        cluster.create_topic(topic)
    cluster.create_topic(TOPICS.devices_topic,
                         configs={"cleanup.policy": "compact"} if compact_devices else None)
    return cluster, Outbox(cluster.producer(), TOPICS.dlq_topic)


def keys(cluster: MemoryCluster, topic: str) -> list[bytes | None]:
    """The keys in `topic` (every record sent so far acknowledged first)."""
    cluster.acknowledge()
    for producer in cluster.producers:
        producer.serve()
    return [r.key for r in cluster.records(topic)]


def steps() -> list:
    outputs = SubscriberOutputs(CLASSES)

    def window(device: str, i: int, activity: str) -> ActivityResult:
        return ActivityResult(device, 64 * i, 1280 * i, 1280 * i + 2540, activity, 0.95,
                              {"WALKING": 0.95, "SITTING": 0.05}, "m")

    return [outputs.process([window("a", i, "WALKING"), window("b", i, "SITTING")])
            for i in range(3)]


def test_per_poll_every_device_record_is_sent_at_once() -> None:
    cluster, box = outbox(compact_devices=False)  # every record kept, to be counted
    publisher = SubscriberPublisher(box, TOPICS, per_checkpoint=False)
    for step in steps():
        publisher.send(step)
    assert keys(cluster, TOPICS.devices_topic) == [b"a", b"b"] * 3
    assert keys(cluster, TOPICS.changes_topic) == [b"a", b"b"]


def test_per_checkpoint_only_each_devices_latest_record_is_sent_at_the_flush() -> None:
    cluster, box = outbox()
    publisher = SubscriberPublisher(box, TOPICS, per_checkpoint=True)
    for step in steps():
        publisher.send(step)
    assert keys(cluster, TOPICS.devices_topic) == []
    assert keys(cluster, TOPICS.changes_topic) == [b"a", b"b"]  # not held back
    assert cluster.count(TOPICS.daily_topic) == 0
    publisher.flush()
    assert keys(cluster, TOPICS.devices_topic) == [b"a", b"b"]
    publisher.flush()  # nothing twice
    assert sum(cluster.count(t) for t in (TOPICS.changes_topic, TOPICS.devices_topic,
                                          TOPICS.daily_topic, TOPICS.dlq_topic)) == 4
