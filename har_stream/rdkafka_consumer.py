"""A librdkafka group consumer (confluent-kafka) behind the part of kafka-python's API we use.

Why: with kafka-python, fetching and parsing sensor records took ~13 % of the recognizer's
CPU at 5,000 devices (its poll on the loop thread and its network thread contending for the
interpreter lock); librdkafka fetches in its own C threads into a local queue and hands over
ready records (docs/PERFORMANCE.md §9). `Service` keeps calling what it called before:

- `poll(timeout_ms, max_records)` returns `{TopicPartition: [records]}` of records with
  kafka-python's attribute names (topic, partition, offset, timestamp, key, value, headers);
- rebalance callbacks run inside `poll`, on the caller's thread, and are handed to the
  kafka-python listener given to `subscribe` (the service's only records them);
- `committed`, `position`, `highwater`, `assignment`, `pause`, `resume`, `commit` take and
  return kafka-python's `TopicPartition` / `OffsetAndMetadata`; failures raise kafka-python
  errors, so the service's handling is unchanged;
- `metrics()` reports the brokers librdkafka holds a connection to (from its statistics,
  every `STATS_INTERVAL_MS`), which is what `health.BrokerWatch` reads;
- `topic_id` / `topics()` give the sensor topic's id for `health.TopicIdentity` (an admin
  request, made once and again whenever the service asks for fresh metadata).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import confluent_kafka
import orjson
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition
from kafka.errors import CommitFailedError

from har_stream.kafka.rdkafka_producer import (
    as_kafka_error,
    client_error_logger,
    client_log,
    rdkafka_config,
)
from har_stream.service.settings import KafkaSettings

log = logging.getLogger(__name__)
STATS_INTERVAL_MS = 500
"""How often librdkafka reports its broker connections (`health.BrokerWatch` checks every
0.5 s and declares an outage after 1 s without one)."""


class ConsumedRecord(NamedTuple):
    """One sensor record, under kafka-python's `ConsumerRecord` attribute names."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


class RdKafkaConsumer:
    """kafka-python's consumer calls on top of confluent-kafka (see the module doc).

    Takes `make_consumer`'s keyword arguments; those without a librdkafka counterpart
    (`max_poll_records`: here the `max_records` of each `poll`) are ignored.
    """

    def __init__(self, kafka: KafkaSettings, group_id: str, *, fetch_max_wait_ms: int = 25,
                 session_timeout_ms: int = 10000, heartbeat_interval_ms: int = 3000,
                 max_poll_interval_ms: int = 300000, **_ignored: Any) -> None:
        self.kafka = kafka
        self._connections: int | None = None
        self._topic_ids: dict[str, object | None] = {}
        self._listener: Any = None
        self._subscribed = False
        self._session_timeout_s = session_timeout_ms / 1000.0
        self._consumer = confluent_kafka.Consumer(rdkafka_config(kafka) | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": fetch_max_wait_ms,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
            "max.poll.interval.ms": max_poll_interval_ms,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._statistics,
            "logger": client_log,
            "error_cb": client_error_logger("consumer"),
        })

    # --- consuming ---------------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self._listener = listener
        self._subscribed = True
        self._consumer.subscribe(topics, on_assign=self._assigned, on_revoke=self._revoked,
                                 on_lost=self._lost)

    def poll(self, timeout_ms: int = 0, max_records: int = 500
             ) -> dict[TopicPartition, list[ConsumedRecord]]:
        """Up to `max_records` records, grouped by partition in the order they came.

        Like kafka-python's, returns as soon as records are there: librdkafka's `consume`
        waits for all `max_records` or the timeout, so only a wait for the first one blocks.
        """
        consume = self._consumer.consume
        messages: list[Any] = consume(max_records, 0)  # a record's fields are never None
        if not messages and timeout_ms > 0:
            messages = consume(1, timeout_ms / 1000.0)
            if messages and max_records > 1:
                messages += consume(max_records - 1, 0)
        polled: dict[TopicPartition, list[ConsumedRecord]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                log.warning("consumer: %s", error.str())
                continue
            topic, partition = message.topic(), message.partition()
            record = ConsumedRecord(topic, partition, message.offset(), message.timestamp()[1],
                                    message.key(), message.value(), message.headers())
            tp = TopicPartition(topic, partition)
            records = polled.get(tp)
            if records is None:
                polled[tp] = [record]
            else:
                records.append(record)
        return polled

    # --- positions and offsets ---------------------------------------------------------------

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of `tp`, None when it has none (asks the broker)."""
        try:
            found = self._consumer.committed([_rd(tp)], timeout=self.kafka.connect_timeout_s)
        except confluent_kafka.KafkaException as exc:
            raise as_kafka_error(exc.args[0]) from None
        return None if found[0].offset < 0 else found[0].offset

    def position(self, tp: TopicPartition) -> int | None:
        """Offset of the next record to consume from `tp`; None before the first fetch."""
        offset = self._consumer.position([_rd(tp)])[0].offset
        return None if offset < 0 else offset

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as of the last fetch (no request); None until known."""
        high = self._consumer.get_watermark_offsets(_rd(tp), cached=True)[1]
        return None if high < 0 else high

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        """Commit `offsets` (kafka-python's OffsetAndMetadata values) and wait for the answer.

        librdkafka's synchronous commit has no deadline of its own; it ends with the
        request's (socket.timeout.ms)."""
        try:
            self._consumer.commit(offsets=[confluent_kafka.TopicPartition(
                tp.topic, tp.partition, meta.offset) for tp, meta in offsets.items()],
                asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            raise CommitFailedError(exc.args[0].str()) from None

    # --- assignment --------------------------------------------------------------------------

    def assignment(self) -> set[TopicPartition]:
        return set(_kp(self._consumer.assignment()))

    def pause(self, *partitions: TopicPartition) -> None:
        self._consumer.pause([_rd(tp) for tp in partitions])

    def resume(self, *partitions: TopicPartition) -> None:
        self._consumer.resume([_rd(tp) for tp in partitions])

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            self._listener.on_partitions_assigned(_kp(partitions))

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            self._listener.on_partitions_revoked(_kp(partitions))

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        if self._listener is not None:
            self._listener.on_partitions_lost(_kp(partitions))

    # --- health ------------------------------------------------------------------------------

    def metrics(self) -> dict[str, dict[str, float]]:
        """Open broker connections, as kafka-python reports them ({} until first known)."""
        if self._connections is None:
            return {}
        return {"librdkafka": {"connection-count": float(self._connections)}}

    def _statistics(self, stats_json: str) -> None:
        brokers = orjson.loads(stats_json).get("brokers", {})
        self._connections = sum(1 for broker in brokers.values() if broker.get("state") == "UP")

    def topics(self) -> set[str]:
        """The subscribed topics' names, refreshing their ids from the cluster."""
        for topic in list(self._topic_ids):
            self._topic_ids[topic] = self._fetch_topic_id(topic)
        return set(self._topic_ids)

    def topic_id(self, topic: str) -> object | None:
        """The id of `topic` as last fetched (fetched on first use); None when unknown."""
        if topic not in self._topic_ids:
            self._topic_ids[topic] = self._fetch_topic_id(topic)
        return self._topic_ids[topic]

    def _fetch_topic_id(self, topic: str) -> object | None:
        admin = AdminClient(rdkafka_config(self.kafka) | {"logger": client_log})
        futures = admin.describe_topics(confluent_kafka.TopicCollection([topic]),
                                        request_timeout=self.kafka.connect_timeout_s)
        try:
            return str(futures[topic].result(timeout=self.kafka.connect_timeout_s).topic_id)
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


def _rd(tp: TopicPartition) -> confluent_kafka.TopicPartition:
    return confluent_kafka.TopicPartition(tp.topic, tp.partition)


def _kp(partitions: Iterable[Any]) -> list[TopicPartition]:
    return [TopicPartition(tp.topic, tp.partition) for tp in partitions]
