"""`model.keras` read back for training-side work (export, comparisons), never by the service.

Verified against its card's sha256 first (`serving.integrity.verify`), then loaded in Keras'
safe mode, which refuses lambdas and classes it does not know: a model file is input too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from har_stream.serving import KERAS_FILE
from har_stream.serving.integrity import ModelIntegrityError, verify


def load_keras(directory: Path, card: dict[str, Any]) -> Any:
    """The verified `model.keras` of a model directory, loaded in Keras' safe mode."""
    import keras

    verify(directory, card, KERAS_FILE)
    try:
        return keras.saving.load_model(directory / KERAS_FILE, compile=False, safe_mode=True)
    except (TypeError, ValueError) as exc:  # unknown layer class, lambda, bad config
        raise ModelIntegrityError(f"{directory / KERAS_FILE} cannot be loaded safely: "
                                  f"{str(exc)[:500]}") from exc
