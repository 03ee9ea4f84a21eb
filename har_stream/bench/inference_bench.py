"""Inference: windows/s and per-call latency of the shipped model, engine by engine, batch 1..1024.

Beside each engine runs the tutorials' way, Keras `model.predict` on one window per call, and
the table gives every engine's speed-up over it. The service makes one call per poll round with
every window that became ready, so its batches are tens to a thousand windows.

The full run also measures, in the same run, the shipped weights at the precision that is not
served (float32 or dynamic-range int8, converted from the float reference `model.keras`):
which one is faster depends on the CPU (docs/MODELS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.bench.measure import load, percentile
from har_stream.bench.report import BENCHMARKS_MD, provenance, table, write_section
from har_stream.core.records import CHANNELS, WINDOW
from har_stream.serving import DEFAULT_MODEL_DIR, KERAS_FILE, load_model
from har_stream.serving.engine import LiteRTModel

Predict = Callable[[np.ndarray, np.ndarray], object]
BATCHES = (1, 4, 16, 64, 256, 1024)
QUICK_BATCHES = (1, 64, 1024)
TUTORIAL = "Keras model.predict, 1 window per call (tutorials)"
PLOT = BENCHMARKS_MD.parent / "img" / "inference.png"


@dataclass(frozen=True, slots=True)
class Cell:
    """One engine at one batch size."""

    engine: str
    batch: int
    calls: int
    windows_per_s: float  # batch / median call time
    median_ms: float
    p99_ms: float
    cpu_ms: float  # median CPU time per call, all threads of the process

    @property
    def windows_per_cpu_s(self) -> float:
        """Windows per second of CPU time (all threads): per core, whatever else runs."""
        return self.batch / (self.cpu_ms / 1e3) if self.cpu_ms > 0 else float("nan")


def measure(engines: dict[str, Predict], batches: tuple[int, ...], state_size: int,
            min_calls: int = 20, budget_s: float = 1.5, seed: int = 0) -> list[Cell]:
    """Time every engine on every batch size: at least `min_calls` calls or `budget_s` each."""
    rng = np.random.default_rng(seed)
    windows = rng.normal(0, 0.3, (max(batches), WINDOW, len(CHANNELS))).astype(np.float32)
    state = rng.normal(0, 0.1, (max(batches), state_size)).astype(np.float32)
    cells = []
    for name, predict in engines.items():
        for batch in batches:
            w, s = windows[:batch], state[:batch]
            predict(w, s)  # warm-up: the first call at a new size resizes or traces
            walls: list[float] = []
            cpus: list[float] = []
            started = time.perf_counter()
            while len(walls) < min_calls or time.perf_counter() - started < budget_s:
                cpu, wall = time.process_time(), time.perf_counter()
                predict(w, s)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                if len(walls) >= min_calls and time.perf_counter() - started > budget_s:
                    break
            median = percentile(walls, 50)
            cells.append(Cell(name, batch, len(walls), batch / median, median * 1e3,
                              percentile(walls, 99) * 1e3, percentile(cpus, 50) * 1e3))
    return cells


def litert_engines(model_dir: Path) -> dict[str, Predict]:
    """The served flatbuffer on 1 and 2 interpreter threads."""
    precision = served_precision(model_dir)
    return {f"LiteRT, {n} thread{'s' * (n > 1)}, {precision} (served)":
            load_model(model_dir, num_threads=n).predict for n in (1, 2)}


def served_precision(model_dir: Path) -> str:
    from har_stream.training.card import read_card
    from har_stream.training.export import served_precision as of_card

    return of_card(read_card(model_dir))


def keras_engines(model_dir: Path, with_tf_function: bool) -> tuple[Predict, dict[str, Predict]]:
    """The tutorials' `model.predict` and, optionally, a fixed-signature `tf.function`."""
    import keras
    import tensorflow as tf

    step = keras.saving.load_model(model_dir / KERAS_FILE)

    def tutorial(windows: np.ndarray, state: np.ndarray) -> object:
        return [step.predict({"windows": windows[i:i + 1], "state": state[i:i + 1]}, verbose=0)
                for i in range(len(windows))]

    engines: dict[str, Predict] = {}
    if with_tf_function:
        state_size = int(next(t for t in step.inputs if t.name == "state").shape[-1])

        @tf.function(input_signature=[tf.TensorSpec([None, WINDOW, len(CHANNELS)], tf.float32),
                                      tf.TensorSpec([None, state_size], tf.float32)])
        def serve(windows: tf.Tensor, state: tf.Tensor) -> dict[str, tf.Tensor]:
            return step({"windows": windows, "state": state}, training=False)

        def compiled(windows: np.ndarray, state: np.ndarray) -> object:
            out = serve(windows, state)
            return out["probs"].numpy(), out["state_out"].numpy()

        engines["tf.function (Keras step model)"] = compiled
    return tutorial, engines


def plot(cells: list[Cell], baseline: Cell, path: Path = PLOT) -> None:
    """Windows/s against batch size, one line per engine, the tutorials' way as a floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for engine in dict.fromkeys(c.engine for c in cells):
        mine = [c for c in cells if c.engine == engine]
        ax.plot([c.batch for c in mine], [c.windows_per_cpu_s for c in mine], "o-",
                label=engine)
    ax.axhline(baseline.windows_per_cpu_s, color="grey", linestyle="--", label=TUTORIAL)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("windows per call (batch)")
    ax.set_ylabel("windows per CPU-second (per core)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("har-stream: inference of the shipped model by engine")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def precision_note(model_dir: Path) -> str:
    """What the served flatbuffer is and how it compares with float, from the model card."""
    from har_stream.training.card import read_card

    card = read_card(model_dir)
    precision = served_precision(model_dir)
    reference = card.get("evaluation", {}).get("float_reference")
    note = (f"The served flatbuffer is {precision}; the {other_precision(model_dir)} rows are "
            "the same weights converted in this run from the float reference `model.keras`")
    if reference is None:
        return note + "."
    served, other = card["evaluation"]["stream"], reference["stream"]
    return (f"{note} (model card, test users with state carried: accuracy "
            f"{served['accuracy']:.2%} against {other['accuracy']:.2%} for float, same class on "
            f"{reference['agreement']['same_class']:.2%} of {reference['agreement']['windows']:,}"
            " windows; validation users first, see docs/MODELS.md).")


def other_precision(model_dir: Path = DEFAULT_MODEL_DIR) -> str:
    """float32 if the served flatbuffer is quantised, else dynamic-range int8."""
    from har_stream.training.export import DYNAMIC_RANGE_INT8, FLOAT32

    return DYNAMIC_RANGE_INT8 if served_precision(model_dir) == FLOAT32 else FLOAT32


def other_precision_model(model_dir: Path = DEFAULT_MODEL_DIR) -> LiteRTModel:
    """The shipped weights at `other_precision`, converted from the directory's verified
    `model.keras` at benchmark time. Needs TensorFlow (~10 s)."""
    from har_stream.training.card import read_card
    from har_stream.training.serving import converted

    return converted(model_dir, read_card(model_dir), other_precision(model_dir))


def main(write: bool = False, quick: bool = False, model_dir: Path = DEFAULT_MODEL_DIR) -> None:
    before = load()
    batches = QUICK_BATCHES if quick else BATCHES
    engines = litert_engines(model_dir)
    tutorial, compiled = keras_engines(model_dir, with_tf_function=not quick)
    engines.update(compiled)
    if not quick:
        engines[f"LiteRT, 1 thread, {other_precision(model_dir)} (not served)"] = \
            other_precision_model(model_dir).predict
    state_size = load_model(model_dir).state_size
    cells = measure(engines, batches, state_size, min_calls=5 if quick else 20,
                    budget_s=0.3 if quick else 1.5)
    # the tutorials' way: batch of one, a few calls (each takes tens to hundreds of ms)
    baseline = measure({TUTORIAL: tutorial}, (1,), state_size, min_calls=5 if quick else 20,
                       budget_s=1.0 if quick else 4.0)[0]
    rows = [[TUTORIAL, 1, f"{baseline.windows_per_s:,.1f}",
             f"{baseline.windows_per_cpu_s:,.1f}", f"{baseline.median_ms:.1f}",
             f"{baseline.p99_ms:.1f}", f"{baseline.cpu_ms:.1f}", "1× / 1×"]]
    rows += [[c.engine, c.batch, f"{c.windows_per_s:,.0f}", f"{c.windows_per_cpu_s:,.0f}",
              f"{c.median_ms:.2f}", f"{c.p99_ms:.2f}", f"{c.cpu_ms:.2f}",
              f"{c.windows_per_s / baseline.windows_per_s:,.0f}× / "
              f"{c.windows_per_cpu_s / baseline.windows_per_cpu_s:,.0f}×"] for c in cells]
    text = table(["engine", "batch", "windows/s (wall)", "windows per CPU-second",
                  "call median ms", "call p99 ms", "CPU ms per call",
                  "vs tutorials: wall / CPU"], rows)
    print(text)
    if write:
        plot(cells, baseline)
        model = load_model(model_dir)
        body = (f"{provenance('har-stream bench inference --write')}\n"
                f"Machine shared: {before} at the start, {load()} at the end.\n\n"
                f"Model `{model.version}` (`{model_dir.name}`), windows of {WINDOW}×{len(CHANNELS)}"
                f" with a {state_size}-wide recurrent state. Each cell: median over at least "
                f"{5 if quick else 20} calls on the same random batch after one warm-up call; "
                "windows/s = batch / median call time; per CPU-second = batch / median CPU "
                "time of a call, counting every thread of the process (2-thread LiteRT and "
                "TensorFlow use several), the figure that other processes on this shared "
                "machine disturb least. The service calls "
                "the model once per poll round with every ready window (batches of tens to a "
                "thousand). Target: ≥ 1,000× the tutorials' way at those batch sizes. "
                f"{precision_note(model_dir)} The Keras rows run the float model.\n\n" + text
                + "\n\n![windows per second by batch size](img/inference.png)")
        write_section("Inference", body)
