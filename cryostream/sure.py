"""SURE ring blending: the best per-frequency mix of a micrograph and a denoiser's output.

A denoiser ``f`` and the micrograph ``z = x + n`` it was given each carry the truth ``x`` better
in some bands of spatial frequency than in others: a network trained the seed's way
(Noisier2Noise) is sharp at low frequency and, once corrected, noisy at high frequency; a
Wiener filter is the best *linear* use of ``z`` alone. Per ring ``k`` of spatial frequency
the blend takes ``x̂ = a_k·z + b_k·f(z)`` with the ``(a_k, b_k)`` of least squared error. That
span holds the input (1, 0), the raw output (0, 1), the Noisier2Noise correction
(``−1/α², (1 + α²)/α²``) and a Wiener-type gain of the input (``S/(S+N)``, 0), so the blend is at
least as good as each of them on every ring, up to the error of its estimate.

The error needs the truth only through two inner products per ring, both estimable from the
micrograph and its noise alone (Stein's unbiased risk estimate, SURE):

* ``⟨x, z⟩ = |z|² − ⟨n, z⟩``, and ``E⟨n, z⟩ = N_k``, the noise power on the ring;
* ``⟨x, f⟩ = ⟨z, f⟩ − ⟨n, f⟩``, and for Gaussian noise of covariance ``Σ`` Stein's lemma gives
  ``E⟨n, P_k f(z)⟩ = tr(P_k J_f Σ)``, estimated with a probe ``b`` of the noise's statistics as
  ``⟨b, P_k (f(z + εb) − f(z − εb))⟩ / 2ε`` (antithetic: the noise-level change cancels).

The probe is matched noise (:mod:`cryostream.matched`) from the micrograph's own measured
spectrum and shot-noise share, so ``N_k = |b|²`` on the ring. Two more passes of the network
are the price. Rings are merged from the centre out until each holds ``min_coefficients``
Fourier coefficients, so every estimate averages over many of them.
"""

from __future__ import annotations

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["ring_bins", "sure_blend", "noise_probe", "PROBE_EPSILON"]

PROBE_EPSILON = 0.5  # probe amplitude, in units of the micrograph's own noise


def ring_bins(shape: tuple[int, int], min_coefficients: int = 128):
    """Bins over the ``rfft2`` grid of ``shape``: rings of radius (rounded, in units of the
    shorter side) merged from the centre out until each has ``min_coefficients`` coefficients.

    Returns ``(bins, count, weight)``: the bin of every coefficient (bin 0 is the mean alone),
    the number of bins, and each coefficient's weight in a real-space inner product (2 for the
    columns that stand for a conjugate pair, else 1).
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    ring = np.rint(np.hypot(fy, fx) * min(ny, nx)).astype(np.int64)
    weight = np.full((ny, nx // 2 + 1), 2.0)
    weight[:, 0] = 1.0
    if nx % 2 == 0:
        weight[:, -1] = 1.0
    sizes = np.bincount(ring.ravel())
    merged = np.empty(sizes.size, np.int64)
    merged[0], current, held = 0, 1, 0
    for r in range(1, sizes.size):
        merged[r] = current
        held += sizes[r]
        if held >= min_coefficients:
            current, held = current + 1, 0
    if held and current > 1:  # a short last bin joins the one before
        merged[merged == current] = current - 1
        current -= 1
    count = int(merged.max()) + 1
    return merged[ring], count, weight


def _ring_sums(bins, count, weight, values):
    return np.bincount(bins.ravel(), (weight * values).ravel(), minlength=count)


def sure_blend(noisy: np.ndarray, output: np.ndarray, probe: np.ndarray, plus: np.ndarray,
               minus: np.ndarray, epsilon: float, *, min_coefficients: int = 128,
               truth: np.ndarray | None = None):
    """Blend ``noisy`` and ``output`` per ring of spatial frequency with SURE weights.

    Parameters
    ----------
    noisy, output : (y, x) arrays
        The micrograph ``z`` and the denoiser's output ``f(z)``.
    probe : (y, x) array
        Noise with the micrograph's own statistics (:func:`noise_probe`).
    plus, minus : (y, x) arrays
        ``f(z + ε·probe)`` and ``f(z − ε·probe)``.
    epsilon : float
        The probe amplitude ``ε``.
    truth : (y, x) array, optional
        Use the true inner products instead of their estimates (an oracle, for benchmarks).

    Returns
    -------
    (blended, info)
        The blended estimate (float32, the mean of ``noisy``) and a dict of the per-bin weights
        ``a`` (input) and ``b`` (output), the bins' centre frequencies (cycles per pixel) and the
        estimated gain in squared error over the better of ``noisy`` filtered by its own SURE
        Wiener gain and ``output``.
    """
    import scipy.fft

    if not epsilon > 0:
        raise ConfigError(f"epsilon={epsilon}: the probe amplitude must be > 0")
    shape = np.shape(noisy)
    for name, arr in (("output", output), ("probe", probe), ("plus", plus), ("minus", minus)):
        if np.shape(arr) != shape:
            raise ConfigError(f"{name}: shape {np.shape(arr)} differs from the micrograph's {shape}")

    def spectrum(image):
        image = np.asarray(image, np.float64)
        return scipy.fft.rfft2(image - image.mean(), workers=-1)

    bins, count, weight = ring_bins(shape, min_coefficients)
    z, f = spectrum(noisy), spectrum(output)
    a_zz = _ring_sums(bins, count, weight, np.abs(z) ** 2)
    a_zf = _ring_sums(bins, count, weight, (z * np.conj(f)).real)
    a_ff = _ring_sums(bins, count, weight, np.abs(f) ** 2)
    if truth is not None:
        x = spectrum(truth)
        xz = _ring_sums(bins, count, weight, (x * np.conj(z)).real)
        xf = _ring_sums(bins, count, weight, (x * np.conj(f)).real)
    else:
        b = spectrum(probe)
        noise_power = _ring_sums(bins, count, weight, np.abs(b) ** 2)
        slope = (spectrum(plus) - spectrum(minus)) / (2 * epsilon)
        trace = _ring_sums(bins, count, weight, (np.conj(b) * slope).real)
        xz, xf = a_zz - noise_power, a_zf - trace
    det = a_zz * a_ff - a_zf**2
    ok = det > 1e-9 * a_zz * a_ff
    a = np.where(ok, (xz * a_ff - xf * a_zf) / np.where(ok, det, 1), 0.0)
    bw = np.where(ok, (xf * a_zz - xz * a_zf) / np.where(ok, det, 1), 1.0)
    a[0], bw[0] = 1.0, 0.0  # the mean: the micrograph's own, unbiased
    blended = scipy.fft.irfft2(a[bins] * z + bw[bins] * f, s=shape, workers=-1)
    blended += float(np.mean(noisy))
    # estimated squared error per bin, up to |x|²: -2a·xz - 2b·xf + a²zz + 2ab·zf + b²ff
    risk_blend = -2 * a * xz - 2 * bw * xf + a * a * a_zz + 2 * a * bw * a_zf + bw * bw * a_ff
    gain = np.clip(xz / np.maximum(a_zz, 1e-30), 0, 1)
    risk_wiener = -2 * gain * xz + gain * gain * a_zz
    risk_output = -2 * xf + a_ff
    radius = np.bincount(bins.ravel(), (np.hypot(np.fft.fftfreq(shape[0])[:, None],
                                                  np.fft.rfftfreq(shape[1])[None, :])).ravel(),
                         minlength=count) / np.maximum(np.bincount(bins.ravel(), minlength=count), 1)
    info = {"a": a, "b": bw, "frequency": radius,
            "risk_blend": float(risk_blend[1:].sum()), "risk_wiener": float(risk_wiener[1:].sum()),
            "risk_output": float(risk_output[1:].sum())}
    return blended.astype(np.float32), info


def noise_probe(image: np.ndarray, estimate, seed, radius: int = 16) -> np.ndarray:
    """Noise with the micrograph's own measured statistics (matched noise, ``α = 1``).

    ``estimate`` is the micrograph's :class:`~cryostream.matched.NoiseEstimate` in the units of
    ``image``; ``seed`` anything :func:`numpy.random.default_rng` takes.
    """
    from cryostream.matched import matched_noise, noise_kernel

    image = np.asarray(image, np.float32)
    padded = np.pad(image, radius, mode="reflect")
    driver = np.random.default_rng(seed).standard_normal(padded.shape, dtype=np.float32)
    return matched_noise(padded, driver, noise_kernel(estimate.psd, radius), alpha=1.0,
                         shot_fraction=estimate.shot_fraction, mean=estimate.mean)
