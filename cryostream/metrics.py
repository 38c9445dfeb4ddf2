"""Image quality: PSNR (peak 1.0 = the normalising percentile) and the Gaussian low-pass baseline."""

from __future__ import annotations

import numpy as np
import scipy.ndimage

__all__ = ["psnr", "best_gaussian"]


def psnr(estimate: np.ndarray, reference: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels: ``10 log10(peak² / MSE)``."""
    mse = float(np.mean((np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def best_gaussian(noisy: np.ndarray, reference: np.ndarray,
                  sigmas: tuple[float, ...] = (0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8)) -> tuple[float, float]:
    """The Gaussian low-pass (σ in pixels, per patch of a (n, y, x) stack) with the best PSNR.

    Returns ``(psnr_db, sigma)``. An oracle baseline: σ is chosen with the reference.
    """
    noisy = np.asarray(noisy, np.float32)
    best = (psnr(noisy, reference), 0.0)
    for sigma in sigmas:
        axes_sigma = (0,) + (sigma,) * (noisy.ndim - 1)
        value = psnr(scipy.ndimage.gaussian_filter(noisy, axes_sigma), reference)
        if value > best[0]:
            best = (value, float(sigma))
    return best
