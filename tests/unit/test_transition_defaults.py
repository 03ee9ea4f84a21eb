"""The smoothing-defaults sweep on a small synthetic model pass (no model, no data set)."""

from __future__ import annotations

import numpy as np

from har_stream.core.transitions import SmoothingSettings
from har_stream.training.transition_defaults import CONFIDENCES, HOLDS, evaluate, sweep

CLASSES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING",
           "TRANSITION")


def cached_pass() -> dict[str, np.ndarray]:
    """One recording: 20 windows of SITTING (the first confident, one a blip of WALKING), then
    20 of WALKING; the truth is two basic segments, SITTING then WALKING."""
    predicted = [3] * 20 + [0] * 20
    predicted[8] = 0  # a one-window blip
    probs = np.full((40, len(CLASSES)), 0.01, np.float32)
    probs[np.arange(40), predicted] = 0.85
    probs[0, 3] = 0.95  # a confident first window
    seqs = np.arange(40) * 64
    truth = np.array([4] * 19 + [0] * 2 + [1] * 19)  # HAPT ids: 4 SITTING, 1 WALKING
    segments = np.array([[1, 4, 0, 19 * 64 + 127], [1, 1, 21 * 64, 40 * 64 + 64]])
    return {"probs": probs, "seqs": seqs, "exp_id": np.ones(40, np.int32),
            "user_id": np.ones(40, np.int32), "activity": truth, "classes": np.array(CLASSES),
            "segments": segments, "train_users": np.array([1]), "test_users": np.array([1])}


def test_figures_of_raw_and_smoothed_streams() -> None:
    cached = cached_pass()
    raw = evaluate(cached, cached["train_users"], SmoothingSettings(1, 1.01, passing=()))
    assert (raw["raw_changes"], raw["changes"], raw["raw_one_window_blips"]) == (3, 3, 1)
    smoothed = evaluate(cached, cached["train_users"], SmoothingSettings(2, 0.9))
    assert smoothed["changes"] == 1 and smoothed["mean_added_delay_windows"] == 1.0
    assert (smoothed["true_changes"], smoothed["caught"]) == (1, 1)
    assert smoothed["accuracy"] > raw["raw_accuracy"]  # the blip is gone


def test_the_sweep_covers_the_grid_and_applies_its_rule() -> None:
    chosen, rows = sweep(cached_pass())
    assert len(rows) == len(HOLDS) * len(CONFIDENCES)
    best = max(r["accuracy"] for r in rows)
    tied = [r for r in rows if r["accuracy"] >= best - 0.001]
    pick = min(tied, key=lambda r: (r["short_per_hour"], r["mean_added_delay_windows"]))
    assert (chosen.hold_windows, chosen.enter_confidence) == (pick["hold_windows"],
                                                              pick["enter_confidence"])
    assert chosen.hold_windows >= 2  # the blip costs accuracy unless smoothed
