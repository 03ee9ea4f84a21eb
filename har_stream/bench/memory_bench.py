"""Memory: resident bytes per active device at 10,000 and 100,000 devices (state only).

Each size runs in a fresh child process: it builds a Recognizer, measures its RSS, brings N
devices to the steady state (full ring buffer, carried model state, counts) and measures
again; the difference over N is the cost of one device. The model is a stand-in with the
shipped model's state width and classes and no weights, so the figure is device state only
(the model's own memory is per process, not per device). Beside it, the registry's own
accounting: array bytes per device, and the id strings and the slot map.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np

from har_stream.bench.measure import load, rss_bytes, settle_memory
from har_stream.bench.report import provenance, table, write_section
from har_stream.core.records import ACTIVITIES, SAMPLE_PERIOD_MS, SensorBatch

SIZES = (10_000, 100_000)
QUICK_SIZES = (2_000, 10_000)
CHUNK = 10_000  # devices per process() call: bounds the transient window arrays
MESSAGES = 3  # 192 samples: the ring buffer is full and two windows have been classified
TARGET_BYTES = 8 * 1024


class StateOnlyModel:
    """The shipped model's interface (64-wide state, six classes) at no cost and no memory."""

    classes: tuple[str, ...] = ACTIVITIES
    state_size = 64
    version = "state-only"

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = np.full((len(windows), len(self.classes)), 1.0 / len(self.classes), np.float32)
        return probs, state + 1.0


@dataclass(frozen=True, slots=True)
class Footprint:
    devices: int
    rss_growth: int  # bytes
    arrays_per_device: int  # registry field bytes per device
    capacity: int  # slots allocated (untouched spare slots cost address space, not RSS)
    ids_per_device: float  # bytes of the id strings and the slot map, per device

    @property
    def per_device(self) -> float:
        return self.rss_growth / self.devices


def measure(devices: int, chunk: int = CHUNK) -> Footprint:
    """Bring `devices` devices to the steady state in this process and measure the growth."""
    from har_stream.core.recognizer import Recognizer

    recognizer = Recognizer(StateOnlyModel())
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 0.3, (64 * MESSAGES, 6)).astype(np.float32)
    warm = Recognizer(StateOnlyModel())  # load every code path before the first reading
    for m in range(MESSAGES):
        warm.process([SensorBatch("warm-up", 64 * m, 0, samples[64 * m:64 * (m + 1)])])
    del warm
    settle_memory()
    before = rss_bytes()
    for start in range(0, devices, chunk):
        ids = [f"device-{d:07d}" for d in range(start, min(start + chunk, devices))]
        for m in range(MESSAGES):
            part = samples[64 * m:64 * (m + 1)]
            recognizer.process([SensorBatch(d, 64 * m, round(64 * m * SAMPLE_PERIOD_MS), part)
                                for d in ids])
        del ids
    settle_memory()
    growth = rss_bytes() - before
    registry = recognizer.registry
    ids = registry.device_ids()
    id_bytes = sum(sys.getsizeof(d) for d in ids) + sys.getsizeof(registry._slots)
    return Footprint(devices, growth, registry.nbytes_per_device(), registry._capacity,
                     id_bytes / len(ids))


def measure_in_child(devices: int) -> Footprint:
    """`measure` in a fresh interpreter, so earlier sizes leave nothing behind."""
    code = ("import json, sys; from dataclasses import asdict; "
            "from har_stream.bench.memory_bench import measure; "
            f"print(json.dumps(asdict(measure({devices}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return Footprint(**json.loads(out.strip().splitlines()[-1]))


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    rows = []
    for devices in QUICK_SIZES if quick else SIZES:
        got = measure_in_child(devices)
        print(json.dumps(asdict(got)), flush=True)
        rows.append([f"{devices:,}", f"{got.rss_growth / 2**20:,.1f} MiB",
                     f"{got.per_device / 1024:.2f} KiB", f"{got.arrays_per_device:,} B",
                     f"{got.ids_per_device:,.0f} B", f"{got.capacity:,}",
                     "yes" if got.per_device <= TARGET_BYTES else "no"])
    text = table(["devices", "RSS growth", "RSS per device", "registry arrays per device",
                  "ids + slot map per device", "slots allocated", "≤ 8 KiB"], rows)
    print(text)
    if write:
        body = (f"{provenance('har-stream bench memory --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                "Resident memory per active device, state only: each size in a fresh process, "
                f"RSS before and after bringing every device to the steady state ({MESSAGES} "
                "64-sample messages each: full ring buffer, filter state, carried model state "
                "of the shipped model's width, counts), freed memory handed back to the OS "
                "before each reading. The registry grows its slot arrays by 1.5× and spare "
                "slots are never written, so they take address space but no RSS. Target: "
                "≤ 8 KiB per device.\n\n" + text)
        write_section("Memory per device", body)
