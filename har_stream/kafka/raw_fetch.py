"""Reading a partition's bytes as the broker stores them, for records a client cannot parse.

Both Kafka clients refuse a record whose header key is not UTF-8 and report a broken batch
without saying where it ends (`poison`). The bytes themselves say both: one fetch request
returns the record batches, whose 61-byte headers (base offset, last offset delta) stay
readable when the checksum or the compressed records are broken, and whose records are read
here without decoding the header keys. Used only for damaged data, on a short-lived
connection (kafka-python's admin client, which connects like every client of the service).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.record.util import decode_varint

log = logging.getLogger(__name__)

_BATCH_HEAD = 61  # a v2 record batch header's size
_ATTRIBUTES_AT = 21
_LAST_OFFSET_DELTA_AT = 23
_FIRST_TIMESTAMP_AT = 27
_COMPRESSION_MASK = 0x07
MAX_FETCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as stored: key, value and its header section byte for byte."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[bytes, bytes | None]]  # keys as bytes, never decoded
    raw_headers: bytes  # the header section as on the wire (count, then key/value pairs)


def fetch(kafka: Any, topic: str, partition: int, offset: int,
          timeout_s: float = 10.0) -> bytes | None:
    """The record batches from `offset` on (at most ~1 MiB), or None when not available."""
    from kafka import KafkaAdminClient
    from kafka.protocol.consumer import FetchRequest

    from har_stream.kafka.connect import build

    admin = build(kafka, "raw reader", KafkaAdminClient)
    try:
        request = FetchRequest(
            replica_id=-1, max_wait_ms=200, min_bytes=1, max_bytes=MAX_FETCH_BYTES,
            isolation_level=0, session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=topic, partitions=[
                FetchRequest.FetchTopic.FetchPartition(
                    partition=partition, fetch_offset=offset, current_leader_epoch=-1,
                    log_start_offset=-1, partition_max_bytes=MAX_FETCH_BYTES)])],
            max_version=12)  # topics by name (13 and later: by id)
        manager = admin._manager  # kafka-python has no public call for a raw request

        async def send() -> Any:
            node = manager.cluster.leader_for_partition(TopicPartition(topic, partition))
            return await manager.send(request, node_id=node if node is not None and node >= 0
                                      else None, request_timeout_ms=int(timeout_s * 1000))

        response = manager.run(send)
        data = response.responses[0].partitions[0].records
    except Exception as exc:  # a best effort: the callers have a fallback
        log.warning("could not fetch %s[%d]@%d as stored: %s", topic, partition, offset, exc)
        return None
    finally:
        admin.close()
    return bytes(data or b"")


def batch_end(kafka: Any, topic: str, partition: int, offset: int) -> int | None:
    """The offset after the record batch that holds `offset`; None when unknown.

    librdkafka reports an unreadable batch at the batch's first offset whatever offset it was
    asked for, so moving one offset on would meet the same report again: the whole batch is
    skipped instead."""
    data = fetch(kafka, topic, partition, offset)
    found = None if data is None else _batch_at(data, offset)
    return None if found is None else found[1]


def read_record(kafka: Any, topic: str, partition: int, offset: int) -> RawRecord | None:
    """The record at `offset` with its headers undecoded; None when it cannot be read (a
    broken batch, or a compression this process cannot undo)."""
    data = fetch(kafka, topic, partition, offset)
    found = None if data is None else _batch_at(data, offset)
    if found is None:
        return None
    try:
        return _record_in(data[found[0]:found[0] + found[2]], offset)  # type: ignore[index]
    except Exception as exc:  # broken data: the caller skips the record instead
        log.warning("cannot read %s[%d]@%d as stored: %s", topic, partition, offset, exc)
        return None


def _batch_at(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(start, end offset, size in bytes) of the batch of `data` holding `offset`."""
    pos = 0
    while pos + _BATCH_HEAD <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        last_delta = struct.unpack_from(">i", data, pos + _LAST_OFFSET_DELTA_AT)[0]
        if base <= offset <= base + last_delta:
            return pos, base + last_delta + 1, 12 + length
        if length <= 0:
            return None
        pos += 12 + length
    return None


def _record_in(batch: bytes, offset: int) -> RawRecord | None:
    base = struct.unpack_from(">q", batch, 0)[0]
    attributes = struct.unpack_from(">h", batch, _ATTRIBUTES_AT)[0]
    first_timestamp = struct.unpack_from(">q", batch, _FIRST_TIMESTAMP_AT)[0]
    count = struct.unpack_from(">i", batch, _BATCH_HEAD - 4)[0]
    body = _decompress(attributes & _COMPRESSION_MASK, batch[_BATCH_HEAD:])
    pos = 0
    for _ in range(count):
        length, pos = decode_varint(body, pos)
        end = pos + length
        pos += 1  # attributes (one byte, unused)
        timestamp_delta, pos = decode_varint(body, pos)
        offset_delta, pos = decode_varint(body, pos)
        if base + offset_delta != offset:
            pos = end
            continue
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        headers_at = pos
        headers: list[tuple[bytes, bytes | None]] = []
        header_count, pos = decode_varint(body, pos)
        for _ in range(header_count):
            name, pos = _bytes(body, pos)
            content, pos = _bytes(body, pos)
            headers.append((name or b"", content))
        return RawRecord(offset, first_timestamp + timestamp_delta, key, value, headers,
                         bytes(body[headers_at:end]))
    return None


def _bytes(buffer: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    return bytes(buffer[pos:pos + length]), pos + length


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    from kafka import codec as codecs

    decode = {1: codecs.gzip_decode, 2: codecs.snappy_decode, 3: codecs.lz4_decode,
              4: codecs.zstd_decode}[codec]
    return bytes(decode(data))
