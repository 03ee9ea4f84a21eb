"""Inference engines for the stateful model, measured: `python -m har_stream.bench.engines`.

Compares, for batch sizes 1..1024 (windows per second, best of a few repeats):
- LiteRT resized to the exact batch size (the serving default), 1 and 2 threads;
- LiteRT padded to power-of-two buckets;
- both again when the batch size changes on every call (as it does between polls);
- a fixed-signature `tf.function` around the Keras step model (free batch dimension).
Prints a markdown table (copied into docs/MODELS.md). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from har_stream.core.records import CHANNELS, WINDOW
from har_stream.serving import DEFAULT_MODEL_DIR, KERAS_FILE
from har_stream.serving.engine import LiteRTModel

Predict = Callable[[np.ndarray, np.ndarray], object]
BATCHES = (1, 8, 64, 256, 1024)


def rate(predict: Predict, windows: np.ndarray, state: np.ndarray, batch_sizes: list[int],
         seconds: float) -> float:
    """Windows per second over calls cycling through `batch_sizes` (best of 3 rounds)."""
    best = 0.0
    for _ in range(3):
        done, calls, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3 or calls < 3:
            n = batch_sizes[calls % len(batch_sizes)]
            predict(windows[:n], state[:n])
            done, calls = done + n, calls + 1
        best = max(best, done / (time.perf_counter() - started))
    return best


def tf_function_engine(directory: Path) -> Predict:
    import keras
    import tensorflow as tf

    step = keras.saving.load_model(directory / KERAS_FILE)
    state_size = int(next(t for t in step.inputs if t.name == "state").shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None, WINDOW, len(CHANNELS)], tf.float32),
                                  tf.TensorSpec([None, state_size], tf.float32)])
    def serve(windows: tf.Tensor, state: tf.Tensor) -> dict[str, tf.Tensor]:
        return step({"windows": windows, "state": state}, training=False)

    def predict(windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = serve(windows, state)
        return out["probs"].numpy(), out["state_out"].numpy()

    return predict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--no-tf", action="store_true", help="skip the tf.function engine")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    windows = rng.normal(0, 0.3, (max(BATCHES), WINDOW, len(CHANNELS))).astype(np.float32)
    engines: dict[str, Predict] = {}
    for threads in (1, 2):
        model = LiteRTModel.from_dir(args.model, num_threads=threads)
        engines[f"LiteRT exact, {threads} thread(s)"] = model.predict
        bucketed = LiteRTModel.from_dir(args.model, num_threads=threads, buckets=True)
        engines[f"LiteRT buckets, {threads} thread(s)"] = bucketed.predict
    if not args.no_tf:
        engines["tf.function (Keras step)"] = tf_function_engine(args.model)
    state_size = LiteRTModel.from_dir(args.model).state_size
    state = np.zeros((max(BATCHES), state_size), np.float32)

    print(f"model: {args.model}; windows per second (best of 3)\n")
    print("| engine | " + " | ".join(f"batch {b}" for b in BATCHES)
          + " | batch varying 1..1024 |")
    print("|---|" + "---:|" * (len(BATCHES) + 1))
    varying = [int(b) for b in rng.integers(1, 1025, size=64)]
    for name, predict in engines.items():
        cells = [rate(predict, windows, state, [b], args.seconds) for b in BATCHES]
        cells.append(rate(predict, windows, state, varying, args.seconds * 2))
        print(f"| {name} | " + " | ".join(f"{c:,.0f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
