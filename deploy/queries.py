"""Every PromQL query the deployment depends on: dashboard panels and alert rules.

The tests use this to check that each query parses and, against a live recognizer,
returns data; operators can list them all with `python deploy/queries.py`.

Alert rules follow one convention so that their queries can be run on their own:
`expr` is `<query> <comparison> <number>`. `alert_query` strips the threshold, which
turns a boolean condition that is normally empty into the value it compares.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "har-stream.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
"""What Grafana's built-in variables become when a query runs outside Grafana."""

_THRESHOLD = re.compile(
    r"^(?P<query>.*\S)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?\s*$",
    re.DOTALL | re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL query and where it comes from (for readable test failures)."""

    source: str  # "panel 'Input rate' A" or "alert HarNoInput"
    expr: str  # runnable as is by Prometheus


def substitute_grafana_variables(expr: str) -> str:
    """Replace Grafana's `$__...` variables with fixed durations."""
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def dashboard_queries(path: Path = DASHBOARD) -> list[Query]:
    """Every target of every panel (rows included) of a dashboard JSON file."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    found: list[Query] = []

    def visit(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                source = f"panel {panel.get('title')!r} {target.get('refId', '?')}"
                found.append(Query(source, substitute_grafana_variables(target["expr"])))
            visit(panel.get("panels", []))

    visit(dashboard["panels"])
    return found


def alert_rules(path: Path = ALERTS) -> list[dict]:
    """The alerting rules (not recording rules) of a Prometheus rule file."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_query(expr: str) -> str:
    """The query under an alert's threshold: `<query> <op> <number>` → `<query>`."""
    match = _THRESHOLD.match(expr.strip())
    if match is None:
        raise ValueError(f"alert expr is not '<query> <comparison> <number>': {expr!r}")
    return match["query"]


def alert_queries(path: Path = ALERTS) -> list[Query]:
    return [Query(f"alert {rule['alert']}", alert_query(rule["expr"]))
            for rule in alert_rules(path)]


def all_queries() -> list[Query]:
    return dashboard_queries() + alert_queries()


if __name__ == "__main__":
    for q in all_queries():
        sys.stdout.write(f"{q.source}\n    {q.expr}\n")
