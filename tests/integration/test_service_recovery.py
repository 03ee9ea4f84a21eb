"""Crashes and rebalances with real `har-stream run` processes and a real broker.

kill -9 gives a process no chance to flush, snapshot or commit: whatever it did since its
last checkpoint is redone by its successor. After de-duplication by window id the results
must equal an uninterrupted offline run, every duplicate must equal the original, and the
counts must be exact. The fake model carries recurrent state, so a device continued from
wrong or missing state produces different probabilities and fails the comparison.
"""

from __future__ import annotations

import dataclasses
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
    create_topics,
    final_counts,
    interleave,
    offline_results,
    send_batches,
    service_args,
    start_service,
    synthetic_samples,
    topic_settings,
    wait_for,
    window_ids,
)

from har_stream.core.records import SensorBatch
from har_stream.kafka.clients import make_consumer
from har_stream.kafka.ports import Partition
from har_stream.service.settings import Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
FAKE_MODEL = ["--model", "service_support:fake_model"]


def _streams(devices: int, samples: int) -> dict[str, object]:
    return {f"dev-{i:02d}": synthetic_samples(samples, seed=100 + i) for i in range(devices)}


def _start(settings: Settings, log_path: Path) -> Service:
    return start_service([*service_args(settings), *FAKE_MODEL], log_path)


def _paced_sender(settings: Settings, batches: list[SensorBatch], seconds: float
                  ) -> threading.Thread:
    """Sends `batches` in ~10 slices over `seconds`, in a thread (input arriving live)."""
    def send_slowly() -> None:
        step = max(len(batches) // 10, 1)
        for i in range(0, len(batches), step):
            send_batches(settings.kafka, settings.topics.sensor_topic, batches[i:i + step])
            time.sleep(seconds / 10)

    thread = threading.Thread(target=send_slowly, daemon=True)
    thread.start()
    return thread


def _restored_counts(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"restored (\d+) devices", log)]


def _assigned(log: str) -> list[list[int]]:
    return [[int(p) for p in re.findall(r"\d+", m)]
            for m in re.findall(r"partitions assigned: \[([\d, ]*)\]", log)]


def _committed_everything(settings: Settings, sent: dict[int, int]) -> bool:
    consumer = make_consumer(settings.kafka, settings.group_id)
    try:
        return all(consumer.committed(Partition(settings.topics.sensor_topic, p)) == end
                   for p, end in sent.items())
    finally:
        consumer.close()


def _sensor_ends(settings: Settings) -> dict[int, int]:
    """Offset after the last sensor message of each partition (from the broker)."""
    reader = TopicReader(settings.kafka, settings.topics.sensor_topic)
    try:
        reader.until(lambda r: all(reader.consumer.highwater(tp) is not None
                                   for tp in reader.partitions), 10, "high watermarks")
        return {tp.partition: reader.consumer.highwater(tp) for tp in reader.partitions}
    finally:
        reader.close()


def test_kill_9_then_restart_continues_exactly(service_settings: Settings,
                                               tmp_path: Path) -> None:
    streams = _streams(devices=6, samples=2400)
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 25, T0_MS) for d, s in streams.items()})
    settings = dataclasses.replace(service_settings, max_poll_records=20, commit_interval_s=0.3)
    head, tail = batches[: len(batches) * 2 // 5], batches[len(batches) * 2 // 5:]
    send_batches(settings.kafka, settings.topics.sensor_topic, head)
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)

    first = _start(settings, tmp_path / "first.log")
    try:
        results.until(lambda r: len(r) >= len(expected.results) // 4, 60, "first results")
        sender = _paced_sender(settings, tail, seconds=3.0)
        time.sleep(1.0)
        assert first.process.poll() is None, first.log()
    finally:
        first.kill()  # SIGKILL: no flush, no snapshot, no commit
    assert len(window_ids(results.poll())) < len(expected.results), "killed mid-stream"
    second = _start(settings, tmp_path / "second.log")
    try:
        sender.join(30)
        results.until(lambda r: window_ids(r) >= set(expected.results), 90, "every result",
                      explain=lambda r: completion(r, expected))
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts")
        wait_for(lambda: _committed_everything(settings, _sensor_ends(settings)), 20,
                 "offsets committed up to the end")
    finally:
        code = second.terminate()
    assert code == 0, second.log()
    assert "stopped cleanly" in second.log()
    assert max(_restored_counts(second.log()), default=0) > 0, "state came from the changelog"
    duplicates = check_results(results.poll(), expected)
    print(f"{len(expected.results)} windows, {duplicates} duplicates after kill -9")
    assert final_counts(counts.poll()) == expected.counts
    results.close()
    counts.close()


def test_two_members_share_partitions_and_one_takes_over_after_kill_9(
        kafka_settings: object, tmp_path: Path) -> None:
    settings = Settings(kafka=kafka_settings, topics=topic_settings(partitions=4),  # type: ignore[arg-type]
                        group_id=f"group-{tmp_path.name}", session_timeout_ms=6000,
                        heartbeat_interval_ms=1000, poll_timeout_ms=100, max_poll_records=20,
                        commit_interval_s=0.3, metrics_address="")
    create_topics(settings)
    streams = _streams(devices=8, samples=2000)
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 25, T0_MS) for d, s in streams.items()})
    third = len(batches) // 3
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)

    a = _start(settings, tmp_path / "a.log")
    b = _start(settings, tmp_path / "b.log")
    try:
        wait_for(lambda: all(_assigned(m.log()) and _assigned(m.log())[-1] for m in (a, b)),
                 60, "both members to own partitions")
        owned = [set(_assigned(m.log())[-1]) for m in (a, b)]
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {0, 1, 2, 3}
        send_batches(settings.kafka, settings.topics.sensor_topic, batches[:third])
        results.until(lambda r: len(r) >= len(expected.results) // 5, 60, "first results")
        sender = _paced_sender(settings, batches[third:], seconds=3.0)
        time.sleep(1.0)
        a.kill()
        assert len(window_ids(results.poll())) < len(expected.results), "killed mid-stream"
        sender.join(30)
        results.until(lambda r: window_ids(r) >= set(expected.results), 90, "every result",
                      explain=lambda r: completion(r, expected))
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts")
        assert set(_assigned(b.log())[-1]) == {0, 1, 2, 3}, "the survivor owns everything"
    finally:
        a.kill()
        code = b.terminate()
    assert code == 0, b.log()
    assert max(_restored_counts(b.log()), default=0) > 0, "a's devices came from the changelog"
    duplicates = check_results(results.poll(), expected)
    print(f"{len(expected.results)} windows, {duplicates} duplicates after the takeover")
    assert final_counts(counts.poll()) == expected.counts
    results.close()
    counts.close()
