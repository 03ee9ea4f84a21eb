"""deploy/grafana: the dashboard is the generator's output (built with grafana-foundation-sdk),
complete, wired to its datasource, and every query it shows is one deploy/queries.py hands to
the real-Prometheus test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deploy_support import load_deploy_script

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
REQUIRED_PANELS = (
    "Input rate", "Activity mix over time", "Windows per activity", "End-to-end latency",
    "Inference latency", "Inference batch size", "Consumer lag by partition",
    "Dead-letter rate by reason", "Active devices", "State restores",
)


generator = load_deploy_script("grafana/build_dashboard.py")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "har-stream.json").read_text(encoding="utf-8"))


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def by_title(dashboard: dict) -> dict[str, dict]:
    return {p["title"]: p for p in panels(dashboard)}


def test_committed_json_is_the_generators_output() -> None:
    committed = (GRAFANA / "dashboards" / "har-stream.json").read_text(encoding="utf-8")
    assert committed == generator.render(), "run python deploy/grafana/build_dashboard.py"


def test_the_dashboard_is_built_with_the_grafana_foundation_sdk() -> None:
    from grafana_foundation_sdk.builders.dashboard import Dashboard

    assert isinstance(generator.build(), Dashboard)


def test_the_committed_json_is_a_dashboard_the_sdk_reads_back_unchanged() -> None:
    """Decoded into the SDK's schema models (panel options and Prometheus queries included)
    and encoded again, the file is byte for byte the same: nothing in it is unknown to the
    schema of the Grafana version the SDK build targets."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import bargauge, prometheus, stat, timeseries
    from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel

    register_default_plugins()
    committed = (GRAFANA / "dashboards" / "har-stream.json").read_text(encoding="utf-8")
    model = Dashboard.from_json(json.loads(committed))
    assert json.dumps(model, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n" == committed
    option_types = {"timeseries": timeseries.Options, "stat": stat.Options,
                    "bargauge": bargauge.Options}
    for panel in model.panels or []:
        if isinstance(panel, RowPanel):
            continue
        assert isinstance(panel.options, option_types[panel.type_val]), panel.title
        assert all(isinstance(t, prometheus.Dataquery) for t in panel.targets or []), panel.title


def test_queries_py_hands_every_target_of_the_builder_to_the_prometheus_test() -> None:
    """tests/integration/test_prometheus.py runs `dashboard_queries()` against a real
    Prometheus: it must see each target the builder made, in order."""
    queries = load_deploy_script("queries.py")
    built = json.loads(generator.render())
    exprs = [queries.substitute_grafana_variables(t["expr"])
             for p in built["panels"] for t in p.get("targets", [])]
    assert [q.expr for q in queries.dashboard_queries()] == exprs
    assert len(exprs) >= len(REQUIRED_PANELS)


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "har-stream.json"
    stale.write_text("{}", encoding="utf-8")
    monkeypatch.setattr(generator, "OUTPUT", stale)
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0


def test_dashboard_has_every_required_panel(dashboard: dict) -> None:
    titles = by_title(dashboard)
    missing = [title for title in REQUIRED_PANELS if title not in titles]
    assert not missing
    assert all(titles[title]["targets"] for title in REQUIRED_PANELS)


def test_activity_mix_is_stacked_by_activity(dashboard: dict) -> None:
    panel = by_title(dashboard)["Activity mix over time"]
    assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] in {"normal", "percent"}
    assert "by (activity)" in panel["targets"][0]["expr"]


def test_end_to_end_latency_shows_p50_p95_p99(dashboard: dict) -> None:
    exprs = [t["expr"] for t in by_title(dashboard)["End-to-end latency"]["targets"]]
    for q in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({q},") for e in exprs), q


def test_every_target_uses_the_provisioned_datasource(dashboard: dict) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_panel_ids_titles_and_target_ids_are_unique(dashboard: dict) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)), "panels are named in test failures and in the UI"
    for panel in panels(dashboard):
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_panels_fit_the_grid_without_overlapping(dashboard: dict) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "har-stream.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"
