"""Progress notes through :mod:`logging` (the ``cryostream`` logger) for work a user waits
on: the passes of a Dask computation counted in micrographs, and a training's steps, loss,
speed and time left; a training's curve (``loss.png``), and the check of that curve for a loss
that spiked and came back (:func:`loss_spike`). The command line shows the notes on stderr
(``--quiet`` hides them)."""

from __future__ import annotations

import collections
import logging
import math
import statistics
import time
import warnings

from dask.callbacks import Callback

__all__ = ["LossSpikeWarning", "PrepareProgress", "TrainProgress", "duration", "loss_spike",
           "plot_curve", "slow_note", "steps_left", "warn_loss_spike"]

#: A logged training loss this many times the median of the :data:`SPIKE_WINDOW` logged before
#: it is a spike: the run diverged for a while and came back (an infinite loss stops training
#: instead). Undisturbed trainings of the general model stay under 5 times; one that diverged
#: for 100 steps reached 680 000 times and came out 0.2–3.3 dB worse (docs/benchmarks.md,
#: "Trained at low dose too").
SPIKE_FACTOR = 50.0
#: Logged rows (one every 10 steps) whose median is the loss's level before a row.
SPIKE_WINDOW = 20


class LossSpikeWarning(UserWarning):
    """A training's loss spiked and came back: the network may be worse than it looks."""


_log = logging.getLogger("cryostream")


class PrepareProgress(Callback):
    """A Dask callback noting a threaded computation's progress every few seconds, in
    micrographs: the share of its tasks done times the micrograph count (each micrograph is
    the same work). Use it as a context manager around :func:`cryostream.prepare`.

    Parameters
    ----------
    micrographs : int
        How many micrographs the computation covers.
    every_s : float
        Seconds between notes (the start and the end are always noted).
    """

    def __init__(self, micrographs: int, every_s: float = 5.0):
        super().__init__()
        self.micrographs, self.every_s = micrographs, every_s
        self.stage, self.last = "", 0.0

    def _start_state(self, dsk, state) -> None:
        names = [str(k[0] if isinstance(k, tuple) else k) for k in dsk]
        measuring = any(n.startswith("statistics_and_noise") for n in names)
        self.stage = "measuring the noise" if measuring else "preparing the store"
        # the store holds only the micrographs that passed (permissive skips the others):
        # count them from the writing tasks, one row of blocks per micrograph
        writing = {k[1] for k, n in zip(dsk, names, strict=True)
                   if isinstance(k, tuple) and len(k) > 1 and n.startswith("_write_band_block")}
        if writing and not measuring:
            self.micrographs = len(writing)
        self.last = time.perf_counter()
        _log.info("%s: 0/%d micrographs", self.stage, self.micrographs)

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s:
            return
        self.last = now
        done = len(state["finished"])
        total = done + sum(len(state[k]) for k in ("ready", "waiting", "running"))
        _log.info("%s: %d/%d micrographs", self.stage, self.micrographs * done // max(total, 1),
                  self.micrographs)

    def _finish(self, dsk, state, errored) -> None:
        if not errored:
            _log.info("%s: %d/%d micrographs", self.stage, self.micrographs, self.micrographs)


class TrainProgress:
    """Notes on a training: after its first step (the step compiles first), then at least every
    ``every_s`` seconds, at each evaluation and at the end: the step, the loss, the test PSNR
    beside the noisy input's (the PSNR of doing nothing), the speed and the time left. Pass it
    as :func:`cryostream.training.train`'s ``on_metrics`` and its :meth:`step` as ``on_step``.

    Parameters
    ----------
    steps : int
        The training's last step.
    batch_size : int
        Patches per step, for the speed.
    every_s : float
        Seconds between notes (a step that takes longer is noted when it is done).
    deadline : float, optional
        When a time budget stops the training, in :func:`time.perf_counter` seconds.
    slow : str, optional
        A note made once, at the first speed, if the steps left take longer than ``slow_s``
        seconds; ``{estimate}`` in it becomes the time, the steps and the time per step.
    slow_s : float
        How long the steps left may take before ``slow`` is noted.
    """

    def __init__(self, steps: int, batch_size: int, every_s: float = 30.0, *,
                 deadline: float | None = None, slow: str | None = None, slow_s: float = 600.0):
        self.steps, self.batch_size, self.every_s = steps, batch_size, every_s
        self.deadline, self.slow, self.slow_s = deadline, slow, slow_s
        self.created = time.perf_counter()
        self.first: tuple[int, float] | None = None  # the first step noted, and when
        self.noted, self.shown, self.pending = None, 0.0, collections.deque()

    def __call__(self, row: dict) -> None:
        """Note a ``metrics.jsonl`` row: at an evaluation, the last step, or when it is time."""
        due = time.perf_counter() - self.shown >= self.every_s
        if self.first is None or due or "eval_psnr" in row or row["step"] >= self.steps:
            test = (f", test PSNR {row['eval_psnr']:.2f} dB (noisy input "
                    f"{row['eval_noisy_psnr']:.2f})" if "eval_psnr" in row else "")
            self._note(row["step"], row["loss"], test)

    def step(self, step: int, metrics: dict) -> None:
        """Note a step when it is time. So that the clock sees steps done, not only
        dispatched, it waits for the step two before this one: two steps stay in flight, which
        keeps the device fed while the host dispatches the next. The loss
        (``metrics["loss"]``, a device array) is read only for a note."""
        self.pending.append(metrics["loss"])
        if len(self.pending) > 2:
            self.pending.popleft().block_until_ready()
        if step != self.noted and (self.first is None
                                   or time.perf_counter() - self.shown >= self.every_s):
            self._note(step, float(metrics["loss"]), "")

    def _note(self, step: int, loss: float, test: str) -> None:
        now = time.perf_counter()  # the loss is read: the step is done
        slow, tail = None, ""
        if self.first is None:
            self.first = (step, now)
            tail = f" ({duration(now - self.created)} since the start, compiling included)"
        elif step > self.first[0]:
            per_step = (now - self.first[1]) / (step - self.first[0])
            speed = f"{1 / per_step:.3g} steps/s" if per_step < 1 else \
                f"{duration(per_step)} a step"
            tail = f", {speed} ({self.batch_size / per_step:.3g} patches/s)" + \
                (f", {self._left(step, per_step, now)}" if step < self.steps else "")
            left = (self.steps - step) * per_step
            if self.slow is not None and left > self.slow_s:
                slow = self.slow.format(estimate=steps_left(self.steps - step, per_step))
            self.slow = None  # judged once, at the first speed
        _log.info("training: step %d/%d, loss %.4g%s%s", step, self.steps, loss, test, tail)
        if slow is not None:
            _log.info("training: %s", slow)
        self.noted, self.shown = step, now

    def _left(self, step: int, per_step: float, now: float) -> str:
        """The time left, and where a time budget stops the training first."""
        left = (self.steps - step) * per_step
        if self.deadline is None or now + left <= self.deadline:
            return f"about {duration(left)} left"
        stop = step + max(0, math.ceil((self.deadline - now) / per_step))
        return (f"the time budget ends in {duration(max(self.deadline - now, 0))}, near step "
                f"{min(stop, self.steps)}")


def duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"3.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.2g} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def plot_curve(path, rows: list[dict]) -> None:
    """Draw a training's curve as a PNG: the train and test loss (log scale) beside the test
    PSNR of the model and of the noisy input, from ``metrics.jsonl`` rows. A training without a
    test split (nothing evaluated) gets the loss panel alone."""
    import os
    from pathlib import Path

    import matplotlib

    from cryostream.io.paths import partial_path

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows if "loss" in r]
    ev = [r for r in rows if "eval_loss" in r]
    fig, axes = plt.subplots(1, 2 if ev else 1, figsize=(10 if ev else 5, 4), squeeze=False)
    a = axes[0, 0]
    a.semilogy(steps, [r["loss"] for r in rows if "loss" in r], lw=0.8, label="train loss")
    if ev:
        b = axes[0, 1]
        a.semilogy([r["step"] for r in ev], [r["eval_loss"] for r in ev], "o-", label="test MSE")
        b.plot([r["step"] for r in ev], [r["eval_psnr"] for r in ev], "o-", label="model")
        b.plot([r["step"] for r in ev], [r["eval_noisy_psnr"] for r in ev], "--", label="noisy input")
        b.legend()
        b.set(xlabel="step", ylabel="test PSNR (dB)")
    a.set_xlabel("step")
    a.legend()
    fig.tight_layout()
    partial = partial_path(Path(path))  # whole or not at all: a kill leaves no PNG cut short
    try:
        fig.savefig(partial, dpi=80, format="png")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
        plt.close(fig)


def loss_spike(rows: list[dict]) -> dict | None:
    """The largest spike of a training's logged losses (``metrics.jsonl`` rows), or None:
    ``{"step", "loss", "level", "final"}``, ``level`` the median of the :data:`SPIKE_WINDOW`
    losses logged before that row, ``final`` the last logged loss. The first
    :data:`SPIKE_WINDOW` rows (200 steps) have no level yet and are not looked at."""
    logged = [(r["step"], r["loss"]) for r in rows if math.isfinite(r.get("loss", math.nan))]
    worst = None
    for i in range(SPIKE_WINDOW, len(logged)):
        level = statistics.median(loss for _, loss in logged[i - SPIKE_WINDOW:i])
        step, loss = logged[i]
        if level > 0 and loss > SPIKE_FACTOR * level and (
                worst is None or loss / level > worst["loss"] / worst["level"]):
            worst = {"step": step, "loss": loss, "level": level}
    return None if worst is None else worst | {"final": logged[-1][1]}


def warn_loss_spike(run, spike: dict | None) -> None:
    """Warn (:class:`LossSpikeWarning`) of :func:`loss_spike`'s spike, naming the run and what
    to do; nothing when there is none."""
    if spike is None:
        return
    back = spike["final"] < 10 * spike["level"]
    warnings.warn(
        f"{run}: the training loss spiked to {spike['loss']:.3g} at step {spike['step']}, "
        f"{spike['loss'] / spike['level']:,.0f} times its level before ({spike['level']:.3g}), "
        f"and ended at {spike['final']:.3g}: the training diverged "
        + ("for a while and came back, and such a network can be much worse than its final "
           "loss suggests" if back else "and did not come back")
        + " (loss.png shows it). Compare it with another model on your micrographs (`cryostream "
        "rank`): after `train`, one trained at half the learning rate (--lr; on the general "
        "model's recipe no training at 5e-4 spiked, five of ten at the default 1e-3 did) or "
        "with another --seed; after `fit`, the general model", LossSpikeWarning, stacklevel=3)


def steps_left(count: int, per_step: float) -> str:
    """``about 22 min for the 2989 steps left (0.44 s a step)``: a :func:`slow_note`'s estimate."""
    return f"about {duration(count * per_step)} for the {count} steps left ({duration(per_step)} a step)"


def slow_note(config) -> str | None:
    """The advice noted when the full ``unet`` trains on a CPU for long (``config``: a
    :class:`~cryostream.config.TrainConfig`; ``{estimate}`` in it becomes the time), or None."""
    import jax

    if config.model != "unet" or jax.default_backend() != "cpu":
        return None
    if config.init is not None:  # a start from a unet needs a unet
        return ("the full unet on a CPU takes {estimate}; a GPU is much faster (or --from "
                "scratch --model unet-small: a twelfth of the arithmetic, at a cost in quality)")
    return ("the full unet on a CPU takes {estimate}; --model unet-small (a twelfth of the "
            "arithmetic) or a GPU is much faster")
