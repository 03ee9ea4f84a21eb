"""Smoke run of the real commands: train the stateful model for one epoch on a tiny synthetic
HAPT file, then evaluate it and re-export it at another precision; train one tutorial
architecture; render the zoo table."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from har_stream.core.records import ACTIVITIES
from har_stream.serving import load_model
from har_stream.training import commands
from har_stream.training.catalog import STATEFUL_FILTERS, STATEFUL_KERNEL
from har_stream.training.hapt import HaptData, Recording, save_npz
from har_stream.training.zoo import zoo_table

N = 2400  # samples per recording: 36 windows


def synthetic_recording(exp_id: int, user_id: int, rng: np.random.Generator) -> Recording:
    """Six activities of 400 samples with distinct gravity direction and rhythm."""
    t = np.arange(N) / 50.0
    acc, gyro = np.zeros((N, 3)), np.zeros((N, 3))
    segments = []
    for k in range(6):
        part = slice(k * 400, (k + 1) * 400)
        gravity = np.eye(3)[k % 3] * (1 if k < 3 else -1)
        acc[part] = gravity + 0.3 * (k < 3) * np.sin(2 * np.pi * (1 + k) * t[part])[:, None]
        gyro[part] = 0.2 * k * np.cos(2 * np.pi * t[part])[:, None]
        segments.append((k + 1, k * 400 + 20, (k + 1) * 400 - 20))
    acc += rng.normal(0, 0.02, acc.shape)
    gyro += rng.normal(0, 0.02, gyro.shape)
    return Recording(exp_id, user_id, acc.astype(np.float32), gyro.astype(np.float32),
                     np.array(segments, np.int64))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    recordings = tuple(synthetic_recording(user, user, rng) for user in range(1, 6))
    names = dict(enumerate(ACTIVITIES, start=1))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(HaptData(recordings, names, (5,), ""), path)
    return path


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def trained(data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stateful model trained for one epoch, served in float (tests work on copies)."""
    out = tmp_path_factory.mktemp("trained") / "model"
    assert cli("train", "--data", str(data_file), "--out", str(out), "--epochs", "1",
               "--validation-users", "1", "--state-size", "8", "--sequence-length", "8",
               "--filters", "8,8,16", "--kernel", "3", "--precision", "float32",
               "--quiet") == 0
    return out


@pytest.mark.slow
def test_train_then_evaluate_the_stateful_model(trained: Path, data_file: Path,
                                                tmp_path: Path):
    out = tmp_path / "model"
    shutil.copytree(trained, out)
    card = json.loads((out / "card.json").read_text())
    assert card["serving"]["precision"] == "float32"
    assert card["version"] == card["serving"]["weights_version"]
    assert "float_reference" not in card["evaluation"]
    assert card["classes"] == [*ACTIVITIES, "TRANSITION"] and card["state_size"] == 8
    assert card["architecture"]["filters"] == [8, 8, 16] and card["architecture"]["kernel"] == 3
    assert card["training"]["test_users"] == [5] and len(card["training"]["validation_users"]) == 1
    assert card["training"]["epochs_run"] == 1
    windows = card["evaluation"]["windows"]
    assert windows["total"] == 36 and windows["benchmark"] + windows["excluded"] == 36
    for name in ("model.keras", "model.tflite", "card.md", "confusion.png", "per_subject.png"):
        assert (out / name).is_file()
    model = load_model(out)
    assert model.version == card["version"]

    (out / "card.md").unlink()
    assert cli("evaluate", "--model", str(out), "--data", str(data_file)) == 0
    again = json.loads((out / "card.json").read_text())
    assert again["evaluation"]["stream"] == card["evaluation"]["stream"]  # deterministic
    assert (out / "card.md").is_file()


@pytest.mark.parametrize("filters", ["", "64,,128", "64,0", "wide"])
def test_train_refuses_filters_that_are_not_positive_integers(
        filters: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        cli("train", "--filters", filters)
    assert exited.value.code == 2
    assert "comma-separated list of positive integers" in capsys.readouterr().err


@pytest.mark.slow
def test_export_judges_a_precision_on_validation_users_and_refuses_a_loss(
        trained: Path, data_file: Path, tmp_path: Path):
    out = tmp_path / "model"
    shutil.copytree(trained, out)
    trained_card = json.loads((out / "card.json").read_text())
    float_flatbuffer = (out / "model.tflite").read_bytes()

    # a drop budget below zero refuses any quantised flatbuffer: nothing may change
    int8 = ("--precision", "dynamic-range-int8")
    assert cli("model", "export", "--model", str(out), "--data", str(data_file), *int8,
               "--max-drop", "-1") == 1
    assert (out / "model.tflite").read_bytes() == float_flatbuffer
    assert json.loads((out / "card.json").read_text()) == trained_card

    assert cli("model", "export", "--model", str(out), "--data", str(data_file), *int8,
               "--max-drop", "1") == 0
    card = json.loads((out / "card.json").read_text())
    serving = card["serving"]
    assert serving["precision"] == "dynamic-range-int8"
    assert card["version"] == trained_card["version"] + "-int8" == load_model(out).version
    assert serving["validation"]["users"] == trained_card["training"]["validation_users"]
    assert serving["validation"]["float"] == trained_card["serving"]["validation"]["served"]
    assert card["evaluation"]["float_reference"]["stream"] == trained_card["evaluation"]["stream"]
    assert card["evaluation"]["float_reference"]["agreement"]["windows"] == 36
    assert (out / "model.tflite").read_bytes() != float_flatbuffer
    assert "## Served flatbuffer: dynamic-range-int8" in (out / "card.md").read_text()

    # and back to float (the default precision): the weights' own version again
    assert cli("model", "export", "--model", str(out), "--data", str(data_file)) == 0
    assert load_model(out).version == trained_card["version"]
    assert (out / "model.tflite").read_bytes() == float_flatbuffer


def test_train_a_tutorial_architecture(data_file: Path, tmp_path: Path):
    out = tmp_path / "cnn"
    assert cli("train", "--arch", "cnn", "--data", str(data_file), "--out", str(out),
               "--epochs", "1", "--validation-users", "1", "--quiet") == 0
    card = json.loads((out / "card.json").read_text())
    assert 0.0 <= card["evaluation"]["window"]["accuracy"] <= 1.0
    assert (out / "model.keras").is_file()


def test_zoo_table_reports_mean_and_spread_per_architecture():
    rows = [{"arch": "cnn", "seed": s, "params": 1000, "epochs": 10, "seconds": 5.0,
             "test": {"accuracy": a, "macro_f1": a}, "validation": {"accuracy": a}}
            for s, a in enumerate((0.90, 0.92, 0.94))]
    table = zoo_table(rows)
    assert "| cnn | 1,000 | 3 | 92.00 ± 2.00 % | 0.9200 ± 0.0200 |" in table
    assert "90.9 %" in table  # the tutorial's published figure beside it


def test_zoo_table_tells_stateful_encoders_apart_and_marks_the_served_one():
    def run(seed: int, accuracy: float, **encoder: object) -> dict:
        scores = {"accuracy": accuracy, "macro_f1": accuracy}
        return {"arch": "stateful", "seed": seed, "params": 500, "epochs": 20, "seconds": 9.0,
                "test": scores, "validation": scores, "reset_every_window": scores, **encoder}

    served = {"filters": list(STATEFUL_FILTERS), "kernel": STATEFUL_KERNEL}
    rows = [run(0, 0.96, filters=[8, 8, 16], kernel=3), run(1, 0.98, filters=[8, 8, 16], kernel=3),
            run(0, 0.90, **served), run(1, 0.92, **served)]
    lines = zoo_table(rows).splitlines()[2:]
    served_name = f"stateful CNN+GRU, filters {'/'.join(map(str, STATEFUL_FILTERS))} " \
                  f"k{STATEFUL_KERNEL}"
    assert lines[0].startswith(f"| {served_name} (served) | 500 | 2 | 91.00 ± 1.41 % |")
    assert lines[1].startswith(f"| {served_name}, state reset every window |")
    assert lines[2].startswith("| stateful CNN+GRU, filters 8/8/16 k3 | 500 | 2 | 97.00 ± 1.41 % |")
    assert len(lines) == 4
