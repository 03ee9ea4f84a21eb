"""`har-stream simulate` and `demo` check their settings like `run`: exit 2, one line naming
the variable and the rule, before any broker, recognizer or producer is started.

The demo also checks, before starting anything, the settings its recognizer will inherit
from the environment and the model it will load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "har_stream.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=environment)


@pytest.mark.parametrize(("args", "env", "line"), [
    (["simulate"], {"HAR_BOOTSTRAP_SERVERS": "::::"},
     "har-stream simulate: HAR_BOOTSTRAP_SERVERS='::::': must be host:port[,host:port...]"),
    (["simulate"], {"HAR_SPEED": "nan"},
     "har-stream simulate: HAR_SPEED=nan: must be a finite number at least 0"),
    (["simulate", "--samples-per-message", "0"], {},
     "har-stream simulate: HAR_SAMPLES_PER_MESSAGE=0: must be an integer at least 1"),
    (["simulate"], {"HAR_SECURITY_PROTOCOL": "SSL", "HAR_SSL_CAFILE": "/no/such/ca.pem"},
     "har-stream simulate: HAR_SSL_CAFILE=/no/such/ca.pem: must be a readable file"),
    (["demo", "--speed", "inf"], {}, "har-stream demo: HAR_SPEED=inf: must be a finite number"),
    (["demo"], {"HAR_METRICS_ADDRESS": "9108"},
     "har-stream demo: HAR_METRICS_ADDRESS='9108': must be host:port"),
    (["demo"], {"HAR_COMMIT_INTERVAL_S": "inf"},
     "har-stream demo: HAR_COMMIT_INTERVAL_S=inf: must be a finite number from 0 to 3,600"),
    (["demo"], {"HAR_MODEL": "no_such_module:make"},
     "har-stream demo: HAR_MODEL=no_such_module:make: cannot import module no_such_module"),
], ids=["simulate-bootstrap", "simulate-speed-nan", "simulate-samples-0",
        "simulate-tls-file", "demo-speed-inf",
        "demo-metrics-address", "demo-recognizer-commit-interval", "demo-model-module"])
def test_bad_settings_stop_simulate_and_demo_with_one_line(
        args: list[str], env: dict[str, str], line: str) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert [text for text in result.stderr.splitlines() if text.startswith(line)], result.stderr
    assert "embedded broker on" not in result.stdout, "started a broker before checking"


def test_the_demo_refuses_an_empty_model_directory_before_starting(tmp_path: Path) -> None:
    result = run_cli("demo", "--model", str(tmp_path), env={})
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"har-stream demo: HAR_MODEL={tmp_path}: {tmp_path} has no card.json" in result.stderr
    assert "embedded broker on" not in result.stdout
