"""The served model: a convolutional window encoder and a GRU cell that steps once per window.

Each window is encoded on its own (1D CNN over 128 samples × 9 channels); a GRU cell then
updates the device's state with that encoding, once per window, and the class probabilities
are read from the new state together with the encoding. The state therefore summarises the
device's recent windows (posture history, which the filters' 1 s gravity lag blurs), while
one window's evidence still reaches the output directly.

Two Keras models share the same layers (so they share weights):
- `trainer`: sequences of consecutive windows `[N,T,128,9] -> probs[N,T,C]`, the GRU running
  over the T windows from a zero state (a recording's start); used for training and for
  fast whole-stream evaluation, since a zero-padded tail cannot change earlier outputs.
- `step`: one window per stream with explicit state, `{"windows"[B,128,9], "state"[B,H]} ->
  {"probs"[B,C], "state_out"[B,H]}`, the serving form. Applying the cell once (no time loop)
  converts to builtin LiteRT ops. Feeding a stream window by window through `step` equals
  running `trainer` over the whole sequence.

Standardisation (per-channel mean/std of the training windows) is a fixed `Normalization`
layer inside the encoder, so callers feed raw pipeline windows. No `Lambda` layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from har_stream.core.records import CHANNELS, WINDOW
from har_stream.training.settings import StatefulConfig


@dataclass(frozen=True, slots=True, eq=False)
class StatefulModels:
    trainer: keras.Model
    step: keras.Model


def build_encoder(mean: np.ndarray, std: np.ndarray, config: StatefulConfig) -> keras.Model:
    """One window → an embedding vector: standardise, conv blocks, global pooling."""
    windows = keras.Input((WINDOW, len(CHANNELS)), name="window")
    x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardise")(windows)
    for i, filters in enumerate(config.filters):
        x = keras.layers.Conv1D(filters, config.kernel, padding="same", use_bias=False,
                                name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"norm{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i < len(config.filters) - 1:
            x = keras.layers.MaxPooling1D(2, name=f"pool{i}")(x)
    x = keras.layers.Concatenate(name="pooled")([
        keras.layers.GlobalAveragePooling1D(name="mean_pool")(x),
        keras.layers.GlobalMaxPooling1D(name="max_pool")(x),
    ])
    x = keras.layers.Dropout(config.dropout, name="encoder_dropout")(x)
    x = keras.layers.Dense(config.embedding, activation="relu", name="embedding")(x)
    return keras.Model(windows, x, name="encoder")


class EachWindow(keras.layers.Layer):
    """Applies the encoder to every window of `[N, T, 128, 9]` as one `[N*T, ...]` batch.

    (`TimeDistributed` fails on a free time axis here.) Only the trainer uses it and the
    trainer is never saved, so it needs no serialisation support.
    """

    def __init__(self, encoder: keras.Model, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, sequences: keras.KerasTensor, training: bool | None = None
             ) -> keras.KerasTensor:
        shape = keras.ops.shape(sequences)
        flat = keras.ops.reshape(sequences, (-1, *sequences.shape[2:]))
        encoded = self.encoder(flat, training=training)
        return keras.ops.reshape(encoded, (shape[0], shape[1], encoded.shape[-1]))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:2], self.encoder.output_shape[-1])


def build_stateful(mean: np.ndarray, std: np.ndarray, n_classes: int,
                   config: StatefulConfig | None = None) -> StatefulModels:
    config = config or StatefulConfig()
    encoder = build_encoder(mean, std, config)
    gru = keras.layers.GRU(config.state_size, return_sequences=True, name="gru")
    joined = keras.layers.Concatenate(name="evidence")
    dropout = keras.layers.Dropout(config.dropout, name="head_dropout")
    head = keras.layers.Dense(n_classes, activation="softmax", name="head")

    sequences = keras.Input((None, WINDOW, len(CHANNELS)), name="sequences")
    embedded = EachWindow(encoder, name="encode_each")(sequences)
    states = gru(embedded)
    trainer = keras.Model(sequences, head(dropout(joined([embedded, states]))), name="trainer")

    windows = keras.Input((WINDOW, len(CHANNELS)), name="windows")
    state = keras.Input((config.state_size,), name="state")
    embedding = encoder(windows)
    next_state, _ = gru.cell(embedding, [state])
    probs = head(dropout(joined([embedding, next_state])))
    step = keras.Model({"windows": windows, "state": state},
                       {"probs": probs, "state_out": next_state}, name="cnn_gru_step")
    return StatefulModels(trainer, step)
