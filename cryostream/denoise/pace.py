"""The notes while one micrograph's network passes run (minutes on a CPU): which pass is done
and about how long the micrograph's others take at the pace so far. A pair of even/odd halves
is one micrograph: the time left counts both halves' passes, and the note says which half is
under way.

The passes are of two kinds, the whole micrograph's and, with the binned pass, the micrograph
binned by 2's; they are run in that order, and the binned ones cost more than their quarter of
the pixels (a small image's windows carry as wide a margin: on two cores a 1024² micrograph's
binned pass took about half its whole pass's time). The time left counts each kind's passes
left at what that kind took so far (:func:`time_left`); a kind not yet run is counted from the
windows' estimate of it (:func:`~cryostream.denoise.tiling.cpu_pass_seconds`) at the pace of
the passes run.

Each thread's last pass notes are kept (:func:`notes_of`), so that a first Ctrl-C, which lets
the micrographs in progress finish, can say about how long that takes
(:func:`finishing_seconds`)."""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

__all__ = ["PassNotes", "time_left", "notes_of", "forget_notes", "finishing_seconds"]


def time_left(spent: dict, done: dict, todo: dict, estimate: dict) -> float:
    """About how many seconds the passes left take at the pace so far.

    Parameters
    ----------
    spent, done : dict
        Per kind of pass (any key: the passes' pixels, say), the seconds the passes done took
        and how many they are.
    todo : dict
        Per kind, the passes left.
    estimate : dict
        Per kind, an estimate of one pass's cost in any unit (seconds on an idle machine, or
        pixels): only the ratio between kinds counts, for a kind with no pass done yet.

    Returns
    -------
    float
        Each kind's passes left at that kind's mean so far; a kind with none done yet at its
        ``estimate`` times the pace of the kinds done (their seconds over their estimates).
        Nothing done: NaN.
    """
    ran = [kind for kind, n in done.items() if n > 0]
    if not ran:
        return math.nan
    pace = sum(spent[k] for k in ran) / sum(done[k] * estimate[k] for k in ran)
    return sum(n * (spent[k] / done[k] if done.get(k) else pace * estimate[k])
               for k, n in todo.items() if n > 0)


#: The pass notes each thread made last, by the thread's identity.
_MADE: dict[int, PassNotes] = {}


def notes_of(thread: int) -> PassNotes | None:
    """The pass notes the thread of identity ``thread`` made last (None: none since
    :func:`forget_notes`)."""
    return _MADE.get(thread)


def forget_notes() -> None:
    """Forget this thread's pass notes (its micrograph is done, or another one begins)."""
    _MADE.pop(threading.get_ident(), None)


def finishing_seconds(threads, typical: float = math.nan) -> float:
    """About how many seconds the micrographs in progress in ``threads`` (their identities)
    take to finish side by side: the longest of each one's time left, the larger of its
    network passes' (:meth:`PassNotes.left`) and ``typical`` (the seconds a micrograph of this
    call took, from its pass notes' making to its end) less its own seconds so far. The steps
    after the last pass are counted through ``typical`` alone (on a GPU they take most of a
    micrograph's time). NaN where no pace is known: ``typical`` unknown and a micrograph with
    no pass done, or with all done (its steps left), or none in progress."""
    now, left = time.perf_counter(), []
    for thread in threads:
        notes = notes_of(thread)
        try:  # (read as the thread goes on: a kind just added, say)
            passes = notes.left(now) if notes is not None and notes.done_kind else math.nan
            rest = typical - (now - notes.start if notes is not None else 0.0)
        except Exception:
            passes = rest = math.nan
        if math.isfinite(typical):
            left.append(max(passes if math.isfinite(passes) else 0.0, rest, 1.0))
        else:
            left.append(passes if passes > 0 else math.nan)  # (NaN > 0 is False)
    return max(left) if left and all(math.isfinite(x) for x in left) else math.nan


class PassNotes:
    """The pass notes of one micrograph, shared by its ``halves`` (1, or 2 for an even/odd
    pair, the same shape each: :func:`~cryostream.io.halves.halves_mismatch`).

    :meth:`begin_half` starts each half's passes; :meth:`passing` and :meth:`passed` go round
    each network pass. Each pass is timed and counted by its kind (the whole micrograph's, or
    the binned pass's: its pixels tell them apart); the time left is :func:`time_left`'s, over
    the passes' own seconds, stretched by the time between them (the wall time since the first
    pass began over the passes' seconds). The CTF fit before the first pass is no network time
    and the steps after the last are not counted (seconds where the passes take minutes).
    Seconds "so far" count from this object's making: the micrograph's first half. Each note
    names the half under way by its file name after the folders of ``output``, the name of
    the micrograph's output in its folder (:attr:`~cryostream.denoise.outputs.OutputPlan.name`),
    which tell it from another input of the same name as they tell the outputs apart
    (:func:`~cryostream.io.paths.kept_folders`: ``GridSquare_1/Data/FoilHole_5_Data_1.mrc``
    and ``GridSquare_2/Data/…`` of EPU's grid squares); by its file name alone without one.
    """

    def __init__(self, halves: int = 1, output: str | None = None):
        self.halves, self.half = halves, 0
        self.folders = output.rpartition("/")[0] + "/" if output and "/" in output else ""
        self.start = self.last = time.perf_counter()
        self.first = self.began = None  # the first pass's start; the pass under way's
        # per kind of pass (its pixels): seconds spent, passes done and in all, estimated cost
        self.spent, self.done_kind, self.total, self.estimate = {}, {}, {}, {}
        self.run = self.config = None
        self.source, self.passes, self.per_half, self.done = None, 1, 1, 0
        _MADE[threading.get_ident()] = self  # (notes_of: a Ctrl-C's note of those in progress)

    def begin_half(self, source: str, config, offsets: int = 1, run: str | None = None) -> None:
        """The next half's passes begin (the only one's, for a micrograph alone): ``source``
        its file, ``config`` its :class:`~cryostream.config.DenoiseConfig` (once, 8 times for
        the ensemble, more to calibrate, as many again on the image binned by 2 for the binned
        pass, at each of its ``offsets``); ``run`` the model, whose windows estimate the binned
        pass before one is run (without it, its pixels do)."""
        self.half += 1
        self.source, self.done, self.run, self.config = source, 0, run, config
        self.passes = (8 if config.ensemble else 1) * (1 + config.calibrate)
        self.per_half = self.passes * (1 + (offsets if config.binned_pass else 0))

    def passing(self) -> None:
        """A network pass starts."""
        self.began = time.perf_counter()
        self.first = self.first or self.began

    def _kinds(self, shape: tuple) -> None:
        """The kinds of pass, known at the first (the whole micrograph's ``shape``): each one's
        pixels, passes in all and estimated cost."""
        from cryostream.denoise.binned import binned_shape
        from cryostream.denoise.tiling import cpu_pass_seconds
        from cryostream.errors import ConfigError

        shapes = [tuple(shape)] + ([binned_shape(shape)] if self.per_half > self.passes else [])
        counts = [self.passes, self.per_half - self.passes][:len(shapes)]
        self.total = {math.prod(s): n * self.halves for s, n in zip(shapes, counts, strict=True)}
        c, self.estimate = self.config, {math.prod(s): math.prod(s) for s in shapes}
        try:  # the windows' estimate where the run is known and its windows fit; else pixels
            if self.run is not None:
                self.estimate = {math.prod(s): cpu_pass_seconds(
                    self.run, s, c.tile, c.halo, c.precision, c.batch_size) for s in shapes}
        except ConfigError:
            pass

    def left(self, now: float) -> float:
        """About how many seconds the passes left take (:func:`time_left`), at ``now``."""
        todo = {k: n - self.done_kind.get(k, 0) for k, n in self.total.items()}
        if not all(k in self.estimate for k in self.done_kind):  # a pass of no kind foreseen
            return math.nan
        between = (now - (self.first or now)) / max(sum(self.spent.values()), 1e-9)
        return between * time_left(self.spent, self.done_kind, todo, self.estimate)

    def passed(self, shape: tuple, every_s: float) -> None:
        """A network pass of an image of ``shape`` is done: a note if ``every_s`` seconds went
        by since the last (none where the micrograph has one pass alone: the note that it is
        done follows)."""
        from cryostream.units import spoken_duration

        now = time.perf_counter()
        if not self.estimate:
            self._kinds(shape)
        kind = math.prod(shape)  # a 90° turn of the ensemble: the same kind
        self.spent[kind] = self.spent.get(kind, 0.0) + now - (self.began or now)
        self.done_kind[kind] = self.done_kind.get(kind, 0) + 1
        self.done += 1
        expected = self.per_half * self.halves
        if now - self.last < every_s or expected <= 1:
            return
        self.last = now
        done = (self.half - 1) * self.per_half + self.done  # of the whole micrograph
        left = self.left(now)
        logging.getLogger("cryostream").info(
            "%s: network pass %d%s done%s, %.0f s so far%s", self.folders + Path(self.source).name,
            self.done,
            f" of {self.per_half}" if self.done <= self.per_half else "",
            f" on half {self.half} of {self.halves}" if self.halves > 1 else "", now - self.start,
            f", about {spoken_duration(left)} left for "
            f"{'the pair' if self.halves > 1 else 'it'}" if done < expected and left > 0 else "")
