"""The cross-validation tables printed by `har-stream train --cv` (markdown, for MODELS.md).

Per setting: out-of-fold accuracy pooled over all held-out windows (mean ± std over seeds),
macro-F1, worst fold, worst subject, the same with the state reset at every window, the
best epoch, and a softmax temperature fitted on the pooled out-of-fold predictions with the
expected calibration error before and after it. Then per fold and per subject, one column
per setting. Everything here comes from training users only.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from har_stream.core.records import ACTIVITIES
from har_stream.training.cv import OOF_DIR, read_results
from har_stream.training.metrics import (
    expected_calibration_error,
    fit_temperature,
    fit_temperature_ece,
    precision_recall_f1,
)

Record = dict[str, Any]


def by_setting(records: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[str(record["name"])].append(record)
    return dict(groups)


def pooled(records: list[Record], key: str = "per_user") -> dict[str, float]:
    """Accuracy per user, pooled over the given records (e.g. one seed's folds)."""
    hits: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for record in records:
        for user, (right, n) in record["per_user"].items():
            total[user] += n
            hits[user] += right if key == "per_user" else record[key][user]
    return {u: hits[u] / total[u] for u in sorted(total, key=int)}


def overall(records: list[Record], key: str = "per_user") -> float:
    right = sum(r["per_user"][u][0] if key == "per_user" else r[key][u]
                for r in records for u in r["per_user"])
    n = sum(v[1] for r in records for v in r["per_user"].values())
    return right / n if n else 0.0


def calibration(records: list[Record], oof_dir: Path) -> dict[str, float]:
    """Temperature fitted on every out-of-fold prediction of the setting; ECE on benchmark
    windows before and after."""
    log_probs, targets, benchmark = [], [], []
    for record in records:
        path = oof_dir / str(record["oof"])
        if not path.is_file():
            continue
        with np.load(path) as oof:
            log_probs.append(oof["stream"])
            targets.append(oof["targets"])
            benchmark.append(oof["benchmark"])
    if not log_probs:
        return {}
    z, y, b = np.concatenate(log_probs), np.concatenate(targets), np.concatenate(benchmark)
    scored = y >= 0
    temperature = fit_temperature(z[scored], y[scored])
    by_ece = fit_temperature_ece(z[b], y[b])
    calibrated = _softmax(z / temperature)
    return {"temperature": temperature,
            "ece_before": expected_calibration_error(_softmax(z)[b], y[b]),
            "ece_after": expected_calibration_error(calibrated[b], y[b]),
            "mean_confidence_after": float(calibrated[b].max(axis=1).mean()),
            "temperature_by_ece": by_ece,
            "ece_after_by_ece": expected_calibration_error(_softmax(z / by_ece)[b], y[b])}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _macro_f1(records: list[Record]) -> float:
    matrix = sum(np.asarray(r["confusion"]) for r in records)
    _, _, f1 = precision_recall_f1(np.asarray(matrix))
    return float(f1[:len(ACTIVITIES)].mean())


def cv_report(results: Path) -> str:
    records = read_results(results)
    if not records:
        return f"no cross-validation results in {results}"
    groups = by_setting(records)
    lines = ["| setting | runs (folds × seeds) | accuracy, mean ± std over seeds | macro-F1 | "
             "worst fold | worst subject | state reset every window | phones turned half a "
             "turn: accuracy, worst subject | best epoch (median) | ECE at T = 1 | T by NLL: "
             "ECE | T by ECE: ECE |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, group in groups.items():
        seeds = sorted({int(r["seed"]) for r in group})
        per_seed = [overall([r for r in group if r["seed"] == s]) for s in seeds]
        folds = _per_fold(group)
        users = pooled(group)
        worst_user = min(users, key=lambda u: users[u])
        cal = calibration(group, results.parent / OOF_DIR)
        cal_text = (f"{cal['ece_before']:.4f} | {cal['temperature']:.2f}: {cal['ece_after']:.4f}"
                    f" | {cal['temperature_by_ece']:.2f}: {cal['ece_after_by_ece']:.4f}"
                    if cal else "– | – | –")
        lines.append(
            f"| {name} | {len(group)} ({len(folds)} × {len(seeds)}) | "
            f"{np.mean(per_seed):.2%} ± {np.std(per_seed):.2%} | {_macro_f1(group):.4f} | "
            f"{min(folds.values()):.2%} | {worst_user}: {users[worst_user]:.2%} | "
            f"{overall(group, 'per_user_reset'):.2%} | {_turned(group)} | "
            f"{np.median([int(r['best_epoch']) for r in group]):.0f} | {cal_text} |")
    names = list(groups)
    lines += ["", "Per fold (accuracy, pooled over seeds):", "",
              "| fold | users | " + " | ".join(names) + " |",
              "|---:|---|" + "---:|" * len(names)]
    first = groups[names[0]]
    fold_users = {int(r["fold"]): r["held_out_users"] for r in first}
    per_fold = {n: _per_fold(g) for n, g in groups.items()}
    for fold in sorted(fold_users):
        cells = [f"{per_fold[n][fold]:.2%}" if fold in per_fold[n] else "–" for n in names]
        users_text = ", ".join(map(str, fold_users[fold]))
        lines.append(f"| {fold} | {users_text} | " + " | ".join(cells) + " |")
    per_user = {n: pooled(g) for n, g in groups.items()}
    turned = {n: pooled([{**r, "per_user": r["per_user_turned"]} for r in g])
              for n, g in groups.items() if all("per_user_turned" in r for r in g)}
    all_users = sorted({u for table in per_user.values() for u in table}, key=int)
    lines += ["", "Per subject (accuracy pooled over seeds; as worn / phone turned half a turn):",
              "", "| subject | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for user in all_users:
        cells = []
        for n in names:
            cell = f"{per_user[n][user]:.2%}" if user in per_user[n] else "–"
            if n in turned and user in turned[n]:
                cell += f" / {turned[n][user]:.2%}"
            cells.append(cell)
        lines.append(f"| {user} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _turned(group: list[Record]) -> str:
    if not all("per_user_turned" in r for r in group):
        return "–"
    turned = [{**r, "per_user": r["per_user_turned"]} for r in group]
    users = pooled(turned)
    worst = min(users, key=lambda u: users[u])
    return f"{overall(turned):.2%}, {worst}: {users[worst]:.2%}"


def _per_fold(group: list[Record]) -> dict[int, float]:
    folds = sorted({int(r["fold"]) for r in group})
    return {f: overall([r for r in group if r["fold"] == f]) for f in folds}
