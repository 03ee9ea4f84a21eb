"""Two checkouts end to end: the `bench e2e` rig at N devices, the recognizer from each in turn.

The model-pipeline form of `bench.revisions` times the recognizer's code in one process; this
form measures what an operator sees: the embedded broker, the simulator at N real-time devices
and `har-stream run`, its metrics scraped (`e2e_rig`, `e2e_bench.observe_level`). Only the
recognizer process differs between the two checkouts (it runs in that tree, that tree alone
on its import path, with the options both understand: those of the rig, plus any given for
that checkout, e.g. to switch off in the after checkout a feature the before one lacks); the
broker and the simulator are this checkout's, the same in every run. Rounds alternate the
order (before first, then after first, ...) so that a drift of the shared machine falls on
both alike:

    git worktree add /tmp/before <revision>
    python -m har_stream.bench.revisions e2e /tmp/before . --devices 5000 --window-s 60

Each run is printed as it ends, then the medians per checkout and after/before: sustained (in
how many rounds), messages consumed per second, end-to-end latency p50/p99, the recognizer's
CPU cores and its CPU microseconds per message consumed (the figure least disturbed by other
work on the machine).
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from har_stream.bench.e2e_bench import Level, run_level
from har_stream.bench.e2e_rig import WARMUP_S

FIGURES = ("sustained", "consumed_per_s", "p50_ms", "p99_ms", "cpu_cores", "us_per_message")
FAILED = {"sustained": 0.0, **{name: math.nan for name in FIGURES[1:]}}
"""The figures of a run that did not get to measure (the recognizer did not start, ...)."""
CHECKOUTS = ("before", "after")


def figures(level: Level) -> dict[str, float]:
    """What a before/after run compares, from one level of the rig."""
    consumed = level.consumed_per_s
    return {"sustained": 1.0 if level.sustained else 0.0, "consumed_per_s": consumed,
            "p50_ms": level.p50_ms, "p99_ms": level.p99_ms, "cpu_cores": level.cpu_recognizer,
            "us_per_message": 1e6 * level.cpu_recognizer / consumed if consumed else math.nan}


def _median(values: list[float]) -> float:
    measured = [v for v in values if not math.isnan(v)]
    return statistics.median(measured) if measured else math.nan


def medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per checkout, the median of each figure over the rounds that measured it; `sustained`
    is the share of all rounds (failed ones included) that were sustained."""
    return {name: {"sustained": sum(r["sustained"] for r in got) / len(got) if got else 0.0,
                   **{f: _median([r[f] for r in got]) for f in FIGURES[1:]}}
            for name, got in runs.items()}


def ratios(median: dict[str, dict[str, float]]) -> dict[str, float]:
    """after/before of each median figure (not of `sustained`, a share of rounds)."""
    before, after = median["before"], median["after"]
    return {f: after[f] / before[f] if before[f] else math.nan for f in FIGURES[1:]}


def round_line(index: int, name: str, got: dict[str, float]) -> str:
    """One run, as printed when it ends."""
    return (f"round {index} {name:6s} sustained {'yes' if got['sustained'] else 'no'}  "
            f"{_measured(got)}")


def _measured(got: dict[str, float]) -> str:
    return (f"consumed {got['consumed_per_s']:,.0f}/s  latency p50 {got['p50_ms']:.0f} ms "
            f"p99 {got['p99_ms']:.0f} ms  recognizer {got['cpu_cores']:.2f} cores  "
            f"{got['us_per_message']:,.0f} µs CPU per message")


def summary(runs: dict[str, list[dict[str, float]]]) -> list[str]:
    """The medians of each checkout and the after/before line."""
    median = medians(runs)
    lines = [f"median {name}: sustained {round(median[name]['sustained'] * len(runs[name]))} "
             f"of {len(runs[name])} rounds  {_measured(median[name])}" for name in CHECKOUTS]
    ratio = ratios(median)
    lines.append("after/before: " + "  ".join(
        f"{f.replace('_per_', '/').replace('_', ' ')} {ratio[f]:.3f}" for f in FIGURES[1:]))
    return lines


def _at_least(low: float, kind: Callable[[str], float], strict: bool = False
              ) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"{'above' if strict else 'at least'} {low:g}")
        return value
    return parse


def _checkout(text: str) -> Path:
    path = Path(text)
    if not (path / "har_stream" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"{text} has no har_stream/cli.py: not a checkout")
    return path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m har_stream.bench.revisions e2e", description=__doc__.split("\n")[0])
    parser.add_argument("before", type=_checkout, help="checkout of the code before the change")
    parser.add_argument("after", type=_checkout, help="checkout of the code after the change")
    parser.add_argument("--devices", type=_at_least(1, int), default=5_000,
                        help="simulated devices at 50 Hz (default: 5000)")
    parser.add_argument("--window-s", type=_at_least(0, float, strict=True), default=60.0,
                        help="measurement window of each run, seconds (default: 60)")
    parser.add_argument("--rounds", type=_at_least(1, int), default=2,
                        help="rounds, each runs both checkouts (default: 2)")
    parser.add_argument("--warmup-s", type=_at_least(0, float), default=WARMUP_S,
                        help=f"warm-up before each window, seconds (default: {WARMUP_S:g})")
    for name in CHECKOUTS:
        parser.add_argument(f"--{name}-options", default="", metavar="OPTIONS",
                            help=f"more `har-stream run` options for the {name} checkout's "
                            f"recognizer, one string (--{name}-options='--a 1 --b')")
    args = parser.parse_args(argv)
    args.options = {name: tuple(shlex.split(getattr(args, f"{name}_options")))
                    for name in CHECKOUTS}
    return args


def revision(checkout: Path) -> str:
    """The commit a checkout is at, with `+changes` if its tree differs (for the header)."""
    def git(*command: str) -> str:
        done = subprocess.run(["git", "-C", str(checkout), *command], capture_output=True,
                              text=True, timeout=30)
        return done.stdout.strip() if done.returncode == 0 else "?"

    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if changed not in ("", "?") else "")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    for name in CHECKOUTS:
        checkout = getattr(args, name)
        print(f"{name}: {checkout.resolve()} at {revision(checkout)}, recognizer options: "
              f"{' '.join(args.options[name]) or '(the rig only)'}", flush=True)
    print(f"{args.devices:,} devices, {args.warmup_s:g}-s warm-up, {args.window_s:g}-s window, "
          f"{args.rounds} rounds", flush=True)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CHECKOUTS}
    with tempfile.TemporaryDirectory(prefix="har-bench-revisions-e2e-") as tmp:
        for r in range(args.rounds):
            for name in CHECKOUTS if r % 2 == 0 else CHECKOUTS[::-1]:
                workdir = Path(tmp) / name
                workdir.mkdir(exist_ok=True)
                try:
                    got = figures(run_level(args.devices, args.window_s, args.warmup_s,
                                            workdir, args.options[name], getattr(args, name)))
                except RuntimeError as exc:  # e.g. the recognizer did not start: say, go on
                    print(f"round {r + 1} {name:6s} failed: {exc}", flush=True)
                    got = dict(FAILED)
                else:
                    print(round_line(r + 1, name, got), flush=True)
                runs[name].append(got)
    print("\n".join(summary(runs)), flush=True)
