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

Topics: the recognizer creates them with one partition (`RIG_PARTITIONS`). The embedded
broker lists every batch stored in a partition on each fetch of it (`har-stream bench broker`),
so its cost per fetch grows with the log and with the number of partitions the producers
spread their batches over; with the service's default of six partitions that growth, not the
recognizer, set the latency of the 60-s windows. Six partitions are measured side by side as
a variant.

Levels: 100 and 1,000 devices for latency (15-s windows), with the shipped settings
(librdkafka consumer and producer, fetch wait 25 ms, 5-s checkpoints), with the kafka-python
producer, with the kafka-python consumer, with 1-s checkpoints and with six partitions; then,
with the shipped settings, a search up 1,000, 2,000, 3,000, 4,000, 5,000, 6,000, 8,000
devices with 60-s windows, stopping at the first level not sustained, and the largest level
sustained again with the kafka-python consumer. A full run takes 15 to 19 minutes.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from har_stream.bench.measure import cpu_seconds, load
from har_stream.bench.report import provenance, table, write_section
from har_stream.core.records import HOP, RATE_HZ
from har_stream.tools.broker import EmbeddedBroker, die_with_parent, free_port, stop_process

LATENCY_LEVELS = (100, 1_000)
SEARCH_LEVELS = (1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000)
RIG_PARTITIONS = ("--partitions", "1")
"""Partitions of the topics the recognizer creates in the rig (see the module docstring)."""
SIX_PARTITIONS = ("--partitions", "6")
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
MESSAGE = HOP  # samples per message: one window per message in the steady state
LATENCY_WINDOW_S = 15.0
SEARCH_WINDOW_S = 60.0
WARMUP_S = 8.0
QUICK_WINDOW_S = 6.0
QUICK_WARMUP_S = 5.0
LATENCY = "har_end_to_end_latency_seconds"
T = TypeVar("T")
_SAMPLE_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


@dataclass(frozen=True, slots=True)
class Level:
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


def scrape(url: str) -> dict[str, dict[str, float]]:
    """The metrics served at `url` (see `parse_metrics`)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse_metrics(response.read().decode())


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Prometheus text format → {metric name: {label string: value}}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match and not line.startswith("#"):
            out.setdefault(match.group(1), {})[match.group(2) or ""] = float(match.group(3))
    return out


def total(metrics: dict[str, dict[str, float]], name: str) -> float:
    return sum(metrics.get(name, {}).values())


def buckets(metrics: dict[str, dict[str, float]], name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram without labels other than `le`."""
    pairs = []
    for labels, count in metrics.get(f"{name}_bucket", {}).items():
        bound = re.search(r'le="([^"]+)"', labels)
        if bound:
            pairs.append((math.inf if bound.group(1) == "+Inf" else float(bound.group(1)), count))
    return sorted(pairs)


def histogram_quantile(q: float, start: list[tuple[float, float]],
                       end: list[tuple[float, float]]) -> float:
    """Quantile of the observations made between two scrapes, linear within a bucket."""
    before = dict(start)
    counts = [(bound, count - before.get(bound, 0.0)) for bound, count in end]
    if not counts or counts[-1][1] <= 0:
        return math.nan
    rank = q * counts[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


class _Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(command, stdout=self._file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_process(self.popen, timeout_s)
        self._file.close()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


Observe = Callable[[int, str, float, str, "_Process", "_Process", EmbeddedBroker], T]
"""What a run measures once warm: (devices, variant, window_s, metrics url, recognizer,
simulator, broker) → its result."""


def run_level(devices: int, window_s: float, warmup_s: float, workdir: Path,
              options: tuple[str, ...] = ()) -> Level:
    """One device count: broker, recognizer and simulator for warm-up + window seconds."""
    return run_observed(devices, window_s, warmup_s, workdir, options, _observe)


def run_observed(devices: int, window_s: float, warmup_s: float, workdir: Path,
                 options: tuple[str, ...], observe: Observe[T]) -> T:
    """Broker, recognizer and simulator at `devices`; once warm, `observe` measures."""
    python = [sys.executable, "-m", "har_stream.cli"]
    period_s = MESSAGE / RATE_HZ
    with EmbeddedBroker() as broker:
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        recognizer = _Process(python + [
            "run", "--bootstrap-servers", broker.bootstrap_servers,
            "--metrics-address", f"127.0.0.1:{port}", "--group-id", f"bench-{devices}",
            "--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000",
            "--log-level", "WARNING", *RIG_PARTITIONS, *options], workdir / f"run-{devices}.log")
        simulator = None
        try:
            _wait_for(lambda: total(scrape(url), "har_assigned_partitions") > 0, 60.0,
                      recognizer)
            replay_s = warmup_s + window_s + 10.0
            simulator = _Process(python + [
                "simulate", "--bootstrap-servers", broker.bootstrap_servers,
                "--devices", str(devices), "--users", "all", "--speed", "1",
                "--samples-per-message", str(MESSAGE), "--stagger-s", f"{period_s / devices:.9f}",
                "--max-samples", str(int(replay_s * RATE_HZ) + MESSAGE),
                "--duration-s", f"{replay_s:.1f}", "--no-progress"],
                workdir / f"simulate-{devices}.log")
            _wait_for(lambda: total(scrape(url), "har_messages_consumed_total") > 0, 120.0,
                      simulator)
            time.sleep(warmup_s)
            variant = " ".join(options) or "shipped"
            return observe(devices, variant, window_s, url, recognizer, simulator, broker)
        finally:
            if simulator is not None:
                simulator.stop()
            recognizer.stop()


def _observe(devices: int, variant: str, window_s: float, url: str,
             recognizer: _Process,
             simulator: _Process, broker: EmbeddedBroker) -> Level:
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


def latency_ms(start: dict[str, dict[str, float]], end: dict[str, dict[str, float]]
               ) -> tuple[float, float, float]:
    """p50, p95, p99 of the end-to-end latency between two scrapes, in ms."""
    before, after = buckets(start, LATENCY), buckets(end, LATENCY)
    p50, p95, p99 = (1e3 * histogram_quantile(q, before, after) for q in (0.5, 0.95, 0.99))
    return p50, p95, p99


def stage_seconds(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Seconds the recognizer loop has spent in each stage so far."""
    spent: dict[str, float] = {}
    for labels, value in metrics.get("har_stage_duration_seconds_sum", {}).items():
        stage = re.search(r'stage="([^"]+)"', labels)
        if stage:
            spent[stage.group(1)] = spent.get(stage.group(1), 0.0) + value
    return spent


def stage_shares(start: dict[str, dict[str, float]], end: dict[str, dict[str, float]],
                 elapsed_s: float) -> dict[str, float]:
    """Share of `elapsed_s` the recognizer loop spent in each stage between two scrapes
    (the stages it spent any time in)."""
    before = stage_seconds(start)
    return {stage: (spent - before.get(stage, 0.0)) / elapsed_s
            for stage, spent in stage_seconds(end).items() if spent > before.get(stage, 0.0)}


def cores_used(cpu_start: dict[str, float], cpu_end: dict[str, float], elapsed_s: float
               ) -> dict[str, float]:
    """Cores each process used between two `process_cpu` readings `elapsed_s` apart."""
    return {name: (cpu_end[name] - cpu_start[name]) / elapsed_s for name in cpu_start}


def process_cpu(pids: dict[str, tuple[int, int | None]]) -> dict[str, float]:
    """CPU seconds used so far by each process (or thread) of `process_ids`."""
    return {name: cpu_seconds(pid, thread) for name, (pid, thread) in pids.items()}


def process_ids(recognizer: _Process, simulator: _Process, broker: EmbeddedBroker
                ) -> dict[str, tuple[int, int | None]]:
    """The rig's processes by role, for their CPU time, and the recognizer's loop thread
    (its main thread: the one whose time limits the devices it serves)."""
    pid = recognizer.popen.pid
    return {"recognizer": (pid, None), "loop": (pid, pid),
            "simulator": (simulator.popen.pid, None), "broker": (broker.pid, None)}


def _wait_for(ready: object, timeout_s: float, process: _Process) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():  # type: ignore[operator]
                return
        except OSError:
            pass
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.log.name} exited early:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout_s:.0f} s:\n{process.tail()}")
        time.sleep(0.25)


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
