"""`har-stream demo` and `har-stream simulate` as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from service_support import TopicReader, topic_settings

from har_stream.core import codec
from har_stream.serving import DEFAULT_MODEL_DIR, TFLITE_FILE
from har_stream.training.hapt import default_data_path

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def har_stream(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    return subprocess.run([sys.executable, "-m", "har_stream.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def data_path() -> str:
    path = default_data_path()
    if not Path(path).is_file():
        pytest.skip(f"HAPT data not available at {path}")
    return path


def test_the_demo_runs_end_to_end_and_reports_accuracy(data_path: str) -> None:
    if not (DEFAULT_MODEL_DIR / TFLITE_FILE).is_file():
        pytest.skip("no shipped model yet")
    result = har_stream("demo", "--devices", "2", "--speed", "0", "--duration", "0",
                        "--metrics-address", "127.0.0.1:0", timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "embedded broker on 127.0.0.1:" in result.stdout
    line = re.search(r"accuracy (\d+\.\d) % over ([\d,]+) labelled windows .* "
                     r"([\d,]+) windows from 2 devices\) — ([\d,]+) samples replayed",
                     result.stdout)
    assert line, result.stdout[-2000:]
    accuracy, labelled, windows, samples = (float(line[1]), *(int(g.replace(",", ""))
                                                              for g in line.groups()[1:]))
    assert labelled > 100 and windows >= labelled and samples > 10_000
    assert accuracy > 80.0


def test_simulate_publishes_the_chosen_recordings_with_truth(
        data_path: str, kafka_settings: object) -> None:
    topics = topic_settings()
    result = har_stream(
        "simulate", "--bootstrap-servers", kafka_settings.bootstrap_servers,  # type: ignore[attr-defined]
        "--sensor-topic", topics.sensor_topic, "--experiments", "2", "--devices", "2",
        "--speed", "0", "--max-samples", "1000", "--samples-per-message", "100", "--truth",
        "--no-progress", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sent 20 messages, 2,000 samples" in result.stdout
    reader = TopicReader(kafka_settings, topics.sensor_topic)
    records = reader.until(lambda r: len(r) >= 20, 30, "the simulated messages")
    reader.close()
    devices = {codec.decode_sensor(r.value, r.key).device_id for r in records}
    assert len(devices) == 2 and all(d.startswith("hapt-exp02-") for d in devices)
    assert all(dict(r.headers)["har.truth"] for r in records)


def test_the_demo_on_a_cluster_uses_topics_and_a_group_of_its_own(
        data_path: str, kafka_settings: object) -> None:
    """Pointed at a cluster, the demo prefixes every topic and its group with a unique
    `demo-<8 hex>.`: results land in its own topics, not in a deployment's `har.activity`."""
    bootstrap = kafka_settings.bootstrap_servers  # type: ignore[attr-defined]
    result = har_stream("demo", "--bootstrap-servers", bootstrap, "--devices", "1",
                        "--speed", "0", "--duration", "20", "--model", "",
                        "--metrics-address", "127.0.0.1:0", timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = re.search(r"topics (demo-[0-9a-f]{8}\.)har\.sensor, (demo-[0-9a-f]{8}\.)har\.activity,"
                     r" …, group (demo-[0-9a-f]{8}\.)har-stream-demo", result.stdout)
    assert line, result.stdout[-2000:]
    prefix = line[1]
    assert line[2] == line[3] == prefix
    activity = TopicReader(kafka_settings, prefix + "har.activity")
    records = activity.until(lambda r: len(r) > 0, 30, "the demo's results")
    assert codec.decode_result(records[0].value).device_id
    activity.close()
