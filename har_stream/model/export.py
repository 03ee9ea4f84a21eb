"""Write a trained step model as a model directory: Keras file + LiteRT flatbuffer.

The flatbuffer comes from Keras' own SavedModel export (inputs `windows`, `state`; outputs
`probs`, `state_out`; free batch dimension), converted with builtin ops only: conversion
fails rather than silently emitting Flex ops that no interpreter here could run. (Tracing
the model in a hand-written `tf.function` instead left the weights as unfrozen resource
variables that the interpreter read as garbage.)

Two precisions (`PRECISIONS`), chosen at export:
- `float32` (served): the Keras model's arithmetic (equal to it within ~3e-7).
- `dynamic-range-int8`: weights stored as int8 per output channel, activations quantised at
  run time; float in, float out, same signature, 4× smaller. Faster on some CPUs (2.2-2.5×
  at batches 1-64 for the first encoder on an Intel Xeon), slower on others (~20 % on an
  AVX2 AMD EPYC): docs/MODELS.md; `har-stream bench model-pipeline` compares the two. The
  run-time quantisation is per window (per batch row), so a window's outputs stay
  bit-identical whatever else is in its call (tested in tests/unit/test_model_engine.py).
  `model.keras` stays the float reference.

Importing this module is cheap (the CLI reads `PRECISIONS`); converting imports TensorFlow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from har_stream.serving import KERAS_FILE, TFLITE_FILE

if TYPE_CHECKING:  # TensorFlow and Keras are imported by the conversion only
    import keras

FLOAT32 = "float32"
DYNAMIC_RANGE_INT8 = "dynamic-range-int8"
PRECISIONS = (DYNAMIC_RANGE_INT8, FLOAT32)
SERVED_PRECISION = FLOAT32
"""What `har-stream train` and `har-stream model export` write unless told otherwise."""

VERSION_SUFFIX = {FLOAT32: "", DYNAMIC_RANGE_INT8: "-int8"}
"""Appended to the trained weights' version: the service publishes the version with every
result, so results of differently quantised flatbuffers are told apart."""

CONVERSION = {
    FLOAT32: "TFLiteConverter from Keras' SavedModel export, builtin ops, float32",
    DYNAMIC_RANGE_INT8: "TFLiteConverter from Keras' SavedModel export, builtin ops, "
                        "Optimize.DEFAULT without representative data: int8 weights per "
                        "output channel, activations quantised per window at run time, "
                        "float inputs and outputs",
}


def to_tflite(step: keras.Model, precision: str = FLOAT32) -> bytes:
    """The step model as a LiteRT flatbuffer at `precision` (one of `PRECISIONS`)."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    with tempfile.TemporaryDirectory() as saved:
        step.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision == DYNAMIC_RANGE_INT8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def served_precision(card: dict[str, object]) -> str:
    """The precision of a model directory's `model.tflite`, from its card (float32 for cards
    written before precisions existed)."""
    serving = card.get("serving")
    return str(serving.get("precision", FLOAT32)) if isinstance(serving, dict) else FLOAT32


def served_version(weights_version: str, precision: str) -> str:
    return weights_version + VERSION_SUFFIX[precision]


def serving_section(weights_version: str, precision: str) -> dict[str, object]:
    """The card's `serving` entry: what `model.tflite` is and what it was made from."""
    import tensorflow as tf

    return {"precision": precision, "file": TFLITE_FILE, "float_reference": KERAS_FILE,
            "weights_version": weights_version, "conversion": CONVERSION[precision],
            "tensorflow": tf.__version__}


def save_model_dir(step: keras.Model, directory: Path, precision: str = SERVED_PRECISION
                   ) -> None:
    """Write `model.keras` (the float reference) and `model.tflite` at `precision`; the
    caller then writes the card (which hashes both files)."""
    directory.mkdir(parents=True, exist_ok=True)
    step.save(directory / KERAS_FILE)
    (directory / TFLITE_FILE).write_bytes(to_tflite(step, precision))
