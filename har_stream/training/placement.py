"""How each recording's phone sat on its wearer, from the raw signals (no model, no labels
beyond the activity segments): `python -m har_stream.training.placement [DATA]`.

Why: one test subject (10) failed where every other wearer succeeded; this shows what
differs. Per experiment and activity: the mean gravity direction in device axes (unit
vector of the mean raw acceleration), the phone's turn about its x axis (vertical when the
wearer stands) read from the standing gravity's y/z part, signal gain (mean |acc|, 1 g
expected), gyro bias while standing, and step frequency while walking.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.training.hapt import RATE_HZ, HaptData, Recording, default_data_path, load_hapt

WALKING, STANDING = 1, 5


@dataclass(frozen=True, slots=True)
class Placement:
    exp_id: int
    user_id: int
    gravity: dict[int, np.ndarray]  # activity id -> unit vector, samples of all its segments
    gain: float  # mean |acc| over standing samples, g
    gyro_bias: np.ndarray  # mean gyro over standing samples, rad/s
    step_hz: float  # dominant frequency of |acc| while walking (0.5-3.5 Hz), nan if none


def placement(recording: Recording) -> Placement:
    samples: dict[int, list[np.ndarray]] = {}
    for activity, start, stop in recording.segments:
        samples.setdefault(int(activity), []).append(np.arange(start, stop))
    acc, gyro = recording.acc.astype(np.float64), recording.gyro.astype(np.float64)
    gravity = {}
    for activity, parts in samples.items():
        mean = acc[np.concatenate(parts)].mean(axis=0)
        gravity[activity] = mean / np.linalg.norm(mean)
    standing = np.concatenate(samples.get(STANDING, [np.arange(0)]))
    steps = [_step_hz(acc[p]) for p in samples.get(WALKING, []) if len(p) >= 256]
    return Placement(
        recording.exp_id, recording.user_id, gravity,
        float(np.linalg.norm(acc[standing], axis=1).mean()) if len(standing) else float("nan"),
        gyro[standing].mean(axis=0) if len(standing) else np.full(3, np.nan),
        float(np.median(steps)) if steps else float("nan"))


def _step_hz(acc: np.ndarray) -> float:
    magnitude = np.linalg.norm(acc, axis=1)
    power = np.abs(np.fft.rfft(magnitude - magnitude.mean())) ** 2
    freqs = np.fft.rfftfreq(len(magnitude), 1.0 / RATE_HZ)
    band = (freqs > 0.5) & (freqs < 3.5)
    return float(freqs[band][power[band].argmax()])


ACTIVITY_COLUMNS = ((5, "standing"), (4, "sitting"), (6, "laying"), (1, "walking"))


def report(data: HaptData) -> str:
    """Markdown: every recording's placement, then where the test users' gravity y components
    fall against the training users' range (a phone turned about x flips y)."""
    placements = [placement(r) for r in data.recordings]
    test = set(data.test_users)
    lines = ["| exp | user | split | " + " | ".join(
        f"gravity {name} (x, y, z)" for _, name in ACTIVITY_COLUMNS)
        + " | gain standing (g) | gyro bias standing (rad/s) | step Hz |",
        "|---:|---:|---|---|---|---|---|---:|---|---:|"]
    for p in placements:
        cells = []
        for activity, _ in ACTIVITY_COLUMNS:
            v = p.gravity.get(activity)
            cells.append("–" if v is None else f"{v[0]:+.2f}, {v[1]:+.2f}, {v[2]:+.2f}")
        bias = ", ".join(f"{b:+.3f}" for b in p.gyro_bias)
        lines.append(f"| {p.exp_id} | {p.user_id} | {'test' if p.user_id in test else 'train'} "
                     f"| {' | '.join(cells)} | {p.gain:.3f} | {bias} | {p.step_hz:.2f} |")
    lines += ["", "| activity | gravity y, training experiments (min .. max) | experiments "
              "outside that range |", "|---|---|---|"]
    for activity, name in ACTIVITY_COLUMNS:
        train_y = [p.gravity[activity][1] for p in placements
                   if p.user_id not in test and activity in p.gravity]
        if not train_y:
            continue
        low, high = min(train_y), max(train_y)
        outside = [f"exp {p.exp_id} (user {p.user_id}): {p.gravity[activity][1]:+.2f}"
                   for p in placements if p.user_id in test and activity in p.gravity
                   and not low <= p.gravity[activity][1] <= high]
        lines.append(f"| {name} | {low:+.2f} .. {high:+.2f} | {'; '.join(outside) or '–'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(load_hapt(Path(sys.argv[1]) if len(sys.argv) > 1 else default_data_path())))
