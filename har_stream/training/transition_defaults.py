"""Choose the activity-change smoothing defaults on the training users; report on the test users.

    python -m har_stream.training.transition_defaults [--data hapt_raw.npz] [--model DIR]

One model pass over every recording, as the service runs it (`windows.make_windows` replays
each recording through the service's pipeline, `evaluate.stream_probs` carries the state per
recording), cached to an .npz; then the smoother (`core.transitions`, the service's own code)
runs over each recording for every (hold_windows N, enter_confidence c) of the grid.

Rule: on the TRAINING users (the model card's train + validation users), keep the pairs whose
smoothed per-window accuracy is not below the raw one (smoothing must not lower it; if none,
those within 0.1 point of the best), then take the fewest short stints (an activity held < 3
windows) per hour, then the least added delay. The chosen pair's
figures on the TEST users go to docs/SUBSCRIBERS.md. Figures per user set:
- accuracy: windows inside one basic-activity segment, raw argmax vs smoothed activity
  (none yet counts as wrong; the smoother never answers TRANSITION);
- changes per hour of stream: raw (argmax differs from the previous window's) vs smoothed;
- short stints per hour: raw runs / smoothed activities lasting < 3 windows (3.84 s);
- added delay: windows from a change's first window to the window that confirmed it;
- true changes caught: consecutive basic segments with different activities (postural
  transitions and unlabelled gaps between them skipped); caught when a change into the new
  activity is confirmed by a window that starts between the last window inside the previous
  segment and the end of the new segment (the app hears of it before the activity ends).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np

from har_stream.core.records import HOP, SAMPLE_PERIOD_MS, WINDOW, ActivityResult
from har_stream.core.transitions import ActivityTransitions, SmoothingSettings, smoothed_per_window

HOLDS = (1, 2, 3, 4, 5)
CONFIDENCES = (0.8, 0.9, 0.95, 0.99, 1.01)
SHORT = 3
"""An activity held fewer windows than this is a short stint (a blip)."""
ACCURACY_TIE = 0.001
CACHE = Path(tempfile.gettempdir()) / "har-transition-probs.npz"


def model_pass(data_path: Path, model_dir: Path, cache: Path = CACHE) -> dict[str, np.ndarray]:
    """Probabilities of every window of every recording, with labels (cached in `cache`)."""
    if cache.is_file():
        with np.load(cache) as stored:
            return dict(stored)
    from har_stream.serving import load_model
    from har_stream.training.evaluate import stream_probs
    from har_stream.training.hapt import load_hapt
    from har_stream.training.windows import make_windows

    data = load_hapt(data_path)
    model = load_model(model_dir)
    windows = make_windows(data.recordings)
    segments = np.concatenate([np.column_stack([np.full(len(r.segments), r.exp_id),
                                                r.segments]) for r in data.recordings])
    card = json.loads((model_dir / "card.json").read_text())
    arrays = {
        "probs": stream_probs(model, windows), "seqs": windows.seqs, "exp_id": windows.exp_id,
        "user_id": windows.user_id, "activity": windows.activity,
        "classes": np.array(model.classes), "segments": segments,
        "train_users": np.array(card["training"]["train_users"]
                                + card["training"]["validation_users"]),
        "test_users": np.array(card["training"]["test_users"]),
    }
    np.savez_compressed(cache, **arrays)  # type: ignore[arg-type]
    return arrays


def recording_results(exp: int, seqs: np.ndarray, probs: np.ndarray, classes: tuple[str, ...]
                      ) -> list[ActivityResult]:
    best = probs.argmax(axis=1)
    device = f"exp{exp:02d}"
    return [ActivityResult(device, int(s), round(s * SAMPLE_PERIOD_MS),
                           round((s + WINDOW - 1) * SAMPLE_PERIOD_MS), classes[b], float(row[b]),
                           {}, "sweep")
            for s, b, row in zip(seqs.tolist(), best.tolist(), probs, strict=True)]


def _stints(runs: list[int]) -> int:
    """Short stints among activity runs, the first and last run left out (cut by the ends)."""
    return sum(1 for n in runs[1:-1] if n < SHORT)


def _runs(labels: np.ndarray) -> list[int]:
    if not len(labels):
        return []
    bounds = np.flatnonzero(np.diff(labels)) + 1
    return np.diff(np.concatenate([[0], bounds, [len(labels)]])).tolist()


def evaluate(cached: dict[str, np.ndarray], users: np.ndarray, settings: SmoothingSettings
             ) -> dict[str, float]:
    """Raw and smoothed figures of one setting over the recordings of `users`."""
    classes = tuple(str(c) for c in cached["classes"])
    totals = dict.fromkeys(("windows", "bench", "raw_right", "smooth_right", "raw_changes",
                            "changes", "raw_short", "short", "delay", "true_changes",
                            "caught", "raw_one_window"), 0)
    for exp in np.unique(cached["exp_id"][np.isin(cached["user_id"], users)]):
        rows = cached["exp_id"] == exp
        seqs, probs, truth = cached["seqs"][rows], cached["probs"][rows], cached["activity"][rows]
        raw = probs.argmax(axis=1)
        changes, _ = ActivityTransitions(classes, settings).update(
            recording_results(int(exp), seqs, probs, classes))
        smooth = smoothed_per_window(changes, seqs, classes)
        bench = (truth >= 1) & (truth <= 6)
        raw_runs = _runs(raw)
        moves = [c for c in changes if c.previous is not None]
        starts = [c.started_ms for c in changes]
        smooth_runs = [round((b - a) / (HOP * SAMPLE_PERIOD_MS)) for a, b in
                       itertools.pairwise(starts)]
        true_changes, caught = _true_changes(cached["segments"], int(exp), changes, classes)
        totals["windows"] += len(seqs)
        totals["bench"] += int(bench.sum())
        totals["raw_right"] += int((raw[bench] == truth[bench] - 1).sum())
        totals["smooth_right"] += int((smooth[bench] == truth[bench] - 1).sum())
        totals["raw_changes"] += len(raw_runs) - 1 if raw_runs else 0
        totals["raw_one_window"] += sum(1 for n in raw_runs[1:-1] if n == 1)
        totals["changes"] += len(moves)
        totals["raw_short"] += _stints(raw_runs)
        totals["short"] += _stints([*smooth_runs, 0])  # the last activity runs to the end
        totals["delay"] += sum(c.windows - 1 for c in moves)
        totals["true_changes"] += true_changes
        totals["caught"] += caught
    hours = totals["windows"] * HOP * SAMPLE_PERIOD_MS / 3.6e6
    return {
        "hours": hours, "raw_accuracy": totals["raw_right"] / totals["bench"],
        "accuracy": totals["smooth_right"] / totals["bench"],
        "raw_changes_per_hour": totals["raw_changes"] / hours,
        "changes_per_hour": totals["changes"] / hours,
        "raw_one_window_blips": totals["raw_one_window"], "raw_changes": totals["raw_changes"],
        "changes": totals["changes"],
        "raw_short_per_hour": totals["raw_short"] / hours,
        "short_per_hour": totals["short"] / hours,
        "mean_added_delay_windows": totals["delay"] / max(totals["changes"], 1),
        "true_changes": totals["true_changes"], "caught": totals["caught"],
    }


def _true_changes(segments: np.ndarray, exp: int, changes: list, classes: tuple[str, ...]
                  ) -> tuple[int, int]:
    basic = segments[(segments[:, 0] == exp) & (segments[:, 1] <= 6)]
    total = caught = 0
    for (_, before, _, end), (_, activity, _, stop) in itertools.pairwise(basic):
        if activity == before:
            continue
        total += 1
        name = classes[activity - 1]
        caught += any(c.activity == name and end - WINDOW <= c.seq < stop for c in changes)
    return total, caught


def sweep(cached: dict[str, np.ndarray]) -> tuple[SmoothingSettings, list[dict]]:
    rows = []
    for hold in HOLDS:
        for confidence in CONFIDENCES:
            settings = SmoothingSettings(hold_windows=hold, enter_confidence=confidence)
            figures = evaluate(cached, cached["train_users"], settings)
            rows.append({"hold_windows": hold, "enter_confidence": confidence, **figures})
    tied = [r for r in rows if r["accuracy"] >= r["raw_accuracy"]]
    if not tied:
        best = max(r["accuracy"] for r in rows)
        tied = [r for r in rows if r["accuracy"] >= best - ACCURACY_TIE]
    chosen = min(tied, key=lambda r: (r["short_per_hour"], r["mean_added_delay_windows"]))
    return SmoothingSettings(int(chosen["hold_windows"]), chosen["enter_confidence"]), rows


def main(argv: list[str] | None = None) -> int:
    from har_stream.serving import DEFAULT_MODEL_DIR
    from har_stream.training.hapt import default_data_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--validation-only", action="store_true",
                        help="choose on the model card's validation users only (a check: the "
                        "model's weights never fitted them)")
    args = parser.parse_args(argv)
    cached = model_pass(args.data or default_data_path(), args.model, args.cache)
    if args.validation_only:
        card = json.loads((args.model / "card.json").read_text())
        cached = cached | {"train_users": np.array(card["training"]["validation_users"])}
    chosen, rows = sweep(cached)
    print("choice users:    N     c   accuracy (raw)    changes/h (raw)   short/h (raw)  "
          "delay  caught/true")
    for r in rows:
        print(f"{r['hold_windows']:17d} {r['enter_confidence']:5.2f}  {r['accuracy']:.4f} "
              f"({r['raw_accuracy']:.4f})  {r['changes_per_hour']:7.1f} "
              f"({r['raw_changes_per_hour']:6.1f})  {r['short_per_hour']:6.1f} "
              f"({r['raw_short_per_hour']:6.1f})  {r['mean_added_delay_windows']:4.2f}  "
              f"{r['caught']}/{r['true_changes']}")
    print(f"chosen: hold_windows={chosen.hold_windows} "
          f"enter_confidence={chosen.enter_confidence}")
    test = evaluate(cached, cached["test_users"], chosen)
    print("test users:", json.dumps(test, indent=1))
    raw = evaluate(cached, cached["test_users"], SmoothingSettings(1, 1.01, passing=()))
    print(f"test users, every raw change as an event (N=1, TRANSITION not passing): "
          f"{raw['changes']} changes, {raw['caught']}/{raw['true_changes']} true changes caught")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
