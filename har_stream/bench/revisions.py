"""Two checkouts side by side: the model-pipeline or the end-to-end measurement, alternating.

A change that should not cost anything (a package move, a refactor) is shown not to by
running the same measurement on the code before and after it, in turns, on one machine:

    git worktree add /tmp/before <revision>
    python -m har_stream.bench.revisions /tmp/before . --rounds 3
    python -m har_stream.bench.revisions e2e /tmp/before . --devices 5000 --window-s 60

The first word chooses the measurement: `model-pipeline` (the default, the word may be left
out) or `e2e` (the `bench e2e` rig with the recognizer of each checkout in turn, see
`revisions_e2e`). In the model-pipeline form each round runs
`bench.model_pipeline_bench.measure` (decode + pipeline + model, one process per
measurement, one LiteRT thread) in each checkout, in alternating order; it prints every round
and the medians, in samples per CPU-second and CPU microseconds per window.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SNIPPET = """
import json
try:
    from har_stream.serving import load_model
except ImportError:  # a checkout from before the packages (har_stream.model)
    from har_stream.model import load_model
from har_stream.bench.model_pipeline_bench import _steps, measure
got = measure(load_model(num_threads=1), {devices}, _steps({devices}, False))
print(json.dumps({{"samples": got.samples_per_s_cpu, "windows": got.windows_per_s_cpu}}))
"""


def measure_in(checkout: Path, devices: int) -> dict[str, float]:
    """One measurement in a fresh interpreter importing `har_stream` from `checkout`."""
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(devices=devices)], cwd=checkout,
                         env=env, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """The form the first word names (`e2e`, `model-pipeline`), else model-pipeline."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["e2e"]:
        from har_stream.bench import revisions_e2e

        revisions_e2e.main(argv[1:])
    else:
        main_model_pipeline(argv[1:] if argv[:1] == ["model-pipeline"] else argv)


def main_model_pipeline(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m har_stream.bench.revisions [model-pipeline]",
        description=__doc__.split("\n")[0],
        epilog="python -m har_stream.bench.revisions e2e --help: the end-to-end form")
    parser.add_argument("before", type=Path, help="checkout of the code before the change")
    parser.add_argument("after", type=Path, help="checkout of the code after the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for name in order:
            got = measure_in(getattr(args, name), args.devices)
            runs[name].append(got)
            print(f"round {r + 1} {name:6s} {got['samples'] / 1e3:8.1f} k samples/s per core "
                  f"{1e6 / got['windows']:7.1f} us CPU per window", flush=True)
    medians = {n: statistics.median(g["samples"] for g in runs[n]) for n in runs}
    per_window = {n: statistics.median(1e6 / g["windows"] for g in runs[n]) for n in runs}
    print(f"median  before {medians['before'] / 1e3:.1f} k samples/s ({per_window['before']:.1f} "
          f"us/window), after {medians['after'] / 1e3:.1f} k ({per_window['after']:.1f} us); "
          f"after/before = {medians['after'] / medians['before']:.3f}")


if __name__ == "__main__":
    main()
