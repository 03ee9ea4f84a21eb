"""The activity-change smoother: hysteresis rules, state in the registry, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from har_stream.core.records import ActivityResult
from har_stream.core.state import DeviceRegistry
from har_stream.core.subscriber_records import ENTER, EXIT
from har_stream.core.transitions import (
    ActivityTransitions,
    SmoothingSettings,
    smoothed_per_window,
    transition_fields,
)

CLASSES = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING",
           "LAYING", "TRANSITION")
HOP_MS = 1280


def results(device: str, labels: str, confidence: float = 0.8, first: int = 0,
            t0_ms: int = 1_700_000_000_000) -> list[ActivityResult]:
    """Windows from a compact spelling: W=WALKING, S=SITTING, T=STANDING, L=LAYING, X=TRANSITION;
    a lower-case letter is a window of confidence 0.995."""
    names = {"W": "WALKING", "S": "SITTING", "T": "STANDING", "L": "LAYING", "X": "TRANSITION"}
    out = []
    for i, letter in enumerate(labels, start=first):
        p = 0.995 if letter.islower() else confidence
        out.append(ActivityResult(device, i * 64, t0_ms + i * HOP_MS, t0_ms + i * HOP_MS + 2540,
                                  names[letter.upper()], p, {}, "m"))
    return out


def smoother(hold: int = 3, enter: float = 1.01, **kwargs: object) -> ActivityTransitions:
    return ActivityTransitions(CLASSES, SmoothingSettings(hold, enter, **kwargs))  # type: ignore


def test_a_new_activity_is_entered_after_holding_for_n_windows() -> None:
    changes, states = smoother(hold=3).update(results("d", "SSSWWWW"))
    assert [(c.previous, c.activity, c.seq, c.windows) for c in changes] == [
        (None, "SITTING", 2 * 64, 3), ("SITTING", "WALKING", 5 * 64, 3)]
    walking = changes[1]
    assert walking.started_ms == 1_700_000_000_000 + 3 * HOP_MS  # its first window's start
    assert walking.confirmed_ms == 1_700_000_000_000 + 5 * HOP_MS + 2540
    assert walking.window_id == "d:0:320"
    assert states[0].activity == "WALKING" and states[0].since_ms == walking.started_ms


def test_blips_shorter_than_n_windows_change_nothing() -> None:
    changes, states = smoother(hold=3).update(results("d", "SSSSWSSTTSSSS"))
    assert [c.activity for c in changes] == ["SITTING"]
    assert states[0].activity == "SITTING" and states[0].last_activity == "SITTING"


def test_a_confident_window_enters_at_once() -> None:
    changes, _ = smoother(hold=5, enter=0.99).update(results("d", "SSSSSw"))
    assert [(c.activity, c.windows, c.confidence) for c in changes] == [
        ("SITTING", 5, 0.8), ("WALKING", 1, 0.995)]


def test_transition_is_passing_never_entered_and_does_not_break_a_run() -> None:
    changes, states = smoother(hold=2).update(results("d", "TTTXxXSXS"))
    assert [(c.previous, c.activity) for c in changes] == [(None, "STANDING"),
                                                           ("STANDING", "SITTING")]
    assert states[0].last_activity == "SITTING"
    _, states = smoother(hold=2).update(results("e", "XXX"))
    assert states[0].activity is None and states[0].last_activity == "TRANSITION"


def test_a_gap_in_stream_time_restarts_the_run() -> None:
    tracker = smoother(hold=3, max_gap_ms=5000)
    first, _ = tracker.update(results("d", "SSSWW"))
    after_gap, _ = tracker.update(results("d", "W", first=20))
    assert [c.activity for c in first + after_gap] == ["SITTING"]
    more, _ = tracker.update(results("d", "WW", first=21))
    assert [c.activity for c in more] == ["WALKING"]
    assert more[0].started_ms == 1_700_000_000_000 + 20 * HOP_MS


def test_changes_map_to_exit_and_enter_events() -> None:
    changes, _ = smoother(hold=1).update(results("d", "SW"))
    assert changes[0].transitions() == [(ENTER, "SITTING")]
    assert changes[1].transitions() == [(EXIT, "SITTING"), (ENTER, "WALKING")]


def test_devices_interleaved_in_one_poll_are_independent() -> None:
    a, b = results("a", "SSSWWW"), results("b", "LLLLLL")
    mixed = [r for pair in zip(a, b, strict=True) for r in pair]
    changes, states = smoother().update(mixed)
    assert [(c.device_id, c.activity) for c in changes] == [
        ("a", "SITTING"), ("a", "WALKING"), ("b", "LAYING")]
    assert {s.device_id: s.activity for s in states} == {"a": "WALKING", "b": "LAYING"}


def test_any_split_into_polls_gives_the_same_changes() -> None:
    stream = results("d", "SSWSSSWWXWWTTTWTTTTLlLLSS")
    whole, _ = smoother().update(stream)
    rng = np.random.default_rng(1)
    for _ in range(20):
        cuts = sorted(rng.choice(range(1, len(stream)), size=4, replace=False).tolist())
        tracker, parts = smoother(), []
        for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            parts += tracker.update(stream[start:stop])[0]
        assert parts == whole


def test_state_snapshot_restore_continues_exactly_as_a_clean_run() -> None:
    """A crash after any poll: restore the last snapshot, replay from it, same changes."""
    stream = results("d", "SSSWWSWWWWXTTLLLLw", confidence=0.7)
    clean, _ = smoother(hold=3, enter=0.99).update(stream)
    for cut in range(len(stream) + 1):
        first = smoother(hold=3, enter=0.99)
        before, _ = first.update(stream[:cut])
        snapshot = first.registry.snapshot("d") if "d" in first.registry else None
        restored = smoother(hold=3, enter=0.99)
        if snapshot is not None:
            restored.registry.restore("d", snapshot)
        after, _ = restored.update(stream[cut:])
        assert before + after == clean, cut


def test_state_fields_join_another_registry() -> None:
    registry = DeviceRegistry({"counts": transition_fields()["smooth_since_ms"]}
                              | transition_fields())
    tracker = ActivityTransitions(CLASSES, SmoothingSettings(), registry)
    tracker.update(results("d", "SSS"))
    assert tracker.state("d") is not None and tracker.state("d").activity == "SITTING"
    assert tracker.state("unknown") is None
    with pytest.raises(ValueError, match="lacks"):
        ActivityTransitions(CLASSES, SmoothingSettings(), DeviceRegistry({}))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        SmoothingSettings(hold_windows=0)
    with pytest.raises(ValueError):
        SmoothingSettings(max_gap_ms=-1)


def test_smoothed_per_window_follows_the_confirming_windows() -> None:
    stream = results("d", "SSSWWW")
    changes, _ = smoother(hold=2).update(stream)
    seqs = np.array([r.seq for r in stream])
    assert smoothed_per_window(changes, seqs, CLASSES).tolist() == [-1, 3, 3, 3, 0, 0]


LETTERS = st.text(alphabet="WSTLXwstlx", min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(LETTERS, st.integers(1, 5), st.sampled_from([0.8, 0.9, 0.99, 1.01]), st.data())
def test_changes_chain_and_survive_a_restore_anywhere(labels: str, hold: int, enter: float,
                                                      data: st.DataObject) -> None:
    stream = results("d", labels)
    clean, _ = smoother(hold, enter).update(stream)
    previous = None
    for change in clean:  # each change leaves the activity the one before entered
        assert change.previous == previous and change.activity != previous
        assert change.activity != "TRANSITION" and change.windows >= 1
        assert change.started_ms <= change.confirmed_ms
        previous = change.activity
    cut = data.draw(st.integers(0, len(stream)))
    first = smoother(hold, enter)
    before, _ = first.update(stream[:cut])
    restored = smoother(hold, enter)
    if "d" in first.registry:
        restored.registry.restore("d", first.registry.snapshot("d"))
    assert before + restored.update(stream[cut:])[0] == clean


@settings(max_examples=100, deadline=None)
@given(LETTERS)
def test_without_smoothing_every_raw_change_is_an_event(labels: str) -> None:
    stream = results("d", labels)
    changes, _ = smoother(1, 1.01, passing=()).update(stream)
    raw = [r.activity for r in stream]
    expected = [b for a, b in zip([None, *raw], raw, strict=False) if a != b]
    assert [c.activity for c in changes] == expected
