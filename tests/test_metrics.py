"""Quality metrics against scikit-image, and the JAX twins against NumPy."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryostream.errors import ConfigError
from cryostream.metrics import (
    best_gaussian,
    blend_oracle,
    edge_taper,
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
    np.testing.assert_allclose(np.asarray(frc_jax(noisy, clean, taper=None)),
                               frc(noisy, clean, taper=None)[1], atol=1e-4)
    assert curve[1] > curve[-1]  # signal at low frequency, noise at high


def test_frc_of_a_blurred_image_has_no_false_rise_near_nyquist():
    """A Gaussian-blurred noisy image against its truth (a crop, so opposite edges jump).
    The truth's spectrum is known (amplitude exp(−f²/w) per unit white noise), so the FRC of
    truth + white noise of σ with the truth is ``a / √(a² + σ²)`` at every ring, and a
    positive linear filter (the blur) leaves it unchanged: ≈ 0 above 0.4 cycles/px, where
    ``a`` is 1e-7. Without the taper the edges' jump correlates and the FRC rises to ≈ 0.8."""
    rng = np.random.default_rng(0)
    big, n, width, noise_sd = 512, 256, 0.01, 0.1
    f2 = np.fft.fftfreq(big)[:, None] ** 2 + np.fft.fftfreq(big)[None, :] ** 2
    field = np.fft.ifft2(np.fft.fft2(rng.normal(size=(big, big))) * np.exp(-f2 / width)).real
    truth = field[100:100 + n, 150:150 + n]  # not periodic: the crop's edges jump
    blurred = gaussian_filter(truth + rng.normal(0, noise_sd, truth.shape), 2)
    freq, tapered = frc(blurred, truth)
    _, plain = frc(blurred, truth, taper=None)
    amplitude = np.exp(-freq**2 / width)
    expected = amplitude / np.sqrt(amplitude**2 + noise_sd**2)
    near_nyquist = freq > 0.4
    assert expected[near_nyquist].max() < 1e-5
    assert abs(tapered[near_nyquist].mean()) < 0.05  # 0.009 here; ≤ 0.02 over six seeds
    assert plain[near_nyquist].mean() > 0.6  # the false rise: 0.80 here, 0.80–0.88 over six
    # where the truth has signal, the tapered FRC follows the expected curve (the inner
    # rings hold few coefficients: sampling spread ±0.03); the plain one is further off
    middle = (expected > 0.2) & (expected < 0.95)
    assert np.abs(tapered[middle] - expected[middle]).mean() < 0.045  # 0.028
    assert np.abs(plain[middle] - expected[middle]).mean() > np.abs(
        tapered[middle] - expected[middle]).mean()


def test_edge_taper_shape_and_bad_margins():
    w = edge_taper((100, 60), 0.2)
    assert w.shape == (100, 60) and w.max() == 1 and w.min() > 0
    # the margins are 20 and 12 px: the weight rises across them from near 0; the middle is flat
    assert np.all(w[20:80, 12:48] == 1) and w[0, 30] < 1e-3 and w[50, 0] < 1e-3
    assert np.all(np.diff(w[:20, 30]) > 0) and np.all(np.diff(w[50, :11]) > 0)
    np.testing.assert_allclose(w, w[::-1, ::-1])  # the same at both edges
    for bad in (0, 0.6, -0.1):
        with pytest.raises(ConfigError, match=f"taper={bad}"):
            frc(np.ones((8, 8)), np.ones((8, 8)), taper=bad)


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


def test_the_cross_fitted_blend_oracle_gains_nothing_from_pure_noise():
    from cryostream.metrics import frc

    rng = np.random.default_rng(6)
    clean, _ = _smooth_pair(rng, 0.05)
    noisy = clean + rng.normal(0, 0.5, clean.shape)  # a micrograph's low SNR: FRC ≈ 0.1–0.3
    junk = rng.normal(size=clean.shape).astype(np.float32)  # knows nothing of the truth

    def mid(image):
        f, c = frc(image, clean)
        return c[(f > 0.01) & (f < 0.25)].mean()

    fitted, crossed = (blend_oracle(noisy, junk, clean, cross_fit=c) for c in (False, True))
    assert mid(fitted) > mid(noisy) + 0.003  # the same-coefficient fit gains by chance
    assert mid(crossed) < mid(noisy) + 0.001  # the cross-fit does not
    # and it still finds an output that holds the truth
    assert psnr(blend_oracle(noisy, clean, clean, cross_fit=True), clean) > 60
