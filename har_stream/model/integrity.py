"""Model files are checked against their card before anything is loaded from them.

A model directory is code in disguise: whoever can swap `model.tflite` or `model.keras`
decides what the service answers. The card (`card.json`, written by `training.card.write_card`
right after the model files) records each file's sha256 and size under `files`; loading
refuses a file whose hash differs, with the path and both hashes in the message. Re-shipping
a model through `har-stream train` rewrites the card, so the hashes always follow the files.
A card without `files` (written before this check existed) is accepted with a warning.

Nothing here unpickles: the card is JSON, the serving model a LiteRT flatbuffer, and the Keras
file is read only with `safe_mode=True` (`load_keras`), which refuses lambdas and classes it
does not know.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from har_stream.serving import KERAS_FILE, TFLITE_FILE

log = logging.getLogger(__name__)

FILES_KEY = "files"
HASHED_FILES = (TFLITE_FILE, KERAS_FILE)


class ModelIntegrityError(ValueError):
    """A model file does not match its card, or cannot be read as a model (message says why)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(directory: Path) -> dict[str, dict[str, Any]]:
    """`{name: {"sha256": ..., "bytes": ...}}` of the model files present in `directory`."""
    return {name: {"sha256": sha256_of(directory / name),
                   "bytes": (directory / name).stat().st_size}
            for name in HASHED_FILES if (directory / name).is_file()}


def verify(directory: Path, card: dict[str, Any], name: str) -> None:
    """Raise ModelIntegrityError unless `directory/name` has the hash its card records."""
    path = directory / name
    files = card.get(FILES_KEY)
    if files is None:
        log.warning("%s has no file hashes (written before they existed): %s is loaded "
                    "unverified; re-run `har-stream evaluate` on it to add them",
                    directory / "card.json", path)
        return
    expected = files.get(name, {}).get("sha256") if isinstance(files, dict) else None
    if not isinstance(expected, str):
        raise ModelIntegrityError(f"{directory / 'card.json'} lists no sha256 for {name}: "
                                  "refusing to load a file the card does not vouch for")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{path} has sha256 {actual}, but its card records {expected}: the file was "
            "changed or replaced after the card was written; refusing to load it "
            "(re-ship the model with `har-stream train`, which rewrites the card)")


def load_keras(directory: Path, card: dict[str, Any]) -> Any:
    """The verified `model.keras` of a model directory, loaded in Keras' safe mode."""
    import keras

    verify(directory, card, KERAS_FILE)
    try:
        return keras.saving.load_model(directory / KERAS_FILE, compile=False, safe_mode=True)
    except (TypeError, ValueError) as exc:  # unknown layer class, lambda, bad config
        raise ModelIntegrityError(f"{directory / KERAS_FILE} cannot be loaded safely: "
                                  f"{str(exc)[:500]}") from exc
