"""The serving engine: a LiteRT interpreter running the stateful model on batches of any size.

Why LiteRT: it runs the converted model with plain builtin ops, needs neither TensorFlow nor
its 650 MiB at import, and was the fastest option measured for every batch size from 1 to
1024 (figures and the alternatives tried in docs/MODELS.md; `python -m
har_stream.bench.engines` reproduces them).

Batches: the interpreter is resized to the exact batch size only when the size changes
(`resize_tensor_input` + `allocate_tensors`, about a tenth of a millisecond); padding to
power-of-two buckets instead was measured and is available with `buckets=True`. Batches
above `max_batch` run in slices so memory stays bounded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from har_stream.core.records import CHANNELS, WINDOW

SIGNATURE_INPUTS = ("windows", "state")
SIGNATURE_OUTPUTS = ("probs", "state_out")


class LiteRTModel:
    """`StatefulModel` backed by a LiteRT flatbuffer with inputs `windows`, `state` and
    outputs `probs`, `state_out` (the signature written by `har_stream.training.export`)."""

    def __init__(self, flatbuffer: bytes, classes: tuple[str, ...], state_size: int,
                 version: str, num_threads: int = 1, max_batch: int = 1024,
                 buckets: bool = False) -> None:
        self.classes = tuple(classes)
        self.state_size = int(state_size)
        self.version = version
        self.max_batch = max_batch
        self.buckets = buckets
        self._interpreter = Interpreter(model_content=flatbuffer, num_threads=num_threads)
        signature = self._interpreter._get_full_signature_list()["serving_default"]
        self._windows_index = signature["inputs"]["windows"]
        self._state_index = signature["inputs"]["state"]
        self._probs_index = signature["outputs"]["probs"]
        self._state_out_index = signature["outputs"]["state_out"]
        self._batch = 0

    @classmethod
    def from_dir(cls, path: Path, num_threads: int = 1, **options: object) -> LiteRTModel:
        from har_stream.serving import CARD_FILE, TFLITE_FILE

        card = json.loads((path / CARD_FILE).read_text())
        return cls((path / TFLITE_FILE).read_bytes(), tuple(card["classes"]),
                   int(card["state_size"]), str(card["version"]), num_threads=num_threads,
                   **options)  # type: ignore[arg-type]

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = np.ascontiguousarray(windows, np.float32)
        state = np.ascontiguousarray(state, np.float32)
        n = len(windows)
        if windows.shape[1:] != (WINDOW, len(CHANNELS)) or state.shape != (n, self.state_size):
            raise ValueError(f"expected windows[B,{WINDOW},{len(CHANNELS)}] and "
                             f"state[B,{self.state_size}], got {windows.shape} and {state.shape}")
        if n <= self.max_batch:
            return self._run(windows, state)
        parts = [self._run(windows[i:i + self.max_batch], state[i:i + self.max_batch])
                 for i in range(0, n, self.max_batch)]
        return (np.concatenate([p for p, _ in parts]), np.concatenate([s for _, s in parts]))

    def _run(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(windows)
        if n == 0:
            return (np.zeros((0, len(self.classes)), np.float32),
                    np.zeros((0, self.state_size), np.float32))
        size = 1 << (n - 1).bit_length() if self.buckets else n
        if size != n:
            windows = np.concatenate([windows, np.zeros((size - n, *windows.shape[1:]),
                                                        np.float32)])
            state = np.concatenate([state, np.zeros((size - n, self.state_size), np.float32)])
        self._ensure_batch(size)
        interpreter = self._interpreter
        interpreter.set_tensor(self._windows_index, windows)
        interpreter.set_tensor(self._state_index, state)
        interpreter.invoke()
        probs = interpreter.get_tensor(self._probs_index)[:n]
        return probs, interpreter.get_tensor(self._state_out_index)[:n]

    def _ensure_batch(self, size: int) -> None:
        if size == self._batch:
            return
        interpreter = self._interpreter
        interpreter.resize_tensor_input(self._windows_index, [size, WINDOW, len(CHANNELS)])
        interpreter.resize_tensor_input(self._state_index, [size, self.state_size])
        interpreter.allocate_tensors()
        self._batch = size
