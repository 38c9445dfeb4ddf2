"""The CTF-shaped gain with the defocus error a fit may have: rings faded where it is uncertain."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_ctf import PIXEL, _Simulated

from cryostream.ctf import CTFFit, thon_ring_z
from cryostream.denoise import match_wiener_gain
from cryostream.denoise.fallback import DEFOCUS_ERROR_SCALE, fit_with_error
from cryostream.denoise.sources import KnownDefocusGain
from cryostream.matched import estimate_noise, tile_for
from cryostream.spectral import contrast_transfer, faded_ctf_squared


@pytest.fixture(scope="module")
def simulated():
    return _Simulated()


def test_faded_ctf_squared_is_the_mean_of_ctf_squared_over_the_defocus_error():
    """``½ − (½ − CTF²)·exp(−2(πλσk²)²)`` is the mean of ``CTF²`` over defocus errors drawn
    from N(0, σ²), amplitude contrast and Cs included; σ = 0 leaves it as it is."""
    k2 = np.linspace(1 / 20, 1 / 3, 400) ** 2
    rng = np.random.default_rng(0)
    sigma, defocus = 150.0, 15000.0
    draws = defocus + rng.normal(0, sigma, 20000)
    for kv in (300.0, 200.0):  # the wavelength of the fit's voltage
        optics = dict(voltage_kv=kv, amplitude_contrast=0.07)
        mean = np.mean([contrast_transfer(k2, d, **optics) ** 2 for d in draws], 0)
        c2 = contrast_transfer(k2, defocus, **optics) ** 2
        np.testing.assert_allclose(faded_ctf_squared(c2, k2, sigma, kv), mean, atol=0.01)
        assert abs(faded_ctf_squared(c2, k2, sigma, 500.0 - kv) - mean).max() > 0.05
    np.testing.assert_array_equal(faded_ctf_squared(c2, k2, 0.0), c2.astype(np.float32))
    assert abs(faded_ctf_squared(c2, k2, 2000.0)[-50:] - 0.5).max() < 1e-3  # rings gone


def test_a_fit_off_in_its_astigmatism_loses_less_with_its_error(simulated):
    """A fit 300 Å off in its astigmatism (as low-dose fits are): with rings faded over 100 Å
    the gain's error against the truth is lower than with its sharp rings; on the fit itself
    the error its Thon-ring score gives it costs nothing."""
    noisy, truth, _ = simulated[0]
    noisy = noisy.astype(np.float32)
    fit = simulated.fit(0)
    noise = estimate_noise(noisy, PIXEL, tile=tile_for(noisy.shape))

    def error(f):
        return np.mean((match_wiener_gain(noisy, noisy, noise, ctf=f) - truth) ** 2)

    off = dataclasses.replace(fit, defocus_u_angstrom=fit.defocus_u_angstrom + 150,
                              defocus_v_angstrom=fit.defocus_v_angstrom - 150)
    assert error(dataclasses.replace(off, defocus_error_angstrom=100.0)) < error(off)
    z = thon_ring_z(np.fft.rfft2(noisy - noisy.mean()), noisy.shape, fit)
    faded = fit_with_error(fit, z)
    assert faded.defocus_error_angstrom == pytest.approx(DEFOCUS_ERROR_SCALE / z**1.5)
    assert error(faded) <= error(fit)


def test_the_error_follows_the_ring_score_and_a_known_defocus_has_none():
    """σ = scale / z^1.5 (183 Å at the score of 3.5 a fit needs to be used, 38 Å at 10); no
    score, no error: a STAR file's defocus is taken as given, one fitted here on a micrograph's
    even/odd halves (its ``rings_z``) takes its error."""
    fit = CTFFit(15000.0, 14800.0, 30.0, 0.01, PIXEL)
    assert fit_with_error(fit, 3.5).defocus_error_angstrom == pytest.approx(183.3, abs=0.1)
    assert fit_with_error(fit, 10.0).defocus_error_angstrom == pytest.approx(37.9, abs=0.1)
    assert fit_with_error(fit, None) is fit
    given = KnownDefocusGain(ctf=True, defocus=(15000.0, 14800.0, 30.0))
    assert given.fit(PIXEL).defocus_error_angstrom == 0.0
    halves = dataclasses.replace(given, rings_z=10.0)
    assert halves.fit(PIXEL).defocus_error_angstrom == pytest.approx(37.9, abs=0.1)
