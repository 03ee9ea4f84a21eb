"""Crash loop: `har-stream run` killed with SIGKILL at random points, five times during one
replay of several devices, and restarted each time.

Each life gets a slice of the replay, sent live while it runs, and is killed (no flush, no
snapshot, no commit) at a random moment once it has made progress. After de-duplication by
window id the published results must equal an uninterrupted offline run, every duplicate
must equal the original, the counts must be exact, and every restarted life must have
restored state from the changelog (its restore time is logged and printed here).
"""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import time
from pathlib import Path

import pytest
from service_support import (
    FakeModel,
    Service,
    TopicReader,
    batches_of,
    check_results,
    completion,
    final_counts,
    interleave,
    offline_results,
    send_batches,
    service_args,
    start_service,
    synthetic_samples,
    wait_for,
    window_ids,
)

from har_stream.core.records import SensorBatch
from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
KILLS = 5
RESTORED = re.compile(r"restored (\d+) devices .* in ([\d.]+) s")


def _start(settings: Settings, log_path: Path) -> Service:
    return start_service([*service_args(settings), "--model", "service_support:fake_model"],
                         log_path)


def _alive(service: Service) -> None:
    assert service.process.poll() is None, service.log()[-3000:]


def _send_paced(settings: Settings, batches: list[SensorBatch], seconds: float
                ) -> threading.Thread:
    def run() -> None:
        step = max(len(batches) // 8, 1)
        for i in range(0, len(batches), step):
            send_batches(settings.kafka, settings.topics.sensor_topic, batches[i:i + step])
            time.sleep(seconds / 8)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_five_kill_9_during_one_replay_lose_and_change_nothing(service_settings: Settings,
                                                               tmp_path: Path) -> None:
    rng = random.Random(2024)
    streams = {f"crash-{i}": synthetic_samples(3200, seed=500 + i) for i in range(6)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 20, T0_MS) for d, s in streams.items()})
    settings = dataclasses.replace(service_settings, max_poll_records=10, commit_interval_s=0.3)
    slices = [batches[i * len(batches) // (KILLS + 1):(i + 1) * len(batches) // (KILLS + 1)]
              for i in range(KILLS + 1)]
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)
    lives: list[Service] = []
    kill_points: list[str] = []
    try:
        for life, part in enumerate(slices):
            before = len(window_ids(results.poll()))
            service = _start(settings, tmp_path / f"life-{life}.log")
            lives.append(service)
            sender = _send_paced(settings, part, seconds=2.0)
            if life == KILLS:
                break
            results.until(lambda r, b=before: len(window_ids(r)) > b, 60,
                          f"progress in life {life}", check=lambda s=service: _alive(s))
            delay = rng.uniform(0.0, 1.2)
            time.sleep(delay)
            service.kill()  # SIGKILL
            sender.join(30)
            kill_points.append(f"{len(window_ids(results.poll()))}/{len(expected.results)} "
                               f"windows, +{delay:.2f} s")
        sender.join(30)
        results.until(lambda r: window_ids(r) >= set(expected.results), 120, "every result",
                      explain=lambda r: completion(r, expected))
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts")
        wait_for(lambda: "partitions assigned" in lives[-1].log(), 5, "the last life joined")
    finally:
        for service in lives[:-1]:
            if service.process.poll() is None:
                service.kill()
        code = lives[-1].terminate()
    assert code == 0, lives[-1].log()[-3000:]
    assert len(lives) == KILLS + 1
    duplicates = check_results(results.poll(), expected)
    assert final_counts(counts.poll()) == expected.counts
    restores = []
    for life, service in enumerate(lives[1:], 1):
        found = [(int(n), float(s)) for n, s in RESTORED.findall(service.log())]
        assert any(n > 0 for n, _ in found), f"life {life} restored nothing: {service.log()}"
        restores.extend(s for n, s in found if n > 0)
    print(f"\n{KILLS} SIGKILLs at {kill_points}; {len(expected.results)} windows, 0 lost, "
          f"0 changed, {duplicates} duplicates; restore {min(restores) * 1000:.0f}-"
          f"{max(restores) * 1000:.0f} ms per restart")
    results.close()
    counts.close()
