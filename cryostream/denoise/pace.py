"""The notes while one micrograph's network passes run (minutes on a CPU): which pass is done
and about how long the micrograph's others take at the pace so far. A pair of even/odd halves
is one micrograph: the time left counts both halves' passes, and the note says which half is
under way."""

from __future__ import annotations

import logging
import time
from pathlib import Path

__all__ = ["PassNotes"]


class PassNotes:
    """The pass notes of one micrograph, shared by its ``halves`` (1, or 2 for an even/odd
    pair, the same shape each: :func:`~cryostream.io.halves.halves_mismatch`).

    :meth:`begin_half` starts each half's passes; :meth:`passing` and :meth:`passed` go round
    each network pass. The pace is measured from the micrograph's first network pass (the CTF
    fit before it is no network time), by pixels: a binned pass has a quarter of a whole
    pass's. Seconds "so far" count from this object's making: the micrograph's first half.
    """

    def __init__(self, halves: int = 1):
        self.halves, self.half = halves, 0
        self.start = self.last = time.perf_counter()
        self.first = None  # the first pass's start
        self.pixels = self.whole = 0  # pixels through the network; a whole pass's
        self.source, self.passes, self.per_half, self.done = None, 1, 1, 0

    def begin_half(self, source: str, config, offsets: int = 1) -> None:
        """The next half's passes begin (the only one's, for a micrograph alone): ``source``
        its file, ``config`` its :class:`~cryostream.config.DenoiseConfig` (once, 8 times for
        the ensemble, more to calibrate, as many again on the image binned by 2 for the binned
        pass, at each of its ``offsets``)."""
        self.half += 1
        self.source, self.done = source, 0
        self.passes = (8 if config.ensemble else 1) * (1 + config.calibrate)
        self.per_half = self.passes * (1 + (offsets if config.binned_pass else 0))

    def passing(self) -> None:
        """A network pass starts."""
        self.first = self.first or time.perf_counter()

    def passed(self, pixels: int, every_s: float) -> None:
        """A network pass of ``pixels`` is done: a note if ``every_s`` seconds went by since the
        last (none where the micrograph has one pass alone: the note that it is done follows)."""
        from cryostream.units import spoken_duration

        self.done += 1
        self.pixels += pixels
        self.whole = self.whole or pixels  # the first pass is on the whole micrograph
        now = time.perf_counter()
        expected = self.per_half * self.halves
        if now - self.last < every_s or expected <= 1:
            return
        self.last = now
        done = (self.half - 1) * self.per_half + self.done  # of the whole micrograph
        work = self.whole * (self.passes + (self.per_half - self.passes) / 4) * self.halves
        left = (now - self.first) * (work - self.pixels) / self.pixels
        logging.getLogger("cryostream").info(
            "%s: network pass %d%s done%s, %.0f s so far%s", Path(self.source).name, self.done,
            f" of {self.per_half}" if self.done <= self.per_half else "",
            f" on half {self.half} of {self.halves}" if self.halves > 1 else "", now - self.start,
            f", about {spoken_duration(left)} left for "
            f"{'the pair' if self.halves > 1 else 'it'}" if done < expected and left > 0 else "")
