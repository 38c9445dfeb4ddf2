"""Truth-free scores of a denoiser on the micrographs it will denoise: recorruption.

Recorrupted-to-recorrupted (Pang et al., CVPR 2021): with ``m`` drawn like the micrograph's own
noise (:func:`cryostream.matched.matched_noise_image`), ``ŷ = y + β·m`` and ``ỹ = y − m / β``
carry independent noise (for Gaussian noise), so comparing a denoiser's output on ``ŷ`` with
``ỹ`` measures its error against the truth without knowing the truth.
"""

from __future__ import annotations

import math

import numpy as np

from cryostream.config.checks import check_seed
from cryostream.denoise.corrections import wiener_gain_outputs
from cryostream.errors import ConfigError

__all__ = ["BETA_RANGE", "CHECK_PIXELS", "check_scoring", "recorruption_score", "recorruption_scores",
           "check_draws", "ctf_gain_check", "calibrate_rings"]


#: The recorruption strengths :func:`check_scoring` takes: the input carries ``(1 + β²)``
#: times the micrograph's noise power and the target ``(1 + 1/β²)`` times, so outside these
#: one of them is over 10⁴ times the noise and the score measures little else.
BETA_RANGE = (0.01, 100.0)


def check_scoring(draws: int, beta: float, seed: int = 0) -> None:
    """Check the recorruption's options before any work: ``draws`` a whole number ≥ 1,
    ``beta`` a finite number in :data:`BETA_RANGE` (inf had scored every run NaN), ``seed``
    as every seed (:func:`~cryostream.config.checks.check_seed`).

    Raises
    ------
    ConfigError
        Naming the option, its value and the range.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws={draws!r}: must be a whole number ≥ 1 (recorrupted passes "
                          "per run and micrograph)")
    lo, hi = BETA_RANGE
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not lo <= beta <= hi:
        raise ConfigError(f"beta={beta!r}: must be a finite number from {lo:g} to {hi:g} (the "
                          "recorrupted input carries 1 + beta² times the micrograph's noise "
                          "power and the target 1 + 1/beta² times: beyond these one of them "
                          "is over 10⁴ times the noise and the score measures little else); "
                          "0.5 by default")
    check_seed("seed", seed)


def recorruption_scores(pipelines, noisy: np.ndarray, noise, *, draws: int = 2, beta: float = 0.5,
                        seed: int = 0) -> list[float]:
    """:func:`recorruption_score` of several pipelines on the same noise draws, each drawn once:
    differences of the scores are paired comparisons."""
    return _paired_scores(lambda image: [p(image) for p in pipelines], len(pipelines), noisy,
                          noise, draws=draws, beta=beta, seed=seed)


def _paired_scores(outputs, count: int, noisy: np.ndarray, noise, *, draws: int, beta: float,
                   seed: int) -> list[float]:
    """The recorruption scores of ``count`` denoisers that ``outputs(image)`` runs together
    (a list of their estimates), on the same draws."""
    from cryostream.matched import matched_noise_image

    check_scoring(draws, beta, seed)
    noisy = np.asarray(noisy, np.float32)
    totals = [0.0] * count
    for k in range(draws):
        m = matched_noise_image(noisy, noise, seed=seed * 1000 + k)
        up, down = noisy + np.float32(beta) * m, noisy - m / np.float32(beta)
        for i, out in enumerate(outputs(up)):
            out = np.asarray(out, np.float32)
            totals[i] += float(np.mean((out - down).astype(np.float64) ** 2))
        del m, up, down, out  # before the next draw's: on a whole micrograph, 230 MB each
    return [total / draws for total in totals]


def recorruption_score(pipeline, noisy: np.ndarray, noise, *, draws: int = 2, beta: float = 0.5,
                       seed: int = 0) -> float:
    """A truth-free score of a denoiser on one micrograph: lower is better.

    The score ``mean((pipeline(ŷ) − ỹ)²)`` (averaged over ``draws``) is, in expectation, the
    pipeline's mean squared error against the truth at ``(1 + β²)`` times the micrograph's
    noise power, plus the variance of ``ỹ``'s noise. That variance is the same for every
    denoiser scored with the same ``seed`` on the same micrograph, so *differences* of scores
    estimate differences of error: rank seeds, checkpoints or settings with it on the data
    they will denoise. (The score itself is not an error: the variance it holds is
    ``(1 + 1/β²)`` times the noise variance, known only to the estimate's accuracy.)
    ``pipeline`` maps a normalised 2-D micrograph to its estimate; ``noise`` is the
    micrograph's :class:`~cryostream.matched.NoiseEstimate` in the units of ``noisy``.
    """
    return recorruption_scores([pipeline], noisy, noise, draws=draws, beta=beta, seed=seed)[0]


#: The recorrupted pixels :func:`ctf_gain_check` averages over, at the least, where one draw
#: holds fewer: two draws of a 2048² micrograph, on which its readings were measured
#: (:func:`check_draws`).
CHECK_PIXELS = 2 * 2048 * 2048


def check_draws(shape: tuple[int, int]) -> int:
    """How many recorrupted draws :func:`ctf_gain_check` makes of a micrograph of ``shape``:
    one where that one holds :data:`CHECK_PIXELS` pixels, else two.

    A draw's reading of the error difference varies with the noise drawn, less the more
    pixels it averages. On simulated full-size 7676 × 7420 micrographs (``check_draws.py``,
    benchmarks page) three single draws of the fit read −5.1 ± 0.02, −10.1 ± 0.1 and
    −7.0 ± 0.7 × 10⁻⁶ at 50, 20 and 10 e/Å², the spread a tenth of the reading or less, so
    a second draw, 8–10 s of the CPU there, would not change what the check says."""
    return 1 if math.prod(shape) >= CHECK_PIXELS else 2


def ctf_gain_check(noisy: np.ndarray, noise, fit, *, draws: int | None = None,
                   beta: float = 0.5, seed: int = 0, grid=None) -> float:
    """Does the CTF-shaped Wiener gain beat the radial one on this micrograph? No truth needed.

    The recorruption score of the CTF-shaped Wiener filter (:func:`match_wiener_gain` with
    ``ctf=fit``) minus that of the radial one, on the same draws: negative when the CTF model
    helps. A wrong fit (a wrong defocus, no Thon rings) makes it positive. On simulated 2048²
    micrographs (normalised to their 95th percentile) a fit 400 Å off scored +3e-6 to +6e-6
    (true error difference +1e-5) and the fit itself −2e-6 to −5e-6 (true −5e-6). It leans
    towards the radial gain where the noise estimate is coarser: on 1024² ones it read 1e-5
    to 3e-5 above the truth, so the fit (true −1.8e-5 and −1.1e-5) still passed with −5e-6
    and −4e-6. (Measured before the gains' floor, :data:`~cryostream.spectral.GAIN_FLOOR`,
    which costs the radial filter a little more error than the CTF-shaped one: on a 2048²
    micrograph it moved the score by about −1.5e-6 at 50 e/Å², −3e-6 to −5e-6 at 10.)
    ``noise`` is the micrograph's :class:`~cryostream.matched.NoiseEstimate` in the units of
    ``noisy``. Below 20 Å both filters take each ring's own radial gain (``sum_rings=False``),
    as the score was measured with: the ring sums denoise applies there
    (:func:`~cryostream.denoise.corrections.ring_sums`) on the CTF-shaped side only had moved
    the score of a held-out shell from −1.6e-7 to +5.4e-7 and turned a right fit down (−1.4 dB).
    ``draws``: recorrupted draws averaged (default: :func:`check_draws` of the micrograph's
    shape, two up to 2048², one for larger micrographs). ``grid``: the
    :func:`~cryostream.ctf.ctf_gain_grid` of ``noisy``'s shape and ``fit``, if made already
    (the gain that follows a passed check takes the same one).
    """
    from cryostream.ctf import ctf_gain_grid

    if draws is None:
        draws = check_draws(np.shape(noisy))

    recorrupted = noise.scaled(math.sqrt(1 + beta**2))  # the noise of y + β·m
    # made once for every draw
    shaped = (fit, ctf_gain_grid(np.shape(noisy), fit) if grid is None else grid)

    def both(image):  # the CTF-shaped and the radial Wiener filters, from one transform;
        # below 20 Å the same radial gain in both, so that the score is the CTF model's alone
        return wiener_gain_outputs(image, image, recorrupted, [shaped, None], sum_rings=False)

    shaped_score, radial_score = _paired_scores(both, 2, noisy, noise, draws=draws, beta=beta,
                                                seed=seed)
    return shaped_score - radial_score


def calibrate_rings(pipeline, noisy: np.ndarray, noise, *, draws: int = 4, beta: float = 0.5,
                    seed: int = 0, min_coefficients: int = 4096, max_weight: float = 3.0):
    """Weigh, per ring, the part of a denoiser's output that no linear filter of the micrograph
    makes, with weights fitted by recorruption: no ground truth.

    ``pipeline`` maps a normalised 2-D micrograph to its estimate (the whole denoiser: network,
    correction, clamp, gain). Per ring of spatial frequency (merged rings,
    :func:`cryostream.spectral.merge_rings`), its output is ``g·Y + R`` with ``R``
    uncorrelated with the micrograph ``Y`` (:func:`match_wiener_gain`). ``R`` holds what the
    network found (particle shapes) and its error, amplified by the Noisier2Noise correction;
    the best weight ``b`` of ``R`` is ``Re⟨X, R⟩ / ⟨R, R⟩``, which needs the truth ``X``. With
    recorruption, ``Re⟨ỹ, R(ŷ)⟩`` is an unbiased estimate of ``Re⟨X, R(ŷ)⟩``. Each of
    ``draws`` passes runs ``pipeline`` on one ``ŷ``; the sums over passes give ``b`` per ring,
    clipped to ``[0, max_weight]``, fitted at the noise level ``(1 + β²)`` times the
    micrograph's and applied to the micrograph's own output. ``noise`` is the micrograph's
    :class:`~cryostream.matched.NoiseEstimate` (in the units of ``noisy``).

    Returns ``(estimate, weights)``: the calibrated image (the pipeline's mean) and ``b`` per
    merged ring.
    """
    import scipy.fft

    from cryostream.matched import matched_noise_image
    from cryostream.spectral import merge_rings, ring_regression

    check_scoring(draws, beta, seed)
    noisy = np.asarray(noisy, np.float32)
    ny, nx = noisy.shape
    rings = merge_rings((ny, nx), min_coefficients)
    bins, weight = rings.bins, rings.weight
    flat = bins.ravel()

    def spectrum(image):
        return scipy.fft.rfft2(image - np.float32(image.mean()), workers=-1)

    def ring_sum(values):
        return np.bincount(flat, (weight * values).ravel())

    def beyond_linear(estimate, image_spectrum):
        """The part of ``estimate``'s spectrum uncorrelated with the image, ring by ring."""
        gain = ring_regression(estimate, image_spectrum, bins, weight)[0].astype(np.float32)
        return estimate - gain[bins] * image_spectrum

    base = np.asarray(pipeline(noisy), np.float32)
    base_spectrum = spectrum(base)
    found = beyond_linear(base_spectrum, spectrum(noisy))
    numerator = np.zeros(int(flat.max()) + 1)
    denominator = np.zeros_like(numerator)
    for k in range(draws):
        m = matched_noise_image(noisy, noise, seed=seed * 1000 + k)
        up = noisy + np.float32(beta) * m
        part = beyond_linear(spectrum(np.asarray(pipeline(up), np.float32)), spectrum(up))
        target = spectrum(noisy - m / np.float32(beta))
        numerator += ring_sum(target.real * part.real + target.imag * part.imag)
        denominator += ring_sum(part.real**2 + part.imag**2)
    weights = np.clip(numerator / np.maximum(denominator, 1e-30), 0.0, max_weight)
    weights[0] = 1.0
    base_spectrum += (weights - 1).astype(np.float32)[bins] * found
    out = scipy.fft.irfft2(base_spectrum, s=(ny, nx), workers=-1)
    return (out + np.float32(base.mean())).astype(np.float32), weights
