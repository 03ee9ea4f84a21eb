"""Reordered sensor messages against a real broker: two adjacent messages of a device swapped
in the topic (a producer retrying with several requests in flight).

Within the reorder allowance (HAR_REORDER_SAMPLES) the de-duplicated results and counts equal
those of the in-order stream, also when the service restarts while a message is held back;
beyond it, the documented behaviour: the stream restarts at the gap, the late message's
samples are dropped and counted (har_pipeline_events_total{event="late_samples"}).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from service_support import (
    Expected,
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    final_counts,
    interleave,
    offline_results,
    send_batches,
    synthetic_samples,
    window_ids,
)

from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch
from har_stream.service import metrics
from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000


def _swap(batches: list[SensorBatch], at: int) -> list[SensorBatch]:
    return [*batches[:at], batches[at + 1], batches[at], *batches[at + 2:]]


def _event(name: str) -> float:
    return metrics.REGISTRY.get_sample_value("har_pipeline_events_total", {"event": name}) or 0.0


def test_swapped_adjacent_messages_give_the_in_order_results(service_settings: Settings) -> None:
    streams = {"swapped": synthetic_samples(2400, seed=21), "steady": synthetic_samples(2400, 22)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    swapped = _swap(_swap(batches_of("swapped", streams["swapped"], 64, T0_MS), 7), 20)
    steady = batches_of("steady", streams["steady"], 64, T0_MS)
    reordered, late = _event("reordered_messages"), _event("late_samples")
    results = TopicReader(service_settings.kafka, service_settings.topics.activity_topic)
    counts = TopicReader(service_settings.kafka, service_settings.topics.counts_topic)
    with InProcessService(service_settings, FakeModel()) as service:
        send_batches(service_settings.kafka, service_settings.topics.sensor_topic,
                     interleave({"swapped": swapped, "steady": steady}))
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "every result",
                      service.check)
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "the final counts",
                     service.check)
    check_results(results.poll(), expected)  # 0 lost, 0 changed
    assert _event("reordered_messages") - reordered == 2
    assert _event("late_samples") == late
    results.close()
    counts.close()


def test_a_message_held_back_survives_a_restart(service_settings: Settings) -> None:
    """The held message is in the device's snapshot: a new service instance that resumes from
    the changelog puts it in order when its predecessor arrives."""
    samples = synthetic_samples(1600, seed=23)
    expected = offline_results(FakeModel(), {"held": samples}, T0_MS)
    batches = _swap(batches_of("held", samples, 64, T0_MS), 9)
    first, rest = batches[:10], batches[10:]  # the first part ends with the held message
    results = TopicReader(service_settings.kafka, service_settings.topics.activity_topic)
    with InProcessService(service_settings, FakeModel()) as service:
        send_batches(service_settings.kafka, service_settings.topics.sensor_topic, first)
        results.until(lambda r: len(window_ids(r)) >= 7, 60, "the first results",
                      service.check)
    with InProcessService(service_settings, FakeModel()) as service:
        send_batches(service_settings.kafka, service_settings.topics.sensor_topic, rest)
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "every result",
                      service.check)
    check_results(results.poll(), expected)
    results.close()


def _stream_from(model: FakeModel, device_id: str, samples: np.ndarray, seq0: int,
                 epoch: int = 0) -> Expected:
    """The offline results of a stream that starts at `seq0` (as after a restart: the stream's
    `epoch` counts its restarts, and is part of every window id)."""
    return offline_results(model, {device_id: samples},
                           t0_ms=T0_MS + round(seq0 * SAMPLE_PERIOD_MS), seq0=seq0, epoch=epoch)

def test_a_swap_beyond_the_allowance_restarts_the_stream_and_counts_the_late_samples(
        service_settings: Settings) -> None:
    settings = dataclasses.replace(service_settings, reorder_samples=64)
    samples = synthetic_samples(1600, seed=24)
    batches = _swap(batches_of("far", samples, 64, T0_MS), 10)  # seq 704.. before 640..
    model = FakeModel()
    before, after = (_stream_from(model, "far", samples[:640], 0),
                     _stream_from(model, "far", samples[704:], 704, epoch=1))
    expected = Expected(before.results | after.results, {"far": {
        c: before.counts["far"][c] + after.counts["far"][c] for c in model.classes}})
    late, resets = _event("late_samples"), _event("stream_resets")
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    with InProcessService(settings, FakeModel()) as service:
        send_batches(settings.kafka, settings.topics.sensor_topic, batches)
        results.until(lambda r: window_ids(r) >= set(expected.results), 60, "every result",
                      service.check)
    check_results(results.poll(), expected)
    assert (_event("late_samples") - late, _event("stream_resets") - resets) == (64, 1)
    results.close()
