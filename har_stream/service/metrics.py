"""Every Prometheus metric of the recognizer, in one place.

The metrics live on a dedicated `REGISTRY` (not prometheus-client's global one) so
the exposition holds exactly what this module declares and nothing a library
registered behind our back. Labels are bounded enumerations (reason, event,
activity, topic, stage, partition); a device id is never a label, because one
series per device would grow without limit.

Units follow Prometheus conventions: seconds for durations, `_total` for counters,
base units everywhere. The dashboard and alert rules in `deploy/` query these
names; renaming one is a breaking change for them.

Usage from the service::

    metrics.set_build_info()
    metrics.set_model_info(version=model.version, engine="litert")
    metrics.declare_label_values(activities=model.classes, reasons=codec.REASONS,
                                 topics=(settings.activity_topic, ...))
    server = metrics.start_metrics_server(settings.metrics_host, settings.metrics_port)
    ...
    with metrics.STAGE_DURATION.labels(stage="poll").time():
        records = consumer.poll(...)
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import start_http_server

from har_stream import __version__

REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry that `start_metrics_server` serves; every metric below is on it."""

PIPELINE_EVENT_NAMES = ("duplicate_samples", "gap_samples_filled", "stream_resets",
                        "late_samples", "reordered_messages")
"""Values of the `event` label of `PIPELINE_EVENTS`."""
STAGES = ("poll", "decode", "process", "produce", "commit", "snapshot", "restore")
"""Values of the `stage` label of `STAGE_DURATION`: the steps of one loop iteration."""

BATCH_SIZE_BUCKETS = tuple(float(2**k) for k in range(13))  # 1 .. 4096 windows
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
END_TO_END_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0)
"""Finer around the 100 ms objective, so a p99 near it is read to within 25-50 ms."""
STAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- input -------------------------------------------------------------------------------

MESSAGES_CONSUMED = Counter(
    "har_messages_consumed_total",
    "Sensor messages read from the sensor topic, valid or not (unit: messages).",
    registry=REGISTRY,
)
"""Every record polled from the sensor topic, counted before decoding (messages)."""

SAMPLES_CONSUMED = Counter(
    "har_samples_consumed_total",
    "Raw 50 Hz samples decoded from valid sensor messages (unit: samples).",
    registry=REGISTRY,
)
"""Samples in messages that decoded cleanly; the input rate in samples/s is its rate()."""

MESSAGES_REJECTED = Counter(
    "har_messages_rejected_total",
    "Sensor messages sent to the dead-letter topic, by reason (unit: messages).",
    ["reason"],
    registry=REGISTRY,
)
"""Messages that failed decoding or validation and went to the DLQ (messages).

`reason` is one of `codec.REASONS` or a small fixed set of app reasons; never free text.
"""

RECORDS_SKIPPED = Counter(
    "har_records_skipped_total",
    "Sensor records the Kafka client could not read at all, skipped (unit: records).",
    ["reason"],
    registry=REGISTRY,
)
"""Records skipped because the client cannot parse them: a batch checksum that does not
match, a batch that does not decompress, a record structure it refuses (`poison.py`).

`reason` is one of `poison.SKIP_REASONS`; never free text. Each is also logged at ERROR with
its partition and offset.
"""

PIPELINE_EVENTS = Counter(
    "har_pipeline_events_total",
    "Stream irregularities handled by the pipeline, by event (unit: samples, resets or "
    "messages).",
    ["event"],
    registry=REGISTRY,
)
"""Irregularities the per-device seq checks absorbed.

`duplicate_samples` and `gap_samples_filled` count samples; `stream_resets` counts
device streams restarted from scratch (a seq jump too large to fill); `late_samples` counts
samples dropped because they arrived after their stream had moved past them (reordered beyond
the reorder allowance); `reordered_messages` counts messages that arrived after their
successors and were put back in order (within the allowance).
"""

# --- output ------------------------------------------------------------------------------

WINDOWS_CLASSIFIED = Counter(
    "har_windows_classified_total",
    "Windows classified, by predicted activity (unit: windows).",
    ["activity"],
    registry=REGISTRY,
)
"""Windows the model classified, by the winning class; the activity mix is its rate()."""

RESULTS_PUBLISHED = Counter(
    "har_results_published_total",
    "Activity results acknowledged by the broker on the activity topic (unit: records).",
    registry=REGISTRY,
)
"""ActivityResult records acknowledged by the broker (records)."""

COUNTS_PUBLISHED = Counter(
    "har_counts_published_total",
    "Per-device activity counts acknowledged on the counts topic (unit: records).",
    registry=REGISTRY,
)
"""ActivityCounts records acknowledged by the broker (records)."""

SUBSCRIBER_RECORDS_PUBLISHED = Counter(
    "har_subscriber_records_published_total",
    "Subscriber records acknowledged by the broker, by kind: changes (activity changes), "
    "devices (device records), daily (closed days) (unit: records).",
    ["kind"],
    registry=REGISTRY,
)
"""Records of docs/SUBSCRIBERS.md acknowledged, by kind (three values)."""

BLIPS_SUPPRESSED = Counter(
    "har_activity_blips_suppressed_total",
    "Runs of a new activity that ended before the smoothing confirmed them, so no activity "
    "change was published (unit: runs).",
    registry=REGISTRY,
)
"""Short-lived answers the activity-change hysteresis kept from subscribers (runs)."""

SUBSCRIBER_KINDS = ("changes", "devices", "daily")

PRODUCE_ERRORS = Counter(
    "har_produce_errors_total",
    "Records the broker failed to acknowledge, by topic (unit: records).",
    ["topic"],
    registry=REGISTRY,
)
"""Produce failures by destination topic (records); any increase means offsets were held back."""

OUTPUT_DEAD_LETTERED = Counter(
    "har_output_dead_lettered_total",
    "Output records the broker refused for good, sent to the dead-letter topic instead, by "
    "topic (unit: records).",
    ["topic"],
    registry=REGISTRY,
)
"""Poison output (e.g. too large for the broker) replaced by a dead letter after bounded
retries, so that it cannot hold its partition's commits forever (records)."""

DEVICES_RATE_FLAGGED = Counter(
    "har_devices_rate_flagged_total",
    "Times a device sent samples far faster than its sampling rate (unit: flags).",
    registry=REGISTRY,
)
"""Rate flags: a device's samples arrived faster than 50 Hz times the tolerance, judged on the
records' broker timestamps; at most one flag per device per minute (flags)."""

# --- inference and latency ---------------------------------------------------------------

INFERENCE_BATCH_SIZE = Histogram(
    "har_inference_batch_size",
    "Windows per batched model call (unit: windows).",
    buckets=BATCH_SIZE_BUCKETS,
    registry=REGISTRY,
)
"""Windows in one model call (windows); large batches mean many devices share a call."""

INFERENCE_DURATION = Histogram(
    "har_inference_duration_seconds",
    "Wall time of one batched model call (unit: seconds).",
    buckets=INFERENCE_BUCKETS,
    registry=REGISTRY,
)
"""Duration of one batched `predict` call (seconds)."""

END_TO_END_LATENCY = Histogram(
    "har_end_to_end_latency_seconds",
    "From the broker timestamp of the message holding a window's last sample to its result "
    "being acknowledged (unit: seconds).",
    buckets=END_TO_END_BUCKETS,
    registry=REGISTRY,
)
"""Per window: broker append time of its last sample's message → result acknowledged (seconds).

Includes queueing in Kafka, so it grows with consumer lag; that is the latency a
consumer of `har.activity` experiences.
"""

STAGE_DURATION = Histogram(
    "har_stage_duration_seconds",
    "Wall time of one step of the consume loop, by stage (unit: seconds).",
    ["stage"],
    buckets=STAGE_BUCKETS,
    registry=REGISTRY,
)
"""Duration of each loop step (seconds); `stage` is one of `STAGES`.

`snapshot` and `restore` time the state changelog writes and the restore pass after
a partition assignment.
"""

# --- consumer group ----------------------------------------------------------------------

CONSUMER_LAG = Gauge(
    "har_consumer_lag_messages",
    "High watermark minus consumer position, by assigned partition (unit: messages).",
    ["partition"],
    registry=REGISTRY,
)
"""Messages not yet consumed on each assigned partition of the sensor topic (messages)."""
_lag_partitions: set[str] = set()  # partitions with a CONSUMER_LAG series, for set_consumer_lag

ASSIGNED_PARTITIONS = Gauge(
    "har_assigned_partitions",
    "Sensor topic partitions currently assigned to this process (unit: partitions).",
    registry=REGISTRY,
)
"""Partitions this group member owns right now (partitions)."""

# --- device state ------------------------------------------------------------------------

ACTIVE_DEVICES = Gauge(
    "har_active_devices",
    "Devices with live state in this process (unit: devices).",
    registry=REGISTRY,
)
"""Devices whose filter/window/model state is held in memory (devices)."""

DEVICES_EVICTED = Counter(
    "har_devices_evicted_total",
    "Devices dropped from memory after being idle longer than the TTL (unit: devices).",
    registry=REGISTRY,
)
"""Idle devices evicted from memory (devices)."""

STATE_SNAPSHOTS = Counter(
    "har_state_snapshots_total",
    "Per-device state snapshots written to the changelog topic (unit: snapshots).",
    registry=REGISTRY,
)
"""Device state snapshots produced to the changelog (snapshots)."""

STATE_RESTORES = Counter(
    "har_state_restores_total",
    "Devices whose state was restored from the changelog (unit: devices).",
    registry=REGISTRY,
)
"""Devices restored from the changelog after an assignment (devices)."""

RESTORE_EVENTS = Counter(
    "har_state_restore_events_total",
    "Restore passes run after a partition assignment (unit: restore passes).",
    registry=REGISTRY,
)
"""Restore passes (one per assignment that brought partitions); rebalances show up here."""

# --- health and identity -----------------------------------------------------------------

BROKER_UP = Gauge(
    "har_broker_connected",
    "1 while the Kafka client is connected to the cluster, else 0 (unit: boolean).",
    registry=REGISTRY,
)
"""Broker connectivity as seen by this process (1 connected, 0 not)."""

MODEL_INFO = Info(
    "har_model",
    "The model being served: version and inference engine (unit: none, always 1).",
    registry=REGISTRY,
)
"""Exposed as `har_model_info{version,engine} 1`; set it with `set_model_info`."""

BUILD_INFO = Info(
    "har_build",
    "The har-stream build: package version and Python version (unit: none, always 1).",
    registry=REGISTRY,
)
"""Exposed as `har_build_info{version,python} 1`; set it with `set_build_info`."""


def set_model_info(version: str, engine: str) -> None:
    """Publish which model and inference engine serve (replaces any earlier value)."""
    MODEL_INFO.info({"version": version, "engine": engine})


def set_build_info() -> None:
    """Publish the package and Python versions of this process."""
    BUILD_INFO.info({"version": __version__, "python": platform.python_version()})


def declare_label_values(
    activities: Iterable[str] = (), reasons: Iterable[str] = (), topics: Iterable[str] = ()
) -> None:
    """Create every known label series at zero.

    Why: a series that does not exist yet makes `rate()` return nothing rather than 0,
    so dashboards show "no data" and alerts cannot tell quiet from broken. Touching
    the bounded label values at startup makes them all present from the first scrape.
    """
    for activity in activities:
        WINDOWS_CLASSIFIED.labels(activity=activity)
    for reason in reasons:
        MESSAGES_REJECTED.labels(reason=reason)
    for topic in topics:
        PRODUCE_ERRORS.labels(topic=topic)
        OUTPUT_DEAD_LETTERED.labels(topic=topic)


def set_consumer_lag(lag_by_partition: Mapping[int, int]) -> None:
    """Set lag for the partitions now assigned and drop series of partitions given away.

    A revoked partition's last lag would otherwise stay frozen in this process's
    exposition and be double counted with the new owner's.
    """
    current = {str(partition) for partition in lag_by_partition}
    for gone in _lag_partitions - current:
        CONSUMER_LAG.remove(gone)
    _lag_partitions.clear()
    _lag_partitions.update(current)
    for partition, lag in lag_by_partition.items():
        CONSUMER_LAG.labels(partition=str(partition)).set(lag)
    ASSIGNED_PARTITIONS.set(len(lag_by_partition))


def start_metrics_server(host: str, port: int) -> WSGIServer:
    """Serve `REGISTRY` at http://host:port/metrics in a daemon thread.

    Returns the server: `server.server_port` is the bound port (useful with port 0)
    and `server.shutdown()` stops it.
    """
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return server


for _kind in SUBSCRIBER_KINDS:
    SUBSCRIBER_RECORDS_PUBLISHED.labels(kind=_kind)
for _event in PIPELINE_EVENT_NAMES:
    PIPELINE_EVENTS.labels(event=_event)
for _stage in STAGES:
    STAGE_DURATION.labels(stage=_stage)
