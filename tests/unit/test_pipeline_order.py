"""How time runs within a device's stream, and reordered messages put back in order.

Window times come from the stream's first message (its `t0_ms`) plus 20 ms per sample, never
from later messages' clocks; out-of-order messages within the reorder allowance give exactly
the windows of the in-order stream; beyond it, the gap is handled as a gap (filled or a
restart) and the late samples are dropped and counted.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from har_stream.core.pipeline import Pipeline, PipelineConfig
from har_stream.core.records import SensorBatch, WindowBatch

FAST = settings(max_examples=40, deadline=None)
T0 = 1_700_000_000_000


def _samples(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acc = np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0) + [0.0, 0.0, 1.0]
    return np.concatenate([acc, rng.normal(0, 0.5, (n, 3))], axis=1).astype(np.float32)


def _messages(device: str, samples: np.ndarray, size: int, seq0: int = 0) -> list[SensorBatch]:
    return [SensorBatch(device, seq0 + a, T0 + (seq0 + a) * 20, samples[a:a + size],
                        record_ts_ms=10_000 + a)
            for a in range(0, len(samples), size)]


def _run(pipeline: Pipeline, batches: list[SensorBatch], per_step: int = 1) -> WindowBatch:
    parts = [pipeline.process(batches[i:i + per_step]).windows
             for i in range(0, len(batches), per_step)]
    parts = [p for p in parts if len(p)] or [WindowBatch.empty()]
    return WindowBatch(
        [d for p in parts for d in p.device_ids],
        *(np.concatenate([getattr(p, f) for p in parts])
          for f in ("seqs", "t_start_ms", "t_end_ms", "record_ts_ms", "fresh", "data")))


def _by_window(windows: WindowBatch) -> dict[tuple[str, int], tuple]:
    return {(d, int(s)): (int(t0), int(t1), int(ts), bool(f), windows.data[i].tobytes())
            for i, (d, s, t0, t1, ts, f) in enumerate(zip(
                windows.device_ids, windows.seqs, windows.t_start_ms, windows.t_end_ms,
                windows.record_ts_ms, windows.fresh, strict=True))}


def _reorder(samples: int) -> Pipeline:
    return Pipeline(PipelineConfig(reorder_samples=samples))


# --- time -------------------------------------------------------------------------------------


def test_window_times_run_from_the_streams_first_time_at_20_ms_per_sample() -> None:
    """A later message whose clock contradicts its seq does not move the stream's times
    (it used to give t_start_ms -1280)."""
    samples = _samples(256, 1)
    batches = [SensorBatch("c", 0, 1000, samples[:64]), SensorBatch("c", 64, 0, samples[64:128]),
               SensorBatch("c", 128, 10**12, samples[128:])]
    for per_step in (1, 3):
        windows = _run(Pipeline(), batches, per_step)
        assert list(windows.seqs) == [0, 64, 128]
        assert list(windows.t_start_ms) == [1000, 2280, 3560]
        assert list(windows.t_end_ms - windows.t_start_ms) == [2540] * 3


def test_a_restarted_stream_takes_the_time_of_its_first_message() -> None:
    samples = _samples(300, 2)
    pipeline = Pipeline()
    pipeline.process([SensorBatch("r", 0, 5_000, samples[:150])])
    step = pipeline.process([SensorBatch("r", 9000, 7, samples[150:])])
    assert step.stats.stream_resets == 1
    assert list(step.windows.seqs) == [9000]
    assert list(step.windows.t_start_ms) == [7]


# --- reordering within the allowance ----------------------------------------------------------


@FAST
@given(n=st.integers(300, 900), size=st.integers(1, 128), at=st.integers(0, 50),
       per_step=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_two_swapped_adjacent_messages_give_the_in_order_windows(n, size, at, per_step,
                                                                 seed) -> None:
    samples = _samples(n, seed)
    clean = _messages("s", samples, size)
    at = 1 + at % (len(clean) - 2)  # a device's first message starts its stream: not moved
    swapped = [*clean[:at], clean[at + 1], clean[at], *clean[at + 2:]]
    other = _messages("o", _samples(n, seed + 1), 64)  # another device, interleaved
    mixed = [m for pair in zip(swapped, other, strict=False) for m in pair]
    mixed += swapped[len(other):] + other[len(swapped):]
    want = _by_window(_run(_reorder(0), clean + other))
    pipeline = _reorder(256)
    got = _by_window(_run(pipeline, mixed, per_step))
    assert got == want


@FAST
@given(n=st.integers(400, 900), size=st.integers(8, 64), displacement=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_messages_displaced_within_the_allowance_give_the_in_order_windows(
        n, size, displacement, seed) -> None:
    """Messages held back by up to `displacement` places (several requests in flight): every
    message arrives before the stream is 256 samples past it."""
    samples = _samples(n, seed)
    clean = _messages("m", samples, size)
    rng = np.random.default_rng(seed)
    keys = np.arange(len(clean)) + rng.uniform(0, displacement + 1, len(clean))
    keys[0] = -1  # a device's first message starts its stream: not moved
    order = np.argsort(keys)
    got = _run(_reorder(256), [clean[i] for i in order])
    assert _by_window(got) == _by_window(_run(_reorder(0), clean))


def test_reordered_messages_are_counted() -> None:
    samples = _samples(256, 3)
    a, b, c, d = _messages("k", samples, 64)
    pipeline = _reorder(256)
    steps = [pipeline.process([m]) for m in (a, c, b, d)]
    assert [s.stats.reordered_messages for s in steps] == [0, 0, 1, 0]
    assert sum(s.stats.stream_resets + s.stats.gap_samples_filled + s.stats.late_samples
               for s in steps) == 0


@FAST
@given(n=st.integers(450, 800), at=st.integers(1, 199), gap=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_a_small_gap_is_filled_once_the_allowance_has_passed(n, at, gap, seed) -> None:
    """A lost sample is held for at most the allowance, then filled as without reordering."""
    samples = _samples(n, seed)
    batches = [SensorBatch("g", 0, T0, samples[:at])] + [
        SensorBatch("g", a + gap, T0 + (a + gap) * 20, samples[a:a + 32])
        for a in range(at, n, 32)]
    want = _run(_reorder(0), batches)
    got = _run(_reorder(256), batches)
    assert len(want) - len(got) <= 256 // 64 + 1
    assert _by_window(got).items() <= _by_window(want).items()
    assert len(got) > 0 or at + 256 + 128 > n


def test_the_reorder_buffer_survives_snapshot_and_restore() -> None:
    """Held samples are device state: a snapshot taken while a message waits for its
    predecessor restores them, so recovery gives the in-order windows."""
    samples = _samples(512, 4)
    clean = _messages("h", samples, 64)
    first = _reorder(256)
    early = _run(first, [clean[0], clean[2]])
    snapshot = first.registry.snapshot("h")
    second = _reorder(256)
    second.registry.restore("h", snapshot)
    late = _run(second, [clean[1], *clean[3:]])
    got = _by_window(early) | _by_window(late)
    assert got == _by_window(_run(_reorder(0), clean))


# --- beyond the allowance ---------------------------------------------------------------------


def test_a_swap_beyond_the_allowance_restarts_at_the_gap_and_drops_the_late_samples() -> None:
    samples = _samples(640, 5)
    clean = _messages("b", samples, 64)
    swapped = [*clean[:4], clean[5], clean[4], *clean[6:]]
    for allowance in (0, 64):  # 0: reordering off; 64: the pair does not fit
        pipeline = _reorder(allowance)
        steps = [pipeline.process([m]) for m in swapped]
        assert sum(s.stats.stream_resets for s in steps) == 1
        assert sum(s.stats.late_samples for s in steps) == 64
        assert sum(s.stats.duplicate_samples for s in steps) == 0
        assert sum(s.stats.reordered_messages for s in steps) == 0
        got = _by_window(_join_steps(steps))
        before = _by_window(_run(_reorder(0), clean[:4]))
        after = _by_window(_run(_reorder(0), [SensorBatch(
            "b", 320, T0 + 320 * 20, samples[320:], 0)]))
        assert {k: v[:2] + v[3:] for k, v in got.items()} == (
            {k: v[:2] + v[3:] for k, v in (before | after).items()})


def test_held_messages_are_released_in_order_when_the_allowance_runs_out() -> None:
    """A lost message: the next ones wait, then the stream restarts at the first of them, as
    it would have without reordering, only later."""
    samples = _samples(1024, 6)
    clean = _messages("l", samples, 64)
    lossy = clean[:2] + clean[3:]  # seq 128..191 never arrives
    want = _run(_reorder(0), lossy)
    pipeline = _reorder(256)
    steps = [pipeline.process([m]) for m in lossy]
    got = _join_steps(steps)
    assert _by_window(got) == _by_window(want)
    assert sum(s.stats.stream_resets for s in steps) == 1
    assert [len(s.windows) for s in steps[2:5]] == [0, 0, 0]  # held: 3 x 64 samples


def test_a_device_restart_far_back_is_not_held() -> None:
    samples = _samples(5000, 7)
    pipeline = _reorder(256)
    pipeline.process([SensorBatch("z", 0, T0, samples[:4000])])
    step = pipeline.process([SensorBatch("z", 0, T0, samples[4000:])])
    assert step.stats.stream_resets == 1 and len(step.windows) == 14


def _join_steps(steps: list) -> WindowBatch:
    parts = [s.windows for s in steps if len(s.windows)] or [WindowBatch.empty()]
    return WindowBatch(
        [d for p in parts for d in p.device_ids],
        *(np.concatenate([getattr(p, f) for p in parts])
          for f in ("seqs", "t_start_ms", "t_end_ms", "record_ts_ms", "fresh", "data")))
