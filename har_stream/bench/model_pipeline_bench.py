"""Pipeline with the model, no broker: message bytes in, result records out, per core.

Each step feeds one 64-sample message from every device, as one poll would: decode → signal →
windows → model (shipped LiteRT model, one thread) → ActivityResult and ActivityCounts records.
Throughput is per core from the process's CPU time (the machine is shared; wall time is shown
too), with the CPU split by stage. Beside it, in the same run: one device at a time, one sample
at a time, one model call per window (the per-device design this project avoids), and the
same weights at the precision not served (float32 or dynamic-range int8) at 10,000 devices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.bench.inference_bench import (
    other_precision,
    other_precision_model,
    served_precision,
)
from har_stream.bench.measure import Timings, load
from har_stream.bench.naive import NaiveDevice
from har_stream.bench.pipeline_bench import MESSAGE, _messages
from har_stream.bench.report import provenance, rate, table, write_section
from har_stream.core.codec import decode_sensor, encode_sensor
from har_stream.core.recognizer import MODEL_BATCH, Recognizer
from har_stream.core.signal import FilterBank
from har_stream.serving import DEFAULT_MODEL_DIR, StatefulModel, load_model

SIZES = (1, 100, 1_000, 10_000)


class _StageClock:
    """Wraps a callable to add up the CPU time spent in it."""

    def __init__(self, call: object) -> None:
        self.call = call
        self.cpu = 0.0

    def __call__(self, *args: object) -> object:
        started = time.process_time()
        try:
            return self.call(*args)  # type: ignore[operator]
        finally:
            self.cpu += time.process_time() - started


@dataclass(frozen=True, slots=True)
class Result:
    devices: int
    steps: int
    samples_per_s_cpu: float
    samples_per_s_wall: float
    windows_per_s_cpu: float
    share: dict[str, float]  # fraction of CPU time by stage

    @property
    def devices_in_real_time(self) -> float:
        return self.samples_per_s_cpu / 50.0


def measure(model: StatefulModel, devices: int, steps: int, model_batch: int = MODEL_BATCH
            ) -> Result:
    """Steady-state throughput of decode + recognizer for `devices` devices (first step skipped:
    it creates every device's state and completes no window)."""
    polls = [[encode_sensor(b) for b in poll] for poll in _messages(devices, steps)]
    recognizer = Recognizer(model, model_batch=model_batch)
    pipeline = _StageClock(recognizer.pipeline.process)
    recognizer.pipeline.process = pipeline  # type: ignore[method-assign,assignment]
    predict = _StageClock(model.predict)
    recognizer.model = _Predicting(model, predict)  # type: ignore[assignment]
    decode = Timings()
    total = Timings()
    windows = 0
    stage_cpu = {"decode": 0.0, "pipeline": 0.0, "model": 0.0}
    for i, raw in enumerate(polls):
        pipeline.cpu = predict.cpu = 0.0
        step_decode = Timings()

        def step(raw: list[bytes] = raw, clock: Timings = step_decode) -> object:
            batches = clock.run(lambda: [decode_sensor(v) for v in raw])
            return recognizer.process(batches)  # type: ignore[arg-type]

        out = total.run(step)
        if i == 0:
            total = Timings()
            continue
        decode.add(step_decode)
        windows += len(out.results)  # type: ignore[attr-defined]
        stage_cpu["decode"] += step_decode.cpu[0]
        stage_cpu["pipeline"] += pipeline.cpu
        stage_cpu["model"] += predict.cpu
    spent = sum(total.cpu)
    stage_cpu["records"] = spent - sum(stage_cpu.values())
    per_step = devices * MESSAGE
    return Result(devices, steps - 1, per_step / total.cpu_median, per_step / total.wall_median,
                  windows / spent, {k: v / spent for k, v in stage_cpu.items()})


class _Predicting:
    """The model with its `predict` replaced by a timed one (attributes passed through)."""

    def __init__(self, model: StatefulModel, predict: object) -> None:
        self.classes, self.state_size, self.version = model.classes, model.state_size, model.version
        self.predict = predict


def measure_one_at_a_time(model: StatefulModel, devices: int, messages: int) -> float:
    """Samples/s (CPU) of per-device processing: decode, per-sample filters, batch-1 model."""
    polls = [[encode_sensor(b) for b in poll] for poll in _messages(devices, messages)]
    bank = FilterBank()
    state: dict[str, tuple[NaiveDevice, np.ndarray]] = {}
    count = 0
    started = time.process_time()
    for raw in polls:
        for value in raw:
            batch = decode_sensor(value)
            rows = batch.samples.tolist()
            if batch.device_id not in state:
                state[batch.device_id] = (NaiveDevice(bank, rows[0]),
                                          np.zeros((1, model.state_size), np.float32))
            device, carried = state[batch.device_id]
            for row in rows:
                for window in device.push(row):
                    _, carried = model.predict(np.asarray([window], np.float32), carried)
            state[batch.device_id] = (device, carried)
            count += len(rows)
    return count / (time.process_time() - started)


def served_against_other(served: StatefulModel, other: StatefulModel,
                         precisions: tuple[str, str], rounds: int = 3, steps: int = 6,
                         other_is: str = "") -> str:
    """The served flatbuffer and the same weights at the other precision at 10,000 devices,
    alternating (the other first in odd rounds, served first in even ones) so both see the
    same load; each round's pair and the median ratio."""
    served_name, other_name = precisions
    rows, ratios = [], []
    for i in range(rounds):
        order = (("other", other), ("served", served))
        pair = {name: measure(model, 10_000, steps) for name, model in
                (order if i % 2 == 0 else order[::-1])}
        after, before = pair["served"], pair["other"]
        ratios.append(after.samples_per_s_cpu / before.samples_per_s_cpu)
        rows.append([str(i + 1), rate(before.samples_per_s_cpu), rate(after.samples_per_s_cpu),
                     f"{ratios[-1]:.2f}×",
                     f"{before.windows_per_s_cpu:,.0f} / {after.windows_per_s_cpu:,.0f}",
                     f"{100 * before.share['model']:.0f} / {100 * after.share['model']:.0f}"])
        print(f"round {i + 1}: {other_name} {rate(before.samples_per_s_cpu)}, served "
              f"{served_name} {rate(after.samples_per_s_cpu)} samples/s per core", flush=True)
    other_is = other_is or (f"the same weights in {other_name} (converted from `model.keras` "
                            "at benchmark time)")
    return (f"The served {served_name} flatbuffer against {other_is}, at 10,000 devices in "
            f"the same run; the two alternate, {steps} steps each, so both see the same load; "
            f"median ratio served / {other_name} {float(np.median(ratios)):.2f}×:\n\n"
            + table(["round", f"{other_name}: samples/s per core",
                     f"{served_name} (served): samples/s per core", "served / other",
                     f"windows/s per core: {other_name} / {served_name}",
                     f"model % of CPU: {other_name} / {served_name}"], rows))


def _steps(devices: int, quick: bool) -> int:
    return 3 if quick else max(4, min(300, 2_000_000 // (devices * MESSAGE)))


def main(write: bool = False, quick: bool = False, model_dir: Path = DEFAULT_MODEL_DIR,
         against: Path | None = None) -> None:
    before = load()
    model = load_model(model_dir, num_threads=1)
    baseline = measure_one_at_a_time(model, 20, 2 if quick else 6)
    rows, results = [], []
    for devices in SIZES:
        got = measure(model, devices, _steps(devices, quick))
        results.append(got)
        share = " / ".join(f"{100 * got.share[k]:.0f}" for k in
                           ("decode", "pipeline", "model", "records"))
        rows.append([f"{devices:,}", rate(got.samples_per_s_cpu), rate(got.samples_per_s_wall),
                     rate(got.windows_per_s_cpu), f"{got.devices_in_real_time:,.0f}", share,
                     f"{got.samples_per_s_cpu / baseline:,.0f}×"])
        print(f"{devices:>6} devices: {rate(got.samples_per_s_cpu)} samples/s per core "
              f"(wall {rate(got.samples_per_s_wall)}), {share} % decode/pipeline/model/records",
              flush=True)
    whole_round = measure(model, 10_000, 3 if quick else 4, model_batch=0)
    precision = served_precision(model_dir)
    comparison = None
    if not quick:
        comparison = served_against_other(model, other_precision_model(model_dir),
                                          (precision, other_precision(model_dir)))
    if against is not None:
        before_model = load_model(against, num_threads=1)
        side_by_side = served_against_other(
            model, before_model, (precision, "other model"), steps=3 if quick else 6,
            other_is=f"the model in `{against}` (`{before_model.version}`)")
        comparison = side_by_side if comparison is None else comparison + "\n\n" + side_by_side
    text = table(["devices", "samples/s per core (CPU)", "samples/s (wall)", "windows/s per core",
                  "devices in real time per core", "CPU % decode / pipeline / model / records",
                  "vs one device at a time"], rows)
    slices = (f"Model calls in slices of {MODEL_BATCH} windows (the default) against one call "
              f"per round, at 10,000 devices in the same run: "
              f"{rate(results[-1].samples_per_s_cpu)} against "
              f"{rate(whole_round.samples_per_s_cpu)} samples/s per core.")
    if comparison is not None:
        slices += "\n\n" + comparison
    print(text)
    print(f"one device at a time (per-sample filters, one model call per window): "
          f"{rate(baseline)} samples/s per core\n{slices}")
    if write:
        body = (f"{provenance('har-stream bench model-pipeline --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                f"Message bytes → decode → signal → windows → model (`{model.version}`, LiteRT "
                f"{precision}, 1 thread) → `ActivityResult` and `ActivityCounts` records; no "
                f"broker. Each step feeds one {MESSAGE}-sample message from every device (one "
                "window per device per step); medians over the steps after the first. Per "
                "core = from the process's CPU time; the CPU split is over all measured steps. "
                "Target: "
                "≥ 500,000 samples/s per core at 10,000 devices.\n\n" + text + "\n\n"
                f"One device at a time, one sample at a time, one model call per window (same "
                f"decode, `bench/naive.py` filters, batch-1 LiteRT): {rate(baseline)} samples/s "
                f"per core, measured on 20 devices.\n\n{slices}")
        write_section("Pipeline with model (no broker)", body)
