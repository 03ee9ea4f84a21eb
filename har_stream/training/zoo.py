"""The model-zoo benchmark: every architecture × several seeds, same windows, same protocol.

`har-stream train --zoo` (or `python -m har_stream.training.zoo`) trains each tutorial
architecture and the stateful model with seeds 0..n-1 on the training users (early-stopped
on the validation users), scores each once on the test users, appends one JSON line per
run to the results file (so an interrupted benchmark resumes where it stopped) and prints
the markdown table of docs/BENCHMARKS.md. The stateful model is scored in-process through
its Keras trainer run over whole streams (the LiteRT engine matches it within 1e-6).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from har_stream.training.catalog import (
    PUBLISHED_ACCURACY,
    STATEFUL_FILTERS,
    STATEFUL_KERNEL,
    ZOO_ARCHITECTURES,
)
from har_stream.training.train import (
    STATEFUL,
    PreparedData,
    TrainOptions,
    class_names,
    fit_settings,
    prepare,
)

ORDER = (*ZOO_ARCHITECTURES, STATEFUL)


def run_zoo(options: TrainOptions, seeds: Iterable[int], results: Path,
            architectures: Iterable[str] = ORDER) -> str:
    """Run every missing (architecture, seed), then return the markdown table."""
    from tqdm import tqdm

    encoder = _encoder(options.config.filters, options.config.kernel)
    done = {(r["arch"], r["seed"], _encoder_of(r)) for r in read_results(results)}
    todo = [(a, s) for a in architectures for s in seeds
            if (a, s, encoder if a == STATEFUL else None) not in done]
    if todo:
        prepared = prepare(options.data, options.n_validation, options.max_recordings,
                           progress=options.settings.verbose > 0)
        results.parent.mkdir(parents=True, exist_ok=True)
        for arch, seed in tqdm(todo, desc="zoo runs", unit="run", file=sys.stderr):
            settings = replace(options.settings, seed=seed, verbose=0)
            row = run_one(replace(options, arch=arch, settings=settings), prepared)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return zoo_table(read_results(results))


def run_one(options: TrainOptions, prepared: PreparedData) -> dict[str, object]:
    from har_stream.training import fit
    from har_stream.training.evaluate import benchmark_scores

    # the zoo's protocol (docs/BENCHMARKS.md) has no turns about x, so its rows stay comparable
    settings = replace(fit_settings(options), yaw_degrees=0.0, yaw_share=1.0, verbose=0)
    row: dict[str, object] = {"arch": options.arch, "seed": settings.seed}
    if options.arch == STATEFUL:
        result = fit.fit_stateful(prepared.train, prepared.validation,
                                  class_names(settings.with_transition), settings,
                                  options.config)
        validation = benchmark_scores(fit.stream_probs(result.trainer, prepared.validation),
                                      prepared.validation)
        test = benchmark_scores(fit.stream_probs(result.trainer, prepared.test), prepared.test)
        row["reset_every_window"] = benchmark_scores(
            fit.reset_probs(result.trainer, prepared.test), prepared.test)
        row.update(filters=list(options.config.filters), kernel=options.config.kernel)
    else:
        result = fit.fit_zoo(options.arch, prepared.train, prepared.validation,
                             class_names(False), settings)
        validation = benchmark_scores(fit.window_probs(result.model, prepared.validation),
                                      prepared.validation)
        test = benchmark_scores(fit.window_probs(result.model, prepared.test), prepared.test)
    row.update(test=test, validation=validation, epochs=result.epochs_run,
               seconds=round(result.seconds, 1), params=int(result.model.count_params()))
    return row


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def zoo_table(rows: list[dict]) -> str:
    """Markdown: one line per architecture, mean ± std over its seeds."""
    lines = [
        "| architecture | params | seeds | test accuracy | test macro-F1 | validation accuracy "
        "| epochs | train time/run | tutorial's published accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for arch in ORDER[:-1]:
        runs = [r for r in rows if r["arch"] == arch]
        if runs:
            lines.append(_row(arch, runs))
    served = _encoder(STATEFUL_FILTERS, STATEFUL_KERNEL)
    stateful = [r for r in rows if r["arch"] == STATEFUL]
    for encoder in sorted({_encoder_of(r) for r in stateful}, key=lambda e: e != served):
        runs = [r for r in stateful if _encoder_of(r) == encoder]
        filters, kernel = encoder or (None, None)
        name = (f"stateful CNN+GRU, filters {'/'.join(map(str, filters or ()))} k{kernel}"
                + (" (served)" if encoder == served else ""))
        lines.append(_row(name, runs))
        if all("reset_every_window" in r for r in runs):
            reset = [{k: v for k, v in r.items() if k != "validation"}
                     | {"test": r["reset_every_window"]} for r in runs]
            lines.append(_row(f"{name.removesuffix(' (served)')}, state reset every window",
                              reset, published="—"))
    return "\n".join(lines)


def _encoder(filters: Iterable[int], kernel: int) -> tuple[tuple[int, ...], int]:
    return tuple(filters), kernel


def _encoder_of(row: dict) -> tuple[tuple[int, ...], int] | None:
    """A stateful run's encoder shape (runs recorded before it was recorded had the first
    encoder, filters 64/64/128 k5); None for the other architectures."""
    if row["arch"] != STATEFUL:
        return None
    return _encoder(row.get("filters", (64, 64, 128)), row.get("kernel", 5))


def _row(name: str, runs: list[dict], published: str | None = None) -> str:
    def spread(values: list[float], scale: float, digits: int) -> str:
        v = np.array(values) * scale
        std = v.std(ddof=1) if len(v) > 1 else 0.0
        return f"{v.mean():.{digits}f} ± {std:.{digits}f}"

    accuracy = spread([r["test"]["accuracy"] for r in runs], 100, 2)
    f1 = spread([r["test"]["macro_f1"] for r in runs], 1, 4)
    val = (spread([r["validation"]["accuracy"] for r in runs], 100, 2) + " %"
           if all("validation" in r for r in runs) else "—")
    epochs = f"{np.mean([r['epochs'] for r in runs]):.0f}"
    seconds = f"{np.mean([r['seconds'] for r in runs]):.0f} s"
    reference = published or PUBLISHED_ACCURACY.get(name, "— (this project)")
    return (f"| {name} | {runs[0]['params']:,} | {len(runs)} | {accuracy} % | {f1} | {val} "
            f"| {epochs} | {seconds} | {reference} |")


if __name__ == "__main__":
    from har_stream.cli import main

    sys.exit(main(["train", "--zoo", *sys.argv[1:]]))
