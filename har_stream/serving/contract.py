"""The training/serving contract: what a window must be for a model to read it correctly.

A model learns from windows cut and filtered one way (rate, window, hop, channel order, filter
design). Served windows cut any other way are still valid arrays, so a mismatch would not
fail: it would silently recognise worse. The card records the contract the model was trained
with (`preprocessing`, written by `pipeline_contract`), and `check_contract` refuses a model
whose contract differs from the pipeline that would feed it, naming the first field that does.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from har_stream.core.records import CHANNELS, HOP, RATE_HZ, WINDOW
from har_stream.core.signal import MEDIAN_HISTORY, SignalSettings
from har_stream.serving.integrity import ModelIntegrityError

CONTRACT_KEY = "preprocessing"


class ContractError(ModelIntegrityError):
    """The model was trained on windows other than those the pipeline makes."""


def pipeline_contract(signal: SignalSettings = SignalSettings()) -> dict[str, Any]:
    """The fields of the contract, as the card stores them, for a pipeline with `signal`."""
    return {"rate_hz": RATE_HZ, "window": WINDOW, "hop": HOP, "channels": list(CHANNELS),
            "signal": {"median_samples": MEDIAN_HISTORY + 1, **asdict(signal)}}


def check_contract(card: dict[str, Any], signal: SignalSettings = SignalSettings(),
                   where: str = "card.json") -> None:
    """Raise `ContractError` naming the first field where `card` and the pipeline differ."""
    stored = card.get(CONTRACT_KEY)
    if not isinstance(stored, dict):
        raise ContractError(f"{where} has no '{CONTRACT_KEY}' section: the model does not say "
                            "which windows it was trained on")
    for path, expected in _leaves(pipeline_contract(signal)):
        got: Any = stored
        for key in path:
            got = got.get(key) if isinstance(got, dict) else None
        if got != expected:
            raise ContractError(
                f"{where}: {CONTRACT_KEY}.{'.'.join(path)} is {got!r} but the pipeline uses "
                f"{expected!r}: this model was trained on other windows; retrain it or serve "
                "it with the pipeline it was trained with")


def _leaves(tree: dict[str, Any],
            prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _leaves(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out
