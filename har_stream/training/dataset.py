"""Subject-wise splits, standardisation statistics and training sequences (numpy only).

Protocol: the data set's test users are held out entirely and used once, for the final
report. A fixed, seeded subset of the *training* users is the validation split on which
every choice (epochs via early stopping, architecture, sizes, class scheme) is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from har_stream.training.labels import WindowLabels, class_targets
from har_stream.training.windows import WindowSet

VALIDATION_SEED = 20240603
"""Fixed so that the validation users do not change with the model seed."""


@dataclass(frozen=True, slots=True)
class Split:
    train: tuple[int, ...]
    validation: tuple[int, ...]
    test: tuple[int, ...]


def split_users(users: Iterable[int], test_users: Iterable[int], n_validation: int = 5,
                seed: int = VALIDATION_SEED) -> Split:
    """Test users as given; `n_validation` of the remaining users, drawn with `seed`."""
    test = tuple(sorted(set(test_users)))
    pool = sorted(set(users) - set(test))
    if n_validation >= len(pool):
        raise ValueError(f"only {len(pool)} training users: cannot hold out {n_validation}")
    chosen = np.random.default_rng(seed).choice(pool, size=n_validation, replace=False)
    validation = tuple(sorted(int(u) for u in chosen))
    return Split(tuple(u for u in pool if u not in validation), validation, test)


def standardisation(windows: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over every sample of the given (training) windows."""
    flat = windows.data.reshape(-1, windows.data.shape[-1]).astype(np.float64)
    return flat.mean(axis=0).astype(np.float32), np.maximum(flat.std(axis=0), 1e-6).astype(
        np.float32)


def targets(windows: WindowSet, with_transition: bool) -> np.ndarray:
    """Class index per window, -1 for windows that are not a training target."""
    labels = WindowLabels(windows.activity, windows.transition_fraction,
                          windows.unlabelled_fraction)
    return class_targets(labels, with_transition)


def benchmark_mask(windows: WindowSet) -> np.ndarray:
    """Windows of the 6-class benchmark: inside one basic-activity segment."""
    return np.isin(windows.activity, (1, 2, 3, 4, 5, 6))


def sequence_crops(windows: WindowSet, length: int, rng: np.random.Generator) -> np.ndarray:
    """Start indices (into `windows`) of crops of `length` consecutive windows of a recording.

    Every recording contributes its first crop (state starts at the true stream start) and
    then back-to-back crops from a random offset, so an epoch sees each window about once
    and the crop boundaries move from epoch to epoch.
    """
    starts = []
    for part in windows.recording_slices():
        n = part.stop - part.start
        if n < length:
            continue
        offset = int(rng.integers(0, length))
        local = np.unique(np.concatenate([[0], np.arange(offset, n - length + 1, length)]))
        starts.append(part.start + local)
    return np.concatenate(starts) if starts else np.zeros(0, np.int64)


def padded_streams(windows: WindowSet) -> tuple[np.ndarray, list[slice]]:
    """Every recording as one zero-padded sequence: `[R, longest, 128, 9]` and the slices."""
    parts = windows.recording_slices()
    longest = max((p.stop - p.start for p in parts), default=0)
    out = np.zeros((len(parts), longest, *windows.data.shape[1:]), np.float32)
    for row, part in enumerate(parts):
        out[row, :part.stop - part.start] = windows.data[part]
    return out, parts
