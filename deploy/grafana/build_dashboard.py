"""Build the har-stream Grafana dashboard as code.

The committed `dashboards/har-stream.json` is this script's output; a unit test
fails when they differ, so edit here and regenerate:

    python deploy/grafana/build_dashboard.py            # rewrite the JSON
    python deploy/grafana/build_dashboard.py --check    # exit 1 if it is stale

Plain dicts rather than a dashboard SDK: the panels are few, the JSON model is
stable, and every query stays visible in one place. All queries use the
provisioned datasource (uid `prometheus`) and Grafana's `$__rate_interval`, which
adapts the rate window to the scrape interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "har-stream.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
WIDTH = 24  # Grafana's grid width

Panel = dict[str, Any]


def query(expr: str, legend: str = "", instant: bool = False) -> dict[str, Any]:
    """One Prometheus target; `refId` is assigned when the panel is built."""
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "instant": instant,
        "range": not instant,
    }


def quantiles(metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list:
    """`histogram_quantile` targets for a histogram, summed over instances."""
    group = f"{by}, le" if by else "le"
    label = f"{{{{{by}}}}} " if by else ""
    return [
        query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
            f"{label}p{round(q * 100)}",
        )
        for q in qs
    ]


def mean(metric: str) -> dict[str, Any]:
    """The mean of a histogram over the rate window, summed over instances."""
    return query(
        f"sum(rate({metric}_sum[{RATE}])) / sum(rate({metric}_count[{RATE}]))", "mean"
    )


def timeseries(
    title: str,
    description: str,
    targets: list,
    unit: str = "short",
    stacking: str = "none",
    overrides: list | None = None,
) -> Panel:
    fill = 70 if stacking != "none" else 10
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": fill,
                    "showPoints": "never",
                    "stacking": {"mode": stacking, "group": "A"},
                },
            },
            "overrides": overrides or [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(title: str, description: str, target: dict[str, Any], unit: str = "short",
         text_mode: str = "value") -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": text_mode,
            "colorMode": "value",
            "graphMode": "none",
        },
    }


def bar_gauge(title: str, description: str, target: dict[str, Any], unit: str = "short") -> Panel:
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target],
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {
            "orientation": "horizontal",
            "displayMode": "gradient",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def right_axis(series_name: str, unit: str) -> dict[str, Any]:
    """Field override that moves one series to a right-hand axis with its own unit."""
    return {
        "matcher": {"id": "byName", "options": series_name},
        "properties": [
            {"id": "custom.axisPlacement", "value": "right"},
            {"id": "unit", "value": unit},
        ],
    }


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def status_panels() -> list[Panel]:
    return [
        stat("Recognizers up", "Replicas Prometheus can scrape.",
             query('sum(up{job="har-stream"})', instant=True)),
        stat("Broker connected", "0 when any recognizer has lost Kafka.",
             query("min(har_broker_connected)", instant=True)),
        stat("Devices", "Devices with live state across all replicas.",
             query("sum(har_active_devices)", instant=True)),
        stat("Windows / s", "Windows classified per second, all replicas.",
             query(f"sum(rate(har_windows_classified_total[{RATE}]))", instant=True), "wps"),
        stat("Consumer lag", "Messages waiting on the sensor topic, all partitions.",
             query("sum(har_consumer_lag_messages)", instant=True)),
        stat("Model", "Version and inference engine being served.",
             query("count by (version, engine) (har_model_info)",
                   "{{version}} ({{engine}})", instant=True), text_mode="name"),
    ]


def traffic_panels() -> list[Panel]:
    return [
        timeseries(
            "Input rate",
            "Raw samples (left) and sensor messages (right) consumed per second.",
            [query(f"sum(rate(har_samples_consumed_total[{RATE}]))", "samples/s"),
             query(f"sum(rate(har_messages_consumed_total[{RATE}]))", "messages/s")],
            unit="short",
            overrides=[right_axis("messages/s", "short")],
        ),
        timeseries(
            "Output rate",
            "Records acknowledged on har.activity and har.activity-counts, and produce "
            "failures by topic (offsets are not committed past a failure).",
            [query(f"sum(rate(har_results_published_total[{RATE}]))", "results/s"),
             query(f"sum(rate(har_counts_published_total[{RATE}]))", "counts/s"),
             query(f"sum by (topic) (rate(har_produce_errors_total[{RATE}]))",
                   "errors {{topic}}")],
        ),
        timeseries(
            "Dead-letter rate by reason",
            "Records sent to har.sensor.dlq per second: sensor messages by rejection reason, "
            "and output records the broker refused for good, by the topic they were for.",
            [query(f"sum by (reason) (rate(har_messages_rejected_total[{RATE}]))",
                   "{{reason}}"),
             query(f"sum by (topic) (rate(har_output_dead_lettered_total[{RATE}]))",
                   "output for {{topic}}")],
        ),
        timeseries(
            "Stream irregularities",
            "Duplicate samples dropped, gap samples filled, device streams reset, devices "
            "flagged for sending far faster than 50 Hz (per second).",
            [query(f"sum by (event) (rate(har_pipeline_events_total[{RATE}]))", "{{event}}"),
             query(f"sum(rate(har_devices_rate_flagged_total[{RATE}]))", "rate flagged")],
        ),
    ]


def activity_panels() -> list[Panel]:
    return [
        timeseries(
            "Activity mix over time",
            "Share of classified windows per activity.",
            [query(f"sum by (activity) (rate(har_windows_classified_total[{RATE}]))",
                   "{{activity}}")],
            unit="percentunit",
            stacking="percent",
        ),
        bar_gauge(
            "Windows per activity",
            "Windows classified per activity over the dashboard's time range.",
            query("sum by (activity) (increase(har_windows_classified_total[$__range]))",
                  "{{activity}}", instant=True),
        ),
        timeseries(
            "Active devices",
            "Devices with state in memory, per replica, and idle evictions per second (right).",
            [query("sum by (instance) (har_active_devices)", "{{instance}}"),
             query(f"sum(rate(har_devices_evicted_total[{RATE}]))", "evicted/s")],
            overrides=[right_axis("evicted/s", "short")],
        ),
    ]


def latency_panels() -> list[Panel]:
    return [
        timeseries(
            "End-to-end latency",
            "From the broker timestamp of a window's last sample to its result being "
            "acknowledged. Alert budget: p99 2.5 s.",
            quantiles("har_end_to_end_latency_seconds"),
            unit="s",
        ),
        timeseries(
            "Inference latency",
            "Wall time of one batched model call.",
            [*quantiles("har_inference_duration_seconds", qs=(0.5, 0.99)),
             mean("har_inference_duration_seconds")],
            unit="s",
        ),
        timeseries(
            "Inference batch size",
            "Windows per model call: grows with the number of devices per poll.",
            [*quantiles("har_inference_batch_size", qs=(0.5, 0.99)),
             mean("har_inference_batch_size")],
        ),
        timeseries(
            "Loop stage duration p99",
            "p99 wall time of each step of the consume loop.",
            quantiles("har_stage_duration_seconds", by="stage", qs=(0.99,)),
            unit="s",
        ),
    ]


def group_panels() -> list[Panel]:
    return [
        timeseries(
            "Consumer lag by partition",
            "High watermark minus position on each sensor partition.",
            [query("sum by (partition) (har_consumer_lag_messages)", "partition {{partition}}")],
            stacking="normal",
        ),
        timeseries(
            "Assigned partitions",
            "Sensor partitions owned by each replica; changes mark rebalances.",
            [query("sum by (instance) (har_assigned_partitions)", "{{instance}}")],
        ),
        timeseries(
            "State restores",
            "Restore passes after an assignment and devices restored from the changelog "
            "(per rate window); snapshots written per second (right).",
            [query(f"sum(increase(har_state_restore_events_total[{RATE}]))", "restore passes"),
             query(f"sum(increase(har_state_restores_total[{RATE}]))", "devices restored"),
             query(f"sum(rate(har_state_snapshots_total[{RATE}]))", "snapshots/s")],
            overrides=[right_axis("snapshots/s", "short")],
        ),
    ]


def layout(sections: list[tuple[str, list[Panel], int, int]]) -> list[Panel]:
    """Place rows of panels on the grid and number panels and targets."""
    panels: list[Panel] = []
    y = 0
    for title, members, per_line, height in sections:
        if title:
            panels.append({**row(title), "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}})
            y += 1
        width = WIDTH // per_line
        for i, panel in enumerate(members):
            x = (i % per_line) * width
            if i and i % per_line == 0:
                y += height
            panels.append({**panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
        y += height
    for panel_id, panel in enumerate(panels, start=1):
        panel["id"] = panel_id
        for index, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + index)
    return panels


def build() -> dict[str, Any]:
    """The whole dashboard model."""
    return {
        "uid": "har-stream",
        "title": "har-stream",
        "description": "Real-time activity recognition: input, activities, latency, consumer "
        "group and state. Built by deploy/grafana/build_dashboard.py.",
        "tags": ["har-stream", "kafka"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
        "panels": layout([
            ("", status_panels(), 6, 4),
            ("Traffic", traffic_panels(), 2, 8),
            ("Activities", activity_panels(), 3, 8),
            ("Latency", latency_panels(), 2, 8),
            ("Consumer group and state", group_panels(), 3, 8),
        ]),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text
        if stale:
            print(f"{OUTPUT} is stale: run {Path(__file__).name}", file=sys.stderr)
        return int(stale)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
