"""What messages held back for reordering cost in device state, and where they go.

Held messages are kept only for devices that hold something (a store attached to the
registry): a device holding nothing has the same state and snapshot size with reordering on
as off; a held message is in its device's snapshot and leaves with the device (eviction,
slot reuse, `shrink` moving slots); a device never holds more than the allowance.
"""

from __future__ import annotations

import numpy as np
import pytest

from har_stream.core.pipeline import Pipeline, PipelineConfig
from har_stream.core.records import SensorBatch, WindowBatch
from har_stream.core.state import StateFormatError

T0 = 1_700_000_000_000


def _samples(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acc = np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0) + [0.0, 0.0, 1.0]
    return np.concatenate([acc, rng.normal(0, 0.5, (n, 3))], axis=1).astype(np.float32)


def _messages(device: str, samples: np.ndarray, size: int = 64) -> list[SensorBatch]:
    return [SensorBatch(device, a, T0 + a * 20, samples[a:a + size], record_ts_ms=10_000 + a)
            for a in range(0, len(samples), size)]


def _reorder(samples: int) -> Pipeline:
    return Pipeline(PipelineConfig(reorder_samples=samples))


def _windows(pipeline: Pipeline, batches: list[SensorBatch]) -> dict[tuple[str, int], bytes]:
    out = {}
    for batch in batches:
        w: WindowBatch = pipeline.process([batch]).windows
        out |= {(d, int(s)): w.data[i].tobytes() for i, (d, s) in enumerate(zip(
            w.device_ids, w.seqs, strict=True))}
    return out


def test_a_device_holding_nothing_has_the_same_state_size_with_reordering_on_and_off() -> None:
    """The reorder buffer used to add 41 bytes per sample of allowance to every device
    (15,432 instead of 4,928 bytes per device at 256, in memory and in every snapshot)."""
    clean = _messages("d", _samples(512, 1))
    off, on = _reorder(0), _reorder(256)
    _windows(off, clean[:3])
    _windows(on, [clean[0], clean[2]])  # clean[2] is held back
    assert len(on.registry.snapshot("d")) > len(off.registry.snapshot("d")) + 64 * 24
    assert on.registry.nbytes() > off.registry.nbytes()
    _windows(on, [clean[1]])  # puts it in order: nothing held any more
    assert on.registry.nbytes_per_device() == off.registry.nbytes_per_device()
    assert on.registry.nbytes() == off.registry.nbytes()
    assert len(on.registry.snapshot("d")) == len(off.registry.snapshot("d"))
    assert on.registry.snapshot("d") == off.registry.snapshot("d")  # the same state


def test_held_messages_are_dropped_when_the_device_is_evicted() -> None:
    """An evicted device's held message neither stays in memory nor reaches the device that
    reuses its slot, nor the device itself when it comes back."""
    pipeline = _reorder(256)
    a, b = _messages("a", _samples(512, 2)), _messages("b", _samples(512, 3))
    _windows(pipeline, [a[0], a[2]])
    assert pipeline.held is not None and pipeline.held.device_ids() == ["a"]
    slot = pipeline.registry.get("a")
    pipeline.registry.remove("a")
    assert len(pipeline.held) == 0 and pipeline.held.nbytes() == 0
    got_b = _windows(pipeline, b[:3])
    assert pipeline.registry.get("b") == slot
    got_a = _windows(pipeline, a[:3])
    steps = [pipeline.process([m]).stats.reordered_messages for m in a[3:] + b[3:]]
    assert steps == [0] * len(steps)
    assert got_b == _windows(_reorder(0), b[:3])
    assert got_a == _windows(_reorder(0), a[:3])


def test_a_held_message_stays_with_its_device_when_shrink_moves_the_slots() -> None:
    pipeline = _reorder(256)
    clean = _messages("keep", _samples(512, 4))
    others = [m for i in range(300) for m in _messages(f"o{i}", _samples(64, i))]
    pipeline.process(others)
    early = _windows(pipeline, [clean[0], clean[2]])
    before = pipeline.registry.get("keep")
    for i in range(300):
        pipeline.registry.remove(f"o{i}")
    assert pipeline.registry.shrink() and pipeline.registry.get("keep") != before
    got = early | _windows(pipeline, [clean[1], *clean[3:]])
    assert got == _windows(_reorder(0), clean)


def test_a_device_never_holds_more_than_the_allowance() -> None:
    """Hostile input: many overlapping messages ahead of a gap that never closes."""
    pipeline = _reorder(64)
    samples = _samples(3000, 5)
    pipeline.process([SensorBatch("h", 0, T0, samples[:64])])
    rng = np.random.default_rng(6)
    held = 0
    for _ in range(300):
        start = int(rng.integers(65, 120))
        size = int(rng.integers(1, 64 + 64 - start + 1))
        pipeline.process([SensorBatch("h", start, T0 + start * 20,
                                      samples[start:start + size])])
        assert pipeline.held is not None
        held = max(held, pipeline.held.of("h").count)
        assert pipeline.held.nbytes() <= 64 * 6 * 4
    assert 0 < held <= 64


def test_held_messages_survive_a_snapshot_only_into_the_same_allowance() -> None:
    clean = _messages("s", _samples(512, 7))
    first = _reorder(256)
    _windows(first, [clean[0], clean[2]])
    snapshot = first.registry.snapshot("s")
    for other in (_reorder(0), _reorder(128)):
        with pytest.raises(StateFormatError):
            other.registry.restore("s", snapshot)
        assert "s" not in other.registry
    for cut in (1, 100, 64 * 24 + 50):  # into the held samples, into the fields
        with pytest.raises(StateFormatError):
            _reorder(256).registry.restore("s", snapshot[:-cut])
    second = _reorder(256)
    second.registry.restore("s", snapshot)
    assert second.registry.snapshot("s") == snapshot
    nothing_held = _reorder(256)
    _windows(nothing_held, clean[:1])  # a snapshot without held messages: any allowance
    _reorder(0).registry.restore("s", nothing_held.registry.snapshot("s"))


def test_several_overlapping_held_messages_round_trip_through_a_snapshot() -> None:
    """Held pieces cut by later copies keep their samples' times and broker timestamps."""
    samples = _samples(768, 8)
    clean = _messages("m", samples)
    overlap = SensorBatch("m", 160, T0 + 160 * 20, samples[160:224], record_ts_ms=99)
    first = _reorder(256)
    early = _windows(first, [clean[0], clean[3], clean[2], overlap])
    assert first.held is not None and len(first.held.of("m").pieces) == 3
    second = _reorder(256)
    second.registry.restore("m", first.registry.snapshot("m"))
    assert second.registry.snapshot("m") == first.registry.snapshot("m")
    want_pipeline = _reorder(256)
    want = _windows(want_pipeline, [clean[0], clean[3], clean[2], overlap, *clean[1:2],
                                    *clean[4:]])
    got = early | _windows(second, [*clean[1:2], *clean[4:]])
    assert got == want
    assert got.keys() == _windows(_reorder(0), clean).keys()
