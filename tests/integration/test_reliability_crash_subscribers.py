"""Subscriber records through a crash loop: `har-stream run` killed with SIGKILL twice during
one replay that crosses midnight, and restarted each time.

After the de-duplication subscribers do (docs/CLIENT.md: one change per window id, the latest
device record, one closed day per device and day), the activity changes, device records and
daily totals must equal those of an uninterrupted offline run, and every copy published again
must equal its original: their state (smoother, open day, stream epoch) is restored from the
changelog with the rest of the device.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import numpy as np
import pytest
from service_support import (
    FakeModel,
    Service,
    TopicReader,
    batches_of,
    check_results,
    interleave,
    offline_results,
    send_batches,
    service_args,
    start_service,
    synthetic_samples,
    window_ids,
)
from subscriber_support import offline_subscriber_view, published_subscriber_view

from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

MIDNIGHT_MS = 1_700_006_400_000
T0_MS = MIDNIGHT_MS - 40_000
KILLS = 2


def _varied(n: int, seed: int) -> np.ndarray:
    """Samples whose level changes every 400 (8 s), so the model's answer changes too."""
    samples = synthetic_samples(n, seed)
    rng = np.random.default_rng(seed)
    for start in range(0, n, 400):
        samples[start:start + 400, :3] += rng.uniform(-1.0, 1.0, 3).astype(np.float32)
    return samples


def _start(settings: Settings, log_path: Path) -> Service:
    return start_service([*service_args(settings), "--model", "service_support:fake_model"],
                         log_path)


@pytest.mark.parametrize("device_records", ["poll", "checkpoint"])
def test_two_kill_9_leave_changes_device_records_and_days_as_a_clean_run(
        service_settings: Settings, tmp_path: Path, device_records: str) -> None:
    rng = random.Random(17)
    streams = {f"sub-{i}": _varied(3600, seed=700 + i) for i in range(4)}
    expected_results = offline_results(FakeModel(), streams, T0_MS)
    expected = offline_subscriber_view(FakeModel(), streams, T0_MS)
    assert len(expected.changes) > 8 and len(expected.days) == len(streams)
    batches = interleave({d: batches_of(d, s, 20, T0_MS) for d, s in streams.items()})
    settings = dataclasses.replace(service_settings, max_poll_records=10, commit_interval_s=0.3,
                                   device_records=device_records)
    slices = [batches[i * len(batches) // (KILLS + 1):(i + 1) * len(batches) // (KILLS + 1)]
              for i in range(KILLS + 1)]
    topics = settings.topics
    results = TopicReader(settings.kafka, topics.activity_topic)
    readers = [TopicReader(settings.kafka, name)
               for name in (topics.changes_topic, topics.devices_topic, topics.daily_topic)]
    lives: list[Service] = []
    try:
        for life, part in enumerate(slices):
            before = len(window_ids(results.poll()))
            service = _start(settings, tmp_path / f"life-{life}.log")
            lives.append(service)
            send_batches(settings.kafka, topics.sensor_topic, part)
            if life == KILLS:
                break
            results.until(lambda r, b=before: len(window_ids(r)) > b + 20, 60,
                          f"progress in life {life}")
            time.sleep(rng.uniform(0.0, 0.8))
            service.kill()  # SIGKILL: no flush, no snapshot, no commit
        results.until(lambda r: window_ids(r) >= set(expected_results.results), 120,
                      "every result")

        def complete(_: list) -> bool:
            return published_subscriber_view(*(r.poll() for r in readers)) == expected

        readers[1].until(complete, 60, "the clean run's subscriber records")
    finally:
        for service in lives[:-1]:
            if service.process.poll() is None:
                service.kill()
        code = lives[-1].terminate()
    assert code == 0, lives[-1].log()[-3000:]
    duplicates = check_results(results.poll(), expected_results)
    changes, devices, days = (reader.poll() for reader in readers)
    published = published_subscriber_view(changes, devices, days)  # copies equal originals
    assert published == expected
    print(f"\n{device_records}: {KILLS} SIGKILLs: {len(expected.changes)} changes "
          f"({len(changes)} published), "
          f"{len(expected.days)} closed days ({len(days)} published), "
          f"{len(devices)} device records; {duplicates} duplicate results")
    for reader in [results, *readers]:
        reader.close()
