"""The end-to-end rig: embedded broker, `har-stream run` and `har-stream simulate` as processes.

Every end-to-end benchmark (`bench e2e`, `bench drift`, the before/after of
`bench.revisions e2e`) measures the same thing: one recognizer process fed in real time by a
simulator process through the embedded broker on this machine. The rig starts the three,
waits until the recognizer has joined and consumes, lets it warm up, then hands the running
rig to an observer (what is measured differs per benchmark) and stops everything whatever
happens. The recognizer may come from another checkout of the code (`checkout`): it then runs
in that tree with that tree alone on its import path, while the broker and simulator stay the
same, so only the code under test differs between runs.

Topics: the recognizer creates them with one partition (`RIG_PARTITIONS`). The embedded
broker lists every batch stored in a partition on each fetch of it (`har-stream bench broker`),
so its cost per fetch grows with the log and with the number of partitions the producers
spread their batches over; with the service's default of six partitions that growth, not the
recognizer, set the latency of the 60-s windows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from har_stream.bench.measure import cpu_seconds
from har_stream.bench.scraped_metrics import scrape, total
from har_stream.core.records import HOP, RATE_HZ
from har_stream.tools.broker import EmbeddedBroker, die_with_parent, free_port, stop_process

RIG_PARTITIONS = ("--partitions", "1")
"""Partitions of the topics the recognizer creates in the rig (see the module docstring)."""
SIX_PARTITIONS = ("--partitions", "6")
MESSAGE = HOP  # samples per message: one window per message in the steady state
WARMUP_S = 8.0
T = TypeVar("T")


class RigProcess:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log = log
        self._file = log.open("wb")
        self.popen = subprocess.Popen(command, stdout=self._file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                                      env=env, cwd=cwd)

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_process(self.popen, timeout_s)
        self._file.close()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


Observe = Callable[[int, str, float, str, RigProcess, RigProcess, EmbeddedBroker], T]
"""What a run measures once warm: (devices, variant, window_s, metrics url, recognizer,
simulator, broker) → its result."""


def recognizer_from(checkout: Path | None) -> tuple[dict[str, str] | None, Path | None]:
    """Environment and working directory that make `python -m har_stream.cli` import the
    `har_stream` of `checkout` (None: this process's own, inherited). Both are needed:
    `python -m` puts the working directory first on the import path, before PYTHONPATH."""
    if checkout is None:
        return None, None
    root = checkout.resolve()
    return {**os.environ, "PYTHONPATH": str(root)}, root


def run_observed(devices: int, window_s: float, warmup_s: float, workdir: Path,
                 options: tuple[str, ...], observe: Observe[T],
                 checkout: Path | None = None) -> T:
    """Broker, recognizer (from `checkout`, if given) and simulator at `devices`; once warm,
    `observe` measures."""
    python = [sys.executable, "-m", "har_stream.cli"]
    period_s = MESSAGE / RATE_HZ
    env, cwd = recognizer_from(checkout)
    with EmbeddedBroker() as broker:
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        recognizer = RigProcess(python + [
            "run", "--bootstrap-servers", broker.bootstrap_servers,
            "--metrics-address", f"127.0.0.1:{port}", "--group-id", f"bench-{devices}",
            "--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000",
            "--log-level", "WARNING", *RIG_PARTITIONS, *options], workdir / f"run-{devices}.log",
            env, cwd)
        simulator = None
        try:
            wait_for(lambda: total(scrape(url), "har_assigned_partitions") > 0, 60.0,
                     recognizer)
            replay_s = warmup_s + window_s + 10.0
            simulator = RigProcess(python + [
                "simulate", "--bootstrap-servers", broker.bootstrap_servers,
                "--devices", str(devices), "--users", "all", "--speed", "1",
                "--samples-per-message", str(MESSAGE), "--stagger-s", f"{period_s / devices:.9f}",
                "--max-samples", str(int(replay_s * RATE_HZ) + MESSAGE),
                "--duration-s", f"{replay_s:.1f}", "--no-progress"],
                workdir / f"simulate-{devices}.log")
            wait_for(lambda: total(scrape(url), "har_messages_consumed_total") > 0, 120.0,
                     simulator)
            time.sleep(warmup_s)
            variant = " ".join(options) or "shipped"
            return observe(devices, variant, window_s, url, recognizer, simulator, broker)
        finally:
            if simulator is not None:
                simulator.stop()
            recognizer.stop()


def wait_for(ready: Callable[[], bool], timeout_s: float, process: RigProcess) -> None:
    """Until `ready()` (a scrape refused meanwhile counts as not yet); an error with the end
    of `process`'s log if it exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.log.name} exited early:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout_s:.0f} s:\n{process.tail()}")
        time.sleep(0.25)


def cores_used(cpu_start: dict[str, float], cpu_end: dict[str, float], elapsed_s: float
               ) -> dict[str, float]:
    """Cores each process used between two `process_cpu` readings `elapsed_s` apart."""
    return {name: (cpu_end[name] - cpu_start[name]) / elapsed_s for name in cpu_start}


def process_cpu(pids: dict[str, tuple[int, int | None]]) -> dict[str, float]:
    """CPU seconds used so far by each process (or thread) of `process_ids`."""
    return {name: cpu_seconds(pid, thread) for name, (pid, thread) in pids.items()}


def process_ids(recognizer: RigProcess, simulator: RigProcess, broker: EmbeddedBroker
                ) -> dict[str, tuple[int, int | None]]:
    """The rig's processes by role, for their CPU time, and the recognizer's loop thread
    (its main thread: the one whose time limits the devices it serves)."""
    pid = recognizer.popen.pid
    return {"recognizer": (pid, None), "loop": (pid, pid),
            "simulator": (simulator.popen.pid, None), "broker": (broker.pid, None)}
