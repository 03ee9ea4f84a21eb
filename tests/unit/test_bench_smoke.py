"""Every benchmark's measuring code runs on tiny sizes and returns well-formed figures.

No timing assertions: only structure, counts and the arithmetic of the helpers.
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import numpy as np
import pytest

from har_stream.bench import (
    BENCHMARKS,
    drift_bench,
    e2e_bench,
    e2e_rig,
    inference_bench,
    memory_bench,
    model_pipeline_bench,
    scaling_bench,
    scraped_metrics,
)
from har_stream.bench.measure import Timings, percentile, rss_bytes
from har_stream.core.records import ACTIVITIES
from har_stream.serving import DEFAULT_MODEL_DIR, load_model


class TinyModel:
    classes = ACTIVITIES
    state_size = 4
    version = "tiny"

    def predict(self, windows: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = np.tile(np.eye(len(self.classes), dtype=np.float32)[0], (len(windows), 1))
        return probs, state + windows.mean(axis=(1, 2))[:, None]


def test_every_registered_benchmark_has_a_main() -> None:
    for name, module in BENCHMARKS.items():
        assert callable(importlib.import_module(module).main), name


def test_inference_cells_cover_every_engine_and_batch() -> None:
    engines = {"tiny": TinyModel().predict}
    state_size = TinyModel.state_size
    if (DEFAULT_MODEL_DIR / "model.tflite").is_file():
        model = load_model(DEFAULT_MODEL_DIR)
        engines = {"litert": model.predict}
        state_size = model.state_size
    cells = inference_bench.measure(engines, (1, 3), state_size, min_calls=2, budget_s=0.0)
    assert [(c.engine, c.batch) for c in cells] == [(e, b) for e in engines for b in (1, 3)]
    for cell in cells:
        assert cell.calls >= 2
        assert cell.windows_per_s > 0 and cell.median_ms <= cell.p99_ms


def test_model_pipeline_measures_every_stage() -> None:
    got = model_pipeline_bench.measure(TinyModel(), devices=3, steps=4)
    assert got.devices == 3 and got.steps == 3
    assert set(got.share) == {"decode", "pipeline", "model", "records"}
    assert math.isclose(sum(got.share.values()), 1.0)
    assert got.samples_per_s_cpu > 0 and got.windows_per_s_cpu > 0
    assert model_pipeline_bench.measure_one_at_a_time(TinyModel(), 2, 3) > 0


def test_model_pipeline_runs_another_model_side_by_side() -> None:
    text = model_pipeline_bench.served_against_other(
        TinyModel(), TinyModel(), ("float32", "other model"), rounds=1, steps=2,
        other_is="the model in `before/`")
    assert "flatbuffer against the model in `before/`, at 10,000 devices" in text
    assert "\n| 1 | " in text


def test_memory_footprint_counts_the_registry() -> None:
    got = memory_bench.measure(50, chunk=20)
    assert got.devices == 50 and got.capacity >= 50
    from har_stream.core.recognizer import Recognizer

    assert got.arrays_per_device == Recognizer(memory_bench.StateOnlyModel()).registry \
        .nbytes_per_device()
    assert got.ids_per_device > 0


def test_scaling_points_and_plot(tmp_path) -> None:
    point = scaling_bench.measure(devices=3, message=64, steps=2)
    assert point.samples == 3 * 64 * 2
    assert point.decode_us > 0 and point.pipeline_us > 0
    small = scaling_bench.measure(devices=2, message=5, steps=2, poll=1)
    assert small.samples == 2 * 5 * 2
    scaling_bench.plot([point], [small], tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PROMETHEUS_TEXT = """\
# HELP har_end_to_end_latency_seconds latency
# TYPE har_end_to_end_latency_seconds histogram
har_end_to_end_latency_seconds_bucket{le="0.01"} 10.0
har_end_to_end_latency_seconds_bucket{le="0.1"} 90.0
har_end_to_end_latency_seconds_bucket{le="1.0"} 100.0
har_end_to_end_latency_seconds_bucket{le="+Inf"} 100.0
har_consumer_lag_messages{partition="0"} 3.0
har_consumer_lag_messages{partition="1"} 4.0
"""


def test_e2e_reads_metrics_and_interpolates_quantiles() -> None:
    metrics = scraped_metrics.parse_metrics(PROMETHEUS_TEXT)
    assert scraped_metrics.total(metrics, "har_consumer_lag_messages") == 7.0
    end = scraped_metrics.buckets(metrics, scraped_metrics.LATENCY)
    assert end == [(0.01, 10.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    start = [(0.01, 0.0), (0.1, 0.0), (1.0, 0.0), (math.inf, 0.0)]
    assert scraped_metrics.histogram_quantile(0.5, start, end) == pytest.approx(0.055)
    assert scraped_metrics.histogram_quantile(0.95, start, end) == pytest.approx(0.55)
    # only what happened between the two scrapes counts
    quantile = scraped_metrics.histogram_quantile
    assert quantile(0.5, end, end) != quantile(0.5, start, end)


def test_drift_reads_the_loop_stages_and_tabulates_each_interval() -> None:
    metrics = scraped_metrics.parse_metrics(
        'har_stage_duration_seconds_sum{stage="poll"} 9.5\n'
        'har_stage_duration_seconds_sum{stage="decode"} 2.0\n')
    assert scraped_metrics.stage_seconds(metrics) == {"poll": 9.5, "decode": 2.0}
    later = scraped_metrics.parse_metrics('har_stage_duration_seconds_sum{stage="poll"} 12.5\n'
                                          'har_stage_duration_seconds_sum{stage="decode"} 2.0\n')
    assert scraped_metrics.stage_shares(metrics, later, 10.0) == {"poll": 0.3}
    assert e2e_rig.cores_used({"broker": 1.0}, {"broker": 4.0}, 10.0) == {"broker": 0.3}
    cpu = {"recognizer": 0.5, "simulator": 0.1, "broker": 0.75}
    text = drift_bench.drift_table({
        "1": [drift_bench.Interval(15.0, 40.0, 70.0, 90.0, cpu, 0.61),
              drift_bench.Interval(30.2, 45.0, 80.0, 120.4, cpu, 0.7)],
        "6": [drift_bench.Interval(15.1, 50.0, 90.0, 150.0, cpu, 0.8)]})
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[2] == "| 1 | 15 s | 40 / 70 / 90 | 0.50 / 0.10 / 0.75 | 61 % |"
    assert lines[3].startswith("| 1 | 30 s | 45 / 80 / 120 |")
    assert lines[4].startswith("| 6 | 15 s | 50 / 90 / 150 |")


def test_e2e_variants_are_options_of_run() -> None:
    done = subprocess.run([sys.executable, "-m", "har_stream.cli", "run", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for options in e2e_bench.VARIANTS:
        assert all(o in done.stdout for o in options if o.startswith("--"))


def test_measure_helpers() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    timings = Timings()
    assert timings.run(lambda: 7) == 7
    assert len(timings.cpu) == len(timings.wall) == 1
    assert rss_bytes() > 0


def test_pipeline_bench_gives_per_core_and_wall_figures() -> None:
    from har_stream.bench import pipeline_bench

    got = pipeline_bench.measure(devices=2, steps=3)
    assert set(got) == {"arrays", "bytes", "arrays_wall", "bytes_wall"}
    assert all(v > 0 for v in got.values())
    assert pipeline_bench.measure_naive(2, 256) > 0


def test_inference_plot(tmp_path) -> None:
    cells = inference_bench.measure({"tiny": TinyModel().predict}, (1, 2), 4, min_calls=2,
                                    budget_s=0.0)
    inference_bench.plot(cells, cells[0], tmp_path / "inference.png")
    assert (tmp_path / "inference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_e2e_summary_names_the_largest_sustained_level() -> None:
    def level(devices: int, sustained: bool, cpu: float) -> e2e_bench.Level:
        rate = devices / 1.28
        return e2e_bench.Level(devices, "shipped", 60.0, sustained, 0.0, 0.0, rate, rate, 1.0,
                               10.0, 20.0, 30.0, cpu, 0.1, 0.1, 0.9 * cpu, {"poll": 0.5}, "")

    text, verdict = e2e_bench.summarize([level(1_000, True, 0.5), level(2_000, False, 1.0)])
    assert text.count("\n") == 3  # header, rule, two levels
    assert "Largest level sustained: 1,000 devices" in verdict
    assert "640 µs of CPU per message" in verdict  # 0.5 cores / 781.25 messages/s


def test_compare_rows_give_each_mode_its_unit_and_the_speed_up() -> None:
    from har_stream.bench import compare

    times = {("output", "before"): [0.5, 0.4, 0.6], ("output", "after"): [0.25],
             ("model", "before"): [2.0], ("model", "after"): [1.0]}
    assert compare.rows(times, devices=10_000) == [
        ["output", "µs per window (2 records)", "50.0", "25.0", "2.00×"],
        ["model", "samples/s", "0.32 M", "0.64 M", "2.00×"]]


def test_flood_replay_is_the_longest_wait_of_a_consumed_message_for_its_commit() -> None:
    from har_stream.bench.flood_bench import worst_replay_s

    steps = [(1.0, {0: 5}), (2.0, {0: 9}), (3.0, {0: 9, 1: 4}), (9.0, {0: 12, 1: 4})]
    commits = [(2.5, {0: 9}), (8.0, {0: 9, 1: 4}), (10.0, {0: 12})]
    # offsets 0..8 consumed at 1.0 committed at 2.5; partition 1 at 3.0 -> 8.0; 9..11 at 9 -> 10
    assert worst_replay_s(steps, commits, since=0.0) == 5.0
    assert worst_replay_s(steps, commits, since=8.5) == 1.0


def test_flood_probe_and_bookkeeping_follow_the_real_service(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The flood bench reaches into `Service` (checkpoints, ownership, the rate guard): a
    renamed attribute must fail here, not at the end of a ten-minute benchmark."""
    from reliability_support import Harness, sensor_messages
    from service_support import synthetic_samples

    from har_stream.bench.flood_bench import _bookkeeping_bytes, _Probe
    from har_stream.service.loop import Service
    from har_stream.service.settings import Settings, TopicSettings

    for name in ("__init__", "_begin_checkpoint", "_commit", "step"):
        monkeypatch.setattr(Service, name, getattr(Service, name))  # undone after the test
    probe = _Probe()
    topics = TopicSettings(sensor_topic="in", dlq_topic="dlq", activity_topic="out",
                           counts_topic="counts", changelog_topic="log")
    harness = Harness(Settings(topics=topics, commit_interval_s=0, metrics_address=""))
    assert probe.service is harness.service
    harness.feed(sensor_messages("dev", synthetic_samples(256, seed=1)))
    harness.drain()
    assert probe.steps and probe.begins and probe.commits, "steps, checkpoints and commits seen"
    assert probe.commits[-1][1] == {0: 6}, "the offsets after the six messages of partition 0"
    assert _bookkeeping_bytes(harness.service) > 0
