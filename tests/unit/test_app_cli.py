"""`har-stream run` as a process: help, settings errors, fail-fast without a broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from har_stream.tools.broker import free_port

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "har_stream.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=environment)


def test_help_lists_flags_with_their_variables_and_defaults() -> None:
    result = run_cli("run", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for expected in ("--bootstrap-servers", "HAR_BOOTSTRAP_SERVERS; default: 127.0.0.1:9092",
                     "--sasl-password", "HAR_SASL_PASSWORD", "--ssl-cafile",
                     "HAR_CHANGELOG_TOPIC; default: har.state-changelog",
                     "HAR_METRICS_ADDRESS; default: 127.0.0.1:9108", "--idle-ttl-s"):
        assert expected in text


def test_invalid_settings_exit_2_naming_the_variable() -> None:
    result = run_cli("run", env={"HAR_MAX_POLL_RECORDS": "lots"})
    assert result.returncode == 2
    assert "HAR_MAX_POLL_RECORDS" in result.stderr


def test_an_unreachable_broker_fails_fast_with_a_clear_message() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli("run", "--bootstrap-servers", address, "--connect-timeout-s", "1",
                     "--model", "service_support:fake_model", "--metrics-address", "",
                     env={"PYTHONPATH": str(REPO / "tests")}, timeout=30)  # no hanging
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"cannot reach Kafka at {address}" in result.stderr
    assert "HAR_BOOTSTRAP_SERVERS" in result.stderr
