"""Names of the trainable architectures and the tutorials' published figures (no Keras here,
so the CLI can list them without importing TensorFlow)."""

from __future__ import annotations

ZOO_ARCHITECTURES = ("lstm", "cnn", "multihead-cnn", "cnn-lstm", "convlstm", "deep-cnn", "lstm2")
"""The tutorial architectures (stateless, one window at a time); see `model.zoo`."""

STATEFUL_FILTERS = (32, 32, 64)
STATEFUL_KERNEL = 5
"""Encoder shape of the served stateful model: filters of its convolution blocks and their
kernel width (chosen on the validation users, docs/MODELS.md)."""

PUBLISHED_ACCURACY = {
    "lstm": "89.7 % ± 1.4",
    "cnn": "90.9 %",
    "multihead-cnn": "91.6 %",
    "cnn-lstm": "90.6 %",
    "convlstm": "90.8 %",
    "deep-cnn": "92 %",
    "lstm2": "85 %",
}
"""Test accuracy the tutorials report (UCI HAR, all 9 test users, windows filtered offline)."""
