"""Power spectra of micrographs: Welch-averaged 2-D spectra and radial averages, and the CTF."""

from __future__ import annotations

import math

import numpy as np

from cryostream.simulate.micrograph import electron_wavelength

__all__ = ["power_spectrum", "radial_average", "ctf_1d"]


def power_spectrum(image: np.ndarray, tile: int = 512) -> np.ndarray:
    """Welch-averaged power spectrum (centred, shape (tile, tile)) of non-overlapping tiles.

    Each tile has its mean removed and a Hann window applied; this is what shows Thon rings
    in a noisy micrograph.
    """
    ny, nx = image.shape
    if ny < tile or nx < tile:
        raise ValueError(f"image {ny} × {nx} is smaller than the tile {tile}")
    window = np.outer(np.hanning(tile), np.hanning(tile)).astype(np.float32)
    acc = np.zeros((tile, tile), dtype=np.float64)
    count = 0
    for y in range(0, ny - tile + 1, tile):
        for x in range(0, nx - tile + 1, tile):
            t = image[y : y + tile, x : x + tile].astype(np.float32)
            acc += np.abs(np.fft.fft2((t - t.mean()) * window)) ** 2
            count += 1
    return np.fft.fftshift(acc / count)


def radial_average(spectrum: np.ndarray, pixel_size_angstrom: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged centred square spectrum: (frequencies in 1/Å, mean power per ring)."""
    n = spectrum.shape[0]
    y, x = np.indices(spectrum.shape) - n // 2
    r = np.hypot(y, x).round().astype(np.int64)
    sums = np.bincount(r.ravel(), weights=spectrum.ravel())
    counts = np.bincount(r.ravel())
    rings = n // 2
    freq = np.arange(rings) / (n * pixel_size_angstrom)
    return freq, sums[:rings] / np.maximum(counts[:rings], 1)


def ctf_1d(
    freq: np.ndarray,
    defocus_angstrom: float,
    *,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
) -> np.ndarray:
    """The (unastigmatic) phase-contrast transfer function at spatial frequencies ``freq`` (1/Å)."""
    lam = electron_wavelength(voltage_kv)
    k2 = np.asarray(freq, dtype=np.float64) ** 2
    chi = math.pi * lam * defocus_angstrom * k2 - 0.5 * math.pi * cs_mm * 1e7 * lam**3 * k2**2
    q = amplitude_contrast
    return -(math.sqrt(1 - q * q) * np.sin(chi) + q * np.cos(chi))
