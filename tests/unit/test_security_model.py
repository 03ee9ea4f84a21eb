"""Model loading is safe: files must match the hashes of their card, nothing is unpickled, and a
Keras file with an unknown layer or a lambda is refused with a clear error."""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from har_stream.serving import CARD_FILE, DEFAULT_MODEL_DIR, KERAS_FILE, TFLITE_FILE, load_model
from har_stream.serving.integrity import (
    FILES_KEY,
    ModelIntegrityError,
    file_hashes,
    load_keras,
    sha256_of,
)

PACKAGE = Path(__file__).resolve().parents[2] / "har_stream"
needs_shipped_model = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / TFLITE_FILE).is_file(),
                                         reason="no shipped model in models/")


def serving_card() -> dict:
    """The shipped card without its evaluation (so that writing it draws no plots)."""
    card = json.loads((DEFAULT_MODEL_DIR / CARD_FILE).read_text())
    card.pop("evaluation", None)
    card.pop(FILES_KEY, None)
    return card


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A copy of the shipped flatbuffer, its card written by the card writer."""
    from har_stream.training.card import write_card

    directory = tmp_path / "model"
    directory.mkdir()
    shutil.copy(DEFAULT_MODEL_DIR / TFLITE_FILE, directory / TFLITE_FILE)
    write_card(directory, serving_card())
    return directory


@needs_shipped_model
def test_the_shipped_card_vouches_for_the_shipped_files() -> None:
    card = json.loads((DEFAULT_MODEL_DIR / CARD_FILE).read_text())
    assert card[FILES_KEY] == file_hashes(DEFAULT_MODEL_DIR)
    assert load_model().version == card["version"]


@needs_shipped_model
def test_the_card_writer_records_the_hash_of_the_files_beside_it(model_dir: Path) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    assert card[FILES_KEY] == {TFLITE_FILE: {
        "sha256": sha256_of(model_dir / TFLITE_FILE),
        "bytes": (model_dir / TFLITE_FILE).stat().st_size}}
    assert load_model(model_dir).version == card["version"]


@needs_shipped_model
def test_a_changed_model_file_is_refused_naming_the_file_and_both_hashes(
        model_dir: Path) -> None:
    data = bytearray((model_dir / TFLITE_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit somewhere in the weights
    (model_dir / TFLITE_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as caught:
        load_model(model_dir)
    message = str(caught.value)
    assert str(model_dir / TFLITE_FILE) in message and "refusing to load it" in message
    assert sha256_of(model_dir / TFLITE_FILE) in message
    card = json.loads((model_dir / CARD_FILE).read_text())
    assert card[FILES_KEY][TFLITE_FILE]["sha256"] in message


@needs_shipped_model
def test_re_shipping_through_the_card_writer_updates_the_hash(model_dir: Path) -> None:
    from har_stream.training.card import read_card, write_card

    (model_dir / TFLITE_FILE).write_bytes((DEFAULT_MODEL_DIR / TFLITE_FILE).read_bytes()
                                          + b"\0" * 8)  # "another" model
    with pytest.raises(ModelIntegrityError):
        load_model(model_dir)
    write_card(model_dir, read_card(model_dir))  # what `har-stream train` does after saving
    assert load_model(model_dir).version


@needs_shipped_model
def test_a_card_that_lists_other_files_only_does_not_vouch(model_dir: Path) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    card[FILES_KEY] = {KERAS_FILE: {"sha256": "0" * 64}}
    (model_dir / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match=r"lists no sha256 for model\.tflite"):
        load_model(model_dir)


@needs_shipped_model
def test_a_card_from_before_hashes_loads_with_a_warning(
        model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model_dir / CARD_FILE).write_text(json.dumps(serving_card()))
    with caplog.at_level(logging.WARNING, logger="har_stream.serving.integrity"):
        assert load_model(model_dir).version
    assert "loaded unverified" in caplog.text


def test_a_file_that_is_no_model_is_refused_even_with_a_matching_hash(tmp_path: Path) -> None:
    (tmp_path / TFLITE_FILE).write_bytes(b"\x00not a flatbuffer" * 100)
    card = {"classes": ["A", "B"], "state_size": 4, "version": "x",
            FILES_KEY: file_hashes(tmp_path)}
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match="not a model this engine can run"):
        load_model(tmp_path)


def _keras_dir(tmp_path: Path, layer: object, rename: tuple[str, str] | None = None) -> Path:
    """A model.keras holding `layer` (optionally renamed in its config), with a card whose
    hash matches, so that only the content can make loading fail."""
    import keras

    directory = tmp_path / "keras"
    directory.mkdir()
    model = keras.Sequential([keras.Input((3,)), layer])
    model.save(directory / KERAS_FILE)
    if rename:
        source = directory / KERAS_FILE
        patched = directory / "patched.keras"
        with zipfile.ZipFile(source) as old, zipfile.ZipFile(patched, "w") as new:
            for item in old.infolist():
                data = old.read(item.filename)
                if item.filename == "config.json":
                    data = data.replace(rename[0].encode(), rename[1].encode())
                new.writestr(item, data)
        patched.replace(source)
    card = {FILES_KEY: file_hashes(directory)}
    (directory / CARD_FILE).write_text(json.dumps(card))
    return directory


def test_a_keras_file_with_an_unknown_layer_is_refused(tmp_path: Path) -> None:
    import keras

    directory = _keras_dir(tmp_path, keras.layers.Dense(2, name="head"),
                           rename=('"class_name": "Dense"', '"class_name": "Backdoor"'))
    with pytest.raises(ModelIntegrityError, match=r"cannot be loaded safely.*Backdoor"):
        load_keras(directory, json.loads((directory / CARD_FILE).read_text()))


def test_a_keras_file_with_a_lambda_is_refused_in_safe_mode(tmp_path: Path) -> None:
    import keras

    directory = _keras_dir(tmp_path, keras.layers.Lambda(lambda x: x * 2))
    with pytest.raises(ModelIntegrityError, match=r"cannot be loaded safely.*(?i:lambda)"):
        load_keras(directory, json.loads((directory / CARD_FILE).read_text()))


def test_a_verified_keras_file_loads(tmp_path: Path) -> None:
    import keras

    directory = _keras_dir(tmp_path, keras.layers.Dense(2, name="head"))
    model = load_keras(directory, json.loads((directory / CARD_FILE).read_text()))
    assert model.layers[-1].name == "head"


UNSAFE = re.compile(r"\bimport (pickle|marshal|shelve|dill|cloudpickle)\b|pickle\.load|"
                    r"allow_pickle\s*=\s*True|safe_mode\s*=\s*False|yaml\.load\(|"
                    r"joblib\.load|torch\.load|\beval\(|\bexec\(")


def test_no_module_of_the_package_can_deserialise_unsafely() -> None:
    offenders = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if UNSAFE.search(line)]
    assert not offenders, offenders
