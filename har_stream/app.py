"""The Kafka loop of `har-stream run`: poll, decode, recognise, publish, checkpoint.

One iteration (`Service.step`):
  1. poll up to `max_poll_records` sensor messages;
  2. apply the partition assignment changes that poll made, before touching any message:
     restore the state of gained partitions from the changelog, drop lost ones' devices;
  3. decode every message; rejected ones go to the dead-letter topic with reason headers;
     replays of messages whose effect a restored snapshot already holds are skipped;
  4. one `Recognizer.process` for every batch of the poll (batched model calls);
  5. send the results and counts (key = device id) without waiting.

A checkpoint (`Service.checkpoint`) runs every `commit_interval_s` and at shutdown:
  1. flush: everything sent so far is acknowledged by all in-sync replicas, or the service
     stops without committing;
  2. snapshot every device touched since the last checkpoint to the changelog; flush again;
  3. commit the offsets after the last processed message of every owned partition;
  4. evict devices idle longer than the TTL (their latest snapshot is in the changelog).

Delivery guarantee: at-least-once. An offset is committed only after the results of its
message and of all earlier ones are acknowledged, and a snapshot is written only after the
results it reflects are. After a crash or a rebalance, consumption resumes at the last
committed offset with state from the changelog that is as new as that or newer; messages a
newer snapshot already covers are skipped (header `har.source.offset`). So no result is
ever missing, some may be published twice with the same window id (`device_id:seq`), and
the per-device counts count every window exactly once. Consumers de-duplicate results by
window id and keep the counts record with the highest `last_seq`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from har_stream import codec, metrics
from har_stream.changelog import ChangelogReader, ChangelogWriter
from har_stream.config import Settings
from har_stream.recognizer import Recognizer, RecognizerOutput
from har_stream.records import SensorBatch
from har_stream.state import StateFormatError

log = logging.getLogger(__name__)

_UNKNOWN = object()


class ServiceError(RuntimeError):
    """The service cannot continue without risking lost results (message says why)."""


class RebalanceEvents(ConsumerRebalanceListener):
    """Collects assignment changes on the consumer's IO thread; the loop applies them.

    kafka-python runs listeners on its IO thread, where blocking work (reading the
    changelog) would stall heartbeats; so the listener only records what happened.
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


class Service:
    """One consumer-group member: the loop, the checkpoints and the partition bookkeeping.

    Partition bookkeeping (all keyed by sensor partition number):
    `device_partition` maps each device with state here to its partition; `processed` is
    the offset after the last message handled, `committed` the offset last committed;
    `partition_guard` / `device_guard` mark offsets below which messages are replays whose
    effect the state already holds.
    """

    def __init__(self, settings: Settings, model: Any, consumer: Any, producer: Any,
                 reader: ChangelogReader, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.consumer = consumer
        self.producer = producer
        self.reader = reader
        self.writer = ChangelogWriter(producer, settings.topics.changelog_topic)
        self.clock, self.wall = clock, wall
        self.recognizer = Recognizer(TimedModel(model), clock=clock)
        self.registry = self.recognizer.registry
        self.events = RebalanceEvents()
        self.limits = codec.Limits()
        self.owned: set[int] = set()
        self.released: dict[int, object] = {}  # revoked partition -> our committed offset
        self.device_partition: dict[str, int] = {}
        self.processed: dict[int, int] = {}
        self.committed: dict[int, int | None] = {}
        self.partition_guard: dict[int, int] = {}
        self.device_guard: dict[str, int] = {}
        self.snapshot_at: dict[str, tuple[int, int]] = {}  # device -> changelog (partition, offset)
        self.evicted: dict[str, tuple[int, int]] = {}
        self.dirty: set[str] = set()
        self._failure: BaseException | None = None
        self._uncommitted = False
        self._next_checkpoint = clock() + settings.commit_interval_s
        self._next_eviction = clock() + settings.eviction_interval_s

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set, then finish with a checkpoint."""
        while not stop.is_set():
            self.step()
            if self.clock() >= self._next_checkpoint:
                self.checkpoint()
        self.checkpoint()

    def step(self) -> RecognizerOutput | None:
        """Poll, apply assignment changes, decode, recognise, send (see the module doc)."""
        with metrics.STAGE_DURATION.labels(stage="poll").time():
            polled = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms,
                                        max_records=self.settings.max_poll_records)
        self.apply_rebalance(self.events.drain())
        if not polled:
            self._update_lag()
            return None
        with metrics.STAGE_DURATION.labels(stage="decode").time():
            batches = self._decode(polled)
        self._restore_evicted({b.device_id for b in batches})
        with metrics.STAGE_DURATION.labels(stage="process").time():
            output = self.recognizer.process(batches)
        with metrics.STAGE_DURATION.labels(stage="produce").time():
            self._send(output)
        self._record(output)
        self.dirty.update(b.device_id for b in batches)
        self._uncommitted = True
        self._update_lag()
        return output

    def _decode(self, polled: dict[Any, list[Any]]) -> list[SensorBatch]:
        batches = []
        for tp, records in polled.items():
            p = tp.partition
            if p not in self.owned:
                log.warning("dropping %d records of unowned partition %d", len(records), p)
                continue
            guard = self.partition_guard.get(p, -1)
            for record in records:
                self.processed[p] = record.offset + 1
                if record.offset < guard:
                    continue
                metrics.MESSAGES_CONSUMED.inc()
                try:
                    batch = codec.decode_sensor(record.value, record.key, self.limits,
                                                record_ts_ms=max(record.timestamp, 0))
                except codec.DecodeError as error:
                    self._dead_letter(record, error)
                    continue
                if record.offset < self.device_guard.get(batch.device_id, -1):
                    continue
                self.device_partition[batch.device_id] = p
                metrics.SAMPLES_CONSUMED.inc(len(batch.samples))
                batches.append(batch)
        return batches

    def _dead_letter(self, record: Any, error: codec.DecodeError) -> None:
        metrics.MESSAGES_REJECTED.labels(reason=error.reason).inc()
        log.info("rejected %s[%d]@%d: %s", record.topic, record.partition, record.offset, error)
        headers = list(record.headers or []) + codec.dead_letter_headers(
            error, record.topic, record.partition, record.offset)
        self._watch(self.producer.send(self.topics.dlq_topic, key=record.key,
                                       value=record.value, headers=headers),
                    self.topics.dlq_topic)

    def _send(self, output: RecognizerOutput) -> None:
        now = self.wall
        for result in output.results:
            future = self.producer.send(self.topics.activity_topic,
                                        key=result.device_id.encode(),
                                        value=codec.encode_result(result))
            self._watch(future, self.topics.activity_topic)
            future.add_callback(_acknowledged_result, result.record_ts_ms, now)
        for counts in output.counts:
            future = self.producer.send(self.topics.counts_topic, key=counts.device_id.encode(),
                                        value=codec.encode_counts(counts))
            self._watch(future, self.topics.counts_topic)
            future.add_callback(lambda _metadata: metrics.COUNTS_PUBLISHED.inc())

    def _watch(self, future: Any, topic: str) -> None:
        def failed(exc: BaseException) -> None:
            metrics.PRODUCE_ERRORS.labels(topic=topic).inc()
            if self._failure is None:
                self._failure = exc
        future.add_errback(failed)

    @staticmethod
    def _record(output: RecognizerOutput) -> None:
        stats = output.stats
        metrics.PIPELINE_EVENTS.labels(event="duplicate_samples").inc(stats.duplicate_samples)
        metrics.PIPELINE_EVENTS.labels(event="gap_samples_filled").inc(stats.gap_samples_filled)
        metrics.PIPELINE_EVENTS.labels(event="stream_resets").inc(stats.stream_resets)
        for result in output.results:
            metrics.WINDOWS_CLASSIFIED.labels(activity=result.activity).inc()

    # --- checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Flush, snapshot touched devices, flush, commit, evict (see the module doc)."""
        self._next_checkpoint = self.clock() + self.settings.commit_interval_s
        self.apply_rebalance(self.events.drain())
        if self._uncommitted:
            with metrics.STAGE_DURATION.labels(stage="produce").time():
                self._flush("results")
            with metrics.STAGE_DURATION.labels(stage="snapshot").time():
                self._snapshot()
            with metrics.STAGE_DURATION.labels(stage="commit").time():
                self._commit()
        if self.settings.idle_ttl_s > 0 and self.clock() >= self._next_eviction:
            self._evict_idle()
        metrics.ACTIVE_DEVICES.set(len(self.registry))

    def _flush(self, what: str) -> None:
        try:
            self.producer.flush(timeout=self.settings.produce_timeout_s)
        except KafkaError as exc:
            metrics.BROKER_UP.set(0)
            raise ServiceError(f"{what} not acknowledged within "
                               f"{self.settings.produce_timeout_s:g} s ({exc}); offsets stay "
                               "uncommitted, a restart resumes from the last checkpoint") from exc
        if self._failure is not None:
            metrics.BROKER_UP.set(0)
            raise ServiceError(f"the broker rejected {what}: {self._failure!r}; offsets stay "
                               "uncommitted, a restart resumes from the last checkpoint")
        metrics.BROKER_UP.set(1)

    def _snapshot(self) -> None:
        futures, still_dirty = [], set()
        for device_id in self.dirty:
            partition = self.device_partition.get(device_id)
            if partition is None or device_id not in self.registry:
                continue
            if partition not in self.owned:
                if partition in self.released:  # mid-rebalance: may come back to us
                    still_dirty.add(device_id)
                continue
            data = self.registry.snapshot(device_id)
            future = self.writer.write(device_id, partition, data, self.processed[partition])
            self._watch(future, self.topics.changelog_topic)
            futures.append((device_id, partition, future))
        self._flush("state snapshots")
        for device_id, partition, future in futures:
            self.snapshot_at[device_id] = (partition, future.value.offset)
        metrics.STATE_SNAPSHOTS.inc(len(futures))
        self.dirty = still_dirty

    def _commit(self) -> None:
        offsets = {TopicPartition(self.topics.sensor_topic, p): OffsetAndMetadata(o, "", -1)
                   for p, o in self.processed.items()
                   if p in self.owned and o != self.committed.get(p)}
        if offsets:
            try:
                self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # Results and snapshots are safe; the next owner replays from the old offset.
                log.warning("offset commit failed (%s); messages since the last commit will be "
                            "replayed by the partitions' next owner", exc)
                return
            for tp, meta in offsets.items():
                self.committed[tp.partition] = meta.offset
        for device_id in [d for d, g in self.device_guard.items()
                          if g <= self.processed.get(self.device_partition.get(d, -1), -1)]:
            del self.device_guard[device_id]
        self._uncommitted = False

    def _evict_idle(self) -> None:
        self._next_eviction = self.clock() + self.settings.eviction_interval_s
        evicted = 0
        for device_id in self.registry.idle(self.clock(), self.settings.idle_ttl_s):
            if device_id in self.dirty or device_id not in self.snapshot_at:
                continue  # only devices whose latest state is in the changelog
            self.evicted[device_id] = self.snapshot_at.pop(device_id)
            self.registry.remove(device_id)
            evicted += 1
        if evicted:
            log.info("evicted %d idle devices (%d remain)", evicted, len(self.registry))
            metrics.DEVICES_EVICTED.inc(evicted)

    # --- partition assignment ----------------------------------------------------------------

    def apply_rebalance(self, events: Sequence[tuple[str, frozenset[int]]]) -> None:
        """Bring device state in line with the partitions the consumer now owns.

        A partition given back to us after an eager rebalance keeps its in-memory state
        when nobody committed on it meanwhile (the committed offset is still ours);
        otherwise its state is read from the changelog.
        """
        for kind, partitions in events:
            log.info("partitions %s: %s", kind, sorted(partitions))
            if kind == "revoked":
                for p in partitions & self.owned:
                    self.owned.discard(p)
                    self.released[p] = self.committed.get(p, _UNKNOWN)
            elif kind == "lost":
                for p in partitions:
                    self.owned.discard(p)
                    self.released.pop(p, None)
                    self._drop(p)
            elif kind == "assigned":
                self._assign(partitions)
        metrics.ASSIGNED_PARTITIONS.set(len(self.owned))

    def _assign(self, partitions: frozenset[int]) -> None:
        to_restore: list[int] = []
        committed_now = {p: self.consumer.committed(TopicPartition(self.topics.sensor_topic, p))
                         for p in partitions}
        for p in sorted(partitions):
            ours = self.released.pop(p, _UNKNOWN)
            if p in self.owned:
                continue
            if ours is not _UNKNOWN and ours == committed_now[p]:
                self.partition_guard[p] = self.processed.get(p, -1)
                self.owned.add(p)
                self._uncommitted = True
            else:
                self._drop(p)
                to_restore.append(p)
        for p in list(self.released):
            self._drop(p)
        self.released.clear()
        if to_restore:
            self._restore(to_restore, committed_now)

    def _drop(self, partition: int) -> None:
        for device_id in [d for d, p in self.device_partition.items() if p == partition]:
            self.registry.remove(device_id)
            self.dirty.discard(device_id)
            self.device_guard.pop(device_id, None)
            self.snapshot_at.pop(device_id, None)
            self.evicted.pop(device_id, None)
            del self.device_partition[device_id]
        for table in (self.processed, self.committed, self.partition_guard):
            table.pop(partition, None)

    def _restore(self, partitions: list[int], committed: dict[int, int | None]) -> None:
        """Load the latest snapshot of every device of `partitions` from the changelog."""
        started = time.perf_counter()
        with metrics.STAGE_DURATION.labels(stage="restore").time():
            stored = self.reader.read_partitions(partitions)
        ttl, now_wall, restored = self.settings.idle_ttl_s, self.wall(), 0
        for device_id, state in stored.items():
            location = (state.partition, state.offset)
            self.device_partition[device_id] = state.partition
            if state.covers_offset > (committed[state.partition] or 0):
                self.device_guard[device_id] = state.covers_offset
            if ttl > 0 and state.timestamp_ms / 1000.0 < now_wall - ttl:
                self.evicted[device_id] = location
                continue
            try:
                self.registry.restore(device_id, state.data, now_s=self.clock())
            except StateFormatError as exc:
                log.warning("device %s: changelog state unusable (%s); it starts afresh",
                            device_id, exc)
                continue
            self.snapshot_at[device_id] = location
            restored += 1
        for p in partitions:
            self.committed[p] = committed[p]
            self.owned.add(p)
        metrics.STATE_RESTORES.inc(restored)
        metrics.RESTORE_EVENTS.inc()
        log.info("restored %d devices (%d idle left in the changelog) of partitions %s "
                 "in %.3f s", restored, len(stored) - restored, partitions,
                 time.perf_counter() - started)

    def _restore_evicted(self, device_ids: set[str]) -> None:
        """Bring back evicted devices that sent data again, from their changelog record."""
        wanted = {d: self.evicted[d] for d in device_ids if d in self.evicted}
        if not wanted:
            return
        with metrics.STAGE_DURATION.labels(stage="restore").time():
            stored = self.reader.read_records(wanted)
        for device_id, location in wanted.items():
            del self.evicted[device_id]
            state = stored.get(device_id)
            if state is None:
                log.warning("device %s: evicted state not found; it starts afresh", device_id)
                continue
            try:
                self.registry.restore(device_id, state.data, now_s=self.clock())
            except StateFormatError as exc:
                log.warning("device %s: evicted state unusable (%s)", device_id, exc)
                continue
            self.snapshot_at[device_id] = location
        metrics.STATE_RESTORES.inc(len(stored))

    def _update_lag(self) -> None:
        lag = {}
        for p in self.owned:
            tp = TopicPartition(self.topics.sensor_topic, p)
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                lag[p] = max(highwater - self.consumer.position(tp), 0)
        metrics.set_consumer_lag(lag)


def _acknowledged_result(record_ts_ms: int, wall: Callable[[], float], _metadata: Any) -> None:
    metrics.RESULTS_PUBLISHED.inc()
    if record_ts_ms > 0:
        metrics.END_TO_END_LATENCY.observe(max(wall() - record_ts_ms / 1000.0, 0.0))


# ---------------------------------------------------------------------------------------------
# wiring


def load_service_model(spec: str) -> Any:
    """The model to serve: '' = the shipped one, a directory, or 'module:function'."""
    from pathlib import Path

    from har_stream.model import DEFAULT_MODEL_DIR, load_model

    if spec and ":" in spec and not Path(spec).exists():
        import importlib

        module_name, _, function = spec.partition(":")
        return getattr(importlib.import_module(module_name), function)()
    path = Path(spec) if spec else DEFAULT_MODEL_DIR
    if not path.is_dir():
        raise ServiceError(f"no model directory at {path}: train one with `har-stream train` "
                           "or pass --model (HAR_MODEL)")
    return load_model(path)


def run(settings: Settings, stop: threading.Event, model: Any = None) -> None:
    """Connect, create missing topics, serve until `stop` is set, then shut down cleanly.

    Raises BrokerUnavailable / TopicError before consuming anything when the cluster is not
    usable, and ServiceError when output cannot be acknowledged (nothing is committed then).
    """
    from har_stream.kafka_io import (
        close_quietly,
        make_admin,
        make_consumer,
        make_producer,
        prepare_service_topics,
    )

    model = model if model is not None else load_service_model(settings.model)
    metrics.set_build_info()
    metrics.set_model_info(version=model.version, engine=type(model).__name__)
    topics = settings.topics
    metrics.declare_label_values(
        activities=model.classes, reasons=codec.REASONS,
        topics=(topics.dlq_topic, topics.activity_topic, topics.counts_topic,
                topics.changelog_topic))
    admin = make_admin(settings.kafka)
    try:
        partitions = prepare_service_topics(admin, topics)
    finally:
        close_quietly(admin)
    log.info("topics ready: %s has %d partitions", topics.sensor_topic, partitions)
    producer = consumer = reader_consumer = server = None
    try:
        compression = None if settings.compression_type == "none" else settings.compression_type
        producer = make_producer(settings.kafka, linger_ms=settings.linger_ms,
                                 compression_type=compression)
        reader_consumer = make_consumer(settings.kafka, None, fetch_max_wait_ms=50,
                                        max_poll_records=10000,
                                        max_partition_fetch_bytes=8 * 1024 * 1024)
        consumer = make_consumer(
            settings.kafka, settings.group_id, max_poll_records=settings.max_poll_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms)
        metrics.BROKER_UP.set(1)
        if settings.metrics_address:
            server = metrics.start_metrics_server(settings.metrics_host, settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host,
                     server.server_port)
        reader = ChangelogReader(reader_consumer, topics.changelog_topic,
                                 timeout_s=settings.restore_timeout_s)
        service = Service(settings, model, consumer, producer, reader)
        consumer.subscribe([topics.sensor_topic], listener=service.events)
        log.info("consuming %s as group %s (model %s)", topics.sensor_topic, settings.group_id,
                 model.version)
        service.run(stop)
        log.info("stopped cleanly after the final checkpoint")
    finally:
        close_quietly(consumer, reader_consumer)
        if producer is not None:
            try:
                producer.close(timeout=5)
            except KafkaError as exc:
                log.warning("closing the producer: %s", exc)
        if server is not None:
            server.shutdown()
