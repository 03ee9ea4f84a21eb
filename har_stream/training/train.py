"""From a data file to a model directory: the steps behind `har-stream train`.

`train_model` steps: (1) load the recordings and split the users (test users held out,
validation users drawn from the training users); (2) replay every recording through the
serving pipeline into labelled windows; (3) fit on the training users, early-stopped on
the validation users; (4) write the model directory (Keras file and the card's training
section); for the stateful model (5) export the served LiteRT flatbuffer at the chosen
precision, accepted on the validation users (`training.serving.export_dir`), and (6) evaluate
it once on the test users to complete the card (`training.serving.evaluate_dir`, which
`har-stream evaluate` runs alone). Keras is imported lazily, inside the steps that need it.
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from har_stream.core.records import ACTIVITIES
from har_stream.serving import DEFAULT_MODEL_NAME, KERAS_FILE
from har_stream.training import card as cards
from har_stream.training import dataset
from har_stream.training.export import SERVED_PRECISION
from har_stream.training.hapt import HaptData, Recording, load_hapt
from har_stream.training.serving import export_dir
from har_stream.training.settings import FitSettings, StatefulConfig
from har_stream.training.windows import WindowSet, make_windows

STATEFUL = "stateful"
TRANSITION = "TRANSITION"


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Everything `har-stream train` can set (see its --help): how to fit, the stateful
    model's shape, and what this command adds around them."""

    data: Path
    out: Path
    arch: str = STATEFUL
    settings: FitSettings = field(default_factory=FitSettings)
    """How to fit; `settings.verbose` 0 also hides data preparation's progress bars."""
    config: StatefulConfig = field(default_factory=StatefulConfig)
    """Stateful: the model's shape (unused by the tutorial architectures)."""
    n_validation: int = 5
    """0: train on every training user for exactly `epochs` (chosen by cross-validation)."""
    temperature: float = 1.0
    """With `n_validation` 0: softmax temperature to fold into the head (fitted out of fold)."""
    max_recordings: int = 0
    """> 0: keep only this many recordings per split (quick smoke runs)."""
    precision: str = SERVED_PRECISION
    """Stateful: precision of the served flatbuffer (`training.export.PRECISIONS`)."""
    notes: tuple[str, ...] = field(default_factory=tuple)


def fit_settings(options: TrainOptions) -> FitSettings:
    """The settings `options.arch` is fitted with: the tutorial architectures keep no moving
    average of their weights."""
    if options.arch == STATEFUL:
        return options.settings
    return replace(options.settings, ema_decay=0.0)


@dataclass(frozen=True, slots=True, eq=False)
class PreparedData:
    data: HaptData
    split: dataset.Split
    train: WindowSet
    validation: WindowSet
    test: WindowSet


def prepare(data_path: Path, n_validation: int = 5, max_recordings: int = 0,
            progress: bool = True) -> PreparedData:
    """Load, split by user and replay every needed recording through the pipeline."""
    data = load_hapt(data_path)
    split = dataset.split_users(data.users(), data.test_users, n_validation)

    def recordings(users: tuple[int, ...]) -> tuple[Recording, ...]:
        chosen = data.of_users(users)
        return chosen[:max_recordings] if max_recordings > 0 else chosen

    parts = [make_windows(recordings(users), progress=progress)
             for users in (split.train, split.validation, split.test)]
    return PreparedData(data, split, *parts)


def class_names(with_transition: bool) -> tuple[str, ...]:
    return ACTIVITIES + ((TRANSITION,) if with_transition else ())


def train_model(options: TrainOptions, prepared: PreparedData | None = None) -> Path:
    """Train `options.arch`, write its model directory with a complete card; return the dir."""
    from har_stream.training import fit

    prepared = prepared or prepare(options.data, options.n_validation, options.max_recordings,
                                   progress=options.settings.verbose > 0)
    classes = class_names(options.settings.with_transition and options.arch == STATEFUL)
    settings = fit_settings(options)
    if options.arch == STATEFUL:
        held = prepared.validation if len(prepared.validation) else None
        result = fit.fit_stateful(prepared.train, held, classes, settings, options.config,
                                  temperature=options.temperature)
        validation = _scores(fit.stream_probs(result.trainer, held), held) if held else {}
        architecture = {"kind": "cnn-gru", **options.config.to_dict(),
                        "softmax_temperature": round(result.temperature, 4)}
    else:
        result = fit.fit_zoo(options.arch, prepared.train, prepared.validation, classes,
                             settings)
        validation = _scores(fit.window_probs(result.model, prepared.validation),
                             prepared.validation)
        architecture = {"kind": options.arch}
    card = _training_card(options, prepared, result, settings, architecture, validation)
    if options.arch == STATEFUL:
        options.out.mkdir(parents=True, exist_ok=True)
        result.model.save(options.out / KERAS_FILE)
        cards.write_card(options.out, card)
        # with no validation users, the float/served agreement is checked on training users
        export_dir(options.out, options.precision, held or prepared.train, prepared.test)
    else:
        options.out.mkdir(parents=True, exist_ok=True)
        result.model.save(options.out / "model.keras")
        from har_stream.training.evaluate import benchmark_scores

        card["evaluation"] = {"window": benchmark_scores(
            fit.window_probs(result.model, prepared.test), prepared.test)}
        cards.write_card(options.out, card)
    return options.out


def _scores(probs: np.ndarray, windows: WindowSet) -> dict[str, float]:
    from har_stream.training.evaluate import benchmark_scores

    return benchmark_scores(probs, windows)


def _training_card(options: TrainOptions, prepared: PreparedData, result: object,
                   settings: FitSettings, architecture: dict[str, object],
                   validation: dict[str, float]) -> dict[str, object]:
    import keras
    import tensorflow as tf

    name = DEFAULT_MODEL_NAME if options.arch == STATEFUL else options.arch
    today = dt.datetime.now(dt.UTC)
    counts = {
        part: int(dataset.benchmark_mask(getattr(prepared, part)).sum())
        for part in ("train", "validation", "test")
    }
    return {
        "name": name,
        "version": f"{name}-{today:%Y%m%d}-s{options.settings.seed}-{prepared.data.sha256[:8]}",
        "description": _DESCRIPTIONS.get(options.arch, f"tutorial architecture `{options.arch}`"),
        "classes": list(result.classes),  # type: ignore[attr-defined]
        "state_size": options.config.state_size if options.arch == STATEFUL else 0,
        "preprocessing": cards.preprocessing(result.mean, result.std),  # type: ignore[attr-defined]
        "architecture": architecture,
        "training": {
            "data_path": str(options.data),
            "data_sha256": prepared.data.sha256,
            "train_users": list(prepared.split.train),
            "validation_users": list(prepared.split.validation),
            "test_users": list(prepared.split.test),
            "benchmark_windows": counts,
            "seed": options.settings.seed,
            "settings": asdict(settings),
            "epochs_run": result.epochs_run,  # type: ignore[attr-defined]
            "seconds": round(result.seconds, 1),  # type: ignore[attr-defined]
            "validation": validation,
            "history": {k: [round(float(v), 5) for v in vs]
                        for k, vs in result.history.items()},  # type: ignore[attr-defined]
            "finished_utc": today.isoformat(timespec="seconds"),
            "software": {"python": platform.python_version(), "tensorflow": tf.__version__,
                         "keras": keras.__version__},
            "notes": list(options.notes),
        },
    }


_DESCRIPTIONS = {
    STATEFUL: "Stateful activity recognizer served by har-stream: a 1D-CNN encodes each "
              "128-sample window, a GRU cell steps once per window carrying the device's "
              "state to its next window, and a softmax reads state + encoding. Trained on "
              "windows cut by the service's own causal pipeline.",
}
