"""`python -m har_stream.bench.revisions`: its two forms' arguments and the end-to-end
before/after arithmetic (per-round figures, medians, after/before), without any process.

No timing assertions: the figures here are made up, only their arithmetic is checked.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from har_stream.bench import e2e_rig, revisions, revisions_e2e
from har_stream.bench.e2e_bench import Level

ROOT = Path(__file__).resolve().parents[2]


def level(sustained: bool, consumed: float, p50: float, p99: float, cpu: float) -> Level:
    nan = math.nan
    return Level(5_000, "shipped", 60.0, sustained, 0.0, 0.0, 3_906.25, consumed, 1.0, p50,
                 nan, p99, cpu, 0.1, 0.2, 0.9 * cpu, {}, "")


def test_e2e_form_takes_two_checkouts_and_the_rig_sizes() -> None:
    args = revisions_e2e.parse_args([str(ROOT), str(ROOT), "--devices", "200",
                                     "--window-s", "10", "--rounds", "1"])
    assert (args.before, args.after) == (ROOT, ROOT)
    assert (args.devices, args.window_s, args.rounds) == (200, 10.0, 1)
    defaults = revisions_e2e.parse_args([str(ROOT), str(ROOT)])
    assert (defaults.devices, defaults.window_s, defaults.rounds) == (5_000, 60.0, 2)
    assert defaults.warmup_s > 0
    assert defaults.options == {"before": (), "after": ()}


def test_each_checkout_may_get_recognizer_options_of_its_own() -> None:
    # features the before checkout lacks can be switched off in the after one
    args = revisions_e2e.parse_args([str(ROOT), str(ROOT), "--after-options",
                                     "--no-subscriber-outputs --reorder-samples 0",
                                     "--before-options=--log-level WARNING"])
    assert args.options == {"before": ("--log-level", "WARNING"),
                            "after": ("--no-subscriber-outputs", "--reorder-samples", "0")}


def test_the_recognizer_of_a_checkout_imports_that_checkout_alone(tmp_path: Path) -> None:
    env, cwd = e2e_rig.recognizer_from(tmp_path)
    assert env is not None and env["PYTHONPATH"] == str(tmp_path.resolve())
    assert cwd == tmp_path.resolve()  # `python -m` puts the working directory first
    assert e2e_rig.recognizer_from(None) == (None, None)  # this process's own code


@pytest.mark.parametrize("bad", [["--rounds", "0"], ["--devices", "0"], ["--window-s", "0"],
                                 ["--warmup-s", "-1"]])
def test_e2e_form_refuses_sizes_that_measure_nothing(bad: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        revisions_e2e.parse_args([str(ROOT), str(ROOT), *bad])
    assert exit_.value.code == 2
    assert bad[0] in capsys.readouterr().err


def test_e2e_form_refuses_a_directory_that_is_not_a_checkout(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        revisions_e2e.parse_args([str(tmp_path), str(ROOT)])
    assert exit_.value.code == 2
    assert "har_stream/cli.py" in capsys.readouterr().err


def test_the_form_is_chosen_by_the_first_word_and_model_pipeline_stays_the_default(
        monkeypatch) -> None:
    called: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(revisions, "main_model_pipeline",
                        lambda argv: called.append(("model-pipeline", argv)))
    monkeypatch.setattr(revisions_e2e, "main", lambda argv: called.append(("e2e", argv)))
    revisions.main(["/tmp/before", ".", "--rounds", "3"])
    revisions.main(["model-pipeline", "/tmp/before", "."])
    revisions.main(["e2e", "/tmp/before", ".", "--devices", "200"])
    assert called == [("model-pipeline", ["/tmp/before", ".", "--rounds", "3"]),
                      ("model-pipeline", ["/tmp/before", "."]),
                      ("e2e", ["/tmp/before", ".", "--devices", "200"])]


def test_figures_of_a_round_give_the_cpu_per_message() -> None:
    got = revisions_e2e.figures(level(True, 4_000.0, 12.0, 40.0, 0.5))
    assert got == {"sustained": 1.0, "consumed_per_s": 4_000.0, "p50_ms": 12.0,
                   "p99_ms": 40.0, "cpu_cores": 0.5, "us_per_message": 125.0}
    idle = revisions_e2e.figures(level(False, 0.0, math.nan, math.nan, 0.1))
    assert idle["sustained"] == 0.0 and math.isnan(idle["us_per_message"])


def test_medians_skip_failed_rounds_and_the_ratio_is_after_over_before() -> None:
    runs = {"before": [revisions_e2e.figures(level(True, 4_000.0, 10.0, 40.0, 0.4)),
                       revisions_e2e.figures(level(True, 3_800.0, 14.0, 60.0, 0.6)),
                       revisions_e2e.FAILED],
            "after": [revisions_e2e.figures(level(True, 3_900.0, 11.0, 44.0, 0.39)),
                      revisions_e2e.figures(level(False, 3_900.0, 13.0, 56.0, 0.39))]}
    medians = revisions_e2e.medians(runs)
    assert medians["before"]["p50_ms"] == 12.0  # the failed round has no figures
    assert medians["before"]["consumed_per_s"] == 3_900.0
    assert medians["before"]["sustained"] == pytest.approx(2 / 3)  # a share of the rounds
    assert medians["after"]["sustained"] == 0.5
    ratios = revisions_e2e.ratios(medians)
    assert ratios["p99_ms"] == pytest.approx(50.0 / 50.0)
    assert ratios["cpu_cores"] == pytest.approx(0.39 / 0.5)
    assert "sustained" not in ratios
    lines = revisions_e2e.summary(runs)
    assert lines[0].startswith("median before: sustained 2 of 3 rounds")
    assert lines[1].startswith("median after: sustained 1 of 2 rounds")
    assert lines[2].startswith("after/before:") and "cpu cores 0.780" in lines[2]


def test_a_round_line_names_the_checkout_and_every_figure() -> None:
    line = revisions_e2e.round_line(2, "after", revisions_e2e.figures(
        level(True, 3_906.0, 12.4, 48.6, 0.52)))
    assert line == ("round 2 after  sustained yes  consumed 3,906/s  latency p50 12 ms "
                    "p99 49 ms  recognizer 0.52 cores  133 µs CPU per message")
