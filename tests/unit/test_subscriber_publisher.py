"""SubscriberPublisher: what goes to which topic, and device records held for the checkpoint."""

from __future__ import annotations

from typing import Any

from har_stream.core.subscriber_outputs import SubscriberOutputs
from har_stream.core.subscriber_records import ActivityResult
from har_stream.service.settings import TopicSettings
from har_stream.service.subscriber_publisher import SubscriberPublisher

CLASSES = ("WALKING", "SITTING")
TOPICS = TopicSettings()


class RecordingOutbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, **_: Any) -> None:
        self.sent.append((topic, key))


def steps() -> list:
    outputs = SubscriberOutputs(CLASSES)

    def window(device: str, i: int, activity: str) -> ActivityResult:
        return ActivityResult(device, 64 * i, 1280 * i, 1280 * i + 2540, activity, 0.95,
                              {"WALKING": 0.95, "SITTING": 0.05}, "m")

    return [outputs.process([window("a", i, "WALKING"), window("b", i, "SITTING")])
            for i in range(3)]


def test_per_poll_every_device_record_is_sent_at_once() -> None:
    outbox = RecordingOutbox()
    publisher = SubscriberPublisher(outbox, TOPICS, per_checkpoint=False)  # type: ignore[arg-type]
    for step in steps():
        publisher.send(step)
    devices = [key for topic, key in outbox.sent if topic == TOPICS.devices_topic]
    changes = [key for topic, key in outbox.sent if topic == TOPICS.changes_topic]
    assert devices == [b"a", b"b"] * 3 and changes == [b"a", b"b"]


def test_per_checkpoint_only_each_devices_latest_record_is_sent_at_the_flush() -> None:
    outbox = RecordingOutbox()
    publisher = SubscriberPublisher(outbox, TOPICS, per_checkpoint=True)  # type: ignore[arg-type]
    for step in steps():
        publisher.send(step)
    assert all(topic != TOPICS.devices_topic for topic, _ in outbox.sent)
    assert [topic for topic, _ in outbox.sent] == [TOPICS.changes_topic] * 2  # not held back
    publisher.flush()
    assert [key for topic, key in outbox.sent if topic == TOPICS.devices_topic] == [b"a", b"b"]
    publisher.flush()  # nothing twice
    assert len(outbox.sent) == 4
