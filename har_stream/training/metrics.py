"""Classification metrics in plain numpy (no scikit-learn needed at evaluation time)."""

from __future__ import annotations

import numpy as np


def confusion(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts `[true class, predicted class]`."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def precision_recall_f1(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix (0 where undefined)."""
    hits = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return precision, recall, f1


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(truth) == np.asarray(predicted))) if len(truth) else 0.0


def macro_f1(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the true classes 0..n_classes-1 (predictions may use more classes)."""
    n = int(max(n_classes, np.max(truth, initial=0) + 1, np.max(predicted, initial=0) + 1))
    _, _, f1 = precision_recall_f1(confusion(truth, predicted, n))
    return float(f1[:n_classes].mean())


def reliability_bins(probs: np.ndarray, truth: np.ndarray, bins: int = 15
                     ) -> list[dict[str, float]]:
    """Per equal-width confidence bin holding windows: its range, share of windows, mean
    confidence and accuracy (the reliability diagram; ECE is their weighted gap)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [{"lower": float(edges[b]), "upper": float(edges[b + 1]),
             "share": float(np.mean(which == b)),
             "confidence": float(confidence[which == b].mean()),
             "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if np.any(which == b)]


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """Gap between confidence and accuracy, averaged over equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def fit_temperature(log_probs: np.ndarray, targets: np.ndarray) -> float:
    """The T in [0.25, 8] minimising the negative log-likelihood of softmax(log p / T)."""
    best, best_nll = 1.0, np.inf
    for temperature in np.exp(np.linspace(np.log(0.25), np.log(8.0), 141)):
        z = log_probs / temperature
        z -= z.max(axis=1, keepdims=True)
        nll = -np.mean(z[np.arange(len(z)), targets] - np.log(np.exp(z).sum(axis=1)))
        if nll < best_nll:
            best, best_nll = float(temperature), nll
    return best


def fit_temperature_ece(log_probs: np.ndarray, targets: np.ndarray) -> float:
    """The T in [0.25, 8] minimising the expected calibration error of softmax(log p / T)
    (ties: the T closest to 1)."""
    best, best_ece = 1.0, np.inf
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 141))
    for temperature in sorted(grid, key=lambda t: abs(np.log(t))):
        z = log_probs / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        ece = expected_calibration_error(z / z.sum(axis=1, keepdims=True), targets)
        if ece < best_ece - 1e-9:
            best, best_ece = float(temperature), ece
    return best
