"""The broker comes back empty, without the service's topics (nobody re-created them).

The service's own clients used to re-create all five topics on their first request, with the
broker's default layout (the embedded broker: 4 partitions, no compaction), and the service
ran on with a changelog that no longer matched its sensor topic. Now no client of the service
creates a topic by asking for it: the service notices that the sensor topic is gone, stops
with exit 1 (a `ServiceError` naming the topic), and its restart creates every topic with the
configured layout (`--create-topics`) before consuming. Both consumer clients.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from service_support import (
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    create_topics,
    send_batches,
    synthetic_samples,
    topic_settings,
    unique,
    wait_for,
)

from har_stream.kafka.clients import close_quietly, make_admin
from har_stream.service.settings import KafkaSettings, Settings
from har_stream.tools.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000


def _settings(bootstrap: str, client: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, connect_timeout_s=10,
                                        consumer_client=client),
                    topics=dataclasses.replace(topic_settings(), create_topics=True),
                    group_id=unique("group"), session_timeout_ms=6000,
                    heartbeat_interval_ms=1000, poll_timeout_ms=100, commit_interval_s=0.2,
                    produce_timeout_s=2.0, metrics_address="")


def _layout(settings: Settings) -> dict[str, int]:
    topics = settings.topics
    admin = make_admin(settings.kafka)
    try:
        return admin.partition_counts([topics.sensor_topic, topics.dlq_topic,
                                       topics.activity_topic, topics.counts_topic,
                                       topics.changelog_topic])
    finally:
        close_quietly(admin)


@pytest.mark.parametrize("client", ["librdkafka", "kafka-python"])
def test_a_broker_back_without_the_topics_gets_none_of_them_auto_created(client: str) -> None:
    broker = EmbeddedBroker().start()
    settings = _settings(broker.bootstrap_servers, client)
    create_topics(settings)
    send_batches(settings.kafka, settings.topics.sensor_topic,
                 batches_of("dev-a", synthetic_samples(640, seed=3), 32, T0_MS))
    service = InProcessService(settings, FakeModel())
    try:
        service.__enter__()
        results = TopicReader(settings.kafka, settings.topics.activity_topic)
        results.until(lambda r: len(r) >= 3, 60, "first results", service.check)
        results.close()
        broker.stop()
        time.sleep(3)  # the service notices the outage
        broker = EmbeddedBroker(port=broker.port).start()  # same address, no topics
        back = time.monotonic()
        wait_for(lambda: service.error is not None or not service.thread.is_alive(), 60,
                 "the service to stop on the missing sensor topic")
        stopped_after = time.monotonic() - back
        assert service.error is not None and settings.topics.sensor_topic in str(
            service.error), repr(service.error)
        time.sleep(1)
        assert _layout(settings) == {}, "a client of the service created topics"
    finally:
        service.stop.set()
        service.thread.join(30)
    # the restart (a supervisor's) creates them with the configured layout and serves again.
    # A new group: the embedded broker does not forget a member that left while joining
    # (kafka-python's first life may stop mid-join), and holds the group's next join for
    # max_poll_interval_ms (docs/RELIABILITY.md, Known limits); Kafka does not.
    settings = dataclasses.replace(settings, group_id=unique("group"))
    restarted = InProcessService(settings, FakeModel())
    with restarted:
        wait_for(lambda: len(_layout(settings)) == 5, 30, "the topics")
        send_batches(settings.kafka, settings.topics.sensor_topic,
                     batches_of("dev-b", synthetic_samples(640, seed=4), 32, T0_MS))
        results = TopicReader(settings.kafka, settings.topics.activity_topic)
        results.until(lambda r: len(r) >= 3, 60, "results after the restart", restarted.check)
        results.close()
    assert set(_layout(settings).values()) == {settings.topics.partitions}
    broker.stop()
    print(f"\n{client}: stopped {stopped_after:.1f} s after the empty broker was back "
          f"({service.error}); no topic auto-created; the restart created all five with "
          f"{settings.topics.partitions} partitions")
