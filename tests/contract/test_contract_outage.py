"""An unreachable cluster through every driver: clients wait, nothing is lost.

While the cluster is out of reach a consumer says it is not connected and its polls hand
nothing; a producer's `send` still returns at once, its `flush` raises `KafkaTimeout` and
the delivery waits; once the cluster is back the delivery completes and the record is read
where it belongs.
"""

from __future__ import annotations

import time

import pytest
from contract_support import WAIT_S, Kafka, consume, poll_until, send_all

from har_stream.kafka.ports import KafkaTimeout, Partition


def test_an_unreachable_cluster_holds_deliveries_and_hands_them_over_when_back(
        severable: Kafka) -> None:
    driver = severable
    topic = driver.topic()
    producer, consumer = driver.producer(), driver.consumer()
    consumer.assign([Partition(topic, 0)])
    send_all(producer, topic, [b"before"])
    assert [r.value for r in consume(consumer, 1)] == [b"before"]
    assert poll_until([consumer], lambda: consumer.connected() is True)

    driver.cut()
    assert poll_until([consumer], lambda: consumer.connected() is False)
    started = time.monotonic()
    delivery = producer.send(topic, value=b"during", partition=0)
    assert time.monotonic() - started < 1.0, "send does not wait for the cluster"
    with pytest.raises(KafkaTimeout):
        producer.flush(1.0)
    assert consumer.poll(timeout_ms=200) == {}

    driver.restore()
    producer.flush(WAIT_S)
    assert delivery.get(WAIT_S).offset == 1
    assert [(r.offset, r.value) for r in consume(consumer, 1)] == [(1, b"during")]
    assert poll_until([consumer], lambda: consumer.connected() is True)
