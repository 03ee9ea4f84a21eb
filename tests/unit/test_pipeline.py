"""Pipeline invariants: message boundaries, interleaving and sequence faults."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from har_stream.core.pipeline import Pipeline, PipelineConfig, replay
from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch, WindowBatch
from har_stream.core.windowing import window_count

FAST = settings(max_examples=40, deadline=None)


def _samples(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acc = np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0) + [0.0, 0.0, 1.0]
    return np.concatenate([acc, rng.normal(0, 0.5, (n, 3))], axis=1).astype(np.float32)


def _batch(device: str, seq: int, samples: np.ndarray, record_ts: int = 0) -> SensorBatch:
    return SensorBatch(device, seq, round(seq * SAMPLE_PERIOD_MS), samples, record_ts)


def _run(pipeline: Pipeline, batches: list[SensorBatch], per_step: int = 1) -> WindowBatch:
    """Feed batches `per_step` at a time and gather all windows."""
    steps = [pipeline.process(batches[i:i + per_step]).windows
             for i in range(0, len(batches), per_step)]
    return _join(steps)


def _join(parts: list[WindowBatch]) -> WindowBatch:
    parts = [p for p in parts if len(p)] or [WindowBatch.empty()]
    return WindowBatch(
        [d for p in parts for d in p.device_ids],
        *(np.concatenate([getattr(p, f) for p in parts])
          for f in ("seqs", "t_start_ms", "t_end_ms", "record_ts_ms", "fresh", "data")),
    )


def _of(windows: WindowBatch, device: str) -> WindowBatch:
    rows = [i for i, d in enumerate(windows.device_ids) if d == device]
    return WindowBatch([device] * len(rows), windows.seqs[rows], windows.t_start_ms[rows],
                       windows.t_end_ms[rows], windows.record_ts_ms[rows], windows.fresh[rows],
                       windows.data[rows])


def _assert_same(a: WindowBatch, b: WindowBatch) -> None:
    assert a.device_ids == b.device_ids
    assert np.array_equal(a.seqs, b.seqs)
    assert np.array_equal(a.t_start_ms, b.t_start_ms)
    assert np.array_equal(a.fresh, b.fresh)
    assert np.array_equal(a.data, b.data)  # bit-identical


def _split(samples: np.ndarray, cuts: list[int], device: str = "d", seq0: int = 0
           ) -> list[SensorBatch]:
    bounds = sorted({0, len(samples), *(c % len(samples) for c in cuts)})
    return [_batch(device, seq0 + a, samples[a:b]) for a, b in itertools.pairwise(bounds)]


@FAST
@given(n=st.integers(1, 700), cuts=st.lists(st.integers(0, 10_000), max_size=12),
       per_step=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_any_split_into_messages_gives_bit_identical_windows(n, cuts, per_step, seed) -> None:
    samples = _samples(n, seed)
    whole = _run(Pipeline(), [_batch("d", 0, samples)])
    split = _run(Pipeline(), _split(samples, cuts), per_step)
    _assert_same(split, whole)
    assert len(whole) == window_count(n)
    assert list(whole.seqs) == [64 * i for i in range(window_count(n))]


@FAST
@given(lengths=st.lists(st.integers(100, 500), min_size=2, max_size=5),
       chunk=st.integers(1, 130), seed=st.integers(0, 2**16))
def test_interleaved_devices_each_get_what_they_would_get_alone(lengths, chunk, seed) -> None:
    streams = {f"dev-{i}": _samples(n, seed + i) for i, n in enumerate(lengths)}
    queues = {d: [_batch(d, a, x[a:a + chunk]) for a in range(0, len(x), chunk)]
              for d, x in streams.items()}
    rng = np.random.default_rng(seed)
    mixed = []  # a random interleaving that keeps each device's own order
    while queues:
        device = sorted(queues)[rng.integers(len(queues))]
        mixed.append(queues[device].pop(0))
        if not queues[device]:
            del queues[device]
    together = _run(Pipeline(), mixed, per_step=7)
    for device, samples in streams.items():
        _assert_same(_of(together, device), _run(Pipeline(), [_batch(device, 0, samples)]))


def test_windows_carry_deterministic_ids_times_and_record_timestamps() -> None:
    samples = _samples(256, 1)
    batches = [_batch("w", 1000 + a, samples[a:a + 64], record_ts=5000 + a) for a in
               range(0, 256, 64)]
    windows = _run(Pipeline(), batches, per_step=4)
    assert list(windows.seqs) == [1000, 1064, 1128]
    assert list(windows.t_start_ms) == [20_000, 21_280, 22_560]
    assert list(windows.t_end_ms - windows.t_start_ms) == [2540] * 3
    # The window 1000..1127 ends in the message starting at 1064 (record ts 5064).
    assert list(windows.record_ts_ms) == [5064, 5128, 5192]
    assert list(windows.fresh) == [True, False, False]


@FAST
@given(n=st.integers(200, 600), at=st.integers(1, 199), gap=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_small_gaps_are_filled_by_holding_the_last_value(n, at, gap, seed) -> None:
    samples = _samples(n, seed)
    pipeline = Pipeline()
    got = _run(pipeline, [_batch("g", 0, samples[:at]), _batch("g", at + gap, samples[at:])],
               per_step=2)
    held = np.concatenate([samples[:at], np.repeat(samples[at - 1:at], gap, 0), samples[at:]])
    _assert_same(got, _run(Pipeline(), [_batch("g", 0, held)]))


def test_gap_statistics_are_counted() -> None:
    samples = _samples(300, 2)
    step = Pipeline().process([_batch("g", 0, samples[:100]), _batch("g", 103, samples[100:])])
    assert (step.stats.gap_samples_filled, step.stats.stream_resets) == (3, 0)


@FAST
@given(n=st.integers(150, 600), dup_from=st.integers(0, 149), dup_len=st.integers(1, 150),
       seed=st.integers(0, 2**16))
def test_duplicates_are_dropped_and_counted(n, dup_from, dup_len, seed) -> None:
    samples = _samples(n, seed)
    dup_to = min(dup_from + dup_len, 150)
    pipeline = Pipeline()
    batches = [_batch("u", 0, samples[:150]), _batch("u", dup_from, samples[dup_from:dup_to]),
               _batch("u", 150, samples[150:])]
    got = _join([pipeline.process([b]).windows for b in batches])
    _assert_same(got, _run(Pipeline(), [_batch("u", 0, samples)]))


def test_a_message_overlapping_the_past_keeps_only_its_new_samples() -> None:
    samples = _samples(400, 4)
    pipeline = Pipeline()
    first = pipeline.process([_batch("o", 0, samples[:200])])
    second = pipeline.process([_batch("o", 150, samples[150:])])
    assert second.stats.duplicate_samples == 50
    _assert_same(_join([first.windows, second.windows]), replay(samples[:, :3], samples[:, 3:],
                                                                "o"))


@FAST
@given(n=st.integers(130, 400), jump=st.integers(6, 10_000), seed=st.integers(0, 2**16))
def test_large_gaps_restart_the_stream(n, jump, seed) -> None:
    before, after = _samples(n, seed), _samples(n, seed + 1)
    pipeline = Pipeline()
    pipeline.process([_batch("r", 0, before)])
    step = pipeline.process([_batch("r", n + jump, after)])
    assert step.stats.stream_resets == 1
    fresh = _run(Pipeline(), [_batch("r", n + jump, after)])
    _assert_same(step.windows, fresh)
    assert step.windows.fresh[0] and list(step.windows.seqs[:1]) == [n + jump]


def test_rewinding_far_back_means_a_device_restart() -> None:
    samples = _samples(5000, 5)
    pipeline = Pipeline(PipelineConfig(max_rewind=3000))
    pipeline.process([_batch("b", 0, samples[:4000])])
    step = pipeline.process([_batch("b", 0, samples[4000:])])  # the device restarted at seq 0
    assert step.stats.stream_resets == 1
    _assert_same(step.windows, _run(Pipeline(), [_batch("b", 0, samples[4000:])]))


def test_a_device_that_disappears_and_returns_resumes_its_stream() -> None:
    samples = _samples(600, 6)
    pipeline = Pipeline()
    parts = [pipeline.process([_batch("x", 0, samples[:300]), _batch("y", 0, samples)]).windows,
             pipeline.process([_batch("y", 600, samples)]).windows,
             pipeline.process([_batch("x", 300, samples[300:])]).windows]
    _assert_same(_of(_join(parts), "x"), _run(Pipeline(), [_batch("x", 0, samples)]))


def test_replay_equals_streaming_in_64_sample_messages() -> None:
    samples = _samples(2000, 7)
    whole = replay(samples[:, :3], samples[:, 3:], "r")
    _assert_same(replay(samples[:, :3], samples[:, 3:], "r", chunk=64), whole)
    assert whole.data.shape == (window_count(2000), 128, 9) and whole.data.dtype == np.float32


@FAST
@given(heads=st.lists(st.integers(1, 300), min_size=2, max_size=6), k=st.integers(1, 200),
       seed=st.integers(0, 2**16))
def test_devices_at_different_phases_in_one_vectorised_step(heads, k, seed) -> None:
    """Equal-length messages of devices whose streams are at different offsets share one step,
    where some complete several windows and others none."""
    streams = {f"p{i}": _samples(h + k, seed + i) for i, h in enumerate(heads)}
    pipeline = Pipeline()
    first = pipeline.process([_batch(d, 0, x[:len(x) - k]) for d, x in streams.items()]).windows
    second = pipeline.process([_batch(d, len(x) - k, x[len(x) - k:])
                               for d, x in streams.items()]).windows
    both = _join([first, second])
    for device, samples in streams.items():
        _assert_same(_of(both, device), _run(Pipeline(), [_batch(device, 0, samples)]))
