"""Quality metrics against scikit-image, and the JAX twins against NumPy."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryostream.metrics import (
    best_gaussian,
    blend_oracle,
    frc,
    frc_jax,
    psnr,
    psnr_jax,
    ssim,
    ssim_jax,
    wiener_oracle,
)

skimage_metrics = pytest.importorskip("skimage.metrics")


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    clean = np.cumsum(np.cumsum(rng.normal(size=(96, 80)), 0), 1)
    clean = (clean - clean.min()) / np.ptp(clean)
    return clean + rng.normal(0, 0.1, clean.shape), clean


def test_psnr_matches_skimage(pair):
    noisy, clean = pair
    expected = skimage_metrics.peak_signal_noise_ratio(clean, noisy, data_range=1.0)
    assert psnr(noisy, clean) == pytest.approx(expected, rel=1e-12)
    assert float(psnr_jax(noisy, clean)) == pytest.approx(expected, rel=1e-5)


def test_ssim_matches_skimage(pair):
    noisy, clean = pair
    expected = skimage_metrics.structural_similarity(noisy, clean, data_range=1.0)
    assert ssim(noisy, clean) == pytest.approx(expected, rel=1e-9)
    assert float(ssim_jax(noisy, clean)) == pytest.approx(expected, rel=1e-4)
    assert ssim(clean, clean) == pytest.approx(1.0)


def test_frc_of_identical_and_independent_images(pair):
    noisy, clean = pair
    freq, same = frc(clean, clean, pixel_size_angstrom=0.5)
    assert np.allclose(same, 1) and freq[0] == pytest.approx(1 / (80 * 0.5))
    rng = np.random.default_rng(1)
    _, indep = frc(rng.normal(size=(128, 128)), rng.normal(size=(128, 128)))
    assert np.abs(indep[3:]).mean() < 0.1
    _, curve = frc(noisy, clean)
    np.testing.assert_allclose(np.asarray(frc_jax(noisy, clean)), curve, atol=1e-4)
    assert curve[1] > curve[-1]  # signal at low frequency, noise at high


def test_best_gaussian_never_loses_to_the_input(pair):
    noisy, clean = pair
    value, sigma = best_gaussian(noisy[None], clean[None])
    assert value > psnr(noisy, clean) and sigma > 0


def _smooth_pair(rng, width: float, n: int = 256):
    """A smooth Gaussian field (spectrum exp(-f²/width)) around 0.5, and it plus N(0, 0.1²)."""
    f2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None, :] ** 2
    field = np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * np.exp(-f2 / width)).real
    clean = 0.5 + field / field.std() * 0.1
    return clean, clean + rng.normal(0, 0.1, clean.shape)


def test_wiener_oracle_beats_the_gaussian_and_is_exact_for_white_signals():
    rng = np.random.default_rng(3)
    clean, noisy = _smooth_pair(rng, 0.003)
    assert psnr(wiener_oracle(noisy, clean), clean) > best_gaussian(noisy, clean)[0]
    # white signal in white noise of equal power: the gain is 1/2 at every frequency
    white = rng.normal(0, 1, (128, 128))
    noise = rng.normal(0, 1, (128, 128))
    out = wiener_oracle(white + noise, white)
    expected = 0.5 * ((white + noise) - (white + noise).mean()) + white.mean()
    # per-ring powers are sample estimates, rough on the few coefficients of the inner rings:
    # 0.057 here (the output's standard deviation is 0.7)
    assert np.sqrt(np.mean((out - expected) ** 2)) < 0.08
    assert psnr(out, white, peak=1) > psnr(white + noise, white, peak=1) + 2.5


def test_blend_oracle_is_at_least_its_parts_and_finds_a_perfect_output():
    rng = np.random.default_rng(4)
    clean, noisy = _smooth_pair(rng, 0.01)
    # an output that is good at low frequency only: a Gaussian low-pass, plus a high-pass error
    low_pass = gaussian_filter(noisy, 3)
    output = low_pass + 0.05 * rng.normal(size=clean.shape)
    blended = blend_oracle(noisy, output, clean)
    score = psnr(blended, clean)
    assert score > psnr(noisy, clean) and score > psnr(output, clean)
    assert score > psnr(wiener_oracle(noisy, clean), clean) - 0.05  # its span holds the filter
    assert score > psnr(low_pass, clean)
    # an output equal to the truth is taken whole, ring by ring
    assert psnr(blend_oracle(noisy, clean, clean), clean) > 60
