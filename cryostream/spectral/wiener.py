"""Linear gains per ring of spatial frequency: the Wiener gain from measured powers, and the
regression gain of one spectrum on another."""

from __future__ import annotations

import numpy as np

__all__ = ["wiener_gain", "ring_regression", "GAIN_FLOOR"]

#: The least gain ``denoise`` gives a ring of the micrograph (the radial Wiener gain), or a
#: band at the CTF's peaks (the CTF-shaped gain, :func:`cryostream.ctf.ctf_wiener_gain`):
#: where the measured power falls under the noise, 1 % of the micrograph instead of nothing.
#: Scaled to 0, a ring keeps none of the micrograph's correlation with the specimen (its FRC
#: falls to 0); at 1 % it keeps it, for 10⁻⁴ of that ring's noise power in error.
#: (:func:`wiener_gain` itself, and the baseline ``cryostream.baselines.wiener_measured``,
#: keep the textbook clip at 0.)
GAIN_FLOOR = 0.01


def wiener_gain(power, noise_power):
    """The Wiener gain from the total power and the noise power: ``clip(1 − N / P, 0, 1)``.

    With ``P = S + N`` (signal and noise uncorrelated) this is ``S / (S + N)``, the gain of
    the least-squares linear filter; it needs no signal model, only the measured noise
    ``N`` (e.g. :meth:`cryostream.matched.NoiseEstimate.ring_power`) and the image's power.

    Parameters
    ----------
    power, noise_power : float or ndarray
        Total power ``P`` and noise power ``N`` (same units, e.g. ``|F|²`` summed or averaged
        over each ring), broadcasting together.

    Returns
    -------
    float or ndarray of float64
        The gain in [0, 1]; 0 where ``P`` is 0 and ``N`` is not.

    Examples
    --------
    >>> wiener_gain(np.array([4.0, 1.0, 2.0]), np.array([1.0, 1.0, 3.0]))
    array([0.75, 0.  , 0.  ])
    """
    return np.clip(1 - noise_power / np.maximum(power, 1e-30), 0.0, 1.0)


def ring_regression(estimate: np.ndarray, image: np.ndarray, bins: np.ndarray,
                    weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per bin of rings, the regression gain of the spectrum ``estimate`` on the spectrum
    ``image``: ``g = Re⟨E, Y⟩ / ⟨Y, Y⟩``.

    ``E = g·Y + R`` with ``R`` uncorrelated with ``Y`` over each bin.

    Parameters
    ----------
    estimate, image : (ny, nx // 2 + 1) complex ndarray
        ``rfft2`` of the two (mean-subtracted) images, ``E`` and ``Y``.
    bins : (ny, nx // 2 + 1) ndarray of int
        The bin of each coefficient (:attr:`~cryostream.spectral.MergedRings.bins`).
    weight : (ny, nx // 2 + 1) ndarray of float32
        Each coefficient's weight in a sum over the full spectrum
        (:func:`~cryostream.spectral.rfft_weight`).

    Returns
    -------
    gain : (bins,) ndarray of float64
        ``g`` per bin (0 where ``⟨Y, Y⟩`` is 0).
    power : (bins,) ndarray of float64
        ``⟨Y, Y⟩`` per bin: the image's power summed over the full spectrum.
    """
    flat = bins.ravel()
    power = np.bincount(flat, (weight * (image.real**2 + image.imag**2)).ravel())
    cross = np.bincount(flat, (weight * (estimate.real * image.real
                                         + estimate.imag * image.imag)).ravel())
    return cross / np.maximum(power, 1e-30), power
