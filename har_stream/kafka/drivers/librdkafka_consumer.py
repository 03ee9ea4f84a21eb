"""The consumer port on librdkafka (confluent-kafka): the service's default consumer.

Why: with kafka-python, fetching and parsing sensor records took ~13 % of the recognizer's
CPU at 5,000 devices (its poll on the loop thread and its network thread contending for the
interpreter lock); librdkafka fetches in its own C threads into a local queue and hands over
ready records (docs/PERFORMANCE.md §9). How it keeps the port (`ports.Consumer`):

- `poll` returns `{Partition: [Record | Damaged]}`, as soon as any record is ready;
- rebalance callbacks run inside `poll`, on the caller's thread, and reach the listener
  given to `subscribe` as lists of `Partition`;
- librdkafka forgets a partition's position when it is sought (and cannot seek a partition
  it has not started fetching): the driver remembers the offset sought, so `position` is
  the next offset `poll` hands over, as the port says;
- `connected()` comes from librdkafka's statistics (brokers in state UP, every
  `STATS_INTERVAL_MS`); `topic_id` / `topics()` ask an admin client (made once, kept).
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import confluent_kafka
import orjson
from confluent_kafka.admin import AdminClient

from har_stream.kafka.connect import client_error_logger, client_log, rdkafka_config
from har_stream.kafka.drivers.errors import commit_failure
from har_stream.kafka.drivers.librdkafka_producer import as_failure
from har_stream.kafka.poison import bad_header_record
from har_stream.kafka.ports import (
    BAD_CHECKSUM,
    BAD_COMPRESSION,
    BAD_HEADER,
    CommitFailed,
    Damaged,
    KafkaTimeout,
    Partition,
    RebalanceListener,
    Record,
)
from har_stream.kafka.raw_fetch import batch_end
from har_stream.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)
STATS_INTERVAL_MS = 500
"""How often librdkafka reports its broker connections (`health.BrokerWatch` checks every
0.5 s and declares an outage after 1 s without one)."""
_BEGINNING = confluent_kafka.OFFSET_BEGINNING


class RdKafkaConsumer:
    """`ports.Consumer` on confluent-kafka (see the module doc).

    Takes `make_consumer`'s keyword arguments; those without a librdkafka counterpart
    (`max_poll_records`: here the `max_records` of each `poll`) are ignored.
    """

    def __init__(self, kafka: KafkaSettings, group_id: str | None, *,
                 fetch_max_wait_ms: int = 25, session_timeout_ms: int = 10000,
                 heartbeat_interval_ms: int = 3000, max_poll_interval_ms: int = 300000,
                 max_partition_fetch_bytes: int = 1024 * 1024, **_ignored: Any) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self._connections: int | None = None
        self._topic_ids: dict[str, object | None] = {}
        self._listener: RebalanceListener | None = None
        self._subscribed = False
        self._skipped_up_to: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset
        self._sought: dict[Partition, int] = {}  # offset (or _BEGINNING) sought, not yet read
        self._admin: AdminClient | None = None
        self._session_timeout_s = session_timeout_ms / 1000.0
        self._consumer = confluent_kafka.Consumer(rdkafka_config(kafka) | {
            # librdkafka needs a group even to read assigned partitions; one without a group
            # never commits, so its name is only a label
            "group.id": group_id or f"{kafka.client_id}-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # a batch whose checksum fails is skipped (logged, counted: `poison`), never
            # handed over as data; kafka-python checks them too
            "check.crcs": True,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": fetch_max_wait_ms,
            "max.partition.fetch.bytes": max_partition_fetch_bytes,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
            "max.poll.interval.ms": max_poll_interval_ms,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._statistics,
            "logger": client_log,
            "error_cb": client_error_logger("consumer"),
        })

    # --- consuming ---------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener | None = None
                  ) -> None:
        self._listener = listener
        self._subscribed = True
        self._consumer.subscribe(list(topics), on_assign=self._assigned,
                                 on_revoke=self._revoked, on_lost=self._lost)

    def assign(self, partitions: Sequence[Partition]) -> None:
        """Read exactly `partitions` (from the group's committed offset, else the earliest)."""
        self._sought.clear()
        self._skipped_up_to.clear()
        self._consumer.assign([_rd(p) for p in partitions])

    def seek(self, partition: Partition, offset: int) -> None:
        self._seek(Partition(*partition), offset)

    def seek_to_beginning(self, *partitions: Partition) -> None:
        """The named partitions (none named: every assigned one) start over."""
        for partition in partitions or tuple(self.assignment()):
            self._seek(Partition(*partition), _BEGINNING)

    def _seek(self, partition: Partition, offset: int) -> None:
        """A group member seeks; a reader of assigned partitions has the partition assigned
        again at the offset instead: librdkafka seeks only a partition whose fetcher runs, and
        a seek right after `assign` races it (measured: `_STATE`, and under load `_OUTDATED`,
        which stopped a member restoring its changelog)."""
        self._skipped_up_to.pop(partition, None)
        target = confluent_kafka.TopicPartition(partition.topic, partition.partition, offset)
        try:
            if self._subscribed:
                self._consumer.seek(target)
            else:
                self._consumer.incremental_unassign([_rd(partition)])
                self._consumer.incremental_assign([target])
        except confluent_kafka.KafkaException as exc:
            raise as_failure(exc.args[0]) from None
        self._sought[partition] = offset

    def poll(self, timeout_ms: int = 0, max_records: int = 500
             ) -> dict[Partition, list[Record | Damaged]]:
        """Up to `max_records` records, grouped by partition in the order they came.

        Returns as soon as records are there: librdkafka's `consume` waits for all
        `max_records` or the timeout, so only a wait for the first one blocks.
        """
        consume, headers_of = self._consumer.consume, _headers_of
        messages: list[Any] = consume(max_records, 0)  # a record's fields are never None
        if not messages and timeout_ms > 0:
            messages = consume(1, timeout_ms / 1000.0)
            if messages and max_records > 1:
                messages += consume(max_records - 1, 0)
        polled: dict[Partition, list[Record | Damaged]] = {}
        record: Record | Damaged
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() not in _UNREADABLE:
                    log.warning("consumer: %s", error.str())
                    continue
                for damaged in self._damaged(message, error):
                    polled.setdefault(Partition(damaged.topic, damaged.partition),
                                      []).append(damaged)
                continue
            topic, partition = message.topic(), message.partition()
            try:  # inline: this runs for every record (docs/PERFORMANCE.md §9)
                record = Record(topic, partition, message.offset(), message.timestamp()[1],
                                message.key(), message.value(), headers_of(message))
            except (SystemError, UnicodeDecodeError, ValueError) as exc:
                record = self._unreadable_headers(message, exc)
            tp = Partition(topic, partition)
            records = polled.get(tp)
            if records is None:
                polled[tp] = [record]
            else:
                records.append(record)
        if self._sought and polled:
            for tp in polled:
                self._sought.pop(tp, None)  # librdkafka knows the position again
        return polled

    def _unreadable_headers(self, message: Any, exc: BaseException) -> Damaged:
        """The record of a message whose headers cannot be read (see `_headers_of`), read as
        stored for its headers; its key and value are intact either way, so it can be
        dead-lettered."""
        cause = exc.__cause__ or exc.__context__ or exc
        detail = f"a header is not readable by the client ({type(cause).__name__}: {cause})"
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        key, value, timestamp = message.key(), message.value(), message.timestamp()[1]
        return (bad_header_record(self.kafka, topic, partition, offset, detail, key, value,
                                  timestamp)
                or Damaged(topic, partition, offset, BAD_HEADER, detail, key, value,
                           timestamp, []))

    def _damaged(self, message: Any, error: Any) -> list[Damaged]:
        """A batch librdkafka cannot read (checksum, decompression), reported at its first
        offset: a `Damaged` entry per record of it, the position moved past it
        (`raw_fetch.batch_end`). Nothing for a report of a batch already skipped: librdkafka
        may have queued the same error more than once before the seek, and an offset must
        never go back."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or offset is None or offset < 0:
            log.warning("consumer: %s", error.str())
            return []
        if offset < self._skipped_up_to.get((topic, partition), -1):
            return []
        end = batch_end(self.kafka, topic, partition, offset) or offset + 1
        self._skipped_up_to[topic, partition] = end
        self._consumer.seek(confluent_kafka.TopicPartition(topic, partition, end))
        self._sought[Partition(topic, partition)] = end
        reason = _UNREADABLE[error.code()]
        return [Damaged(topic, partition, at, reason, error.str()) for at in range(offset, end)]

    # --- positions and offsets ---------------------------------------------------------------

    def committed(self, partition: Partition) -> int | None:
        """The group's committed offset of `partition`, None without one (asks the broker)."""
        if self.group_id is None:
            return None
        try:
            found = self._consumer.committed([_rd(partition)],
                                             timeout=self.kafka.connect_timeout_s)
        except confluent_kafka.KafkaException as exc:
            raise as_failure(exc.args[0]) from None
        return None if found[0].offset < 0 else found[0].offset

    def position(self, partition: Partition) -> int | None:
        """Offset of the next record `poll` hands over from `partition`; None before the
        first fetch, unless sought (to the beginning: the log start, once a fetch said it)."""
        offset = self._consumer.position([_rd(partition)])[0].offset
        if offset >= 0:
            return int(offset)
        sought = self._sought.get(Partition(*partition))
        if sought is None:
            return None
        if sought == _BEGINNING:
            low = self._consumer.get_watermark_offsets(_rd(partition), cached=True)[0]
            return None if low < 0 else int(low)
        return sought

    def highwater(self, partition: Partition) -> int | None:
        """The partition's end offset as of the last fetch (no request); None until known."""
        high = self._consumer.get_watermark_offsets(_rd(partition), cached=True)[1]
        return None if high < 0 else int(high)

    def commit(self, offsets: Mapping[Partition, int], timeout_s: float = 30.0) -> None:
        """Commit and wait for the group's answer (`CommitFailed` when it refuses).

        librdkafka's synchronous commit has no deadline of its own: it ends with the
        request's (`socket.timeout.ms`, 60 s), whatever `timeout_s` says."""
        if self.group_id is None:
            raise CommitFailed("a consumer without a group cannot commit")
        if not offsets:  # librdkafka: `_NO_OFFSET` (measured); the port: nothing to do
            return
        try:
            self._consumer.commit(offsets=[confluent_kafka.TopicPartition(
                p.topic, p.partition, offset) for p, offset in offsets.items()],
                asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            found = as_failure(exc.args[0])  # librdkafka's own timeouts included
            if isinstance(found, KafkaTimeout):
                raise found from None
            raise commit_failure(found.code, str(found)) from None

    # --- assignment --------------------------------------------------------------------------

    def assignment(self) -> set[Partition]:
        return set(_ours(self._consumer.assignment()))

    def pause(self, *partitions: Partition) -> None:
        self._consumer.pause([_rd(p) for p in partitions])

    def resume(self, *partitions: Partition) -> None:
        self._consumer.resume([_rd(p) for p in partitions])

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        ours = _ours(partitions)
        for p in ours:  # a partition may come back at an offset before a skip
            self._skipped_up_to.pop(p, None)
            self._sought.pop(p, None)
        if self._listener is not None:
            self._listener.on_partitions_assigned(ours)

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            self._listener.on_partitions_revoked(_ours(partitions))

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            self._listener.on_partitions_lost(_ours(partitions))

    # --- the cluster -------------------------------------------------------------------------

    def connected(self) -> bool | None:
        """Whether librdkafka holds a connection to a broker, as of its last statistics."""
        return None if self._connections is None else self._connections > 0

    def _statistics(self, stats_json: str) -> None:
        brokers = orjson.loads(stats_json).get("brokers", {})
        self._connections = sum(1 for broker in brokers.values() if broker.get("state") == "UP")

    def topics(self) -> set[str]:
        """The topics that exist, asked of the cluster now (internal ones left out); the
        ids of the topics `topic_id` was asked about are fetched again."""
        try:
            metadata = self._consumer.list_topics(timeout=self.kafka.connect_timeout_s)
        except confluent_kafka.KafkaException as exc:
            raise as_failure(exc.args[0]) from None
        names = {name for name, found in metadata.topics.items()
                 if found.error is None and not name.startswith("__")}
        for topic in list(self._topic_ids):
            self._topic_ids[topic] = self._fetch_topic_id(topic) if topic in names else None
        return names

    def topic_id(self, topic: str) -> str | None:
        """The id of `topic` as last fetched (fetched on first use); None when unknown."""
        if topic not in self._topic_ids:
            self._topic_ids[topic] = self._fetch_topic_id(topic)
        found = self._topic_ids[topic]
        return None if found is None else str(found)

    def _fetch_topic_id(self, topic: str) -> object | None:
        if self._admin is None:  # kept for the next check
            self._admin = AdminClient(rdkafka_config(self.kafka) | {"logger": client_log})
        futures = self._admin.describe_topics(confluent_kafka.TopicCollection([topic]),
                                              request_timeout=self.kafka.connect_timeout_s)
        try:
            return futures[topic].result(timeout=self.kafka.connect_timeout_s).topic_id
        except (confluent_kafka.KafkaException, TimeoutError) as exc:
            log.info("could not describe topic %s: %s", topic, exc)
            return None

    def close(self) -> None:
        """Leave the group (no commit: the service commits at its checkpoints).

        A member that closes while it is joining is not forgotten by every broker: the
        embedded one then holds the group's next join for the whole rebalance timeout
        (max_poll_interval_ms, 5 minutes by default; measured). So a join in progress is
        finished first, for at most the session timeout, while a broker is connected.
        """
        deadline = time.monotonic() + self._session_timeout_s
        while (self._subscribed and self._connections and not self._consumer.assignment()
               and time.monotonic() < deadline):
            self._consumer.consume(1, 0.1)  # serves the join; records are not taken
        self._consumer.close()


_UNREADABLE = {confluent_kafka.KafkaError._BAD_MSG: BAD_CHECKSUM,
               confluent_kafka.KafkaError._BAD_COMPRESSION: BAD_COMPRESSION}


_headers_of = operator.methodcaller("headers")
"""`Message.headers()` called from C, where the interpreter always checks the result.

On a header key that is not UTF-8, confluent-kafka returns the headers (with a NULL in place
of the key, which crashes the process when touched) *and* leaves the UnicodeDecodeError set.
A plain `message.headers()` call site, once the interpreter has specialised it, does not look
for that exception: it surfaces later, at an unrelated call (measured: in the next record's
constructor). Called through `methodcaller`, the result is checked at once and becomes a
SystemError, and the broken list is dropped."""


def _rd(partition: Partition) -> confluent_kafka.TopicPartition:
    return confluent_kafka.TopicPartition(partition[0], partition[1])


def _ours(partitions: Iterable[Any]) -> list[Partition]:
    return [Partition(tp.topic, tp.partition) for tp in partitions]

