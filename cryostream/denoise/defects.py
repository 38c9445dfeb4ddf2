"""Detector defects mended before the network sees a micrograph, so that one bad pixel or a
blank border does not spoil the rest of it.

A convolutional network spreads what it sees over its receptive field, and the steps after it
work on the whole spectrum: one hot pixel a thousand times the mean rang over the whole
output, and a border of zeros (left by some motion correction) or a dead column put a grid of
streaks across the micrograph. Three kinds are found here, each impossible in a micrograph's
own counts:

- *hot pixels*: brighter than the median by more than :data:`HOT_FACTOR` times the spread of
  the brightest 0.1 % (``p99.9 − p50``; about 15 σ for Gaussian noise, past any count a
  shot-noise micrograph of 57 million pixels reaches, and about 2 times that spread is the
  brightest pixel of a real one). Each is set to the median before the network;
- *cold pixels*: as far below the median, by the spread of the darkest 0.1 % (``p50 − p0.1``;
  a dead pixel written as a large negative number by a gain correction): set to the median
  too (left as they were, one such pixel spread over the whole output by the spectral
  steps, or overflowed them into NaN);
- *blank rows and columns*: rows or columns of one value (a border, a dead line; at least
  :data:`BLANK_SHARE` of each line's pixels equal to their neighbour along it). They
  are filled with white noise of the rest's mean and spread before the network (a flat fill
  leaves an edge the network answers with streaks), from a fixed seed so that the output is
  the same every time, and the output keeps them as they were.

Nothing is mended where nothing is found; what was found is recorded in ``NAME.json``
(``found["defects"]``) and said in a :class:`DefectWarning`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["HOT_FACTOR", "BLANK_SHARE", "DefectWarning", "Defects", "find_defects",
           "mostly_blank", "mend", "restore"]

#: A pixel brighter than ``p50 + HOT_FACTOR · (p99.9 − p50)`` is a hot pixel; one darker than
#: ``p50 − HOT_FACTOR · (p50 − p0.1)`` a cold one.
HOT_FACTOR = 5.0
#: A row or column is blank where this share of its pixels equal their neighbour along it.
BLANK_SHARE = 0.95


class DefectWarning(UserWarning):
    """A micrograph held hot pixels or blank rows or columns, mended for the network."""


@dataclasses.dataclass(frozen=True)
class Defects:
    """What :func:`find_defects` found: the flat indices of hot pixels, the blank rows and
    columns, the threshold over which a pixel is hot, and the median, mean and spread of the
    other pixels (what mends them)."""

    hot: np.ndarray
    rows: np.ndarray
    columns: np.ndarray
    threshold: float
    median: float
    mean: float
    spread: float
    cold: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))
    floor: float = -math.inf

    def __bool__(self) -> bool:
        return bool(self.hot.size or self.cold.size or self.rows.size or self.columns.size)

    def record(self) -> dict:
        """For ``NAME.json``: counts, the blank lines and the thresholds (the cold pixels'
        only where some were found)."""
        cold = {"cold_pixels": int(self.cold.size), "floor": self.floor} if self.cold.size else {}
        return {"hot_pixels": int(self.hot.size), "threshold": self.threshold, **cold,
                "blank_rows": _runs(self.rows), "blank_columns": _runs(self.columns)}

    def describe(self) -> str:
        """A few words for a warning."""
        said = []
        if self.hot.size:
            said.append(f"{self.hot.size} hot pixel{'s' * (self.hot.size > 1)} (over "
                        f"{self.threshold:.4g}) set to the median")
        if self.cold.size:
            said.append(f"{self.cold.size} cold pixel{'s' * (self.cold.size > 1)} (under "
                        f"{self.floor:.4g}) set to the median")
        lines = [f"{n.size} blank {what}{'s' * (n.size > 1)} ({', '.join(_runs(n))})"
                 for n, what in ((self.rows, "row"), (self.columns, "column")) if n.size]
        if lines:
            said.append(f"{' and '.join(lines)} filled with noise for the network and kept "
                        "blank in the output")
        return "; ".join(said)


def _runs(indices: np.ndarray) -> list[str]:
    """Indices as runs: ``["0-63", "500"]``."""
    out, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            out.append(f"{start}" if start == value else f"{start}-{value}")
            start = None
    return out


def find_defects(image: np.ndarray) -> Defects:
    """The hot pixels and the blank rows and columns of a 2-D micrograph (finite pixels,
    not constant: checked before)."""
    # a line is blank where nearly every pixel equals the next (a border crossing a dead
    # line breaks it in a few places); shot noise repeats a count far less often (a third of
    # neighbours at 1 electron a pixel, a half at 0.4)
    rows = np.flatnonzero((image[:, 1:] == image[:, :-1]).mean(axis=1) >= BLANK_SHARE)
    columns = np.flatnonzero((image[1:] == image[:-1]).mean(axis=0) >= BLANK_SHARE)
    live = image
    if rows.size or columns.size:  # the spread of the pixels that are not blank
        live = np.delete(np.delete(image, rows, axis=0), columns, axis=1)
    if not live.size:  # every line blank: nothing else to measure (mostly_blank says so)
        return Defects(hot=np.empty(0, np.int64), rows=rows, columns=columns,
                       threshold=math.inf, median=0.0, mean=0.0, spread=0.0)
    step = max(1, int(np.sqrt(live.size / 4e6)))  # a few million pixels give the figures
    sample = live[::step, ::step]
    p001, p50, p999 = np.percentile(sample, [0.1, 50, 99.9])
    threshold = float(p50 + HOT_FACTOR * (p999 - p50))
    floor = float(p50 - HOT_FACTOR * (p50 - p001))
    with np.errstate(over="ignore"):  # a threshold beyond float32 (pixels near its limit)
        hot = np.flatnonzero(image > threshold) if p999 > p50 else np.empty(0, np.int64)
        cold = np.flatnonzero(image < floor) if p001 < p50 else np.empty(0, np.int64)
    normal = sample[(sample <= threshold) & (sample >= floor)] if hot.size or cold.size \
        else sample
    return Defects(hot=hot, rows=rows, columns=columns, threshold=threshold, median=float(p50),
                   mean=float(normal.mean(dtype=np.float64)),
                   spread=float(normal.std(dtype=np.float64)), cold=cold, floor=floor)


def mostly_blank(image: np.ndarray, defects: Defects) -> str | None:
    """What is blank where more than half of a micrograph's rows or columns are (nothing left
    to denoise, or a micrograph too sparse to tell from a blank one); None otherwise."""
    for lines, size, what in ((defects.rows, image.shape[0], "rows"),
                              (defects.columns, image.shape[1], "columns")):
        if 2 * lines.size > size:
            return f"{lines.size} of its {size} {what} are blank (one value along each)"
    return None


def mend(image: np.ndarray, defects: Defects) -> np.ndarray:
    """A copy of ``image`` with hot and cold pixels at the median and blank rows and columns filled
    with white noise of the other pixels' mean and spread (a fixed seed: the same every
    time)."""
    out = np.array(image, dtype=np.float32, copy=True)
    out.reshape(-1)[defects.hot] = np.float32(defects.median)
    out.reshape(-1)[defects.cold] = np.float32(defects.median)
    rng = np.random.default_rng(0)
    height, width = out.shape
    for lines, shape in ((defects.rows, (defects.rows.size, width)),
                         (defects.columns, (height, defects.columns.size))):
        if lines.size:
            noise = rng.standard_normal(shape, np.float32)
            fill = np.float32(defects.mean) + np.float32(defects.spread) * noise
            if lines is defects.rows:
                out[lines, :] = fill
            else:
                out[:, lines] = fill
    return out


def restore(estimate: np.ndarray, image: np.ndarray, defects: Defects) -> np.ndarray:
    """``estimate`` with the blank rows and columns of ``image`` as they were (in place)."""
    estimate[defects.rows, :] = image[defects.rows, :]
    estimate[:, defects.columns] = image[:, defects.columns]
    return estimate
