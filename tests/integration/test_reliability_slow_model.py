"""A slow model cannot push polls past `max.poll.interval.ms` (no rebalance storm).

The in-process service runs a model that takes 20 ms per window against a backlog whose
first poll, at the configured `max_poll_records`, would hold more than 1.5 times the poll
interval of model work: without a bound the consumer would leave its group in the middle
of the step, rejoin at the next poll, and do so again and again. With
`max_poll_interval_ms=4000`, `produce_timeout_s=1`, `restore_timeout_s=1` the settings give
a work budget of 0.5 s per poll (`Settings.work_budget_s`); the poll size adapts to it, so
the member is assigned its partitions once and keeps them, and every result is exact.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pytest
from service_support import (
    FakeModel,
    InProcessService,
    TopicReader,
    batches_of,
    check_results,
    interleave,
    offline_results,
    send_batches,
    synthetic_samples,
    window_ids,
)

from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
DELAY_S = 0.02


class SlowModel(FakeModel):
    """FakeModel that takes DELAY_S per window, as a large model on a busy CPU might."""

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(DELAY_S * len(windows))
        return super().predict(windows, state)


def test_a_slow_model_keeps_its_partitions_and_its_results(
        service_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    settings = dataclasses.replace(service_settings, max_poll_interval_ms=4000,
                                   session_timeout_ms=3000, heartbeat_interval_ms=1000,
                                   produce_timeout_s=1.0, restore_timeout_s=1.0,
                                   max_poll_records=500)
    assert settings.work_budget_s == pytest.approx(0.5)
    streams = {f"slow-{i}": synthetic_samples(64 * 42, seed=60 + i) for i in range(8)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 64, T0_MS) for d, s in streams.items()})
    first_poll = min(settings.max_poll_records, len(batches))
    assert first_poll * DELAY_S > 1.5 * settings.max_poll_interval_ms / 1000, \
        "precondition: an unbounded first poll would outlast the poll interval"
    send_batches(settings.kafka, settings.topics.sensor_topic, batches)
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    started = time.monotonic()
    with caplog.at_level(logging.INFO), InProcessService(settings, SlowModel()) as service:
        results.until(lambda r: window_ids(r) >= set(expected.results), 120, "every result",
                      service.check)
    elapsed = time.monotonic() - started
    check_results(results.poll(), expected)
    results.close()
    messages = [r.getMessage() for r in caplog.records]
    expired = [m for m in messages  # kafka-python's words, then librdkafka's
               if "poll timeout has expired" in m or "maximum poll interval" in m]
    assignments = [m for m in messages if m.startswith("partitions assigned")]
    assert not expired and len(assignments) == 1, f"the member left its group: {assignments}"
    print(f"\n{len(batches)} messages, {len(expected.results)} windows at {DELAY_S * 1000:g} ms "
          f"each in {elapsed:.1f} s; 1 assignment, no rebalance (budget "
          f"{settings.work_budget_s:g} s per poll, interval {settings.max_poll_interval_ms} ms)")
