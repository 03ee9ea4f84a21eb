"""Before/after: the hot paths of this tree against another revision, side by side.

`python -m har_stream.bench.compare REV` checks REV out in a temporary git worktree and runs
the same measurement in both trees, alternating between them round by round so that both see
the same load on a shared machine. Each measurement runs in a fresh interpreter whose import
path starts with its tree, using only APIs both revisions have (`decode_sensor`, `Pipeline`,
`Recognizer`, and for `output` the `Outbox` on a librdkafka producer and the embedded broker).
Figures are CPU-time medians per step (per core) and their ratio; they are the before/after
rows of docs/PERFORMANCE.md. `output` counts the calling thread's CPU only (the service's loop
thread; librdkafka's own threads run beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from har_stream.bench.report import table

REPO = Path(__file__).resolve().parents[2]
MODES = ("decode", "arrays", "bytes", "model", "output")

# Runs inside the measured tree: only APIs that every compared revision has.
CHILD = r"""
import json, sys, time
import numpy as np
from har_stream.core.codec import decode_sensor, encode_sensor
from har_stream.core.pipeline import Pipeline
from har_stream.core.records import SAMPLE_PERIOD_MS, SensorBatch
mode, devices, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if mode == "output":  # one result and one counts record per device and step, as the service
    from har_stream.tools.broker import EmbeddedBroker
    from har_stream.service.settings import KafkaSettings, TopicSettings
    from har_stream.service.delivery import Outbox
    from har_stream.kafka.clients import make_admin, make_producer, prepare_service_topics
    with EmbeddedBroker() as broker:
        kafka, topics = KafkaSettings(bootstrap_servers=broker.bootstrap_servers), TopicSettings()
        prepare_service_topics(make_admin(kafka), topics)
        outbox = Outbox(make_producer(kafka, linger_ms=5, unbounded_delivery=True), "dlq")
        keys = [f"device-{d:06d}".encode() for d in range(devices)]
        result, counts = b"r" * 436, b"c" * 335  # the sizes of the service's records
        cpu = []
        for step in range(steps):
            started = time.thread_time()
            for key in keys:
                outbox.send(topics.activity_topic, key, result, on_ack=len)
                outbox.send(topics.counts_topic, key, counts, on_ack=len)
            outbox.settle(60)
            cpu.append(time.thread_time() - started)
    print(json.dumps(cpu[1:]))
    sys.exit()
rng = np.random.default_rng(0)
base = rng.normal(0, 0.3, (devices, 1, 6)).astype(np.float32)
polls = []
for step in range(steps):
    noise = rng.normal(0, 0.2, (devices, 64, 6)).astype(np.float32)
    seq = step * 64
    polls.append([SensorBatch(f"device-{d:06d}", seq, round(seq * SAMPLE_PERIOD_MS),
                              base[d] + noise[d]) for d in range(devices)])
if mode != "arrays":
    polls = [[encode_sensor(b) for b in poll] for poll in polls]
if mode == "model":
    from har_stream.serving import load_model
    from har_stream.core.recognizer import Recognizer
    target = Recognizer(load_model(num_threads=1))
else:
    target = Pipeline()
cpu = []
for poll in polls:
    started = time.process_time()
    if mode == "decode":
        [decode_sensor(v) for v in poll]
    elif mode == "arrays":
        target.process(poll)
    else:
        target.process([decode_sensor(v) for v in poll])
    cpu.append(time.process_time() - started)
print(json.dumps(cpu[1:]))
"""


def run_child(tree: Path, mode: str, devices: int, steps: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(devices), str(steps)],
                         cwd=tree, env=env, capture_output=True, text=True, check=True).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def compare(base: Path, modes: tuple[str, ...], devices: int, steps: int, rounds: int
            ) -> dict[tuple[str, str], list[float]]:
    """CPU seconds per step, by (mode, 'before' | 'after'), rounds interleaved."""
    trees = {"before": base, "after": REPO}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for mode in modes:
            for name, tree in trees.items():
                times.setdefault((mode, name), []).extend(
                    run_child(tree, mode, devices, steps))
    return times


def rows(times: dict[tuple[str, str], list[float]], devices: int) -> list[list[str]]:
    out = []
    for mode in dict.fromkeys(m for m, _ in times):
        before = statistics.median(times[(mode, "before")])
        after = statistics.median(times[(mode, "after")])
        samples = devices * 64
        unit = {"decode": ("µs per message", devices / 1e6),
                "output": ("µs per window (2 records)", devices / 1e6)}.get(
                    mode, ("samples/s", None))
        if unit[1] is not None:
            cells = [f"{before / unit[1]:.1f}", f"{after / unit[1]:.1f}"]
        else:
            cells = [f"{samples / before / 1e6:.2f} M", f"{samples / after / 1e6:.2f} M"]
        out.append([mode, unit[0], *cells, f"{before / after:.2f}×"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="git revision to compare against (the 'before')")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=5, help="steps per run (first skipped)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    with tempfile.TemporaryDirectory(prefix="har-compare-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet",
                        str(base), args.rev], check=True)
        try:
            times = compare(base, modes, args.devices, args.steps, args.rounds)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                           check=False)
    print(f"{args.devices:,} devices, 64-sample messages; CPU-time medians over "
          f"{args.rounds} interleaved rounds of {args.steps - 1} steps; before = {args.rev}\n")
    print(table(["what", "unit", "before", "after", "speed-up"], rows(times, args.devices)))


if __name__ == "__main__":
    main()
