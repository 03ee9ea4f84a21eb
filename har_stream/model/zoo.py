"""The tutorial architectures this project grew from, as stateless per-window classifiers.

They are rebuilt here so they can be trained and compared through exactly the same
pipeline, split and protocol as the served model (`har-stream train --arch NAME`). Shapes
follow the tutorials; the one addition is the same fixed standardisation layer the served
model has (training-set mean/std), so every model sees identical inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from har_stream.core.records import CHANNELS, WINDOW
from har_stream.training.catalog import ZOO_ARCHITECTURES

Builder = Callable[[keras.KerasTensor, int], keras.KerasTensor]


def _lstm(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """LSTM(100) → dropout 0.5 → dense 100."""
    x = keras.layers.LSTM(100)(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.layers.Dense(100, activation="relu")(x)


def _cnn(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """Two Conv1D(64, 3) → dropout 0.5 → max-pool 2 → dense 100."""
    x = keras.layers.Conv1D(64, 3, activation="relu")(x)
    x = keras.layers.Conv1D(64, 3, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(100, activation="relu")(x)


def _multihead_cnn(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """Three heads (kernels 3, 5, 11), each Conv1D 64 → dropout → pool, concatenated."""
    heads = []
    for kernel in (3, 5, 11):
        h = keras.layers.Conv1D(64, kernel, activation="relu")(x)
        h = keras.layers.Dropout(0.5)(h)
        h = keras.layers.MaxPooling1D(2)(h)
        heads.append(keras.layers.Flatten()(h))
    x = keras.layers.Concatenate()(heads)
    return keras.layers.Dense(100, activation="relu")(x)


def _cnn_lstm(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """4 sub-sequences of 32 steps: TimeDistributed CNN, then LSTM(100)."""
    x = keras.layers.Reshape((4, WINDOW // 4, len(CHANNELS)))(x)
    td = keras.layers.TimeDistributed
    x = td(keras.layers.Conv1D(64, 3, activation="relu"))(x)
    x = td(keras.layers.Conv1D(64, 3, activation="relu"))(x)
    x = td(keras.layers.Dropout(0.5))(x)
    x = td(keras.layers.MaxPooling1D(2))(x)
    x = td(keras.layers.Flatten())(x)
    x = keras.layers.LSTM(100)(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.layers.Dense(100, activation="relu")(x)


def _convlstm(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """ConvLSTM2D(64, kernel (1, 3)) over 4 sub-sequences × 1 row × 32 steps."""
    x = keras.layers.Reshape((4, 1, WINDOW // 4, len(CHANNELS)))(x)
    x = keras.layers.ConvLSTM2D(64, (1, 3), activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(100, activation="relu")(x)


def _deep_cnn(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """Four conv (kernel 2) + max-pool blocks of 18, 36, 72, 144 filters → dropout."""
    for filters in (18, 36, 72, 144):
        x = keras.layers.Conv1D(filters, 2, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling1D(2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dropout(0.5)(x)


def _lstm2(x: keras.KerasTensor, n_classes: int) -> keras.KerasTensor:
    """Per-step dense projection to 27 units, then two stacked LSTM(27) layers."""
    x = keras.layers.Dense(27, activation="relu")(x)
    x = keras.layers.LSTM(27, return_sequences=True)(x)
    x = keras.layers.LSTM(27)(x)
    return keras.layers.Dropout(0.5)(x)


ARCHITECTURES: dict[str, Builder] = {
    "lstm": _lstm,
    "cnn": _cnn,
    "multihead-cnn": _multihead_cnn,
    "cnn-lstm": _cnn_lstm,
    "convlstm": _convlstm,
    "deep-cnn": _deep_cnn,
    "lstm2": _lstm2,
}
"""Tutorial architecture name → body builder (input: standardised windows)."""
assert tuple(ARCHITECTURES) == ZOO_ARCHITECTURES


def build_zoo_model(name: str, mean: np.ndarray, std: np.ndarray, n_classes: int) -> keras.Model:
    """A tutorial architecture with the fixed standardisation in front and a softmax head."""
    windows = keras.Input((WINDOW, len(CHANNELS)), name="windows")
    x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardise")(windows)
    x = ARCHITECTURES[name](x, n_classes)
    probs = keras.layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(windows, probs, name=name.replace("-", "_"))
