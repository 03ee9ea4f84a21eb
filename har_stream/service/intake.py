"""Intake: a poll's records turned into sensor batches, the rest dead-lettered or skipped.

Why a module of its own: every record a producer can send passes here first, so all the
input's defences sit in one place, in the order that keeps them cheap: records of partitions
this member does not own are dropped; replays of messages a restored snapshot already holds
are skipped before decoding; records the client could not read (`ports.Damaged`) are
dead-lettered or skipped; the codec rejects malformed ones (dead letter with reason
headers); a new device beyond `max_devices` is dead-lettered (`guards.DeviceLimit`); the
rate guard flags devices sending far above 50 Hz. Nothing here raises for a record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from har_stream.core import codec
from har_stream.core.records import RATE_HZ, SensorBatch
from har_stream.core.state import DeviceRegistry
from har_stream.kafka.ports import Damaged, Partition, Record
from har_stream.service import metrics
from har_stream.service.delivery import Outbox
from har_stream.service.guards import TOO_MANY_DEVICES, DeviceLimit, RateGuard
from har_stream.service.ownership import Ownership
from har_stream.service.settings import Settings

log = logging.getLogger(__name__)


class Intake:
    """Decodes one poll at a time for one group member (see the module doc)."""

    def __init__(self, settings: Settings, registry: DeviceRegistry, ownership: Ownership,
                 outbox: Outbox) -> None:
        self.registry = registry
        self.ownership = ownership
        self.outbox = outbox
        self.max_devices = settings.max_devices
        self.limits = codec.Limits(max_samples=settings.max_samples_per_message,
                                   max_message_bytes=settings.max_message_bytes)
        self.device_limit = DeviceLimit(settings.max_devices)
        self.rate_guard = RateGuard(RATE_HZ, settings.max_rate_factor,
                                    burst_samples=settings.max_samples_per_message)

    def decode(self, polled: Mapping[Partition, list[Record | Damaged]]) -> list[SensorBatch]:
        """The batches of a poll to recognise, in the order they came per partition."""
        batches: list[SensorBatch] = []
        consumed = 0
        own = self.ownership
        self.device_limit.reset()
        for tp, records in polled.items():
            p = tp.partition
            if p not in own.owned:
                log.warning("dropping %d records of unowned partition %d", len(records), p)
                continue
            for record in records:
                if own.is_replay(p, record.offset):
                    continue
                consumed += 1
                if type(record) is Damaged:  # the client could not read it whole
                    self._damaged(record)
                    continue
                try:
                    batch = codec.decode_sensor(record.value, record.key, self.limits,
                                                record_ts_ms=max(record.timestamp, 0))
                except codec.DecodeError as error:
                    self.dead_letter(record, error.reason, error.detail)
                    continue
                if own.is_covered(batch.device_id, record.offset):
                    continue
                if not self.device_limit.admit(batch.device_id, self.registry,
                                               len(self.registry)):
                    self.dead_letter(record, TOO_MANY_DEVICES,
                                     f"{len(self.registry)} devices have state in this "
                                     f"process, the limit is {self.max_devices}")
                    continue
                self.rate_guard.observe(batch.device_id, len(batch.samples),
                                        batch.record_ts_ms)
                own.touched(batch.device_id, p)
                batches.append(batch)
        # once per poll: a metric update costs ~0.6 µs, ~4 µs with a label (§9)
        metrics.MESSAGES_CONSUMED.inc(consumed)
        metrics.SAMPLES_CONSUMED.inc(sum(len(batch.samples) for batch in batches))
        return batches

    def _damaged(self, record: Damaged) -> None:
        """Dead-letter what can be read of it, else skip it: logged, counted (`poison`)."""
        if record.readable:
            self.dead_letter(record, record.reason, record.detail)
            return
        metrics.RECORDS_SKIPPED.labels(reason=record.reason).inc()
        log.error("skipped %s[%d]@%d, which the Kafka client cannot read: %s: %s",
                  record.topic, record.partition, record.offset, record.reason, record.detail)

    def dead_letter(self, record: Any, reason: str, detail: str) -> None:
        """A bounded copy of `record` to the dead-letter topic, with the reason headers."""
        metrics.MESSAGES_REJECTED.labels(reason=reason).inc()
        log.info("rejected %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset,
                 reason, detail)
        self.outbox.dead_letter(record.key, record.value, record.headers or [],
                                codec.dead_letter_headers(reason, detail, record.topic,
                                                          record.partition, record.offset))
