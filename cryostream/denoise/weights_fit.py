"""The fit of a table of learned weights (:class:`~cryostream.denoise.weights.LearnedWeights`)
on simulated micrographs with their truth: each micrograph's sums per band of frequency
(:func:`weight_sums`), pooled by signal-to-noise ratio (and pixel size) into least-squares
weights (:func:`fit_learned_weights`), or a table's weights scaled per pixel-size group
(:func:`scale_by_pixel_size`)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from cryostream.denoise.weights import (
    BANDS,
    MAX_LINEAR,
    PARTS,
    LearnedWeights,
    frequency_bands,
    measured_snr,
)
from cryostream.errors import ConfigError

__all__ = ["WeightSums", "weight_sums", "fit_learned_weights", "scale_by_pixel_size"]


@dataclasses.dataclass(frozen=True)
class WeightSums:
    """What one simulated micrograph adds to a fit: its measured ratio and, per band, the sums
    of its parts' products with the truth ``X`` and with each other, and its pixel size in Å
    (None if not known). With the linear part ``L`` and the rest ``R``, ``sums`` holds
    ``⟨X, L⟩, ⟨X, R⟩, ⟨L, L⟩, ⟨R, R⟩, ⟨L, R⟩``; with the binned pass's ``B`` as well,
    ``⟨X, L⟩, ⟨X, R⟩, ⟨X, B⟩, ⟨L, L⟩, ⟨R, R⟩, ⟨B, B⟩, ⟨L, R⟩, ⟨L, B⟩, ⟨R, B⟩``; with what the
    gain dropped, ``D``, as well, the same order over four parts (14 rows: the products with
    the truth, the squares, then the pairs ``LR, LB, LD, RB, RD, BD``)."""

    snr: float
    sums: np.ndarray  # shape (rows, BANDS + 1): 5, 9 or 14 rows for 2, 3 or 4 parts
    pixel_size: float | None = None

    @property
    def parts(self) -> int:
        """How many parts the sums are of (2, 3 or 4: :data:`PARTS` in order)."""
        return {5: 2, 9: 3, 14: 4}[len(self.sums)]

    def first(self, parts: int) -> WeightSums:
        """The sums of the first ``parts`` parts alone (a fit without the later ones)."""
        if not 2 <= parts <= self.parts:
            raise ValueError(f"WeightSums.first: {parts} parts of {self.parts}")
        h, g = self.gram()
        pairs = [g[i, j] for i, j in itertools.combinations(range(parts), 2)]
        rows = [*h[:parts], *(g[i, i] for i in range(parts)), *pairs]
        return WeightSums(self.snr, np.stack(rows), self.pixel_size)

    def gram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(h, G)``: per band, the parts' products with the truth (``(k, BANDS + 1)``) and
        with each other (``(k, k, BANDS + 1)``)."""
        k = self.parts
        sums = np.asarray(self.sums, np.float64)
        h, g = sums[:k], np.empty((k, k, sums.shape[1]))
        for i in range(k):
            g[i, i] = sums[k + i]
        for n, (i, j) in enumerate(itertools.combinations(range(k), 2)):
            g[i, j] = g[j, i] = sums[2 * k + n]
        return h, g


def weight_sums(before: np.ndarray, after: np.ndarray, noisy: np.ndarray, truth: np.ndarray,
                noise, binned: np.ndarray | None = None, dropped: bool = False,
                taper: float | None = None) -> WeightSums:
    """:class:`WeightSums` of one simulated micrograph: ``before`` is the estimate the Wiener
    gain took (the network's output), ``after`` what it gave (without weights), ``truth`` the
    clean image, all in the units of ``noisy``; ``noise`` its
    :class:`~cryostream.matched.NoiseEstimate`; ``binned`` the binned pass's output
    (:func:`~cryostream.denoise.binned.binned_estimate`), or None. The rest ``R`` is
    ``before``'s part uncorrelated with ``noisy`` per merged ring
    (:func:`~cryostream.spectral.ring_regression`, as the gain splits it), the linear part
    ``after − R``. ``dropped``: what the gain took out of ``noisy``, ``noisy − L``, is a fourth
    part (with ``binned`` only).

    ``taper`` (a margin, as :func:`~cryostream.metrics.edge_taper`'s): the parts, split as
    ``denoise`` splits them, and the truth are compared inside the window, as the FRC compares
    them. Without it, the jump between an image's opposite edges, the same in the truth and in
    every part, adds a cross of power at every frequency; where the signal is weak (the finest
    detail at a fine pixel size) the sums then reward the parts that keep the jump, not the
    detail."""
    if dropped and binned is None:
        raise ValueError("weight_sums: the dropped part is weighed with the binned pass")
    import scipy.fft

    from cryostream.spectral import merge_rings, ring_regression

    arrays = [np.asarray(a, np.float32) for a in (before, after, noisy, truth)
              + (() if binned is None else (binned,))]
    rings = merge_rings(arrays[2].shape)
    y, e, d, *extra = (scipy.fft.rfft2(a - a.mean(), workers=-1)
                       for a in (arrays[2], arrays[0], arrays[1], *arrays[4:]))
    gain, _ = ring_regression(e, y, rings.bins, rings.weight)
    rest = e - gain.astype(np.float32)[rings.bins] * y
    parts = [d - rest, rest, *extra]
    if dropped:
        parts.append(y - parts[0])
    x = arrays[3] - arrays[3].mean()
    if taper is not None:
        from cryostream.metrics import edge_taper

        shape = arrays[2].shape
        window = edge_taper(shape, taper).astype(np.float32)
        x = x * window
        parts = [scipy.fft.rfft2(scipy.fft.irfft2(p, s=shape, workers=-1) * window, workers=-1)
                 for p in parts]
    x = scipy.fft.rfft2(x, workers=-1)
    band = frequency_bands(arrays[2].shape).ravel()

    def total(p, q):
        return np.bincount(band, (rings.weight * (p * np.conj(q)).real).ravel(),
                           minlength=BANDS + 1)

    pairs = [(x, p) for p in parts] + [(p, p) for p in parts] \
        + [(parts[i], parts[j]) for i, j in itertools.combinations(range(len(parts)), 2)]
    return WeightSums(measured_snr(y, arrays[2].shape, noise),
                      np.stack([total(p, q) for p, q in pairs]))


def fit_learned_weights(sums: list[WeightSums], rows: int = 6,
                        pixel_groups: int = 1) -> LearnedWeights:
    """The table of least-squares weights from simulated micrographs' :class:`WeightSums`:
    the micrographs sorted by measured ratio and cut into ``rows`` groups of near-equal size,
    each group's sums pooled, per band the weights of the parts minimising the error against
    the truth (:func:`least_squares`). Each row's ratio is its group's geometric mean; groups
    of one ratio pool into one row.

    With ``pixel_groups`` > 1 the micrographs (each with its ``pixel_size``) are first sorted
    by pixel size and cut into that many groups of near-equal size, each fitted so, with the
    group's geometric mean pixel size (groups of one pixel size pool): a table by pixel size
    and ratio."""
    if not sums:
        raise ConfigError("fit_learned_weights: no micrographs to fit on")
    if len({s.parts for s in sums}) > 1:
        raise ConfigError("fit_learned_weights: the micrographs' sums are of different parts "
                          "(of 2, 3 or 4 parts: with or without the binned pass and what the gain dropped)")
    if pixel_groups > 1:
        return _by_size([(fit_learned_weights(part, rows), _mean_size(part))
                         for part in _size_groups(sums, pixel_groups, "fit_learned_weights")],
                        len(sums))
    order = sorted(sums, key=lambda s: s.snr)
    groups = [list(g) for g in np.array_split(np.arange(len(order)), min(rows, len(order)))
              if g.size]
    merged = [groups[0]]  # groups of one ratio (repeated micrographs) pool: the grid increases
    for group in groups[1:]:
        if _mean_snr(order, group) <= _mean_snr(order, merged[-1]) * (1 + 1e-9):
            merged[-1] = merged[-1] + group
        else:
            merged.append(group)
    snr, weights = [], []
    for group in merged:
        weights.append(least_squares(WeightSums(0.0, sum(order[i].sums for i in group))))
        snr.append(_mean_snr(order, group))
    names = tuple(PARTS)[: sums[0].parts]
    return LearnedWeights(tuple(snr), **{name: tuple(w[i] for w in weights)
                                         for i, name in enumerate(names)},
                          micrographs=len(sums))


def least_squares(sums: WeightSums) -> tuple[np.ndarray, ...]:
    """Per band, the weights of the parts minimising the error against the truth, within
    their bounds (:data:`~cryostream.denoise.weights.PARTS`). Two parts ``(a, b)``: solved,
    then clipped (``a`` to [0, :data:`MAX_LINEAR`], ``b`` to [0, 1]); where ``R`` is empty or
    a multiple of ``L``, ``L`` alone: ``b`` = 0; where ``L`` is empty, ``R`` alone; with no
    power at all, 1 and 1. Three or four parts: the least error within the bounds (each part free or
    at a bound, the best of those that keep the free ones within theirs), so that two parts
    as alike as the linear part and the binned pass are not clipped one against the other."""
    if sums.parts == 2:
        return _two_parts(*sums.sums)
    h, g = sums.gram()
    tops = np.asarray(list(PARTS.values())[: sums.parts])
    best = np.zeros(h.shape)
    for band in range(h.shape[1]):
        best[:, band] = _within_bounds(h[:, band], g[:, :, band], tops)
    return tuple(best)


def _within_bounds(h: np.ndarray, g: np.ndarray, tops: np.ndarray) -> np.ndarray:
    """The ``w`` in [0, tops] least in ``wᵀ g w − 2 hᵀ w``: every choice of free parts and
    bounds tried (3ᵏ for k parts; the error is convex, so the best feasible is the least)."""
    k = h.size
    scale = max(float(np.max(np.abs(np.diag(g)))), 1e-300)
    best, least = np.zeros(k), 0.0
    for choice in itertools.product((0, 1, 2), repeat=k):  # free, at 0, at its top
        w = np.where(np.asarray(choice) == 2, tops, 0.0)
        free = np.asarray(choice) == 0
        if free.any():
            rhs = h[free] - g[np.ix_(free, ~free)] @ w[~free]
            w[free] = np.linalg.lstsq(g[np.ix_(free, free)] / scale, rhs / scale, rcond=1e-9)[0]
            if np.any(w[free] < -1e-12) or np.any(w[free] > tops[free] + 1e-12):
                continue
        w = np.clip(w, 0, tops)
        error = float(w @ g @ w - 2 * h @ w)
        if error < least - 1e-12 * scale:
            best, least = w, error
    return best


def scale_by_pixel_size(table: LearnedWeights, sums: list[WeightSums],
                        pixel_groups: int) -> LearnedWeights:
    """``table`` (by ratio alone) with one scale per band of frequency and group of pixel
    size: the micrographs (each with its ``pixel_size``) sorted by pixel size and cut into
    ``pixel_groups`` groups of near-equal size as :func:`fit_learned_weights` cuts them, and
    per band the ``s`` minimising ``‖X − s·(a·L + b·R)‖²`` over the group (``+ c·B`` with the
    binned pass), the table's weights at each micrograph's ratio (then ``s`` clipped so that
    each weight stays within its bound). The table's mix of the parts in each band stays as it
    is, so each ring's correlation with the truth (its FRC) does too: only the amplitude
    follows the pixel size."""
    if table.pixel_size is not None:
        raise ConfigError("scale_by_pixel_size: the table is by pixel size already")
    if any(s.parts != len(table.parts) for s in sums):
        raise ConfigError("scale_by_pixel_size: the sums are not of the table's parts")
    tables = [np.asarray(getattr(table, name)) for name in table.parts]
    bounds = [PARTS[name] for name in table.parts]
    top = np.min([bound / np.maximum(rows.max(0), 1e-12)
                  for rows, bound in zip(tables, bounds, strict=True)], axis=0)
    scaled = []
    for part in _size_groups(sums, pixel_groups, "scale_by_pixel_size"):
        num = den = 0.0
        for one in part:
            if one.parts == 2:  # as written first: the shipped tables are reproduced bit for bit
                a, b = table.at(one.snr)
                xl, xr, ll, rr, lr = one.sums
                num = num + a * xl + b * xr
                den = den + a * a * ll + 2 * a * b * lr + b * b * rr
                continue
            w = np.asarray(table.at(one.snr))
            h, g = one.gram()
            num = num + np.einsum("ib,ib->b", w, h)
            den = den + np.einsum("ib,ijb,jb->b", w, g, w)
        scale = np.clip(np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0), 0, top)
        weighted = {name: tuple(map(tuple, np.minimum(rows * scale, bound)))  # the bound, not
                    for name, rows, bound in zip(table.parts, tables, bounds, strict=True)}
        scaled.append((LearnedWeights(table.snr, **weighted,  # above it
                                      binned_offsets=table.binned_offsets), _mean_size(part)))
    return _by_size(scaled, table.micrographs)


def _size_groups(sums: list[WeightSums], groups: int, caller: str) -> list[list[WeightSums]]:
    """``sums`` sorted by pixel size, cut into ``groups`` of near-equal size (groups of one
    pixel size pooled)."""
    if any(s.pixel_size is None or not s.pixel_size > 0 for s in sums):
        raise ConfigError(f"{caller}: groups by pixel size need each micrograph's pixel_size")
    by_size = sorted(sums, key=lambda s: s.pixel_size)
    parts: list[list[WeightSums]] = []
    for index in np.array_split(np.arange(len(by_size)), min(groups, len(by_size))):
        part = [by_size[i] for i in index]
        if parts and _mean_size(part) <= _mean_size(parts[-1]) * (1 + 1e-9):
            parts[-1] = parts[-1] + part
        elif part:
            parts.append(part)
    return parts


def _by_size(tables: list[tuple[LearnedWeights, float]], micrographs: int) -> LearnedWeights:
    """One table by pixel size from tables by ratio alone, each with its pixel size."""
    names = tables[0][0].parts
    return LearnedWeights(**{name: tuple(v for t, _ in tables for v in getattr(t, name))
                             for name in ("snr", *names)}, micrographs=micrographs,
                          pixel_size=tuple(size for t, size in tables for _ in t.snr),
                          binned_offsets=tables[0][0].binned_offsets)


def _mean_size(part: list[WeightSums]) -> float:
    return math.exp(np.mean([math.log(s.pixel_size) for s in part]))


def _mean_snr(order: list[WeightSums], group: list[int]) -> float:
    return math.exp(np.mean([math.log(order[i].snr) for i in group]))


def _two_parts(xl, xr, ll, rr, lr) -> tuple[np.ndarray, np.ndarray]:
    """:func:`least_squares` of the linear part and the rest: solved, then clipped."""
    det = ll * rr - lr**2
    solvable = (rr > 1e-12 * np.maximum(ll, 1e-300)) & (det > 1e-9 * ll * rr)
    safe = np.where(solvable, det, 1.0)
    a = np.where(solvable, (xl * rr - xr * lr) / safe, xl / np.maximum(ll, 1e-300))
    alone = (ll <= 0) & (rr > 0)  # no linear part: the rest's own least squares
    b = np.where(solvable, (xr * ll - xl * lr) / safe,
                 np.where(alone, xr / np.where(alone, rr, 1.0), 0.0))
    a = np.clip(np.where(ll > 0, a, 1.0), 0, MAX_LINEAR)
    b = np.where((ll > 0) | (rr > 0), np.clip(b, 0, 1), 1.0)
    return a, b
