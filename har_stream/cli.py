"""`har-stream` command line: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives and registers itself through an
`add_parser(subparsers)` function that sets `func` on its parser. Modules named
here must import cheaply (no TensorFlow at import time) so that `--help` is instant
and works on the serving install, which has no TensorFlow (`har_stream.extras`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from har_stream import __version__
from har_stream.extras import MissingExtra, missing_message, train_module_missing

EXIT_MISSING_EXTRA = 2

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


def command_name(args: argparse.Namespace) -> str:
    """`train`, `model export`, `bench inference`: how the user typed the command."""
    action = getattr(args, "model_command", None) or getattr(args, "data_command", None)
    if args.command == "bench":
        action = getattr(args, "name", None)
    return f"{args.command} {action}" if action else args.command


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a missing optional dependency is one line of advice, no traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
    except ImportError as exc:
        module = train_module_missing(exc)
        if module is None:
            raise
        print(missing_message(command_name(args), module), file=sys.stderr)
    return EXIT_MISSING_EXTRA


if __name__ == "__main__":
    sys.exit(main())
