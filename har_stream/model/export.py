"""Write a trained step model as a model directory: Keras file + LiteRT flatbuffer.

The flatbuffer comes from Keras' own SavedModel export (inputs `windows`, `state`; outputs
`probs`, `state_out`; free batch dimension), converted with builtin ops only: conversion
fails rather than silently emitting Flex ops that no interpreter here could run. (Tracing
the model in a hand-written `tf.function` instead left the weights as unfrozen resource
variables that the interpreter read as garbage.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras

from har_stream.model import KERAS_FILE, TFLITE_FILE


def to_tflite(step: keras.Model) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved:
        step.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()


def save_model_dir(step: keras.Model, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    step.save(directory / KERAS_FILE)
    (directory / TFLITE_FILE).write_bytes(to_tflite(step))
