"""`har-stream bench`: benchmarks that print numbers (never timed assertions in tests).

Each benchmark runs its baseline side by side in the same process run and can write
its table into docs/BENCHMARKS.md (`--write`), with the machine, command and date.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from har_stream.extras import require_train_extra

BENCHMARKS = {
    "pipeline": "har_stream.bench.pipeline_bench",
    "inference": "har_stream.bench.inference_bench",
    "model-pipeline": "har_stream.bench.model_pipeline_bench",
    "memory": "har_stream.bench.memory_bench",
    "scaling": "har_stream.bench.scaling_bench",
    "produce": "har_stream.bench.produce_bench",
    "broker": "har_stream.bench.broker_bench",
    "e2e": "har_stream.bench.e2e_bench",
    "drift": "har_stream.bench.drift_bench",
    "reorder": "har_stream.bench.reorder_bench",
    "subscribers": "har_stream.bench.subscriber_bench",
    "flood": "har_stream.bench.flood_bench",
}
NEED_TRAIN_EXTRA = {"inference", "model-pipeline"}
"""Benchmarks that run Keras or convert with TensorFlow (the `train` extra)."""
PLOT_ON_WRITE = {"inference", "scaling"}
"""Benchmarks that also draw a matplotlib plot with `--write` (the `train` extra)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run benchmarks and print their numbers",
        description="Run benchmarks side by side with their baselines and print the figures. "
        "'all' runs every benchmark in turn.",
    )
    parser.add_argument("name", choices=[*BENCHMARKS, "all"], help="which benchmark to run")
    parser.add_argument("--write", action="store_true",
                        help="also write the tables into docs/BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and sizes (a smoke run, numbers are noisier)")
    parser.add_argument("--against", type=Path, default=None, metavar="MODEL_DIR",
                        help="model-pipeline: also run this model directory (e.g. the model "
                        "served before) alternating with the served one at 10,000 devices")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    if NEED_TRAIN_EXTRA.intersection(names) or (args.write and PLOT_ON_WRITE.intersection(names)):
        require_train_extra(f"bench {args.name}")
    for name in names:
        extra = {"against": args.against} if args.against and name == "model-pipeline" else {}
        importlib.import_module(BENCHMARKS[name]).main(write=args.write, quick=args.quick,
                                                       **extra)
    return 0
