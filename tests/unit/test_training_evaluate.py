"""Metrics, stream evaluation with carried state, and the model card files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from har_stream.core.records import ACTIVITIES
from har_stream.serving import StatefulModel
from har_stream.training import card as cards
from har_stream.training.evaluate import evaluation_report, reset_probs, stream_probs
from har_stream.training.metrics import (
    accuracy,
    confusion,
    expected_calibration_error,
    macro_f1,
    precision_recall_f1,
)
from har_stream.training.windows import WindowSet


def test_confusion_precision_recall_f1_by_hand():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    matrix = confusion(truth, predicted, 3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    precision, recall, f1 = precision_recall_f1(matrix)
    np.testing.assert_allclose(precision, [1, 0.5, 0.5])
    np.testing.assert_allclose(recall, [2 / 3, 0.5, 1])
    np.testing.assert_allclose(f1, [0.8, 0.5, 2 / 3])
    assert accuracy(truth, predicted) == pytest.approx(4 / 6)
    assert macro_f1(truth, predicted, 3) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_calibration_error_is_zero_when_confidence_equals_accuracy():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


class CountingModel:
    """State counts the windows a stream has seen; the class is that count modulo 6."""

    classes = ACTIVITIES
    state_size = 2
    version = "counting"

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.batch_sizes.append(len(windows))
        state = state + np.array([1.0, 0.0], np.float32)
        state[:, 1] = windows[:, 0, 0]  # remembers which window it saw last
        probs = np.eye(6, dtype=np.float32)[(state[:, 0].astype(int) - 1) % 6]
        return probs, state


def window_set(lengths: list[int], activity: int = 1) -> WindowSet:
    n = sum(lengths)
    exp = np.repeat(np.arange(1, len(lengths) + 1), lengths).astype(np.int32)
    data = np.zeros((n, 128, 9), np.float32)
    data[:, 0, 0] = np.arange(n)
    return WindowSet(data, np.zeros(n, np.int64), exp, exp.copy(),
                     np.full(n, activity, np.int64), np.zeros(n, np.float32),
                     np.zeros(n, np.float32))


def test_streams_carry_state_per_recording_in_one_batch_per_round():
    model = CountingModel()
    assert isinstance(model, StatefulModel)
    windows = window_set([3, 5, 1])
    probs = stream_probs(model, windows)
    position = np.concatenate([np.arange(3), np.arange(5), np.arange(1)])
    np.testing.assert_array_equal(probs.argmax(axis=1), position % 6)
    assert model.batch_sizes == [3, 2, 2, 1, 1]  # all streams per round, longest first
    np.testing.assert_array_equal(reset_probs(model, windows).argmax(axis=1), np.zeros(9))


def test_report_counts_windows_and_scores_the_benchmark(tmp_path: Path):
    windows = window_set([4, 4], activity=1)  # all WALKING: counting model is right at 0, 6..
    windows.activity[[3, 7]] = 0  # excluded
    windows.unlabelled_fraction[[3, 7]] = 0.5
    report = evaluation_report(CountingModel(), windows)
    assert report["windows"]["benchmark"] == 6 and report["windows"]["excluded"] == 2
    assert report["windows"]["excluded_touching_unlabelled"] == 2
    assert report["stream"]["accuracy"] == pytest.approx(2 / 6)
    assert report["reset_every_window"]["accuracy"] == pytest.approx(1.0)
    assert report["per_subject"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(1 / 3)}
    assert sum(map(sum, report["confusion"]["matrix"])) == 6

    card = {"name": "t", "version": "t-1", "classes": list(ACTIVITIES), "state_size": 2,
            "training": {"seed": 0}, "evaluation": report}
    cards.write_card(tmp_path, card)
    assert json.loads((tmp_path / "card.json").read_text())["evaluation"]["stream"] == \
        report["stream"]
    for name in ("card.md", "confusion.png", "per_subject.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "33.33%" in (tmp_path / "card.md").read_text()


def test_agreement_counts_windows_given_another_class_and_the_largest_difference():
    from har_stream.training.evaluate import agreement

    windows = window_set([4], activity=1)
    windows.activity[3] = 0  # outside the benchmark
    reference = np.eye(6, dtype=np.float32)[[0, 1, 2, 3]]
    served = reference.copy()
    served[1] = [0.1, 0.6, 0.3, 0, 0, 0]  # same class, probabilities moved by 0.4
    served[3] = [0, 0, 0, 0.45, 0.55, 0]  # another class, outside the benchmark
    got = agreement(served, reference, windows)
    assert got["windows"] == 4 and got["windows_with_another_class"] == 1
    assert got["same_class"] == pytest.approx(0.75) and got["same_class_benchmark"] == 1.0
    assert got["max_probability_difference"] == pytest.approx(0.55)


def test_a_precision_that_loses_more_than_allowed_on_validation_is_refused():
    from har_stream.training.serving import PrecisionRejected, check_drop

    comparison = {"served": {"accuracy": 0.970, "macro_f1": 0.969},
                  "float": {"accuracy": 0.974, "macro_f1": 0.976}}
    check_drop(comparison, "int8", max_drop=0.01)
    with pytest.raises(PrecisionRejected, match=r"loses 0\.0070 macro_f1 .*0\.9690 against "
                                                 r"float 0\.9760"):
        check_drop(comparison, "int8", max_drop=0.005)
