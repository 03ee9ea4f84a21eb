"""`har-stream bench`: benchmarks that print numbers (never timed assertions in tests).

Each benchmark runs its baseline side by side in the same process run and can write
its table into docs/BENCHMARKS.md (`--write`), with the machine, command and date.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

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
}


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
    for name in names:
        extra = {"against": args.against} if args.against and name == "model-pipeline" else {}
        importlib.import_module(BENCHMARKS[name]).main(write=args.write, quick=args.quick,
                                                       **extra)
    return 0
