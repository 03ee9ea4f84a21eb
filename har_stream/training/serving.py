"""A trained model directory's served flatbuffer: `har-stream model export`, `model
calibrate` and `evaluate` act through here.

`export_dir` steps: (1) load the directory's verified `model.keras` (the float reference) in
safe mode; (2) convert it to a float flatbuffer and, unless float is asked for, to the
requested precision; (3) run both over the **validation** users' streams and refuse the
precision if it loses more than `max_drop` accuracy or macro-F1 there (nothing is written
then); (4) write `model.tflite`, the card's `serving` section (precision, validation figures)
and the new version; (5) only then score the served flatbuffer on the test users
(`evaluate_dir`, which also records its agreement with the float model there).
The decision is taken on validation figures alone; the test figures are reported, never used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from har_stream.serving import TFLITE_FILE, StatefulModel

if TYPE_CHECKING:  # imported when used, so that the CLI builds its parser quickly
    from har_stream.serving.engine import LiteRTModel
    from har_stream.training.windows import WindowSet

MAX_VALIDATION_DROP = 0.005
"""Most validation accuracy (and macro-F1) a quantised flatbuffer may lose against float."""


class PrecisionRejected(ValueError):
    """The requested precision lost too much on the validation users (message says how much)."""


def weights_version(card: dict[str, object]) -> str:
    """Version of the trained weights, without any precision suffix."""
    serving = card.get("serving")
    if isinstance(serving, dict) and isinstance(serving.get("weights_version"), str):
        return serving["weights_version"]
    return str(card["version"])


def float_reference(directory: Path, card: dict[str, object]) -> LiteRTModel:
    """The directory's `model.keras` converted to a float flatbuffer (needs TensorFlow)."""
    from har_stream.training.export import FLOAT32

    return converted(directory, card, FLOAT32)


def converted(directory: Path, card: dict[str, object], precision: str) -> LiteRTModel:
    """The directory's verified `model.keras` converted now to a flatbuffer at `precision`,
    versioned as an export at that precision would be (needs TensorFlow)."""
    from har_stream.training.export import served_version, to_tflite
    from har_stream.training.keras_file import load_keras

    return _engine(to_tflite(load_keras(directory, card), precision), card,
                   served_version(weights_version(card), precision))


def check_drop(comparison: dict[str, object], precision: str, max_drop: float) -> None:
    served, reference = comparison["served"], comparison["float"]
    assert isinstance(served, dict) and isinstance(reference, dict)
    for key in ("accuracy", "macro_f1"):
        drop = reference[key] - served[key]
        if drop > max_drop:
            raise PrecisionRejected(
                f"{precision} loses {drop:.4f} {key} on the validation users "
                f"({served[key]:.4f} against float {reference[key]:.4f}; at most {max_drop} "
                "allowed): not exported")


def export_dir(directory: Path, precision: str, validation: WindowSet, test: WindowSet,
               max_drop: float = MAX_VALIDATION_DROP) -> dict[str, object]:
    """Re-export `directory/model.tflite` at `precision` from its `model.keras`, judged on
    `validation`, then evaluated on `test`; returns the card's new `serving` section."""
    from har_stream.training import card as cards
    from har_stream.training.evaluate import compare_models
    from har_stream.training.export import FLOAT32, served_version, serving_section, to_tflite
    from har_stream.training.keras_file import load_keras

    card = cards.read_card(directory)
    step = load_keras(directory, card)
    weights = weights_version(card)
    float_flatbuffer = to_tflite(step, FLOAT32)
    reference = _engine(float_flatbuffer, card, weights)
    flatbuffer = float_flatbuffer if precision == FLOAT32 else to_tflite(step, precision)
    version = served_version(weights, precision)
    served = _engine(flatbuffer, card, version)
    comparison = compare_models(served, reference, validation)
    if precision != FLOAT32:
        check_drop(comparison, precision, max_drop)
    serving = {**serving_section(weights, precision), "max_validation_drop": max_drop,
               "validation": {"users": _users(validation), **comparison}}
    (directory / TFLITE_FILE).write_bytes(flatbuffer)
    card = {key: value for key, value in card.items() if key != "evaluation"}  # stale now
    card.update(version=version, serving=serving)
    cards.write_card(directory, card)
    evaluate_dir(directory, test, reference=reference)
    return serving


def evaluate_dir(directory: Path, test: WindowSet, num_threads: int = 1,
                 reference: StatefulModel | None = None) -> dict[str, object]:
    """Evaluate the model directory's LiteRT engine on `test` and complete its card.

    A quantised flatbuffer is also compared with the float model on the same windows
    (`reference`, else converted from the directory's `model.keras`, which needs TensorFlow).
    """
    from har_stream.serving import load_model
    from har_stream.training import card as cards
    from har_stream.training.evaluate import compare_models, evaluation_report
    from har_stream.training.export import FLOAT32, served_precision

    model = load_model(directory, num_threads=num_threads)
    card = cards.read_card(directory)
    precision = served_precision(card)
    report = evaluation_report(model, test)
    report["users"] = _users(test)
    report["engine"] = f"LiteRT (model.tflite, {precision})"
    if precision != FLOAT32:
        reference = reference or float_reference(directory, card)
        comparison = compare_models(model, reference, test)
        report["float_reference"] = {"stream": comparison["float"],
                                     "agreement": comparison["agreement"]}
    card["evaluation"] = report
    cards.write_card(directory, card)
    return report


def _engine(flatbuffer: bytes, card: dict[str, object], version: str) -> LiteRTModel:
    from har_stream.serving.engine import LiteRTModel

    classes, state_size = card["classes"], card["state_size"]
    assert isinstance(classes, list) and isinstance(state_size, int)
    return LiteRTModel(flatbuffer, tuple(classes), state_size, version)


def _users(windows: WindowSet) -> list[int]:
    import numpy as np

    return sorted(int(u) for u in np.unique(windows.user_id))


def calibrate_dir(directory: Path, temperature: float, validation: WindowSet, test: WindowSet,
                  note: str = "") -> None:
    """Set the softmax temperature of a model directory to `temperature` (fitted elsewhere,
    e.g. on out-of-fold predictions): rescale the head of `model.keras` from the card's
    current temperature, give the weights a new version, then re-export in float32 and
    re-evaluate (`export_dir`). The argmax, hence every accuracy, is unchanged."""
    from har_stream.serving import KERAS_FILE
    from har_stream.training import card as cards
    from har_stream.training.export import FLOAT32
    from har_stream.training.keras_file import load_keras

    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    card = cards.read_card(directory)
    step = load_keras(directory, card)
    architecture = dict(card.get("architecture", {}))
    current = float(architecture.get("softmax_temperature", 1.0))
    head = step.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * current / temperature, bias * current / temperature])
    step.save(directory / KERAS_FILE)
    architecture["softmax_temperature"] = round(temperature, 4)
    training = dict(card.get("training", {}))
    if note:
        training["notes"] = [*training.get("notes", []), note]
    version = f"{weights_version(card).split('-T')[0]}-T{temperature:.2f}"
    card = {k: v for k, v in card.items() if k not in ("serving", "evaluation")}
    card.update(version=version, architecture=architecture, training=training)
    cards.write_card(directory, card)  # vouches for the new model.keras
    export_dir(directory, FLOAT32, validation, test)
