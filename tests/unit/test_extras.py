"""The serving install (no TensorFlow, Keras, matplotlib): help works, and every command that
needs the `train` extra says so in one line naming it, never with a traceback."""

from __future__ import annotations

import argparse
import subprocess

import pytest
from serving_profile import REPO, cli_command, cli_env

from har_stream import cli
from har_stream.extras import MissingExtra, require_train_extra, train_module_missing

ADVICE = "pip install 'har-stream[train]'"


def run_without_train_extra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=cli_env())


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["simulate", "--help"],
                                  ["demo", "--help"], ["train", "--help"],
                                  ["data", "convert", "--help"], ["--version"]])
def test_help_works_without_the_train_extra(args: list[str]) -> None:
    done = run_without_train_extra(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "har-stream" in done.stdout


def test_the_launcher_really_hides_tensorflow() -> None:
    """Guards the tests below: TensorFlow is installed here, so the blocker must hide it."""
    done = subprocess.run(
        cli_command("--version")[:2] + [
            "import serving_profile; serving_profile.block_train_extra(); import tensorflow"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=cli_env())
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'tensorflow'" in done.stderr


@pytest.mark.parametrize(("command", "args"), [
    ("train", ["train", "--epochs", "1"]),
    ("evaluate", ["evaluate"]),
    ("model export", ["model", "export"]),
    ("bench inference", ["bench", "inference", "--quick"]),
    ("bench model-pipeline", ["bench", "model-pipeline", "--quick"]),
    ("bench scaling", ["bench", "scaling", "--quick", "--write"]),
])
def test_commands_needing_tensorflow_name_the_extra(command: str, args: list[str]) -> None:
    done = run_without_train_extra(*args)
    assert done.returncode == cli.EXIT_MISSING_EXTRA, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"har-stream {command}: needs ")
    assert ADVICE in lines[0]


def test_require_train_extra_names_the_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from har_stream import extras

    monkeypatch.setattr(extras, "is_installed", lambda module: module != "keras")
    with pytest.raises(MissingExtra, match=r"har-stream evaluate: needs keras.*har-stream\[train"):
        require_train_extra("evaluate")


@pytest.mark.parametrize(("exc", "module"), [
    (ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow"), "tensorflow"),
    (ModuleNotFoundError("x", name="matplotlib.pyplot"), "matplotlib"),
    (ModuleNotFoundError("x", name="keras"), "keras"),
    (ModuleNotFoundError("x", name="yaml"), None),
    (ModuleNotFoundError("x"), None),
    (ImportError("cannot import name 'x' from 'tensorflow'", name="tensorflow"), None),
])
def test_only_the_train_extras_modules_are_reported_as_missing(
        exc: ImportError, module: str | None) -> None:
    assert train_module_missing(exc) == module


def _parser_running(func: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="har-stream")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bench").set_defaults(func=func, name="inference")
    return parser


def test_main_turns_a_late_missing_tensorflow_into_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def needs_keras(_args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'keras'", name="keras")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_running(needs_keras))
    assert cli.main(["bench"]) == cli.EXIT_MISSING_EXTRA
    err = capsys.readouterr().err
    assert err.startswith("har-stream bench inference: needs keras")
    assert ADVICE in err


def test_main_lets_other_import_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'somewhere'", name="somewhere")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_running(broken))
    with pytest.raises(ModuleNotFoundError, match="somewhere"):
        cli.main(["bench"])
