"""End to end through a broker: how many real-time devices one recognizer process sustains.

For each device count, on this machine: the embedded broker, `har-stream run` (one process,
metrics endpoint) and `har-stream simulate` (another process, paced at 50 Hz, devices spread
evenly over one message period, 64-sample messages) run side by side. After a warm-up the
benchmark reads the recognizer's metrics every second for the measurement window:

- lag: `har_consumer_lag_messages` summed over partitions; the level is sustained when the
  lag at the end is no more than one second of input above the lag at the start (it does not
  grow) and the messages consumed per second match what real time asks for (else the
  simulator, not the recognizer, fell behind);
- latency: `har_end_to_end_latency_seconds` (broker timestamp of a window's last message →
  its result acknowledged), p50/p95/p99 interpolated within histogram buckets over the
  window, as Prometheus' `histogram_quantile` does;
- CPU: cores used by the recognizer, the simulator and the broker (from /proc).

Topics: one partition (`e2e_rig.RIG_PARTITIONS`, why in `e2e_rig`); six partitions, the
service's default, are measured side by side as a variant.

Here: the levels, what one level measures and the summary; the processes are `e2e_rig`'s,
the metrics arithmetic `scraped_metrics`'s.

Levels: 100 and 1,000 devices for latency (15-s windows), with the shipped settings
(librdkafka consumer and producer, fetch wait 25 ms, 5-s checkpoints), with the kafka-python
producer, with the kafka-python consumer, with 1-s checkpoints and with six partitions; then,
with the shipped settings, a search up 1,000, 2,000, 3,000, 4,000, 5,000, 6,000, 8,000
devices with 60-s windows, stopping at the first level not sustained, and the largest level
sustained again with the kafka-python consumer. A full run takes 15 to 19 minutes.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from har_stream.bench.e2e_rig import (
    MESSAGE,
    SIX_PARTITIONS,
    WARMUP_S,
    RigProcess,
    cores_used,
    process_cpu,
    process_ids,
    run_observed,
)
from har_stream.bench.measure import load
from har_stream.bench.report import provenance, table, write_section
from har_stream.bench.scraped_metrics import latency_ms, scrape, stage_shares, total
from har_stream.core.records import RATE_HZ
from har_stream.tools.broker import EmbeddedBroker

LATENCY_LEVELS = (100, 1_000)
SEARCH_LEVELS = (1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000)
KAFKA_PYTHON_CONSUMER = ("--consumer-client", "kafka-python")
VARIANTS: tuple[tuple[str, ...], ...] = (
    (),  # as shipped
    ("--producer-client", "kafka-python"),  # the output client before librdkafka
    KAFKA_PYTHON_CONSUMER,  # the input client before librdkafka
    ("--commit-interval-s", "1"),  # the checkpoint period before 5 s
    SIX_PARTITIONS,  # the service's default topic layout
)
"""Service settings measured at the latency levels: as shipped, producing or consuming with
kafka-python instead of librdkafka, with checkpoints (snapshots of every touched device, commit)
every second instead of every 5 s, and with the topics in six partitions instead of the rig's
one. The kafka-python consumer is also run at the largest level sustained as shipped."""
LATENCY_WINDOW_S = 15.0
SEARCH_WINDOW_S = 60.0
QUICK_WINDOW_S = 6.0
QUICK_WARMUP_S = 5.0


@dataclass(frozen=True, slots=True)
class Level:
    """What one level of the rig gave: sustained or not, and at what latency and CPU."""

    devices: int
    variant: str  # "shipped", or the settings changed
    window_s: float
    sustained: bool
    lag_start: float  # messages
    lag_end: float
    input_per_s: float  # messages the simulator must send per second
    consumed_per_s: float
    sent_fraction: float  # consumed over what real time asks for
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_recognizer: float  # cores
    cpu_simulator: float
    cpu_broker: float
    cpu_loop: float  # cores used by the recognizer's loop thread
    stages: dict[str, float]  # share of the recognizer's wall time in each loop stage
    note: str = ""


def run_level(devices: int, window_s: float, warmup_s: float, workdir: Path,
              options: tuple[str, ...] = (), checkout: Path | None = None) -> Level:
    """One device count: broker, recognizer (from `checkout`, if given: see `e2e_rig`) and
    simulator for warm-up + window seconds."""
    return run_observed(devices, window_s, warmup_s, workdir, options, observe_level,
                        checkout)


def observe_level(devices: int, variant: str, window_s: float, url: str,
                  recognizer: RigProcess, simulator: RigProcess, broker: EmbeddedBroker
                  ) -> Level:
    """The rig's `Observe` for one level: the metrics every second over the window, each
    process's CPU; sustained = the lag does not grow and real time was kept."""
    pids = process_ids(recognizer, simulator, broker)
    cpu_start = process_cpu(pids)
    start, started = scrape(url), time.monotonic()
    lags = []
    while time.monotonic() - started < window_s:
        time.sleep(1.0)
        lags.append((time.monotonic() - started, total(scrape(url), "har_consumer_lag_messages")))
    end, elapsed, cpu_end = scrape(url), time.monotonic() - started, process_cpu(pids)
    cpu = cores_used(cpu_start, cpu_end, elapsed)
    input_per_s = devices / (MESSAGE / RATE_HZ)
    consumed = (total(end, "har_messages_consumed_total")
                - total(start, "har_messages_consumed_total")) / elapsed
    edge = max(1, len(lags) // 6)  # compare the first and last sixth of the window
    lag_start = sum(v for _, v in lags[:edge]) / edge
    lag_end = sum(v for _, v in lags[-edge:]) / edge
    grows = lag_end > lag_start + input_per_s
    # When the lag holds, everything sent was consumed: a consumption below the paced rate
    # then means the simulator could not send at real time (the machine, not the recognizer).
    sent_fraction = consumed / input_per_s
    slow_simulator = not grows and sent_fraction < 0.95
    p50, p95, p99 = latency_ms(start, end)
    note = ("lag grows" if grows else "") + ("; simulator behind" if slow_simulator else "")
    stages = {stage: round(share, 3) for stage, share in stage_shares(start, end, elapsed).items()}
    return Level(devices, variant, window_s, not grows and not slow_simulator, lag_start,
                 lag_end, input_per_s, consumed, sent_fraction, p50, p95, p99,
                 cpu["recognizer"], cpu["simulator"], cpu["broker"], cpu["loop"], stages,
                 note.strip("; "))



def run_all(quick: bool) -> list[Level]:
    """The latency levels, shipped and tuned, then the search (see the module doc)."""
    warmup_s = QUICK_WARMUP_S if quick else WARMUP_S
    results = []
    with tempfile.TemporaryDirectory(prefix="har-bench-e2e-") as tmp:
        def level(devices: int, window_s: float, options: tuple[str, ...] = ()) -> Level:
            try:
                got = run_level(devices, window_s, warmup_s, Path(tmp), options)
            except RuntimeError as exc:  # e.g. the service failed to start: report, go on
                nan = math.nan
                got = Level(devices, " ".join(options) or "shipped", window_s, False, nan, nan,
                            devices / (MESSAGE / RATE_HZ), nan, nan, nan, nan, nan, nan, nan,
                            nan, nan, {}, f"failed: {str(exc).splitlines()[0][:80]}")
            results.append(got)
            print(got, flush=True)
            return got

        if quick:
            level(1_000, QUICK_WINDOW_S)
            return results
        for options in VARIANTS:  # every variant over the same short window, side by side
            for devices in LATENCY_LEVELS:
                level(devices, LATENCY_WINDOW_S, options)
        best = None
        for devices in SEARCH_LEVELS:
            if not level(devices, SEARCH_WINDOW_S).sustained:
                break
            best = devices
        if best is not None:  # the consumer client that set the limit before, side by side
            level(best, SEARCH_WINDOW_S, KAFKA_PYTHON_CONSUMER)
    return results


def summarize(levels: list[Level]) -> tuple[str, str]:
    """The table of levels and the verdict line."""
    shipped = [lv for lv in levels if lv.variant == "shipped"]
    sustained = [lv for lv in shipped if lv.sustained]
    rows = [[f"{lv.devices:,}", lv.variant,
             f"{lv.window_s:.0f} s", "yes" if lv.sustained else f"no ({lv.note})",
             f"{lv.input_per_s:,.0f}", f"{lv.consumed_per_s:,.0f}",
             f"{lv.lag_start:,.0f} → {lv.lag_end:,.0f}",
             f"{lv.p50_ms:.0f} / {lv.p95_ms:.0f} / {lv.p99_ms:.0f}",
             f"{lv.cpu_recognizer:.2f} ({lv.cpu_loop:.2f}) / {lv.cpu_simulator:.2f} / "
             f"{lv.cpu_broker:.2f}",
             f"{1e6 * lv.cpu_recognizer / lv.consumed_per_s:,.0f}" if lv.consumed_per_s else "",
             ", ".join(f"{k} {100 * v:.0f}" for k, v in sorted(lv.stages.items(),
                                                               key=lambda kv: -kv[1]))]
            for lv in levels]
    text = table(["devices at 50 Hz", "settings", "window", "sustained", "messages/s in",
                  "consumed/s", "lag (messages) start → end", "latency ms p50 / p95 / p99",
                  "CPU cores: recognizer (its loop thread) / simulator / broker",
                  "recognizer CPU µs per message",
                  "recognizer loop: % of wall time by stage"], rows)
    if sustained:
        best = max(sustained, key=lambda lv: lv.devices)
        verdict = (f"Largest level sustained: {best.devices:,} devices "
                   f"(over a {best.window_s:.0f}-s window).")
    else:
        verdict = "No level sustained."
    busy = [lv for lv in shipped if lv.devices >= 1_000 and lv.consumed_per_s > 0]
    if busy:
        per_message = min(lv.cpu_recognizer / lv.consumed_per_s for lv in busy)
        per_device = per_message * RATE_HZ / MESSAGE
        verdict += (f" Load-independent estimate: the recognizer needs {1e6 * per_message:,.0f} "
                    f"µs of CPU per message, so one whole core would serve about "
                    f"{1 / per_device:,.0f} devices at 50 Hz.")
    return text, verdict


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    levels = run_all(quick)
    text, verdict = summarize(levels)
    print(text + "\n" + verdict)
    if write:
        body = (f"{provenance('har-stream bench e2e --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                "Embedded broker (tansu, in memory), one `har-stream run` process (shipped "
                "model and settings) and `har-stream simulate` in another process, all on "
                "this machine. Topics in one partition: the embedded broker's cost per fetch "
                "grows with the batches stored in each partition it reads (section "
                "\"The embedded broker's cost per fetch\"), so the rig keeps them in one; "
                "rows `--partitions 6` use the service's default of six. "
                f"Devices replay HAPT recordings at 50 Hz in {MESSAGE}-sample "
                "messages, spread evenly over one message period. Each level: warm-up, then "
                "the metrics read every second over the window. Sustained = the consumer lag "
                "did not grow by more than one second of input and everything sent at real "
                "time was consumed. Latency: `har_end_to_end_latency_seconds` (broker "
                "timestamp of a window's last message → its result acknowledged), quantiles "
                "interpolated within the histogram's buckets (…, 50, 75, 100, 150, 200, 250, 500 "
                "ms, …). "
                "Rows `--producer-client kafka-python`: output produced with kafka-python "
                "instead of the shipped librdkafka (the simulator produces with librdkafka in "
                "every row); `--consumer-client kafka-python`: sensor messages consumed with "
                "kafka-python instead of the shipped librdkafka; "
                "`--commit-interval-s 1`: checkpoints (snapshots of every touched "
                "device, commit) every second instead of every 5 s. "
                "Targets: ≥ 5,000 devices in real time; p99 ≤ 100 ms at 1,000 devices.\n\n"
                + text + "\n\n" + verdict)
        write_section("End to end through the broker", body)
