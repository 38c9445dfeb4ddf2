"""Validation shared by the config dataclasses: each raises a :class:`ConfigError` naming the
field, the value and what it must be."""

from __future__ import annotations

import math

from cryostream.errors import ConfigError

__all__ = ["check_positive", "store_floats", "check_choice", "check_config"]


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """A finite number > 0 (≥ 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, int | float) and math.isfinite(value) and ok):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: must be a finite number {bound}")


def store_floats(config, *names: str) -> None:
    """Store integer values of float fields as floats: 10 and 10.0 are one config (same JSON)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, name, float(value))


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """One of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: must be one of {', '.join(choices)}")


def check_config(name: str, value, cls):
    """``value``, a ``cls`` or None: a dict or anything else given for a config argument is a
    :class:`ConfigError` naming the argument and the call that makes one (a dict had failed
    deep inside with an ``AttributeError``)."""
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, dict):
        fields = ", ".join(f"{k}={v!r}" for k, v in value.items())
        raise ConfigError(f"{name}={value!r}: a dict, not a {cls.__name__}; give "
                          f"cryostream.{cls.__name__}({fields})")
    raise ConfigError(f"{name}={value!r}: a {type(value).__name__}, not a {cls.__name__}; give "
                      f"cryostream.{cls.__name__}(...) or leave it out")
