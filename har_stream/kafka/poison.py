"""Records the Kafka client itself cannot hand over: what the loop gets instead of a crash.

A record can fail below the codec, inside the client: a header key that is not UTF-8 (header
keys are bytes on the wire, both clients insist on text), a batch whose checksum does not
match, a batch flagged compressed whose bytes do not decompress. Left alone, the client raises
from `poll` (kafka-python: `CorruptRecordError`, or the decompressor's own error; librdkafka:
an error event per fetch, or a `SystemError` from `Message.headers()`), the service exits,
and every restart dies on the same record: a crash loop that blocks the partition.

Both consumer drivers therefore turn such a record into a `Damaged` entry of the poll, at its
own offset, and move their position past it (kafka-python's in
`drivers.kafka_python_consumer.GuardedKafkaConsumer`, librdkafka's in
`drivers.librdkafka_consumer`). The loop then either dead-letters it (`readable`: only its
headers failed; it is read as stored, `raw_fetch`, so
the dead letter carries its key, value, text-keyed headers and the raw header section) with
the reason `bad_header`, or skips it with an ERROR log and `har_records_skipped_total{reason}`;
either way its offset is committed like any other, so a restart does not meet it again.
Every record of a batch that cannot be read is skipped and counted: kafka-python reports the
offset it stopped at, so it moves on one offset at a time; librdkafka reports the batch's
first offset whatever it asked for, so the whole batch is skipped at once (`raw_fetch`
reads where it ends).
"""

from __future__ import annotations

import logging
from typing import Any

from har_stream.kafka.ports import (
    BAD_CHECKSUM,
    BAD_COMPRESSION,
    BAD_HEADER,
    CORRUPT_RECORD,
    SKIP_REASONS,
    Damaged,
)

__all__ = ["BAD_CHECKSUM", "BAD_COMPRESSION", "BAD_HEADER", "CORRUPT_RECORD", "DEAD_LETTER_REASONS",
           "HEADER_RAW_HEADERS", "SKIP_REASONS", "Damaged", "bad_header_record"]

log = logging.getLogger(__name__)

DEAD_LETTER_REASONS = (BAD_HEADER,)
"""Dead-letter reason of a record whose headers the client cannot read (beside codec.REASONS
and guards.APP_REASONS: the client, not the codec, finds it)."""


HEADER_RAW_HEADERS = "har.source.headers"
"""Dead-letter header of a `bad_header` record: its header section as stored, byte for byte
(Kafka's encoding: a varint count, then each key and value as varint length and bytes), since
no client can write a header key that is not text."""


def bad_header_record(kafka: Any, topic: str, partition: int, offset: int, detail: str,
                      key: bytes | None = None, value: bytes | None = None,
                      timestamp: int = -1) -> Damaged | None:
    """A `bad_header` entry for the record at `offset`, read as stored (`raw_fetch`): its key
    and value, the headers whose keys are text, and all of them raw in HEADER_RAW_HEADERS.
    None when it cannot be read, or when its header keys are all text (another fault)."""
    from har_stream.kafka.raw_fetch import read_record

    raw = read_record(kafka, topic, partition, offset)
    if raw is None:
        return None
    readable: list[tuple[str, bytes]] = []
    for name, content in raw.headers:
        try:
            readable.append((name.decode("utf-8"), content or b""))
        except UnicodeDecodeError:
            continue
    if len(readable) == len(raw.headers):
        return None
    return Damaged(topic, partition, offset, BAD_HEADER, detail,
                   raw.key if key is None else key, raw.value if value is None else value,
                   raw.timestamp if timestamp < 0 else timestamp,
                   [*readable, (HEADER_RAW_HEADERS, raw.raw_headers)])
