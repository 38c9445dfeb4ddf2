"""Validation shared by the config dataclasses: each raises a :class:`ConfigError` naming the
field, the value and what it must be."""

from __future__ import annotations

import contextlib
import contextvars
import math

from cryostream.errors import ConfigError

__all__ = ["SEED_MAX", "check_positive", "check_seed", "store_floats", "check_choice", "check_config",
           "loading", "made_now"]

_LOADING = contextvars.ContextVar("cryostream_config_loading", default=False)


@contextlib.contextmanager
def loading():
    """Configs read back from a store or a run (:func:`~cryostream.config.serial.from_dict`)
    are taken as they were made: bounds added since (a seed's, a Poisson dose's) are not
    applied to them, so stores and runs made before stay usable."""
    token = _LOADING.set(True)
    try:
        yield
    finally:
        _LOADING.reset(token)


def made_now() -> bool:
    """Whether the config being checked is made now (not read back: :func:`loading`)."""
    return not _LOADING.get()

#: The largest seed: JAX's random keys (training's initialisation, shuffling and on-device noise)
#: take 32 bits of it, so 2**32 and 0 would draw the same numbers.
SEED_MAX = 2**32 - 1


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """A finite number > 0 (≥ 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, int | float) and math.isfinite(value) and ok):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: must be a finite number {bound}")


def check_seed(name: str, value) -> None:
    """A whole number from 0 to :data:`SEED_MAX` (NumPy refuses a negative seed, JAX one of
    64 bits or more, and keeps only the low 32 bits of the rest); any whole number in a config
    read back (:func:`loading`)."""
    if isinstance(value, bool) or not isinstance(value, int) or made_now() and not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{name}={value!r}: must be a whole number from 0 to {SEED_MAX} "
                          "(2**32 - 1); give another seed")


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
