"""Reordered messages: what a swap of two adjacent messages costs, in windows and in CPU.

Two tables, each run side by side with its baseline in the same process:
1. windows lost and changed, against the in-order stream, when two adjacent messages of a
   device are swapped: reordering off (HAR_REORDER_SAMPLES=0), a swap within the allowance
   and one beyond it (the shipped model when present, else a fixed random stateful model);
2. CPU per message of the pipeline: in-order messages with reordering off and on (the fast
   path must not slow down) and messages swapped pairwise (every device, every other poll
   holds a message back and the next puts it in order).
"""

from __future__ import annotations

import functools

import numpy as np

from har_stream.bench.measure import Timings, load
from har_stream.bench.report import provenance, table
from har_stream.core.pipeline import Pipeline, PipelineConfig
from har_stream.core.recognizer import Recognizer
from har_stream.core.records import ACTIVITIES, SAMPLE_PERIOD_MS, SensorBatch

T0_MS = 1_700_000_000_000


class _RandomModel:
    """A fixed random stateful model, for when no trained model is installed."""

    classes = ACTIVITIES
    state_size = 4
    version = "random-bench"

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self._w = rng.normal(0, 4, (9, len(self.classes))).astype(np.float32)
        self._u = rng.normal(0, 2, (self.state_size, len(self.classes))).astype(np.float32)
        self._s = rng.normal(0, 1, (9, self.state_size)).astype(np.float32)

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = windows.mean(axis=1)
        new = (0.7 * state + 0.3 * np.tanh(mean @ self._s)).astype(np.float32)
        logits = mean @ self._w + new @ self._u
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), new


def _model() -> object:
    from har_stream.serving import DEFAULT_MODEL_DIR, TFLITE_FILE, load_model

    if (DEFAULT_MODEL_DIR / TFLITE_FILE).is_file():
        return load_model(DEFAULT_MODEL_DIR)
    return _RandomModel()


def _samples(n: int, seed: int) -> np.ndarray:
    """A plausible stream: gravity, periodic motion, noise (as the service tests use)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 50.0
    acc = np.stack([0.3 * np.sin(2 * np.pi * 1.3 * t), 0.2 * np.cos(2 * np.pi * 1.3 * t),
                    1.0 + 0.1 * np.sin(2 * np.pi * 0.05 * t)], axis=1)
    acc += rng.normal(0, 0.05, acc.shape)
    gyro = rng.normal(0, 0.3, (n, 3)) + np.sin(2 * np.pi * 1.3 * t)[:, None]
    return np.clip(np.concatenate([acc, gyro], axis=1), -4, 4).astype(np.float32)


def _messages(device: str, samples: np.ndarray, size: int) -> list[SensorBatch]:
    return [SensorBatch(device, a, T0_MS + round(a * SAMPLE_PERIOD_MS), samples[a:a + size])
            for a in range(0, len(samples), size)]


def _swap(batches: list, at: int) -> list:
    return [*batches[:at], batches[at + 1], batches[at], *batches[at + 2:]]


def _results(model: object, reorder: int, batches: list[SensorBatch]) -> dict:
    recognizer = Recognizer(model, PipelineConfig(reorder_samples=reorder))  # type: ignore[arg-type]
    out = {}
    for batch in batches:  # one message per poll: the swap spans two polls
        for r in recognizer.process([batch]).results:
            out[r.window_id] = (r.activity, np.array(list(r.probabilities.values())))
    return out


def damage(model: object, reorder: int, size: int, samples: int = 6400
           ) -> tuple[int, int, int, int]:
    """(windows lost, changed, not in the in-order run, in-order total) when messages 10 and
    11 of `size` samples are swapped; changed = another activity or a probability off by more
    than 1e-4."""
    stream = _samples(samples, 5)
    clean = _results(model, 0, _messages("d", stream, size))
    got = _results(model, reorder, _swap(_messages("d", stream, size), 10))
    lost = len(set(clean) - set(got))
    changed = sum(1 for k in set(clean) & set(got)
                  if clean[k][0] != got[k][0] or np.abs(clean[k][1] - got[k][1]).max() > 1e-4)
    return lost, changed, len(set(got) - set(clean)), len(clean)


def cpu_per_message(devices: int, polls: int, reorder: int, swapped: bool) -> float:
    """Median CPU µs per message of `Pipeline.process`, one 64-sample message per device per
    poll; `swapped`: each device's messages 2k and 2k+1 arrive in the opposite order."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.3, (devices, 1, 6)).astype(np.float32)
    order = [i ^ 1 for i in range(polls)] if swapped else list(range(polls))
    pipeline = Pipeline(PipelineConfig(reorder_samples=reorder))
    timings = Timings()
    for i in order:
        noise = rng.normal(0, 0.2, (devices, 64, 6)).astype(np.float32)
        poll = [SensorBatch(f"device-{d:05d}", i * 64, T0_MS + i * 1280, base[d] + noise[d])
                for d in range(devices)]
        timings.run(functools.partial(pipeline.process, poll))
    del timings.cpu[:2], timings.wall[:2]  # the first polls allocate every device's state
    return timings.cpu_median / devices * 1e6


def main(write: bool = False, quick: bool = False) -> None:
    before = load()
    model = _model()
    damage_rows = []
    for label, reorder, size in (("reordering off", 0, 64),
                                 ("within the allowance", 256, 64),
                                 ("within the allowance", 256, 128),
                                 ("beyond the allowance", 64, 64),
                                 ("beyond the allowance", 256, 160)):
        lost, changed, extra, total = damage(model, reorder, size)
        damage_rows.append([label, str(reorder), str(size), f"{lost}", f"{changed}",
                            f"{extra}", f"{total}"])
    devices, polls = (200, 8) if quick else (2000, 20)
    cpu_rows = [[label, str(reorder), f"{cpu_per_message(devices, polls, reorder, sw):.2f}"]
                for label, reorder, sw in (("in order", 0, False), ("in order", 256, False),
                                           ("swapped pairwise", 256, True),
                                           ("swapped pairwise", 0, True))]
    damage_text = table(["one adjacent swap", "HAR_REORDER_SAMPLES", "samples per message",
                         "windows lost", "windows changed", "windows not in the in-order run",
                         "windows in order"], damage_rows)
    cpu_text = table(["messages", "HAR_REORDER_SAMPLES",
                      f"pipeline CPU µs per message ({devices:,} devices)"], cpu_rows)
    print(f"model: {getattr(model, 'version', '?')}; machine {before} -> {load()}")
    print(damage_text)
    print(cpu_text)
    if write:
        from har_stream.bench.report import write_section

        write_section("Reordered messages", f"{provenance('har-stream bench reorder --write')}"
                      f"\nModel {getattr(model, 'version', '?')}.\n\n{damage_text}\n\n{cpu_text}")
