"""`har-stream evaluate`, `model export` and `model calibrate`: actions on a trained model
directory, each scored on the users its card names.

`commands.py` registers them beside `train` and `data` (same conventions: argument parsing and
messages only; TensorFlow is imported by the actions when they run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from har_stream.extras import require_train_extra
from har_stream.serving import DEFAULT_MODEL_DIR
from har_stream.training.card import summary
from har_stream.training.export import PRECISIONS, SERVED_PRECISION
from har_stream.training.hapt import DATA_HELP


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a model directory on the test users and rewrite its card",
        description="Run the model's LiteRT engine over every test-user recording as the "
        "service would (one stream per recording, state carried, batched across streams), "
        "and again with the state reset at every window; write accuracy, macro-F1, "
        "per-class precision/recall, confusion matrix, per-subject accuracy and window "
        "counts into card.json, card.md and the plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory")
    p.add_argument("--data", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--threads", type=int, default=1, help="LiteRT interpreter threads")
    p.set_defaults(func=run_evaluate)


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


def _model_and_data(args: argparse.Namespace) -> tuple[dict[str, Any], Any] | None:
    """The model directory's training record and the HAPT data; None (reported) if unusable."""
    from har_stream.training.card import read_card
    from har_stream.training.hapt import DataError, find_data, load_hapt

    try:
        path = find_data(args.data)
        if not (args.model / "card.json").is_file():
            print(f"error: {args.model} is not a model directory (no card.json)",
                  file=sys.stderr)
            return None
        data = load_hapt(path)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return read_card(args.model).get("training", {}), data


def run_evaluate(args: argparse.Namespace) -> int:
    from har_stream.training.serving import evaluate_dir
    from har_stream.training.windows import make_windows

    require_train_extra("evaluate")  # plots; a quantised model is compared with its Keras float
    loaded = _model_and_data(args)
    if loaded is None:
        return 2
    training, data = loaded
    test = make_windows(data.of_users(training.get("test_users", data.test_users)),
                        progress=True)
    evaluate_dir(args.model, test, num_threads=args.threads)
    print(summary(args.model))
    return 0


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
    print(summary(args.model))
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
    print(summary(args.model))
    return 0
