"""Run the command line as on the serving install (`pip install har-stream`): no TensorFlow,
Keras or matplotlib.

The dev environment has them all, so a meta-path finder installed before anything else makes
`import tensorflow` (`keras`, `matplotlib`, and their submodules) raise ModuleNotFoundError,
exactly as when they are not installed. `cli_command(*args)` is the argv of
`har-stream ARGS` run that way; it needs tests/ on PYTHONPATH (`start_service` sets it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
BLOCKED = ("tensorflow", "keras", "matplotlib")
LAUNCHER = (
    "-c",
    "import serving_profile; serving_profile.block_train_extra(); import runpy; "
    "runpy.run_module('har_stream.cli', run_name='__main__', alter_sys=True)",
)
"""`python LAUNCHER ARGS` is `python -m har_stream.cli ARGS` without the `train` extra."""


class TrainExtraBlocker:
    """A meta-path finder that refuses the `train` extra's modules."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: object = None) -> ModuleSpec | None:
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (serving profile)", name=name)
        return None


def block_train_extra() -> None:
    """From now on, this process behaves as if TensorFlow, Keras and matplotlib were absent."""
    already = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    if already:
        raise RuntimeError(f"already imported, cannot be blocked: {already[:5]}")
    sys.meta_path.insert(0, TrainExtraBlocker())


def cli_command(*args: str) -> list[str]:
    return [sys.executable, *LAUNCHER, *args]


def cli_env() -> dict[str, str]:
    """The environment for `cli_command`: no HAR_* settings, tests/ and the repo importable."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO)])
    return environment
