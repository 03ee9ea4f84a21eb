"""The Kafka loop of `har-stream run`: poll, decode, recognise, publish, checkpoint.

One iteration (`Service.step`):
  1. poll up to `max_poll_records` sensor messages (`ports.Consumer`);
  2. apply the partition assignment changes that poll made, before touching any message:
     restore the state of gained partitions from the changelog, drop lost ones' devices;
  3. decode every message (`intake.Intake`): rejected ones go to the dead-letter topic with
     reason headers; replays of messages whose effect a restored snapshot already holds are
     skipped;
  4. one `Recognizer.process` for every batch of the poll (batched model calls);
  5. send the results and counts, and the subscriber records the recognizer derived from
     them (activity changes, device records, closed days), key = device id, without waiting
     (`publish.Publisher`).

A checkpoint runs every `commit_interval_s` without stopping the loop (`checkpoint.Checkpoints`:
snapshots of the devices changed since the last one, then the commit, each step waiting for the
broker's acknowledgement of the one before). At shutdown, `Service.checkpoint` takes a last
one and waits for it.

Delivery guarantee: at-least-once. An offset is committed only after the results of its
message and of all earlier ones are acknowledged, and a snapshot is written only after the
results it reflects are. After a crash or a rebalance, consumption resumes at the last
committed offset with state from the changelog that is as new as that or newer; messages a
newer snapshot already covers are skipped (changelog header `har.changelog.covers-offset`).
So no result is ever missing, some may be published twice with the same window id, and the
per-device counts count every window exactly once. Consumers de-duplicate results by
window id and keep the counts record with the highest `last_seq`.

Faults (docs/RELIABILITY.md): when the cluster is out of reach the loop stays up, reports it
(`health.BrokerWatch`), pauses its partitions while output waits for acknowledgement and
commits nothing until it is acknowledged; a record the broker refuses for good is re-sent a
few times, then dead-lettered (`delivery.Outbox`), so it cannot block its partition; each
poll takes only as many messages as fit in the time budget (`pacing.WorkBudget`), so a slow
model cannot push polls past `max_poll_interval_ms`; new devices beyond `max_devices` are
dead-lettered and devices sending far above 50 Hz are flagged (`guards`); a sensor topic
deleted and created again under the service (its offsets restart at 0) stops it before any
of its messages is applied (`health.TopicIdentity`), so a restart starts afresh.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from har_stream.core.daily import DailySettings
from har_stream.core.pipeline import PipelineConfig
from har_stream.core.recognizer import Recognizer, RecognizerOutput
from har_stream.core.subscriber_outputs import SubscriberSettings
from har_stream.core.transitions import SmoothingSettings
from har_stream.kafka.ports import (
    Consumer,
    Headers,
    KafkaFailure,
    KafkaTimeout,
    Partition,
    Producer,
)
from har_stream.service import metrics
from har_stream.service.changelog import ChangelogReader, ChangelogWriter
from har_stream.service.checkpoint import (
    SNAPSHOTS_PER_IDLE_STEP,
    SNAPSHOTS_PER_STEP,
    Checkpoints,
)
from har_stream.service.delivery import DeliveryFailed, Outbox
from har_stream.service.health import BrokerWatch, TopicIdentity
from har_stream.service.intake import Intake
from har_stream.service.ownership import Ownership
from har_stream.service.pacing import WorkBudget
from har_stream.service.publish import Publisher, record_stats
from har_stream.service.rebalance import RebalanceEvents
from har_stream.service.settings import Settings
from har_stream.service.subscriber_publisher import SubscriberPublisher

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 1.0
"""How often the consumer-lag gauge is refreshed (Prometheus scrapes every 5-15 s)."""
CHECKPOINT_POLL_MS = 10
"""Longest wait of a poll while a checkpoint's snapshots go out: with no input, an idle
poll's wait (`poll_timeout_ms`, 200 ms) paced the slices of a 100,000-device checkpoint."""


class ServiceError(RuntimeError):
    """The service cannot continue without risking lost results (message says why)."""


class TimedModel:
    """Wraps a StatefulModel to record every batched call in the inference metrics."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes = model.classes
        self.state_size = model.state_size
        self.version = model.version

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        metrics.INFERENCE_BATCH_SIZE.observe(len(windows))
        with metrics.INFERENCE_DURATION.time():
            return self.model.predict(windows, state)


class _Snapshots:
    """An outbox as the changelog writer's producer: a refused snapshot is not poison but a
    systemic failure, since committing without it would lose state."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             headers: Headers, partition: int | None) -> Any:
        return self.outbox.send(topic, key, value, headers, partition, poison_to_dlq=False)


class Service:
    """One consumer-group member: the loop and its checkpoints; which devices it holds and
    where their state is are the `Ownership`'s business."""

    def __init__(self, settings: Settings, model: Any, consumer: Consumer, producer: Producer,
                 reader: ChangelogReader, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 snapshot_producer: Producer | None = None) -> None:
        """`snapshot_producer` (default: `producer`) writes the changelog: a producer of its
        own keeps results from queueing behind megabytes of snapshots."""
        self.settings = settings
        self.topics = settings.topics
        self.consumer = consumer
        self.producer = producer
        self.outbox = Outbox(producer, settings.topics.dlq_topic,
                             max_attempts=settings.max_produce_attempts)
        self.snapshot_outbox = Outbox(snapshot_producer or producer, settings.topics.dlq_topic,
                                      max_attempts=settings.max_produce_attempts)
        self.writer = ChangelogWriter(_Snapshots(self.snapshot_outbox),
                                      settings.topics.changelog_topic)
        self.clock, self.wall = clock, wall
        self.recognizer = Recognizer(
            TimedModel(model), PipelineConfig(reorder_samples=settings.reorder_samples),
            clock=clock, subscribers=subscriber_settings(settings))
        self.registry = self.recognizer.registry
        self.subscriber_publisher = SubscriberPublisher(
            self.outbox, settings.topics, settings.device_records == "checkpoint")
        self.publisher = Publisher(self.outbox, settings.topics, self.subscriber_publisher,
                                   wall)
        self.ownership = Ownership(self.registry, reader, self._committed_offset,
                                   settings.idle_ttl_s, clock, wall)
        self.intake = Intake(settings, self.registry, self.ownership, self.outbox)
        self.events = RebalanceEvents()
        self.budget = WorkBudget(settings.max_poll_records, settings.work_budget_s)
        self.watch = BrokerWatch(consumer, settings.kafka.bootstrap_servers, clock=clock)
        self.sensor_identity = TopicIdentity(consumer, settings.topics.sensor_topic)
        self.held = False  # output waits for acknowledgement: partitions paused, no commit
        self._uncommitted = False
        self.checkpoints = Checkpoints(
            self.outbox, self.snapshot_outbox, self.writer, self.ownership, self.registry,
            clock, settings.produce_timeout_s, self._delivered, self._hold, lambda: self.held,
            self._commit)
        self._next_checkpoint = clock() + settings.commit_interval_s
        self._next_eviction = clock() + settings.eviction_interval_s
        self._next_lag = clock()

    def _tp(self, partition: int) -> Partition:
        return Partition(self.topics.sensor_topic, partition)

    def _committed_offset(self, partition: int) -> int | None:
        return self.consumer.committed(self._tp(partition))

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set, then finish with a checkpoint."""
        while not stop.is_set():
            self.checkpoint_tick(idle=self.step() is None)
        self.checkpoint(final=True)

    def checkpoint_tick(self, idle: bool = False) -> None:
        """A loop turn's share of checkpointing: start one when due, advance the one in
        flight (never waits); a larger slice of snapshots after a step that polled nothing."""
        if self.checkpoints.current is None and self.clock() >= self._next_checkpoint:
            self._begin_checkpoint()
        if self.checkpoints.current is not None:
            self._advance_checkpoint(SNAPSHOTS_PER_IDLE_STEP if idle else SNAPSHOTS_PER_STEP)

    def step(self) -> RecognizerOutput | None:
        """Poll, apply assignment changes, decode, recognise, send (see the module doc).

        While output waits for acknowledgement (`held`), the partitions are paused: the poll
        keeps the group membership alive and brings no new work.
        """
        was_down = not self.watch.check()
        if self.held:
            self._pause(True)
        with metrics.STAGE_DURATION.labels(stage="poll").time():
            polled = self.consumer.poll(timeout_ms=self._poll_wait_ms(),
                                        max_records=self.budget.limit)
        self.outbox.serve()  # acknowledgements that arrived meanwhile: metrics, errors
        self.snapshot_outbox.serve()
        # messages prove the cluster is back before the watch has confirmed it
        back = was_down and (self.watch.check(force=True) or bool(polled))
        recreated = self.sensor_identity.changed(refresh=back or self.events.emptied())
        if recreated:  # before any of its messages is applied to the old topic's state
            raise ServiceError(f"{recreated}: offsets and device state of the old topic do "
                               "not apply to it; a restart starts afresh")
        self._apply_assignment()
        if not polled:
            self._update_lag()
            return None
        started = time.perf_counter()
        with metrics.STAGE_DURATION.labels(stage="decode").time():
            batches = self.intake.decode(polled)
        self.ownership.restore_evicted(b.device_id for b in batches)
        with metrics.STAGE_DURATION.labels(stage="process").time():
            output = self.recognizer.process(batches)
        with metrics.STAGE_DURATION.labels(stage="produce").time():
            self.publisher.send(output)
        self.budget.observe(sum(len(records) for records in polled.values()),
                            time.perf_counter() - started)
        record_stats(output)
        metrics.ACTIVE_DEVICES.set(len(self.registry))  # a flood shows at once, not at a commit
        self._uncommitted = True
        self._update_lag()
        return output

    def _update_lag(self) -> None:
        """Lag per owned partition from the last fetch's high watermark (0 until known).

        At most once a second: asking the consumer for positions costs as much as a small
        poll's whole recognition step (profiled at 100 devices)."""
        if self.clock() < self._next_lag:
            return
        self._next_lag = self.clock() + LAG_INTERVAL_S
        lag = {}
        for p in self.ownership.owned:
            highwater = self.consumer.highwater(self._tp(p))
            position = None if highwater is None else self.consumer.position(self._tp(p))
            lag[p] = 0 if highwater is None or position is None else max(highwater - position, 0)
        metrics.set_consumer_lag(lag)

    def _pause(self, paused: bool) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            (self.consumer.pause if paused else self.consumer.resume)(*assignment)

    # --- checkpoints -------------------------------------------------------------------------

    def checkpoint(self, final: bool = False) -> None:
        """Finish the checkpoint in flight, take one of everything up to now, wait for it.

        When the broker does not acknowledge in time, nothing more is committed: the service
        holds (partitions paused) until the checkpoint in flight is done; the final one, at
        shutdown, raises ServiceError instead.
        """
        try:
            for _ in range(2):
                if self.checkpoints.current is None:
                    self._begin_checkpoint()
                while self.checkpoints.current is not None and not self._advance_checkpoint(None):
                    if self.checkpoints.sending():
                        self._settle(self.snapshot_outbox, "state snapshots")
                    else:
                        self._settle(self.outbox, "results")
        except KafkaTimeout as exc:
            if final:
                raise ServiceError(
                    f"output not acknowledged within {self.settings.produce_timeout_s:g} s "
                    f"({exc}); offsets stay uncommitted, a restart resumes from the last "
                    "checkpoint") from exc
            self._hold(exc)

    def _poll_wait_ms(self) -> int:
        """The poll's longest wait: short while a checkpoint's snapshots go out (and are
        acknowledged), so that idle polls do not pace it; never while held (an outage)."""
        if not self.checkpoints.sending() or self.held:
            return self.settings.poll_timeout_ms
        return min(self.settings.poll_timeout_ms, CHECKPOINT_POLL_MS)

    def _begin_checkpoint(self) -> None:
        """Start a checkpoint if anything changed since the last (`Checkpoints.begin`)."""
        self._next_checkpoint = self.clock() + self.settings.commit_interval_s
        self.subscriber_publisher.flush()  # before the outbox epoch the checkpoint waits for
        self._apply_assignment()
        if not self._uncommitted:
            self._housekeeping()
            return
        self.checkpoints.begin()
        self._uncommitted = False

    def _advance_checkpoint(self, limit: int | None = SNAPSHOTS_PER_STEP) -> bool:
        """`Checkpoints.advance`; once committed, consume again if held, evict idle devices."""
        if not self.checkpoints.advance(limit):
            return False
        if self.held:
            log.info("output acknowledged: committing and consuming again")
            self.held = False
            self._pause(False)
        self._housekeeping()
        return True

    def _apply_assignment(self) -> None:
        """Apply the rebalance events; one abandons the checkpoint in flight, whose
        snapshots and offsets may no longer be this member's to write."""
        events = self.events.drain()
        if events:  # held device records go out while their partitions are still ours
            self.subscriber_publisher.flush()
        if events and self.checkpoints.current is not None:
            self.checkpoints.abandon()
            self._uncommitted = True
        self.ownership.apply(events)

    def _delivered(self, outbox: Outbox, epoch: int, what: str) -> bool:
        with _refusal_stops(what):
            return outbox.delivered(epoch)

    def _housekeeping(self) -> None:
        """Evict idle devices (not more often than `eviction_interval_s`), report gauges."""
        if self.settings.idle_ttl_s > 0 and self.clock() >= self._next_eviction:
            self._next_eviction = self.clock() + self.settings.eviction_interval_s
            evicted = self.ownership.evict_idle()
            if evicted:
                log.info("evicted %d idle devices (%d remain)", evicted, len(self.registry))
                metrics.DEVICES_EVICTED.inc(evicted)
            self.intake.rate_guard.prune(self.registry)
        self.intake.rate_guard.report()
        metrics.ACTIVE_DEVICES.set(len(self.registry))

    def _hold(self, exc: BaseException) -> None:
        if not self.held:
            log.warning("output not acknowledged within %g s (%s): holding commits and "
                        "pausing consumption until the broker acknowledges it",
                        self.settings.produce_timeout_s, exc)
        self.held = True
        self._pause(True)

    def _settle(self, outbox: Outbox, what: str) -> None:
        with _refusal_stops(what):
            outbox.settle(self.settings.produce_timeout_s)

    def _commit(self, offsets: dict[int, int]) -> None:
        if offsets:
            try:
                self.consumer.commit({self._tp(p): o for p, o in offsets.items()},
                                     timeout_s=self.settings.produce_timeout_s)
            except KafkaFailure as exc:  # CommitFailed included
                # Results and snapshots are safe; the next owner replays from the old offset.
                log.warning("offset commit failed (%s); messages since the last commit will be "
                            "replayed by the partitions' next owner", exc)
                self._uncommitted = True  # the next checkpoint tries again
                return
            self.ownership.commit_done(offsets)


@contextlib.contextmanager
def _refusal_stops(what: str) -> Iterator[None]:
    """A systemic refusal of output (`DeliveryFailed`) becomes the ServiceError that stops
    the service without committing."""
    try:
        yield
    except DeliveryFailed as exc:
        metrics.BROKER_UP.set(0)
        raise ServiceError(f"the broker rejected {what}: {exc}; offsets stay "
                           "uncommitted, a restart resumes from the last checkpoint") from exc


def subscriber_settings(settings: Settings) -> SubscriberSettings | None:
    """How the recognizer derives the subscriber records (None: they are off)."""
    if not settings.subscriber_outputs:
        return None
    return SubscriberSettings(
        SmoothingSettings(hold_windows=settings.hold_windows,
                          enter_confidence=settings.enter_confidence,
                          max_gap_ms=settings.change_max_gap_ms),
        DailySettings(utc_offset_minutes=settings.day_utc_offset_minutes))
