"""Keras training loops for the tutorial zoo and for the stateful model.

Both loops: Adam, learning rate halved on a validation plateau, early stopping on the
validation loss with the best epoch's weights restored (for the stateful model, the best
moving average of the weights when `ema_decay` > 0), and validation data from the
validation users only (the stateful model is validated on their whole recordings as
streams, then calibrated on them by temperature scaling). Imports Keras at module level:
import this module lazily (the CLI does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np

from har_stream.training import dataset
from har_stream.training.augment import rotate_and_scale
from har_stream.training.metrics import fit_temperature
from har_stream.training.settings import FitSettings, StatefulConfig
from har_stream.training.stateful import StatefulModels, build_stateful
from har_stream.training.windows import WindowSet
from har_stream.training.zoo_models import build_zoo_model


@dataclass(slots=True, eq=False)
class FitResult:
    model: keras.Model  # zoo: the window classifier; stateful: the `step` serving model
    trainer: keras.Model  # zoo: same as model; stateful: the sequence trainer
    classes: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    seconds: float
    epochs_run: int
    history: dict[str, list[float]] = field(default_factory=dict)
    temperature: float = 1.0
    best_epoch: int = 0
    """1-based epoch whose (averaged) weights were kept; 0 if not tracked."""


def fit_zoo(arch: str, train: WindowSet, validation: WindowSet, classes: tuple[str, ...],
            settings: FitSettings) -> FitResult:
    """Train a tutorial architecture on the 6-class windows, one window at a time."""
    keras.utils.set_random_seed(settings.seed)
    mean, std = dataset.standardisation(train)
    model = build_zoo_model(arch, mean, std, len(classes))
    model.compile(keras.optimizers.Adam(settings.learning_rate),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _window_targets(train)
    xv, yv = _window_targets(validation)
    started = time.perf_counter()
    history = model.fit(x, y, batch_size=settings.batch_size, epochs=settings.epochs,
                        validation_data=(xv, yv), callbacks=_stopping(settings),
                        verbose=settings.verbose, shuffle=True)
    return FitResult(model, model, classes, mean, std, time.perf_counter() - started,
                     len(history.history["loss"]), history.history)


def _window_targets(windows: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    y = dataset.targets(windows, with_transition=False)
    keep = y >= 0
    return windows.data[keep], y[keep]


def fit_stateful(train: WindowSet, validation: WindowSet | None, classes: tuple[str, ...],
                 settings: FitSettings, config: StatefulConfig | None = None,
                 temperature: float = 1.0) -> FitResult:
    """Train the CNN + GRU on crops of consecutive windows, validated on whole streams.

    With `validation` None (the final model, trained on every training user) there is
    nothing to stop on: it runs `settings.epochs` epochs (a count chosen by cross-validation),
    halves the learning rate on a training-loss plateau, keeps the last moving average of the
    weights and folds the given `temperature` (fitted on out-of-fold predictions) into its
    head. Otherwise it early-stops on `validation` and calibrates on it.
    """
    keras.utils.set_random_seed(settings.seed)
    mean, std = dataset.standardisation(train)
    models = build_stateful(mean, std, len(classes), config or StatefulConfig())
    models.trainer.compile(keras.optimizers.Adam(settings.learning_rate),
                           "sparse_categorical_crossentropy", weighted_metrics=[])
    crops = SequenceCrops(train, settings)
    monitor = StreamValidation(models, validation, settings.with_transition,
                               settings.ema_decay)
    if validation is None:
        callbacks: list[keras.callbacks.Callback] = [
            monitor, keras.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=3)]
    else:
        callbacks = [monitor, *_stopping(settings, restore=settings.ema_decay <= 0)]
    started = time.perf_counter()
    history = models.trainer.fit(crops, epochs=settings.epochs, verbose=settings.verbose,
                                 callbacks=callbacks)
    if validation is None:
        fold_temperature(models, temperature)
    else:
        temperature = calibrate(models, validation, settings.with_transition)
    return FitResult(models.step, models.trainer, classes, mean, std,
                     time.perf_counter() - started, len(history.history["loss"]),
                     history.history, temperature, monitor.best_epoch)


def calibrate(models: StatefulModels, validation: WindowSet, with_transition: bool) -> float:
    """Temperature scaling on the validation streams, folded into the softmax head."""
    targets = dataset.targets(validation, with_transition)
    scored = targets >= 0
    log_probs = np.log(np.maximum(stream_probs(models.trainer, validation)[scored], 1e-12))
    temperature = fit_temperature(log_probs, targets[scored])
    fold_temperature(models, temperature)
    return temperature


def fold_temperature(models: StatefulModels, temperature: float) -> None:
    """softmax((W x + b) / T) is a Dense layer with weights W/T, b/T, so the calibrated model
    keeps its exact layers; the argmax, hence accuracy, is unchanged."""
    head = models.step.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel / temperature, bias / temperature])


def _stopping(settings: FitSettings, restore: bool = True) -> list[keras.callbacks.Callback]:
    return [
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=3, verbose=0),
        keras.callbacks.EarlyStopping("val_loss", patience=settings.patience,
                                      restore_best_weights=restore, verbose=0),
    ]


class SequenceCrops(keras.utils.PyDataset):
    """Batches of crops of consecutive windows, re-drawn (and re-augmented) every epoch."""

    def __init__(self, windows: WindowSet, settings: FitSettings) -> None:
        super().__init__()
        self.windows, self.settings = windows, settings
        y = dataset.targets(windows, settings.with_transition)
        self.y, self.weight = np.maximum(y, 0), (y >= 0).astype(np.float32)
        self.rng = np.random.default_rng(settings.seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        starts = dataset.sequence_crops(self.windows, self.settings.sequence_length, self.rng)
        self.starts = self.rng.permutation(starts)

    def __len__(self) -> int:
        return -(-len(self.starts) // self.settings.sequences_per_batch)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        per_batch = self.settings.sequences_per_batch
        starts = self.starts[index * per_batch:(index + 1) * per_batch]
        rows = starts[:, None] + np.arange(self.settings.sequence_length)[None, :]
        x = self.windows.data[rows]
        if self.settings.augment:
            x = rotate_and_scale(x, self.rng, yaw_degrees=self.settings.yaw_degrees,
                                 yaw_share=self.settings.yaw_share)
        return x, self.y[rows], self.weight[rows]


class StreamValidation(keras.callbacks.Callback):
    """Adds `val_loss` / `val_accuracy` computed on whole validation streams (state carried
    from each recording's start), the way the service runs, to the epoch logs.

    With `ema_decay` > 0 it also keeps an exponential moving average of every weight
    (batch-norm statistics included), validates the averaged weights instead of the raw
    ones, and leaves the best averaged weights in the model when training ends: averaging
    smooths the epoch-to-epoch swings of whole-stream accuracy.
    """

    def __init__(self, models: StatefulModels, validation: WindowSet | None,
                 with_transition: bool, ema_decay: float = 0.0) -> None:
        super().__init__()
        self.trainer, self.validation = models.trainer, validation
        self.with_transition = with_transition
        self.ema_decay = ema_decay
        self.average: list[np.ndarray] | None = None
        self.best: tuple[float, list[np.ndarray]] | None = None
        self.best_epoch = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        if self.ema_decay <= 0:
            return
        weights = self.trainer.get_weights()
        if self.average is None:
            self.average = weights
        else:
            d = self.ema_decay
            self.average = [d * a + (1 - d) * w for a, w in zip(self.average, weights,
                                                                 strict=True)]

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.validation is None:  # nothing to select on: keep the latest average
            if self.average is not None:
                self.best, self.best_epoch = (0.0, [w.copy() for w in self.average]), epoch + 1
            return
        targets = dataset.targets(self.validation, self.with_transition)
        benchmark = dataset.benchmark_mask(self.validation)
        raw = None
        if self.average is not None:
            raw = self.trainer.get_weights()
            self.trainer.set_weights(self.average)
        probs = stream_probs(self.trainer, self.validation)
        scored = targets >= 0
        picked = probs[scored, targets[scored]]
        loss = float(-np.mean(np.log(np.maximum(picked, 1e-7))))
        if logs is not None:
            logs["val_loss"] = loss
            logs["val_accuracy"] = float(np.mean(
                probs[benchmark].argmax(axis=1) == targets[benchmark]))
        if raw is not None and self.average is not None:
            if self.best is None or loss < self.best[0]:
                self.best, self.best_epoch = (loss, [w.copy() for w in self.average]), epoch + 1
            self.trainer.set_weights(raw)

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        if self.best is not None:
            self.trainer.set_weights(self.best[1])


def stream_probs(trainer: keras.Model, windows: WindowSet) -> np.ndarray:
    """Class probabilities of every window, each recording run as one stream from zero state."""
    streams, parts = dataset.padded_streams(windows)
    out = np.asarray(trainer.predict(streams, batch_size=4, verbose=0))
    return np.concatenate([out[row, :p.stop - p.start] for row, p in enumerate(parts)])


def reset_probs(trainer: keras.Model, windows: WindowSet) -> np.ndarray:
    """Class probabilities with the state reset to zero before every window."""
    return np.asarray(trainer.predict(windows.data[:, None], batch_size=256, verbose=0))[:, 0]


def window_probs(model: keras.Model, windows: WindowSet) -> np.ndarray:
    return np.asarray(model.predict(windows.data, batch_size=256, verbose=0))
