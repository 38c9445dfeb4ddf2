"""The Welch power spectrum of a micrograph: the mean periodogram of square tiles."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cryostream.spectral.rings import LAYOUTS

__all__ = ["hann_window", "tile_starts", "welch_spectrum"]


def hann_window(tile: int) -> np.ndarray:
    """The 2-D Hann window of a ``tile`` × ``tile`` tile: ``(tile, tile)`` float32, the outer
    product of ``numpy.hanning(tile)`` with itself."""
    return np.outer(np.hanning(tile), np.hanning(tile)).astype(np.float32)


def tile_starts(n: int, tile: int, most: int | None = None) -> np.ndarray:
    """Starts of the non-overlapping tiles along an axis of ``n`` pixels.

    All of ``0, tile, 2·tile, …`` that fit; with ``most``, at most that many of them, spread
    evenly from the first to the last.

    Returns
    -------
    ndarray of int
        Pixel offsets, increasing.
    """
    starts = np.arange(0, n - tile + 1, tile)
    if most is not None and len(starts) > most:
        starts = starts[np.linspace(0, len(starts) - 1, most).round().astype(int)]
    return starts


def welch_spectrum(image: np.ndarray, tile: int = 512, *, window: bool = True,
                   most: int | None = None, layout: str = "centred", normalise: bool = False,
                   per_tile: Callable[[float, np.ndarray], object] | None = None):
    """Welch power spectrum of a 2-D image: the mean periodogram of its ``tile × tile`` tiles.

    Each non-overlapping tile (row by row; :func:`tile_starts` along each axis) is taken in
    float32, its mean (summed in float64, rounded to float32) subtracted, optionally multiplied
    by the Hann window, and Fourier transformed (``numpy.fft``, in float32); the periodograms
    ``|F|²`` are averaged in float64.

    Parameters
    ----------
    image : (ny, nx) array
        The micrograph, any real type (taken as float32).
    tile : int
        Side of the square tiles in pixels; the image must hold at least one.
    window : bool
        Multiply each tile by the Hann window (:func:`hann_window`) before the transform
        (the default): less leakage from the tile edges, what shows Thon rings in a noisy
        micrograph. Off: the plain periodogram.
    most : int, optional
        Use at most ``most`` × ``most`` tiles, spread evenly over the image (default: all).
    layout : {"centred", "fft", "rfft"}
        Layout of the result (:mod:`cryostream.spectral.rings`): ``fft2`` with zero frequency
        at the centre (the default), ``fft2``, or ``rfft2`` (the cheapest).
    normalise : bool
        Divide each periodogram by the window's energy ``Σ w²`` (``tile²`` without a window),
        so that the spectrum is in variance per frequency bin (white noise of variance σ²
        reads σ²). Off: ``|F|²`` of the unnormalised transform.
    per_tile : callable, optional
        Called as ``per_tile(mean, periodogram)`` for each tile, with the tile's float64 mean
        and its float32 periodogram (normalised as the result, in the ``"rfft"`` layout for
        ``"rfft"``, else uncentred ``"fft"``); its results are returned, in tile order.

    Returns
    -------
    spectrum : ndarray of float64
        ``(tile, tile // 2 + 1)`` for ``"rfft"``, else ``(tile, tile)``.
    per_tile_results : list
        Only when ``per_tile`` is given.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: must be one of {', '.join(map(repr, LAYOUTS))}")
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < tile or tile < 2:
        raise ValueError(f"image of shape {image.shape}: needs at least one {tile} × {tile} tile "
                         "(pass a smaller tile)")
    taper = hann_window(tile) if window else None
    norm = float((taper.astype(np.float64) ** 2).sum()) if window else float(tile * tile)
    transform = np.fft.rfft2 if layout == "rfft" else np.fft.fft2
    total = np.zeros((tile, tile // 2 + 1) if layout == "rfft" else (tile, tile), np.float64)
    results, count = [], 0
    ny, nx = image.shape
    for y in tile_starts(ny, tile, most):
        for x in tile_starts(nx, tile, most):
            t = image[y : y + tile, x : x + tile].astype(np.float32)
            mean = float(t.mean(dtype=np.float64))
            t = t - np.float32(mean)
            if taper is not None:
                t *= taper
            p = np.abs(transform(t)) ** 2
            if normalise:
                p /= norm
            total += p
            count += 1
            if per_tile is not None:
                results.append(per_tile(mean, p))
    spectrum = total / count
    if layout == "centred":
        spectrum = np.fft.fftshift(spectrum)
    return spectrum if per_tile is None else (spectrum, results)
