"""Telling a diverged network from a training one, by the parameters about to be saved.

A training can diverge to a loss that stays finite (10⁷ on the general model's recipe, 10²⁵ at
too high a learning rate) and either come back or not. :class:`DivergenceGuard` judges the
network itself, not the logged loss (the loss of the parameters before the step's update, on
one batch, which swings by orders of magnitude while a training diverges): one forward pass of
the evaluation step on the step's batch, whose squared error is set against the noisy input's
on the same batch (the error of leaving the micrograph as it is) and against the starting
network's. :func:`cryostream.training.train` writes no checkpoint of a diverged network and
stops with :class:`~cryostream.errors.TrainingDivergedError` when its last step is one.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DIVERGED_FACTOR", "DivergenceGuard", "diverged_message"]

#: A network whose squared error on a training batch is this many times both the noisy
#: input's on that batch and the starting network's has diverged. A trained network is under
#: the noisy input's error (about half of it with noisy targets); the general model's diverged
#: trainings reached 10⁴ to 10¹⁰ times their level (docs/benchmarks.md, "Twice the steps").
DIVERGED_FACTOR = 10.0


class DivergenceGuard:
    """Judges parameters with the evaluation step ``(params, batch, number) -> {"mse",
    "noisy_mse"}`` (:func:`cryostream.training.make_eval_step`; per patch).

    ``start``: the starting network's squared error on the first batch (a checkpoint's
    ``start_error``), or None until :meth:`begin` measures it; a run resumed from a
    checkpoint written without it is judged against the noisy input alone.
    """

    def __init__(self, eval_step, start: float | None = None):
        self.eval_step = eval_step
        self.start = start

    def errors(self, params, batch) -> tuple[float, float]:
        """The network's and the noisy input's mean squared error on ``batch``."""
        out = self.eval_step(params, batch, 0)
        return float(np.mean(out["mse"])), float(np.mean(out["noisy_mse"]))

    def begin(self, params, batch) -> None:
        """Measure the starting network on the first batch (before any update)."""
        self.start = self.errors(params, batch)[0]

    def ratio(self, params, batch) -> float | None:
        """How many times its references the network's error is, when that is
        :data:`DIVERGED_FACTOR` or more (or not a number); None for a network that has not
        diverged."""
        error, noisy = self.errors(params, batch)
        reference = max(noisy, self.start or 0.0)
        if reference <= 0 and math.isfinite(error):
            return None  # nothing to judge against (an input equal to its target)
        if error < DIVERGED_FACTOR * reference:
            return None
        return error / reference if reference > 0 else math.inf


def diverged_message(run, step: int, ratio: float, kept: int | None) -> str:
    """The error of a training whose last step is a diverged network."""
    return (f"{run}: the training diverged and did not come back: at step {step} the network's "
            f"squared error on a training batch is {ratio:.3g} times that of the noisy input left "
            "as it is (or of the starting network), and no checkpoint of such a network was "
            "written" + (f"; the last one kept, step {kept}, is a network trained only that far "
                         "(`denoise --model` would use it)" if kept else "; none was kept")
            + ". Train again into a new run folder (-o) with a lower learning rate (--lr, half "
            "or less) or another seed; loss.png shows the curve")
