"""Subject-grouped cross-validation: folds of whole subjects, resumable results, the table;
the final fit on every training user; the turn-about-x augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_training_smoke import cli, synthetic_recording

from har_stream.core.records import ACTIVITIES
from har_stream.serving import load_model
from har_stream.training.augment import rotate_and_scale, turns_about_x
from har_stream.training.cv import assign_folds
from har_stream.training.cv_report import cv_report
from har_stream.training.hapt import HaptData, save_npz

TINY_MODEL = ("--epochs", "1", "--state-size", "8", "--sequence-length", "8", "--filters",
              "8,8,16", "--kernel", "3", "--quiet")


def test_folds_hold_whole_subjects_once_and_do_not_depend_on_order():
    users = [30, 1, 3, 5, 6, 7, 8, 11, 14, 15, 16, 17, 19, 21, 22, 23, 25, 26, 27, 28, 29]
    folds = assign_folds(users, 5)
    assert sorted(u for fold in folds for u in fold) == sorted(users)
    assert {len(fold) for fold in folds} == {4, 5}
    assert assign_folds(list(reversed(users)), 5) == folds
    with pytest.raises(ValueError):
        assign_folds(users[:3], 4)


@pytest.mark.parametrize(("argv", "key"), [
    (["--yaw-degrees", "0"], "01271393ac7c"),  # the recipe before turns; any --yaw-share
    (["--yaw-degrees", "0", "--yaw-share", "1"], "01271393ac7c"),
    (["--yaw-share", "1"], "c718cb297882"),
    ([], "b897bf558f9b"),  # the defaults: the chosen setting
])
def test_cv_settings_keep_the_keys_of_finished_results(argv: list[str], key: str):
    """Results are resumed by key: new options must not change the keys of earlier runs."""
    import argparse

    from har_stream.training import commands
    from har_stream.training.cv import settings_key, settings_of

    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--cv", "5", *argv])
    options = commands.train_options(args, Path("data.npz"))
    assert settings_key(settings_of(options, args.cv_inner)) == key


def test_turns_about_x_keep_x_and_reach_half_a_turn():
    turns = turns_about_x(500, 180.0, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.det(turns), 1.0, atol=1e-12)
    np.testing.assert_allclose(turns[:, 0], np.broadcast_to([1.0, 0, 0], (500, 3)), atol=1e-12)
    angles = np.degrees(np.arctan2(turns[:, 2, 1], turns[:, 1, 1]))
    assert angles.min() < -170 and angles.max() > 170


def test_yaw_augmentation_turns_every_vector_group_alike_about_x():
    x = np.random.default_rng(1).normal(size=(64, 2, 128, 9)).astype(np.float32)
    y = rotate_and_scale(x, np.random.default_rng(2), max_degrees=0.0, max_gain=0.0,
                         yaw_degrees=180.0)
    np.testing.assert_allclose(y[..., [0, 3, 6]], x[..., [0, 3, 6]], atol=1e-5)
    groups = lambda a: a.reshape(*a.shape[:-1], 3, 3)  # noqa: E731
    np.testing.assert_allclose(np.linalg.norm(groups(y), axis=-1),
                               np.linalg.norm(groups(x), axis=-1), rtol=1e-4)
    flipped = np.mean(np.sign(y[:, 0, 0, 1]) != np.sign(x[:, 0, 0, 1]))
    assert 0.2 < flipped < 0.8  # turned by every angle, not only small ones


def test_yaw_share_turns_only_that_share_of_the_sequences():
    x = np.random.default_rng(3).normal(size=(400, 1, 128, 9)).astype(np.float32)
    unchanged = rotate_and_scale(x, np.random.default_rng(4), max_degrees=0.0, max_gain=0.0,
                                 yaw_degrees=180.0, yaw_share=0.0)
    np.testing.assert_allclose(unchanged, x, atol=1e-6)
    half = rotate_and_scale(x, np.random.default_rng(4), max_degrees=0.0, max_gain=0.0,
                            yaw_degrees=180.0, yaw_share=0.5)
    turned = ~np.all(np.isclose(half, x, atol=1e-6), axis=(1, 2, 3))
    assert 0.4 < turned.mean() < 0.6


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six users, user 6 the test user: five training users for two folds."""
    rng = np.random.default_rng(0)
    recordings = tuple(synthetic_recording(user, user, rng) for user in range(1, 7))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_npz(HaptData(recordings, dict(enumerate(ACTIVITIES, start=1)), (6,), ""), path)
    return path


@pytest.mark.slow
def test_cv_scores_every_training_user_once_and_resumes(data_file: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]):
    results = tmp_path / "cv" / "results.jsonl"
    args = ("train", "--data", str(data_file), "--cv", "2", "--seeds", "1", "--cv-inner", "1",
            "--cv-name", "tiny", "--cv-results", str(results), *TINY_MODEL)
    assert cli(*args) == 0
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["fold"] for r in records) == [0, 1]
    held = [u for r in records for u in r["held_out_users"]]
    assert sorted(held) == [1, 2, 3, 4, 5]  # every training user once, never the test user
    for r in records:
        assert not set(r["inner_validation_users"]) & set(r["held_out_users"])
        assert sorted(map(int, r["per_user"])) == r["held_out_users"]
        with np.load(results.parent / "oof" / r["oof"]) as oof:
            assert set(np.unique(oof["user_id"])) == set(r["held_out_users"])
            np.testing.assert_allclose(np.exp(oof["stream"]).sum(axis=1), 1.0, rtol=1e-4)
    table = capsys.readouterr().out
    assert "| tiny | 2 (2 × 1) |" in table
    assert all(f"\n| {u} | " in table for u in range(1, 6)) and "\n| 6 | " not in table

    assert cli(*args) == 0  # resumes: nothing left to run
    assert len(results.read_text().splitlines()) == 2
    assert cv_report(results).count("| tiny | 2 (2 × 1) |") == 1


@pytest.mark.slow
def test_final_fit_on_every_training_user_runs_the_given_epochs(data_file: Path,
                                                                 tmp_path: Path):
    out = tmp_path / "model"
    assert cli("train", "--data", str(data_file), "--out", str(out), "--validation-users", "0",
               "--temperature", "2.0", "--yaw-degrees", "180", "--precision", "float32",
               "--note", "settings chosen by --cv",
               *TINY_MODEL[:-1], "--epochs", "2", "--quiet") == 0
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["validation_users"] == []
    assert card["training"]["train_users"] == [1, 2, 3, 4, 5]
    assert card["training"]["epochs_run"] == 2
    assert card["architecture"]["softmax_temperature"] == 2.0
    assert card["training"]["settings"]["yaw_degrees"] == 180.0
    assert card["evaluation"]["users"] == [6]
    assert "- settings chosen by --cv" in (out / "card.md").read_text()
    assert (out / "reliability.png").is_file()

    # a temperature fitted later: same answers, softer confidence, a new version
    assert cli("model", "calibrate", "--model", str(out), "--data", str(data_file),
               "--temperature", "8.0", "--note", "T fitted out of fold") == 0
    again = json.loads((out / "card.json").read_text())
    assert again["architecture"]["softmax_temperature"] == 8.0
    assert again["version"] == card["version"] + "-T8.00"
    assert again["evaluation"]["stream"] == card["evaluation"]["stream"]
    assert (again["evaluation"]["calibration"]["mean_confidence"]
            < card["evaluation"]["calibration"]["mean_confidence"])
    assert again["training"]["notes"][-1] == "T fitted out of fold"
    assert again["serving"]["validation"]["users"] == [1, 2, 3, 4, 5]  # no validation users
    assert load_model(out).version == again["version"]
