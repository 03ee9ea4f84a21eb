"""The tutorials' way, kept as a baseline: one device at a time, one sample at a time.

A plain-Python transcription of the same median + Butterworth chain (direct form II
transposed, as scipy's sosfilt) and windowing. It is the yardstick for the vectorised
pipeline's speed, and an independent oracle for its numbers in the tests.
"""

from __future__ import annotations

import numpy as np

from har_stream.core.records import HOP, WINDOW
from har_stream.core.signal import FilterBank


class NaiveDevice:
    """Per-sample filtering and windowing of one device's stream, in Python floats."""

    def __init__(self, bank: FilterBank, first: list[float]) -> None:
        self.noise = [list(map(float, s)) for s in bank.noise_sos]
        self.gravity = [list(map(float, s)) for s in bank.gravity_sos]
        start = bank.initial_state(np.asarray([first], np.float32))
        self.history = [list(first), list(first)]
        self.noise_z = [[[float(start.noise_zi[s, 0, k, c]) for k in range(2)]
                         for c in range(6)] for s in range(len(self.noise))]
        self.gravity_z = [[[float(start.gravity_zi[s, 0, k, c]) for k in range(2)]
                           for c in range(3)] for s in range(len(self.gravity))]
        self.buffer: list[list[float]] = []
        self.n = 0

    def push(self, sample: list[float]) -> list[list[list[float]]]:
        """Filter one raw sample; returns the windows it completes (0 or 1)."""
        a, b = self.history
        median = [sorted((a[c], b[c], sample[c]))[1] for c in range(6)]
        self.history = [b, list(sample)]
        clean = [_cascade(self.noise, self.noise_z, c, median[c]) for c in range(6)]
        gravity = [_cascade(self.gravity, self.gravity_z, c, clean[c]) for c in range(3)]
        row = [clean[c] - gravity[c] for c in range(3)] + clean[3:] + clean[:3]
        self.buffer.append(row)
        self.n += 1
        if len(self.buffer) > WINDOW:
            self.buffer.pop(0)
        if self.n >= WINDOW and (self.n - WINDOW) % HOP == 0:
            return [list(self.buffer)]
        return []


def _cascade(sections: list[list[float]], state: list[list[list[float]]], c: int, x: float
             ) -> float:
    for s, (b0, b1, b2, _a0, a1, a2) in enumerate(sections):
        z = state[s][c]
        y = b0 * x + z[0]
        z[0] = b1 * x - a1 * y + z[1]
        z[1] = b2 * x - a2 * y
        x = y
    return x
