"""Subject-grouped cross-validation over the training users: `har-stream train --cv K`.

Why: five validation users saturate (99.8 %), so choices made on them were made blind, and
one test subject failed where every validation user succeeded. Cross-validation scores every
training user once as an unseen wearer, so a setting is judged on all 21 of them (mean,
worst fold, worst subject) and the test users are never looked at.

Protocol: the training users (every user minus the data set's test users) are shuffled
with a fixed seed and dealt into K folds of whole subjects. For each fold and model seed, a
model is trained on the other folds' users, early-stopped on `n_inner` of *those* users
(drawn with a seed fixed per fold), then run over the held-out users' recordings as the
service runs them (one stream per recording, state carried), with the state reset at
every window, and with the held-out phones turned half a turn about their x axis (the
placement that broke test subject 10; `turned_half`), a robustness figure drawn from
training users only. Each run appends one JSON line to the results file, keyed by the settings'
hash, fold and seed, so an interrupted CV resumes where it stopped; its out-of-fold
log-probabilities (temperature 1) are saved beside it for calibration (`cv_report`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from har_stream.training import dataset
from har_stream.training.metrics import confusion
from har_stream.training.train import STATEFUL, TrainOptions, class_names
from har_stream.training.windows import WindowSet

FOLD_SEED = 20261206
"""Fixed so that the folds (and each fold's inner validation users) never change."""
OOF_DIR = "oof"


def assign_folds(users: Iterable[int], k: int, seed: int = FOLD_SEED
                 ) -> tuple[tuple[int, ...], ...]:
    """`k` folds of whole subjects: the users shuffled with `seed`, dealt round-robin."""
    pool = sorted(set(int(u) for u in users))
    if not 2 <= k <= len(pool):
        raise ValueError(f"cannot make {k} folds of {len(pool)} users")
    order = np.random.default_rng(seed).permutation(pool)
    return tuple(tuple(sorted(int(u) for u in order[i::k])) for i in range(k))


def settings_of(options: TrainOptions, n_inner: int) -> dict[str, object]:
    """Everything that defines a CV run's model and training, except the seed."""
    fitting, shape = options.settings, options.config
    return {
        "arch": options.arch, "epochs": fitting.epochs, "patience": fitting.patience,
        "learning_rate": fitting.learning_rate, "sequence_length": fitting.sequence_length,
        "state_size": shape.state_size, "filters": list(shape.filters),
        "kernel": shape.kernel, "with_transition": fitting.with_transition,
        "augment": fitting.augment, "yaw_degrees": fitting.yaw_degrees,
        "ema_decay": fitting.ema_decay, "inner_validation_users": n_inner,
        # added later: absent when at 1 or meaningless (no turn), so results keep their keys
        **({"yaw_share": fitting.yaw_share}
           if fitting.yaw_share != 1.0 and fitting.yaw_degrees > 0 else {}),
    }


def settings_key(settings: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class CvPlan:
    name: str
    key: str
    settings: dict[str, object]
    folds: tuple[tuple[int, ...], ...]
    seeds: tuple[int, ...]


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pending(plan: CvPlan, done: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(seed, fold) pairs of the plan without a result yet."""
    finished = {(r["key"], r["seed"], r["fold"]) for r in done}
    return [(seed, fold) for seed in plan.seeds for fold in range(len(plan.folds))
            if (plan.key, seed, fold) not in finished]


def run_cv(options: TrainOptions, k: int, seeds: Iterable[int], results: Path, name: str,
           windows: WindowSet, n_inner: int = 3, progress: bool = True
           ) -> list[dict[str, object]]:
    """Run (or resume) the plan's missing folds; return every result line of the file.

    `windows` are the training users' windows (the test users must not be in them).
    """
    if options.arch != STATEFUL:
        raise ValueError("cross-validation covers the stateful model")
    users = sorted(int(u) for u in np.unique(windows.user_id))
    settings = settings_of(options, n_inner)
    plan = CvPlan(name, settings_key(settings), settings, assign_folds(users, k),
                  tuple(seeds))
    results.parent.mkdir(parents=True, exist_ok=True)
    todo = pending(plan, read_results(results))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan.seeds) * k, initial=len(plan.seeds) * k - len(todo),
                   desc=f"cv {name}", unit="fold")
    for seed, fold in todo:
        record = run_fold(options, plan, windows, fold, seed, results.parent / OOF_DIR)
        with results.open("a") as out:
            out.write(json.dumps(record) + "\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fold=fold, seed=seed, accuracy=f"{record['accuracy']:.3f}")
    if bar is not None:
        bar.close()
    return read_results(results)


def inner_users(plan: CvPlan) -> int:
    value = plan.settings["inner_validation_users"]
    assert isinstance(value, int)
    return value


def run_fold(options: TrainOptions, plan: CvPlan, windows: WindowSet, fold: int, seed: int,
             oof_dir: Path) -> dict[str, object]:
    """Train on every fold but `fold`, score the held-out users; the result line."""
    from har_stream.training import fit

    held = plan.folds[fold]
    rest = [u for u in np.unique(windows.user_id) if int(u) not in held]
    inner = dataset.split_users(rest, (), inner_users(plan),
                                seed=FOLD_SEED + fold)
    with_transition = options.settings.with_transition
    classes = class_names(with_transition)
    settings = replace(options.settings, seed=seed, verbose=0)
    result = fit.fit_stateful(windows.of_users(inner.train), windows.of_users(inner.validation),
                              classes, settings, options.config)
    held_out = windows.of_users(held)

    def log_probs(probs: np.ndarray) -> np.ndarray:
        # undo the inner temperature: log p * T is the uncalibrated logit up to a row constant
        return _log_softmax(np.log(np.maximum(probs, 1e-30)) * result.temperature)

    stream = log_probs(fit.stream_probs(result.trainer, held_out))
    reset = log_probs(fit.reset_probs(result.trainer, held_out))
    turned = log_probs(fit.stream_probs(result.trainer, turned_half(held_out)))
    oof_dir.mkdir(parents=True, exist_ok=True)
    oof = oof_dir / f"{plan.key}-s{seed}-f{fold}.npz"
    result.model.save_weights(oof_dir / f"{plan.key}-s{seed}-f{fold}.weights.h5")
    np.savez_compressed(oof, stream=stream.astype(np.float32), reset=reset.astype(np.float32),
                        turned=turned.astype(np.float32),
                        exp_id=held_out.exp_id, seqs=held_out.seqs, user_id=held_out.user_id,
                        targets=dataset.targets(held_out, with_transition),
                        benchmark=dataset.benchmark_mask(held_out))
    return {
        "name": plan.name, "key": plan.key, "seed": seed, "fold": fold,
        "held_out_users": list(held), "inner_validation_users": list(inner.validation),
        **fold_scores(stream, reset, held_out, len(classes)),
        "per_user_turned": fold_scores(turned, reset, held_out, len(classes))["per_user"],
        "inner_temperature": round(result.temperature, 4), "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1),
        "oof": oof.name, "settings": plan.settings,
    }


def turned_half(windows: WindowSet) -> WindowSet:
    """The windows of the same recordings with the phone turned half a turn about its x axis:
    y and z of every vector signal change sign. Exact, not approximate: the pipeline's
    filters (linear, and a 3-sample median) commute with a change of sign."""
    data = windows.data.copy()
    data[..., [1, 2, 4, 5, 7, 8]] *= -1
    return WindowSet(data, *(getattr(windows, f) for f in WindowSet.__slots__[1:]))


def fold_scores(stream: np.ndarray, reset: np.ndarray, windows: WindowSet,
                n_classes: int) -> dict[str, object]:
    """Benchmark figures of one fold's held-out windows (state carried, and reset), with the
    per-user counts that pool into whole-CV figures."""
    mask = dataset.benchmark_mask(windows)
    truth = dataset.targets(windows, with_transition=False)[mask]
    predicted, predicted_reset = stream[mask].argmax(axis=1), reset[mask].argmax(axis=1)
    users = windows.user_id[mask]
    return {
        "accuracy": float(np.mean(predicted == truth)) if len(truth) else 0.0,
        "reset_accuracy": float(np.mean(predicted_reset == truth)) if len(truth) else 0.0,
        "per_user": {str(int(u)): [int(np.sum(predicted[users == u] == truth[users == u])),
                                   int(np.sum(users == u))] for u in np.unique(users)},
        "per_user_reset": {str(int(u)): int(np.sum(predicted_reset[users == u]
                                                   == truth[users == u]))
                           for u in np.unique(users)},
        "confusion": confusion(truth, predicted, n_classes).tolist(),
    }


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
