"""`har-stream watch`: a live view of devices, read from the output topics only.

Per device: the current (smoothed) activity and since when, its confidence, the latest raw
window, the most recent changes and today's totals, from `har.devices`,
`har.activity-changes` and `har.daily-totals` through the subscriber client. Chosen devices
(`--devices`), or the busiest ones (most windows today). On a terminal a rich table redraws
in place; otherwise (piped, logged) it prints plain lines: one per change and finished day,
and every `--interval` seconds one status line per shown device.

Everything shown comes from the records (stream times, formatted in UTC shifted by
`--utc-offset-minutes`), so `WatchBoard` is pure and the tests render it from fed records.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from har_stream.core.subscriber_records import ActivityChange, DayTotals, DeviceStatus

DEFAULT_TOPICS = ("har.activity-changes", "har.devices", "har.daily-totals")


def clock(t_ms: int, offset_minutes: int = 0) -> str:
    """Stream time as HH:MM:SS in UTC shifted by the offset."""
    moment = dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC) + dt.timedelta(
        minutes=offset_minutes)
    return moment.strftime("%H:%M:%S")


def duration(seconds: float) -> str:
    """1h02m, 12m05s or 45s."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def totals_text(day: DayTotals | None, most: int = 3) -> str:
    """The day's largest activities, e.g. `SITTING 1h02m, WALKING 12m05s`."""
    if day is None:
        return ""
    ranked = sorted(((s, name) for name, s in day.seconds.items() if s > 0), reverse=True)
    return ", ".join(f"{name} {duration(s)}" for s, name in ranked[:most])


@dataclass
class DeviceView:
    status: DeviceStatus | None = None
    changes: deque[ActivityChange] = field(default_factory=deque)
    closed: DayTotals | None = None

    def windows_today(self) -> int:
        today = self.status.today if self.status is not None else None
        return sum(today.windows.values()) if today is not None else 0


class WatchBoard:
    """What the view knows, per device, from the records fed to it."""

    def __init__(self, recent: int = 3, offset_minutes: int = 0) -> None:
        self.recent = recent
        self.offset = offset_minutes
        self.devices: dict[str, DeviceView] = {}

    def add(self, record: object) -> list[str]:
        """Take one record; return the plain lines it is worth (changes and finished days)."""
        if isinstance(record, DeviceStatus):
            self._view(record.device_id).status = record
        elif isinstance(record, ActivityChange):
            view = self._view(record.device_id)
            view.changes.append(record)
            while len(view.changes) > self.recent:
                view.changes.popleft()
            return [self.change_line(record)]
        elif isinstance(record, DayTotals) and record.closed:
            self._view(record.device_id).closed = record
            return [f"{record.device_id} day {record.day} finished: {totals_text(record, 6)}"]
        return []

    def shown(self, chosen: Sequence[str] = (), top: int = 10) -> list[str]:
        """The chosen devices, or the `top` busiest: most windows today, then by id."""
        if chosen:
            return list(chosen)
        ranked = sorted(self.devices, key=lambda d: (-self.devices[d].windows_today(), d))
        return ranked[:top]

    def change_line(self, change: ActivityChange) -> str:
        before = change.previous or "-"
        return (f"{change.device_id} {clock(change.started_ms, self.offset)} {before} -> "
                f"{change.activity} ({change.confidence:.2f})")

    def status_line(self, device_id: str) -> str:
        status = self._view(device_id).status
        if status is None:
            return f"{device_id}: no status yet"
        since = "" if status.since_ms is None else f" since {clock(status.since_ms, self.offset)}"
        return (f"{device_id}: {status.activity or '-'}{since} ({status.confidence:.2f}); "
                f"last window {status.last_activity} {status.last_confidence:.2f} at "
                f"{clock(status.updated_ms, self.offset)}; today: {totals_text(status.today)}")

    def table(self, chosen: Sequence[str] = (), top: int = 10) -> Any:
        from rich.table import Table

        table = Table(title=f"har-stream watch — {len(self.devices)} devices", expand=False)
        for column in ("device", "activity", "since", "conf.", "last window", "recent changes",
                       "today"):
            table.add_column(column, justify="right" if column == "conf." else "left")
        for device_id in self.shown(chosen, top):
            view = self._view(device_id)
            status = view.status
            changes = "\n".join(f"{clock(c.started_ms, self.offset)} {c.previous or '-'} → "
                                f"{c.activity}" for c in reversed(view.changes))
            if status is None:
                table.add_row(device_id, "-", "", "", "", changes, "")
                continue
            since = "" if status.since_ms is None else clock(status.since_ms, self.offset)
            table.add_row(device_id, status.activity or "-", since, f"{status.confidence:.2f}",
                          f"{status.last_activity} {status.last_confidence:.2f}", changes,
                          totals_text(status.today))
        return table

    def _view(self, device_id: str) -> DeviceView:
        view = self.devices.get(device_id)
        if view is None:
            view = self.devices[device_id] = DeviceView()
        return view


def watch(batches: Iterable[list[Any]], board: WatchBoard, chosen: Sequence[str], top: int,
          plain: bool, interval_s: float, out: Any = sys.stdout, console: Any = None) -> None:
    """Feed each poll's records to the board and show them, until the batches end (an empty
    batch is a poll without records: the view still gets its status lines)."""
    if plain:
        last = time.monotonic()
        for batch in batches:
            for record in batch:
                for line in board.add(record):
                    if not chosen or line.split(" ", 1)[0] in chosen:
                        print(line, file=out, flush=True)
            if time.monotonic() - last >= interval_s:
                last = time.monotonic()
                for device_id in board.shown(chosen, top):
                    print(board.status_line(device_id), file=out, flush=True)
        return
    from rich.live import Live

    with Live(board.table(chosen, top), refresh_per_second=4, console=console) as live:
        for batch in batches:
            for record in batch:
                board.add(record)
            if batch:
                live.update(board.table(chosen, top))


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "watch", help="live view of devices: current activity, recent changes, today's totals",
        description="Current activity, recent changes and today's totals of chosen devices "
        "(or the busiest), read from the output topics only; a live table on a terminal, "
        "plain lines otherwise.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bootstrap-servers",
                   default=os.environ.get("HAR_BOOTSTRAP_SERVERS", "localhost:9092"),
                   help="Kafka cluster (env HAR_BOOTSTRAP_SERVERS)")
    p.add_argument("--devices", default="", help="comma-separated devices to show (default: "
                   "the busiest)")
    p.add_argument("--top", type=int, default=10, help="busiest devices shown without --devices")
    p.add_argument("--recent", type=int, default=3, help="recent changes shown per device")
    p.add_argument("--topics", default=",".join(DEFAULT_TOPICS),
                   help="changes, devices and daily-totals topics, comma-separated, in order")
    p.add_argument("--group", default=None, help="consumer group (default: none, read the "
                   "topics from the beginning)")
    p.add_argument("--utc-offset-minutes", type=int, default=0, help="time zone of the clock")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    p.add_argument("--interval", type=float, default=10.0, help="plain mode: seconds between "
                   "status lines")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from har_stream.client import subscribe

    names = [t.strip() for t in args.topics.split(",")]
    if len(names) != 3:
        raise SystemExit("--topics needs three names: changes, devices, daily totals")
    kinds = dict(zip(names, ("changes", "devices", "daily"), strict=True))
    chosen = [d for d in args.devices.split(",") if d]
    board = WatchBoard(args.recent, args.utc_offset_minutes)
    plain = args.plain or not sys.stdout.isatty()
    try:
        with subscribe(args.bootstrap_servers, topics=kinds, group=args.group) as records:
            watch(records.batches(), board, chosen, args.top, plain, args.interval)
    except KeyboardInterrupt:
        pass
    return 0
