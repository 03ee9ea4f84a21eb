"""The model directory carries the pipeline contract it was trained with; loading refuses a
model whose windows differ from the pipeline's, naming the field (issue: training/serving
contract)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from har_stream.core.signal import SignalSettings
from har_stream.serving import CARD_FILE, DEFAULT_MODEL_DIR, load_model
from har_stream.serving.contract import ContractError, check_contract, pipeline_contract
from har_stream.serving.integrity import ModelIntegrityError


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, directory)
    return directory


def edit_card(directory: Path, path: tuple[str, ...], value: object) -> None:
    card = json.loads((directory / CARD_FILE).read_text())
    node = card["preprocessing"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (directory / CARD_FILE).write_text(json.dumps(card))


def test_the_shipped_model_states_the_contract_of_the_pipeline_that_serves_it() -> None:
    card = json.loads((DEFAULT_MODEL_DIR / CARD_FILE).read_text())
    check_contract(card)
    assert load_model().state_size > 0


@pytest.mark.parametrize(("path", "value", "named"), [
    (("hop",), 32, "preprocessing.hop"),
    (("window",), 256, "preprocessing.window"),
    (("rate_hz",), 100.0, "preprocessing.rate_hz"),
    (("channels",), ["total_acc_x"] * 9, "preprocessing.channels"),
    (("signal", "gravity_cutoff_hz"), 0.5, "preprocessing.signal.gravity_cutoff_hz"),
    (("signal", "order"), 4, "preprocessing.signal.order"),
    (("signal", "median_samples"), 5, "preprocessing.signal.median_samples"),
])
def test_a_model_trained_on_other_windows_is_refused_naming_the_field(
        model_dir: Path, path: tuple[str, ...], value: object, named: str) -> None:
    edit_card(model_dir, path, value)
    with pytest.raises(ContractError, match=named) as caught:
        load_model(model_dir)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ModelIntegrityError)  # the service's startup check names it


def test_a_pipeline_with_other_filters_refuses_the_shipped_model() -> None:
    other = replace(SignalSettings(), noise_cutoff_hz=15.0)
    with pytest.raises(ContractError, match=r"signal\.noise_cutoff_hz is 20\.0 but the pipeline"):
        load_model(DEFAULT_MODEL_DIR, signal=other)


def test_a_card_without_the_section_is_refused() -> None:
    with pytest.raises(ContractError, match="no 'preprocessing' section"):
        check_contract({"classes": ["A"]})


def test_the_card_writer_and_the_check_share_one_definition() -> None:
    import numpy as np

    from har_stream.training.card import preprocessing

    written = preprocessing(np.zeros(9), np.ones(9))
    check_contract({"preprocessing": written})
    assert {k: written[k] for k in pipeline_contract()} == pipeline_contract()
