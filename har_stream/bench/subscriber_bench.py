"""`har-stream bench subscribers`: the cost of the subscriber outputs per window.

`SubscriberOutputs.process` (smoother + daily totals + device records) runs in the service's
loop after the model, once per poll, over that poll's results. This measures it in the two
shapes a poll takes: many devices with one window each (the steady state of a large fleet)
and few devices with many windows each (catching up after a pause), against the cost of
only building the results' per-device grouping (the floor any per-device pass pays), and
the recognizer's own cost of building the `ActivityResult` records of the same windows;
encoding the records (`SubscriberStep.encoded`) is measured apart.
CPU time of this process (`time.process_time`), so other load on a shared machine inflates
the figures less than wall time would.
"""

from __future__ import annotations

import time

import numpy as np

from har_stream.bench.report import provenance, write_section
from har_stream.core.records import ACTIVITIES, ActivityResult
from har_stream.core.subscriber_outputs import SubscriberOutputs

CLASSES = (*ACTIVITIES, "TRANSITION")
SHAPES = ((10_000, 1), (100, 100))
"""(devices, windows per device) of one poll."""
T0_MS = 1_796_515_200_000


def poll_results(devices: int, per_device: int, poll: int, rng: np.random.Generator
                 ) -> list[ActivityResult]:
    """One poll's results, devices interleaved, activities drifting with some blips."""
    out = []
    for k in range(per_device):
        index = poll * per_device + k
        for d in range(devices):
            base = (index // 20 + d) % len(ACTIVITIES)
            activity = CLASSES[base if rng.random() > 0.1 else rng.integers(len(CLASSES))]
            out.append(ActivityResult(f"device-{d:05d}", index * 64, T0_MS + index * 1280,
                                      T0_MS + index * 1280 + 2540, activity,
                                      float(rng.uniform(0.5, 1.0)), {}, "bench"))
    return out


def measure(devices: int, per_device: int, polls: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    inputs = [poll_results(devices, per_device, p, rng) for p in range(polls + 1)]
    outputs = SubscriberOutputs(CLASSES)
    outputs.process(inputs[0])  # warm: every device has its slot
    start = time.process_time()
    steps = [outputs.process(results) for results in inputs[1:]]
    elapsed = time.process_time() - start
    changes = sum(len(step.changes) for step in steps)
    start = time.process_time()
    for step in steps:
        step.encoded()
    encoding = time.process_time() - start
    start = time.process_time()
    for results in inputs[1:]:
        grouped: dict[str, list[ActivityResult]] = {}
        for r in results:
            grouped.setdefault(r.device_id, []).append(r)
    floor = time.process_time() - start
    probs = np.full((devices * per_device, len(CLASSES)), 1 / len(CLASSES), np.float32)
    start = time.process_time()
    for _ in range(polls):
        rows = probs.tolist()
        [ActivityResult("d", 0, 0, 0, CLASSES[0], row[0], dict(zip(CLASSES, row, strict=True)),
                        "bench") for row in rows]
    results_cost = time.process_time() - start
    windows = polls * devices * per_device
    return {"devices": devices, "per_device": per_device, "windows": windows,
            "us_per_window": 1e6 * elapsed / windows, "floor_us": 1e6 * floor / windows,
            "results_us": 1e6 * results_cost / windows,
            "encode_us": 1e6 * encoding / windows,
            "changes": changes}


def table(rows: list[dict[str, float]]) -> str:
    lines = ["| devices | windows per device per poll | µs per window | encoding them, µs |"
             " grouping alone, µs | building the results, µs | changes |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['devices']:,} | {r['per_device']} | {r['us_per_window']:.2f} | "
              f"{r['encode_us']:.2f} | {r['floor_us']:.2f} | {r['results_us']:.2f} | "
              f"{r['changes']:,} |" for r in rows]
    return "\n".join(lines)


def main(write: bool = False, quick: bool = False) -> None:
    polls = 2 if quick else 10
    text = table([measure(d, n, polls) for d, n in SHAPES])
    print(text)
    if write:
        write_section("Subscriber outputs", f"{provenance('har-stream bench subscribers --write')}"
                      f"\n\n{__doc__.split(chr(10) * 2)[1]}\n\n{text}")
