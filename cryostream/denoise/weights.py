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

A table may weigh a third part: ``B``, the network's output on the micrograph binned by 2,
brought back to full size (:mod:`cryostream.denoise.binned`), which sees twice the context at a
quarter of the noise per pixel and so holds more of the structure above 30 Å than the
full-size pass; the result is then ``a·w·Y + b·R + c·B``. And a fourth: ``D = Y − w·Y``, what
the gain took out of the micrograph. Where the measured power falls under the noise the gain is
at its floor and the ring keeps 1 % of the micrograph, so its correlation with the truth (its
FRC) is mostly what the network's rest holds, under the micrograph's own; the weight ``d`` of
``D`` puts back the share of it the truth asks for (the gain's response becomes
``(a − d)·w + d``), and the least-squares mix of the parts correlates with the truth at least
as well as any one of them, the micrograph included. The fit (:func:`fit_learned_weights`,
:func:`weight_sums`) lives in :mod:`cryostream.denoise.weights_fit`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryostream.errors import ConfigError

# the fit's names come from weights_fit (__getattr__)
__all__ = ["BANDS", "SNR_BAND", "PARTS", "LearnedWeights", "frequency_bands", "measured_snr",
           "band_weights", "weights_for", "binned_offsets"]

#: Equal bands of spatial frequency from 0 to 0.5 cycles/px; one more holds the corners.
BANDS = 32
#: The band, in cycles/px, whose measured signal over noise describes a micrograph.
SNR_BAND = (0.004, 0.03)
#: The largest weight of the linear part a table may give (its fit is clipped to it).
MAX_LINEAR = 1.25
#: The parts a table weighs, in order, and the largest weight of each.
PARTS = {"linear": MAX_LINEAR, "rest": 1.0, "binned": MAX_LINEAR, "dropped": 1.0}


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
                 snr: float | None = None) -> tuple[np.ndarray, ...]:
    """The weights of each part (:attr:`LearnedWeights.parts`: ``(a, b)``, ``(a, b, c)``
    with the binned pass, ``(a, b, c, d)`` with what the gain dropped as well) of each
    ``rfft2`` coefficient of an image of ``shape``: the table's rows for the measured ratio
    ``snr`` (None: :func:`measured_snr` of ``image_f``, its mean-removed ``rfft2``, and its
    ``noise``), spread over the coefficients (float32): each band's weight at its centre and
    linear between centres, so that a weight changes from ring to ring instead of stepping
    at a band's edge (a step makes the output's rings on either side of it differ in scale,
    which costs a little PSNR and, through the edge taper, a little FRC); the rings of the
    table's last entry (:func:`frequency_bands`: Nyquist and the corners past it) take it.
    ``ring``, ``weight``: as :func:`measured_snr`'s."""
    from cryostream.spectral import ring_index

    if snr is None:
        snr = measured_snr(image_f, shape, noise, ring, weight)
    if ring is None:
        ring = ring_index(shape, "rfft", dtype=np.float32)
    rings = np.arange(int(ring.max()) + 1)
    position = rings * (2 * BANDS / min(shape)) - 0.5  # in bands, from the first's centre
    corner = frequency_bands(shape, rings.astype(ring.dtype)) == BANDS  # as the fit's sums
    index = ring.astype(np.int32)
    return tuple(np.where(corner, w[BANDS], np.interp(position, np.arange(BANDS), w[:BANDS]))
                 .astype(np.float32)[index] for w in map(np.asarray, weights.at(snr)))


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
    binned : tuple of tuples of float or None
        Per row, the weight of the binned pass's output per band (:mod:`cryostream.denoise.binned`);
        None: a table of the linear part and the rest alone.
    dropped : tuple of tuples of float or None
        Per row, the weight per band of what the gain took out of the micrograph,
        ``Y − w·Y``; None: not weighed (a table with it weighs the binned pass too).
    binned_offsets : int
        The binned pass the table was fitted with: the 2×2 blocks starting at one pixel (1,
        as every table before this field) or the mean over their four starts (4;
        :func:`~cryostream.denoise.binned.binned_estimate`). ``denoise`` runs the pass the
        table's way.
    """

    snr: tuple
    linear: tuple
    rest: tuple
    micrographs: int = 0
    pixel_size: tuple | None = None
    binned: tuple | None = None
    dropped: tuple | None = None
    binned_offsets: int = 1

    def __post_init__(self) -> None:
        if self.dropped is not None and self.binned is None:
            raise ConfigError("learned weights: a table that weighs what the gain dropped "
                              "weighs the binned pass too (binned)")
        snr = np.asarray(self.snr, np.float64)
        rows = [np.asarray(getattr(self, name), np.float64) for name in self.parts]
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
        for name, table in zip(self.parts, rows, strict=True):
            top = PARTS[name]
            if table.shape != (snr.size, BANDS + 1) or not np.all(np.isfinite(table)):
                raise ConfigError(f"learned weights: {name} must hold {snr.size} rows of "
                                  f"{BANDS + 1} finite weights, not shape {table.shape}")
            if table.min() < 0 or table.max() > top:
                raise ConfigError(f"learned weights: {name} weights must lie in [0, {top}], "
                                  f"not [{table.min():.3g}, {table.max():.3g}]")
        if type(self.binned_offsets) is not int or self.binned_offsets not in (1, 4):
            raise ConfigError(f"learned weights: binned_offsets={self.binned_offsets!r} must be "
                              "the whole number 1 or 4 (starts of the binned pass's blocks)")
        if self.binned is None and self.binned_offsets != 1:
            raise ConfigError(f"learned weights: binned_offsets={self.binned_offsets} is for a "
                              "table that weighs the binned pass (binned); without it, 1")
        if isinstance(self.micrographs, bool) or not isinstance(self.micrographs, int) \
                or self.micrographs < 0:
            raise ConfigError(f"learned weights: micrographs={self.micrographs!r} must be a "
                              "count")
        object.__setattr__(self, "snr", tuple(float(s) for s in snr))
        if self.pixel_size is not None:
            object.__setattr__(self, "pixel_size", tuple(float(p) for p in pixel))
        for name, table in zip(self.parts, rows, strict=True):
            object.__setattr__(self, name, tuple(tuple(float(v) for v in row) for row in table))

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts the table weighs, in the order :meth:`at` gives their weights."""
        return tuple(PARTS)[: 2 if self.binned is None else 3 if self.dropped is None else 4]

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
        groups = [self._rows([p == size for p in self.pixel_size]) for size in sizes]
        t = float(np.interp(math.log(size), np.log(sizes), np.arange(len(sizes))))
        lo = int(math.floor(t))
        hi = min(lo + 1, len(sizes) - 1)
        w = t - lo
        snr = sorted({s for g in (groups[lo], groups[hi]) for s in g.snr})
        looked = [[np.asarray(g.at(s)) for s in snr] for g in (groups[lo], groups[hi])]
        tops = [PARTS[name] for name in self.parts]  # a mix of two bounds can round past one
        mixed = [[np.clip((1 - w) * a + w * b, 0, top)
                  for a, b, top in zip(lo_row, hi_row, tops, strict=True)]
                 for lo_row, hi_row in zip(*looked, strict=True)]
        return LearnedWeights(tuple(snr), **{name: tuple(m[i] for m in mixed)
                                             for i, name in enumerate(self.parts)},
                              micrographs=self.micrographs, binned_offsets=self.binned_offsets)

    def _rows(self, keep: list[bool]) -> LearnedWeights:
        """The table by ratio alone of the rows ``keep`` marks."""
        return LearnedWeights(tuple(v for v, k in zip(self.snr, keep, strict=True) if k),
                              **{name: tuple(v for v, k in zip(getattr(self, name), keep,
                                                               strict=True) if k)
                                 for name in self.parts}, binned_offsets=self.binned_offsets)

    def at(self, snr: float, pixel_size: float | None = None) -> tuple[np.ndarray, ...]:
        """The weights of each part (:attr:`parts`) for a micrograph of measured ratio
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
        return tuple((1 - w) * table[lo] + w * table[hi]
                     for table in (np.asarray(getattr(self, name)) for name in self.parts))

    def to_dict(self) -> dict:
        """JSON values (a run record's ``learned_weights`` entries)."""
        return {"snr": list(self.snr), "linear": [list(r) for r in self.linear],
                "rest": [list(r) for r in self.rest], "micrographs": self.micrographs,
                **({} if self.pixel_size is None else {"pixel_size": list(self.pixel_size)}),
                **{name: [list(r) for r in getattr(self, name)] for name in self.parts[2:]},
                **({} if self.binned_offsets == 1 else {"binned_offsets": self.binned_offsets})}

    @classmethod
    def from_dict(cls, data: dict) -> LearnedWeights:
        """The table of :meth:`to_dict`'s values; a :class:`ConfigError` for anything else."""
        keys = {"snr", "linear", "rest", "micrographs"}
        extra = {"pixel_size", "binned", "dropped", "binned_offsets"}
        if not isinstance(data, dict) or not keys <= set(data) <= keys | extra:
            raise ConfigError("learned weights: need the keys snr, linear, rest and "
                              "micrographs (and optionally pixel_size, binned, dropped and "
                              "binned_offsets), not "
                              f"{sorted(data) if isinstance(data, dict) else data!r}")
        try:
            pixel, binned, dropped = (data.get(k) for k in ("pixel_size", "binned", "dropped"))
            return cls(tuple(data["snr"]), tuple(map(tuple, data["linear"])),
                       tuple(map(tuple, data["rest"])), data["micrographs"],
                       None if pixel is None else tuple(pixel),
                       None if binned is None else tuple(map(tuple, binned)),
                       None if dropped is None else tuple(map(tuple, dropped)),
                       data.get("binned_offsets", 1))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"learned weights: not a table of numbers ({exc})") from None


def weights_for(record, ensemble: bool) -> LearnedWeights | None:
    """The table a run's record holds for its network run once or as the 8-fold ensemble
    (``record.learned_weights``: ``{"ensemble": …, "single": …}``), or None."""
    tables = getattr(record, "learned_weights", None) or {}
    entry = tables.get("ensemble" if ensemble else "single")
    return None if entry is None else LearnedWeights.from_dict(entry)


def binned_offsets(record, ensemble: bool) -> int:
    """How many starts of the 2×2 blocks the binned pass averages for the table of
    :func:`weights_for` (:attr:`LearnedWeights.binned_offsets`; 1 without a table)."""
    table = weights_for(record, ensemble)
    return 1 if table is None else table.binned_offsets


def __getattr__(name: str):
    """The fit's names (:mod:`cryostream.denoise.weights_fit`), importable from here too."""
    if name in ("WeightSums", "weight_sums", "fit_learned_weights", "scale_by_pixel_size"):
        from cryostream.denoise import weights_fit

        return getattr(weights_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
