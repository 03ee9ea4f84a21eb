"""HAPT loaders: the UCI layout (zip, nested zip, directory) and the npz give the same data."""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from har_stream.training import commands
from har_stream.training.hapt import DataError, load_hapt, save_npz

LABELS = [  # exp, user, activity, start, end (1-based inclusive, as in labels.txt)
    (1, 1, 5, 3, 40),
    (1, 1, 7, 41, 50),
    (1, 1, 4, 51, 90),
    (2, 2, 1, 10, 80),
]


def uci_files(prefix: str = "") -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    files = {}
    for exp, user, n in ((1, 1, 100), (2, 2, 90)):
        for sensor in ("acc", "gyro"):
            values = rng.normal(size=(n, 3))
            text = "\n".join(" ".join(f"{v:.8e}" for v in row) for row in values) + "\n"
            files[f"{prefix}RawData/{sensor}_exp{exp:02d}_user{user:02d}.txt"] = text.encode()
    files[f"{prefix}RawData/labels.txt"] = "".join(
        " ".join(map(str, row)) + "\n" for row in LABELS).encode()
    files[f"{prefix}activity_labels.txt"] = b"1 WALKING\n4 SITTING\n5 STANDING\n7 STAND_TO_SIT\n"
    return files


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return path


def test_zip_layout_becomes_recordings_with_zero_based_half_open_segments(tmp_path: Path):
    files = uci_files("HAPT Data Set/")
    data = load_hapt(write_zip(tmp_path / "hapt.zip", files))
    assert [(r.exp_id, r.user_id, len(r)) for r in data.recordings] == [(1, 1, 100), (2, 2, 90)]
    first = data.recordings[0]
    np.testing.assert_array_equal(first.segments, [[5, 2, 40], [7, 40, 50], [4, 50, 90]])
    expected_acc = np.loadtxt(io.StringIO(files["HAPT Data Set/RawData/acc_exp01_user01.txt"]
                                          .decode())).astype(np.float32)
    np.testing.assert_array_equal(first.acc, expected_acc)
    assert first.acc.dtype == np.float32 and first.gyro.shape == (100, 3)
    assert data.activity_names[7] == "STAND_TO_SIT"
    assert data.test_users == (2,)  # standard test users present in this copy


def test_nested_zip_and_directory_load_the_same(tmp_path: Path):
    inner = write_zip(tmp_path / "inner.zip", uci_files())
    outer = write_zip(tmp_path / "outer.zip", {"HAPT Data Set.zip": inner.read_bytes()})
    root = tmp_path / "unpacked"
    for name, content in uci_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    a, b = load_hapt(outer), load_hapt(root)
    for ra, rb in zip(a.recordings, b.recordings, strict=True):
        np.testing.assert_array_equal(ra.acc, rb.acc)
        np.testing.assert_array_equal(ra.segments, rb.segments)


def test_npz_round_trip_keeps_signals_labels_and_test_users(tmp_path: Path):
    data = load_hapt(write_zip(tmp_path / "hapt.zip", uci_files()))
    save_npz(data, tmp_path / "hapt.npz")
    with np.load(tmp_path / "hapt.npz") as raw:
        np.testing.assert_array_equal(raw["labels"], LABELS)  # back to 1-based inclusive
        assert list(raw["offsets"]) == [0, 100, 190]
    again = load_hapt(tmp_path / "hapt.npz")
    assert again.test_users == (2,)
    assert again.activity_names == data.activity_names
    for ra, rb in zip(data.recordings, again.recordings, strict=True):
        np.testing.assert_array_equal(ra.gyro, rb.gyro)
        np.testing.assert_array_equal(ra.segments, rb.segments)


def test_convert_command_writes_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    source = write_zip(tmp_path / "hapt.zip", uci_files())
    out = tmp_path / "out" / "hapt_raw.npz"
    code = commands.run_convert(argparse.Namespace(source=source, out=out))
    assert code == 0 and "2 recordings of 2 users" in capsys.readouterr().out
    assert len(load_hapt(out).recordings) == 2


def test_not_a_hapt_archive_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DataError, match="UCI HAPT layout"):
        load_hapt(write_zip(tmp_path / "other.zip", {"readme.txt": b"hello"}))
    with pytest.raises(DataError, match="does not exist"):
        load_hapt(tmp_path / "missing.npz")


def test_download_without_network_fails_with_advice(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]):
    args = argparse.Namespace(url="http://127.0.0.1:9/hapt.zip", out=tmp_path / "x.npz",
                              keep_zip=None)
    assert commands.run_download(args) == 2
    assert "har-stream data convert" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_train_without_data_says_how_to_get_it(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]):
    parser = argparse.ArgumentParser()
    commands.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", str(tmp_path / "none.npz")])
    assert args.func(args) == 2
    assert "har-stream data download" in capsys.readouterr().err
