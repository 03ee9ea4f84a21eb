"""Training-time augmentation that mimics how the phone sits on another person.

A device worn slightly rotated sees all three of its vector signals (body acceleration,
angular rate, total acceleration) rotated by the same matrix; the filters are linear per
axis (the 3-sample median almost so), so rotating the pipeline's output is what the
pipeline would have produced from a rotated sensor. Sensitivity differs a little between
phones, hence a small common gain. One draw per sequence: a device keeps its placement.

The phone may also sit in its waist holder turned about its long axis (device x, vertical
when the wearer stands): facing the body instead of away, or on the hip instead of the
front. One test subject wore it turned by about half a turn in one of their two sessions
(docs/MODELS.md, "Why subject 10 failed"). `yaw_degrees` draws that turn, any angle up to
the given one, before the small random rotation.
"""

from __future__ import annotations

import numpy as np


def random_rotations(n: int, max_degrees: float, rng: np.random.Generator) -> np.ndarray:
    """`n` rotation matrices about uniformly random axes by angles up to `max_degrees`."""
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.radians(rng.uniform(-max_degrees, max_degrees, size=n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    k -= k.transpose(0, 2, 1)
    sin, cos = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    return np.eye(3) + sin * k + (1 - cos) * (k @ k)  # Rodrigues


def turns_about_x(n: int, max_degrees: float, rng: np.random.Generator) -> np.ndarray:
    """`n` rotation matrices about the device's x axis by angles uniform in ±`max_degrees`."""
    angles = np.radians(rng.uniform(-max_degrees, max_degrees, size=n))
    sin, cos = np.sin(angles), np.cos(angles)
    turn = np.zeros((n, 3, 3))
    turn[:, 0, 0] = 1.0
    turn[:, 1, 1], turn[:, 1, 2], turn[:, 2, 1], turn[:, 2, 2] = cos, -sin, sin, cos
    return turn


def rotate_and_scale(x: np.ndarray, rng: np.random.Generator, max_degrees: float = 15.0,
                     max_gain: float = 0.05, yaw_degrees: float = 0.0,
                     yaw_share: float = 1.0) -> np.ndarray:
    """Rotate each sample's three 3-axis groups (channels 0-2, 3-5, 6-8) and scale them.

    `x` is `[N, ..., 9]`; one rotation and one gain per leading index. With `yaw_degrees`
    > 0 the rotation is a turn about device x (uniform in ±`yaw_degrees`) followed by the
    small rotation about a random axis; only a `yaw_share` of the sequences are turned (the
    others keep the placement they were recorded with).
    """
    n = len(x)
    rotation = random_rotations(n, max_degrees, rng)
    if yaw_degrees > 0:
        turns = turns_about_x(n, yaw_degrees, rng)
        if yaw_share < 1.0:
            turns[rng.random(n) >= yaw_share] = np.eye(3)
        rotation = rotation @ turns
    rotation = rotation.astype(np.float32)
    gain = rng.uniform(1 - max_gain, 1 + max_gain, size=n).astype(np.float32)
    grouped = x.reshape(n, -1, 3, 3)  # [N, samples, group, axis]
    rotated = np.einsum("nij,nsgj->nsgi", rotation * gain[:, None, None], grouped)
    return rotated.reshape(x.shape).astype(np.float32)
