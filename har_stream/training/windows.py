"""Labelled windows made by replaying recordings through the service's own pipeline.

Training, evaluation and serving share one preprocessing code path: each recording is fed
to `har_stream.core.pipeline.replay` (the streaming signal filters and windower the service runs),
and the windows that come out are labelled by sample index. No filtering happens here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from har_stream.core.records import CHANNELS, WINDOW, WindowBatch
from har_stream.training.hapt import Recording
from har_stream.training.labels import label_windows

Replay = Callable[[np.ndarray, np.ndarray, str], WindowBatch]
"""`(acc[n,3], gyro[n,3], device_id) -> WindowBatch`, like `har_stream.core.pipeline.replay`."""


@dataclass(frozen=True, slots=True, eq=False)
class WindowSet:
    """Windows of several recordings, each recording's windows contiguous and in stream order."""

    data: np.ndarray  # float32 (N, WINDOW, 9), pipeline output, not standardised
    seqs: np.ndarray  # int64 (N,) first sample of the window within its recording
    exp_id: np.ndarray  # int32 (N,)
    user_id: np.ndarray  # int32 (N,)
    activity: np.ndarray  # int64 (N,) HAPT activity id covering the whole window, else 0
    transition_fraction: np.ndarray  # float32 (N,)
    unlabelled_fraction: np.ndarray  # float32 (N,)

    def __len__(self) -> int:
        return len(self.seqs)

    def take(self, mask_or_index: np.ndarray) -> WindowSet:
        return WindowSet(*(getattr(self, f)[mask_or_index] for f in WindowSet.__slots__))

    def of_users(self, users: Iterable[int]) -> WindowSet:
        return self.take(np.isin(self.user_id, list(users)))

    def recording_slices(self) -> list[slice]:
        """One slice per recording (windows of a recording are contiguous)."""
        change = np.flatnonzero(np.diff(self.exp_id)) + 1
        bounds = np.concatenate([[0], change, [len(self)]])
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]

    @staticmethod
    def concatenate(parts: Sequence[WindowSet]) -> WindowSet:
        if not parts:  # e.g. no validation users
            return WindowSet(np.zeros((0, WINDOW, len(CHANNELS)), np.float32),
                             *(np.zeros(0, dtype) for dtype in (
                                 np.int64, np.int32, np.int32, np.int64, np.float32,
                                 np.float32)))
        return WindowSet(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in WindowSet.__slots__))


def default_replay() -> Replay:
    from har_stream.core.pipeline import replay

    return replay


def device_id_of(recording: Recording) -> str:
    return f"hapt-exp{recording.exp_id:02d}-user{recording.user_id:02d}"


def make_windows(recordings: Sequence[Recording], replay: Replay | None = None,
                 progress: bool = False) -> WindowSet:
    """Replay every recording through the serving pipeline and label the windows."""
    replay = replay or default_replay()
    items: Iterable[Recording] = recordings
    if progress:
        from tqdm import tqdm

        items = tqdm(recordings, desc="replaying recordings", unit="rec", leave=False)
    parts = []
    for recording in items:
        batch = replay(recording.acc, recording.gyro, device_id_of(recording))
        seqs = np.asarray(batch.seqs, np.int64)
        labels = label_windows(recording.segments, len(recording), seqs)
        n = len(seqs)
        parts.append(WindowSet(
            np.asarray(batch.data, np.float32), seqs,
            np.full(n, recording.exp_id, np.int32), np.full(n, recording.user_id, np.int32),
            labels.activity, labels.transition_fraction, labels.unlabelled_fraction,
        ))
    return WindowSet.concatenate(parts)
