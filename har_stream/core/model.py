"""The model as the pipeline sees it: a protocol, so the core never imports an engine.

The recognizer classifies every window that became ready in a poll with one batched call,
carrying each device's recurrent state from one of its windows to the next:

    probs, state = model.predict(windows, state)   # windows[B,128,9], state[B,H] (zeros: fresh)

Engines (the LiteRT one in `har_stream.serving`, Keras during training, fakes in tests)
satisfy it structurally.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


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
