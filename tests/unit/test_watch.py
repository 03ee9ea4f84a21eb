"""`har-stream watch`: the board fed with records, rendered as a rich table and as lines."""

from __future__ import annotations

import io

from rich.console import Console

from har_stream.cli import build_parser
from har_stream.core.subscriber_records import ActivityChange, DayTotals, DeviceStatus
from har_stream.tools.watch import WatchBoard, duration, watch

T0 = 1_796_515_200_000 + 9 * 3_600_000  # 2026-12-06 09:00:00 UTC


def today(device: str, walking: int, sitting: int) -> DayTotals:
    return DayTotals(device, "2026-12-06", T0 - 9 * 3_600_000, 0,
                     {"WALKING": walking, "SITTING": sitting}, T0, T0 + 60_000,
                     640, False)


def records() -> list[object]:
    return [
        ActivityChange("watch-1", None, "SITTING", T0, T0 + 3820, 0.97, 128, 2),
        ActivityChange("watch-1", "SITTING", "WALKING", T0 + 61_440, T0 + 65_260, 0.93, 3072, 2),
        DeviceStatus("watch-1", "WALKING", T0 + 61_440, 0.95, "WALKING", 0.95, 3136, T0 + 66_540,
                     today("watch-1", 5, 2900)),
        DeviceStatus("watch-2", None, None, 0.0, "TRANSITION", 0.61, 64, T0 + 3820,
                     today("watch-2", 1, 0)),
        DayTotals("watch-1", "2026-12-05", T0 - 33 * 3_600_000, 0, {"SITTING": 2812},
                  T0 - 30 * 3_600_000, T0 - 10 * 3_600_000, 10, True),
    ]


def test_the_table_shows_activity_since_changes_and_totals() -> None:
    board = WatchBoard(recent=2)
    for record in records():
        board.add(record)
    console = Console(record=True, width=160)
    console.print(board.table())
    text = console.export_text()
    row = next(line for line in text.splitlines() if "watch-1" in line)
    assert "WALKING" in row and "09:01:01" in row and "0.95" in row
    assert "09:01:01 SITTING → WALKING" in text and "09:00:00 - → SITTING" in text
    assert "SITTING 1h01m" in text  # 2900 windows x 1.28 s
    assert "TRANSITION 0.61" in text  # watch-2: no activity yet, its raw window shown
    assert text.index("watch-1") < text.index("watch-2")  # busiest first


def test_busiest_devices_or_the_chosen_ones_are_shown() -> None:
    board = WatchBoard()
    for record in records():
        board.add(record)
    assert board.shown(top=1) == ["watch-1"]
    assert board.shown(["watch-2"]) == ["watch-2"]


def test_plain_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    watch([records(), []], WatchBoard(), chosen=[], top=10, plain=True, interval_s=0.0, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "watch-1 09:00:00 - -> SITTING (0.97)"
    assert "watch-1 09:01:01 SITTING -> WALKING (0.93)" in lines
    assert ("watch-1: WALKING since 09:01:01 (0.95); last window WALKING 0.95 at 09:01:06; "
            "today: SITTING 1h01m, WALKING 6s") in lines
    assert "watch-1 day 2026-12-05 finished: SITTING 59m59s" in lines
    chosen = io.StringIO()
    watch([records()], WatchBoard(), chosen=["watch-2"], top=10, plain=True,
          interval_s=3600.0, out=chosen)
    assert chosen.getvalue() == ""  # no change of watch-2, no status line due yet


def test_the_live_view_redraws_the_table_on_a_terminal() -> None:
    console = Console(record=True, force_terminal=True, width=160)
    watch([records()[:2], [], records()[2:]], WatchBoard(), chosen=[], top=10, plain=False,
          interval_s=1.0, console=console)
    text = console.export_text()
    assert "har-stream watch — 2 devices" in text and "09:01:01 SITTING → WALKING" in text


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (45, 725, 3725)] == ["45s", "12m05s", "1h02m"]


def test_watch_is_a_subcommand() -> None:
    args = build_parser().parse_args(["watch", "--devices", "a,b", "--plain"])
    assert args.devices == "a,b" and args.plain and args.func.__module__ == "har_stream.tools.watch"
