"""The recognizer's metrics as the end-to-end benchmarks read them: scraped text, summed
counters, histogram quantiles between two scrapes, the loop's time by stage.

The rig measures the service from outside, through its Prometheus endpoint, as an operator
would, so the figures are the ones a dashboard shows; the arithmetic lives here, apart from
the processes, so it is unit-tested on fixed text (tests/unit/test_bench_smoke.py):

- quantiles are interpolated within histogram buckets over the observations made between two
  scrapes, as Prometheus' `histogram_quantile` does over a range;
- stage shares are the seconds the loop spent in each stage between two scrapes over the
  wall time between them.
"""

from __future__ import annotations

import math
import re
import urllib.request

LATENCY = "har_end_to_end_latency_seconds"
_SAMPLE_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def scrape(url: str) -> dict[str, dict[str, float]]:
    """The metrics served at `url` (see `parse_metrics`)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse_metrics(response.read().decode())


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Prometheus text format → {metric name: {label string: value}}."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match and not line.startswith("#"):
            out.setdefault(match.group(1), {})[match.group(2) or ""] = float(match.group(3))
    return out


def total(metrics: dict[str, dict[str, float]], name: str) -> float:
    """A metric summed over its labels (e.g. the lag over every partition)."""
    return sum(metrics.get(name, {}).values())


def buckets(metrics: dict[str, dict[str, float]], name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram without labels other than `le`."""
    pairs = []
    for labels, count in metrics.get(f"{name}_bucket", {}).items():
        bound = re.search(r'le="([^"]+)"', labels)
        if bound:
            pairs.append((math.inf if bound.group(1) == "+Inf" else float(bound.group(1)), count))
    return sorted(pairs)


def histogram_quantile(q: float, start: list[tuple[float, float]],
                       end: list[tuple[float, float]]) -> float:
    """Quantile of the observations made between two scrapes, linear within a bucket."""
    before = dict(start)
    counts = [(bound, count - before.get(bound, 0.0)) for bound, count in end]
    if not counts or counts[-1][1] <= 0:
        return math.nan
    rank = q * counts[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def latency_ms(start: dict[str, dict[str, float]], end: dict[str, dict[str, float]]
               ) -> tuple[float, float, float]:
    """p50, p95, p99 of the end-to-end latency between two scrapes, in ms."""
    before, after = buckets(start, LATENCY), buckets(end, LATENCY)
    p50, p95, p99 = (1e3 * histogram_quantile(q, before, after) for q in (0.5, 0.95, 0.99))
    return p50, p95, p99


def stage_seconds(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Seconds the recognizer loop has spent in each stage so far."""
    spent: dict[str, float] = {}
    for labels, value in metrics.get("har_stage_duration_seconds_sum", {}).items():
        stage = re.search(r'stage="([^"]+)"', labels)
        if stage:
            spent[stage.group(1)] = spent.get(stage.group(1), 0.0) + value
    return spent


def stage_shares(start: dict[str, dict[str, float]], end: dict[str, dict[str, float]],
                 elapsed_s: float) -> dict[str, float]:
    """Share of `elapsed_s` the recognizer loop spent in each stage between two scrapes
    (the stages it spent any time in)."""
    before = stage_seconds(start)
    return {stage: (spent - before.get(stage, 0.0)) / elapsed_s
            for stage, spent in stage_seconds(end).items() if spent > before.get(stage, 0.0)}

