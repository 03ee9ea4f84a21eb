"""Recognizer: state carried per device across windows and polls, rounds, counts."""

from __future__ import annotations

import numpy as np

from har_stream.core.recognizer import HOP_SECONDS, Recognizer, _rank_within
from har_stream.core.records import SensorBatch


class EchoModel:
    """A stateful fake: state accumulates window means, the class depends on the state."""

    classes = ("LOW", "MID", "HIGH")
    state_size = 2
    version = "echo-1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(len(windows))
        new = np.stack([state[:, 0] * 0.5 + windows.mean(axis=(1, 2)), state[:, 1] + 1], axis=1)
        logits = np.stack([-new[:, 1], np.zeros(len(new)), new[:, 1] - 2.5], axis=1)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return probs.astype(np.float32), new.astype(np.float32)


def _stream(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (n, 6)).astype(np.float32)


def _feed(rec: Recognizer, device: str, x: np.ndarray, chunk: int):
    results, counts = [], []
    for a in range(0, len(x), chunk):
        out = rec.process([SensorBatch(device, a, a * 20, x[a:a + chunk])])
        results += out.results
        counts += out.counts
    return results, counts


def test_results_do_not_depend_on_message_size() -> None:
    x = _stream(1500, 0)
    small, _ = _feed(Recognizer(EchoModel()), "d", x, 64)
    large, _ = _feed(Recognizer(EchoModel()), "d", x, 500)
    assert len(small) == len(large) == 22
    assert small == large


def test_state_is_carried_and_several_windows_of_a_device_take_rounds() -> None:
    model = EchoModel()
    rec = Recognizer(model)
    out = rec.process([SensorBatch("d", 0, 0, _stream(128 + 64 * 3, 1)),
                       SensorBatch("e", 0, 0, _stream(128, 2))])
    assert out.rounds == 4 and model.calls == [2, 1, 1, 1]
    # The window counter in the state grows 1, 2, 3, 4 for d: so do the classes' logits.
    assert [r.activity for r in out.results if r.device_id == "d"] == ["MID", "MID", "HIGH",
                                                                       "HIGH"]
    assert [r.seq for r in out.results if r.device_id == "d"] == [0, 64, 128, 192]


def test_state_restarts_with_the_stream_after_a_large_gap() -> None:
    rec = Recognizer(EchoModel())
    x = _stream(400, 3)
    rec.process([SensorBatch("d", 0, 0, x)])
    out = rec.process([SensorBatch("d", 10_000, 200_000, x)])
    fresh, _ = _feed(Recognizer(EchoModel()), "d", x, 400)
    assert [r.probabilities for r in out.results] == [r.probabilities for r in fresh]


def test_snapshot_and_restore_continue_exactly() -> None:
    x = _stream(2000, 4)
    uninterrupted, _ = _feed(Recognizer(EchoModel()), "d", x, 64)
    first = Recognizer(EchoModel())
    part1, _ = _feed(first, "d", x[:1000], 64)
    second = Recognizer(EchoModel())
    second.registry.restore("d", first.registry.snapshot("d"))
    part2 = []
    for a in range(1000, 2000, 64):
        part2 += second.process([SensorBatch("d", a, a * 20, x[a:a + 64])]).results
    assert part1 + part2 == uninterrupted


def test_counts_tally_the_results() -> None:
    results, counts = _feed(Recognizer(EchoModel()), "d", _stream(3000, 5), 250)
    final = counts[-1]
    tally = {c: sum(r.activity == c for r in results) for c in EchoModel.classes}
    assert final.windows == tally
    assert final.seconds == {c: round(n * HOP_SECONDS, 2) for c, n in tally.items()}
    assert final.since_ms == results[0].t_start_ms and final.last_seq == results[-1].seq
    assert final.updated_ms == results[-1].t_end_ms


def test_rank_within_groups() -> None:
    assert _rank_within(np.array([5, 3, 5, 5, 3, 9])).tolist() == [0, 0, 1, 2, 1, 0]
