"""The consumer port on kafka-python: the alternative consumer (pure Python).

`GuardedKafkaConsumer` is kafka-python's consumer whose `poll` hands a record it cannot
parse over as a `Damaged` entry (`poison`); `KafkaPythonConsumer` speaks the port on top of
it: `Partition` and `Record` in and out (converted per record: kafka-python builds its own
tuple per record anyway), our failures for kafka-python's errors, `connected()` from the
consumer's connection-count metric, and `topic_id` from its cluster metadata, which
kafka-python keeps privately (`_cluster`): that access lives here only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CorruptRecordError, IllegalStateError, KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from har_stream.kafka.drivers.errors import commit_failure
from har_stream.kafka.drivers.kafka_python_producer import as_failure
from har_stream.kafka.poison import bad_header_record
from har_stream.kafka.ports import (
    BAD_CHECKSUM,
    BAD_COMPRESSION,
    CORRUPT_RECORD,
    Damaged,
    KafkaTimeout,
    Partition,
    RebalanceListener,
    Record,
)

log = logging.getLogger(__name__)


class GuardedKafkaConsumer(KafkaConsumer):
    """kafka-python's consumer whose `poll` returns a `Damaged` entry for a record it cannot
    parse, instead of raising for ever on it (see `poison`'s module doc)."""

    har_kafka_settings: Any = None  # to read a record it cannot parse as stored (`poison`)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None,
             update_offsets: bool = True) -> dict[Any, list[Any]]:
        _keep_finished_join(self)
        try:
            return super().poll(timeout_ms=timeout_ms, max_records=max_records,
                                update_offsets=update_offsets)
        except Exception as exc:
            if isinstance(exc, KafkaError) and not isinstance(exc, CorruptRecordError):
                raise  # the cluster's answers (authorisation, offsets...): not a record's fault
            where = self._failed_at()
            if where is None:
                raise
            tp, offset = where
            reason = (BAD_CHECKSUM if "crc" in str(exc).lower() else
                      CORRUPT_RECORD if isinstance(exc, CorruptRecordError) else BAD_COMPRESSION)
            self.seek(tp, offset + 1)
            detail = f"{type(exc).__name__}: {exc}"
            damaged = None
            if reason == CORRUPT_RECORD and self.har_kafka_settings is not None:
                damaged = bad_header_record(self.har_kafka_settings, tp.topic, tp.partition,
                                            offset, detail)  # perhaps only its headers
            return {tp: [damaged or Damaged(tp.topic, tp.partition, offset, reason, detail)]}

    def _failed_at(self) -> tuple[TopicPartition, int] | None:
        """The partition and offset whose parsing raised: the fetcher's partition in progress
        (kafka-python says it nowhere else for every kind of failure), confirmed by the
        consumer's public position, which stays on the record that failed."""
        part = getattr(getattr(self, "_fetcher", None), "_next_partition_records", None)
        tp = getattr(part, "topic_partition", None)
        if tp is None or tp not in self.assignment():
            return None
        position = self.position(tp)
        offset = getattr(position, "offset", position)
        if offset is None or offset != getattr(part, "next_fetch_offset", None):
            return None
        return tp, int(offset)


def _keep_finished_join(client: KafkaConsumer) -> None:
    """Make kafka-python's next poll take a group join that finished between two polls.

    kafka-python 3.0 runs JoinGroup and SyncGroup as one task on its IO thread, which a
    `poll` awaits for its own timeout only. A task that finishes while no poll awaits it is
    dropped by the next poll, which sends another JoinGroup with the same generation: the
    broker starts a new rebalance, and members that poll briefly in turn rebalance for ever
    (measured: two members polling 50 ms in turn on the embedded broker, half the runs never
    settled in 20 s). Shown as still in flight, the finished task is taken at once.
    """
    coordinator = getattr(client, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if task is not None and not isinstance(task, _FinishedJoin) and task.is_done:
        coordinator._join_task = _FinishedJoin(task)  # type: ignore[union-attr]


class _FinishedJoin:
    """A finished join task that says it is in flight, so the next poll awaits (takes) it."""

    is_done = False

    def __init__(self, task: Any) -> None:
        self.task = task

    def add_callback(self, fn: Any, *args: Any) -> _FinishedJoin:
        self.task.add_callback(fn, *args)
        return self

    def add_errback(self, fn: Any, *args: Any) -> _FinishedJoin:
        self.task.add_errback(fn, *args)
        return self

    def __await__(self) -> Any:
        return self.task.__await__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


class _Listener(ConsumerRebalanceListener):
    """kafka-python's listener (called on its own thread) handing `Partition` lists on."""

    def __init__(self, listener: RebalanceListener) -> None:
        self.listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.listener.on_partitions_revoked(_ours(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.listener.on_partitions_assigned(_ours(assigned))

    def on_partitions_lost(self, lost: Any) -> None:
        self.listener.on_partitions_lost(_ours(lost))


class KafkaPythonConsumer:
    """`ports.Consumer` on kafka-python (see the module doc)."""

    def __init__(self, client: GuardedKafkaConsumer, timeout_s: float) -> None:
        self.client = client
        self.timeout_ms = int(timeout_s * 1000)  # for requests the port does not bound

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None
                  ) -> None:
        self.client.subscribe(topics=list(topics),
                              listener=None if listener is None else _Listener(listener))

    def assign(self, partitions: Sequence[Partition]) -> None:
        self.client.assign([_tp(p) for p in partitions])

    def seek(self, partition: Partition, offset: int) -> None:
        self.client.seek(_tp(partition), offset)

    def seek_to_beginning(self, *partitions: Partition) -> None:
        self.client.seek_to_beginning(*[_tp(p) for p in partitions])

    def poll(self, timeout_ms: int = 0, max_records: int = 500
             ) -> dict[Partition, list[Record | Damaged]]:
        try:
            polled = self.client.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise as_failure(exc) from None
        return {Partition(tp.topic, tp.partition): [
            r if isinstance(r, Damaged) else Record(r.topic, r.partition, r.offset, r.timestamp,
                                                    r.key, r.value, r.headers)
            for r in records] for tp, records in polled.items()}

    def assignment(self) -> set[Partition]:
        return set(_ours(self.client.assignment()))

    def pause(self, *partitions: Partition) -> None:
        self.client.pause(*[_tp(p) for p in partitions])

    def resume(self, *partitions: Partition) -> None:
        self.client.resume(*[_tp(p) for p in partitions])

    def committed(self, partition: Partition) -> int | None:
        if self.client.config["group_id"] is None:  # no group, no committed offsets
            return None
        try:
            offset = self.client.committed(_tp(partition), timeout_ms=self.timeout_ms)
        except KafkaError as exc:
            raise as_failure(exc) from None
        return None if offset is None or offset < 0 else int(offset)

    def position(self, partition: Partition) -> int | None:
        """The next offset `poll` hands over (asks the group or the broker for it when not
        known yet, for at most the connect timeout); None when still unknown."""
        try:
            offset = self.client.position(_tp(partition), timeout_ms=self.timeout_ms)
        except (KafkaTimeoutError, IllegalStateError):  # or not assigned: unknown
            return None
        except KafkaError as exc:
            raise as_failure(exc) from None
        return None if offset is None else int(offset)

    def highwater(self, partition: Partition) -> int | None:
        try:
            high = self.client.highwater(_tp(partition))
        except IllegalStateError:  # not assigned: unknown, as with every driver
            return None
        return None if high is None else int(high)

    def commit(self, offsets: Mapping[Partition, int], timeout_s: float = 30.0) -> None:
        """Commit and wait for the group's answer (`CommitFailed` when it refuses)."""
        try:
            self.client.commit({_tp(p): OffsetAndMetadata(offset, "", -1)
                                for p, offset in offsets.items()},
                               timeout_ms=int(timeout_s * 1000))
        except KafkaTimeoutError as exc:
            raise KafkaTimeout(f"commit not answered within {timeout_s:g} s: {exc}") from None
        except KafkaError as exc:
            raise commit_failure(getattr(exc, "errno", None),
                                 f"{type(exc).__name__}: {exc}") from None

    def connected(self) -> bool | None:
        """Whether the consumer holds a broker connection (its connection-count metric; the
        consumer always keeps one to its group coordinator or the partitions' leaders)."""
        try:
            groups = self.client.metrics() or {}
        except Exception:  # a client being closed
            return None
        counts = [v["connection-count"] for v in groups.values()
                  if isinstance(v, dict) and "connection-count" in v]
        return sum(counts) > 0 if counts else None

    def topics(self) -> set[str]:
        try:
            return set(self.client.topics())
        except KafkaError as exc:
            raise as_failure(exc) from None

    def topic_id(self, topic: str) -> str | None:
        """The id in kafka-python's cluster metadata (Kafka ≥ 2.8 sends it), which the
        consumer does not expose publicly."""
        found = self.client._cluster.topic_id(topic)
        return None if found is None else str(found)

    def close(self) -> None:
        """Leave the group (no commit: the service commits at its checkpoints)."""
        self.client.close(autocommit=False)


def _tp(partition: Partition) -> TopicPartition:
    return TopicPartition(partition[0], partition[1])


def _ours(partitions: Any) -> list[Partition]:
    return [Partition(tp.topic, tp.partition) for tp in partitions]
