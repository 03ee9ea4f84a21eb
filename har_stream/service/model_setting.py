"""The model a `HAR_MODEL` setting names, checked before anything else starts.

The setting is '' (the shipped model), a model directory, or `module:function` returning a
model. Every way it can be wrong - no such path, a directory without a card, a card that is
not JSON, a file whose hash differs from its card, a flatbuffer the engine cannot run, a
module that does not import, a function it lacks, a function that fails or returns no model
- raises `SettingsError` with one line naming HAR_MODEL. So `har-stream run` exits 2 before
it touches the cluster (it loads the model first), and `har-stream demo` checks the setting
before it starts a broker or a recognizer.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from har_stream.service.settings import SettingsError
from har_stream.serving import CARD_FILE, DEFAULT_MODEL_DIR, TFLITE_FILE, StatefulModel

VARIABLE = "HAR_MODEL"


def _refuse(spec: str, reason: str) -> SettingsError:
    shown = spec or f"'' (the shipped model, {DEFAULT_MODEL_DIR})"
    return SettingsError(f"{VARIABLE}={shown}: {' '.join(reason.split())[:600]}")


def _is_factory(spec: str) -> bool:
    return bool(spec) and ":" in spec and not Path(spec).exists()


def _factory(spec: str) -> Callable[[], Any]:
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the import raises, the setting is bad
        raise _refuse(spec, f"cannot import module {module_name} "
                            f"({type(exc).__name__}: {exc})") from exc
    factory = getattr(module, function, None)
    if not callable(factory):
        raise _refuse(spec, f"module {module_name} has no function {function}")
    return factory


def _checked_directory(spec: str) -> Path:
    """The model directory, its card parsed and its flatbuffer's hash verified."""
    from har_stream.serving.integrity import ModelIntegrityError, verify

    path = Path(spec) if spec else DEFAULT_MODEL_DIR
    if not path.is_dir():
        raise _refuse(spec, "no model directory there: train one with `har-stream "
                            "train`, or name a directory holding model.tflite and card.json")
    card_path = path / CARD_FILE
    if not card_path.is_file() or not (path / TFLITE_FILE).is_file():
        missing = CARD_FILE if not card_path.is_file() else TFLITE_FILE
        raise _refuse(spec, f"{path} has no {missing}: a model directory holds {TFLITE_FILE} "
                            f"and {CARD_FILE}, as `har-stream train` writes them")
    try:
        card = json.loads(card_path.read_text())
        if not isinstance(card, dict):
            raise ValueError("not a JSON object")
        verify(path, card, TFLITE_FILE)
    except ModelIntegrityError as exc:
        raise _refuse(spec, str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise _refuse(spec, f"cannot read {card_path}: {exc}") from exc
    return path


def check_model_setting(spec: str) -> None:
    """Raise SettingsError unless `spec` names a loadable model; loads nothing heavy (no
    engine, the factory not called)."""
    if _is_factory(spec):
        _factory(spec)
    else:
        _checked_directory(spec)


def load_model_setting(spec: str) -> StatefulModel:
    """The model `spec` names, or SettingsError saying why there is none."""
    from har_stream.serving import load_model
    from har_stream.serving.integrity import ModelIntegrityError

    if _is_factory(spec):
        try:
            model = _factory(spec)()
        except SettingsError:
            raise
        except Exception as exc:  # the factory is the user's code
            raise _refuse(spec, f"{spec}() failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, StatefulModel):
            raise _refuse(spec, f"{spec}() returned a {type(model).__name__}, not a model "
                                "(classes, state_size, version and predict)")
        return model
    path = _checked_directory(spec)
    try:
        return load_model(path)
    except (ModelIntegrityError, OSError) as exc:
        raise _refuse(spec, str(exc)) from exc
