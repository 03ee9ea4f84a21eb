"""Records the Kafka client itself cannot hand over: what the loop gets instead of a crash.

A record can fail below the codec, inside the client: a header key that is not UTF-8 (header
keys are bytes on the wire, both clients insist on text), a batch whose checksum does not
match, a batch flagged compressed whose bytes do not decompress. Left alone, the client raises
from `poll` (kafka-python: `CorruptRecordError`, or the decompressor's own error; librdkafka:
an error event per fetch, or a `SystemError` from `Message.headers()`), the service exits,
and every restart dies on the same record: a crash loop that blocks the partition.

Both consumers therefore turn such a record into a `Damaged` entry of the poll, at its own
offset, and move their position past it. The loop (`app.Service._decode`) then either
dead-letters it (`readable`: key and value were read, e.g. only the headers failed) with the
reason `bad_header`, or skips it with an ERROR log and `har_records_skipped_total{reason}`;
either way its offset is committed like any other, so a restart does not meet it again.
A batch that cannot be read is skipped one offset at a time (the clients fetch whole batches
and report the offset they asked for), so each of its records is logged and counted.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, KafkaError

log = logging.getLogger(__name__)

BAD_HEADER = "bad_header"
"""Dead-letter reason of a record whose headers the client cannot read (beside codec.REASONS
and guards.APP_REASONS: the client, not the codec, finds it)."""
DEAD_LETTER_REASONS = (BAD_HEADER,)
BAD_CHECKSUM = "bad_checksum"
BAD_COMPRESSION = "bad_compression"
CORRUPT_RECORD = "corrupt_record"
SKIP_REASONS = (BAD_CHECKSUM, BAD_COMPRESSION, CORRUPT_RECORD)
"""Every `har_records_skipped_total` reason: a closed set, safe as a metric label."""


class Damaged(NamedTuple):
    """A record the client could not hand over whole, in place of that record in a poll."""

    topic: str
    partition: int
    offset: int
    reason: str  # BAD_HEADER (readable: dead-lettered) or one of SKIP_REASONS
    detail: str
    key: bytes | None = None
    value: bytes | None = None
    timestamp: int = -1
    headers: list[tuple[str, bytes]] | None = None

    @property
    def readable(self) -> bool:
        return self.reason == BAD_HEADER


class GuardedKafkaConsumer(KafkaConsumer):
    """kafka-python's consumer whose `poll` returns a `Damaged` entry for a record it cannot
    parse, instead of raising for ever on it (see the module doc)."""

    def poll(self, timeout_ms: int = 0, max_records: int | None = None,
             update_offsets: bool = True) -> dict[Any, list[Any]]:
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
            return {tp: [Damaged(tp.topic, tp.partition, offset, reason, detail)]}

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


def batch_end(kafka: Any, topic: str, partition: int, offset: int,
              timeout_s: float = 10.0) -> int | None:
    """The offset after the record batch that holds `offset`, read from the batch's header
    (which stays readable when its checksum or its compressed records are broken); None when
    the broker does not say.

    librdkafka reports an unreadable batch at the batch's first offset whatever offset it was
    asked for, so moving one offset on would meet the same report again; the whole batch is
    skipped instead. One fetch request on a short-lived connection: this happens only for
    damaged data.
    """
    from kafka.protocol.consumer import FetchRequest

    from har_stream.kafka_io import close_quietly, make_admin

    admin = make_admin(kafka)
    try:
        request = FetchRequest(replica_id=-1, max_wait_ms=200, min_bytes=1, max_bytes=1 << 20,
                               isolation_level=0, session_id=0,
                               session_epoch=-1, topics=[FetchRequest.FetchTopic(
                                   topic=topic, partitions=[
                                       FetchRequest.FetchTopic.FetchPartition(
                                           partition=partition, fetch_offset=offset,
                                           current_leader_epoch=-1, log_start_offset=-1,
                                           partition_max_bytes=1 << 20)])],
                               max_version=12)  # topics by name (13 and later: by id)
        manager = admin._manager  # kafka-python has no public call for a raw request

        async def fetch() -> Any:
            node = manager.cluster.leader_for_partition(TopicPartition(topic, partition))
            return await manager.send(request, node_id=node if node is not None and node >= 0
                                      else None, request_timeout_ms=int(timeout_s * 1000))

        response = manager.run(fetch)
        data = response.responses[0].partitions[0].records
    except Exception as exc:  # a best effort: the caller then moves one offset on
        log.warning("could not read the batch header at %s[%d]@%d: %s", topic, partition,
                    offset, exc)
        return None
    finally:
        close_quietly(admin)
    return _end_of_batch_at(bytes(data or b""), offset)


_BATCH_HEAD = 61  # a v2 record batch header's size
_LAST_OFFSET_DELTA_AT = 23


def _end_of_batch_at(data: bytes, offset: int) -> int | None:
    """Walk the batch headers of fetched bytes to the batch holding `offset`."""
    import struct

    pos = 0
    while pos + _BATCH_HEAD <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        last_delta = struct.unpack_from(">i", data, pos + _LAST_OFFSET_DELTA_AT)[0]
        end = base + last_delta + 1
        if base <= offset < end:
            return end
        if length <= 0:
            return None
        pos += 12 + length
    return None
