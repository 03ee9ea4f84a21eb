"""The Kafka loop of `har-stream run`: poll, decode, recognise, publish, checkpoint.

One iteration (`Service.step`):
  1. poll up to `max_poll_records` sensor messages;
  2. apply the partition assignment changes that poll made, before touching any message:
     restore the state of gained partitions from the changelog, drop lost ones' devices;
  3. decode every message; rejected ones go to the dead-letter topic with reason headers;
     replays of messages whose effect a restored snapshot already holds are skipped;
  4. one `Recognizer.process` for every batch of the poll (batched model calls);
  5. send the results and counts, and the subscriber records the recognizer derived from
     them (activity changes, device records, closed days), key = device id, without waiting.

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
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from har_stream.core import codec
from har_stream.core.daily import DailySettings
from har_stream.core.pipeline import PipelineConfig
from har_stream.core.recognizer import Recognizer, RecognizerOutput
from har_stream.core.records import RATE_HZ, SensorBatch
from har_stream.core.subscriber_outputs import SubscriberSettings
from har_stream.core.transitions import SmoothingSettings
from har_stream.kafka import poison
from har_stream.service import metrics
from har_stream.service.changelog import ChangelogReader, ChangelogWriter
from har_stream.service.checkpoint import (
    SNAPSHOTS_PER_IDLE_STEP,
    SNAPSHOTS_PER_STEP,
    Checkpoints,
)
from har_stream.service.delivery import DeliveryFailed, Outbox
from har_stream.service.guards import TOO_MANY_DEVICES, DeviceLimit, RateGuard
from har_stream.service.health import BrokerWatch, TopicIdentity
from har_stream.service.ownership import Ownership
from har_stream.service.pacing import WorkBudget
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


class RebalanceEvents(ConsumerRebalanceListener):
    """Collects assignment changes where the consumer reports them; the loop applies them.

    kafka-python runs listeners on its IO thread, where blocking work (reading the
    changelog) would stall heartbeats; so the listener only records what happened. (The
    librdkafka consumer calls it inside `poll`, on the loop thread; recording is right
    there too: assignment changes are applied at one point of the step.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, frozenset[int]]] = []

    def _add(self, kind: str, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._events.append((kind, frozenset(tp.partition for tp in partitions)))

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._add("revoked", revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._add("assigned", assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self._add("lost", lost)

    def emptied(self) -> bool:
        """Whether a pending assignment leaves this member without partitions (also what a
        deleted sensor topic causes: the loop then checks that it still exists)."""
        with self._lock:
            return any(kind == "assigned" and not partitions
                       for kind, partitions in self._events)

    def drain(self) -> list[tuple[str, frozenset[int]]]:
        with self._lock:
            events, self._events = self._events, []
        return events


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

    def send(self, topic: str, **record: Any) -> Any:
        return self.outbox.send(topic, poison_to_dlq=False, **record)


class Service:
    """One consumer-group member: the loop and its checkpoints; which devices it holds and
    where their state is are the `Ownership`'s business."""

    def __init__(self, settings: Settings, model: Any, consumer: Any, producer: Any,
                 reader: ChangelogReader, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 snapshot_producer: Any = None) -> None:
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
        self.ownership = Ownership(self.registry, reader, self._committed_offset,
                                   settings.idle_ttl_s, clock, wall)
        self.events = RebalanceEvents()
        self.limits = codec.Limits(max_samples=settings.max_samples_per_message,
                                   max_message_bytes=settings.max_message_bytes)
        self.device_limit = DeviceLimit(settings.max_devices)
        self.rate_guard = RateGuard(RATE_HZ, settings.max_rate_factor,
                                    burst_samples=settings.max_samples_per_message)
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

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topics.sensor_topic, partition)

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
            batches = self._decode(polled)
        self.ownership.restore_evicted(b.device_id for b in batches)
        with metrics.STAGE_DURATION.labels(stage="process").time():
            output = self.recognizer.process(batches)
        with metrics.STAGE_DURATION.labels(stage="produce").time():
            self._send(output)
        self.budget.observe(sum(len(records) for records in polled.values()),
                            time.perf_counter() - started)
        self._record(output)
        metrics.ACTIVE_DEVICES.set(len(self.registry))  # a flood shows at once, not at a commit
        self._uncommitted = True
        self._update_lag()
        return output

    def _decode(self, polled: dict[Any, list[Any]]) -> list[SensorBatch]:
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
                if type(record) is poison.Damaged:  # the client could not read it whole
                    self._damaged(record)
                    continue
                try:
                    batch = codec.decode_sensor(record.value, record.key, self.limits,
                                                record_ts_ms=max(record.timestamp, 0))
                except codec.DecodeError as error:
                    self._dead_letter(record, error.reason, error.detail)
                    continue
                if own.is_covered(batch.device_id, record.offset):
                    continue
                if not self.device_limit.admit(batch.device_id, self.registry,
                                               len(self.registry)):
                    self._dead_letter(record, TOO_MANY_DEVICES,
                                      f"{len(self.registry)} devices have state in this "
                                      f"process, the limit is {self.settings.max_devices}")
                    continue
                self.rate_guard.observe(batch.device_id, len(batch.samples),
                                        batch.record_ts_ms)
                own.touched(batch.device_id, p)
                batches.append(batch)
        # once per poll: a metric update costs ~0.6 µs, ~4 µs with a label (§9)
        metrics.MESSAGES_CONSUMED.inc(consumed)
        metrics.SAMPLES_CONSUMED.inc(sum(len(batch.samples) for batch in batches))
        return batches

    def _damaged(self, record: poison.Damaged) -> None:
        """Dead-letter what can be read of it, else skip it: logged, counted (`poison`)."""
        if record.readable:
            self._dead_letter(record, record.reason, record.detail)
            return
        metrics.RECORDS_SKIPPED.labels(reason=record.reason).inc()
        log.error("skipped %s[%d]@%d, which the Kafka client cannot read: %s: %s",
                  record.topic, record.partition, record.offset, record.reason, record.detail)

    def _dead_letter(self, record: Any, reason: str, detail: str) -> None:
        metrics.MESSAGES_REJECTED.labels(reason=reason).inc()
        log.info("rejected %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset,
                 reason, detail)
        self.outbox.dead_letter(record.key, record.value, record.headers or [],
                                codec.dead_letter_headers(reason, detail, record.topic,
                                                          record.partition, record.offset))

    def _send(self, output: RecognizerOutput) -> None:
        send = self.outbox.send
        for result in output.results:
            send(self.topics.activity_topic, result.device_id.encode(),
                 codec.encode_result(result),
                 on_ack=functools.partial(_acknowledged_result, result.record_ts_ms, self.wall))
        for counts in output.counts:
            send(self.topics.counts_topic, counts.device_id.encode(), codec.encode_counts(counts),
                 on_ack=_acknowledged_counts)
        if output.subscribers is not None:
            self.subscriber_publisher.send(output.subscribers)

    @staticmethod
    def _record(output: RecognizerOutput) -> None:
        stats = output.stats
        metrics.PIPELINE_EVENTS.labels(event="duplicate_samples").inc(stats.duplicate_samples)
        metrics.PIPELINE_EVENTS.labels(event="gap_samples_filled").inc(stats.gap_samples_filled)
        metrics.PIPELINE_EVENTS.labels(event="stream_resets").inc(stats.stream_resets)
        metrics.PIPELINE_EVENTS.labels(event="late_samples").inc(stats.late_samples)
        metrics.PIPELINE_EVENTS.labels(event="reordered_messages").inc(stats.reordered_messages)
        for activity, windows in Counter(result.activity for result in output.results).items():
            metrics.WINDOWS_CLASSIFIED.labels(activity=activity).inc(windows)

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
            lag[p] = 0 if position is None else max(highwater - position, 0)
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
        except KafkaTimeoutError as exc:
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
            self.rate_guard.prune(self.registry)
        self.rate_guard.report()
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
                self.consumer.commit({self._tp(p): OffsetAndMetadata(o, "", -1)
                                      for p, o in offsets.items()},
                                     timeout_ms=int(self.settings.produce_timeout_s * 1000))
            except KafkaError as exc:  # CommitFailedError included
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


def _acknowledged_result(record_ts_ms: int, wall: Callable[[], float], metadata: Any) -> None:
    """Counts the result; its latency ends when the broker acknowledged it, which librdkafka
    records itself (it reports acknowledgements only when the loop asks), else now."""
    metrics.RESULTS_PUBLISHED.inc()
    if record_ts_ms > 0:
        acknowledged_at = getattr(metadata, "acknowledged_at", None) or wall()
        metrics.END_TO_END_LATENCY.observe(max(acknowledged_at - record_ts_ms / 1000.0, 0.0))


def _acknowledged_counts(_metadata: Any) -> None:
    metrics.COUNTS_PUBLISHED.inc()


def subscriber_settings(settings: Settings) -> SubscriberSettings | None:
    """How the recognizer derives the subscriber records (None: they are off)."""
    if not settings.subscriber_outputs:
        return None
    return SubscriberSettings(
        SmoothingSettings(hold_windows=settings.hold_windows,
                          enter_confidence=settings.enter_confidence,
                          max_gap_ms=settings.change_max_gap_ms),
        DailySettings(utc_offset_minutes=settings.day_utc_offset_minutes))
