"""Measuring on a shared machine: CPU time beside wall time, percentiles, load, memory.

The machine these benchmarks run on is shared (other processes compete for its cores), so
every benchmark records both clocks: CPU time of this process gives "per core" throughput that
the neighbours' load barely moves, wall time what a caller waits. Medians over repeated steps,
never means; ratios between variants measured in the same run.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(slots=True)
class Timings:
    """CPU and wall seconds of repeated runs of one step."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def run(self, step: Callable[[], object]) -> object:
        cpu, wall = time.process_time(), time.perf_counter()
        result = step()
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)
        return result

    def add(self, other: Timings) -> None:
        self.cpu.extend(other.cpu)
        self.wall.extend(other.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between order statistics."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load() -> str:
    """The 1-minute load average against the core count, e.g. 'load 2.9 on 2 cores'."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "load unknown"
    return f"load {one:.1f} on {os.cpu_count()} cores"


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError("VmRSS not found in /proc/self/status")


def settle_memory() -> None:
    """Collect garbage and hand freed heap pages back, so RSS shows what is live."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of another process (and its reaped children), or of one of
    its threads, from /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
