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
micrographs of similar signal-to-noise ratio, form a table (:class:`LearnedWeights`,
:func:`fit_learned_weights`; ``g·Y`` is then the gain's linear response ``w·Y``, CTF-shaped or
radial). A model ships it in its record; the Wiener gain
(:func:`~cryostream.denoise.corrections.match_wiener_gain` with ``weights``) looks up the rows
for a micrograph's own measured ratio (:func:`measured_snr`: the signal over the noise between
0.004 and 0.03 cycles/px, where it is well above the noise estimate's error, and
:func:`band_weights`) and gives ``a·w·Y + b·R``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["BANDS", "SNR_BAND", "LearnedWeights", "WeightSums", "frequency_bands",
           "measured_snr", "band_weights", "weight_sums", "fit_learned_weights", "weights_for"]

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
    signal-to-noise ratio.

    Parameters
    ----------
    snr : tuple of float
        The measured ratio (:func:`measured_snr`) of each row, increasing.
    linear, rest : tuple of tuples of float
        Per row, the weight of the linear part and of the rest, per band.
    micrographs : int
        How many simulated micrographs the table was fitted on.
    """

    snr: tuple
    linear: tuple
    rest: tuple
    micrographs: int = 0

    def __post_init__(self) -> None:
        snr = np.asarray(self.snr, np.float64)
        rows = [np.asarray(t, np.float64) for t in (self.linear, self.rest)]
        if snr.ndim != 1 or snr.size < 1 or not np.all(snr > 0) or np.any(np.diff(snr) <= 0):
            raise ConfigError(f"learned weights: snr={self.snr!r} must be positive and "
                              "increasing, one per row")
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
        for name, table in zip(("linear", "rest"), rows, strict=True):
            object.__setattr__(self, name, tuple(tuple(float(v) for v in row) for row in table))

    def at(self, snr: float) -> tuple[np.ndarray, np.ndarray]:
        """The weights of the linear part and of the rest for a micrograph of measured ratio
        ``snr``: the rows interpolated in ``log snr``, the end rows beyond them."""
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
                "rest": [list(r) for r in self.rest], "micrographs": self.micrographs}

    @classmethod
    def from_dict(cls, data: dict) -> LearnedWeights:
        """The table of :meth:`to_dict`'s values; a :class:`ConfigError` for anything else."""
        if not isinstance(data, dict) or set(data) != {"snr", "linear", "rest", "micrographs"}:
            raise ConfigError("learned weights: need the keys snr, linear, rest and "
                              f"micrographs, not {sorted(data) if isinstance(data, dict) else data!r}")
        try:
            return cls(tuple(data["snr"]), tuple(map(tuple, data["linear"])),
                       tuple(map(tuple, data["rest"])), data["micrographs"])
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
    ``⟨X, L⟩, ⟨X, R⟩, ⟨L, L⟩, ⟨R, R⟩, ⟨L, R⟩`` (truth ``X``, linear part ``L``, rest ``R``)."""

    snr: float
    sums: np.ndarray  # (5, BANDS + 1)


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


def fit_learned_weights(sums: list[WeightSums], rows: int = 6) -> LearnedWeights:
    """The table of least-squares weights from simulated micrographs' :class:`WeightSums`:
    the micrographs sorted by measured ratio and cut into ``rows`` groups of near-equal size,
    each group's sums pooled, per band ``(a, b)`` minimising ``‖X − a·L − b·R‖²``
    (then ``a`` clipped to [0, :data:`MAX_LINEAR`] and ``b`` to [0, 1]; where ``R`` is empty
    or a multiple of ``L``, ``b`` = 0). Each row's ratio is its group's geometric mean; groups
    of one ratio pool into one row."""
    if not sums:
        raise ConfigError("fit_learned_weights: no micrographs to fit on")
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
