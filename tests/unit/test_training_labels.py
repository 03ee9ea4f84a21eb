"""Window labels by sample index, window exclusion, and windows cut by the real pipeline."""

from __future__ import annotations

import numpy as np

from har_stream.core.records import CHANNELS, HOP, WINDOW, WindowBatch
from har_stream.training import dataset
from har_stream.training.hapt import Recording
from har_stream.training.labels import class_targets, label_windows
from har_stream.training.windows import WindowSet, make_windows

# 0-based half-open: WALKING 0..300, STAND_TO_SIT 300..360, SITTING 360..700, gap, LAYING
SEGMENTS = np.array([[1, 0, 300], [7, 300, 360], [4, 360, 700], [6, 800, 1000]])


def test_window_inside_one_segment_gets_its_activity():
    labels = label_windows(SEGMENTS, 1000, np.array([0, 172, 400, 572, 800, 872]))
    np.testing.assert_array_equal(labels.activity, [1, 1, 4, 4, 6, 6])
    assert not labels.transition_fraction.any() and not labels.unlabelled_fraction.any()


def test_window_touching_a_boundary_or_unlabelled_samples_has_no_activity():
    # 173 ends at 300 (one sample into the transition), 600 reaches the gap, 700 is unlabelled
    labels = label_windows(SEGMENTS, 1000, np.array([173, 300, 600, 700]))
    np.testing.assert_array_equal(labels.activity, [0, 0, 0, 0])
    np.testing.assert_allclose(labels.transition_fraction, [1 / 128, 60 / 128, 0, 0])
    np.testing.assert_allclose(labels.unlabelled_fraction, [0, 0, 28 / 128, 100 / 128])


def test_two_adjacent_segments_of_the_same_activity_do_not_make_one_window():
    segments = np.array([[1, 0, 100], [1, 100, 300]])
    assert label_windows(segments, 300, np.array([0, 100]), window=128).activity.tolist() == [0, 1]


def test_class_targets_with_and_without_a_transition_class():
    segments = np.array([[1, 0, 300], [7, 300, 400], [4, 400, 700]])
    labels = label_windows(segments, 700, np.array([0, 200, 290, 400, 572]))
    np.testing.assert_array_equal(class_targets(labels, False), [0, -1, -1, 3, 3])
    # window 200: 28 % transition (left out); window 290: 100 of 128 samples -> TRANSITION
    np.testing.assert_array_equal(class_targets(labels, True), [0, -1, 6, 3, 3])


def fake_replay(acc: np.ndarray, gyro: np.ndarray, device_id: str) -> WindowBatch:
    """Windows every HOP samples whose data is the sample index (to check alignment)."""
    seqs = np.arange(0, len(acc) - WINDOW + 1, HOP, dtype=np.int64)
    data = (seqs[:, None, None] + np.arange(WINDOW)[None, :, None]).astype(np.float32)
    data = np.repeat(data, len(CHANNELS), axis=2)
    zeros = np.zeros(len(seqs), np.int64)
    return WindowBatch([device_id] * len(seqs), seqs, zeros, zeros, zeros,
                       np.arange(len(seqs)) == 0, data)


def recording(exp_id: int, user_id: int, n: int = 1000) -> Recording:
    rng = np.random.default_rng(exp_id)
    return Recording(exp_id, user_id, rng.normal(size=(n, 3)).astype(np.float32),
                     rng.normal(size=(n, 3)).astype(np.float32), SEGMENTS)


def test_make_windows_labels_each_window_by_its_first_sample():
    windows = make_windows([recording(1, 1), recording(2, 2, 700)], replay=fake_replay)
    assert len(windows) == 14 + 9
    np.testing.assert_array_equal(windows.data[:, 0, 0], windows.seqs)
    assert [s.stop - s.start for s in windows.recording_slices()] == [14, 9]
    first = windows.take(windows.exp_id == 1)
    np.testing.assert_array_equal(first.activity, label_windows(SEGMENTS, 1000,
                                                                first.seqs).activity)


def test_real_pipeline_windows_are_consecutive_and_labelled():
    windows = make_windows([recording(1, 1)])
    np.testing.assert_array_equal(windows.seqs, np.arange(14) * HOP)
    assert windows.data.shape == (14, WINDOW, len(CHANNELS))
    assert windows.data.dtype == np.float32 and np.isfinite(windows.data).all()
    np.testing.assert_array_equal(np.flatnonzero(dataset.benchmark_mask(windows)),
                                  [0, 1, 2, 6, 7, 8, 13])


def test_split_keeps_test_users_out_and_validation_inside_training_users():
    split = dataset.split_users(range(1, 31), [2, 4, 10], n_validation=5)
    assert split.test == (2, 4, 10)
    assert len(split.validation) == 5 and not set(split.validation) & set(split.test)
    assert set(split.train) | set(split.validation) == set(range(1, 31)) - {2, 4, 10}
    assert dataset.split_users(range(1, 31), [2, 4, 10], n_validation=5) == split


def test_sequence_crops_stay_inside_one_recording():
    windows = make_windows([recording(1, 1), recording(2, 2, 700)], replay=fake_replay)
    starts = dataset.sequence_crops(windows, 4, np.random.default_rng(0))
    assert 0 in starts and 14 in starts  # every recording's first crop
    rows = starts[:, None] + np.arange(4)
    assert (windows.exp_id[rows] == windows.exp_id[rows[:, :1]]).all()


def test_window_set_concatenate_and_users():
    windows = make_windows([recording(1, 1), recording(2, 2, 700)], replay=fake_replay)
    again = WindowSet.concatenate([windows.of_users([1]), windows.of_users([2])])
    np.testing.assert_array_equal(again.data, windows.data)
