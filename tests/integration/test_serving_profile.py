"""The serving install end to end: `simulate` and `run` without TensorFlow, Keras, matplotlib.

Both commands run as subprocesses in which those modules cannot be imported (as after
`pip install har-stream`, see tests/serving_profile.py), against the suite's embedded broker:
the simulator replays real HAPT recordings, the recognizer serves the shipped LiteRT model,
and every published result must equal the offline evaluation of the same streams.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from service_support import (
    TopicReader,
    check_results,
    final_counts,
    offline_results,
    service_args,
    start_service,
    window_ids,
)
from serving_profile import LAUNCHER, REPO, cli_command, cli_env

from har_stream.service.settings import Settings
from har_stream.serving import DEFAULT_MODEL_DIR, TFLITE_FILE, load_model

pytestmark = pytest.mark.integration

T0_MS = 1_700_000_000_000
SAMPLES_PER_DEVICE = 3_000  # 60 s of each recording: 45 windows per device
DEVICES = 3


def test_simulate_and_run_work_without_tensorflow(service_settings: Settings,
                                                  tmp_path: Path) -> None:
    from har_stream.training.hapt import DataError, default_data_path, load_hapt

    if not (DEFAULT_MODEL_DIR / TFLITE_FILE).is_file():
        pytest.skip("no shipped model in models/")
    try:
        data = load_hapt(default_data_path())
    except DataError as exc:
        pytest.skip(f"HAPT data not available: {exc}")
    recordings = list(data.of_users(data.test_users))[:DEVICES]
    settings = service_settings
    simulate = subprocess.run(
        cli_command("simulate", "--bootstrap-servers", settings.kafka.bootstrap_servers,
                    "--sensor-topic", settings.topics.sensor_topic, "--data",
                    default_data_path(), "--experiments",
                    ",".join(str(r.exp_id) for r in recordings), "--speed", "0",
                    "--start-ms", str(T0_MS), "--max-samples", str(SAMPLES_PER_DEVICE),
                    "--no-progress"),
        capture_output=True, text=True, timeout=120, cwd=REPO, env=cli_env())
    assert simulate.returncode == 0, simulate.stderr
    assert f"for {DEVICES} devices" in simulate.stdout and "complete" in simulate.stdout

    streams = {f"hapt-exp{r.exp_id:02d}-user{r.user_id:02d}":
               np.concatenate([r.acc, r.gyro], axis=1)[:SAMPLES_PER_DEVICE].astype(np.float32)
               for r in recordings}
    model = load_model(DEFAULT_MODEL_DIR)
    expected = offline_results(model, streams, T0_MS)
    results = TopicReader(settings.kafka, settings.topics.activity_topic)
    counts = TopicReader(settings.kafka, settings.topics.counts_topic)
    service = start_service(service_args(settings), tmp_path / "run.log", launcher=LAUNCHER)
    try:
        def alive() -> None:
            assert service.process.poll() is None, f"the service stopped:\n{service.log()}"

        results.until(lambda r: window_ids(r) >= set(expected.results), 120,
                      "every window's result", alive)
        counts.until(lambda r: final_counts(r) == expected.counts, 30, "final counts", alive)
    finally:
        code = service.terminate()
    assert code == 0, service.log()
    assert "Traceback" not in service.log()
    assert check_results(results.poll(), expected) == 0
    assert len(expected.results) == DEVICES * (SAMPLES_PER_DEVICE // 64 - 1)
    results.close()
    counts.close()
