"""Record batches no well-behaved client writes, produced straight to the broker.

Kafka header keys are bytes on the wire, but both clients only send UTF-8 ones (kafka-python
encodes `str` keys; confluent-kafka turns a bytes key into the text of its repr). Corrupt
batches (a compression flag over bytes that do not decompress, a checksum that does not match)
come from faulty producers or damaged disks. So the tests write the batch with kafka-python's
record builder and send it in a produce request of its own (`produce_batch`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from kafka.protocol.producer import ProduceRequest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c

GZIP = 1
T0_MS = 1_700_000_000_000


class RawKey(str):
    """A header key whose wire bytes are given (the builder calls `.encode("utf-8")`)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawKey:
        key = super().__new__(cls, raw.decode("latin-1"))
        key.raw = raw
        return key

    def encode(self, *_args: Any, **_kwargs: Any) -> bytes:  # type: ignore[override]
        return self.raw


Record = tuple[bytes | None, bytes | None, Sequence[tuple[Any, bytes | None]]]


def batch(records: Sequence[Record], compression: int = 0) -> bytearray:
    """A v2 record batch of (key, value, headers); header keys may be `RawKey`s."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=compression,
                                        is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 24)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=T0_MS + i, key=key, value=value, headers=list(headers))
    return builder.build()


def _reseal(data: bytearray) -> bytearray:
    """Recompute the batch checksum over what follows it (as a producer would)."""
    crc = calc_crc32c(memoryview(data)[DefaultRecordBatch.ATTRIBUTES_OFFSET:])
    struct.pack_into(">I", data, DefaultRecordBatch.CRC_OFFSET, crc)
    return data


def undecompressable(records: Sequence[Record], codec: int = GZIP) -> bytearray:
    """A batch flagged with `codec` (1 gzip, 2 snappy, 3 lz4, 4 zstd) whose records are not
    data of it; its checksum is right."""
    data = batch(records)
    attributes_at = DefaultRecordBatch.ATTRIBUTES_OFFSET
    attributes = struct.unpack_from(">h", data, attributes_at)[0]
    struct.pack_into(">h", data, attributes_at, attributes | codec)
    return _reseal(data)


def bad_checksum(records: Sequence[Record]) -> bytearray:
    """A readable batch whose checksum does not match: the last byte of the first record's
    value changed after sealing (make it one that may change, e.g. a space)."""
    data = batch(records)
    value = records[0][1]
    assert value, "the first record needs a value"
    data[data.index(value) + len(value) - 1] ^= 0x01
    return data


def produce_batch(kafka: Any, topic: str, partition: int, data: bytes) -> int:
    """Append `data` to `topic`/`partition` as is; the first offset the broker gave it."""
    from kafka import KafkaAdminClient
    from kafka.protocol.producer import ProduceResponse  # noqa: F401 (registers the type)

    from har_stream.kafka.clients import close_quietly
    from har_stream.kafka.connect import build

    admin = build(kafka, "admin client", KafkaAdminClient)  # for its raw requests
    try:
        request = ProduceRequest(acks=-1, timeout_ms=10000, topic_data=[
            ProduceRequest.TopicProduceData(name=topic, partition_data=[
                ProduceRequest.TopicProduceData.PartitionProduceData(
                    index=partition, records=bytes(data))])])

        async def send() -> Any:
            return await admin._manager.send(request)

        response = admin._manager.run(send)
    finally:
        close_quietly(admin)
    answer = response.responses[0].partition_responses[0]
    assert answer.error_code == 0, f"produce refused: error {answer.error_code}"
    return int(answer.base_offset)
