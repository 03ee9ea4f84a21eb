"""Window labels from a recording's labelled segments, by sample index.

A window covers samples `seq .. seq + WINDOW - 1`. Its activity is the one whose segment
covers all of those samples; a window touching an unlabelled sample or two segments has no
activity (0) and is left out of the 6-class benchmark. Such windows still exist at serving
time, so a model may learn a class for the ones made mostly of postural transitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from har_stream.core.records import WINDOW
from har_stream.training.hapt import BASIC_ACTIVITY_IDS

TRANSITION_IDS = (7, 8, 9, 10, 11, 12)
"""HAPT ids of the postural transitions (stand-to-sit, ...)."""


@dataclass(frozen=True, slots=True, eq=False)
class WindowLabels:
    """Per-window label facts; row `i` describes the window starting at sample `seqs[i]`."""

    activity: np.ndarray  # int64 (N,): HAPT id of the segment covering the whole window, else 0
    transition_fraction: np.ndarray  # float32 (N,): share of samples inside transition segments
    unlabelled_fraction: np.ndarray  # float32 (N,): share of samples outside every segment


def sample_segments(segments: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: index of the segment holding it (-1 if none) and its activity id (0 if none)."""
    segment_of = np.full(n_samples, -1, np.int64)
    activity_of = np.zeros(n_samples, np.int64)
    for i, (activity, start, stop) in enumerate(segments):
        segment_of[start:stop] = i
        activity_of[start:stop] = activity
    return segment_of, activity_of


def label_windows(segments: np.ndarray, n_samples: int, seqs: np.ndarray,
                  window: int = WINDOW) -> WindowLabels:
    """Label the windows starting at `seqs` of a recording of `n_samples` with `segments`."""
    seqs = np.asarray(seqs, np.int64)
    if len(seqs) and (seqs.min() < 0 or seqs.max() + window > n_samples):
        raise ValueError("a window reaches outside its recording")
    segment_of, activity_of = sample_segments(segments, n_samples)
    first, last = segment_of[seqs], segment_of[seqs + window - 1]
    # segments are contiguous intervals: same segment at both ends means it covers the window
    covered = (first == last) & (first >= 0)
    activity = np.where(covered, activity_of[seqs], 0)
    is_transition = np.isin(activity_of, TRANSITION_IDS).astype(np.float64)
    is_unlabelled = (segment_of < 0).astype(np.float64)
    return WindowLabels(activity, _window_mean(is_transition, seqs, window),
                        _window_mean(is_unlabelled, seqs, window))


def _window_mean(per_sample: np.ndarray, seqs: np.ndarray, window: int) -> np.ndarray:
    cumulative = np.concatenate([[0.0], np.cumsum(per_sample)])
    return ((cumulative[seqs + window] - cumulative[seqs]) / window).astype(np.float32)


def class_targets(labels: WindowLabels, with_transition: bool,
                  min_transition: float = 0.5) -> np.ndarray:
    """Class index per window for the given class scheme, -1 where the window is not a target.

    Classes 0..5 are the basic activities in HAPT order; with `with_transition`, class 6 is
    TRANSITION: windows not inside one basic segment whose samples are at least
    `min_transition` postural transition.
    """
    targets = np.full(len(labels.activity), -1, np.int64)
    for index, activity_id in enumerate(BASIC_ACTIVITY_IDS):
        targets[labels.activity == activity_id] = index
    if with_transition:
        targets[(targets < 0) & (labels.transition_fraction >= min_transition)] = len(
            BASIC_ACTIVITY_IDS)
    return targets
