"""`har-stream model export` and `model calibrate`: actions on a trained model directory.

Split from `commands.py` (same conventions: argument parsing and messages only; TensorFlow is
imported by the actions when they run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from har_stream.extras import require_train_extra
from har_stream.serving import DEFAULT_MODEL_DIR
from har_stream.training.commands import DATA_HELP, _model_and_data, _print_summary
from har_stream.training.export import PRECISIONS, SERVED_PRECISION


def add_model_parser(subparsers: argparse._SubParsersAction) -> None:
    from har_stream.training.serving import MAX_VALIDATION_DROP

    p = subparsers.add_parser("model", help="re-export a model directory's served flatbuffer",
                              description="Actions on a trained model directory.")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    export = sub.add_parser(
        "export", help="rewrite model.tflite from model.keras at a precision, judged on the "
        "validation users, then scored on the test users",
        description="Convert the directory's model.keras (the float reference, verified "
        "against its card) to the served LiteRT flatbuffer at --precision. The float and the "
        "new flatbuffer both run over the validation users' streams; a quantised one that "
        "loses more than --max-drop accuracy or macro-F1 there is refused and nothing is "
        "written. Otherwise model.tflite, the card's `serving` section and version are "
        "rewritten, and the test users are scored as `har-stream evaluate` does (with the "
        "float model's figures and the agreement beside).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    export.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory")
    export.add_argument("--precision", default=SERVED_PRECISION, choices=PRECISIONS)
    export.add_argument("--max-drop", type=float, default=MAX_VALIDATION_DROP,
                        help="most validation accuracy / macro-F1 a quantised flatbuffer may "
                        "lose against float")
    export.add_argument("--data", type=Path, default=None, help=DATA_HELP)
    export.set_defaults(func=run_model_export)
    calibrate = sub.add_parser(
        "calibrate", help="set the softmax temperature (fitted out of fold by train --cv), "
        "re-export in float32 and re-evaluate",
        description="Rescale the head of model.keras to the given softmax temperature (from "
        "the card's current one), give the weights a new version, rewrite model.tflite in "
        "float32 and re-score the test users. Accuracy is unchanged; confidence changes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    calibrate.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                           help="model directory")
    calibrate.add_argument("--temperature", type=float, required=True)
    calibrate.add_argument("--note", default="", help="a line for the card (how T was fitted)")
    calibrate.add_argument("--data", type=Path, default=None, help=DATA_HELP)
    calibrate.set_defaults(func=run_model_calibrate)


def _checked_users(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """Windows of the users a flatbuffer is checked on (the validation users, else the
    training users of a model trained on all of them) and of the test users."""
    from har_stream.training.windows import make_windows

    loaded = _model_and_data(args)
    if loaded is None:
        return None
    training, data = loaded
    checked = training.get("validation_users") or training.get("train_users")
    if not checked or not training.get("test_users"):
        print(f"error: {args.model}/card.json names no validation or training users, or no "
              "test users", file=sys.stderr)
        return None
    return (make_windows(data.of_users(checked), progress=True),
            make_windows(data.of_users(training["test_users"]), progress=True))


def run_model_calibrate(args: argparse.Namespace) -> int:
    from har_stream.training.serving import calibrate_dir

    require_train_extra("model calibrate")
    windows = _checked_users(args)
    if windows is None:
        return 2
    calibrate_dir(args.model, args.temperature, *windows, note=args.note)
    _print_summary(args.model)
    return 0


def run_model_export(args: argparse.Namespace) -> int:
    from har_stream.training.serving import PrecisionRejected, export_dir

    require_train_extra("model export")
    windows = _checked_users(args)
    if windows is None:
        return 2
    validation, test = windows
    try:
        export_dir(args.model, args.precision, validation, test, args.max_drop)
    except PrecisionRejected as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_summary(args.model)
    return 0
