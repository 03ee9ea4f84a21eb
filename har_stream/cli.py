"""`har-stream` command line: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives and registers itself through an
`add_parser(subparsers)` function that sets `func` on its parser. Modules named
here must import cheaply (no TensorFlow at import time) so that `--help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from har_stream import __version__

SUBCOMMAND_MODULES = (
    "har_stream.service.command",  # run
    "har_stream.tools.simulator",  # simulate
    "har_stream.tools.demo",  # demo
    "har_stream.training.commands",  # train, evaluate, data
    "har_stream.bench",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="har-stream",
        description="Real-time human activity recognition for 50 Hz accelerometer + gyroscope "
        "streams on Kafka. Every option can also be set with a HAR_* environment variable "
        "(shown in each subcommand's --help).",
    )
    parser.add_argument("--version", action="version", version=f"har-stream {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not an absent subcommand
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
