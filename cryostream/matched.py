"""Matched noise: each micrograph's own noise, measured, then synthesised with its statistics.

A frame-averaged micrograph's noise is not white: the detector response, motion correction
and binning shape its power spectrum, and shot noise makes its strength follow the local
intensity. Training the reference plan's way (noise added to real micrographs) and the Noisier2Noise
correction are only sound when the added noise has the statistics of the micrograph's own.

**Estimation** (:func:`estimate_noise`, one micrograph at a time, as ``prepare`` reads it):

* the Welch power spectrum of Hann-windowed ``TILE`` × ``TILE`` tiles (at most 8 × 8 of
  them, spread evenly), in variance per frequency bin (white noise of variance σ² reads σ²
  everywhere; :func:`cryostream.spectral.welch_spectrum`);
* the radial noise spectrum is the smooth floor of the radial power: a grey opening (9 rings,
  in log power) removes the Thon-ring bumps that the signal adds, rescaled so that over the
  high band (0.25–0.5 cycles per pixel, where the signal has faded) it averages to the
  measured power; below ``low_cut`` (20 Å by default), where particles and ice dominate, the
  floor is held at its value there;
* below the high band, where the signal adds 10–30 % to that floor, the noise is the high
  band's three-term cosine series ``Σ c_n cos(2π n f)`` (a detector's noise power is smooth,
  even and periodic in frequency) carried down, bounded by the band's first value and the
  floor (:func:`_below_the_band`);
* the 2-D noise spectrum is the radial one times a smoothed anisotropy map (the measured 2-D
  power over its ring average, outside ``low_cut``), so detector anisotropy is kept;
* the shot-noise share comes from the variance–mean relation over tiles (high-band power
  against tile mean, a straight line through the tiles); when the tiles' means spread too
  little for a fit, all noise is taken as shot noise, as on counting detectors.

**Synthesis** (one definition for NumPy and JAX): ``m = α · k ∗ (g ⊙ w)`` where ``w`` is white
unit Gaussian noise, ``g = sqrt((1 - s) + s · max(y, 0) / ȳ)`` follows the target ``y`` like
shot noise (``s`` the shot share, ``ȳ`` the micrograph mean) and ``k`` is the real, symmetric
``(2R + 1)²`` kernel whose power spectrum is the measured 2-D noise spectrum
(:func:`noise_kernel`). The added noise then has ``α²`` times the micrograph's own noise power
at every frequency, which is the Noisier2Noise correction's ``α²``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.ndimage import gaussian_filter, grey_opening, uniform_filter1d

from cryostream.spectral import radial_mean, ring_frequencies, ring_index, welch_spectrum

__all__ = ["TILE", "WELCH_TILES", "NoiseEstimate", "estimate_noise", "tile_for", "noise_kernel", "modulation",
           "matched_noise", "matched_noise_image", "matched_noise_jax"]

TILE = 256
#: At most this many × this many tiles, spread evenly, make an estimate's Welch spectrum.
WELCH_TILES = 8
_OPENING_RINGS = 9
_HIGH_BAND = (0.25, 0.5)  # cycles/pixel where the variance–mean fit reads the noise
_MIN_MEAN_SPREAD = 0.01   # relative spread of tile means below which the fit is not tried
_COSINE_TERMS = 3         # terms of the series that carries the high band's noise down


@dataclasses.dataclass(frozen=True)
class NoiseEstimate:
    """The measured noise of one micrograph (intensities in the units it was measured in).

    Attributes
    ----------
    psd : (TILE, TILE) float32
        Centred 2-D noise power spectrum, variance per frequency bin (its mean is the variance).
    radial : (TILE // 2,) float32
        Radially averaged noise power, ring ``i`` at ``i / TILE`` cycles per pixel.
    total_radial : (TILE // 2,) float32
        Radially averaged power of the micrograph itself (signal and noise).
    variance, mean : float
        Noise variance and micrograph mean.
    shot_fraction : float
        Share of the noise variance proportional to the local mean (shot noise).
    shot_fitted : bool
        Whether ``shot_fraction`` comes from the variance–mean fit (else it is 1 by default).
    equivalent_dose : float
        Counts per pixel that would give the shot part as pure Poisson noise: ``mean² /
        (shot_fraction · variance)`` (``inf`` without shot noise).
    anisotropy : float
        Peak-to-peak angular variation of the noise power outside ``low_cut``, relative.
    """

    psd: np.ndarray
    radial: np.ndarray
    total_radial: np.ndarray
    variance: float
    mean: float
    shot_fraction: float
    shot_fitted: bool
    equivalent_dose: float
    anisotropy: float

    def scaled(self, factor: float) -> NoiseEstimate:
        """The same estimate for intensities multiplied by ``factor`` (e.g. 1 / percentile)."""
        f2 = np.float32(factor * factor)
        return dataclasses.replace(
            self, psd=self.psd * f2, radial=self.radial * f2, total_radial=self.total_radial * f2,
            variance=self.variance * float(f2), mean=self.mean * factor)

    @property
    def finite(self) -> bool:
        """Whether the spectra and variance are finite (a micrograph of values near 10¹⁸ and
        up overflows float32 in its power spectrum; ``equivalent_dose`` may be ``inf``)."""
        return all(np.isfinite(v).all() for v in (self.psd, self.radial, self.total_radial,
                                                  self.variance, self.mean))

    def ring_power(self, shape: tuple[int, int], rings: int) -> np.ndarray:
        """Noise power of rings ``0 … rings − 1`` of an image of ``shape`` (ring ``r`` at
        ``r / min(shape)`` cycles per pixel, :func:`cryostream.spectral.ring_index`), in the
        units of its unnormalised ``rfft2`` (``|F|²``): the radial spectrum interpolated."""
        tile = 2 * self.radial.size  # ring i of the estimate is at i / tile cycles per pixel
        return np.interp(ring_frequencies(shape, rings), ring_frequencies((tile, tile), self.radial.size),
                         self.radial) * (shape[0] * shape[1])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, arrays) -> NoiseEstimate:
        """The estimate :meth:`to_arrays` gave; a ``ValueError`` where it is not finite."""
        kw = {}
        for f in dataclasses.fields(cls):
            value = np.asarray(arrays[f.name])
            kw[f.name] = value.astype(np.float32) if value.ndim else value.item()
        kw["shot_fitted"] = bool(kw["shot_fitted"])
        estimate = cls(**kw)
        if not estimate.finite:  # an earlier version kept one that overflowed: measure it again
            raise ValueError("its spectra or variance are not finite")
        return estimate


def tile_for(shape: tuple[int, ...]) -> int:
    """The estimation tile for an image: ``TILE``, or the largest power of two that fits."""
    return min(TILE, 1 << (min(shape).bit_length() - 1))


def _profile(spectrum: np.ndarray, rings: np.ndarray) -> np.ndarray:
    """Mean of a centred square spectrum over each ring, out to the corners, rounded to float32."""
    return radial_mean(spectrum, rings).astype(np.float32)


def _welch(image: np.ndarray, tile: int, most: int = WELCH_TILES):
    """Mean windowed periodogram (centred, variance units), tile means, tile high-band power.

    At most ``most`` × ``most`` tiles, spread evenly over the image (a full-size micrograph
    has 812; 64 pin each ring beyond the eighth to ≈2 %, and cost ≈0.2 s).
    """
    rings = ring_index((tile, tile), "fft")  # the periodograms come uncentred
    high = (rings >= _HIGH_BAND[0] * tile) & (rings < _HIGH_BAND[1] * tile)
    power, stats = welch_spectrum(image, tile, most=most, normalise=True,
                                  per_tile=lambda mean, p: (mean, float(p[high].mean())))
    means, powers = np.array(stats).T
    return power, means, powers


def estimate_noise(image: np.ndarray, pixel_size_angstrom: float, *, low_cut_angstrom: float = 20.0,
                   tile: int = TILE) -> NoiseEstimate:
    """Measure the noise of one micrograph (see the module docstring for the method).

    ``image`` is 2-D; intensities stay in their units (use :meth:`NoiseEstimate.scaled` to
    normalise). It must hold at least one ``tile`` × ``tile`` block.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < tile:
        raise ValueError(f"image of shape {image.shape}: needs at least one {tile} × {tile} tile")
    power, means, powers = _welch(image, tile)
    rings = ring_index((tile, tile), "centred")
    profile = _profile(power, rings).astype(np.float64)
    cut = min(max(1, math.ceil(tile * pixel_size_angstrom / low_cut_angstrom)), tile // 4)
    floor = np.log(np.maximum(profile, 1e-30))
    floor[cut:] = uniform_filter1d(floor[cut:], 5, mode="nearest")  # tame the sampling scatter
    floor[cut:] = grey_opening(floor[cut:], size=_OPENING_RINGS, mode="nearest")
    floor[cut:] = uniform_filter1d(floor[cut:], 3, mode="nearest")
    floor[:cut] = floor[cut]
    noise_radial = np.exp(floor)
    # The opening also follows the sampling scatter down; where the signal has faded (the high
    # band) the floor must average to the measured power, which undoes that bias.
    high = slice(int(_HIGH_BAND[0] * tile), tile // 2)
    noise_radial *= max(1.0, float(profile[high].mean() / noise_radial[high].mean()))
    noise_radial = _below_the_band(noise_radial, profile, tile)

    ring_power = profile[rings]  # a ring of no power (the mean's, on small tiles) is neutral
    ratio = np.divide(power, ring_power, out=np.ones_like(power, dtype=np.float64),
                      where=ring_power > 0)
    ratio = gaussian_filter(ratio, 3.0, mode="nearest")
    outside = rings >= cut
    ratio = np.where(outside, ratio, 1.0)
    ratio /= _profile(ratio, rings)[rings]  # each ring averages to 1: only the angular shape stays
    psd = noise_radial[rings] * ratio
    psd = 0.5 * (psd + _mirror(psd))  # the spectrum of a real image: P(-k) = P(k)
    band = outside & (rings < tile // 2)
    angles = np.arctan2(*(np.indices((tile, tile)) - tile // 2))[band]
    sectors = np.bincount(((angles % np.pi) / np.pi * 8).astype(int) % 8, ratio[band], 8) \
        / np.maximum(np.bincount(((angles % np.pi) / np.pi * 8).astype(int) % 8, minlength=8), 1)
    anisotropy = float(sectors.max() - sectors.min())

    variance = float(psd.mean())
    mean = float(image.mean(dtype=np.float64))
    shot, fitted = 1.0, False
    if means.size >= 8 and means.std() > _MIN_MEAN_SPREAD * abs(means.mean()):
        slope, intercept = np.polyfit(means, powers, 1)
        predicted = slope * means.mean() + intercept
        if predicted > 0:
            shot, fitted = float(np.clip(slope * means.mean() / predicted, 0.0, 1.0)), True
    dose = mean * mean / (shot * variance) if shot > 0 and variance > 0 else math.inf
    half = tile // 2
    return NoiseEstimate(
        psd=psd.astype(np.float32),
        radial=noise_radial[:half].astype(np.float32),
        total_radial=profile[:half].astype(np.float32),
        variance=variance, mean=mean, shot_fraction=shot, shot_fitted=fitted,
        equivalent_dose=float(dose), anisotropy=anisotropy,
    )


def _below_the_band(floor: np.ndarray, profile: np.ndarray, tile: int) -> np.ndarray:
    """The noise below the high band: the band's cosine series carried down, within bounds.

    Below the high band the signal (ice, particles, Thon rings smeared by the Welch window) sits
    on the noise everywhere, so the floor of the measured power reads 10–30 % high exactly
    where the signal is as strong as the noise. A detector's noise power is a smooth, even,
    periodic function of frequency: the ``_COSINE_TERMS``-term series ``Σ c_n cos(2π n f)``
    least-squares fitted to the measured power over the high band (where the signal has faded)
    is carried to lower frequencies, kept between the band's first value (the noise power of a
    detector does not rise with frequency) and the measured floor (the noise cannot exceed the
    power). Where the fit is not usable (it falls below zero) the floor stays.
    """
    half = tile // 2
    freq = np.arange(profile.size) / tile
    start = int(_HIGH_BAND[0] * tile)
    basis = np.cos(2 * np.pi * np.arange(_COSINE_TERMS)[None, :] * freq[:, None])
    coef, *_ = np.linalg.lstsq(basis[start:half], profile[start:half].astype(np.float64), rcond=None)
    model = basis @ coef
    if model[: half].min() <= 0:
        return floor
    out = floor.copy()
    out[:start] = np.clip(model[:start], model[start], floor[:start])
    return out


def _mirror(centred: np.ndarray) -> np.ndarray:
    """``P(-k)`` of a centred even-sized spectrum (index n/2 is k = 0)."""
    return np.roll(centred[::-1, ::-1], 1, axis=(0, 1))


def noise_kernel(psd: np.ndarray, radius: int = 16) -> np.ndarray:
    """The real, symmetric (2·radius + 1)² kernel that turns white unit noise into ``psd``.

    ``k = ifft2(sqrt(psd))`` centred and cropped, rescaled so that its energy (the variance it
    gives white unit noise) equals the spectrum's mean.
    """
    psd = np.asarray(psd, dtype=np.float64)
    n = psd.shape[0]
    if radius < 1 or 2 * radius + 1 > n:
        raise ValueError(f"radius={radius}: must be in [1, {(n - 1) // 2}]")
    k = np.fft.fftshift(np.real(np.fft.ifft2(np.fft.ifftshift(np.sqrt(np.maximum(psd, 0))))))
    c = n // 2
    k = k[c - radius : c + radius + 1, c - radius : c + radius + 1]
    k = 0.5 * (k + k[::-1, ::-1])
    energy = float((k**2).sum())
    if energy > 0:
        k *= math.sqrt(psd.mean() / energy)
    return k.astype(np.float32)


def modulation(target, shot_fraction, mean, xp=np):
    """``g = sqrt((1 - s) + s · max(y, 0) / ȳ)``: the shot-noise scaling of the driving noise."""
    return xp.sqrt((1 - shot_fraction) + shot_fraction * xp.maximum(target, 0) / mean)


def matched_noise(padded_target: np.ndarray, driver: np.ndarray, kernel: np.ndarray, *,
                  alpha: float, shot_fraction: float, mean: float) -> np.ndarray:
    """Matched noise over the interior of ``padded_target`` (NumPy).

    ``padded_target`` and ``driver`` (white unit normals) are (H + 2R, W + 2R); ``kernel`` is
    (2R + 1)²; the result is (H, W) float32.
    """
    from scipy.signal import fftconvolve

    g = modulation(padded_target.astype(np.float32, copy=False), np.float32(shot_fraction),
                   np.float32(mean))
    g *= driver  # in place: on a whole micrograph each temporary is hundreds of MB
    out = fftconvolve(g, kernel, mode="valid")
    out *= np.float32(alpha)
    return out.astype(np.float32, copy=False)


def matched_noise_image(image: np.ndarray, estimate: NoiseEstimate, *, alpha: float = 1.0,
                        seed: int = 0, radius: int = 16) -> np.ndarray:
    """Matched noise for a whole 2-D image from its estimate (image padded by reflection),
    white driver from ``default_rng(seed)``; :func:`matched_noise` on the result, its
    convolution's transforms on every core (as ``denoise``'s other whole-image transforms;
    the same numbers as on one: each 1-D transform is computed alike)."""
    import scipy.fft

    padded = np.pad(np.asarray(image, np.float32), radius, mode="reflect")
    driver = np.random.default_rng(seed).standard_normal(padded.shape, dtype=np.float32)
    with scipy.fft.set_workers(-1):
        return matched_noise(padded, driver, noise_kernel(estimate.psd, radius), alpha=alpha,
                             shot_fraction=estimate.shot_fraction, mean=estimate.mean)


def matched_noise_jax(target, kernels, shot_fraction, mean, alpha: float, key):
    """Matched noise for a batch of patches on the device (JAX).

    ``target`` (B, P, P); ``kernels`` (B, K, K) (one per patch, from its micrograph);
    ``shot_fraction`` and ``mean`` (B,). The patch is padded by reflection to drive the
    modulation beyond its edges. Same definition as :func:`matched_noise`.
    """
    import jax
    import jax.numpy as jnp

    b, p, _ = target.shape
    r = kernels.shape[-1] // 2
    padded = jnp.pad(target.astype(jnp.float32), ((0, 0), (r, r), (r, r)), mode="reflect")
    g = modulation(padded, shot_fraction[:, None, None], mean[:, None, None], xp=jnp)
    driver = jax.random.normal(key, padded.shape, dtype=jnp.float32)
    out = jax.lax.conv_general_dilated(
        (g * driver)[None], kernels[:, None].astype(jnp.float32), window_strides=(1, 1),
        padding="VALID", feature_group_count=b, dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=jax.lax.Precision.HIGHEST)
    return alpha * out[0]
