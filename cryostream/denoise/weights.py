"""Learned weights: how much of a denoised image's linear part, and of the rest, to keep in each
band of spatial frequency, by the micrograph's measured signal-to-noise ratio.

Per ring of spatial frequency a denoised image ``E`` splits into a part proportional to the
micrograph ``Y`` and a part ``R`` uncorrelated with it: ``E = g·Y + R``
(:func:`~cryostream.spectral.ring_regression`). :class:`~cryostream.denoise.steps.WienerGain`
sets the linear part; what a network adds beyond a linear filter, ``R``, it keeps whole. On
simulated micrographs with their truth, most of ``R`` is the network's error wherever the
signal is weak: the weight of ``R`` that the truth asks for, ``⟨X, R⟩ / ⟨R, R⟩``, is 0.03–0.3
above 0.01 cycles/px at 10 e/Å² for the general model, and no measurement on the micrograph
alone can find it (``R`` holds about 0.1 % of a ring's noise power, far under the noise
estimate's error). It can be learned instead: on simulated micrographs with their truth, the
least-squares weights ``(a, b)`` of ``a·g·Y + b·R`` per band of frequency, pooled over the
micrographs of similar pixel size and signal-to-noise ratio, form a table
(:class:`LearnedWeights`, :func:`fit_learned_weights`; ``g·Y`` is then the gain's linear
response ``w·Y``, CTF-shaped or radial). A model ships it in its record; the Wiener gain
(:func:`~cryostream.denoise.corrections.match_wiener_gain` with ``weights``) looks up the rows
for a micrograph's pixel size (:meth:`LearnedWeights.for_pixel_size`) and its own measured
ratio (:func:`measured_snr`: the signal over the noise between 0.004 and 0.03 cycles/px, where
it is well above the noise estimate's error, and :func:`band_weights`) and gives ``a·w·Y + b·R``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["BANDS", "SNR_BAND", "LearnedWeights", "WeightSums", "frequency_bands",
           "measured_snr", "band_weights", "weight_sums", "fit_learned_weights",
           "scale_by_pixel_size", "weights_for"]

#: Equal bands of spatial frequency from 0 to 0.5 cycles/px; one more holds the corners.
BANDS = 32
#: The band, in cycles/px, whose measured signal over noise describes a micrograph.
SNR_BAND = (0.004, 0.03)
#: The largest weight of the linear part a table may give (its fit is clipped to it).
MAX_LINEAR = 1.25


def frequency_bands(shape: tuple[int, int], ring: np.ndarray | None = None) -> np.ndarray:
    """The band (0 … :data:`BANDS`) of each ``rfft2`` coefficient of an image of ``shape``
    (``ring``: its :func:`~cryostream.spectral.ring_index`, if made already)."""
    from cryostream.spectral import ring_index

    if ring is None:
        ring = ring_index(shape, "rfft", dtype=np.float32)
    return np.minimum((ring * np.float32(2 * BANDS / min(shape))).astype(np.int32), BANDS)


def measured_snr(image_f: np.ndarray, shape: tuple[int, int], noise,
                 ring: np.ndarray | None = None, weight: np.ndarray | None = None) -> float:
    """A micrograph's signal over its noise between :data:`SNR_BAND` cycles/px: the power of
    its ``rfft2`` (``image_f``, mean removed) over the measured noise's (``noise``, a
    :class:`~cryostream.matched.NoiseEstimate`), less one; at least 0.001. ``ring`` and
    ``weight``: the coefficients' :func:`~cryostream.spectral.ring_index` and
    :func:`~cryostream.spectral.rfft_weight`, if made already."""
    from cryostream.spectral import rfft_weight, ring_index

    if ring is None:
        ring = ring_index(shape, "rfft", dtype=np.float32)
    if weight is None:
        weight = rfft_weight(shape)
    # only the rings of the band are needed: a window of rows and columns holds them
    # ring r is at r / min(shape) cycles/px; rounded, it holds radii up to r + 0.5
    top_y, top_x = (int(math.ceil((SNR_BAND[1] * min(shape) + 0.5) * n / min(shape))) + 1
                    for n in shape)
    rows = np.r_[0:min(top_y + 1, shape[0]), max(shape[0] - top_y, top_y + 1):shape[0]]
    cols = slice(0, min(top_x + 1, image_f.shape[1]))
    ring = ring[rows, cols].astype(np.int64)
    weight = weight[rows, cols]
    image_f = image_f[rows, cols]
    n = int(ring.max()) + 1
    power = np.bincount(ring.ravel(), (weight * (image_f.real**2 + image_f.imag**2)).ravel(),
                        minlength=n)
    noise_power = np.bincount(ring.ravel(), weight.ravel(), minlength=n) \
        * noise.ring_power(shape, n)
    f = np.arange(n) / min(shape)
    band = (f >= SNR_BAND[0]) & (f <= SNR_BAND[1])
    if not band.any() or noise_power[band].sum() <= 0:
        return 1.0
    return max(float(power[band].sum() / noise_power[band].sum() - 1), 1e-3)


def band_weights(weights: LearnedWeights, image_f: np.ndarray, shape: tuple[int, int],
                 noise, ring: np.ndarray | None = None, weight: np.ndarray | None = None,
                 snr: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The weights ``(a, b)`` of each ``rfft2`` coefficient of an image of ``shape``: the
    table's rows for the measured ratio ``snr`` (None: :func:`measured_snr` of ``image_f``,
    its mean-removed ``rfft2``, and its ``noise``), spread over the bands (float32). ``ring``,
    ``weight``: as :func:`measured_snr`'s."""
    if snr is None:
        snr = measured_snr(image_f, shape, noise, ring, weight)
    a, b = weights.at(snr)
    band = frequency_bands(shape, ring)
    return a.astype(np.float32)[band], b.astype(np.float32)[band]


@dataclasses.dataclass(frozen=True)
class LearnedWeights:
    """A table of weights per band of frequency (:data:`BANDS` + 1 each), one row per
    signal-to-noise ratio, or per pixel size and signal-to-noise ratio.

    Parameters
    ----------
    snr : tuple of float
        The measured ratio (:func:`measured_snr`) of each row, increasing (within each pixel
        size).
    linear, rest : tuple of tuples of float
        Per row, the weight of the linear part and of the rest, per band.
    micrographs : int
        How many simulated micrographs the table was fitted on.
    pixel_size : tuple of float or None
        The pixel size (Å) of each row: rows of one pixel size form a group, groups in
        increasing pixel size: a band in cycles/px is other detail at another pixel size (on
        the general model's 192 calibration micrographs, leave-one-out, a table fitted per
        pixel-size group left 0.64 of the error over each micrograph's own best weights that
        a table by ratio alone left). None: rows by ratio alone.
    """

    snr: tuple
    linear: tuple
    rest: tuple
    micrographs: int = 0
    pixel_size: tuple | None = None

    def __post_init__(self) -> None:
        snr = np.asarray(self.snr, np.float64)
        rows = [np.asarray(t, np.float64) for t in (self.linear, self.rest)]
        if snr.ndim != 1 or snr.size < 1 or not np.all(snr > 0):
            raise ConfigError(f"learned weights: snr={self.snr!r} must be positive, one per row")
        pixel = np.zeros(snr.size) if self.pixel_size is None else \
            np.asarray(self.pixel_size, np.float64)
        if pixel.shape != snr.shape or not np.all(np.isfinite(pixel)) or \
                (self.pixel_size is not None and not np.all(pixel > 0)) or np.any(np.diff(pixel) < 0):
            raise ConfigError(f"learned weights: pixel_size={self.pixel_size!r} must be positive "
                              "and non-decreasing, one per row")
        if np.any((np.diff(snr) <= 0) & (np.diff(pixel) == 0)):
            raise ConfigError(f"learned weights: snr={self.snr!r} must increase "
                              + ("within each pixel size" if self.pixel_size is not None
                                 else "from row to row"))
        for name, table, top in zip(("linear", "rest"), rows, (MAX_LINEAR, 1.0), strict=True):
            if table.shape != (snr.size, BANDS + 1) or not np.all(np.isfinite(table)):
                raise ConfigError(f"learned weights: {name} must hold {snr.size} rows of "
                                  f"{BANDS + 1} finite weights, not shape {table.shape}")
            if table.min() < 0 or table.max() > top:
                raise ConfigError(f"learned weights: {name} weights must lie in [0, {top}], "
                                  f"not [{table.min():.3g}, {table.max():.3g}]")
        if isinstance(self.micrographs, bool) or not isinstance(self.micrographs, int) \
                or self.micrographs < 0:
            raise ConfigError(f"learned weights: micrographs={self.micrographs!r} must be a "
                              "count")
        object.__setattr__(self, "snr", tuple(float(s) for s in snr))
        if self.pixel_size is not None:
            object.__setattr__(self, "pixel_size", tuple(float(p) for p in pixel))
        for name, table in zip(("linear", "rest"), rows, strict=True):
            object.__setattr__(self, name, tuple(tuple(float(v) for v in row) for row in table))

    def for_pixel_size(self, pixel_size: float) -> LearnedWeights:
        """The table by ratio alone for micrographs of ``pixel_size`` Å: each pixel size's rows
        looked up as :meth:`at` does and interpolated in ``log`` pixel size between the two
        nearest (the end groups beyond them), on all the groups' ratios, so that its
        :meth:`at` gives exactly that. A table by ratio alone is itself."""
        if self.pixel_size is None:
            return self
        try:  # a header's float32 as well as a float
            size = float(pixel_size) if not isinstance(pixel_size, bool) else math.nan
        except (TypeError, ValueError):
            size = math.nan
        if not (math.isfinite(size) and size > 0):
            raise ConfigError(f"learned weights: pixel_size={pixel_size!r} must be a positive "
                              "number of Å")
        sizes = sorted(set(self.pixel_size))
        groups = [LearnedWeights(*(tuple(v for v, p in zip(column, self.pixel_size, strict=True)
                                         if p == size)
                                   for column in (self.snr, self.linear, self.rest)))
                  for size in sizes]
        t = float(np.interp(math.log(size), np.log(sizes), np.arange(len(sizes))))
        lo = int(math.floor(t))
        hi = min(lo + 1, len(sizes) - 1)
        w = t - lo
        snr = sorted({s for g in (groups[lo], groups[hi]) for s in g.snr})
        looked = [[np.asarray(g.at(s)) for s in snr] for g in (groups[lo], groups[hi])]
        mixed = [(1 - w) * a + w * b for a, b in zip(*looked, strict=True)]
        return LearnedWeights(tuple(snr), tuple(m[0] for m in mixed), tuple(m[1] for m in mixed),
                              self.micrographs)

    def at(self, snr: float, pixel_size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The weights of the linear part and of the rest for a micrograph of measured ratio
        ``snr`` (and ``pixel_size``, which a table by pixel size needs:
        :meth:`for_pixel_size`): the rows interpolated in ``log snr``, the end rows beyond
        them."""
        if self.pixel_size is not None:
            if pixel_size is None:
                raise ConfigError("learned weights: this table is by pixel size: pass the "
                                  "micrograph's")
            return self.for_pixel_size(pixel_size).at(snr)
        grid = np.log(self.snr)
        t = float(np.interp(math.log(max(snr, 1e-3)), grid, np.arange(grid.size)))
        lo = int(math.floor(t))
        hi = min(lo + 1, grid.size - 1)
        w = t - lo
        linear, rest = (np.asarray(table) for table in (self.linear, self.rest))
        return ((1 - w) * linear[lo] + w * linear[hi], (1 - w) * rest[lo] + w * rest[hi])

    def to_dict(self) -> dict:
        """JSON values (a run record's ``learned_weights`` entries)."""
        return {"snr": list(self.snr), "linear": [list(r) for r in self.linear],
                "rest": [list(r) for r in self.rest], "micrographs": self.micrographs,
                **({} if self.pixel_size is None else {"pixel_size": list(self.pixel_size)})}

    @classmethod
    def from_dict(cls, data: dict) -> LearnedWeights:
        """The table of :meth:`to_dict`'s values; a :class:`ConfigError` for anything else."""
        keys = {"snr", "linear", "rest", "micrographs"}
        if not isinstance(data, dict) or not keys <= set(data) <= keys | {"pixel_size"}:
            raise ConfigError("learned weights: need the keys snr, linear, rest and "
                              "micrographs (and optionally pixel_size), not "
                              f"{sorted(data) if isinstance(data, dict) else data!r}")
        try:
            pixel = data.get("pixel_size")
            return cls(tuple(data["snr"]), tuple(map(tuple, data["linear"])),
                       tuple(map(tuple, data["rest"])), data["micrographs"],
                       None if pixel is None else tuple(pixel))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"learned weights: not a table of numbers ({exc})") from None


def weights_for(record, ensemble: bool) -> LearnedWeights | None:
    """The table a run's record holds for its network run once or as the 8-fold ensemble
    (``record.learned_weights``: ``{"ensemble": …, "single": …}``), or None."""
    tables = getattr(record, "learned_weights", None) or {}
    entry = tables.get("ensemble" if ensemble else "single")
    return None if entry is None else LearnedWeights.from_dict(entry)


@dataclasses.dataclass(frozen=True)
class WeightSums:
    """What one simulated micrograph adds to a fit: its measured ratio and, per band, the sums
    ``⟨X, L⟩, ⟨X, R⟩, ⟨L, L⟩, ⟨R, R⟩, ⟨L, R⟩`` (truth ``X``, linear part ``L``, rest ``R``),
    and its pixel size in Å (None if not known)."""

    snr: float
    sums: np.ndarray  # (5, BANDS + 1)
    pixel_size: float | None = None


def weight_sums(before: np.ndarray, after: np.ndarray, noisy: np.ndarray, truth: np.ndarray,
                noise) -> WeightSums:
    """:class:`WeightSums` of one simulated micrograph: ``before`` is the estimate the Wiener
    gain took (the network's output), ``after`` what it gave (without weights), ``truth`` the
    clean image, all in the units of ``noisy``; ``noise`` its
    :class:`~cryostream.matched.NoiseEstimate`. The rest ``R`` is ``before``'s part
    uncorrelated with ``noisy`` per merged ring (:func:`~cryostream.spectral.ring_regression`,
    as the gain splits it), the linear part ``after − R``."""
    import scipy.fft

    from cryostream.spectral import merge_rings, ring_regression

    before, after, noisy, truth = (np.asarray(a, np.float32) for a in (before, after, noisy, truth))
    rings = merge_rings(noisy.shape)
    y, e, d, x = (scipy.fft.rfft2(a - a.mean(), workers=-1) for a in (noisy, before, after, truth))
    gain, _ = ring_regression(e, y, rings.bins, rings.weight)
    rest = e - gain.astype(np.float32)[rings.bins] * y
    linear = d - rest
    band = frequency_bands(noisy.shape).ravel()

    def total(p, q):
        return np.bincount(band, (rings.weight * (p * np.conj(q)).real).ravel(),
                           minlength=BANDS + 1)

    sums = np.stack([total(x, linear), total(x, rest), total(linear, linear), total(rest, rest),
                     total(linear, rest)])
    return WeightSums(measured_snr(y, noisy.shape, noise), sums)


def fit_learned_weights(sums: list[WeightSums], rows: int = 6,
                        pixel_groups: int = 1) -> LearnedWeights:
    """The table of least-squares weights from simulated micrographs' :class:`WeightSums`:
    the micrographs sorted by measured ratio and cut into ``rows`` groups of near-equal size,
    each group's sums pooled, per band ``(a, b)`` minimising ``‖X − a·L − b·R‖²``
    (then ``a`` clipped to [0, :data:`MAX_LINEAR`] and ``b`` to [0, 1]; where ``R`` is empty
    or a multiple of ``L``, ``b`` = 0). Each row's ratio is its group's geometric mean; groups
    of one ratio pool into one row.

    With ``pixel_groups`` > 1 the micrographs (each with its ``pixel_size``) are first sorted
    by pixel size and cut into that many groups of near-equal size, each fitted so, with the
    group's geometric mean pixel size (groups of one pixel size pool): a table by pixel size
    and ratio."""
    if not sums:
        raise ConfigError("fit_learned_weights: no micrographs to fit on")
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
    snr, linear, rest = [], [], []
    for group in merged:
        a, b = _least_squares(*sum(order[i].sums for i in group))
        snr.append(_mean_snr(order, group))
        linear.append(a)
        rest.append(b)
    return LearnedWeights(tuple(snr), tuple(linear), tuple(rest), micrographs=len(sums))


def scale_by_pixel_size(table: LearnedWeights, sums: list[WeightSums],
                        pixel_groups: int) -> LearnedWeights:
    """``table`` (by ratio alone) with one scale per band of frequency and group of pixel
    size: the micrographs (each with its ``pixel_size``) sorted by pixel size and cut into
    ``pixel_groups`` groups of near-equal size as :func:`fit_learned_weights` cuts them, and
    per band the ``s`` minimising ``‖X − s·(a·L + b·R)‖²`` over the group, ``(a, b)`` the
    table's weights at each micrograph's ratio (then ``s`` clipped so that ``s·a`` stays
    within [0, :data:`MAX_LINEAR`] and ``s·b`` within [0, 1]). The table's mix of the linear
    part and the rest in each band stays as it is, so each ring's correlation with the truth
    (its FRC) does too: only the amplitude follows the pixel size."""
    if table.pixel_size is not None:
        raise ConfigError("scale_by_pixel_size: the table is by pixel size already")
    linear_rows, rest_rows = (np.asarray(t) for t in (table.linear, table.rest))
    top = np.minimum(MAX_LINEAR / np.maximum(linear_rows.max(0), 1e-12),
                     1 / np.maximum(rest_rows.max(0), 1e-12))
    scaled = []
    for part in _size_groups(sums, pixel_groups, "scale_by_pixel_size"):
        num = den = 0.0
        for one in part:
            a, b = table.at(one.snr)
            xl, xr, ll, rr, lr = one.sums
            num = num + a * xl + b * xr
            den = den + a * a * ll + 2 * a * b * lr + b * b * rr
        scale = np.clip(np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0), 0, top)
        linear, rest = (np.minimum(rows * scale, top_value)  # the bound, not a rounding above it
                        for rows, top_value in ((linear_rows, MAX_LINEAR), (rest_rows, 1.0)))
        scaled.append((LearnedWeights(table.snr, tuple(map(tuple, linear)),
                                      tuple(map(tuple, rest))), _mean_size(part)))
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
    return LearnedWeights(*(tuple(v for t, _ in tables for v in getattr(t, name))
                            for name in ("snr", "linear", "rest")), micrographs=micrographs,
                          pixel_size=tuple(size for t, size in tables for _ in t.snr))


def _mean_size(part: list[WeightSums]) -> float:
    return math.exp(np.mean([math.log(s.pixel_size) for s in part]))


def _mean_snr(order: list[WeightSums], group: list[int]) -> float:
    return math.exp(np.mean([math.log(order[i].snr) for i in group]))


def _least_squares(xl, xr, ll, rr, lr) -> tuple[np.ndarray, np.ndarray]:
    """Per band, ``(a, b)`` minimising ``‖X − a·L − b·R‖²`` from the sums, then clipped:
    ``a`` to [0, :data:`MAX_LINEAR`], ``b`` to [0, 1]. Where ``R`` is empty or a multiple of
    ``L``, ``L`` alone: ``b`` = 0; where ``L`` is empty, ``R`` alone; with no power at all,
    1 and 1."""
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
