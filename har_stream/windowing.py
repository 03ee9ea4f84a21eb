"""Ring buffers that cut each device's filtered stream into 128-sample windows every 64 samples.

A device's buffer holds its last `WINDOW` filtered samples; `n` counts the samples of its
current stream. Windows start at stream indices 0, 64, 128, ... and a window is emitted
as soon as its last sample arrives, so the windows of a stream do not depend on how its
samples were split into messages. Everything is vectorised over devices that received
the same number of new samples.

Steady state (every device at a hop boundary, HOP new samples each: a live stream in messages
of 64) has a shortcut: each chunk completes exactly one window, which is the buffer's last HOP
rows followed by the chunk, and is also the new buffer; no gather by index is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from har_stream.core.records import HOP, WINDOW

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


def at_hop_boundary(n: np.ndarray, k: int) -> bool:
    """True when chunks of k samples complete exactly one window per buffer, made of the
    buffer's last HOP rows and the chunk: k == HOP and every n a multiple of HOP, >= HOP."""
    return k == HOP and bool(np.all((n % HOP == 0) & (n >= HOP)))


def emit_windows(
    ring: np.ndarray, n: np.ndarray, chunk: np.ndarray
) -> tuple[Emitted, np.ndarray]:
    """Append `chunk` (G, k, C) to G devices' buffers (G, WINDOW, C) that have seen `n` samples.

    Returns the windows completed by the chunk and the updated buffers. Position j of
    the extended buffer holds stream index n - WINDOW + j; a window ending (exclusive)
    at index e starts at position e - n.
    """
    k = chunk.shape[1]
    if at_hop_boundary(n, k):
        window = np.concatenate([ring[:, HOP:], chunk], axis=1)
        return Emitted(np.arange(len(n)), n - HOP, window), window
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
