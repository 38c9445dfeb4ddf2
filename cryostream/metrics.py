"""Image quality: PSNR, SSIM and Fourier ring correlation, in NumPy and in JAX.

PSNR uses a peak of 1.0 = the normalising percentile. SSIM follows Wang et al. (2004) with
scikit-image's defaults (7 × 7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, the
border of half a window left out). FRC compares two images ring by ring in Fourier space,
after a smooth edge taper (:func:`edge_taper`) so that the jump between opposite edges of the
periodic FFT does not correlate between the two images. The ``*_jax`` twins give the same
numbers on the device (tests compare them).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from cryostream.errors import ConfigError
from cryostream.spectral import merge_rings, radial_mean, ring_frequencies, ring_index

__all__ = ["psnr", "ssim", "frc", "edge_taper", "FRC_TAPER", "best_gaussian", "wiener_oracle",
           "blend_oracle", "psnr_jax", "ssim_jax", "frc_jax"]

_K1, _K2, _WIN = 0.01, 0.03, 7

#: The default edge taper of :func:`frc`: the fraction of each side over which the weight
#: rises from 0 to 1 at each edge.
FRC_TAPER = 0.2


def psnr(estimate: np.ndarray, reference: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels: ``10 log10(peak² / MSE)``."""
    mse = float(np.mean((np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def ssim(estimate: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2-D images (scikit-image's default definition)."""
    x = np.asarray(estimate, np.float64)
    y = np.asarray(reference, np.float64)

    def f(a):
        return scipy.ndimage.uniform_filter(a, size=_WIN, mode="reflect")

    return float(_ssim_mean(f, x, y, data_range))


def _ssim_mean(window_mean, x, y, data_range):
    """SSIM averaged inside the border, given the local-mean filter (NumPy or JAX arrays)."""
    np_ = _WIN * _WIN
    cov_norm = np_ / (np_ - 1)
    ux, uy = window_mean(x), window_mean(y)
    vx = cov_norm * (window_mean(x * x) - ux * ux)
    vy = cov_norm * (window_mean(y * y) - uy * uy)
    vxy = cov_norm * (window_mean(x * y) - ux * uy)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (_WIN - 1) // 2
    return s[pad:-pad, pad:-pad].mean()


def _frc_rings(shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The ``fft2`` ring map, clipped at ``n = min(shape) // 2``, and ``n``."""
    n = min(shape) // 2
    return np.minimum(ring_index(shape, "fft"), n), n


def edge_taper(shape: tuple[int, int], fraction: float = FRC_TAPER) -> np.ndarray:
    """A separable window that rises smoothly from 0 to 1 over ``fraction`` of each side.

    Parameters
    ----------
    shape : (int, int)
        The image's ``(y, x)`` size in pixels.
    fraction : float
        The margin at each edge, as a fraction of that side's length, in (0, 0.5]; the middle
        ``1 − 2·fraction`` of each side has weight 1.

    Returns
    -------
    numpy.ndarray (y, x) float64
        The outer product of one window per axis. Each rises along its margin as the smooth
        step ``g(t) / (g(t) + g(1 − t))`` with ``g(t) = exp(−1/t)``: every derivative is
        continuous, so the window's spectrum falls faster than any power of the frequency
        and leaks almost nothing from the strong low frequencies to the weak high ones (a
        cosine (Tukey) margin of the same width leaks enough to put the FRC of a blurred
        image at 0.6–0.8 near Nyquist, where the truth has no power).
    """
    if not 0 < fraction <= 0.5:
        raise ConfigError(f"taper={fraction!r}: must be in (0, 0.5] (a fraction of each side), "
                         "or None for no taper")

    def axis(n: int) -> np.ndarray:
        m = min(max(1, round(fraction * n)), n // 2)
        t = (np.arange(m) + 0.5) / m
        g, h = np.exp(-1 / t), np.exp(-1 / (1 - t))
        w = np.ones(n)
        w[:m] = g / (g + h)
        w[n - m:] = w[:m][::-1]
        return w

    return np.outer(axis(shape[0]), axis(shape[1]))


def _tapered(a: np.ndarray, taper: float | None) -> np.ndarray:
    """``a`` (float64) less its mean, times :func:`edge_taper` unless ``taper`` is None."""
    a = np.asarray(a, np.float64)
    a = a - a.mean()
    return a if taper is None else a * edge_taper(a.shape, taper)


def frc(a: np.ndarray, b: np.ndarray, pixel_size_angstrom: float = 1.0, *,
        taper: float | None = FRC_TAPER) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two 2-D images: (spatial frequency in 1/Å, FRC), rings 1 … n/2 − 1.

    Rings as :func:`cryostream.spectral.ring_index` (``n = min(shape)``); the corners beyond
    ring ``n/2`` are left out.

    Parameters
    ----------
    a, b : numpy.ndarray (y, x)
        The two images, of one shape.
    pixel_size_angstrom : float
        Sets the frequencies' unit (1/Å).
    taper : float or None
        By default both images (less their means) are multiplied by :func:`edge_taper` with
        this margin (:data:`FRC_TAPER`, 0.2 of each side) before their FFTs. Without it the
        jump between opposite edges of the periodic FFT puts a cross of power at every
        frequency, the same in both images, and a blurred image's FRC with the truth rises
        falsely to 0.5–0.9 near Nyquist. ``None``: no taper (the FRC as cryostream computed
        it before, for comparisons with older numbers).
    """
    fa = np.fft.fft2(_tapered(a, taper))
    fb = np.fft.fft2(_tapered(b, taper))
    ring, n = _frc_rings(fa.shape)
    idx = ring.ravel()
    num = np.bincount(idx, (fa * np.conj(fb)).real.ravel(), minlength=n + 1)[:n]
    da = np.bincount(idx, (np.abs(fa) ** 2).ravel(), minlength=n + 1)[:n]
    db = np.bincount(idx, (np.abs(fb) ** 2).ravel(), minlength=n + 1)[:n]
    curve = num / np.sqrt(np.maximum(da * db, 1e-30))
    freq = ring_frequencies(fa.shape, n, pixel_size_angstrom)
    return freq[1:], curve[1:]  # ring 0 (the mean) carries nothing after centring


def best_gaussian(noisy: np.ndarray, reference: np.ndarray,
                  sigmas: tuple[float, ...] = (0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8)) -> tuple[float, float]:
    """The Gaussian low-pass (σ in pixels, per patch of a (n, y, x) stack) with the best PSNR.

    Returns ``(psnr_db, sigma)``; σ = 0 (no filter) is a candidate. An oracle baseline: σ is
    chosen with the reference.
    """
    noisy = np.asarray(noisy, np.float32)
    best = (psnr(noisy, reference), 0.0)
    for sigma in sigmas:
        axes_sigma = (0,) * (noisy.ndim - 2) + (sigma, sigma)
        value = psnr(scipy.ndimage.gaussian_filter(noisy, axes_sigma), reference)
        if value > best[0]:
            best = (value, float(sigma))
    return best


def wiener_oracle(noisy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The best isotropic linear filter of ``noisy``, built from the *true* spectra.

    Per ring of spatial frequency (:func:`cryostream.spectral.ring_index`), the gain
    ``S / (S + N)`` uses the radially averaged power of the reference (``S``) and of the noise
    ``noisy − reference`` (``N``). An oracle: no linear filter that treats all directions
    alike does better, so it is the bar a nonlinear denoiser must pass.
    """
    noisy = np.asarray(noisy, np.float64)
    reference = np.asarray(reference, np.float64)
    s = np.abs(np.fft.fft2(reference - reference.mean())) ** 2
    n = np.abs(np.fft.fft2((noisy - noisy.mean()) - (reference - reference.mean()))) ** 2
    ring = ring_index(noisy.shape, "fft")
    sr, nr = radial_mean(s, ring)[ring], radial_mean(n, ring)[ring]
    gain = sr / (sr + nr + 1e-12)
    out = np.real(np.fft.ifft2(gain * np.fft.fft2(noisy - noisy.mean()))) + reference.mean()
    return out.astype(np.float32)


def blend_oracle(noisy: np.ndarray, output: np.ndarray, reference: np.ndarray, *,
                 min_coefficients: int = 128, cross_fit: bool = False) -> np.ndarray:
    """The best per-ring mix ``a·noisy + b·output``, weights fitted to the *true* image.

    Rings of spatial frequency (merged from the centre out until each holds
    ``min_coefficients`` Fourier coefficients) each get the least-squares ``(a, b)``. The span
    holds the input, the output, the Noisier2Noise correction and any radial linear filter of
    the input, so this oracle bounds what re-weighting a denoiser's output by frequency can
    give: if it barely beats :func:`wiener_oracle`, the output carries no more than a linear
    filter does. The mean is the input's.

    Fitted and applied on the same coefficients, the two weights also fit the chance
    correlations of each ring's noise with the truth: mixed with pure noise, the input gains
    about 0.005 in FRC at 128 coefficients per ring. ``cross_fit`` removes that: each ring's
    coefficients are split in two by the parity of ``ky + kx``, and each half gets the
    weights fitted on the other.
    """
    import scipy.fft

    noisy, output, reference = (np.asarray(a, np.float64) for a in (noisy, output, reference))
    ny, nx = noisy.shape
    merged = merge_rings((ny, nx), min_coefficients)
    bins, weight = merged.bins, merged.weight
    z, f, x = (scipy.fft.rfft2(a - a.mean(), workers=-1) for a in (noisy, output, reference))

    def weights(mask):
        def sums(v):
            return np.bincount(bins.ravel(), (weight * mask * v).ravel(),
                               minlength=int(bins.max()) + 1)

        zz, zf, ff = sums(np.abs(z) ** 2), sums((z * np.conj(f)).real), sums(np.abs(f) ** 2)
        xz, xf = sums((x * np.conj(z)).real), sums((x * np.conj(f)).real)
        det = zz * ff - zf**2
        ok = det > 1e-12 * zz * ff
        safe = np.where(ok, det, 1.0)
        a = np.where(ok, (xz * ff - xf * zf) / safe,
                     np.where(zz > 0, xz / np.maximum(zz, 1e-300), 0))
        b = np.where(ok, (xf * zz - xz * zf) / safe, 0.0)
        a[0], b[0] = 1.0, 0.0
        return a[bins] * z + b[bins] * f

    if cross_fit:
        ky, kx = np.indices(z.shape)
        even = ((ky + kx) % 2 == 0).astype(np.float64)
        mixed = np.where(even > 0, weights(1.0 - even), weights(even))
    else:
        mixed = weights(np.ones(z.shape))
    out = scipy.fft.irfft2(mixed, s=(ny, nx), workers=-1) + noisy.mean()
    return out.astype(np.float32)


# -- JAX twins --------------------------------------------------------------------------------


def psnr_jax(estimate, reference, peak: float = 1.0):
    """:func:`psnr` in JAX (float32)."""
    import jax.numpy as jnp

    mse = jnp.mean((jnp.asarray(estimate, jnp.float32) - jnp.asarray(reference, jnp.float32)) ** 2)
    return 10 * jnp.log10(peak**2 / mse)


def ssim_jax(estimate, reference, data_range: float = 1.0):
    """:func:`ssim` in JAX: the uniform window as a reflect-padded box sum."""
    import jax.numpy as jnp

    x = jnp.asarray(estimate, jnp.float32)
    y = jnp.asarray(reference, jnp.float32)
    pad = (_WIN - 1) // 2
    np_ = _WIN * _WIN

    def f(a):
        p = jnp.pad(a, pad, mode="symmetric")
        c = jnp.cumsum(jnp.cumsum(jnp.pad(p, ((1, 0), (1, 0))), axis=0), axis=1)
        s = c[_WIN:, _WIN:] - c[:-_WIN, _WIN:] - c[_WIN:, :-_WIN] + c[:-_WIN, :-_WIN]
        return s / np_

    return _ssim_mean(f, x, y, data_range)


def frc_jax(a, b, *, taper: float | None = FRC_TAPER):
    """:func:`frc` in JAX: the FRC per ring (frequencies as in :func:`frc`), with the same
    edge taper."""
    import jax.numpy as jnp

    def prepared(x):
        x = jnp.asarray(x, jnp.float32)
        x = x - jnp.mean(x)
        return x if taper is None else x * jnp.asarray(edge_taper(x.shape, taper), jnp.float32)

    fa = jnp.fft.fft2(prepared(a))
    fb = jnp.fft.fft2(prepared(b))
    ring, n = _frc_rings(fa.shape)
    idx = jnp.asarray(ring.ravel())

    def ring_sum(v):
        return jnp.zeros(n + 1, v.dtype).at[idx].add(v.ravel())[:n]

    num = ring_sum((fa * jnp.conj(fb)).real)
    den = jnp.sqrt(jnp.maximum(ring_sum(jnp.abs(fa) ** 2) * ring_sum(jnp.abs(fb) ** 2), 1e-30))
    return (num / den)[1:]
