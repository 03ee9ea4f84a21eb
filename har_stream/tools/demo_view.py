"""The demo's live view: results consumed from the activity topic, drawn as a table.

Apart from the orchestration because it is the demo's only screen: it owns the terminal
(a redrawn table on a terminal, a progress line every 5 s otherwise) and decides when the
show is over (every expected window arrived, the grace period after the replay ran out, or
the recognizer died).
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from typing import Any

from har_stream.core.records import ACTIVITIES, HOP, WINDOW
from har_stream.tools.demo_score import Scoreboard


def render(board: Scoreboard, sent: dict[str, int], metrics_url: str, done: bool) -> Any:
    from rich.table import Table

    elapsed = max(time.monotonic() - board.started, 1e-9)
    samples = sum(sent.values())
    title = (f"har-stream demo — {elapsed:5.1f} s — {samples:,} samples sent "
             f"({samples / elapsed:,.0f}/s) — {len(board.seen):,} windows "
             f"({len(board.seen) / elapsed:,.0f}/s) — accuracy "
             f"{100 * board.accuracy:.1f} % of {board.labelled:,}"
             + (" — replay finished" if done else ""))
    table = Table(title=title, caption=f"metrics: {metrics_url}", expand=False)
    for column in ("device", "activity", "confidence", "true activity", "windows"):
        table.add_column(column, justify="right" if column in ("confidence", "windows")
                         else "left")
    for device_id in sorted(board.devices):
        view = board.devices[device_id]
        style = ("green" if view.activity == view.truth
                 else "red" if view.truth in ACTIVITIES else "")
        table.add_row(device_id, view.activity, f"{view.confidence:.2f}", view.truth,
                      str(view.windows), style=style)
    return table


def watch(reader: Any, board: Scoreboard, sent: dict[str, int],
          replay_done: threading.Event, metrics_url: str, alive: Any = lambda: True,
          grace_s: float = 15.0) -> None:
    """Consume results into the scoreboard and redraw until the replay is done and every
    expected window arrived (or `grace_s` after the replay ended, or the recognizer died)."""
    from rich.console import Console
    from rich.live import Live

    from har_stream.core.codec import decode_result

    console = Console(stderr=False)
    finished_at: float | None = None
    last_print = 0.0
    with ExitStack() as stack:
        live = None
        if console.is_terminal:
            live = stack.enter_context(Live(console=console, refresh_per_second=4))
        while True:
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    if record.value is not None:
                        board.add(decode_result(record.value))
            if not alive():
                break
            done = replay_done.is_set()
            if live is not None:
                live.update(render(board, sent, metrics_url, done))
            elif time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                print(f"{len(board.seen):,} windows so far; {board.summary()}", flush=True)
            if done:
                finished_at = finished_at or time.monotonic()
                want = sum(max((n - WINDOW) // HOP + 1, 0) for n in sent.values())
                if len(board.seen) >= want or time.monotonic() - finished_at > grace_s:
                    break
