"""The valid values of a setting, declared with it and checked in one place.

`config.option(...)` records a field's rule in its metadata: numeric bounds (`at_least`,
`above`, `at_most`), the meaning of the value that switches it off (`off`: 0 for a number,
'' for a text, allowed whatever the bounds), or the form a text must have (`form`). From
that one declaration come the check made when the settings are built and the "valid
values" column of the settings table in docs/SERVICE.md (`markdown_table`), so the two
cannot drift apart.

Every number must be finite: no setting means anything by inf or nan, and accepting them
silently made a checkpoint period of "never" and an idle TTL that never evicts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

ENV_PREFIX = "HAR_"
MASK = "***"
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
"""Kafka's legal topic names (and not '.' or '..')."""
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+")
"""A host name, an IPv4 address, or an IPv6 address in brackets."""


class SettingsError(ValueError):
    """A setting breaks its rule; the message names its variable and the rule (exit code 2)."""


def env_name(name: str) -> str:
    """The environment variable of a settings field."""
    return ENV_PREFIX + name.upper()


def host_port(text: str, lowest_port: int = 1) -> tuple[str, int]:
    """Split 'host:port' ('[v6]:port' for IPv6); ValueError saying what is wrong otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port.isdigit():
        raise ValueError(f"{text.strip()!r} is not host:port")
    if not lowest_port <= int(port) <= 65535:
        raise ValueError(f"port {port} of {text.strip()!r} is outside {lowest_port}..65535")
    return host.strip("[]"), int(port)


def _host_ports(text: str) -> None:
    entries = [entry for entry in text.split(",") if entry.strip()]
    if not entries:
        raise ValueError("no address given")
    for entry in entries:
        host_port(entry)


def _topic(text: str) -> None:
    if not TOPIC_NAME.fullmatch(text) or text in (".", ".."):
        raise ValueError(f"{text!r} is not a legal topic name")


def _not_empty(text: str) -> None:
    if not text.strip():
        raise ValueError("empty")


FORMS: Mapping[str, tuple[str, Callable[[str], Any]]] = {
    "host:port list": ("host:port[,host:port...], ports 1..65535", _host_ports),
    "host:port": ("host:port, port 0..65535 (0: any free port)",
                  lambda text: host_port(text, lowest_port=0)),
    "topic": ("1 to 249 of a-z A-Z 0-9 . _ -", _topic),
    "not empty": ("not empty", _not_empty),
    "file": ("a readable file; checked at start, before the cluster", lambda text: None),
    "model": ("a model directory (model.tflite and a card.json with its sha256) or "
              "module:function; checked at start, before the cluster", lambda text: None),
}
"""Forms a text setting may be required to have: the rule as written, and its check."""


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,g}"


def rule_text(meta: Mapping[str, Any]) -> str:
    """The rule of a field in words ('an integer from 1 to 10'), '' when it has none."""
    off = f"{'0' if meta['kind'] in (int, float) else 'empty'} ({meta['off']}) or " \
        if meta.get("off") else ""
    if meta["kind"] in (int, float):
        low, above, high = meta.get("at_least"), meta.get("above"), meta.get("at_most")
        if low is not None and high is not None:
            bounds = [f"from {_number(low)} to {_number(high)}"]
        else:
            bounds = [f"{word} {_number(limit)}" for word, limit in (
                ("at least", low), ("above", above), ("at most", high)) if limit is not None]
            if above is not None and high is not None:
                bounds = [f"above {_number(above)} and at most {_number(high)}"]
        noun = "an integer" if meta["kind"] is int else "a finite number"
        return f"{off}{noun} {' '.join(bounds)}".strip()
    if meta.get("form"):
        return off + FORMS[meta["form"]][0]
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    return ""


def broken_rule(meta: Mapping[str, Any], value: Any) -> str | None:
    """The rule `value` breaks (in words, with the reason for a text form), or None."""
    kind = meta.get("kind")
    if value is None or kind is bool:
        return None
    if meta.get("off") and value in (0, ""):
        return None
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return rule_text(meta)
        low, above, high = meta.get("at_least"), meta.get("above"), meta.get("at_most")
        if (not math.isfinite(value) or (low is not None and value < low)
                or (above is not None and value <= above)
                or (high is not None and value > high)):
            return rule_text(meta)
    elif meta.get("form"):
        try:
            FORMS[meta["form"]][1](value)
        except ValueError as exc:
            return f"{rule_text(meta)} ({exc})"
    return None


def check_fields(obj: object) -> None:
    """Raise SettingsError for the first field of `obj` whose value breaks its rule."""
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        broken = broken_rule(f.metadata, value) if "kind" in f.metadata else None
        if broken:
            shown = MASK if f.metadata["secret"] else repr(value)
            raise SettingsError(f"{env_name(f.name)}={shown}: must be {broken}")


def check_files(obj: object, names: tuple[str, ...]) -> None:
    """Raise SettingsError unless each of the fields `names` of `obj` that is set names a
    file that opens for reading."""
    for name in names:
        path = getattr(obj, name)
        if path:
            try:
                open(path, "rb").close()  # only whether it opens
            except OSError as exc:
                raise SettingsError(f"{env_name(name)}={path}: must be a readable file "
                                    f"({exc.strerror or exc})") from exc


def markdown_table(cls: type, nested: Callable[[dataclasses.Field[Any]], type | None]) -> str:
    """Every setting of `cls` (nested ones first) as the rows of a markdown table:
    variable, default, valid values, meaning."""
    rows = []
    for f in dataclasses.fields(cls):
        sub = nested(f)
        if sub is not None:
            rows.append(markdown_table(sub, nested))
        elif "kind" in f.metadata:
            meta = f.metadata
            default = "" if f.default in (None, "") else f"`{f.default}`"
            if meta["kind"] is bool:
                default, valid = f"`{str(f.default).lower()}`", "true, false"
            else:
                valid = rule_text(meta) or "any"
            text = meta["help"].replace("|", "\\|")
            rows.append(f"| `{env_name(f.name)}` | {default} | {valid} | {text} |")
    return "\n".join(rows)


def service_table() -> str:
    """The rows of the settings table of docs/SERVICE.md, for `har-stream run`."""
    from har_stream.service import settings as config

    return markdown_table(config.Settings, config._nested)


if __name__ == "__main__":  # python -m har_stream.service.settings_rules: the table, to paste
    print(service_table())
