"""A real Prometheus scraping a live recognizer: every dashboard and alert query returns data.

The chain under test is the one a deployment runs: `har-stream simulate` publishes sensor
messages to the broker, `har-stream run` consumes, classifies and exposes its metrics, and
Prometheus (the Debian package, started here on 127.0.0.1 with a temporary TSDB) scrapes it
every second using the job of `deploy/prometheus/prometheus.yml` and evaluates
`deploy/prometheus/alerts.yml`. Then each query of the Grafana dashboard and each alert's
query (its expr without the threshold, see deploy/queries.py) must parse and return at
least one finite value. One malformed message is published too, so the dead-letter
queries have something to show.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import load_deploy_script

from har_stream.serving import load_model
from har_stream.tools.broker import free_port, stop_process
from har_stream.training.hapt import DATA_FILE, default_data_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCRAPE_JOB = "har-stream"
DEADLINE_S = 90.0  # for everything to have data; a healthy run needs ~15 s


queries = load_deploy_script("queries.py")


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S,
             alive: Callable[[], None] = lambda: None) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def http_get(url: str, timeout_s: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class Process:
    """A child process with its output in a log file, shown when a test fails because of it."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      cwd=ROOT)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            pytest.fail(f"{self.name} exited with {code}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> int | None:
        code = stop_process(self.popen, timeout_s)
        self._log.close()
        return code


class Prometheus:
    """The Debian `prometheus` binary on 127.0.0.1 with a temporary TSDB and our rules."""

    def __init__(self, binary: str, target: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(scrape_config(target)), encoding="utf-8")
        self.process = Process("prometheus", [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ], env={"PATH": os.environ.get("PATH", "")}, log_dir=workdir)
        wait_for(lambda: http_get(f"{self.url}/-/ready"), "Prometheus to be ready", 30,
                 self.process.check_alive)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:  # 400 with an error message for bad queries
            body = json.load(error)
        return body

    def query(self, expr: str) -> list[dict]:
        """Instant query; raises AssertionError with Prometheus' message if it fails."""
        body = self.api("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return body["data"]["result"]


def scrape_config(target: str) -> dict:
    """The shipped scrape config, pointed at one local target and sped up for a test.

    Reusing the file keeps the job name (which the `up{job=...}` queries depend on) and the
    rule file honest; only service discovery and intervals change.
    """
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in shipped["scrape_configs"] if j["job_name"] == SCRAPE_JOB]
    job.pop("dns_sd_configs")
    job["static_configs"] = [{"targets": [target]}]
    return {
        "global": {**shipped["global"], "scrape_interval": "1s", "scrape_timeout": "1s",
                   "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / name) for name in shipped["rule_files"]],
        "scrape_configs": [job],
    }


def finite_values(result: list[dict]) -> list[float]:
    return [float(series["value"][1]) for series in result
            if math.isfinite(float(series["value"][1]))]


# --- the live system -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (apt-get install --no-install-recommends prometheus)")
    return binary


@pytest.fixture(scope="module")
def service_env(broker: Any) -> dict[str, str]:
    """Settings shared by the recognizer and the simulator; fresh topics for this module."""
    suffix = f"prom{os.getpid()}"
    return {
        **os.environ,
        "HAR_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "HAR_SENSOR_TOPIC": f"har.sensor.{suffix}",
        "HAR_DLQ_TOPIC": f"har.sensor.dlq.{suffix}",
        "HAR_ACTIVITY_TOPIC": f"har.activity.{suffix}",
        "HAR_COUNTS_TOPIC": f"har.activity-counts.{suffix}",
        "HAR_CHANGELOG_TOPIC": f"har.state-changelog.{suffix}",
        "HAR_GROUP_ID": f"har-stream-{suffix}",
        "HAR_PARTITIONS": "2",
        "HAR_SESSION_TIMEOUT_MS": "6000",
        "HAR_HEARTBEAT_INTERVAL_MS": "1000",
        "HAR_LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def hapt_data() -> str:
    path = Path(default_data_path())
    if not path.is_file():
        pytest.skip(f"the simulator needs the HAPT recordings ({DATA_FILE}); not found at {path}")
    return str(path)


def assigned_partitions(metrics_address: str) -> float:
    body = http_get(f"http://{metrics_address}/metrics")
    for line in (body or b"").decode().splitlines():
        if line.startswith("har_assigned_partitions "):
            return float(line.split()[1])
    return 0.0


@pytest.fixture(scope="module")
def live_recognizer(service_env: dict[str, str], hapt_data: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`har-stream run` with its metrics on a free local port, fed by `har-stream simulate`."""
    workdir = tmp_path_factory.mktemp("recognizer")
    metrics_address = f"127.0.0.1:{free_port()}"
    recognizer = Process("recognizer", [sys.executable, "-m", "har_stream.cli", "run"],
                         {**service_env, "HAR_METRICS_ADDRESS": metrics_address}, workdir)
    simulator: Process | None = None
    try:
        # Assigned partitions mean the topics exist and the group has formed.
        wait_for(lambda: assigned_partitions(metrics_address) > 0,
                 "the recognizer to join its group", alive=recognizer.check_alive)
        simulator = Process("simulator", [
            sys.executable, "-m", "har_stream.cli", "simulate", "--data", hapt_data,
            "--devices", "4", "--speed", "4", "--duration-s", "600", "--no-progress",
        ], service_env, workdir)
        publish_malformed_message(service_env)
        yield metrics_address
        recognizer.check_alive()
    finally:
        if simulator is not None:
            simulator.stop()
        code = recognizer.stop(timeout_s=30)
        if code not in (0, -signal.SIGTERM):
            print(f"recognizer exit code {code}:\n{recognizer.log_tail()}")


def publish_malformed_message(env: dict[str, str]) -> None:
    """A message no codec accepts, so that the dead-letter series exist and move."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=env["HAR_BOOTSTRAP_SERVERS"])
    try:
        producer.send(env["HAR_SENSOR_TOPIC"], key=b"broken-device", value=b"{not json").get(30)
    finally:
        producer.close(5)


@pytest.fixture(scope="module")
def prometheus(prometheus_binary: str, live_recognizer: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(prometheus_binary, live_recognizer, tmp_path_factory.mktemp("prometheus"))
    try:
        # Data everywhere means windows were classified and a rate window holds 2+ scrapes.
        wait_for(lambda: finite_values(server.query(
            "sum(rate(har_windows_classified_total[1m])) > 0")),
                 "windows to be classified and scraped", alive=server.process.check_alive)
        yield server
    finally:
        server.process.stop()


# --- the checks --------------------------------------------------------------------------


def test_prometheus_scrapes_the_recognizer(prometheus: Prometheus, live_recognizer: str) -> None:
    targets = prometheus.api("targets")["data"]["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == SCRAPE_JOB]
    assert target["health"] == "up" and target["scrapeUrl"].startswith(f"http://{live_recognizer}")


def test_alert_rules_load_and_evaluate_cleanly(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict]:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        never = "0001-01-01"  # Prometheus' zero time: not evaluated yet
        done = rules and not any(r.get("lastEvaluation", never).startswith(never) for r in rules)
        return rules if done else []

    rules = wait_for(evaluated, "every alert rule to be evaluated")
    assert {rule["name"] for rule in rules} == {r["alert"] for r in queries.alert_rules()}
    assert all(rule["health"] == "ok" for rule in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]


def test_every_dashboard_and_alert_query_returns_data(prometheus: Prometheus) -> None:
    """Each query must return at least one finite value; report every one that does not."""
    pending = {q.source: q.expr for q in queries.all_queries()}
    assert len(pending) == len(queries.all_queries()), "two queries share a source name"
    last: dict[str, str] = {}

    def all_answered() -> bool:
        for source, expr in list(pending.items()):
            result = prometheus.query(expr)  # a parse error fails here, with its message
            if finite_values(result):
                del pending[source]
            else:
                last[source] = f"{expr}\n      -> {json.dumps(result)[:200]}"
        return not pending

    deadline = time.monotonic() + DEADLINE_S
    while not all_answered() and time.monotonic() < deadline:
        prometheus.process.check_alive()
        time.sleep(1.0)
    assert not pending, "queries without data:\n" + "\n".join(
        f"  {source}: {last[source]}" for source in pending)


def test_promtool_accepts_the_live_exposition(live_recognizer: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install --no-install-recommends prometheus)")
    body = http_get(f"http://{live_recognizer}/metrics")
    assert body and b"har_windows_classified_total{" in body
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_malformed_message_is_counted_under_its_reason(prometheus: Prometheus) -> None:
    result = wait_for(lambda: prometheus.query("sum by (reason) (har_messages_rejected_total) > 0"),
                      "the dead letter to be scraped")
    assert {series["metric"]["reason"] for series in result} == {"not_json"}


def test_windows_are_counted_under_the_models_activities(prometheus: Prometheus) -> None:
    result = prometheus.query("sum by (activity) (har_windows_classified_total) > 0")
    classes = set(load_model().classes)
    assert result and {series["metric"]["activity"] for series in result} <= classes
    (info,) = prometheus.query("har_model_info")
    assert info["metric"]["version"] and info["metric"]["engine"]
