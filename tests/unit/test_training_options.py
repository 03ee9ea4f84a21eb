"""`har-stream train`'s options: each default written once (in `training/settings.py`), and
every flag reaching the settings the fit runs with."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from har_stream.serving import DEFAULT_MODEL_DIR
from har_stream.training import commands
from har_stream.training.settings import FitSettings, StatefulConfig
from har_stream.training.train import TrainOptions, fit_settings

DATA = Path("data.npz")


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_the_parser_defaults_are_the_options_defaults():
    """A `TrainOptions` built in code trains as `har-stream train` with no flags does (the
    transition class, the moving average and the turns about x were once off in code only)."""
    options = commands.train_options(parsed("--quiet"), DATA)
    in_code = TrainOptions(data=DATA, out=DEFAULT_MODEL_DIR)
    assert options.settings == replace(FitSettings(), verbose=0)
    assert replace(options, settings=FitSettings()) == in_code
    assert in_code.config == StatefulConfig()
    assert (in_code.settings.with_transition, in_code.settings.ema_decay,
            in_code.settings.yaw_degrees, in_code.settings.yaw_share) == (True, 0.99, 180.0, 0.5)


def test_every_train_flag_reaches_the_settings_and_the_model_shape():
    options = commands.train_options(parsed(
        "--seed", "3", "--epochs", "5", "--patience", "2", "--learning-rate", "0.01",
        "--sequence-length", "16", "--no-transition-class", "--no-augment",
        "--yaw-degrees", "30", "--yaw-share", "0.2", "--ema-decay", "0", "--quiet",
        "--state-size", "32", "--filters", "8,16", "--kernel", "3",
        "--validation-users", "0", "--temperature", "1.5", "--max-recordings", "4",
        "--precision", "float32", "--note", "why", "--out", "elsewhere"), DATA)
    assert options.settings == FitSettings(
        epochs=5, patience=2, learning_rate=0.01, seed=3, sequence_length=16,
        with_transition=False, augment=False, yaw_degrees=30.0, yaw_share=0.2, ema_decay=0.0,
        verbose=0)
    assert options.config == StatefulConfig(state_size=32, filters=(8, 16), kernel=3)
    assert (options.n_validation, options.temperature, options.max_recordings,
            options.precision, options.notes, options.out) == (
        0, 1.5, 4, "float32", ("why",), Path("elsewhere"))


def test_a_tutorial_architecture_keeps_no_moving_average_and_writes_to_runs():
    options = commands.train_options(parsed("--arch", "cnn"), DATA)
    assert options.out == Path("runs") / "cnn"
    assert fit_settings(options) == replace(options.settings, ema_decay=0.0)
    assert fit_settings(replace(options, arch="stateful")) == options.settings
