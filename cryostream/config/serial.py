"""Configs as JSON: every artefact carries its config with the cryostream version."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from cryostream._version import __version__
from cryostream.config.checks import loading
from cryostream.errors import ConfigError

__all__ = ["to_dict", "from_dict", "to_json"]

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-ready values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _kind_error(hint: Any, value: Any) -> str | None:
    """What ``value`` (a JSON value) should have been for the type ``hint``; ``None`` if it
    fits or the hint is not one of the plain kinds checked (bool, int, float, str, tuples,
    optional values)."""
    if hint is type(None):
        return None if value is None else "null"
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        wrong = [_kind_error(a, value) for a in args]
        return None if None in wrong else " or ".join(w for w in wrong if w)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            return "a list"
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return f"a list of {len(items)} values"
        wrong = [w for a, v in zip(items, value, strict=True) if (w := _kind_error(a, v))]
        return f"a list of {wrong[0].removeprefix('a ').removeprefix('an ')}s" if wrong else None
    return None


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output.

    Raises
    ------
    ConfigError
        If a key is unknown, a value is of the wrong kind (``"four"`` for an integer), or the
        config refuses a value; the message names the config and the key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: must be a JSON object of its fields, not "
                          f"{type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{cls.__name__}.{name}={value!r}: must be a JSON object of "
                                  f"{hint.__name__}'s fields")
            value = from_dict(hint, value)
        else:
            wrong = _kind_error(hint, value)
            if wrong:
                raise ConfigError(f"{cls.__name__}.{name}={value!r}: must be {wrong}")
            if isinstance(value, list):
                value = tuple(value)
        kwargs[name] = value
    try:
        with loading():  # as it was made: bounds added since are not applied
            return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a check the kinds above do not cover
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{cls.__name__}: a value is not valid ({exc})") from None


def to_json(config: Any) -> str:
    """The config with its kind and the cryostream version, as a JSON string."""
    return json.dumps(
        {
            "kind": type(config).__name__,
            "cryostream_version": __version__,
            "config": to_dict(config),
        },
        sort_keys=True,
    )
