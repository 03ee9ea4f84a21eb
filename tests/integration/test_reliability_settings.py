"""Bad settings stop `har-stream run` at start: exit 2, one line naming the setting and its
rule, no traceback, and nothing created on the cluster.

Each case runs the real command against the embedded broker with topic names of its own and
`HAR_CREATE_TOPICS` on, then lists the broker's topics: none of the case's may exist. The
control case shows the same settings, without the bad one, do create them. Every case prints
its time to exit (`pytest -s`), the figure quoted in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from service_support import REPO, TESTS, unique, wait_for

from har_stream.service.settings import KafkaSettings
from har_stream.serving import DEFAULT_MODEL_DIR, TFLITE_FILE

TOPIC_VARIABLES = ("HAR_SENSOR_TOPIC", "HAR_DLQ_TOPIC", "HAR_ACTIVITY_TOPIC", "HAR_COUNTS_TOPIC",
                   "HAR_CHANGELOG_TOPIC")


def base_env(kafka_settings: KafkaSettings) -> dict[str, str]:
    """Valid settings for a run with topics no other test uses (created at start)."""
    tag = unique("bad")
    env = {name: f"{name.lower()}.{tag}" for name in TOPIC_VARIABLES}
    env.update(HAR_BOOTSTRAP_SERVERS=kafka_settings.bootstrap_servers, HAR_CREATE_TOPICS="true",
               HAR_PARTITIONS="1", HAR_GROUP_ID=unique("group"), HAR_CONNECT_TIMEOUT_S="10",
               HAR_MODEL="service_support:fake_model", HAR_METRICS_ADDRESS="127.0.0.1:0",
               HAR_SESSION_TIMEOUT_MS="6000", HAR_HEARTBEAT_INTERVAL_MS="1000")
    return env


def child_env(env: dict[str, str]) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO)])
    environment.update(env)
    return environment


def existing_topics(kafka_settings: KafkaSettings) -> set[str]:
    from har_stream.kafka.clients import close_quietly, make_consumer

    consumer = make_consumer(kafka_settings)
    try:
        return consumer.topics()
    finally:
        close_quietly(consumer)


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def tampered_model(tmp_path: Path) -> Path:
    """A copy of the shipped model whose flatbuffer no longer has the hash of its card."""
    directory = tmp_path / "tampered"
    shutil.copytree(DEFAULT_MODEL_DIR, directory)
    with (directory / TFLITE_FILE).open("ab") as file:
        file.write(b"\0")
    return directory


def empty_directory(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


Case = Callable[[Path, int], dict[str, str]]
CASES: list[tuple[str, Case, str, str]] = [
    # id, bad settings (from tmp_path and a port in use), variable named, rule quoted
    ("metrics-port-in-use", lambda tmp, port: {"HAR_METRICS_ADDRESS": f"127.0.0.1:{port}"},
     "HAR_METRICS_ADDRESS", "cannot listen there"),
    ("bootstrap-not-host-port", lambda tmp, port: {"HAR_BOOTSTRAP_SERVERS": "::::"},
     "HAR_BOOTSTRAP_SERVERS", "host:port"),
    ("heartbeat-negative", lambda tmp, port: {"HAR_HEARTBEAT_INTERVAL_MS": "-1"},
     "HAR_HEARTBEAT_INTERVAL_MS", "an integer at least 1"),
    ("session-timeout-1ms", lambda tmp, port: {"HAR_SESSION_TIMEOUT_MS": "1"},
     "HAR_SESSION_TIMEOUT_MS", "an integer from 1,000 to 1,800,000"),
    ("heartbeat-above-a-third", lambda tmp, port: {"HAR_HEARTBEAT_INTERVAL_MS": "2500"},
     "HAR_HEARTBEAT_INTERVAL_MS", "at most a third of HAR_SESSION_TIMEOUT_MS"),
    ("commit-interval-inf", lambda tmp, port: {"HAR_COMMIT_INTERVAL_S": "inf"},
     "HAR_COMMIT_INTERVAL_S", "a finite number from 0 to 3,600"),
    ("idle-ttl-nan", lambda tmp, port: {"HAR_IDLE_TTL_S": "nan"},
     "HAR_IDLE_TTL_S", "a finite number"),
    ("tls-file-absent", lambda tmp, port: {"HAR_SECURITY_PROTOCOL": "SSL",
                                           "HAR_SSL_CAFILE": str(tmp / "no-such-ca.pem")},
     "HAR_SSL_CAFILE", "must be a readable file"),
    ("model-absent", lambda tmp, port: {"HAR_MODEL": str(tmp / "no-such-model")},
     "HAR_MODEL", "no model directory there"),
    ("model-directory-empty", lambda tmp, port: {"HAR_MODEL": str(empty_directory(tmp))},
     "HAR_MODEL", "has no card.json"),
    ("model-hash-mismatch", lambda tmp, port: {"HAR_MODEL": str(tampered_model(tmp))},
     "HAR_MODEL", "but its card records"),
    ("model-module-absent", lambda tmp, port: {"HAR_MODEL": "no_such_module:make"},
     "HAR_MODEL", "cannot import module no_such_module"),
    ("model-factory-absent", lambda tmp, port: {"HAR_MODEL": "service_support:no_such_factory"},
     "HAR_MODEL", "has no function no_such_factory"),
]


@pytest.mark.parametrize(("bad", "variable", "rule"), [
    pytest.param(case, variable, rule, id=name) for name, case, variable, rule in CASES])
def test_a_bad_setting_exits_2_with_one_line_before_creating_anything(
        kafka_settings: KafkaSettings, tmp_path: Path, port_in_use: int, bad: Case,
        variable: str, rule: str) -> None:
    env = base_env(kafka_settings)
    env.update(bad(tmp_path, port_in_use))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "har_stream.cli", "run"], cwd=REPO,
                            env=child_env(env), capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    print(f"\n{variable}: exit {result.returncode} after {elapsed:.2f} s")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if variable in line and rule in line]
    assert len(error) == 1, result.stderr[-3000:]
    assert error[0].startswith("har-stream run: "), error[0]
    print(error[0][:300])
    created = existing_topics(kafka_settings) & {env[name] for name in TOPIC_VARIABLES}
    assert not created, f"created before the settings were checked: {sorted(created)}"


def test_the_same_settings_without_the_bad_one_do_create_the_topics(
        kafka_settings: KafkaSettings) -> None:
    """Control: what the cases above refuse is the bad setting, not the rest of them."""
    env = base_env(kafka_settings)
    process = subprocess.Popen([sys.executable, "-m", "har_stream.cli", "run"], cwd=REPO,
                               env=child_env(env), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        wanted = {env[name] for name in TOPIC_VARIABLES}
        wait_for(lambda: wanted <= existing_topics(kafka_settings) or process.poll() is not None,
                 60, "the topics")
        assert process.poll() is None, process.communicate()[1][-3000:]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
