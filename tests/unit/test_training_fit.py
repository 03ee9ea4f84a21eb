"""Training helpers: augmentation keeps the physics, temperature scaling calibrates."""

from __future__ import annotations

import numpy as np

from har_stream.training.augment import random_rotations, rotate_and_scale


def test_random_rotations_are_proper_rotations_within_the_angle():
    rotations = random_rotations(200, 15.0, np.random.default_rng(0))
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (200, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    angles = np.degrees(np.arccos(np.clip((np.trace(rotations, axis1=1, axis2=2) - 1) / 2,
                                          -1, 1)))
    assert angles.max() <= 15.0 + 1e-9 and angles.max() > 5.0


def test_rotate_and_scale_moves_each_vector_group_together():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 3, 128, 9)).astype(np.float32)  # 4 sequences of 3 windows
    y = rotate_and_scale(x, np.random.default_rng(2), max_gain=0.0)
    def norms(a: np.ndarray) -> np.ndarray:
        return np.linalg.norm(a.reshape(*a.shape[:-1], 3, 3), axis=-1)

    np.testing.assert_allclose(norms(y), norms(x), rtol=1e-5)  # rotations keep lengths
    # the same rotation for every window and sample of a sequence, and for each group
    flat_x, flat_y = x[0].reshape(-1, 3), y[0].reshape(-1, 3)
    rotation, *_ = np.linalg.lstsq(flat_x, flat_y, rcond=None)
    np.testing.assert_allclose(flat_x @ rotation, flat_y, atol=1e-4)


def test_temperature_scaling_recovers_the_overconfidence_factor():
    from har_stream.training.fit import fit_temperature

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, (5000, 6))
    calibrated = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    # targets drawn from the calibrated probabilities themselves
    targets = (np.exp(calibrated).cumsum(axis=1) < rng.random((5000, 1))).sum(axis=1)
    assert abs(fit_temperature(calibrated, targets) - 1.0) < 0.15
    overconfident = 4.0 * logits
    overconfident -= np.log(np.exp(overconfident).sum(axis=1, keepdims=True))
    assert abs(fit_temperature(overconfident, targets) - 4.0) < 0.6


def test_temperature_by_ece_lowers_the_calibration_error_of_overconfident_scores():
    from har_stream.training.metrics import expected_calibration_error, fit_temperature_ece

    rng = np.random.default_rng(4)
    logits = rng.normal(0, 1.5, (5000, 6))
    calibrated = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    targets = (np.exp(calibrated).cumsum(axis=1) < rng.random((5000, 1))).sum(axis=1)
    overconfident = 3.0 * calibrated

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    temperature = fit_temperature_ece(overconfident, targets)
    assert 2.0 < temperature < 4.5
    assert (expected_calibration_error(softmax(overconfident / temperature), targets)
            < 0.5 * expected_calibration_error(softmax(overconfident), targets))
