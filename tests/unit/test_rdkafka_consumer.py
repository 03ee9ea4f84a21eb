"""The librdkafka consumer adapter's own logic: polling, offsets, rebalances, health.

librdkafka itself is replaced by a fake here; the adapter against a real broker is the
service's default consumer in every integration test (tests/integration/test_clients.py
runs the service with kafka-python's too).
"""

from __future__ import annotations

import json
from typing import Any

import confluent_kafka
import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from har_stream.kafka.rdkafka_consumer import ConsumedRecord, RdKafkaConsumer
from har_stream.service.health import connection_count, topic_id
from har_stream.service.settings import KafkaSettings


class Message:
    def __init__(self, partition: int, offset: int, error: Any = None) -> None:
        self._partition, self._offset, self._error = partition, offset, error

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return "in"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (confluent_kafka.TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + self._offset)

    def key(self) -> bytes:
        return b"dev"

    def value(self) -> bytes:
        return b"{}"

    def headers(self) -> None:
        return None


class FakeLibrdkafka:
    """What the adapter calls on confluent_kafka.Consumer; `consume` honours its count."""

    def __init__(self) -> None:
        self.ready: list[Message] = []
        self.consumed: list[tuple[int, float]] = []
        self.committed_offsets: dict[int, int] = {}
        self.callbacks: dict[str, Any] = {}
        self.fail_commit = False
        self.assigned: list[Any] = []
        self.closed = False

    def assignment(self) -> list[Any]:
        return self.assigned

    def close(self) -> None:
        self.closed = True

    def consume(self, num: int, timeout: float) -> list[Message]:
        self.consumed.append((num, timeout))
        taken, self.ready = self.ready[:num], self.ready[num:]
        return taken

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def committed(self, tps: list[Any], timeout: float) -> list[Any]:
        return [confluent_kafka.TopicPartition(tp.topic, tp.partition,
                                               self.committed_offsets.get(tp.partition, -1001))
                for tp in tps]

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert not asynchronous
        if self.fail_commit:
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(
                confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS))
        self.committed_offsets.update({tp.partition: tp.offset for tp in offsets})

    def position(self, tps: list[Any]) -> list[Any]:
        return [confluent_kafka.TopicPartition(tp.topic, tp.partition, -1001) for tp in tps]

    def get_watermark_offsets(self, tp: Any, cached: bool) -> tuple[int, int]:
        assert cached, "no request per lag update"
        return (0, 17)


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[int]]] = []

    def on_partitions_assigned(self, tps: list[TopicPartition]) -> None:
        self.events.append(("assigned", [tp.partition for tp in tps]))

    def on_partitions_revoked(self, tps: list[TopicPartition]) -> None:
        self.events.append(("revoked", [tp.partition for tp in tps]))

    def on_partitions_lost(self, tps: list[TopicPartition]) -> None:
        self.events.append(("lost", [tp.partition for tp in tps]))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLibrdkafka:
    made = FakeLibrdkafka()
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda config: made)
    return made


def adapter() -> RdKafkaConsumer:
    return RdKafkaConsumer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "group")


def test_poll_returns_what_is_ready_at_once_grouped_by_partition_in_order(
        fake: FakeLibrdkafka) -> None:
    fake.ready = [Message(0, 5), Message(1, 9), Message(0, 6), Message(0, 7)]
    polled = adapter().poll(timeout_ms=200, max_records=3)
    assert fake.consumed == [(3, 0)], "records were ready: no wait"
    assert {tp.partition: [r.offset for r in records] for tp, records in polled.items()} == {
        0: [5, 6], 1: [9]}
    assert polled[TopicPartition("in", 0)][0] == ConsumedRecord(
        "in", 0, 5, 1_700_000_000_005, b"dev", b"{}", None)


def test_poll_waits_for_the_first_record_only_then_takes_what_is_ready(
        fake: FakeLibrdkafka) -> None:
    consumer = adapter()
    assert consumer.poll(timeout_ms=200, max_records=500) == {}
    assert fake.consumed == [(500, 0), (1, 0.2)], "librdkafka's consume(500) would wait 200 ms"
    fake.consumed.clear()
    original = fake.consume

    def first_arrives_during_the_wait(num: int, timeout: float) -> list[Message]:
        if timeout:
            fake.ready = [Message(0, 1), Message(0, 2)]
        return original(num, timeout)

    fake.consume = first_arrives_during_the_wait  # type: ignore[method-assign]
    polled = consumer.poll(timeout_ms=200, max_records=500)
    assert [r.offset for r in polled[TopicPartition("in", 0)]] == [1, 2]
    assert fake.consumed == [(500, 0), (1, 0.2), (499, 0)]


def test_errors_in_the_stream_are_logged_and_skipped(fake: FakeLibrdkafka,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    error = confluent_kafka.KafkaError(confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART)
    fake.ready = [Message(0, 1), Message(0, -1, error=error), Message(0, 2)]
    polled = adapter().poll(max_records=10)
    assert [r.offset for r in polled[TopicPartition("in", 0)]] == [1, 2]
    assert "Unknown topic or partition" in caplog.text


def test_offsets_use_kafka_python_types_and_none_for_unknown(fake: FakeLibrdkafka) -> None:
    consumer, tp = adapter(), TopicPartition("in", 3)
    assert consumer.committed(tp) is None
    consumer.commit({tp: OffsetAndMetadata(42, "", -1)})
    assert consumer.committed(tp) == 42
    assert consumer.position(tp) is None and consumer.highwater(tp) == 17
    fake.fail_commit = True
    with pytest.raises(CommitFailedError):
        consumer.commit({tp: OffsetAndMetadata(43, "", -1)})
    assert consumer.committed(tp) == 42


def test_rebalances_reach_the_listener_as_kafka_python_partitions(fake: FakeLibrdkafka
                                                                  ) -> None:
    listener = Listener()
    adapter().subscribe(["in"], listener=listener)
    parts = [confluent_kafka.TopicPartition("in", p) for p in (0, 2)]
    fake.callbacks["on_assign"](fake, parts)
    fake.callbacks["on_revoke"](fake, parts[:1])
    fake.callbacks["on_lost"](fake, parts[1:])
    assert listener.events == [("assigned", [0, 2]), ("revoked", [0]), ("lost", [2])]


def test_broker_connections_come_from_librdkafkas_statistics(fake: FakeLibrdkafka) -> None:
    consumer = adapter()
    assert connection_count(consumer) is None, "unknown before the first statistics"

    def statistics(*states: str) -> str:
        return json.dumps({"brokers": {f"b{i}": {"state": s} for i, s in enumerate(states)}})

    consumer._statistics(statistics("UP", "UP", "INIT"))
    assert connection_count(consumer) == 2
    consumer._statistics(statistics("TRY_CONNECT", "DOWN"))
    assert connection_count(consumer) == 0


def test_the_topic_id_is_fetched_once_and_again_on_refresh(fake: FakeLibrdkafka,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    consumer, ids = adapter(), iter(["id-1", "id-2"])
    monkeypatch.setattr(consumer, "_fetch_topic_id", lambda topic: next(ids))
    assert topic_id(consumer, "in") == "id-1" and topic_id(consumer, "in") == "id-1"
    assert consumer.topics() == {"in"}
    assert topic_id(consumer, "in") == "id-2"


def test_a_member_closing_mid_join_finishes_the_join_first(fake: FakeLibrdkafka) -> None:
    """Else the embedded broker holds the group's next join for the rebalance timeout."""
    consumer = adapter()
    consumer.subscribe(["in"], listener=Listener())
    consumer._statistics(json.dumps({"brokers": {"b": {"state": "UP"}}}))
    original = fake.consume

    def join_completes_on_the_third_call(num: int, timeout: float) -> list[Message]:
        if len(fake.consumed) == 2:
            fake.assigned = [confluent_kafka.TopicPartition("in", 0)]
        return original(num, timeout)

    fake.consume = join_completes_on_the_third_call  # type: ignore[method-assign]
    consumer.close()
    assert len(fake.consumed) == 3 and fake.closed


def test_without_a_broker_close_does_not_wait_for_a_join(fake: FakeLibrdkafka) -> None:
    consumer = adapter()
    consumer.subscribe(["in"], listener=Listener())
    consumer._statistics(json.dumps({"brokers": {"b": {"state": "DOWN"}}}))
    consumer.close()
    assert fake.consumed == [] and fake.closed
