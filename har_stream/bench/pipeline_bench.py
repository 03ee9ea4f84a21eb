"""Pipeline throughput (signal + windows, no model): vectorised vs one sample at a time.

Devices send 64-sample messages; one step processes one message from every device, as
one Kafka poll would. Figures are medians over repeated steps, in samples per second on
one core (the pipeline is single-threaded), from decoded arrays and from message bytes
(decode included), next to the naive per-sample baseline run in the same process. Per core
figures come from the process's CPU time, so that other processes on a shared machine do
not lower them; wall-clock figures are given too.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from har_stream.bench.measure import Timings, load
from har_stream.bench.naive import NaiveDevice
from har_stream.bench.report import provenance, rate, table, write_section
from har_stream.core.codec import decode_sensor, encode_sensor
from har_stream.core.pipeline import Pipeline
from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch

MESSAGE = 64


def _messages(devices: int, steps: int, seed: int = 0) -> list[list[SensorBatch]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (devices, 1, 6)).astype(np.float32)
    out = []
    for step in range(steps):
        noise = rng.normal(0, 0.2, (devices, MESSAGE, 6)).astype(np.float32)
        seq = step * MESSAGE
        out.append([SensorBatch(f"device-{d:06d}", seq, round(seq * SAMPLE_PERIOD_MS),
                                base[d] + noise[d]) for d in range(devices)])
    return out


def measure(devices: int, steps: int) -> dict[str, float]:
    """Samples/s of the pipeline from arrays and from bytes, for `devices` devices: per core
    (CPU time, keys `arrays`, `bytes`) and wall clock (`arrays_wall`, `bytes_wall`)."""
    polls = _messages(devices, steps)
    encoded = [[encode_sensor(b) for b in poll] for poll in polls]
    per_step = devices * MESSAGE
    arrays, from_bytes = Timings(), Timings()
    pipeline = Pipeline()
    for poll in polls:
        arrays.run(functools.partial(pipeline.process, poll))
    pipeline = Pipeline()
    for raw in encoded:
        from_bytes.run(functools.partial(_decode_and_process, pipeline, raw))
    # The first step allocates every device's state: steady state is what a service sees.
    for timings in (arrays, from_bytes):
        del timings.cpu[0], timings.wall[0]
    return {"arrays": per_step / arrays.cpu_median, "bytes": per_step / from_bytes.cpu_median,
            "arrays_wall": per_step / arrays.wall_median,
            "bytes_wall": per_step / from_bytes.wall_median}


def _decode_and_process(pipeline: Pipeline, raw: list[bytes]) -> object:
    return pipeline.process([decode_sensor(v) for v in raw])


def measure_naive(devices: int, samples: int) -> float:
    """Samples/s of the per-sample Python baseline over `samples` samples in total."""
    polls = _messages(devices, max(1, samples // (devices * MESSAGE)))
    bank = Pipeline().filters
    state: dict[str, NaiveDevice] = {}
    t = time.process_time()
    count = 0
    for poll in polls:
        for batch in poll:
            rows = batch.samples.tolist()
            device = state.setdefault(batch.device_id, NaiveDevice(bank, rows[0]))
            for row in rows:
                device.push(row)
            count += len(rows)
    return count / (time.process_time() - t)


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    sizes = (1, 100, 10_000)
    rows = []
    for devices in sizes:
        steps = 4 if quick else max(6, min(400, 2_000_000 // (devices * MESSAGE)))
        got = measure(devices, steps)
        naive = measure_naive(devices, 6_400 if quick else 64_000)
        rows.append([f"{devices:,}", rate(got["arrays"]), rate(got["bytes"]),
                     f"{rate(got['arrays_wall'])} / {rate(got['bytes_wall'])}", rate(naive),
                     f"{got['arrays'] / naive:,.0f}×"])
        print(f"{devices:>6} devices: arrays {rate(got['arrays'])}/s  bytes "
              f"{rate(got['bytes'])}/s per core; naive {rate(naive)}/s", flush=True)
    text = table(["devices", "samples/s per core from arrays",
                  "samples/s per core from bytes (decode incl.)",
                  "wall clock: arrays / bytes", "naive per-sample Python",
                  "speed-up (arrays)"], rows)
    print(text)
    if write:
        body = (f"{provenance('har-stream bench pipeline --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                "Signal conditioning + windowing, no model, one process (one core). Each step "
                f"feeds one {MESSAGE}-sample message from every device; medians over the steps "
                "after the first (which allocates state). Per core = from the process's CPU "
                "time (other processes share this machine; wall-clock figures beside). Targets "
                "at 10,000 devices: ≥ 2 M samples/s from arrays, ≥ 1 M from bytes.\n\n" + text)
        write_section("Pipeline throughput (no model)", body)
