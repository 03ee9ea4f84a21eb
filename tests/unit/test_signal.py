"""The causal filters against scipy run offline, and their vectorisation across devices."""

import numpy as np
from scipy.signal import butter, medfilt, sosfilt, sosfilt_zi

from har_stream.core.signal import FilterBank, SignalSettings


def _stream(n: int, devices: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acc = np.cumsum(rng.normal(0, 0.05, (devices, n, 3)), axis=1) + [0.0, 0.0, 1.0]
    gyro = rng.normal(0, 0.5, (devices, n, 6 - 3))
    return np.concatenate([acc, gyro], axis=2).astype(np.float32)


def test_matches_offline_sosfilt_over_the_whole_signal() -> None:
    raw = _stream(3000)[0]
    bank = FilterBank()
    out = np.concatenate(
        [bank.apply(raw[None, a:a + 64], s)[0][0] for a, s in _chunks(bank, raw, 64)]
    )
    # Reference: causal median of 3 (medfilt centred, shifted by one sample, history = first
    # sample), then scipy's sosfilt over the whole signal with the same coefficients and zi.
    padded = np.concatenate([raw[:1], raw[:1], raw])
    median = np.stack([medfilt(padded[:, c], 3)[1:-1] for c in range(6)], axis=1)
    sos = butter(3, 20, fs=50, output="sos").astype(np.float32)
    clean, _ = sosfilt(sos, median, axis=0, zi=sosfilt_zi(sos)[:, :, None] * raw[0])
    gsos = butter(3, 0.3, fs=50, output="sos").astype(np.float32)
    gravity, _ = sosfilt(gsos, clean[:, :3], axis=0, zi=sosfilt_zi(gsos)[:, :, None] * raw[0, :3])
    expected = np.concatenate([clean[:, :3] - gravity, clean[:, 3:], clean[:, :3]], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def _chunks(bank: FilterBank, raw: np.ndarray, size: int):
    state = bank.initial_state(raw[None, 0])
    for start in range(0, len(raw), size):
        yield start, state
        state = bank.apply(raw[None, start:start + size], state)[1]


def test_devices_filtered_together_equal_each_filtered_alone() -> None:
    raw = _stream(500, devices=5, seed=3)
    bank = FilterBank()
    together, _ = bank.apply(raw, bank.initial_state(raw[:, 0]))
    for d in range(5):
        alone, _ = bank.apply(raw[d:d + 1], bank.initial_state(raw[d:d + 1, 0]))
        assert np.array_equal(alone[0], together[d])


def test_constant_input_starts_settled_without_ringing() -> None:
    sample = np.array([0.1, -0.2, 0.98, 0.01, 0.02, -0.03], np.float32)
    raw = np.tile(sample, (1, 400, 1))
    bank = FilterBank()
    out, _ = bank.apply(raw, bank.initial_state(raw[:, 0]))
    # float32 steady state: residues of a few 1e-5 g, far below sensor noise
    np.testing.assert_allclose(out[0, :, :3], 0.0, atol=5e-5)  # no body acceleration
    np.testing.assert_allclose(out[0, :, 3:6], np.broadcast_to(sample[3:], (400, 3)), atol=5e-5)
    np.testing.assert_allclose(out[0, :, 6:], np.broadcast_to(sample[:3], (400, 3)), atol=5e-5)


def test_gravity_follows_a_posture_change_within_a_few_seconds() -> None:
    before, after = [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]
    acc = np.array([before] * 500 + [after] * 500, np.float32)
    raw = np.concatenate([acc, np.zeros_like(acc)], axis=1)[None]
    bank = FilterBank(SignalSettings())
    out, _ = bank.apply(raw, bank.initial_state(raw[:, 0]))
    body = out[0, :, :3]
    assert np.abs(body[:500]).max() < 1e-4
    assert np.abs(body[500:520]).max() > 0.5  # the slow gravity filter lags the change
    assert np.abs(body[-1]).max() < 0.05  # ... and has caught up 10 s later


def test_median_removes_a_single_sample_spike() -> None:
    raw = np.zeros((1, 200, 6), np.float32)
    raw[0, :, 2] = 1.0
    spiked = raw.copy()
    spiked[0, 100, 0] = 8.0
    bank = FilterBank()
    clean, _ = bank.apply(raw, bank.initial_state(raw[:, 0]))
    out, _ = bank.apply(spiked, bank.initial_state(spiked[:, 0]))
    assert np.array_equal(out, clean)
