"""Configs as JSON: every artefact carries its config with the cryostream version."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, TypeVar

from cryostream._version import __version__
from cryostream.errors import ConfigError

__all__ = ["to_dict", "from_dict", "to_json"]

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-ready values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output; unknown keys are an error."""
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
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


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
