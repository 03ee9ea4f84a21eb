"""Daily totals: days by stream time with a fixed offset, closed days, restorable state."""

from __future__ import annotations

import datetime as dt

import pytest

from har_stream.core.daily import DAY_MS, DailySettings, DailyTotals, day_of
from har_stream.core.outputs_codec import decode_day, decode_device
from har_stream.core.records import ActivityResult
from har_stream.core.state import DeviceRegistry
from har_stream.core.subscriber_outputs import SubscriberOutputs

CLASSES = ("WALKING", "SITTING", "TRANSITION")
MIDNIGHT = int(dt.datetime(2026, 12, 6, tzinfo=dt.UTC).timestamp() * 1000)


def window(t_start_ms: int, activity: str = "WALKING", device: str = "d", seq: int = 0
           ) -> ActivityResult:
    return ActivityResult(device, seq, t_start_ms, t_start_ms + 2540, activity, 0.9, {}, "m")


def test_windows_add_one_hop_each_to_the_open_day() -> None:
    closed, opened = DailyTotals(CLASSES).update(
        [window(MIDNIGHT + 1000), window(MIDNIGHT + 2280, "SITTING", seq=64),
         window(MIDNIGHT + 3560, "SITTING", seq=128)])
    assert closed == []
    (today,) = opened
    assert (today.day, today.day_start_ms, today.closed) == ("2026-12-06", MIDNIGHT, False)
    assert today.windows == {"WALKING": 1, "SITTING": 2, "TRANSITION": 0}
    assert today.seconds == {"WALKING": 1.28, "SITTING": 2.56, "TRANSITION": 0.0}
    assert (today.first_ms, today.last_ms, today.last_seq) == (
        MIDNIGHT + 1000, MIDNIGHT + 3560 + 2540, 128)


def test_a_window_of_a_later_day_closes_the_open_day() -> None:
    totals = DailyTotals(CLASSES)
    totals.update([window(MIDNIGHT - 2000, "SITTING"), window(MIDNIGHT - 720, seq=64)])
    closed, opened = totals.update([window(MIDNIGHT + 560, "SITTING", seq=128),
                                    window(MIDNIGHT + 3 * DAY_MS, seq=192)])
    assert [(d.day, d.closed, d.windows["SITTING"], d.windows["WALKING"]) for d in closed] == [
        ("2026-12-05", True, 1, 1), ("2026-12-06", True, 1, 0)]
    assert [(d.day, d.windows["WALKING"]) for d in opened] == [("2026-12-09", 1)]


def test_a_fixed_offset_moves_midnight() -> None:
    """At UTC+01:00, 23:30 UTC on the 5th is already the 6th; at UTC-05:00 still the 5th."""
    t = MIDNIGHT - 30 * 60_000
    _, (plus_one,) = DailyTotals(CLASSES, DailySettings(60)).update([window(t)])
    assert (plus_one.day, plus_one.day_start_ms) == ("2026-12-06", MIDNIGHT - 3_600_000)
    _, (minus_five,) = DailyTotals(CLASSES, DailySettings(-300)).update([window(t)])
    assert (minus_five.day, minus_five.day_start_ms) == ("2026-12-05",
                                                         MIDNIGHT - DAY_MS + 5 * 3_600_000)
    assert day_of(t, 0) == day_of(MIDNIGHT, 0) - 1
    with pytest.raises(ValueError):
        DailySettings(1440)


def test_a_window_before_the_open_day_is_not_counted() -> None:
    totals = DailyTotals(CLASSES)
    totals.update([window(MIDNIGHT + 5000)])
    closed, (today,) = totals.update([window(MIDNIGHT - 5000, "SITTING", seq=64)])
    assert closed == [] and today.windows["SITTING"] == 0 and today.day == "2026-12-06"


def test_devices_keep_their_own_days() -> None:
    totals = DailyTotals(CLASSES)
    totals.update([window(MIDNIGHT - 1000, device="a"), window(MIDNIGHT + 1000, device="b")])
    closed, opened = totals.update([window(MIDNIGHT + 2000, device="a", seq=64),
                                    window(MIDNIGHT + 3000, device="b", seq=64)])
    assert [(d.device_id, d.day) for d in closed] == [("a", "2026-12-05")]
    assert {d.device_id: d.windows["WALKING"] for d in opened} == {"a": 1, "b": 2}
    assert totals.today("b") == opened[1] and totals.today("nobody") is None


def test_restored_state_continues_the_day() -> None:
    stream = [window(MIDNIGHT - 3000 + i * 1280, "SITTING" if i % 3 else "WALKING", seq=64 * i)
              for i in range(6)]
    clean_closed, clean_open = DailyTotals(CLASSES).update(stream)
    for cut in range(1, len(stream)):
        first = DailyTotals(CLASSES)
        closed, _ = first.update(stream[:cut])
        restored = DailyTotals(CLASSES)
        restored.registry.restore("d", first.registry.snapshot("d"))
        more, opened = restored.update(stream[cut:])
        assert (closed + more, opened) == (clean_closed, clean_open), cut


def test_subscriber_outputs_combine_changes_devices_and_days() -> None:
    outputs = SubscriberOutputs(CLASSES)
    stream = [window(MIDNIGHT - 2560 + i * 1280, "SITTING", seq=64 * i) for i in range(4)]
    step = outputs.process(stream)
    assert [(c.previous, c.activity) for c in step.changes] == [(None, "SITTING")]
    assert [d.day for d in step.closed_days] == ["2026-12-05"]
    (device,) = step.devices
    assert (device.activity, device.since_ms, device.last_window_id) == (
        "SITTING", MIDNIGHT - 2560, "d:0:192")
    assert device.today is not None and device.today.windows["SITTING"] == 2
    assert outputs.device("d") == device and outputs.device("nobody") is None
    encoded = step.encoded()
    assert [key for key, _ in encoded["changes"] + encoded["devices"] + encoded["daily"]] == [
        b"d"] * 3
    assert decode_device(encoded["devices"][0][1]) == device
    assert decode_day(encoded["daily"][0][1]) == step.closed_days[0]


def test_subscriber_fields_can_join_the_recognizers_registry() -> None:
    """The service adds these fields to the recognizer's: no name may collide."""
    from service_support import FakeModel

    from har_stream.core.recognizer import Recognizer
    from har_stream.core.subscriber_outputs import subscriber_fields

    recognizer = Recognizer(FakeModel())
    fields = subscriber_fields(FakeModel.classes)
    assert not set(fields) & set(recognizer.registry.fields)
    joined = DeviceRegistry(recognizer.registry.fields | fields)
    step = SubscriberOutputs(FakeModel.classes, registry=joined).process([window(MIDNIGHT)])
    assert step.devices[0].today is not None
    assert step.devices[0].activity == "WALKING"  # confidence 0.9 >= the default c: at once
    added = joined.nbytes_per_device() - recognizer.registry.nbytes_per_device()
    assert added == 78 + 8 * (5 + len(FakeModel.classes))  # bytes per device in a snapshot


def test_days_add_up_to_the_recognizers_counts_across_midnight() -> None:
    """A stream through the recognizer crossing midnight in several polls: the closed day plus
    the open day are, per activity, the recognizer's lifetime counts."""
    from service_support import FakeModel, batches_of, synthetic_samples

    from har_stream.core.recognizer import Recognizer

    recognizer = Recognizer(FakeModel())
    outputs = SubscriberOutputs(FakeModel.classes)
    batches = batches_of("d", synthetic_samples(50 * 240, seed=3), 250, t0_ms=MIDNIGHT - 120_000)
    closed, counts, today = [], None, None
    for start in range(0, len(batches), 5):
        output = recognizer.process(batches[start:start + 5])
        step = outputs.process(output.results)
        closed += step.closed_days
        counts = output.counts[-1] if output.counts else counts
        today = step.devices[-1].today if step.devices else today
    assert [d.day for d in closed] == ["2026-12-05"] and today is not None
    assert today.day == "2026-12-06"
    assert counts is not None
    assert {a: closed[0].windows[a] + today.windows[a] for a in FakeModel.classes} == counts.windows
    assert closed[0].first_ms >= MIDNIGHT - 120_000 and today.first_ms >= MIDNIGHT
