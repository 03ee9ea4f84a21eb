"""HAR_MODEL: every way it can name no model is one SettingsError line naming it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from har_stream.service.model_setting import check_model_setting, load_model_setting
from har_stream.service.settings import SettingsError
from har_stream.serving import CARD_FILE, DEFAULT_MODEL_DIR, TFLITE_FILE


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of model factories, good and bad, importable as `factories`."""
    (tmp_path / "factories.py").write_text(
        "def broken():\n    raise RuntimeError('no weights\\nhere')\n"
        "def not_a_model():\n    return object()\n"
        "NOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "factories"
    sys.modules.pop("factories", None)


def refusal(spec: str, load: bool = True) -> str:
    with pytest.raises(SettingsError) as raised:
        (load_model_setting if load else check_model_setting)(spec)
    message = str(raised.value)
    assert message.startswith(f"HAR_MODEL={spec}: ") and "\n" not in message
    return message


def test_a_factory_that_fails_or_returns_no_model_is_refused(factories: str) -> None:
    assert "factories:broken() failed: RuntimeError: no weights here" in refusal(
        "factories:broken")
    assert "returned a object, not a model" in refusal("factories:not_a_model")
    assert "has no function NOT_CALLABLE" in refusal("factories:NOT_CALLABLE", load=False)
    check_model_setting("factories:broken")  # checking does not call the factory


def test_a_card_that_is_not_json_or_a_missing_flatbuffer_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, directory)
    (directory / TFLITE_FILE).unlink()
    assert f"has no {TFLITE_FILE}" in refusal(str(directory), load=False)
    shutil.copy(DEFAULT_MODEL_DIR / TFLITE_FILE, directory / TFLITE_FILE)
    (directory / CARD_FILE).write_text("{not json")
    assert f"cannot read {directory / CARD_FILE}" in refusal(str(directory))


def test_the_shipped_model_passes_the_check_and_loads() -> None:
    check_model_setting("")
    assert load_model_setting("").state_size > 0
