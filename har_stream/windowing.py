"""Ring buffers that cut each device's filtered stream into 128-sample windows every 64 samples.

A device's buffer holds its last `WINDOW` filtered samples; `n` counts the samples of its
current stream. Windows start at stream indices 0, 64, 128, ... and a window is emitted
as soon as its last sample arrives, so the windows of a stream do not depend on how its
samples were split into messages. Everything is vectorised over devices that received
the same number of new samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from har_stream.records import HOP, WINDOW

_OFFSETS = np.arange(WINDOW)


@dataclass(frozen=True, slots=True)
class Emitted:
    """Windows cut from one chunk: `rows` index the chunk's devices, `starts` are stream indices."""

    rows: np.ndarray  # int64 (W,)
    starts: np.ndarray  # int64 (W,) index of each window's first sample in its stream
    data: np.ndarray  # float32 (W, WINDOW, C)


def window_count(n: int) -> int:
    """Windows in an uninterrupted stream of n samples: floor((n - 128) / 64) + 1, or 0."""
    return 0 if n < WINDOW else (n - WINDOW) // HOP + 1


def emit_windows(
    ring: np.ndarray, n: np.ndarray, chunk: np.ndarray
) -> tuple[Emitted, np.ndarray]:
    """Append `chunk` (G, k, C) to G devices' buffers (G, WINDOW, C) that have seen `n` samples.

    Returns the windows completed by the chunk and the updated buffers. Position j of
    the extended buffer holds stream index n - WINDOW + j; a window ending (exclusive)
    at index e starts at position e - n.
    """
    k = chunk.shape[1]
    extended = np.concatenate([ring, chunk], axis=1)
    first_end = np.maximum(WINDOW, (n // HOP + 1) * HOP)
    last = n + k
    counts = np.where(last >= first_end, (last - first_end) // HOP + 1, 0)
    rows = np.repeat(np.arange(len(n)), counts)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    ends = first_end[rows] + HOP * rank
    positions = (ends - n[rows])[:, None] + _OFFSETS
    data = extended[rows[:, None], positions]
    return Emitted(rows, ends - WINDOW, data), extended[:, -WINDOW:]
