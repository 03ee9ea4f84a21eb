"""Serving: the model directory, its integrity check and the LiteRT engine (imports only core).

Windows are the raw pipeline output (`records.CHANNELS` order, not standardised): the
standardisation learnt from the training data is part of the model. `load_model` reads the
shipped serving format (a LiteRT flatbuffer plus `card.json`) without importing TensorFlow.

`DEFAULT_MODEL_DIR` is the model shipped in the repository's `models/` directory, found
relative to this package (`<repo>/models/cnn-gru`), so it works from a clone, from an
editable install and in a container that copies the repository; a non-editable install must
pass the directory explicitly.
"""

from __future__ import annotations

from pathlib import Path

from har_stream.core.model import StatefulModel

__all__ = ["StatefulModel", "load_model"]

DEFAULT_MODEL_NAME = "cnn-gru"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"
CARD_FILE = "card.json"


def load_model(path: str | Path = DEFAULT_MODEL_DIR, num_threads: int = 1) -> StatefulModel:
    """Load a model directory (`model.tflite` + `card.json`) into the LiteRT engine.

    The flatbuffer must have the sha256 its card records (`model.integrity`); a file that does
    not, or that is not a valid LiteRT model, raises `ModelIntegrityError` with the reason.
    """
    import json

    from har_stream.serving.engine import LiteRTModel
    from har_stream.serving.integrity import ModelIntegrityError, verify

    directory = Path(path)
    verify(directory, json.loads((directory / CARD_FILE).read_text()), TFLITE_FILE)
    try:
        return LiteRTModel.from_dir(directory, num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:  # not a flatbuffer, unresolved (custom) ops
        raise ModelIntegrityError(f"{directory / TFLITE_FILE} is not a model this engine can "
                                  f"run: {str(exc)[:500]}") from exc
