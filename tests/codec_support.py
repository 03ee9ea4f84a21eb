"""Serialising test messages for the codec tests, with raw JSON where a value has no JSON form."""

from __future__ import annotations

import orjson


def dump(message: object) -> bytes:
    return orjson.dumps(message)


def literal(message: dict, placeholder: object, text: str) -> bytes:
    """Serialise `message`, then replace the JSON of `placeholder` by raw text (NaN, 1e999...)."""
    return dump(message).replace(dump(placeholder), text.encode(), 1)
