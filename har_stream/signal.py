"""Causal signal conditioning, vectorised across devices with explicit filter state.

Per device and per sample, in stream order:
  1. median of the last 3 raw samples (removes single-sample spikes; 1 sample delay),
  2. 3rd-order Butterworth low-pass at 20 Hz (sensor noise),
  3. gravity = 3rd-order Butterworth low-pass at 0.3 Hz of the filtered acceleration,
     body acceleration = filtered acceleration - gravity.
Output channels follow `records.CHANNELS` (UCI HAR order): body_acc xyz, body_gyro xyz
(the filtered gyro), total_acc xyz (the filtered acceleration, gravity included).

Everything is causal, so a live stream and an offline replay of the same samples give
the same numbers, whatever the message boundaries: `sosfilt` with carried `zi` over
chunks equals one pass over the whole signal, and stacking devices along an extra axis
filters each device exactly as it would be filtered alone. All arithmetic is float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

from har_stream.core.records import CHANNELS, RATE_HZ, SAMPLE_FIELDS

RAW = len(SAMPLE_FIELDS)
OUT = len(CHANNELS)
MEDIAN_HISTORY = 2  # a median of 3 needs the two previous raw samples


@dataclass(frozen=True, slots=True)
class SignalSettings:
    """Filter design parameters; they ship in the model card so serving matches training."""

    rate_hz: float = RATE_HZ
    order: int = 3
    noise_cutoff_hz: float = 20.0
    gravity_cutoff_hz: float = 0.3


@dataclass(slots=True)
class FilterState:
    """Filter memory of D devices, in the layout `sosfilt(axis=1)` wants for (D, T, C) input."""

    median: np.ndarray  # (D, 2, 6) the previous two raw samples, oldest first
    noise_zi: np.ndarray  # (sections, D, 2, 6)
    gravity_zi: np.ndarray  # (sections, D, 2, 3)


class FilterBank:
    """The designed filters and the step that applies them to many devices at once."""

    def __init__(self, settings: SignalSettings = SignalSettings()) -> None:
        self.settings = settings
        fs = settings.rate_hz
        self.noise_sos = butter(settings.order, settings.noise_cutoff_hz, fs=fs, output="sos")
        self.gravity_sos = butter(settings.order, settings.gravity_cutoff_hz, fs=fs, output="sos")
        self.noise_sos = self.noise_sos.astype(np.float32)
        self.gravity_sos = self.gravity_sos.astype(np.float32)
        self.sections = self.noise_sos.shape[0]
        # Unit-step steady states: scaled by the first sample they start the filters "settled".
        self._noise_unit = sosfilt_zi(self.noise_sos).astype(np.float32)
        self._gravity_unit = sosfilt_zi(self.gravity_sos).astype(np.float32)

    def initial_state(self, first: np.ndarray) -> FilterState:
        """State of devices whose stream starts with raw sample `first` (D, 6).

        Steady state for a constant input equal to the first sample, so a stream starts
        without ringing: gravity starts at the first acceleration, body acceleration at 0.
        """
        first = np.asarray(first, np.float32)
        median = np.repeat(first[:, None, :], MEDIAN_HISTORY, axis=1)
        noise_zi = self._noise_unit[:, None, :, None] * first[None, :, None, :]
        gravity_zi = self._gravity_unit[:, None, :, None] * first[None, :, None, :3]
        return FilterState(median, noise_zi.astype(np.float32), gravity_zi.astype(np.float32))

    def apply(self, raw: np.ndarray, state: FilterState) -> tuple[np.ndarray, FilterState]:
        """Filter raw (D, T, 6) samples of D devices; returns the (D, T, 9) window channels."""
        raw = np.asarray(raw, np.float32)
        extended = np.concatenate([state.median, raw], axis=1)
        a, b, c = extended[:, :-2], extended[:, 1:-1], extended[:, 2:]
        median = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
        clean, noise_zi = sosfilt(self.noise_sos, median, axis=1, zi=state.noise_zi)
        total_acc = clean[..., :3]
        gravity, gravity_zi = sosfilt(self.gravity_sos, total_acc, axis=1, zi=state.gravity_zi)
        out = np.concatenate([total_acc - gravity, clean[..., 3:], total_acc], axis=-1)
        new_state = FilterState(extended[:, -MEDIAN_HISTORY:].copy(), noise_zi, gravity_zi)
        return out.astype(np.float32, copy=False), new_state
