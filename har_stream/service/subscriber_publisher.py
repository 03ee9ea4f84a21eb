"""Sends the subscriber records of each step (docs/SUBSCRIBERS.md) through the results' outbox.

Activity changes and closed days are sent as they come. Device records are sent either once
per poll for every device with windows in it (`per_checkpoint=False`), or only each device's
latest one, once per checkpoint (`per_checkpoint=True`): a device sending one message per
1.28 s is in nearly every poll, so per poll its record costs about as much as its result,
while a status topic needs only the latest. The checkpoint calls `flush` before it closes its
outbox epoch, so an offset is committed only once the device records of its windows are
acknowledged too; a crash before that loses only records that the replay builds again. An
assignment change flushes them too, before the partitions go to another member, as records
sent per poll would have gone before it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from har_stream.core.outputs_codec import encode_change, encode_day, encode_device
from har_stream.core.subscriber_outputs import SubscriberStep
from har_stream.core.subscriber_records import DeviceStatus
from har_stream.service import metrics
from har_stream.service.delivery import Outbox
from har_stream.service.settings import TopicSettings


def _acknowledged_by(counter: Any) -> Callable[[Any], None]:
    return lambda _metadata: counter.inc()


_ACKS = {kind: _acknowledged_by(metrics.SUBSCRIBER_RECORDS_PUBLISHED.labels(kind=kind))
         for kind in metrics.SUBSCRIBER_KINDS}


class SubscriberPublisher:
    """The three subscriber topics of one service, keyed by device id."""

    def __init__(self, outbox: Outbox, topics: TopicSettings, per_checkpoint: bool) -> None:
        self.outbox = outbox
        self.topics = topics
        self.per_checkpoint = per_checkpoint
        self._devices: dict[str, DeviceStatus] = {}  # latest per device, not yet sent

    def send(self, step: SubscriberStep) -> None:
        send, topics = self.outbox.send, self.topics
        for change in step.changes:
            send(topics.changes_topic, change.device_id.encode(), encode_change(change),
                 on_ack=_ACKS["changes"])
        for day in step.closed_days:
            send(topics.daily_topic, day.device_id.encode(), encode_day(day),
                 on_ack=_ACKS["daily"])
        if self.per_checkpoint:
            self._devices.update((device.device_id, device) for device in step.devices)
        else:
            self._send_devices(step.devices)
        metrics.BLIPS_SUPPRESSED.inc(step.suppressed)

    def flush(self) -> None:
        """Send the device records held back for the checkpoint (none per poll)."""
        if self._devices:
            devices, self._devices = list(self._devices.values()), {}
            self._send_devices(devices)

    def _send_devices(self, devices: list[DeviceStatus]) -> None:
        send, topic, on_ack = self.outbox.send, self.topics.devices_topic, _ACKS["devices"]
        for device in devices:
            send(topic, device.device_id.encode(), encode_device(device), on_ack=on_ack)
