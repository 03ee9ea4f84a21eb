"""The metrics module: the contract other modules and deploy/ rely on, and a clean exposition."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from har_stream.core.records import ACTIVITIES
from har_stream.service import metrics

# Python name -> (exposed family name, type, label names): the contract in docs/ARCHITECTURE.md.
CONTRACT = {
    "MESSAGES_CONSUMED": ("har_messages_consumed", "counter", ()),
    "SAMPLES_CONSUMED": ("har_samples_consumed", "counter", ()),
    "MESSAGES_REJECTED": ("har_messages_rejected", "counter", ("reason",)),
    "PIPELINE_EVENTS": ("har_pipeline_events", "counter", ("event",)),
    "WINDOWS_CLASSIFIED": ("har_windows_classified", "counter", ("activity",)),
    "RESULTS_PUBLISHED": ("har_results_published", "counter", ()),
    "COUNTS_PUBLISHED": ("har_counts_published", "counter", ()),
    "PRODUCE_ERRORS": ("har_produce_errors", "counter", ("topic",)),
    "INFERENCE_BATCH_SIZE": ("har_inference_batch_size", "histogram", ()),
    "INFERENCE_DURATION": ("har_inference_duration_seconds", "histogram", ()),
    "END_TO_END_LATENCY": ("har_end_to_end_latency_seconds", "histogram", ()),
    "STAGE_DURATION": ("har_stage_duration_seconds", "histogram", ("stage",)),
    "CONSUMER_LAG": ("har_consumer_lag_messages", "gauge", ("partition",)),
    "ASSIGNED_PARTITIONS": ("har_assigned_partitions", "gauge", ()),
    "ACTIVE_DEVICES": ("har_active_devices", "gauge", ()),
    "DEVICES_EVICTED": ("har_devices_evicted", "counter", ()),
    "STATE_SNAPSHOTS": ("har_state_snapshots", "counter", ()),
    "STATE_RESTORES": ("har_state_restores", "counter", ()),
    "RESTORE_EVENTS": ("har_state_restore_events", "counter", ()),
    "BROKER_UP": ("har_broker_connected", "gauge", ()),
    "MODEL_INFO": ("har_model", "info", ("engine", "version")),
    "BUILD_INFO": ("har_build", "info", ("python", "version")),
}
BOUNDED_LABELS = {"reason", "event", "activity", "topic", "stage", "partition"}


def touch_every_metric() -> None:
    """Give every metric and label a sample, as a busy recognizer would."""
    metrics.set_build_info()
    metrics.set_model_info(version="test-1", engine="litert")
    metrics.declare_label_values(ACTIVITIES, ("not_json", "bad_sample_width"), ("har.activity",))
    metrics.MESSAGES_CONSUMED.inc(3)
    metrics.SAMPLES_CONSUMED.inc(150)
    metrics.MESSAGES_REJECTED.labels(reason="not_json").inc()
    metrics.PIPELINE_EVENTS.labels(event="duplicate_samples").inc(2)
    metrics.WINDOWS_CLASSIFIED.labels(activity="WALKING").inc()
    metrics.RESULTS_PUBLISHED.inc()
    metrics.COUNTS_PUBLISHED.inc()
    metrics.PRODUCE_ERRORS.labels(topic="har.activity").inc()
    metrics.INFERENCE_BATCH_SIZE.observe(17)
    metrics.INFERENCE_DURATION.observe(0.003)
    metrics.END_TO_END_LATENCY.observe(0.4)
    for stage in metrics.STAGES:
        metrics.STAGE_DURATION.labels(stage=stage).observe(0.001)
    metrics.set_consumer_lag({0: 12, 3: 0})
    metrics.ACTIVE_DEVICES.set(5)
    metrics.DEVICES_EVICTED.inc()
    metrics.STATE_SNAPSHOTS.inc(5)
    metrics.STATE_RESTORES.inc(2)
    metrics.RESTORE_EVENTS.inc()
    metrics.BROKER_UP.set(1)


def exposition() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def families() -> dict[str, Metric]:
    return {family.name: family for family in metrics.REGISTRY.collect()}


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


@pytest.mark.parametrize("python_name", sorted(CONTRACT))
def test_metric_matches_contract(python_name: str) -> None:
    touch_every_metric()
    name, kind, labels = CONTRACT[python_name]
    family = families()[name]
    assert family.type == kind
    sample_labels = {tuple(sorted(sample.labels)) for sample in family.samples
                     if not sample.name.endswith(("_bucket", "_created"))}
    assert sample_labels == {labels}
    assert "(unit: " in family.documentation


def test_labels_are_bounded_and_never_a_device_id() -> None:
    for python_name in CONTRACT:
        labelnames = set(getattr(metrics, python_name)._labelnames)
        assert labelnames <= BOUNDED_LABELS, python_name


def test_registry_holds_only_har_metrics() -> None:
    touch_every_metric()
    assert all(name.startswith("har_") for name in families())


def test_exposition_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    touch_every_metric()
    result = subprocess.run([promtool, "check", "metrics"], input=exposition(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_histogram_buckets_span_the_documented_ranges() -> None:
    assert metrics.BATCH_SIZE_BUCKETS[0] == 1 and metrics.BATCH_SIZE_BUCKETS[-1] == 4096
    assert metrics.INFERENCE_BUCKETS[0] == 0.0005 and metrics.INFERENCE_BUCKETS[-1] == 2
    assert metrics.END_TO_END_BUCKETS[0] == 0.005 and metrics.END_TO_END_BUCKETS[-1] == 30
    metrics.INFERENCE_BATCH_SIZE.observe(4096)
    assert value("har_inference_batch_size_bucket", le="4096.0") == value(
        "har_inference_batch_size_bucket", le="+Inf")


def test_fixed_label_values_exist_before_anything_happens() -> None:
    for event in metrics.PIPELINE_EVENT_NAMES:
        assert value("har_pipeline_events_total", event=event) is not None
    for stage in metrics.STAGES:
        assert value("har_stage_duration_seconds_count", stage=stage) is not None


def test_declare_label_values_creates_zero_series() -> None:
    # the registry is shared by the session: other tests may have counted this reason already
    before = value("har_messages_rejected_total", reason="too_many_samples") or 0.0
    metrics.declare_label_values(activities=["CYCLING"], reasons=["too_many_samples"],
                                 topics=["some.topic"])
    assert value("har_windows_classified_total", activity="CYCLING") == 0
    assert value("har_messages_rejected_total", reason="too_many_samples") == before
    assert value("har_produce_errors_total", topic="some.topic") == 0
    assert value("har_output_dead_lettered_total", topic="some.topic") == 0


def test_consumer_lag_forgets_revoked_partitions() -> None:
    metrics.set_consumer_lag({0: 10, 1: 20, 2: 30})
    metrics.set_consumer_lag({1: 5, 4: 7})
    assert value("har_consumer_lag_messages", partition="0") is None
    assert value("har_consumer_lag_messages", partition="2") is None
    assert value("har_consumer_lag_messages", partition="1") == 5
    assert value("har_consumer_lag_messages", partition="4") == 7
    assert value("har_assigned_partitions") == 2
    metrics.set_consumer_lag({})
    assert value("har_consumer_lag_messages", partition="1") is None
    assert value("har_assigned_partitions") == 0


def test_model_info_is_replaced_not_accumulated() -> None:
    metrics.set_model_info(version="a", engine="litert")
    metrics.set_model_info(version="b", engine="tf")
    assert value("har_model_info", version="b", engine="tf") == 1
    assert value("har_model_info", version="a", engine="litert") is None


def test_build_info_names_this_package() -> None:
    metrics.set_build_info()
    info = families()["har_build"].samples
    assert len(info) == 1 and info[0].value == 1
    assert info[0].labels["version"] == metrics.__version__


def test_server_serves_the_registry_on_the_requested_address() -> None:
    server = metrics.start_metrics_server("127.0.0.1", 0)
    try:
        assert server.server_address[0] == "127.0.0.1" and server.server_port > 0
        metrics.RESULTS_PUBLISHED.inc()
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        served = {f.name: f for f in text_string_to_metric_families(body)}
        assert served["har_results_published"].samples[0].value == value(
            "har_results_published_total")
        assert not any(name.startswith(("python_", "process_")) for name in served)
    finally:
        server.shutdown()
        server.server_close()
