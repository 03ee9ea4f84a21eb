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
from har_stream.core.signal import SignalSettings

__all__ = ["StatefulModel", "load_model"]

DEFAULT_MODEL_NAME = "cnn-gru"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"
CARD_FILE = "card.json"


def load_model(path: str | Path = DEFAULT_MODEL_DIR, num_threads: int = 1,
               signal: SignalSettings = SignalSettings()) -> StatefulModel:
    """Load a model directory (`model.tflite` + `card.json`) into the LiteRT engine.

    The flatbuffer must have the sha256 its card records (`serving.integrity`), and the card
    must record the pipeline contract of the windows it will be fed (`serving.contract`, for a
    pipeline filtering with `signal`); otherwise, or when the file is not a valid LiteRT model,
    `ModelIntegrityError` (a `ContractError` for the contract) says why.
    """
    import json

    from har_stream.serving.contract import check_contract
    from har_stream.serving.engine import LiteRTModel
    from har_stream.serving.integrity import ModelIntegrityError, verify

    directory = Path(path)
    card = json.loads((directory / CARD_FILE).read_text())
    verify(directory, card, TFLITE_FILE)
    check_contract(card, signal, where=str(directory / CARD_FILE))
    try:
        return LiteRTModel.from_dir(directory, num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:  # not a flatbuffer, unresolved (custom) ops
        raise ModelIntegrityError(f"{directory / TFLITE_FILE} is not a model this engine can "
                                  f"run: {str(exc)[:500]}") from exc
