"""The simulator: device plans, message order, ground-truth headers, replay into an in-memory
Kafka cluster."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from har_stream.core import codec
from har_stream.core.records import SAMPLE_PERIOD_MS
from har_stream.kafka.drivers.memory import MemoryCluster
from har_stream.kafka.drivers.memory_producer import MemoryProducer
from har_stream.tools.simulator import (
    TRUTH_HEADER,
    parse_truth,
    plan_streams,
    replay,
    schedule,
    select_recordings,
    truth_header,
)
from har_stream.training.hapt import Recording

NAMES = {1: "WALKING", 4: "SITTING", 7: "STAND_TO_SIT"}


def recording(exp_id: int, user_id: int, n: int) -> Recording:
    rng = np.random.default_rng(exp_id)
    segments = np.array([[1, 10, 60], [7, 60, 70], [4, 70, n - 5]], np.int64)
    return Recording(exp_id, user_id, rng.normal(0, 0.3, (n, 3)).astype(np.float32),
                     rng.normal(0, 0.3, (n, 3)).astype(np.float32), segments)


DATA = SimpleNamespace(recordings=(recording(1, 1, 300), recording(2, 2, 250),
                                   recording(3, 2, 200)), test_users=(2,))


def sensor_topic() -> tuple[MemoryCluster, MemoryProducer]:
    """A cluster with the sensor topic (one partition: the records in the order sent)."""
    cluster = MemoryCluster(waits=False)
    cluster.create_topic("sensor")
    return cluster, cluster.producer()


def sent(cluster: MemoryCluster) -> list[tuple[str, bytes, bytes, list]]:
    return [(r.topic, r.key, r.value, r.headers) for r in cluster.records("sensor")]  # type: ignore[misc]


def test_recordings_are_chosen_by_users_or_experiments() -> None:
    assert [r.exp_id for r in select_recordings(DATA, "test", "")] == [2, 3]
    assert [r.exp_id for r in select_recordings(DATA, "train", "")] == [1]
    assert [r.exp_id for r in select_recordings(DATA, "all", "")] == [1, 2, 3]
    assert [r.exp_id for r in select_recordings(DATA, "1,2", "")] == [1, 2, 3]
    assert [r.exp_id for r in select_recordings(DATA, "test", "3")] == [3]
    with pytest.raises(ValueError, match="no recordings"):
        select_recordings(DATA, "99", "")


def test_plans_name_devices_reuse_recordings_and_offset_their_clocks() -> None:
    streams = plan_streams(DATA.recordings[:2], devices=3, start_ms=1_000_000, stagger_s=2.0,
                           max_samples=220)
    assert [s.device_id for s in streams] == [
        "hapt-exp01-user01", "hapt-exp02-user02", "hapt-exp01-user01-1"]
    assert [len(s.samples) for s in streams] == [220, 220, 220]
    assert [s.t0_ms for s in streams] == [1_000_000, 1_002_000, 1_004_000]
    assert streams[0].truth[10] == 1 and streams[0].truth[65] == 7 and streams[0].truth[0] == 0
    prefixed = plan_streams(DATA.recordings, device_prefix="watch-", start_ms=1)
    assert [s.device_id for s in prefixed] == ["watch-0000", "watch-0001", "watch-0002"]


def test_messages_are_due_in_time_order_and_cover_every_sample_once() -> None:
    streams = plan_streams(DATA.recordings, start_ms=1, stagger_s=1.5)
    order = list(schedule(streams, per_message=32))
    dues = [due for due, _, _ in order]
    assert dues == sorted(dues)
    for index, stream in enumerate(streams):
        starts = [start for _, i, start in order if i == index]
        assert starts == list(range(0, len(stream.samples), 32))
        first_due = next(due for due, i, _ in order if i == index)
        assert first_due == pytest.approx(stream.offset_s + 32 * SAMPLE_PERIOD_MS / 1000)


def test_truth_headers_round_trip_per_sample() -> None:
    truth = np.array([0, 0, 1, 1, 1, 7, 4, 4])
    header = truth_header(truth, NAMES)
    assert header == b"0:-,2:WALKING,5:STAND_TO_SIT,6:SITTING"
    assert parse_truth(header, len(truth)) == [
        "-", "-", "WALKING", "WALKING", "WALKING", "STAND_TO_SIT", "SITTING", "SITTING"]


def test_replay_sends_decodable_batches_with_truth_headers() -> None:
    streams = plan_streams(DATA.recordings, start_ms=1_700_000_000_000)
    cluster, producer = sensor_topic()
    summary = replay(producer, "sensor", streams, per_message=50, speed=0, names=NAMES)
    assert summary.complete and summary.messages == len(sent(cluster))
    assert summary.samples == sum(len(s.samples) for s in streams) == 750
    rebuilt: dict[str, list[np.ndarray]] = {}
    for topic, key, value, headers in sent(cluster):
        batch = codec.decode_sensor(value, key)
        assert topic == "sensor" and batch.device_id == key.decode()
        stream = next(s for s in streams if s.device_id == batch.device_id)
        assert batch.t0_ms == stream.t0_ms + round(batch.seq * SAMPLE_PERIOD_MS)
        expected_truth = [NAMES.get(int(a), "-") for a in
                          stream.truth[batch.seq:batch.seq + len(batch.samples)]]
        assert parse_truth(dict(headers)[TRUTH_HEADER], len(batch.samples)) == expected_truth
        rebuilt.setdefault(batch.device_id, []).append(batch.samples)
    for stream in streams:
        np.testing.assert_array_equal(np.concatenate(rebuilt[stream.device_id]), stream.samples)


def test_further_passes_replay_the_recording_with_seq_and_clock_going_on() -> None:
    streams = plan_streams(DATA.recordings[:1], start_ms=1_700_000_000_000, max_samples=220)
    cluster, producer = sensor_topic()
    summary = replay(producer, "sensor", streams, per_message=64, speed=0, names=NAMES,
                     passes=3)
    batches = [codec.decode_sensor(value, key) for _, key, value, _ in sent(cluster)]
    assert [b.seq for b in batches] == [0, 64, 128, 192, 220, 284, 348, 412, 440, 504, 568, 632]
    assert [len(b.samples) for b in batches] == [64, 64, 64, 28] * 3  # no message spans passes
    assert summary.complete and summary.samples == 3 * 220
    stream = streams[0]
    np.testing.assert_array_equal(np.concatenate([b.samples for b in batches]),
                                  np.tile(stream.samples, (3, 1)))
    assert all(b.t0_ms == stream.t0_ms + round(b.seq * SAMPLE_PERIOD_MS) for b in batches)
    dues = [due for due, _, _ in schedule(streams, 64, passes=3)]
    assert dues == sorted(dues) and dues[-1] == pytest.approx(660 * SAMPLE_PERIOD_MS / 1000)


def test_endless_passes_stop_only_when_told() -> None:
    streams = plan_streams(DATA.recordings[:1], start_ms=1, max_samples=100)
    cluster, producer = sensor_topic()

    class StopAfter(threading.Event):  # set once 25 messages went out
        def is_set(self) -> bool:
            return cluster.count("sensor") + cluster.pending("sensor") >= 25

    summary = replay(producer, "sensor", streams, per_message=50, speed=0, passes=0,
                     stop=StopAfter())
    assert not summary.complete and summary.messages == 25
    assert len(sent(cluster)) == 25 and codec.decode_sensor(sent(cluster)[-1][2]).seq == 24 * 50
