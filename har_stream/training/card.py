"""The model card: `card.json` (machine-readable, read by `load_model`), `card.md`, and plots.

`card.json` holds what serving needs (`classes`, `state_size`, `version`, the window and
signal parameters the model was trained with), how the model was trained (`training`:
data hash, users, seed, hyperparameters, time), what the served flatbuffer is (`serving`:
precision, float reference, its figures against float on the validation users) and, after
`har-stream evaluate`, every figure measured on the test users (`evaluation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from har_stream.core.records import HOP, RATE_HZ, WINDOW
from har_stream.core.signal import SignalSettings
from har_stream.serving import CARD_FILE
from har_stream.serving.contract import pipeline_contract

CONFUSION_PNG = "confusion.png"
PER_SUBJECT_PNG = "per_subject.png"
RELIABILITY_PNG = "reliability.png"
CARD_MD = "card.md"


def preprocessing(mean: np.ndarray, std: np.ndarray,
                  signal: SignalSettings = SignalSettings()) -> dict[str, object]:
    """What a window must be to be fed to the model (the serving pipeline's parameters)."""
    return {
        **pipeline_contract(signal),
        "pipeline": ("har_stream.core.pipeline (causal, per device), "
                     "via pipeline.replay in training"),
        "standardisation": {
            "where": "inside the model: Normalization layer `encoder/standardise` "
                     "(model.keras), folded into model.tflite; feed raw pipeline windows",
            "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        },
    }


def read_card(directory: Path) -> dict[str, Any]:
    return json.loads((directory / CARD_FILE).read_text())


def write_card(directory: Path, card: dict[str, object]) -> None:
    """Write card.json, card.md and, when the card holds an evaluation, the two plots.

    card.json records the sha256 of the model files already in `directory` (`files`), which
    `load_model` checks: write the card after the model files.
    """
    from har_stream.serving.integrity import FILES_KEY, file_hashes

    directory.mkdir(parents=True, exist_ok=True)
    hashes = file_hashes(directory)  # the card vouches for the model files beside it
    if hashes:
        card = {**card, FILES_KEY: hashes}
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    evaluation = card.get("evaluation")
    if isinstance(evaluation, dict) and "confusion" in evaluation:
        _plot_confusion(evaluation["confusion"], directory / CONFUSION_PNG)
        _plot_per_subject(evaluation["per_subject"], directory / PER_SUBJECT_PNG,
                          evaluation.get("per_subject_reset"))
        reliability = evaluation.get("calibration", {}).get("reliability")
        if reliability:
            _plot_reliability(reliability, directory / RELIABILITY_PNG)
    (directory / CARD_MD).write_text(card_markdown(card))


def card_markdown(card: dict[str, object]) -> str:
    training = card.get("training", {})
    assert isinstance(training, dict)
    lines = [
        f"# Model card: {card['name']} ({card['version']})", "",
        str(card.get("description", "")), "",
        f"- classes: {', '.join(card['classes'])}",  # type: ignore[arg-type]
        f"- state size: {card['state_size']}; window {WINDOW} samples at {RATE_HZ:g} Hz, "
        f"hop {HOP}",
        f"- training data sha256: `{training.get('data_sha256')}`",
        f"- users: train {training.get('train_users')}, validation "
        f"{training.get('validation_users')}, test {training.get('test_users')}",
        f"- seed {training.get('seed')}, {training.get('epochs_run')} epochs, "
        f"{training.get('seconds', 0):.0f} s of training",
        *(f"- {note}" for note in training.get("notes", [])),
        "",
    ]
    evaluation = card.get("evaluation")
    serving = card.get("serving")
    if isinstance(serving, dict):
        lines += _serving_markdown(serving, evaluation if isinstance(evaluation, dict) else {})
    if isinstance(evaluation, dict) and "stream" in evaluation:
        lines += _evaluation_markdown(evaluation)
    elif isinstance(evaluation, dict):
        lines += ["## Test users (6-class benchmark)", ""]
        lines += [f"- {key}: accuracy {v['accuracy']:.2%}, macro-F1 {v['macro_f1']:.4f}"
                  for key, v in evaluation.items()]
    return "\n".join(lines) + "\n"


def float_comparisons(serving: dict, evaluation: dict) -> list[tuple[str, dict, dict, dict]]:
    """(users, served scores, float scores, agreement) recorded in a card: the validation
    users (where the precision was accepted) first, then the test users."""
    rows = []
    if "validation" in serving:
        v = serving["validation"]
        rows.append(("validation", v["served"], v["float"], v["agreement"]))
    if "float_reference" in evaluation:
        reference = evaluation["float_reference"]
        rows.append(("test", evaluation["stream"], reference["stream"], reference["agreement"]))
    return rows


def summary(directory: Path) -> str:
    """The lines a command prints after writing or scoring a model directory: its version,
    the served precision against float, the test figures."""
    card = read_card(directory)
    evaluation, serving = card.get("evaluation", {}), card.get("serving", {})
    comparisons = {users: row for users, *row in float_comparisons(serving, evaluation)}
    lines = [f"model directory: {directory} (version {card['version']})"]
    if "validation" in comparisons:
        lines.append(f"  served flatbuffer: {serving['precision']}")
        lines.append(_comparison_line("validation users", *comparisons["validation"]))
    for key in ("stream", "reset_every_window", "window"):
        if key in evaluation:
            scores = evaluation[key]
            lines.append(f"  test users, {key}: accuracy {scores['accuracy']:.2%}, "
                         f"macro-F1 {scores['macro_f1']:.4f}")
    if "test" in comparisons:
        lines.append(_comparison_line("test users", *comparisons["test"]))
    return "\n".join(lines)


def _comparison_line(users: str, served: dict, reference: dict, agreement: dict) -> str:
    return (f"  {users}, served against float: accuracy {served['accuracy']:.2%} / "
            f"{reference['accuracy']:.2%}, macro-F1 {served['macro_f1']:.4f} / "
            f"{reference['macro_f1']:.4f}, same class on {agreement['same_class']:.2%} of "
            f"{agreement['windows']:,} windows")


def _serving_markdown(serving: dict, evaluation: dict) -> list[str]:
    """What `model.tflite` is, and how it compares with the float model."""
    lines = [f"## Served flatbuffer: {serving['precision']}", "",
             f"`{serving['file']}` is `{serving['float_reference']}` (the float reference, "
             f"weights `{serving['weights_version']}`) converted by {serving['conversion']}."]
    if "validation" in serving:
        lines[-1] += (f" Accepted on users {serving['validation'].get('users')} (the validation "
                      "users; the training users when the model was trained on all of them): "
                      f"at most {serving['max_validation_drop']} accuracy or macro-F1 below "
                      "float, decided before the test users were scored.")
    rows = float_comparisons(serving, evaluation)
    if rows:
        lines += ["", "| users | accuracy: served / float | macro-F1: served / float | same class"
                  " (all windows) | same class (benchmark) | largest probability difference |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {users} | {a['accuracy']:.2%} / {b['accuracy']:.2%} | "
                  f"{a['macro_f1']:.4f} / {b['macro_f1']:.4f} | {g['same_class']:.2%} of "
                  f"{g['windows']} | {g['same_class_benchmark']:.2%} | "
                  f"{g['max_probability_difference']:.4f} |" for users, a, b, g in rows]
    return lines + [""]


def _evaluation_markdown(ev: dict) -> list[str]:
    stream, reset, counts = ev["stream"], ev["reset_every_window"], ev["windows"]
    lines = [
        "## Test users (6-class benchmark, causal pipeline)", "",
        "| | accuracy | macro-F1 |", "|---|---:|---:|",
        f"| state carried (as served) | {stream['accuracy']:.2%} | {stream['macro_f1']:.4f} |",
        f"| state reset every window | {reset['accuracy']:.2%} | {reset['macro_f1']:.4f} |",
        "",
        f"Windows: {counts['total']} in total, {counts['benchmark']} in the benchmark, "
        f"{counts['excluded']} excluded (touching unlabelled samples: "
        f"{counts['excluded_touching_unlabelled']}; inside or across transitions/segments: "
        f"the rest).", "",
        "| class | precision | recall | F1 | windows |", "|---|---:|---:|---:|---:|",
    ]
    for name, row in ev["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                     f"{row['f1']:.3f} | {row['support']} |")
    reset_of = ev.get("per_subject_reset", {})
    lines += ["", f"![confusion]({CONFUSION_PNG})", "",
              "| subject | accuracy | state reset every window |", "|---|---:|---:|"]
    lines += [f"| {u} | {a:.2%} | " + (f"{reset_of[u]:.2%} |" if u in reset_of else "– |")
              for u, a in ev["per_subject"].items()]
    if "per_experiment" in ev:
        lines += ["", "Per recording: " + ", ".join(
            f"exp {e} (user {row['user']}) {row['accuracy']:.1%}"
            for e, row in ev["per_experiment"].items()) + "."]
    cal = ev["calibration"]
    lines += ["", f"![per subject]({PER_SUBJECT_PNG})", "",
              f"Calibration: expected calibration error {cal['expected_calibration_error']:.4f}, "
              f"mean confidence {cal['mean_confidence']:.3f}."]
    if cal.get("reliability"):
        lines += ["", f"![reliability]({RELIABILITY_PNG})"]
    lines += ["", "Showing UNKNOWN below a confidence threshold:", "",
              "| threshold | benchmark windows shown UNKNOWN | accuracy of the rest |",
              "|---:|---:|---:|"]
    lines += [f"| {t} | {row['share_unknown']:.2%} | {row['accuracy_of_rest']:.2%} |"
              for t, row in cal["unknown_below"].items()]
    lines += ["", "## Windows outside the benchmark", "",
              "| windows | count | answered | mean confidence | confidence < 0.7 |",
              "|---|---:|---|---:|---:|"]
    for name, row in ev["other_windows"].items():
        if "windows" not in row:
            continue
        top = sorted(row["predicted_share"].items(), key=lambda kv: -kv[1])[:3]
        answered = ", ".join(f"{c} {s:.0%}" for c, s in top if s > 0)
        lines.append(f"| {name.replace('_', ' ')} | {row['windows']} | {answered} | "
                     f"{row['mean_confidence']:.3f} | {row['share_below_0.7']:.1%} |")
    transition = ev["other_windows"].get("transition_class")
    if transition:
        lines += ["", f"TRANSITION class: recall {transition['recall_on_mostly_transition']:.1%} "
                  "on windows at least half postural transition, precision "
                  f"{transition['precision']:.1%} (its other answers fall almost only on the "
                  "other excluded windows: partly transition, or unlabelled), said on "
                  f"{transition['false_alarms_on_benchmark']:.2%} of benchmark windows."]
    return lines + [""]


def _plot_confusion(conf: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(conf["matrix"])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    ax.imshow(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), cmap="Blues")
    ax.set_xticks(range(matrix.shape[1]), conf["predicted"], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), conf["true"])
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion on the test users (windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_per_subject(per_subject: dict[str, float], path: Path,
                      reset: dict[str, float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    users = list(per_subject)
    at = np.arange(len(users))
    width = 0.4 if reset else 0.8
    ax.bar(at, [per_subject[u] * 100 for u in users], width, color="tab:blue",
           label="state carried (served)")
    low = min(per_subject.values(), default=1.0) * 100
    if reset:
        ax.bar(at + width, [reset.get(u, 0.0) * 100 for u in users], width, color="tab:gray",
               label="state reset every window")
        low = min(low, min(reset.values(), default=1.0) * 100)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(at + (width / 2 if reset else 0), users)
    ax.set_ylim(max(0.0, low - 5), 100)
    ax.set_xlabel("test subject")
    ax.set_ylabel("window accuracy (%)")
    ax.set_title("Accuracy per test subject")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_reliability(bins: list[dict[str, float]], path: Path) -> None:
    """Accuracy against confidence per bin (bar width: the bin; the diagonal is perfect)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, share) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    lower = [b["lower"] for b in bins]
    widths = [b["upper"] - b["lower"] for b in bins]
    ax.bar(lower, [b["accuracy"] for b in bins], widths, align="edge", color="tab:blue",
           edgecolor="white", label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["confidence"] for b in bins], "o",
            color="tab:red", markersize=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Reliability on the test users (benchmark windows)")
    share.bar(lower, [b["share"] for b in bins], widths, align="edge", color="tab:gray")
    share.set_yscale("log")
    share.set_ylabel("share")
    share.set_xlabel("confidence (top class)")
    share.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
