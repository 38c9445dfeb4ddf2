"""Telling a diverged network from a training one, by the network about to be saved.

A training can diverge to a loss that stays finite (10⁷ on the general model's recipe, 10²⁵ at
too high a learning rate) and either come back or not. :class:`DivergenceGuard` judges the
network itself, not the logged loss (the loss of the parameters before the step's update, on
one batch, which swings by orders of magnitude while a training diverges): one forward pass of
the evaluation step on the step's batch, whose squared error is set against two errors on the
same batch that any network short of a blown-up one beats: the noisy input's (leaving the
micrograph as it is) and the target's own power (an output of zero).
:func:`cryostream.training.train` writes no checkpoint of a diverged network and stops with
:class:`~cryostream.errors.TrainingDivergedError` when its last step is one.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np

from cryostream.errors import TrainingDivergedError

__all__ = ["DIVERGED_FACTOR", "ZERO_FACTOR", "SHORT_STEPS", "too_short", "DivergenceGuard"]

#: A network whose squared error on a training batch is this many times the noisy input's on
#: that batch, and :data:`ZERO_FACTOR` times the error of an output of zero, has diverged. A
#: trained network is under the noisy input's error (about half of it with noisy targets), an
#: untrained one near it (residual) or near zero's (not residual); the general model's diverged
#: trainings reached 10⁴ to 10¹⁰ times their level (docs/benchmarks.md, "Twice the steps").
DIVERGED_FACTOR = 10.0
#: A training of this many steps or fewer that ends on a network far off is told as too
#: short to judge (a smoke test, `train --steps 2`), not as diverged.
SHORT_STEPS = 10


def too_short(steps: int, warmup: int) -> bool:
    """Whether a training of ``steps`` with a learning-rate warm-up of ``warmup`` steps is a
    smoke test too short to tell a diverged network from one that has only just started (one
    step at the full rate, the warm-up cut to fit, moves every weight at once)."""
    return steps <= min(warmup, SHORT_STEPS)


#: How many times the error of an output of zero (the target's mean power) a network that far
#: above the noisy input must be: worse than no answer at all.
ZERO_FACTOR = 3.0


class DivergenceGuard:
    """Judges networks with the evaluation step ``(params, batch, number) -> {"mse",
    "noisy_mse", "target_power"}`` (:func:`cryostream.training.make_eval_step`; per patch).
    ``refused``: ``(step, ratio)`` of the last network judged diverged, or None.
    """

    def __init__(self, eval_step, log=print, warmup: int = 0):
        self.eval_step, self.log = eval_step, log
        self.refused: tuple[int, float] | None = None
        #: The learning rate's warm-up (steps): within a smoke test (:func:`too_short`) a
        #: network far off is told as not trained yet, not as diverged.
        self.warmup = warmup

    def diverged(self, params, batch, step: int) -> bool:
        """Whether the network has diverged on ``batch`` (noted, and kept in :attr:`refused`)."""
        out = self.eval_step(params, batch, 0)
        error, noisy, zero = (float(np.mean(out[k])) for k in ("mse", "noisy_mse", "target_power"))
        if math.isfinite(error) and (error < DIVERGED_FACTOR * noisy or error < ZERO_FACTOR * zero):
            return False
        self.refused = (step, error / noisy if noisy > 0 else math.inf)
        state = ("is far off (within the learning rate's warm-up)" if too_short(step, self.warmup)
                 else "has diverged")
        self.log(f"step {step} not checkpointed: its network {state} (its squared error on "
                 f"the step's batch is {self.refused[1]:.3g} times the noisy input's, "
                 f"{error / zero if zero > 0 else math.inf:.3g} times an output of zero's)")
        return True

    def finish(self, run, step: int, steps: int, kept: int | None) -> int:
        """After training stopped at ``step`` of ``steps`` with checkpoint ``kept`` last: raise
        when the last step is a diverged network; paused on one, note it and return the step a
        resume starts from (else ``step``)."""
        if self.refused is None or self.refused[0] != step:
            return step
        if step == steps and too_short(steps, self.warmup):
            raise TrainingDivergedError(
                f"{run}: after {steps} step{'s' * (steps > 1)} the network is not trained yet (its "
                f"squared error on a training batch is {self.refused[1]:.3g} times the noisy "
                "input's, and more than an output of zero's), so no checkpoint was written: a "
                "training this short, within its learning rate's warm-up, "
                "cannot be told from one that diverged. Train for more steps (--steps, a few "
                "hundred or more); if a longer training ends so too, lower the learning rate (--lr)")
        if step == steps:
            with contextlib.suppress(OSError), open(Path(run) / "metrics.jsonl", "a") as log:
                log.write(json.dumps({"step": step, "diverged": "network"}) + "\n")  # for loads
            raise TrainingDivergedError(
                f"{run}: the training diverged and did not come back: at its last step the "
                f"network's squared error on a training batch is {self.refused[1]:.3g} times the "
                f"noisy input's and {ZERO_FACTOR:g} times or more that of an output of zero, and no "
                "checkpoint of such a network was written" + (
                    f"; the last one kept, step {kept}, is a network trained only that far "
                    "(`denoise --model` would use it)" if kept else "; none was kept")
                + ". Train again into a new run folder (-o), with `cryostream train` at a lower "
                "learning rate (--lr, half or less) or another --seed; loss.png shows the curve")
        self.log(f"step {step} was not saved (its network had diverged); "
                 + (f"a resume starts from step {kept}" if kept else "no checkpoint yet"))
        return kept or 0
