"""Load the UCI HAPT raw recordings, from the project's npz or from the data set's own layout.

Both sources become the same in-memory `HaptData`: one `Recording` per experiment with its
raw 50 Hz signals and its labelled segments. Segments are stored 0-based and half-open
(`start <= sample < stop`), converted once here from the data set's 1-based inclusive
`labels.txt` convention, so that nothing downstream has to remember it.

Supported sources:
- `hapt_raw.npz` (keys `acc`, `gyro`, `offsets`, `exp_id`, `user_id`, `labels`, ...; see the
  README beside the shared copy). `save_npz` writes the same layout.
- the UCI archive as published (a `.zip`, possibly wrapping a second zip) or its unpacked
  directory, with `RawData/acc_expXX_userYY.txt`, `RawData/gyro_expXX_userYY.txt`,
  `RawData/labels.txt` and `activity_labels.txt`, under any prefix.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STANDARD_TEST_USERS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
"""The benchmark's subject-wise test split (users absent from a copy are simply not there)."""
BASIC_ACTIVITY_IDS = (1, 2, 3, 4, 5, 6)
"""HAPT ids of the six basic activities; 7..12 are postural transitions."""
RATE_HZ = 50.0

_ACC = re.compile(r"(?:^|/)RawData/acc_exp(\d+)_user(\d+)\.txt$")
_LABELS = re.compile(r"(?:^|/)RawData/labels\.txt$")
_ACTIVITY_LABELS = re.compile(r"(?:^|/)activity_labels\.txt$")


class DataError(Exception):
    """The data is missing or not in a layout this module understands (message says why)."""


DATA_FILE = "hapt_raw.npz"
_REPO = Path(__file__).resolve().parents[2]
DATA_HELP = (
    "HAPT recordings: hapt_raw.npz, the UCI HAPT zip or its unpacked directory "
    "(env HAR_DATA; default: the first of ./data, <repo>/data, <repo>/../shared/data that "
    f"holds {DATA_FILE})"
)
"""The help of every command's --data: where the recordings are looked for."""


def default_data_path() -> Path:
    """$HAR_DATA, else the first of ./data, <repo>/data, <repo>/../shared/data holding the npz
    (the last of them if none does, so that the error names a place)."""
    if os.environ.get("HAR_DATA"):
        return Path(os.environ["HAR_DATA"])
    candidates = (Path("data") / DATA_FILE, _REPO / "data" / DATA_FILE,
                  _REPO.parent / "shared" / "data" / DATA_FILE)
    return next((c for c in candidates if c.is_file()), candidates[-1])


def find_data(path: Path | None) -> Path:
    """`path`, else the default one, if it exists; else a `DataError` that says how to get it."""
    path = path or default_data_path()
    if not path.exists():
        raise DataError(
            f"HAPT data not found at {path}. Pass --data PATH or set HAR_DATA; to fetch it "
            f"(needs internet): `har-stream data download --out data/{DATA_FILE}`, or convert "
            f"a downloaded UCI zip with `har-stream data convert ZIP --out data/{DATA_FILE}`.")
    return path


@dataclass(frozen=True, slots=True, eq=False)
class Recording:
    """One experiment: a continuous recording of one subject, with its labelled segments."""

    exp_id: int
    user_id: int
    acc: np.ndarray  # float32 (n, 3), g, gravity included
    gyro: np.ndarray  # float32 (n, 3), rad/s
    segments: np.ndarray  # int64 (k, 3): activity_id, start, stop (0-based, half-open), by start

    def __len__(self) -> int:
        return len(self.acc)


@dataclass(frozen=True, slots=True, eq=False)
class HaptData:
    """Every recording of a source, the activity names and the test users present."""

    recordings: tuple[Recording, ...]
    activity_names: dict[int, str]
    test_users: tuple[int, ...]
    sha256: str
    """Hash of the source file (of the listed files, for a directory): names the training data."""

    def users(self) -> tuple[int, ...]:
        return tuple(sorted({r.user_id for r in self.recordings}))

    def of_users(self, users: Iterable[int]) -> tuple[Recording, ...]:
        wanted = set(users)
        return tuple(r for r in self.recordings if r.user_id in wanted)


def load_hapt(path: str | Path) -> HaptData:
    """Load recordings from an npz, a UCI zip or an unpacked UCI directory."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        files = {p.relative_to(path).as_posix(): p for p in path.rglob("*.txt")}
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name].read_bytes())
        return _from_uci(sorted(files), lambda name: files[name].read_bytes(), digest.hexdigest())
    if path.suffix == ".npz":
        return _from_npz(path)
    if zipfile.is_zipfile(path):
        return _from_zip(path.read_bytes(), file_sha256(path))
    raise DataError(f"{path}: expected a .npz, a UCI HAPT .zip or an unpacked UCI directory")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_npz(path: Path) -> HaptData:
    with np.load(path, allow_pickle=False) as d:
        missing = {"acc", "gyro", "offsets", "exp_id", "user_id", "labels"} - set(d.files)
        if missing:
            raise DataError(f"{path}: not a HAPT npz, missing keys {sorted(missing)}")
        acc, gyro, offsets = d["acc"], d["gyro"], d["offsets"]
        exp_ids, user_ids, labels = d["exp_id"], d["user_id"], d["labels"]
        names = _names(d["activity_id"], d["activity_names"]) if "activity_names" in d else {}
        present = set(user_ids.tolist())
        test = d.get("test_users", STANDARD_TEST_USERS)
        test_users = tuple(int(u) for u in test if int(u) in present)
    recordings = tuple(
        Recording(int(e), int(u), acc[offsets[k]:offsets[k + 1]].astype(np.float32),
                  gyro[offsets[k]:offsets[k + 1]].astype(np.float32),
                  _segments(labels, int(e), offsets[k + 1] - offsets[k]))
        for k, (e, u) in enumerate(zip(exp_ids, user_ids, strict=True))
    )
    return HaptData(recordings, names or _default_names(), test_users, file_sha256(path))


def _from_zip(content: bytes, sha256: str) -> HaptData:
    archive = zipfile.ZipFile(io.BytesIO(content))
    names = archive.namelist()
    if not any(_ACC.search(n) for n in names):
        inner = [n for n in names if n.lower().endswith(".zip")]
        if len(inner) == 1:  # the UCI download wraps the data set's own zip
            return _from_zip(archive.read(inner[0]), sha256)
    return _from_uci(names, archive.read, sha256)


def _from_uci(names: list[str], read: Callable[[str], bytes], sha256: str) -> HaptData:
    labels_file = next((n for n in names if _LABELS.search(n)), None)
    acc_files = sorted((int(m[1]), int(m[2]), n) for n in names if (m := _ACC.search(n)))
    if labels_file is None or not acc_files:
        raise DataError("no RawData/acc_expXX_userYY.txt or RawData/labels.txt found: "
                        "not the UCI HAPT layout")
    labels = _table(read(labels_file), np.int64)
    recordings = []
    for exp_id, user_id, acc_name in acc_files:
        gyro_name = re.sub(r"acc_(exp\d+_user\d+\.txt)$", r"gyro_\1", acc_name)
        if gyro_name not in names:
            raise DataError(f"{acc_name} has no matching {gyro_name}")
        acc = _table(read(acc_name), np.float64).astype(np.float32)
        gyro = _table(read(gyro_name), np.float64).astype(np.float32)
        if acc.shape != gyro.shape or acc.shape[1:] != (3,):
            raise DataError(f"{acc_name}: acc {acc.shape} and gyro {gyro.shape} do not align")
        recordings.append(Recording(exp_id, user_id, acc, gyro,
                                    _segments(labels, exp_id, len(acc))))
    activity_file = next((n for n in names if _ACTIVITY_LABELS.search(n)), None)
    activity_names = _default_names()
    if activity_file is not None:
        for line in read(activity_file).decode().splitlines():
            if line.strip():
                ident, name = line.split(maxsplit=1)
                activity_names[int(ident)] = name.strip()
    present = {r.user_id for r in recordings}
    test_users = tuple(u for u in STANDARD_TEST_USERS if u in present)
    return HaptData(tuple(recordings), activity_names, test_users, sha256)


def _table(content: bytes, dtype: type) -> np.ndarray:
    return np.loadtxt(io.StringIO(content.decode()), dtype=dtype, ndmin=2)


def _segments(labels: np.ndarray, exp_id: int, n_samples: int) -> np.ndarray:
    """Label rows (exp, user, activity, start, end; 1-based inclusive) → 0-based half-open."""
    rows = labels[labels[:, 0] == exp_id]
    segments = np.stack([rows[:, 2], rows[:, 3] - 1, rows[:, 4]], axis=1).astype(np.int64)
    segments = segments[np.argsort(segments[:, 1], kind="stable")].reshape(-1, 3)
    if len(segments) and (segments[:, 1].min() < 0 or segments[:, 2].max() > n_samples):
        raise DataError(f"experiment {exp_id}: a labelled segment lies outside the recording")
    return segments


def _names(ids: np.ndarray, names: np.ndarray) -> dict[int, str]:
    return {int(i): str(n) for i, n in zip(ids, names, strict=True)}


def _default_names() -> dict[int, str]:
    return dict(enumerate(
        ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING",
         "STAND_TO_SIT", "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT", "STAND_TO_LIE",
         "LIE_TO_STAND"), start=1))


def save_npz(data: HaptData, path: str | Path, test_users: Iterable[int] | None = None) -> None:
    """Write `data` in the `hapt_raw.npz` layout (compressed; label rows back to 1-based)."""
    recordings = sorted(data.recordings, key=lambda r: r.exp_id)
    lengths = [len(r) for r in recordings]
    labels = [
        (r.exp_id, r.user_id, int(a), int(s) + 1, int(t))
        for r in recordings for a, s, t in r.segments
    ]
    ids = sorted(data.activity_names)
    users = {r.user_id for r in recordings}
    wanted = data.test_users if test_users is None else tuple(test_users)
    np.savez_compressed(
        path,
        acc=np.concatenate([r.acc for r in recordings]).astype(np.float32),
        gyro=np.concatenate([r.gyro for r in recordings]).astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        exp_id=np.array([r.exp_id for r in recordings], np.int32),
        user_id=np.array([r.user_id for r in recordings], np.int32),
        labels=np.array(labels, np.int32).reshape(-1, 5),
        activity_id=np.array(ids, np.int32),
        activity_names=np.array([data.activity_names[i] for i in ids]),
        test_users=np.array(sorted(u for u in wanted if u in users), np.int32),
        fs_hz=np.float32(RATE_HZ),
    )
