"""Helpers shared by the service tests: a fast fake model, recordings, topic I/O, processes.

The fake model is deterministic and depends on both the window and the carried state, so
a wrongly restored state changes its output; it is importable as
`service_support:fake_model` (with tests/ on PYTHONPATH) for service subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from har_stream.records import ACTIVITIES, SAMPLE_PERIOD_MS, SensorBatch

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


class FakeModel:
    """probs = softmax(window means + recurrent state mixed in); state = leaky average."""

    classes = ACTIVITIES
    state_size = 4
    version = "fake-1"

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self._w = rng.normal(0, 4.0, (9, len(self.classes))).astype(np.float32)
        self._u = rng.normal(0, 2.0, (self.state_size, len(self.classes))).astype(np.float32)
        self._s = rng.normal(0, 1.0, (9, self.state_size)).astype(np.float32)

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = windows.astype(np.float32).mean(axis=1)
        spread = windows.astype(np.float32).std(axis=1)
        new_state = (0.7 * state + 0.3 * np.tanh(mean @ self._s + spread @ self._s)).astype(
            np.float32)
        logits = mean @ self._w + spread @ self._w + new_state @ self._u
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.astype(np.float32), new_state


def fake_model() -> FakeModel:
    return FakeModel()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def synthetic_samples(n: int, seed: int) -> np.ndarray:
    """A plausible (n, 6) stream: slowly drifting gravity, periodic motion, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 50.0
    freq = 0.5 + seed % 5 * 0.4
    acc = np.stack([0.3 * np.sin(2 * np.pi * freq * t), 0.2 * np.cos(2 * np.pi * freq * t),
                    1.0 + 0.1 * np.sin(2 * np.pi * 0.05 * t)], axis=1)
    acc += rng.normal(0, 0.05, acc.shape) + np.cumsum(rng.normal(0, 0.002, acc.shape), axis=0)
    gyro = rng.normal(0, 0.3, (n, 3)) + np.sin(2 * np.pi * freq * t)[:, None]
    return np.clip(np.concatenate([acc, gyro], axis=1), -4, 4).astype(np.float32)


def batches_of(device_id: str, samples: np.ndarray, per_message: int,
               t0_ms: int = 1_700_000_000_000) -> list[SensorBatch]:
    return [SensorBatch(device_id, s, t0_ms + round(s * SAMPLE_PERIOD_MS),
                        samples[s:s + per_message])
            for s in range(0, len(samples), per_message)]


@dataclass
class Service:
    """A `har-stream run` subprocess."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        self.process.terminate()
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(args: Iterable[str], log_path: Path, env: dict[str, str] | None = None
                  ) -> Service:
    """Start `python -m har_stream.cli run ARGS` with tests/ importable (for the fake model)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO)])
    environment.update(env or {})
    log_file = open(log_path, "wb")  # noqa: SIM115 (the child owns it)
    process = subprocess.Popen([sys.executable, "-m", "har_stream.cli", "run", *args],
                               stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO,
                               env=environment)
    log_file.close()
    return Service(process, log_path)


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
