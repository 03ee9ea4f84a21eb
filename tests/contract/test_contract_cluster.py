"""The cluster through every driver: topics, their ids, the admin, connections, closing.

No client creates a topic by sending to it or asking for it; a recreated topic has a new
id; the admin creates (an existing topic is no error), counts and deletes; a producer that
closes delivers what it was given first.
"""

from __future__ import annotations

import contextlib
import threading

from contract_support import WAIT_S, Kafka, consume, poll_until

from har_stream.kafka.ports import KafkaFailure, Partition, TopicLayout

SEND_S = 5.0
"""Far more than a `send` that does not wait for the broker takes."""


def test_the_admin_creates_counts_and_deletes_topics(driver: Kafka) -> None:
    name, missing = driver.name_topic(), driver.name_topic()
    admin = driver.admin
    assert admin.create_topics({name: TopicLayout(3)}) == {name}
    assert admin.create_topics({name: TopicLayout(3)}) == set(), "exists: no error"
    assert admin.partition_counts([name, missing]) == {name: 3}
    assert driver.producer().partitions_for(name) == {0, 1, 2}
    admin.delete_topics([name])
    assert poll_until([], lambda: admin.partition_counts([name]) == {})


def test_no_client_creates_a_topic_by_sending_to_it_or_asking_for_it(driver: Kafka) -> None:
    missing = driver.name_topic()
    producer = driver.producer()
    assert producer.partitions_for(missing) == set()

    def send() -> None:  # refused at once, or the delivery fails or waits: all fine
        with contextlib.suppress(KafkaFailure):
            delivery = producer.send(missing, key=b"k", value=b"v")
            with contextlib.suppress(KafkaFailure):
                producer.flush(1.0)
            with contextlib.suppress(KafkaFailure):
                delivery.get(0.1)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(SEND_S)
    assert not sender.is_alive(), "send waits for the missing topic (the port: it never waits)"
    consumer = driver.consumer()
    consumer.assign([Partition(missing, 0)])
    assert consume(consumer, 1, wait_s=0.5) == []
    assert missing not in consumer.topics()
    assert driver.admin.partition_counts([missing]) == {}


def test_a_recreated_topic_has_a_new_id(driver: Kafka) -> None:
    topic = driver.topic(partitions=2)
    consumer = driver.consumer()
    assert topic in consumer.topics()
    first_id = consumer.topic_id(topic)
    assert isinstance(first_id, str) and first_id
    assert consumer.topic_id(driver.name_topic()) is None, "an unknown topic has none"

    driver.admin.delete_topics([topic])
    assert poll_until([], lambda: topic not in consumer.topics())
    assert driver.admin.create_topics({topic: TopicLayout(2)}) == {topic}
    assert poll_until([], lambda: topic in consumer.topics())
    second_id = consumer.topic_id(topic)
    assert isinstance(second_id, str) and second_id != first_id


def test_a_consumer_is_connected_once_it_has_talked_to_the_cluster(driver: Kafka) -> None:
    topic = driver.topic()
    consumer = driver.consumer()
    consumer.assign([Partition(topic, 0)])
    consumer.topics()
    consumer.poll(timeout_ms=100)
    assert poll_until([consumer], lambda: consumer.connected() is True)


def test_closing_a_producer_delivers_what_it_was_given(driver: Kafka) -> None:
    topic = driver.topic()
    producer = driver.producer()
    deliveries = [producer.send(topic, value=f"v{n}".encode(), partition=0) for n in range(5)]
    producer.close(WAIT_S)
    assert [d.get(WAIT_S).offset for d in deliveries] == list(range(5))
    consumer = driver.consumer()
    consumer.assign([Partition(topic, 0)])
    assert [r.value for r in consume(consumer, 5)] == [f"v{n}".encode() for n in range(5)]
    consumer.close()
