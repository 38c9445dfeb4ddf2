"""Rings of spatial frequency: which ring each Fourier coefficient of a 2-D spectrum lies on.

One convention everywhere: the radius of a coefficient is its spatial frequency times the
image's *shorter* side, rounded to the nearest integer (half to even), so ring ``r`` holds the
coefficients at ``r / min(ny, nx)`` cycles per pixel (:func:`ring_frequencies`). A spectrum
comes in one of three layouts:

``"rfft"``
    ``scipy.fft.rfft2`` of an image of ``shape``: ``(ny, nx // 2 + 1)``, zero frequency at
    ``[0, 0]``; each column but the first (and the last, for even ``nx``) stands for a
    conjugate pair of the full spectrum (:func:`rfft_weight`).
``"fft"``
    ``fft2``: ``(ny, nx)``, zero frequency at ``[0, 0]``.
``"centred"``
    ``fftshift(fft2)``: ``(ny, nx)``, zero frequency at ``[ny // 2, nx // 2]``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = ["LAYOUTS", "frequencies", "ring_index", "ring_frequencies", "radial_mean",
           "radial_average", "rfft_weight", "MergedRings", "merge_rings", "KEPT_GRIDS",
           "forget_grids"]

LAYOUTS = ("rfft", "fft", "centred")


def frequencies(shape: tuple[int, int], layout: str = "rfft", *,
                pixel_size_angstrom: float = 1.0, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequency of each row and each column of a 2-D spectrum.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the *image* the spectrum is of.
    layout : {"rfft", "fft", "centred"}
        Layout of the spectrum (see the module docstring).
    pixel_size_angstrom : float
        Pixel size in Å; the default 1 gives cycles per pixel.
    dtype : numpy floating type
        Type of the result (``np.float32`` halves the memory on whole micrographs).

    Returns
    -------
    fy : (ny, 1) ndarray of ``dtype``
        Frequency of each row, in 1/Å (cycles per pixel for a pixel size of 1).
    fx : (1, nx) or (1, nx // 2 + 1) ndarray of ``dtype``
        Frequency of each column.
    """
    ny, nx = _check(shape, layout)
    fy = np.fft.fftfreq(ny, d=pixel_size_angstrom)
    fx = (np.fft.rfftfreq if layout == "rfft" else np.fft.fftfreq)(nx, d=pixel_size_angstrom)
    if layout == "centred":
        fy, fx = np.fft.fftshift(fy), np.fft.fftshift(fx)
    return fy.astype(dtype)[:, None], fx.astype(dtype)[None, :]


def ring_index(shape: tuple[int, int], layout: str = "rfft", *, dtype=np.float64) -> np.ndarray:
    """The ring of every coefficient of a 2-D spectrum.

    The radius ``√(fy² + fx²) · min(ny, nx)`` (frequencies in cycles per pixel), rounded to
    the nearest integer, half to even. Rings run out to the corners (about ``0.71 · min``);
    clip with ``np.minimum(ring, min(shape) // 2)`` to stop at the shorter side's Nyquist.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the image.
    layout : {"rfft", "fft", "centred"}
        Layout of the spectrum (see the module docstring).
    dtype : numpy floating type
        Precision the frequencies and the radius are held in before rounding: ``np.float64``
        (the default), or ``np.float32`` (as the denoising steps use on whole micrographs;
        on a 7676 × 7420 image about one coefficient in 7500, those within ~1e-4 of a
        half-integer radius, lands on the neighbouring ring).

    Returns
    -------
    ndarray of int64
        Shape ``(ny, nx // 2 + 1)`` for ``"rfft"``, else ``(ny, nx)``; read-only, shared by
        the calls for the same grid (copy it to change it).

    Examples
    --------
    >>> ring_index((4, 4), "centred")
    array([[3, 2, 2, 2],
           [2, 1, 1, 1],
           [2, 1, 0, 1],
           [2, 1, 1, 1]])
    """
    return _ring_index(_check(shape, layout), layout, np.dtype(dtype))


#: Grids :func:`ring_index` and :func:`merge_rings` keep (the last few shapes asked for): the
#: denoising steps ask for the same whole-micrograph grid about ten times per micrograph, and
#: the micrographs in flight share one.
KEPT_GRIDS = 4


def forget_grids() -> None:
    """Let go of the grids :func:`ring_index` and :func:`merge_rings` keep (the last
    :data:`KEPT_GRIDS` of each; a full-size micrograph's hold about 340 MB), in a long-lived
    process done with micrographs of those sizes."""
    _ring_index.cache_clear()
    _merge_rings.cache_clear()


@functools.lru_cache(maxsize=KEPT_GRIDS)
def _ring_index(shape: tuple[int, int], layout: str, dtype: np.dtype) -> np.ndarray:
    """:func:`ring_index`, made once per shape, layout and type and shared (read-only)."""
    fy, fx = frequencies(shape, layout, dtype=dtype)
    radius = np.sqrt(fy.astype(np.float64) ** 2 + fx.astype(np.float64) ** 2).astype(dtype)
    radius *= dtype.type(min(shape))
    ring = np.rint(radius).astype(np.int64)
    ring.flags.writeable = False
    return ring


def ring_frequencies(shape: tuple[int, int], rings: int, pixel_size_angstrom: float = 1.0) -> np.ndarray:
    """Spatial frequency of rings ``0 … rings − 1`` of an image of ``shape``.

    Returns
    -------
    (rings,) ndarray of float64
        ``r / (min(shape) · pixel_size_angstrom)``: 1/Å, or cycles per pixel for a pixel
        size of 1.
    """
    return np.arange(rings) / (min(shape) * pixel_size_angstrom)


def radial_mean(values: np.ndarray, ring: np.ndarray, rings: int | None = None) -> np.ndarray:
    """Mean of ``values`` over each ring: the radial average of a spectrum.

    Parameters
    ----------
    values : ndarray
        Real values on a spectrum's grid (e.g. power ``|F|²``), any float type.
    ring : ndarray of int
        The ring of each value, same shape (:func:`ring_index`).
    rings : int, optional
        Number of rings returned (``0 … rings − 1``); by default up to the largest in ``ring``.

    Returns
    -------
    (rings,) ndarray of float64
        The mean over each ring, summed in float64; 0 for a ring that holds no value.
    """
    flat = np.asarray(ring).ravel()
    count = int(flat.max()) + 1 if rings is None else max(int(rings), int(flat.max()) + 1)
    sums = np.bincount(flat, np.asarray(values, np.float64).ravel(), minlength=count)
    means = sums / np.maximum(np.bincount(flat, minlength=count), 1)
    return means if rings is None else means[:rings]


def radial_average(spectrum: np.ndarray, pixel_size_angstrom: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Radial average of a centred 2-D spectrum (e.g. :func:`~cryostream.spectral.welch_spectrum`)
    out to the shorter side's Nyquist, for plots.

    Parameters
    ----------
    spectrum : (ny, nx) ndarray
        A real spectrum in the ``"centred"`` layout.
    pixel_size_angstrom : float
        Pixel size in Å (1: frequencies in cycles per pixel).

    Returns
    -------
    frequency : (min(ny, nx) // 2,) ndarray of float64
        Spatial frequency of each ring in 1/Å (:func:`ring_frequencies`).
    mean : (min(ny, nx) // 2,) ndarray of float64
        Mean of ``spectrum`` over each ring (:func:`radial_mean`).
    """
    rings = min(spectrum.shape) // 2
    mean = radial_mean(spectrum, ring_index(spectrum.shape, "centred"), rings)
    return ring_frequencies(spectrum.shape, rings, pixel_size_angstrom), mean


def rfft_weight(shape: tuple[int, int]) -> np.ndarray:
    """Weight of each ``rfft2`` coefficient of an image of ``shape`` in a sum over the full
    spectrum.

    Returns
    -------
    (ny, nx // 2 + 1) ndarray of float32
        2 for the columns that stand for a conjugate pair, 1 for the first column and, when
        ``nx`` is even, the last (the Nyquist column).
    """
    ny, nx = _check(shape, "rfft")
    weight = np.full((ny, nx // 2 + 1), 2.0, np.float32)
    weight[:, 0] = 1.0
    if nx % 2 == 0:
        weight[:, -1] = 1.0
    return weight


class MergedRings(NamedTuple):
    """Rings of an ``rfft2`` merged into bins (:func:`merge_rings`).

    Attributes
    ----------
    ring : (ny, nx // 2 + 1) ndarray of int64
        The ring of each coefficient (:func:`ring_index`, ``"rfft"``, float32).
    merged : (rings,) ndarray of int64
        The bin of each ring.
    weight : (ny, nx // 2 + 1) ndarray of float32
        Each coefficient's weight in a sum over the full spectrum (:func:`rfft_weight`).
    """

    ring: np.ndarray
    merged: np.ndarray
    weight: np.ndarray

    @property
    def bins(self) -> np.ndarray:
        """The bin of each coefficient, ``(ny, nx // 2 + 1)`` int64."""
        return self.merged[self.ring]


def merge_rings(shape: tuple[int, int], min_coefficients: int = 128) -> MergedRings:
    """Rings of an ``rfft2`` of ``shape`` merged from the centre out until each bin holds
    ``min_coefficients`` coefficients.

    Bin 0 is the mean alone; rings 1, 2, … join the current bin until it holds at least
    ``min_coefficients`` ``rfft2`` coefficients, then a new bin starts (the last bin may hold
    fewer). Sums over a bin weighted by :attr:`MergedRings.weight` are sums over the full
    spectrum.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` of the image.
    min_coefficients : int
        Least number of ``rfft2`` coefficients per bin.

    Returns
    -------
    MergedRings
        ``(ring, merged, weight)``; ``.bins`` is the bin of each coefficient. The arrays are
        read-only, shared by the calls for the same grid (the last :data:`KEPT_GRIDS`; a
        7676 × 7420 micrograph's ``ring`` and ``weight`` hold about 340 MB).
    """
    return _merge_rings(_check(shape, "rfft"), int(min_coefficients))


@functools.lru_cache(maxsize=KEPT_GRIDS)
def _merge_rings(shape: tuple[int, int], min_coefficients: int) -> MergedRings:
    """:func:`merge_rings`, made once per shape and bin size and shared (read-only)."""
    ring = ring_index(shape, "rfft", dtype=np.float32)
    sizes = np.bincount(ring.ravel())
    merged = np.zeros(sizes.size, np.int64)
    current, held = 1, 0
    for r in range(1, sizes.size):
        merged[r] = current
        held += sizes[r]
        if held >= min_coefficients:
            current, held = current + 1, 0
    weight = rfft_weight(shape)
    merged.flags.writeable = weight.flags.writeable = False
    return MergedRings(ring, merged, weight)


def _check(shape, layout) -> tuple[int, int]:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: must be one of {', '.join(map(repr, LAYOUTS))}")
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape={tuple(shape)}: must be (ny, nx) of a 2-D image")
    return int(shape[0]), int(shape[1])
