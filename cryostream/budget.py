"""How long ``fit`` trains: a :class:`Budget` of wall-clock minutes or of steps, read from
``"30m"``, ``"1.5h"`` or ``"2000steps"`` (``cryostream fit --budget``)."""

from __future__ import annotations

import dataclasses
import math
import re

from cryostream.errors import ConfigError

__all__ = ["Budget"]

_BUDGET = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(m|min|minutes?|h|hours?|steps?)\s*$", re.I)


#: The most steps a budget may ask for: 10 million, weeks on any GPU at the recipe's size (a
#: figure past it is a typing slip).
MAX_STEPS = 10_000_000


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long :func:`~cryostream.fit.fit` trains: wall-clock ``minutes`` or a number of
    ``steps``.

    ``minutes`` count from the start of the call (measuring and preparing included); at the
    first training step after them a checkpoint is written and training stops, and calling
    :func:`~cryostream.fit.fit` again continues. ``steps`` set
    :class:`~cryostream.config.TrainConfig`'s ``steps`` (the length of the learning-rate
    schedule).
    """

    minutes: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.minutes is None) == (self.steps is None):
            raise ConfigError("budget (--budget): give minutes or steps, one of them")
        if self.minutes is not None and not (isinstance(self.minutes, int | float)
                                             and math.isfinite(self.minutes) and self.minutes > 0):
            raise ConfigError(f"budget (--budget): {self.minutes!r} minutes; give a time > 0, "
                              "e.g. '30m'")
        if self.steps is not None and (not isinstance(self.steps, int)
                                       or isinstance(self.steps, bool) or self.steps < 1):
            raise ConfigError(f"budget (--budget): {self.steps!r} steps; give a whole number "
                              "≥ 1, e.g. '2000steps'")
        if self.steps is not None and self.steps > MAX_STEPS:
            raise ConfigError(f"budget (--budget): {self.steps} steps is more than {MAX_STEPS:,} "
                              "(weeks of training on any GPU); give fewer, e.g. '2000steps', or "
                              "a time, e.g. '2h'")

    @classmethod
    def parse(cls, budget: str | Budget | None) -> Budget | None:
        """``"30m"``, ``"1.5h"``, ``"2000steps"`` (or a :class:`Budget`, or ``None``) as a budget.

        Raises
        ------
        ConfigError
            Naming the value and the forms it may take.
        """
        if budget is None or isinstance(budget, Budget):
            return budget
        found = _BUDGET.match(budget) if isinstance(budget, str) else None
        if not found:
            raise ConfigError(f"budget={budget!r} (--budget): give minutes ('30m', '1.5h') or "
                              "steps ('2000steps')")
        number, unit = found.group(1), found.group(2).lower()
        if unit.startswith("step"):
            if "." in number:
                raise ConfigError(f"budget={budget!r} (--budget): steps are whole, e.g. "
                                  f"'{max(2, int(abs(float(number))))}steps'")  # (a whole number, plural)
            return cls(steps=int(number))
        return cls(minutes=float(number) * (60 if unit.startswith("h") else 1))
