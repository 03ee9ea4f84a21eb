"""Declaring settings: one dataclass field per option, and everything derived from it.

Every field is declared with `option(...)`: its default, its help text, whether it is a
secret, and its valid values (`core.option_rules`). From that one declaration come the
command-line flag (`--field-name`), the environment variable (`HAR_FIELD_NAME`), the `--help`
line showing both and the check made when the settings are built. Precedence: flag, then
environment, then default. Only the command line passes `os.environ` in; the rest of the code
receives a finished, immutable object. Secrets never appear in `repr`, logs or `--help`.

Used by the service (`service.settings`), the Kafka clients (`kafka.settings`) and the tools;
pure, so it lives in the core.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import field
from typing import Any, TypeVar

from har_stream.core.option_rules import MASK, SettingsError, env_name

_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off", ""))

T = TypeVar("T")


def option(default: Any, help: str, *, kind: type | None = None, secret: bool = False,
           choices: tuple[str, ...] | None = None, at_least: float | None = None,
           above: float | None = None, at_most: float | None = None, off: str | None = None,
           form: str | None = None) -> Any:
    """A settings field: default, help, value type (inferred from the default), secrecy and
    valid values: bounds, what the value that switches it off (0 or '') means, or a form
    from `core.option_rules.FORMS`."""
    kind = kind or type(default)
    return field(default=default, metadata={
        "help": help, "kind": kind, "secret": secret, "choices": choices, "at_least": at_least,
        "above": above, "at_most": at_most, "off": off, "form": form})


def _mask(value: object) -> str:
    return repr(None) if value is None else repr(MASK)


def masked_repr(obj: object) -> str:
    """`Class(field=value, ...)` with every secret field's value replaced by '***'."""
    parts = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        shown = _mask(value) if f.metadata.get("secret") else repr(value)
        parts.append(f"{f.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def secret_values(obj: object) -> list[str]:
    """The values of every secret field of a settings object and of its nested settings."""
    values: list[str] = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            values.extend(secret_values(value))
        elif f.metadata.get("secret") and value:
            values.append(str(value))
    return values


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def nested_settings(f: dataclasses.Field[Any]) -> type | None:
    """The settings class of a nested-settings field (declared with a default_factory)."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def add_options(parser: argparse.ArgumentParser, cls: type,
                overrides: Mapping[str, Any] | None = None) -> None:
    """Add one flag per field of `cls` and of its nested settings, a group per class.

    Flags default to None so that `options_from` can tell a given flag from an absent one;
    the help line shows the real default and the environment variable. `overrides` replaces
    defaults for one command (e.g. the demo's own group id).
    """
    for f in dataclasses.fields(cls):
        sub = nested_settings(f)
        if sub is not None:
            add_options(parser, sub, overrides)
    title = (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if "kind" in f.metadata:
            _add_flag(group, f, (overrides or {}).get(f.name, f.default))


def _add_flag(group: Any, f: dataclasses.Field[Any], default: Any) -> None:
    meta = f.metadata
    shown = "" if default is None or default == "" or meta["secret"] else f"; default: {default}"
    hint = " (prefer the variable: flags are visible to other users)" if meta["secret"] else ""
    help_text = f"{meta['help']}{hint} [env {env_name(f.name)}{shown}]".replace("%", "%%")
    if meta["kind"] is bool:
        group.add_argument(flag_name(f.name), dest=f.name, default=None,
                           action=argparse.BooleanOptionalAction, help=help_text)
    else:
        group.add_argument(flag_name(f.name), dest=f.name, default=None, type=meta["kind"],
                           choices=meta["choices"], help=help_text,
                           metavar=None if meta["choices"] else f.name.split("_")[-1].upper())


def _parse(f: dataclasses.Field[Any], text: str) -> Any:
    kind, name = f.metadata["kind"], env_name(f.name)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise SettingsError(f"{name}={text!r} is not a boolean (use true/false)")
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    choices = f.metadata["choices"]
    if choices and value not in choices:
        raise SettingsError(f"{name}={text!r}: choose one of {', '.join(choices)}")
    return value


def options_from(cls: type[T], args: argparse.Namespace | None, env: Mapping[str, str],
                 overrides: Mapping[str, Any] | None = None) -> T:
    """Build `cls` from parsed flags, then environment variables, then defaults.

    Raises ValueError with the offending variable or field in the message.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        sub = nested_settings(f)
        if sub is not None:
            values[f.name] = options_from(sub, args, env, overrides)
            continue
        if "kind" not in f.metadata:
            continue
        given = getattr(args, f.name, None) if args is not None else None
        if given is not None:
            values[f.name] = given
        elif env.get(env_name(f.name)) not in (None, ""):
            values[f.name] = _parse(f, env[env_name(f.name)])
        elif overrides and f.name in overrides:
            values[f.name] = overrides[f.name]
    return cls(**values)
