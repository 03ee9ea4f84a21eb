"""deploy/prometheus and every PromQL query of the deployment, checked offline with promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import load_deploy_script

from har_stream.service import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
METRIC_NAME = re.compile(r"\bhar_[a-z0-9_]+\b")


queries = load_deploy_script("queries.py")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install --no-install-recommends prometheus)")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_scrape_config_is_valid(promtool: str) -> None:
    output = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert "1 rule files found" in output


def test_alert_rules_are_valid(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", "alerts.yml")
    assert f"{len(queries.alert_rules())} rules found" in output


def test_alert_rule_unit_tests_pass(promtool: str) -> None:
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", "alerts_test.yml")


def test_every_query_of_dashboard_and_alerts_parses(promtool: str, tmp_path: Path) -> None:
    """promtool has no query parser of its own, so each query becomes a recording rule."""
    all_queries = queries.all_queries()
    rules = {"groups": [{"name": "parse", "rules": [
        {"record": f"check:query_{i}", "expr": q.expr} for i, q in enumerate(all_queries)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    output = run_promtool(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert f"{len(all_queries)} rules found" in output


def test_a_broken_query_would_be_caught(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse", "rules": [
        {"record": "check:broken", "expr": "sum(rate(har_samples_consumed_total[1m])"}]}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            timeout=60)
    assert result.returncode != 0


def test_every_alert_follows_the_threshold_convention() -> None:
    for rule in queries.alert_rules():
        query = queries.alert_query(rule["expr"])
        assert query and query != rule["expr"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule.get("for"), f"{rule['alert']} would fire on a single evaluation"


@pytest.mark.parametrize(("expr", "query"), [
    ("up{job=\"har-stream\"} == 0", "up{job=\"har-stream\"}"),
    ("(count(up == 1) or vector(0)) < 1", "(count(up == 1) or vector(0))"),
    ("sum(rate(x[5m])) / sum(rate(y[5m])) > 0.01", "sum(rate(x[5m])) / sum(rate(y[5m]))"),
    ("histogram_quantile(0.99, x) >= 2.5e0", "histogram_quantile(0.99, x)"),
    ("x != bool 3", "x"),
])
def test_alert_query_strips_only_the_final_threshold(expr: str, query: str) -> None:
    assert queries.alert_query(expr) == query


@pytest.mark.parametrize("expr", ["absent(up)", "x > y", "rate(x[5m])"])
def test_alert_query_rejects_exprs_without_a_numeric_threshold(expr: str) -> None:
    with pytest.raises(ValueError, match="comparison"):
        queries.alert_query(expr)


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    cases = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    firing = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    names = {rule["alert"] for rule in queries.alert_rules()}
    assert firing == names
    assert quiet == names


SERIES_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "info": ("_info",),
                   "histogram": ("_bucket", "_sum", "_count")}


def test_queries_only_use_metrics_that_exist() -> None:
    """A renamed metric must fail here rather than leave a panel or an alert empty."""
    exposed = {family.name + suffix for family in metrics.REGISTRY.collect()
               for suffix in SERIES_SUFFIXES[family.type]}
    used = {name for q in queries.all_queries() for name in METRIC_NAME.findall(q.expr)}
    assert len(used) >= 15, sorted(used)
    assert used <= exposed, sorted(used - exposed)


def test_grafana_variables_are_substituted() -> None:
    assert queries.substitute_grafana_variables("rate(x[$__rate_interval])") == "rate(x[1m])"
    assert queries.substitute_grafana_variables("increase(x[$__range])") == "increase(x[1h])"
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        queries.substitute_grafana_variables("x{instance=~\"$instance\"}")
