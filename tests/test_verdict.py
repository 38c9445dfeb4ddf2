"""The residual check's verdict (``evaluate --residual``): a residual whose correlation with the
particle-scale image stands more than 3 standard deviations of pure noise's above it is
"specimen in the residual", else "noise-like"; the standard deviation is what chance gives
pure noise, checked against noise drawn again and again and against the simulator's own."""

from __future__ import annotations

import types

import mrcfile
import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

import cryostream
from cryostream.config import SimulateConfig
from cryostream.evaluate import method_noise
from cryostream.evaluate.numbers import read_residual
from cryostream.evaluate.verdict import (
    NOISE_LIKE,
    SPECIMEN,
    VERDICT_SD,
    pure_noise_correlation,
    pure_noise_spread,
)
from cryostream.spectral import frequencies

PIXEL = 0.6575
SIGMA = 20.0 / PIXEL / 2.355  # the check's 20 Å low-pass, in pixels


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Eight simulated 512² micrographs whose shot noise falls tenfold to Nyquist, and their
    truths, both divided by the micrograph's 95th percentile as ``evaluate`` divides them."""
    root = tmp_path_factory.mktemp("verdict")
    sim = cryostream.simulate(root, 8, config=SimulateConfig(shape=(512, 512), seed=11,
                                                             detector_nps_nyquist=0.1))
    pairs = []
    for noisy, truth in zip(sim.micrographs, sim.truths, strict=True):
        y, x = mrcfile.read(noisy).astype(np.float32), mrcfile.read(truth).astype(np.float32)
        scale = np.percentile(y, 95)
        pairs.append((y / scale, x / scale))
    return pairs


def test_the_spread_is_what_noise_drawn_again_and_again_gives(simulated):
    """Noise of a known spectrum drawn 60 times onto one truth: its correlation with the
    low-passed micrograph scatters about the predicted pure noise's by the predicted
    sampling spread (Bartlett's formula; no noise estimate involved)."""
    truth = simulated[0][1][:256, :256]
    tile, shape = 128, truth.shape
    level = 8 * float(truth.var())  # noise well above the signal per pixel, as in a micrograph

    def spectrum(fy, fx):  # a detector's: power falling tenfold from zero to Nyquist
        return level * (1 - 0.9 * np.minimum(np.hypot(fy, fx) / 0.5, 1))

    filt = np.sqrt(spectrum(*frequencies(shape, "rfft")))
    psd = spectrum(*frequencies((tile, tile), "centred")).astype(np.float32)
    rng = np.random.default_rng(4)
    got, predicted = [], None
    for _ in range(60):
        white = rng.standard_normal(shape).astype(np.float32)
        noise = scipy.fft.irfft2(scipy.fft.rfft2(white) * filt, s=shape).astype(np.float32)
        image = truth + noise
        lowpass = scipy.ndimage.gaussian_filter(image, SIGMA)
        got.append(np.corrcoef(noise.ravel(), lowpass.ravel())[0, 1])
        if predicted is None:
            pure = pure_noise_correlation(psd, SIGMA, float(lowpass.std()))
            spread = pure_noise_spread(image, lowpass, types.SimpleNamespace(psd=psd), SIGMA,
                                       PIXEL)["sampling"]
            predicted = (pure, spread)
    pure, spread = predicted
    got = np.array(got)
    assert abs(got.mean() - pure) < 3 * spread / np.sqrt(len(got)), (got.mean(), pure)
    assert 0.75 < got.std(ddof=1) / spread < 1.3, (got.std(ddof=1), spread)


def test_a_residual_of_the_simulators_own_noise_is_noise_like(simulated):
    """The truth as the output: the residual is exactly the simulator's noise (shot noise of
    the detector's spectrum). Its correlation less the predicted pure noise's, in the check's
    standard deviations, scatters by about 1 over eight micrographs and stays under 3."""
    checks = [method_noise(y, x, PIXEL) for y, x in simulated]
    z = np.array([c["sd_above_pure_noise"] for c in checks])
    assert all(c["verdict"] == NOISE_LIKE for c in checks), z
    assert abs(z.mean()) < 1 and 0.5 < z.std(ddof=1) < 1.6, z
    for c in checks:
        assert c["sd_above_pure_noise"] == pytest.approx(
            (c["correlation_with_lowpass"] - c["correlation_if_pure_noise"])
            / c["correlation_sd_if_pure_noise"])
        parts = c["correlation_sd_parts"]
        assert c["correlation_sd_if_pure_noise"] == pytest.approx(
            np.hypot(parts["sampling"], parts["noise_estimate"]))
        assert parts["noise_estimate"] > 0  # 512²: four blocks of a tile each
    assert read_residual(checks[0]).startswith(f"{NOISE_LIKE}: the residual's correlation")


def test_particle_contrast_taken_out_is_specimen_in_the_residual(simulated):
    """An output that lacks a fifth of the truth's particle-scale contrast (its 20 Å low-pass),
    and one that is the micrograph's mean (all of it taken out): specimen in the residual,
    said first in the reading, with how many standard deviations above pure noise."""
    y, x = simulated[1]
    lowpass = scipy.ndimage.gaussian_filter(x, SIGMA)
    for output in (x - 0.2 * (lowpass - lowpass.mean()), np.full_like(y, y.mean())):
        check = method_noise(y, output, PIXEL)
        assert check["sd_above_pure_noise"] > VERDICT_SD
        assert check["verdict"] == SPECIMEN
        reading = read_residual(check)
        assert reading.startswith(f"{SPECIMEN}: the residual's correlation")
        assert f"{check['sd_above_pure_noise']:.1f} sd above pure noise's" in reading
