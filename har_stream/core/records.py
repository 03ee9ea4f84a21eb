"""Typed records that flow through the recognizer, and the constants that shape them.

Records are frozen and slotted: a stage never mutates what it received. Arrays
inside records are treated as read-only by convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RATE_HZ = 50.0
"""Sampling rate every device must use (samples per second)."""
SAMPLE_PERIOD_MS = 1000.0 / RATE_HZ
WINDOW = 128
"""Samples per window (2.56 s at 50 Hz)."""
HOP = 64
"""Samples between consecutive window starts (50 % overlap)."""
SAMPLE_FIELDS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
"""Columns of a raw sample: acceleration in g (gravity included), angular rate in rad/s."""
CHANNELS = (
    "body_acc_x", "body_acc_y", "body_acc_z",
    "body_gyro_x", "body_gyro_y", "body_gyro_z",
    "total_acc_x", "total_acc_y", "total_acc_z",
)
"""Channels of a window, in the UCI HAR order."""
ACTIVITIES = (
    "WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING",
)
"""The six basic activities of the UCI HAR / HAPT benchmark, in label order 1..6."""


@dataclass(frozen=True, slots=True, eq=False)
class SensorBatch:
    """Consecutive raw samples of one device, as decoded from one sensor message.

    `seq` is the index of the first sample in the device's stream; sample `i` has
    index `seq + i` and, as the message states it, time `t0_ms + i * SAMPLE_PERIOD_MS`
    (window times run from the time of the stream's first message, see `sequencing`).
    `record_ts_ms` is the broker's timestamp of the message (0 when unknown), used for
    end-to-end latency.
    """

    device_id: str
    seq: int
    t0_ms: int
    samples: np.ndarray  # float32 (n, 6): acc xyz [g], gyro xyz [rad/s]
    record_ts_ms: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class WindowBatch:
    """Every window that became ready in one pipeline step, stacked for one model call.

    Row `i` is the window of device `device_ids[i]` whose first sample has index
    `seqs[i]` in the device's stream number `epochs[i]` (0 for its first stream, one more
    at each restart); `(device_id, epoch, seq)` is the window's deterministic id. `fresh[i]`
    is True when the window is the first of a device's stream (new device, or after a
    reset), so recurrent model state must start from zero. Windows of one device
    appear in stream order.
    """

    device_ids: list[str]
    seqs: np.ndarray  # int64 (B,)
    t_start_ms: np.ndarray  # int64 (B,) time of the first sample
    t_end_ms: np.ndarray  # int64 (B,) time of the last sample
    record_ts_ms: np.ndarray  # int64 (B,) broker timestamp of the message holding the last sample
    fresh: np.ndarray  # bool (B,)
    data: np.ndarray  # float32 (B, WINDOW, len(CHANNELS))
    epochs: np.ndarray | None = None  # int64 (B,) stream number (None: all 0)

    def epochs_or_zero(self) -> np.ndarray:
        return np.zeros(len(self), np.int64) if self.epochs is None else self.epochs

    def __len__(self) -> int:
        return len(self.device_ids)

    @staticmethod
    def empty() -> WindowBatch:
        i64 = np.zeros(0, np.int64)
        return WindowBatch([], i64, i64, i64, i64, np.zeros(0, bool),
                           np.zeros((0, WINDOW, len(CHANNELS)), np.float32))


def window_id(device_id: str, seq: int, epoch: int = 0) -> str:
    """The deterministic id of a window, `device_id:epoch:seq`: same device, stream and first
    sample, same id, after a crash, a restore or a rebalance too. A stream restart (the
    device's seq went back, or jumped) starts a new epoch, so a later window never gets an
    earlier one's id."""
    return f"{device_id}:{epoch}:{seq}"


@dataclass(frozen=True, slots=True)
class ActivityResult:
    """The classification of one window (published to `har.activity`)."""

    device_id: str
    seq: int
    t_start_ms: int
    t_end_ms: int
    activity: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    record_ts_ms: int = 0
    epoch: int = 0  # the device's stream number: restarts so far

    @property
    def window_id(self) -> str:
        return window_id(self.device_id, self.seq, self.epoch)


@dataclass(frozen=True, slots=True)
class ActivityCounts:
    """A device's running tally (published to `har.activity-counts`).

    Each window counts once; `seconds` credits each window with one hop (1.28 s),
    because consecutive windows overlap by half, so seconds add up to stream time.
    """

    device_id: str
    windows: dict[str, int]
    seconds: dict[str, float]
    since_ms: int
    updated_ms: int
    last_seq: int = field(default=-1)
    last_epoch: int = 0  # stream number of the last counted window
