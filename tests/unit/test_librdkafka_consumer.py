"""The librdkafka consumer driver's own logic: polling, offsets, rebalances, health.

librdkafka itself is replaced by a fake here; the driver against a real broker is checked
by the contract suite (tests/contract/, every port method) and is the service's default
consumer in every integration test.
"""

from __future__ import annotations

import json
from typing import Any

import confluent_kafka
import pytest

import har_stream.kafka.drivers.librdkafka_consumer as module
from har_stream.kafka.drivers.librdkafka_consumer import RdKafkaConsumer
from har_stream.kafka.ports import CommitFailed, Damaged, KafkaTimeout, Partition, Record
from har_stream.kafka.settings import KafkaSettings


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
        self.topics: dict[str, Any] = {"in": TopicMetadata()}

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
        if not offsets:  # as librdkafka: nothing to commit is an error
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(
                confluent_kafka.KafkaError._NO_OFFSET))
        if self.fail_commit:
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(
                confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS))
        self.committed_offsets.update({tp.partition: tp.offset for tp in offsets})

    def position(self, tps: list[Any]) -> list[Any]:
        return [confluent_kafka.TopicPartition(tp.topic, tp.partition, -1001) for tp in tps]

    def get_watermark_offsets(self, tp: Any, cached: bool) -> tuple[int, int]:
        assert cached, "no request per lag update"
        return (0, 17)

    def list_topics(self, timeout: float) -> Any:
        return ClusterMetadata(self.topics)


class TopicMetadata:
    error = None


class ClusterMetadata:
    def __init__(self, topics: dict[str, Any]) -> None:
        self.topics = topics


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[int]]] = []

    def on_partitions_assigned(self, tps: list[Partition]) -> None:
        assert all(type(tp) is Partition for tp in tps)
        self.events.append(("assigned", [tp.partition for tp in tps]))

    def on_partitions_revoked(self, tps: list[Partition]) -> None:
        self.events.append(("revoked", [tp.partition for tp in tps]))

    def on_partitions_lost(self, tps: list[Partition]) -> None:
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
    record = polled[Partition("in", 0)][0]
    assert type(record) is Record
    assert record == Record("in", 0, 5, 1_700_000_000_005, b"dev", b"{}", None)


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
    assert [r.offset for r in polled[Partition("in", 0)]] == [1, 2]
    assert fake.consumed == [(500, 0), (1, 0.2), (499, 0)]


def test_errors_in_the_stream_are_logged_and_skipped(fake: FakeLibrdkafka,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    error = confluent_kafka.KafkaError(confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART)
    fake.ready = [Message(0, 1), Message(0, -1, error=error), Message(0, 2)]
    polled = adapter().poll(max_records=10)
    assert [r.offset for r in polled[Partition("in", 0)]] == [1, 2]
    assert "Unknown topic or partition" in caplog.text


def test_offsets_are_plain_numbers_and_none_for_unknown(fake: FakeLibrdkafka) -> None:
    consumer, tp = adapter(), Partition("in", 3)
    assert consumer.committed(tp) is None
    consumer.commit({tp: 42})
    assert consumer.committed(tp) == 42
    assert consumer.position(tp) is None and consumer.highwater(tp) == 17
    fake.fail_commit = True
    with pytest.raises(CommitFailed) as refused:
        consumer.commit({tp: 43})
    assert refused.value.code == confluent_kafka.KafkaError.REBALANCE_IN_PROGRESS
    assert consumer.committed(tp) == 42


def test_a_commit_not_answered_in_time_is_a_timeout_not_a_refusal(
        fake: FakeLibrdkafka, monkeypatch: pytest.MonkeyPatch) -> None:
    def times_out(offsets: list[Any], asynchronous: bool) -> None:
        raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(
            confluent_kafka.KafkaError._TIMED_OUT))

    monkeypatch.setattr(fake, "commit", times_out)
    with pytest.raises(KafkaTimeout):
        adapter().commit({Partition("in", 0): 1})


def test_kafka_python_settings_with_a_librdkafka_counterpart_reach_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    configs: list[dict[str, Any]] = []
    monkeypatch.setattr(confluent_kafka, "Consumer",
                        lambda config: configs.append(config) or FakeLibrdkafka())
    RdKafkaConsumer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), "group",
                    fetch_max_wait_ms=50, max_partition_fetch_bytes=8 << 20,
                    session_timeout_ms=6000, max_poll_records=10000)
    (config,) = configs
    assert (config["fetch.wait.max.ms"], config["max.partition.fetch.bytes"],
            config["session.timeout.ms"]) == (50, 8 << 20, 6000)


def test_committing_nothing_is_no_error(fake: FakeLibrdkafka) -> None:
    adapter().commit({})
    assert fake.committed_offsets == {}


def test_a_consumer_without_a_group_commits_nothing(fake: FakeLibrdkafka) -> None:
    consumer = RdKafkaConsumer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), None)
    assert consumer.committed(Partition("in", 0)) is None
    with pytest.raises(CommitFailed):
        consumer.commit({Partition("in", 0): 1})
    assert fake.committed_offsets == {}


def test_rebalances_reach_the_listener_as_our_partitions(fake: FakeLibrdkafka) -> None:
    listener = Listener()
    adapter().subscribe(["in"], listener=listener)
    parts = [confluent_kafka.TopicPartition("in", p) for p in (0, 2)]
    fake.callbacks["on_assign"](fake, parts)
    fake.callbacks["on_revoke"](fake, parts[:1])
    fake.callbacks["on_lost"](fake, parts[1:])
    assert listener.events == [("assigned", [0, 2]), ("revoked", [0]), ("lost", [2])]


def test_broker_connections_come_from_librdkafkas_statistics(fake: FakeLibrdkafka) -> None:
    consumer = adapter()
    assert consumer.connected() is None, "unknown before the first statistics"

    def statistics(*states: str) -> str:
        return json.dumps({"brokers": {f"b{i}": {"state": s} for i, s in enumerate(states)}})

    consumer._statistics(statistics("UP", "UP", "INIT"))
    assert consumer.connected() is True
    consumer._statistics(statistics("TRY_CONNECT", "DOWN"))
    assert consumer.connected() is False


def test_the_topic_id_is_fetched_once_and_again_on_refresh(fake: FakeLibrdkafka,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    consumer, ids = adapter(), iter(["id-1", "id-2"])
    monkeypatch.setattr(consumer, "_fetch_topic_id", lambda topic: next(ids))
    assert consumer.topic_id("in") == "id-1" and consumer.topic_id("in") == "id-1"
    assert consumer.topics() == {"in"}
    assert consumer.topic_id("in") == "id-2"


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


class BrokenHeaders(Message):
    """confluent-kafka on a header key that is not UTF-8: a SystemError around the
    UnicodeDecodeError (from C, where the result is checked)."""

    def headers(self) -> None:
        try:
            b"\xff".decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SystemError("headers returned a result with an exception set") from exc


def test_a_record_whose_headers_cannot_be_read_comes_as_damaged_with_key_and_value(
        fake: FakeLibrdkafka, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "bad_header_record", lambda *args: None)  # no broker here
    fake.ready = [Message(0, 1), BrokenHeaders(0, 2), Message(0, 3)]
    records = adapter().poll(max_records=10)[Partition("in", 0)]
    assert [r.offset for r in records] == [1, 2, 3]
    damaged = records[1]
    assert isinstance(damaged, Damaged) and damaged.readable
    assert (damaged.reason, damaged.key, damaged.value) == ("bad_header", b"dev", b"{}")
    assert "UnicodeDecodeError" in damaged.detail
    assert isinstance(records[2], Record)


class Seeking(FakeLibrdkafka):
    def __init__(self) -> None:
        super().__init__()
        self.seeks: list[tuple[int, int]] = []

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))


def test_a_batch_librdkafka_cannot_read_is_skipped_whole_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka reports the batch at its first offset, maybe several times: every record of
    it comes once as damaged, the position moves past the batch and never back."""
    made = Seeking()
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda config: made)
    monkeypatch.setattr(module, "batch_end", lambda kafka, topic, partition, offset: 8)
    error = confluent_kafka.KafkaError(confluent_kafka.KafkaError._BAD_COMPRESSION)
    made.ready = [Message(0, 4), Message(0, 5, error=error), Message(0, 5, error=error)]
    consumer = adapter()
    records = consumer.poll(max_records=10)[Partition("in", 0)]
    assert [(r.offset, getattr(r, "reason", None)) for r in records] == [
        (4, None), (5, "bad_compression"), (6, "bad_compression"), (7, "bad_compression")]
    assert made.seeks == [(0, 8)]
    made.ready = [Message(0, 5, error=error), Message(0, 8)]
    assert [r.offset for r in consumer.poll(max_records=10)[Partition("in", 0)]] == [8]
    assert made.seeks == [(0, 8)]
    # given back after a rebalance, from a commit before the skip: skipped again
    consumer._assigned(None, [confluent_kafka.TopicPartition("in", 0)])
    made.ready = [Message(0, 5, error=error)]
    assert len(consumer.poll(max_records=10)[Partition("in", 0)]) == 3
    assert made.seeks == [(0, 8), (0, 8)]


def test_a_topic_the_cluster_no_longer_has_is_left_out_and_loses_its_id(
        fake: FakeLibrdkafka, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = adapter()
    monkeypatch.setattr(consumer, "_fetch_topic_id", lambda topic: "id-1")
    fake.topics["__consumer_offsets"] = TopicMetadata()
    assert consumer.topic_id("in") == "id-1"
    assert consumer.topics() == {"in"}, "internal topics are left out"
    del fake.topics["in"]
    assert consumer.topics() == set()
    assert consumer.topic_id("in") is None


@pytest.mark.parametrize("refusal", [confluent_kafka.KafkaError._STATE,
                                     confluent_kafka.KafkaError._OUTDATED])
def test_a_reader_seeks_by_assigning_the_partition_again_at_the_offset(
        monkeypatch: pytest.MonkeyPatch, refusal: int) -> None:
    """librdkafka cannot seek a partition it is not fetching yet (`_STATE`, measured) and a
    seek right after `assign` races the fetcher (`_OUTDATED` under load: it stopped a member
    restoring its changelog); a reader never calls `seek`, so neither can happen. The position
    is the offset sought until a record of it comes."""

    class NotFetchingYet(FakeLibrdkafka):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, list[tuple[int, int]]]] = []

        def assign(self, tps: list[Any]) -> None:
            self.calls.append(("assign", [(tp.partition, tp.offset) for tp in tps]))

        def seek(self, tp: Any) -> None:
            raise confluent_kafka.KafkaException(confluent_kafka.KafkaError(refusal))

        def incremental_unassign(self, tps: list[Any]) -> None:
            self.calls.append(("unassign", [(tp.partition, tp.offset) for tp in tps]))

        def incremental_assign(self, tps: list[Any]) -> None:
            self.calls.append(("assign+", [(tp.partition, tp.offset) for tp in tps]))

    made = NotFetchingYet()
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda config: made)
    consumer, tp = adapter(), Partition("in", 0)
    consumer.assign([tp])
    consumer.seek(tp, 5)
    assert made.calls == [("assign", [(0, -1001)]), ("unassign", [(0, -1001)]),
                          ("assign+", [(0, 5)])]
    assert consumer.position(tp) == 5
    consumer.seek_to_beginning(tp)
    assert consumer.position(tp) == 0, "the log start, as the last fetch reported it"
    made.ready = [Message(0, 3)]
    consumer.poll(max_records=10)
    assert consumer.position(tp) is None, "librdkafka's own (the fake's: unknown) again"
