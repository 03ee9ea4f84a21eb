"""The placement report reads gravity direction, gain and step rate from raw signals, and
flags test recordings whose gravity lies outside every training recording's."""

from __future__ import annotations

import numpy as np

from har_stream.core.records import ACTIVITIES
from har_stream.training.hapt import HaptData, Recording
from har_stream.training.placement import placement, report

N = 3000


def recording(exp_id: int, user_id: int, turned: bool, rng: np.random.Generator) -> Recording:
    """Standing (gravity tilted to -y), then walking at 1.8 steps/s; `turned`: the phone
    half a turn about x (y and z negated)."""
    t = np.arange(N) / 50.0
    acc = np.tile([0.98, -0.2, 0.05], (N, 1))
    acc[1500:, 0] += 0.3 * np.sin(2 * np.pi * 1.8 * t[1500:])
    acc += rng.normal(0, 0.01, acc.shape)
    gyro = rng.normal(0, 0.01, (N, 3)) + [0.02, 0.0, 0.0]
    if turned:
        acc[:, 1:] *= -1
        gyro[:, 1:] *= -1
    segments = np.array([(5, 0, 1500), (1, 1500, N)], np.int64)
    return Recording(exp_id, user_id, acc.astype(np.float32), gyro.astype(np.float32), segments)


def test_placement_reads_gravity_gain_bias_and_steps():
    got = placement(recording(1, 1, False, np.random.default_rng(0)))
    expected = np.array([0.98, -0.2, 0.05]) / np.linalg.norm([0.98, -0.2, 0.05])
    np.testing.assert_allclose(got.gravity[5], expected, atol=0.01)
    assert abs(got.gain - 1.0016) < 0.01
    np.testing.assert_allclose(got.gyro_bias, [0.02, 0, 0], atol=0.005)
    assert abs(got.step_hz - 1.8) < 0.05


def test_report_flags_a_turned_test_phone():
    rng = np.random.default_rng(1)
    recordings = (recording(1, 1, False, rng), recording(2, 2, False, rng),
                  recording(3, 3, True, rng), recording(4, 4, False, rng))
    text = report(HaptData(recordings, dict(enumerate(ACTIVITIES, start=1)), (3, 4), ""))
    standing = next(line for line in text.splitlines() if line.startswith("| standing |"))
    assert "exp 3 (user 3)" in standing and "exp 4" not in standing
