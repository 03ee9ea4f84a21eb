"""The rig over time: latency and CPU interval by interval, at a constant load.

`har-stream bench e2e` measures each level over one window. This benchmark runs one long
level (1,000 devices, the shipped settings, the same broker, recognizer and simulator) and
reads, every 15 s, the latency histogram and the CPU of each process: where latency drifts
while the load stays constant, the process whose CPU drifts with it is the one that slows
down. It runs once with the rig's one partition per topic and once with the service's default
of six, one after the other: the embedded broker's cost per fetch grows with the batches
stored per partition, and six partitions hold six times as many.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from har_stream.bench.e2e_rig import (
    RIG_PARTITIONS,
    SIX_PARTITIONS,
    WARMUP_S,
    Observe,
    RigProcess,
    cores_used,
    process_cpu,
    process_ids,
    run_observed,
)
from har_stream.bench.measure import load
from har_stream.bench.report import provenance, table, write_section
from har_stream.bench.scraped_metrics import latency_ms, scrape, stage_shares
from har_stream.tools.broker import EmbeddedBroker

DEVICES = 1_000
INTERVAL_S = 15.0
INTERVALS = 8
QUICK_INTERVALS = 2
LAYOUTS = (RIG_PARTITIONS, SIX_PARTITIONS)


@dataclass(frozen=True, slots=True)
class Interval:
    end_s: float  # since the end of the warm-up
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu: dict[str, float]  # cores used over the interval, by process
    poll_share: float  # of the recognizer loop's wall time, in poll (mostly waiting for data)


def observe_intervals(interval_s: float) -> Observe[list[Interval]]:
    """An observer for `run_observed`: one Interval per `interval_s` over the window."""

    def observe(devices: int, variant: str, window_s: float, url: str, recognizer: RigProcess,
                simulator: RigProcess, broker: EmbeddedBroker) -> list[Interval]:
        pids = process_ids(recognizer, simulator, broker)
        before, cpu_before, started = scrape(url), process_cpu(pids), time.monotonic()
        intervals = []
        while time.monotonic() - started < window_s - 1e-6:
            time.sleep(interval_s)
            now, cpu_now = scrape(url), process_cpu(pids)
            intervals.append(Interval(
                time.monotonic() - started, *latency_ms(before, now),
                cores_used(cpu_before, cpu_now, interval_s),
                stage_shares(before, now, interval_s).get("poll", 0.0)))
            before, cpu_before = now, cpu_now
        return intervals

    return observe


def drift_table(runs: dict[str, list[Interval]]) -> str:
    """One row per interval of each run, the runs named by their topic layout."""
    return table(["partitions", "interval ends at", "latency ms p50 / p95 / p99",
                  "CPU cores: recognizer / simulator / broker", "recognizer loop in poll"],
                 [[layout, f"{iv.end_s:.0f} s",
                   f"{iv.p50_ms:.0f} / {iv.p95_ms:.0f} / {iv.p99_ms:.0f}",
                   " / ".join(f"{iv.cpu[k]:.2f}" for k in ("recognizer", "simulator", "broker")),
                   f"{100 * iv.poll_share:.0f} %"]
                  for layout, intervals in runs.items() for iv in intervals])


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    count = QUICK_INTERVALS if quick else INTERVALS
    runs = {}
    with tempfile.TemporaryDirectory(prefix="har-bench-drift-") as tmp:
        for layout in LAYOUTS:
            runs[layout[-1]] = run_observed(DEVICES, count * INTERVAL_S, WARMUP_S, Path(tmp),
                                            layout, observe_intervals(INTERVAL_S))
    text = drift_table(runs)
    print(text)
    if write:
        body = (f"{provenance('har-stream bench drift --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                f"Two runs of the end-to-end rig (embedded broker, `har-stream run`, "
                f"`har-stream simulate`, as in the section above) at a constant {DEVICES:,} "
                "devices, one with the rig's topics of one partition, then one with the "
                f"service's default of six; after the warm-up, every {INTERVAL_S:.0f} s: the "
                "latency quantiles of that interval (`har_end_to_end_latency_seconds`), the "
                "CPU of each process, and the share of the recognizer loop's wall time spent "
                "in poll, mostly waiting for the broker's fetch response.\n\n" + text)
        write_section("The end-to-end rig over time", body)
