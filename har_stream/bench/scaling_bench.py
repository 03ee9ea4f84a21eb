"""Scaling: how the cost per sample grows with the number of devices and with message size.

Message bytes → decode → pipeline (signal + windows, no model: its cost is per window, the
same at any scale, see "Inference"). CPU time per sample, split into decode and pipeline, for
1 to 100,000 devices sending 64-sample messages, and for messages of 1 to 250 samples from
1,000 devices. Messages reach the pipeline in polls of at most 10,000, as a consumer with a
large `max_poll_records` would hand them over. Writes a table and docs/img/scaling.png.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.bench.measure import load
from har_stream.bench.report import BENCHMARKS_MD, provenance, rate, table, write_section
from har_stream.core.codec import decode_sensor, encode_sensor
from har_stream.core.pipeline import Pipeline
from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch

DEVICES = (1, 10, 100, 1_000, 10_000, 100_000)
QUICK_DEVICES = (1, 100, 10_000)
MESSAGE_SIZES = (1, 2, 5, 10, 25, 50, 64, 100, 128, 250)
QUICK_MESSAGE_SIZES = (1, 10, 64, 250)
MESSAGE_SIZE_DEVICES = 1_000
POLL = 10_000
PLOT = BENCHMARKS_MD.parent / "img" / "scaling.png"


@dataclass(frozen=True, slots=True)
class Point:
    devices: int
    message: int
    samples: int  # measured samples
    decode_us: float  # CPU microseconds per sample
    pipeline_us: float

    @property
    def total_us(self) -> float:
        return self.decode_us + self.pipeline_us


def measure(devices: int, message: int, steps: int, poll: int = POLL, seed: int = 0) -> Point:
    """CPU per sample over `steps` steps of one message per device (after one warm-up step)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (devices, 1, 6)).astype(np.float32)
    pipeline = Pipeline()
    decode_cpu = pipeline_cpu = 0.0
    measured = 0
    for step in range(steps + 1):
        seq = step * message
        for start in range(0, devices, poll):
            stop = min(start + poll, devices)
            noise = rng.normal(0, 0.2, (stop - start, message, 6)).astype(np.float32)
            raw = [encode_sensor(SensorBatch(f"device-{d:06d}", seq,
                                             round(seq * SAMPLE_PERIOD_MS), base[d] + noise[i]))
                   for i, d in enumerate(range(start, stop))]
            started = time.process_time()
            batches = [decode_sensor(v) for v in raw]
            decoded = time.process_time()
            pipeline.process(batches)
            done = time.process_time()
            if step:
                decode_cpu += decoded - started
                pipeline_cpu += done - decoded
                measured += (stop - start) * message
    return Point(devices, message, measured, decode_cpu / measured * 1e6,
                 pipeline_cpu / measured * 1e6)


def _steps(devices: int, message: int, quick: bool) -> int:
    budget = 64_000 if quick else 256_000  # samples per point, within the bounds below
    return max(1 if devices >= 10_000 else 3, min(40 if quick else 100,
                                                  budget // (devices * message)))


def plot(by_devices: list[Point], by_message: list[Point], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, points, x_of, label in (
            (axes[0], by_devices, lambda p: p.devices, "devices (64-sample messages)"),
            (axes[1], by_message, lambda p: p.message,
             f"samples per message ({MESSAGE_SIZE_DEVICES:,} devices)")):
        x = [x_of(p) for p in points]
        ax.plot(x, [p.total_us for p in points], "o-", label="decode + pipeline")
        ax.plot(x, [p.decode_us for p in points], "s--", label="decode")
        ax.plot(x, [p.pipeline_us for p in points], "^--", label="pipeline")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("CPU µs per sample (one core)")
    axes[0].legend()
    fig.suptitle("har-stream: cost per sample, message bytes to windows (no model)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _rows(points: list[Point], key: str) -> list[list[object]]:
    return [[f"{getattr(p, key):,}", f"{p.samples:,}", f"{p.decode_us:.3f}",
             f"{p.pipeline_us:.3f}", f"{p.total_us:.3f}", rate(1e6 / p.total_us)]
            for p in points]


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    by_devices = []
    for devices in QUICK_DEVICES if quick else DEVICES:
        by_devices.append(measure(devices, 64, _steps(devices, 64, quick)))
        print(by_devices[-1], flush=True)
    by_message = []
    for message in QUICK_MESSAGE_SIZES if quick else MESSAGE_SIZES:
        by_message.append(measure(MESSAGE_SIZE_DEVICES, message,
                                  _steps(MESSAGE_SIZE_DEVICES, message, quick)))
        print(by_message[-1], flush=True)
    header = ["CPU µs per sample: decode", "pipeline", "total", "samples/s per core"]
    devices_table = table(["devices", "samples measured", *header], _rows(by_devices, "devices"))
    message_table = table(["samples per message", "samples measured", *header],
                          _rows(by_message, "message"))
    print(devices_table + "\n\n" + message_table)
    if write:
        plot(by_devices, by_message)
        body = (f"{provenance('har-stream bench scaling --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                "Message bytes → decode → pipeline (signal + windows; the model's cost is per "
                "window whatever the scale, see Inference). CPU time per sample on one core, "
                "after one warm-up step that creates every device's state; messages reach the "
                f"pipeline in polls of at most {POLL:,}.\n\nBy number of devices, 64-sample "
                f"messages:\n\n{devices_table}\n\nBy message size, "
                f"{MESSAGE_SIZE_DEVICES:,} devices:\n\n{message_table}\n\n"
                "![cost per sample](img/scaling.png)")
        write_section("Scaling", body)
