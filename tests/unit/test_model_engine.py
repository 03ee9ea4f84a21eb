"""The serving engine against Keras: same numbers, same state, any batch size, no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from har_stream.model import DEFAULT_MODEL_DIR, StatefulModel, load_model
from har_stream.model.engine import LiteRTModel
from har_stream.records import ACTIVITIES, CHANNELS, WINDOW
from har_stream.training.commands import default_data_path
from har_stream.training.hapt import Recording, load_hapt
from har_stream.training.windows import make_windows

TOLERANCE = 1e-4


def pipeline_windows(n_samples: int = 3000, seed: int = 0) -> np.ndarray:
    """Windows cut by the real pipeline from a synthetic, phone-like recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 50.0
    acc = np.stack([np.sin(2 * np.pi * 1.8 * t), 0.3 * np.cos(2 * np.pi * 0.9 * t),
                    np.ones_like(t)], axis=1) * 0.5 + rng.normal(0, 0.05, (n_samples, 3))
    gyro = rng.normal(0, 0.3, (n_samples, 3))
    recording = Recording(1, 1, acc.astype(np.float32), gyro.astype(np.float32),
                          np.zeros((0, 3), np.int64))
    return make_windows([recording]).data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """A small untrained stateful model exported like a shipped one."""
    from har_stream.model.export import save_model_dir
    from har_stream.model.stateful import StatefulConfig, build_stateful

    windows = pipeline_windows()
    mean = windows.reshape(-1, 9).mean(axis=0)
    std = windows.reshape(-1, 9).std(axis=0) + 1e-3
    models = build_stateful(mean, std, 6, StatefulConfig(state_size=8, filters=(8, 8),
                                                         embedding=16))
    directory = tmp_path_factory.mktemp("tiny")
    save_model_dir(models.step, directory)
    (directory / "card.json").write_text(json.dumps(
        {"classes": list(ACTIVITIES), "state_size": 8, "version": "tiny"}))
    return models, directory, windows


def keras_step(step, windows: np.ndarray, state: np.ndarray):
    out = step({"windows": windows, "state": state}, training=False)
    return np.asarray(out["probs"]), np.asarray(out["state_out"])


def test_engine_matches_keras_step_and_is_a_stateful_model(tiny):
    models, directory, windows = tiny
    engine = load_model(directory)
    assert isinstance(engine, StatefulModel)
    assert engine.classes == ACTIVITIES and engine.state_size == 8
    state = np.random.default_rng(1).normal(0, 0.5, (len(windows), 8)).astype(np.float32)
    probs, next_state = engine.predict(windows, state)
    expected_probs, expected_state = keras_step(models.step, windows, state)
    np.testing.assert_allclose(probs, expected_probs, atol=TOLERANCE)
    np.testing.assert_allclose(next_state, expected_state, atol=TOLERANCE)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_window_by_window_with_state_equals_the_sequence_model(tiny):
    models, directory, windows = tiny
    engine = load_model(directory)
    streams = np.stack([windows[:20], windows[20:40]])  # two devices, 20 windows each
    expected = np.asarray(models.trainer.predict(streams, verbose=0))
    state = np.zeros((2, 8), np.float32)
    for t in range(20):
        probs, state = engine.predict(streams[:, t], state)
        np.testing.assert_allclose(probs, expected[:, t], atol=TOLERANCE)


def test_any_batch_size_gives_the_same_rows(tiny):
    _, directory, windows = tiny
    state = np.random.default_rng(2).normal(0, 0.5, (len(windows), 8)).astype(np.float32)
    reference = LiteRTModel.from_dir(directory)
    full, full_state = reference.predict(windows, state)
    for engine in (LiteRTModel.from_dir(directory, max_batch=7),
                   LiteRTModel.from_dir(directory, buckets=True)):
        for start, stop in ((0, 1), (1, 4), (4, 5), (5, 22), (22, len(windows))):
            probs, next_state = engine.predict(windows[start:stop], state[start:stop])
            np.testing.assert_allclose(probs, full[start:stop], atol=1e-6)
            np.testing.assert_allclose(next_state, full_state[start:stop], atol=1e-6)
    empty_probs, empty_state = reference.predict(windows[:0], state[:0])
    assert empty_probs.shape == (0, 6) and empty_state.shape == (0, 8)


def test_wrong_shapes_are_rejected(tiny):
    _, directory, windows = tiny
    engine = load_model(directory)
    with pytest.raises(ValueError, match="expected windows"):
        engine.predict(windows[:2, :64], np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="expected windows"):
        engine.predict(windows[:2], np.zeros((3, 8), np.float32))


def test_flatbuffer_uses_builtin_ops_only(tiny):
    from ai_edge_litert.interpreter import Interpreter

    _, directory, _ = tiny
    for path in (directory / "model.tflite", DEFAULT_MODEL_DIR / "model.tflite"):
        ops = {op["op_name"] for op in
               Interpreter(model_path=str(path))._get_ops_details()}
        assert ops and not any(name.startswith(("Flex", "CUSTOM", "VAR_HANDLE"))
                               for name in ops), ops


def test_loading_the_shipped_model_does_not_import_tensorflow():
    code = ("import sys, numpy as np\n"
            "from har_stream.model import load_model\n"
            "m = load_model()\n"
            "p, s = m.predict(np.zeros((3, 128, 9), np.float32),"
            " np.zeros((3, m.state_size), np.float32))\n"
            "assert p.shape == (3, len(m.classes)) and s.shape == (3, m.state_size)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_shipped_model_directory_is_complete_and_small():
    card = json.loads((DEFAULT_MODEL_DIR / "card.json").read_text())
    for key in ("classes", "state_size", "version", "preprocessing", "training", "evaluation"):
        assert key in card
    assert card["preprocessing"]["window"] == WINDOW
    assert card["preprocessing"]["channels"] == list(CHANNELS)
    assert len(card["preprocessing"]["standardisation"]["mean"]) == len(CHANNELS)
    assert len(card["training"]["data_sha256"]) == 64
    evaluation = card["evaluation"]
    for key in ("stream", "reset_every_window", "per_class", "confusion", "per_subject",
                "windows"):
        assert key in evaluation
    for name in ("model.keras", "model.tflite", "card.md", "confusion.png", "per_subject.png"):
        size = (DEFAULT_MODEL_DIR / name).stat().st_size
        assert 0 < size < 2_000_000, name


def test_shipped_engine_matches_shipped_keras_on_real_windows():
    path = default_data_path()
    if not path.is_file():
        pytest.skip(f"HAPT data not found at {path}")
    import keras

    data = load_hapt(path)
    windows = make_windows(data.of_users(data.test_users))  # 15 streams, 16 windows each
    rows = np.stack([part.start + np.arange(16) for part in windows.recording_slices()])
    step = keras.saving.load_model(DEFAULT_MODEL_DIR / "model.keras")
    engine = load_model()
    state = keras_state = np.zeros((len(rows), engine.state_size), np.float32)
    for t in range(rows.shape[1]):
        batch = windows.data[rows[:, t]]
        probs, state = engine.predict(batch, state)
        expected, keras_state = keras_step(step, batch, keras_state)
        np.testing.assert_allclose(probs, expected, atol=TOLERANCE)
        np.testing.assert_allclose(state, keras_state, atol=TOLERANCE)
