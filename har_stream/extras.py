"""Which optional dependencies a command needs, and the one-line advice when they are missing.

`pip install har-stream` is the serving profile: `run`, `simulate` and `demo`'s recognizer
need numpy, scipy, LiteRT and the Kafka clients only (docs/OPERATIONS.md, "Installing").
Training, evaluation, model export, the Keras inference benchmark and every plot need the
`train` extra (TensorFlow, Keras, matplotlib). A command that needs it checks up front, before
loading data for minutes, and `cli.main` turns any later import failure of these modules into
the same message, so a serving install never answers with a traceback.
"""

from __future__ import annotations

import importlib.util

TRAIN_EXTRA = "train"
TRAIN_MODULES = ("tensorflow", "keras", "matplotlib")
"""Top-level modules that only the `train` extra installs."""


class MissingExtra(Exception):
    """A command needs an optional dependency that is not installed."""


def install_advice(extra: str) -> str:
    return f"pip install 'har-stream[{extra}]'"


def missing_message(command: str, module: str, extra: str = TRAIN_EXTRA) -> str:
    """`har-stream train: needs tensorflow (not installed); install it with pip install ...`."""
    return (f"har-stream {command}: needs {module}, which is not installed in this "
            f"environment; install the '{extra}' extra: {install_advice(extra)}")


def is_installed(module: str) -> bool:
    """Whether `import module` can find it (without importing it: TensorFlow takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, a half-removed module
        return False


def require_train_extra(command: str, modules: tuple[str, ...] = TRAIN_MODULES) -> None:
    """Raise `MissingExtra` naming the extra if any of `modules` is not installed."""
    for module in modules:
        if not is_installed(module):
            raise MissingExtra(missing_message(command, module))


def train_module_missing(exc: ImportError) -> str | None:
    """The `train`-extra module whose absence raised `exc`, or None if it is another failure."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    return top if top in TRAIN_MODULES else None
