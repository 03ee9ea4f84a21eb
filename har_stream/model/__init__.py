"""The stateful activity model as the service sees it: a protocol and a loader.

The service classifies every window that became ready in a poll with one batched call,
carrying each device's recurrent state from one of its windows to the next:

    probs, state = model.predict(windows, state)   # windows[B,128,9], state[B,H] (zeros: fresh)

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
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_MODEL_NAME = "cnn-gru"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME
TFLITE_FILE = "model.tflite"
KERAS_FILE = "model.keras"
CARD_FILE = "card.json"


@runtime_checkable
class StatefulModel(Protocol):
    """A batched classifier of windows with explicit per-stream recurrent state."""

    classes: tuple[str, ...]
    """Class names, in the order of the probability columns."""
    state_size: int
    """H: width of the recurrent state; a new stream starts from zeros."""
    version: str
    """Identifies the trained weights (published with every result)."""

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(windows[B,128,9] f32, state[B,H] f32) -> (probs[B,C] f32, next state[B,H] f32)`."""
        ...


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
