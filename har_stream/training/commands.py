"""`har-stream train`, `evaluate`, `model export` and `data`: the command-line side.

Only argument parsing and messages live here; TensorFlow is imported by the commands when
they run, never at import, so `har-stream --help` stays instant. `train`, `evaluate` and
`model export` need the `train` extra and say so before loading any data when it is missing
(`data` does not: it only reads and writes files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from har_stream.extras import require_train_extra
from har_stream.serving import DEFAULT_MODEL_DIR
from har_stream.training.card import summary
from har_stream.training.export import PRECISIONS, SERVED_PRECISION
from har_stream.training.hapt import DATA_FILE, DATA_HELP, DataError, find_data
from har_stream.training.model_commands import add_evaluate_parser, add_model_parser
from har_stream.training.settings import FitSettings, StatefulConfig

if TYPE_CHECKING:  # imported when a command runs, so that --help stays instant
    from har_stream.training.train import TrainOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    _add_train(subparsers)
    add_evaluate_parser(subparsers)
    add_model_parser(subparsers)
    _add_data(subparsers)


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from har_stream.training.catalog import ZOO_ARCHITECTURES

    fitting, shape = FitSettings(), StatefulConfig()  # the defaults, written once there

    p = subparsers.add_parser(
        "train", help="train a model on the HAPT recordings (windows cut by the service's "
        "own pipeline) and write its model directory and card",
        description="Train the stateful CNN+GRU (default) or a tutorial architecture. Users "
        "are split subject-wise: the data set's test users are held out and only used for "
        "the final evaluation written to the card; early stopping and every choice use a "
        "validation subset of the training users. With --zoo, train every architecture "
        "with several seeds and print the benchmark table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", default="stateful", choices=("stateful", *ZOO_ARCHITECTURES),
                   help="architecture to train")
    p.add_argument("--data", type=Path, default=None, help=DATA_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help=f"model directory to write (default: {DEFAULT_MODEL_DIR} for the "
                   "stateful model, runs/<arch> for the others)")
    p.add_argument("--seed", type=int, default=fitting.seed,
                   help="seed of weights, shuffling, augmentation")
    p.add_argument("--epochs", type=int, default=fitting.epochs,
                   help="most epochs (early stopping usually ends sooner)")
    p.add_argument("--patience", type=int, default=fitting.patience,
                   help="epochs without validation improvement before stopping")
    p.add_argument("--learning-rate", type=float, default=fitting.learning_rate)
    p.add_argument("--sequence-length", type=int, default=fitting.sequence_length,
                   help="stateful: consecutive windows per training sequence")
    p.add_argument("--state-size", type=int, default=shape.state_size,
                   help="stateful: GRU state width H")
    p.add_argument("--filters", type=_widths,
                   default=",".join(map(str, shape.filters)),
                   help="stateful: filters of each convolution block, comma-separated (the "
                   "encoder's cost per window grows with them)")
    p.add_argument("--kernel", type=int, default=shape.kernel,
                   help="stateful: convolution kernel width")
    p.add_argument("--transition-class", action=argparse.BooleanOptionalAction,
                   default=fitting.with_transition,
                   help="stateful: add a 7th class TRANSITION for windows made mostly of "
                   "postural transitions")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=fitting.augment,
                   help="stateful: random small rotations and gains per training sequence")
    p.add_argument("--yaw-degrees", type=float, default=fitting.yaw_degrees,
                   help="stateful: augmentation also turns training sequences about the "
                   "device's x axis (vertical when the wearer stands) by an angle up to this, "
                   "like a phone worn turned in its holder (180: any turn; 0: never; chosen "
                   "by --cv, docs/MODELS.md)")
    p.add_argument("--yaw-share", type=float, default=fitting.yaw_share,
                   help="stateful: share of the training sequences turned by --yaw-degrees")
    p.add_argument("--ema-decay", type=float, default=fitting.ema_decay,
                   help="stateful: validate and keep a moving average of the weights with "
                   "this decay per batch (0: off)")
    p.add_argument("--precision", default=SERVED_PRECISION, choices=PRECISIONS,
                   help="stateful: precision of the served flatbuffer (model.tflite); a "
                   "quantised one must lose at most 0.5 points of validation accuracy and "
                   "macro-F1 against float (model.keras stays the float reference)")
    p.add_argument("--validation-users", type=int, default=5,
                   help="training users held out for validation (0: train on every training "
                   "user for exactly --epochs, with --temperature; both from --cv)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="with --validation-users 0: softmax temperature folded into the head "
                   "(fitted on out-of-fold predictions, printed by --cv)")
    p.add_argument("--cv", type=int, default=0, metavar="K",
                   help="subject-grouped K-fold cross-validation over the training users "
                   "with these settings and --seeds; prints the table of every setting in "
                   "--cv-results (finished folds are kept, so a rerun resumes)")
    p.add_argument("--cv-name", default="",
                   help="--cv: name of this setting in the table (default: its hash)")
    p.add_argument("--cv-results", type=Path, default=Path("runs/cv/results.jsonl"),
                   help="--cv: results file; out-of-fold predictions go beside it in oof/")
    p.add_argument("--cv-inner", type=int, default=3,
                   help="--cv: users of each fold's training part held out for early stopping")
    p.add_argument("--cv-report", action="store_true",
                   help="only print the table of --cv-results (no training)")
    p.add_argument("--max-recordings", type=int, default=0,
                   help="keep only this many recordings per split (0: all; for smoke runs)")
    p.add_argument("--zoo", action="store_true",
                   help="benchmark every architecture over --seeds and print the table")
    p.add_argument("--seeds", type=int, default=3, help="--zoo: seeds per architecture; "
                   "--cv: seeds per fold, from --seed on")
    p.add_argument("--zoo-archs", default="",
                   help="--zoo: comma-separated architectures to run (default: all)")
    p.add_argument("--zoo-results", type=Path, default=Path("runs/zoo/results.jsonl"),
                   help="--zoo: results file (finished runs are kept, so a rerun resumes)")
    p.add_argument("--note", action="append", default=[],
                   help="a line for the card's training section (e.g. how a setting was "
                   "chosen); repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)


def _widths(text: str) -> tuple[int, ...]:
    """`64,64,128` → (64, 64, 128): positive integers, at least one."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive "
                                         "integers")
    return widths


def _add_data(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="get the HAPT data set or convert it to npz",
                              description="Fetch or convert the UCI HAPT recordings.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    download = sub.add_parser(
        "download", help="download the official UCI HAPT archive and convert it to npz",
        description="Download the UCI HAPT archive (needs internet access) and write the "
        "recordings as an npz that `train --data` reads.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from har_stream.training.download import UCI_URL

    download.add_argument("--url", default=UCI_URL, help="archive to fetch")
    download.add_argument("--out", type=Path, default=Path("data") / DATA_FILE,
                          help="npz to write")
    download.add_argument("--keep-zip", type=Path, default=None,
                          help="also keep the downloaded archive here")
    download.set_defaults(func=run_download)
    convert = sub.add_parser(
        "convert", help="convert a UCI HAPT zip or directory to npz",
        description="Read RawData/acc_expXX_userYY.txt, gyro_..., labels.txt and "
        "activity_labels.txt from a UCI HAPT zip or directory and write one npz.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    convert.add_argument("source", type=Path, help="the UCI zip or unpacked directory")
    convert.add_argument("--out", type=Path, default=Path("data") / DATA_FILE,
                         help="npz to write")
    convert.set_defaults(func=run_convert)


def run_train(args: argparse.Namespace) -> int:
    from har_stream.training.serving import PrecisionRejected

    require_train_extra("train")
    try:
        options = train_options(args, find_data(args.data))
        if args.cv or args.cv_report:
            return _run_cv(args, options)
        if args.zoo:
            from har_stream.training.zoo import ORDER, run_zoo

            archs = [a for a in args.zoo_archs.split(",") if a] or list(ORDER)
            print(run_zoo(options, range(args.seeds), args.zoo_results, archs))
            return 0
        from har_stream.training.train import train_model

        directory = train_model(options)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PrecisionRejected as exc:
        print(f"error: {exc}. {options.out} holds the trained model.keras; serve it in float "
              f"with `har-stream model export --model {options.out} --precision float32`",
              file=sys.stderr)
        return 1
    print(summary(directory))
    return 0


def train_options(args: argparse.Namespace, data: Path) -> TrainOptions:
    """The options of `har-stream train` as parsed (`data`: the HAPT file found)."""
    from har_stream.training.train import STATEFUL, TrainOptions

    out = args.out or (DEFAULT_MODEL_DIR if args.arch == STATEFUL else Path("runs") / args.arch)
    settings = FitSettings(
        epochs=args.epochs, patience=args.patience, learning_rate=args.learning_rate,
        seed=args.seed, sequence_length=args.sequence_length,
        with_transition=args.transition_class, augment=args.augment,
        yaw_degrees=args.yaw_degrees, yaw_share=args.yaw_share, ema_decay=args.ema_decay,
        verbose=0 if args.quiet else (1 if sys.stdout.isatty() else 2))
    config = StatefulConfig(state_size=args.state_size, filters=args.filters,
                            kernel=args.kernel)
    return TrainOptions(data=data, out=out, arch=args.arch, settings=settings, config=config,
                        n_validation=args.validation_users, temperature=args.temperature,
                        max_recordings=args.max_recordings, precision=args.precision,
                        notes=tuple(args.note))


def _run_cv(args: argparse.Namespace, options: TrainOptions) -> int:
    from har_stream.training.cv import run_cv, settings_key, settings_of
    from har_stream.training.cv_report import cv_report
    from har_stream.training.hapt import load_hapt
    from har_stream.training.windows import make_windows

    if args.cv:
        data = load_hapt(options.data)
        training_users = sorted(set(data.users()) - set(data.test_users))
        windows = make_windows(data.of_users(training_users), progress=not args.quiet)
        name = args.cv_name or settings_key(settings_of(options, args.cv_inner))
        run_cv(options, args.cv, range(args.seed, args.seed + args.seeds), args.cv_results,
               name, windows,
               n_inner=args.cv_inner, progress=not args.quiet)
    print(cv_report(args.cv_results))
    return 0


def run_download(args: argparse.Namespace) -> int:
    from har_stream.training.download import DownloadError, download_and_convert

    try:
        download_and_convert(args.url, args.out, keep_zip=args.keep_zip)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from har_stream.training.hapt import DataError, load_hapt, save_npz

    try:
        data = load_hapt(args.source)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(data, args.out)
    print(f"wrote {args.out}: {len(data.recordings)} recordings of {len(data.users())} users")
    return 0
