"""Evaluate a served model on recordings exactly as the service would run them.

Every recording is one device's stream: the engine is called once per round with the next
window of every stream still running, state carried from window to window (the service's
batched call). The same windows are also run with the state reset before every window, to
show what the carried state adds. Scores: the 6-class benchmark (windows inside one
basic-activity segment; the argmax over *all* of the model's classes, so a TRANSITION
answer on a basic window counts as an error), plus how the model treats every other window.
"""

from __future__ import annotations

import numpy as np

from har_stream.core.records import ACTIVITIES
from har_stream.serving import StatefulModel
from har_stream.training import dataset
from har_stream.training.metrics import (
    accuracy,
    confusion,
    expected_calibration_error,
    macro_f1,
    precision_recall_f1,
    reliability_bins,
)
from har_stream.training.windows import WindowSet

UNKNOWN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
"""Confidence thresholds below which a consumer could show UNKNOWN (trade-off reported)."""


def stream_probs(model: StatefulModel, windows: WindowSet) -> np.ndarray:
    """Probabilities of every window, each recording run as a stream from a zero state."""
    parts = sorted(windows.recording_slices(), key=lambda p: p.start - p.stop)  # longest first
    lengths = np.array([p.stop - p.start for p in parts])
    starts = np.array([p.start for p in parts])
    probs = np.zeros((len(windows), len(model.classes)), np.float32)
    state = np.zeros((len(parts), model.state_size), np.float32)
    for t in range(int(lengths.max(initial=0))):
        active = int(np.sum(lengths > t))  # streams still running are the first `active`
        rows = starts[:active] + t
        probs[rows], state[:active] = model.predict(windows.data[rows], state[:active])
    return probs


def reset_probs(model: StatefulModel, windows: WindowSet, max_batch: int = 1024) -> np.ndarray:
    """Probabilities with the state reset to zeros before every window."""
    out = []
    for i in range(0, len(windows), max_batch):
        batch = windows.data[i:i + max_batch]
        out.append(model.predict(batch, np.zeros((len(batch), model.state_size), np.float32))[0])
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)), np.float32)


def window_counts(windows: WindowSet) -> dict[str, int]:
    """How many windows the benchmark uses and why the others are left out."""
    benchmark = dataset.benchmark_mask(windows)
    covered = windows.activity > 0
    mostly_transition = ~benchmark & (windows.transition_fraction >= 0.5)
    return {
        "total": len(windows),
        "benchmark": int(benchmark.sum()),
        "excluded": int((~benchmark).sum()),
        "excluded_inside_one_transition": int((covered & ~benchmark).sum()),
        "excluded_mostly_transition": int(mostly_transition.sum()),
        "excluded_touching_unlabelled": int((windows.unlabelled_fraction > 0).sum()),
        "excluded_spanning_two_segments": int(
            (~covered & (windows.unlabelled_fraction == 0)).sum()),
    }


def benchmark_scores(probs: np.ndarray, windows: WindowSet) -> dict[str, float]:
    mask = dataset.benchmark_mask(windows)
    truth = dataset.targets(windows, with_transition=False)[mask]
    predicted = probs[mask].argmax(axis=1)
    return {"accuracy": accuracy(truth, predicted),
            "macro_f1": macro_f1(truth, predicted, len(ACTIVITIES))}


def agreement(served: np.ndarray, reference: np.ndarray, windows: WindowSet
              ) -> dict[str, float | int]:
    """How far the served probabilities are from a reference's (e.g. the float model's) on the
    same windows: share of windows given the same class (all, benchmark) and the largest
    difference of any probability."""
    same = served.argmax(axis=1) == reference.argmax(axis=1)
    benchmark = dataset.benchmark_mask(windows)
    return {
        "windows": len(windows),
        "same_class": float(same.mean()) if len(same) else 1.0,
        "same_class_benchmark": float(same[benchmark].mean()) if benchmark.any() else 1.0,
        "windows_with_another_class": int((~same).sum()),
        "max_probability_difference": float(np.abs(served - reference).max(initial=0.0)),
    }


def compare_models(served: StatefulModel, reference: StatefulModel, windows: WindowSet
                   ) -> dict[str, object]:
    """Both models run as the service runs them (streams, state carried): their benchmark
    scores and their agreement."""
    served_probs, reference_probs = stream_probs(served, windows), stream_probs(reference, windows)
    return {"served": benchmark_scores(served_probs, windows),
            "float": benchmark_scores(reference_probs, windows),
            "agreement": agreement(served_probs, reference_probs, windows)}


def evaluation_report(model: StatefulModel, windows: WindowSet) -> dict[str, object]:
    """Every figure of the model card's evaluation section, for the given (test) windows."""
    stream = stream_probs(model, windows)
    reset = reset_probs(model, windows)
    mask = dataset.benchmark_mask(windows)
    truth = dataset.targets(windows, with_transition=False)[mask]
    predicted = stream[mask].argmax(axis=1)
    square = confusion(truth, predicted, len(model.classes))  # true classes are the first 6
    precision, recall, f1 = precision_recall_f1(square)
    users, experiments = windows.user_id[mask], windows.exp_id[mask]
    return {
        "windows": window_counts(windows),
        "stream": benchmark_scores(stream, windows),
        "reset_every_window": benchmark_scores(reset, windows),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(np.sum(truth == i))}
            for i, name in enumerate(ACTIVITIES)
        },
        "confusion": {"true": list(ACTIVITIES), "predicted": list(model.classes),
                      "matrix": square[:len(ACTIVITIES)].tolist()},
        "per_subject": {
            str(int(u)): accuracy(truth[users == u], predicted[users == u])
            for u in np.unique(users)
        },
        "per_subject_reset": {
            str(int(u)): accuracy(truth[users == u], reset[mask][users == u].argmax(axis=1))
            for u in np.unique(users)
        },
        "per_experiment": {
            str(int(e)): {"user": int(users[experiments == e][0]),
                          "accuracy": accuracy(truth[experiments == e],
                                               predicted[experiments == e]),
                          "windows": int(np.sum(experiments == e))}
            for e in np.unique(experiments)
        },
        "calibration": _calibration(stream[mask], truth),
        "other_windows": _other_windows(model.classes, stream, windows),
    }


def _calibration(probs: np.ndarray, truth: np.ndarray) -> dict[str, object]:
    confidence = probs.max(axis=1)
    return {
        "expected_calibration_error": expected_calibration_error(probs, truth),
        "mean_confidence": float(confidence.mean()) if len(confidence) else 0.0,
        "reliability": reliability_bins(probs, truth),
        "unknown_below": {
            f"{t:.1f}": {"share_unknown": float(np.mean(confidence < t)),
                         "accuracy_of_rest": accuracy(truth[confidence >= t],
                                                      probs[confidence >= t].argmax(axis=1))}
            for t in UNKNOWN_THRESHOLDS
        },
    }


def _other_windows(classes: tuple[str, ...], probs: np.ndarray,
                   windows: WindowSet) -> dict[str, object]:
    """What the model says on windows outside the benchmark: mostly-transition windows and
    the rest (unlabelled stretches, segment boundaries)."""
    benchmark = dataset.benchmark_mask(windows)
    transition = ~benchmark & (windows.transition_fraction >= 0.5)
    rest = ~benchmark & ~transition
    out: dict[str, object] = {}
    for name, mask in (("mostly_transition", transition), ("other", rest),
                       ("benchmark", benchmark)):
        chosen = probs[mask].argmax(axis=1)
        confidence = probs[mask].max(axis=1)
        out[name] = {
            "windows": int(mask.sum()),
            "predicted_share": {c: float(np.mean(chosen == i)) if mask.any() else 0.0
                                for i, c in enumerate(classes)},
            "mean_confidence": float(confidence.mean()) if mask.any() else 0.0,
            "share_below_0.7": float(np.mean(confidence < 0.7)) if mask.any() else 0.0,
        }
    if "TRANSITION" in classes and transition.any():
        index = classes.index("TRANSITION")
        said = probs.argmax(axis=1) == index
        out["transition_class"] = {
            "recall_on_mostly_transition": float(np.mean(said[transition])),
            "precision": float(np.mean(transition[said])) if said.any() else 0.0,
            "false_alarms_on_benchmark": float(np.mean(said[benchmark])),
        }
    return out
