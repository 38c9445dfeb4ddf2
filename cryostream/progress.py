"""Progress notes through :mod:`logging` (the ``cryostream`` logger) for work a user waits
on: the passes of a Dask computation counted in micrographs, and a training's steps, loss and
speed. The command line shows them on stderr (``--quiet`` hides them)."""

from __future__ import annotations

import logging
import time

from dask.callbacks import Callback

__all__ = ["PrepareProgress", "TrainProgress"]

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
        names = (str(k[0] if isinstance(k, tuple) else k) for k in dsk)
        measuring = any(n.startswith("statistics_and_noise") for n in names)
        self.stage = "measuring the noise" if measuring else "preparing the store"
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
    """Notes on a training every few seconds, at each evaluation and at the end: the step, the
    loss, the test PSNR and the speed since the last note (not on the first, which includes
    compiling). Pass it as :func:`cryostream.training.train`'s ``on_metrics``.

    Parameters
    ----------
    steps : int
        The training's last step.
    batch_size : int
        Patches per step, for the speed.
    every_s : float
        Seconds between notes.
    """

    def __init__(self, steps: int, batch_size: int, every_s: float = 5.0):
        self.steps, self.batch_size, self.every_s = steps, batch_size, every_s
        self.last: tuple[int, float] | None = None
        self.shown = 0.0

    def __call__(self, row: dict) -> None:
        now = time.perf_counter()
        if self.last is not None and now - self.shown < self.every_s and \
                "eval_psnr" not in row and row["step"] < self.steps:
            return
        rate = ""
        if self.last is not None and now > self.last[1]:
            rate = f", {(row['step'] - self.last[0]) * self.batch_size / (now - self.last[1]):.1f}" \
                   " patches/s"
        test = f", test PSNR {row['eval_psnr']:.2f} dB" if "eval_psnr" in row else ""
        _log.info("training: step %d/%d, loss %.4g%s%s", row["step"], self.steps, row["loss"],
                  test, rate)
        self.last, self.shown = (row["step"], now), now
