"""Rebalance under load: members join and leave a group of 2-3 `har-stream run` processes while
a replay flows in.

A starts alone; B joins, then C; A leaves (SIGTERM: last checkpoint, leave the group), then
B is killed (SIGKILL: its partitions move after the session timeout). Data keeps arriving
throughout. After de-duplication the results equal an uninterrupted offline run and the
counts are exact: the fake model carries recurrent state, so a device continued without its
state, or with another device's, would change its results. Each member's log shows the
partitions it was given and the devices it restored for them.
"""

from __future__ import annotations

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
from har_stream.service.settings import KafkaSettings, Settings

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
PARTITIONS = 6


def _start(settings: Settings, log_path: Path) -> Service:
    return start_service([*service_args(settings), "--model", "service_support:fake_model"],
                         log_path)


def _assigned(service: Service) -> list[set[int]]:
    return [{int(p) for p in re.findall(r"\d+", m)}
            for m in re.findall(r"partitions assigned: \[([\d, ]*)\]", service.log())]


def _restored(service: Service) -> list[tuple[int, set[int]]]:
    return [(int(n), {int(p) for p in re.findall(r"\d+", ps)})
            for n, ps in re.findall(r"restored (\d+) devices .*? of partitions \[([\d, ]*)\]",
                                    service.log())]


def _owns(service: Service) -> bool:
    assigned = _assigned(service)
    return bool(assigned and assigned[-1])


def test_members_joining_and_leaving_during_a_replay_lose_and_change_nothing(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    settings = Settings(kafka=kafka_settings, topics=topic_settings(partitions=PARTITIONS),
                        group_id=f"group-{tmp_path.name}", session_timeout_ms=6000,
                        heartbeat_interval_ms=1000, poll_timeout_ms=100, max_poll_records=10,
                        commit_interval_s=0.3, metrics_address="")
    create_topics(settings)
    streams = {f"move-{i:02d}": synthetic_samples(3000, seed=700 + i) for i in range(12)}
    expected = offline_results(FakeModel(), streams, T0_MS)
    batches = interleave({d: batches_of(d, s, 20, T0_MS) for d, s in streams.items()})
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)
    sending = threading.Event()
    sending.set()

    def feed(chunks: list[list[SensorBatch]]) -> None:
        for chunk in chunks:  # live input until the membership changes are over
            send_batches(settings.kafka, settings.topics.sensor_topic, chunk)
            time.sleep(0.4 if sending.is_set() else 0.0)

    size = max(len(batches) // 60, 1)
    sender = threading.Thread(target=feed, daemon=True, args=(
        [batches[i:i + size] for i in range(0, len(batches), size)],))
    a = _start(settings, tmp_path / "a.log")
    members = [a]
    try:
        wait_for(lambda: _owns(a), 60, "A to own every partition")
        assert _assigned(a)[-1] == set(range(PARTITIONS))
        sender.start()
        results.until(lambda r: len(r) > 20, 60, "A's first results")
        b = _start(settings, tmp_path / "b.log")
        members.append(b)
        wait_for(lambda: _owns(b), 60, "B to join")
        c = _start(settings, tmp_path / "c.log")
        members.append(c)
        wait_for(lambda: _owns(c), 60, "C to join")
        progress = len(window_ids(results.poll()))
        assert progress < len(expected.results), "the replay is still running"
        assert a.terminate() == 0, a.log()[-3000:]  # A leaves the group cleanly
        wait_for(lambda: _assigned(b)[-1] | _assigned(c)[-1] == set(range(PARTITIONS)), 60,
                 "B and C to share A's partitions")
        b.kill()  # B dies: C takes everything after the session timeout
        sending.clear()
        sender.join(60)
        results.until(lambda r: window_ids(r) >= set(expected.results), 120, "every result",
                      explain=lambda r: completion(r, expected))
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "exact counts")
        assert _assigned(c)[-1] == set(range(PARTITIONS)), "the survivor owns everything"
    finally:
        for member in members[:-1]:
            if member.process.poll() is None:
                member.kill()
        code = members[-1].terminate()
    assert code == 0, members[-1].log()[-3000:]
    duplicates = check_results(results.poll(), expected)
    assert final_counts(counts.poll()) == expected.counts
    for name, member in zip("BC", members[1:], strict=True):
        restored = _restored(member)
        assert any(n > 0 for n, _ in restored), f"{name} restored no state: {member.log()}"
        for _, partitions in restored:
            assert partitions <= set(range(PARTITIONS))
    rebalances = sum(len(_assigned(m)) for m in members)
    print(f"\n{rebalances} assignments over 3 members, {len(expected.results)} windows, "
          f"0 lost, 0 changed, {duplicates} duplicates; restores (devices, partitions): "
          f"{[_restored(m) for m in members]}")
    results.close()
    counts.close()
