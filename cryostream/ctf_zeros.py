"""The noise of a micrograph read where its fitted CTF is zero (:func:`noise_at_zeros`): there
the micrograph holds no signal, whatever its specimen."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryostream.ctf import THON_RING_COEFFICIENTS, CTFFit, ctf_squared
from cryostream.spectral import frequencies

__all__ = ["noise_at_zeros", "ZERO_CTF2"]


#: Where a fit's ``CTF²`` is under this, a coefficient of the micrograph holds (almost) only
#: noise: :func:`noise_at_zeros` reads the noise there.
ZERO_CTF2 = 0.02


def noise_at_zeros(spectrum: np.ndarray, shape: tuple[int, int], fit: CTFFit, noise, *,
                   low_angstrom: float = 20.0, pool: float = 1 / 32, min_count: int = 200):
    """The measured noise ``noise`` brought down, ring by ring, to the power the micrograph
    shows where ``fit``'s CTF is zero, and that ratio.

    :func:`cryostream.matched.estimate_noise` takes a micrograph's finest scales to be noise.
    Where the signal reaches them (a specimen that keeps contrast out to Nyquist, a micrograph
    at high dose and a fine pixel) it counts that signal in, and every gain built on it
    smooths too much. Where the CTF is zero (``CTF² <`` :data:`ZERO_CTF2`) the micrograph
    holds no signal whatever its specimen, so the power there is the noise. Per ring above
    ``low_angstrom`` and out to the shorter side's Nyquist, the power of those coefficients
    over the measured noise, pooled over ``pool`` cycles/px (a few zeros are too few), is the
    factor the measured noise's radial profile and 2-D spectrum are scaled by (past Nyquist,
    the factor at Nyquist). It is 1 below ``low_angstrom``, where fewer than ``min_count``
    coefficients are zeros, and where the pooled ratio is within two standard errors of 1 or
    above it: the measured noise stays an upper bound, and a fit whose zeros are not the
    micrograph's finds signal there (≥ 1) and changes little. (Simulated 2048² micrographs:
    the true noise within 4 % in every band, where the measured noise was up to 2.1× it.)

    ``spectrum`` is the ``rfft2`` of the mean-subtracted micrograph of ``shape``, read every
    few rows as :func:`thon_ring_z` does; ``noise`` its
    :class:`~cryostream.matched.NoiseEstimate` in the same units. Returns ``(estimate,
    ratio)``: the scaled estimate and the factor per ring of ``shape`` (ring ``r`` at
    ``r / min(shape)`` cycles/px).
    """
    from scipy.ndimage import uniform_filter1d

    step = max(1, math.ceil(spectrum.size / THON_RING_COEFFICIENTS))
    ky, kx = frequencies(shape, "rfft", pixel_size_angstrom=fit.pixel_size_angstrom)
    k2 = ky[::step] ** 2 + kx**2
    side = min(shape)
    rings = side // 2 + 1
    ring = np.rint(np.sqrt(k2) * (fit.pixel_size_angstrom * side))
    # the corners past the shorter side's Nyquist are left out: the noise measured at
    # Nyquist is not theirs (it falls further there on real detectors)
    zero = ((ctf_squared(shape, fit, row_step=step) < ZERO_CTF2) & (k2 >= low_angstrom ** -2)
            & (ring < rings))
    ring = ring[zero].astype(np.int64)
    values = spectrum[::step][zero]
    power = values.real.astype(np.float64) ** 2 + values.imag.astype(np.float64) ** 2
    measured = noise.ring_power(shape, rings)
    relative = power / np.maximum(measured[ring], 1e-30)
    width = max(1, round(pool * side)) | 1  # odd: centred on its ring
    summed = uniform_filter1d(np.bincount(ring, relative, rings), width, mode="constant")
    count = uniform_filter1d(np.bincount(ring, minlength=rings).astype(np.float64), width,
                             mode="constant") * width
    pooled = summed * width / np.maximum(count, 1)
    # a ratio is taken only where it is clearly under 1: noise alone reads 1 ± 1/√count (the
    # power of one coefficient over its mean is exponential), and clipping that at 1 would
    # lower the noise of every micrograph a little
    below = (count >= min_count) & (pooled < 1 - 2 / np.sqrt(np.maximum(count, 1)))
    ratio = np.where(below, pooled, 1.0)
    ratio[:math.ceil(side * fit.pixel_size_angstrom / low_angstrom)] = 1.0  # below low_angstrom
    grid = np.arange(rings) / side  # cycles/px of each ring
    tile = 2 * noise.radial.size
    centred = np.fft.fftshift(np.fft.fftfreq(tile))
    psd = (noise.psd * np.interp(np.hypot(centred[:, None], centred[None, :]), grid, ratio)
           ).astype(np.float32)
    variance = noise.variance * float(psd.mean(dtype=np.float64)
                                      / max(noise.psd.mean(dtype=np.float64), 1e-30))
    radial = noise.radial * np.interp(np.arange(noise.radial.size) / tile, grid, ratio)
    scaled = dataclasses.replace(noise, psd=psd, variance=variance, radial=radial.astype(np.float32))
    return scaled, ratio
