"""The kafka-python drivers' own logic: their errors as ours, deliveries as `Acknowledged`.

Against a real broker they are checked by the contract suite (tests/contract/).
"""

from __future__ import annotations

import pytest
from kafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RebalanceInProgressError,
    RecordListTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from kafka.future import Future
from kafka.producer.future import RecordMetadata

from har_stream.kafka.drivers.errors import commit_failure
from har_stream.kafka.drivers.kafka_python_producer import KafkaPythonDelivery, as_failure
from har_stream.kafka.ports import (
    Acknowledged,
    CommitFailed,
    KafkaFailure,
    KafkaTimeout,
    RecordRefused,
    TopicMissing,
)


@pytest.mark.parametrize(("error", "expected"), [
    (MessageSizeTooLargeError, RecordRefused),
    (RecordListTooLargeError, RecordRefused),
    (InvalidRecordError, RecordRefused),
    (InvalidTimestampError, RecordRefused),
    (KafkaTimeoutError, KafkaTimeout),
    (RequestTimedOutError, KafkaTimeout),
    (UnknownTopicOrPartitionError, TopicMissing),
    (TopicAuthorizationFailedError, KafkaFailure),
    (IllegalStateError, KafkaFailure),
])
def test_kafka_python_errors_become_our_failures_with_the_brokers_code(
        error: type[Exception], expected: type) -> None:
    failure = as_failure(error("detail"))
    assert type(failure) is expected and "detail" in str(failure)
    code = getattr(error, "errno", None)
    assert failure.code == (code if isinstance(code, int) and code > 0 else None)


def test_a_refused_commit_is_commit_failed_and_a_rebalance_keeps_its_code() -> None:
    assert type(commit_failure(None, "CommitFailedError")) is CommitFailed
    refused = commit_failure(RebalanceInProgressError.errno, "rebalance")
    assert type(refused) is CommitFailed and refused.code == 27
    assert type(commit_failure(7, "timed out")) is KafkaTimeout
    assert CommitFailedError  # kafka-python's own, mapped by the consumer driver


class Sent(Future):
    """kafka-python's future of a send (its `get`, without a producer behind it)."""

    def get(self, timeout: float | None = None) -> object:
        assert self.is_done
        if self.exception is not None:
            raise self.exception
        return self.value


def test_a_delivery_hands_over_acknowledged_stamped_when_it_arrived_or_our_failure() -> None:
    future, seen = Sent(), list[object]()
    delivery = KafkaPythonDelivery(future)
    delivery.add_both(seen.append)
    future.success(RecordMetadata("t", 2, None, 7, 1_700_000_000_000, None, 1, 1, -1))
    (acknowledged,) = seen
    assert isinstance(acknowledged, Acknowledged)
    assert acknowledged[:4] == ("t", 2, 7, 1_700_000_000_000)
    assert acknowledged.acknowledged_at is not None
    assert delivery.get(0) == acknowledged
    failed_future = Sent()
    failed = KafkaPythonDelivery(failed_future).add_both(seen.append)
    failed_future.failure(MessageSizeTooLargeError("too large"))
    assert type(seen[-1]) is RecordRefused
    with pytest.raises(RecordRefused):
        failed.get(0)


def test_a_join_that_finished_between_polls_is_taken_by_the_next_poll_not_sent_again() -> None:
    """kafka-python's poll sends another JoinGroup when it finds its join task done; the
    driver shows a finished task as in flight, so the poll awaits it and takes its result."""
    from kafka.consumer.group import KafkaConsumer

    from har_stream.kafka.drivers.kafka_python_consumer import _keep_finished_join

    class Coordinator:
        _join_task: object = None

    class Client(KafkaConsumer):  # without a connection: only what the guard looks at
        def __init__(self) -> None:
            self._coordinator = Coordinator()

    client, finished = Client(), Future().success(b"assignment")
    client._coordinator._join_task = finished
    _keep_finished_join(client)
    shown = client._coordinator._join_task
    assert shown is not finished and not shown.is_done
    taken: list[object] = []
    shown.add_callback(taken.append)  # what kafka-python's wait_for does
    assert taken == [b"assignment"]
    _keep_finished_join(client)
    assert client._coordinator._join_task is shown, "wrapped once"
    in_flight = Future()
    client._coordinator._join_task = in_flight
    _keep_finished_join(client)
    assert client._coordinator._join_task is in_flight, "a join in flight is left alone"


class Metadata:
    """kafka-python's cluster metadata, as the producer driver reads it."""

    def __init__(self) -> None:
        self._last_successful_refresh_ms = 1000.0

    def partitions_for_topic(self, topic: str) -> None:
        return None  # not known

    def brokers(self) -> set[str]:
        return {"broker-1"}  # known from before the outage


class NoAnswer:
    """A kafka-python producer whose cluster does not answer (brokers known from before)."""

    def __init__(self, answered: bool) -> None:
        self._metadata = Metadata()
        self.answered = answered
        self.sent: list[str] = []

    def _wait_on_metadata(self, topic: str, max_wait_ms: int) -> set[int]:
        if self.answered:  # an answer without the topic
            self._metadata._last_successful_refresh_ms += 1
        raise KafkaTimeoutError("Failed to update metadata")

    def send(self, topic: str, **_record: object) -> None:
        self.sent.append(topic)


def test_a_topic_is_missing_only_when_the_cluster_said_so_not_while_it_is_away() -> None:
    from har_stream.kafka.drivers.kafka_python_producer import KafkaPythonProducer

    away = KafkaPythonProducer(NoAnswer(answered=False))  # type: ignore[arg-type]
    with pytest.raises(KafkaTimeout):
        away.partitions_for("out")
    with pytest.raises(KafkaTimeout):
        away.send("out", value=b"v")
    answered = KafkaPythonProducer(NoAnswer(answered=True))  # type: ignore[arg-type]
    assert answered.partitions_for("gone") == set()
    with pytest.raises(TopicMissing):
        answered.send("gone", value=b"v")
    assert away.client.sent == [] and answered.client.sent == []  # type: ignore[attr-defined]


def test_position_and_highwater_of_a_partition_not_assigned_are_unknown_as_with_every_driver(
        ) -> None:
    from kafka.errors import IllegalStateError

    from har_stream.kafka.drivers.kafka_python_consumer import KafkaPythonConsumer
    from har_stream.kafka.ports import Partition

    class NotAssigned:
        def position(self, partition: object, timeout_ms: int | None = None) -> int:
            raise IllegalStateError("Partition is not assigned")

        def highwater(self, partition: object) -> int:
            raise IllegalStateError("Partition is not assigned")

    consumer = KafkaPythonConsumer(NotAssigned(), 1.0)  # type: ignore[arg-type]
    assert consumer.position(Partition("t", 0)) is None
    assert consumer.highwater(Partition("t", 0)) is None


def test_a_consumer_without_a_group_has_no_committed_offsets_and_cannot_commit() -> None:
    from kafka.errors import IllegalStateError

    from har_stream.kafka.drivers.kafka_python_consumer import KafkaPythonConsumer
    from har_stream.kafka.ports import Partition

    class NoGroup:
        def __init__(self) -> None:
            self.config = {"group_id": None}

        def committed(self, partition: object, timeout_ms: int | None = None) -> int:
            raise IllegalStateError("Requires group_id")

        def commit(self, offsets: object, timeout_ms: int | None = None) -> None:
            raise IllegalStateError("Requires group_id")

    consumer = KafkaPythonConsumer(NoGroup(), 1.0)  # type: ignore[arg-type]
    assert consumer.committed(Partition("t", 0)) is None
    with pytest.raises(CommitFailed):
        consumer.commit({Partition("t", 0): 1})
