"""What the gain dropped: the fourth part of a table of learned weights, ``d·(Y − L)``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryostream import ConfigError
from cryostream.denoise.corrections import match_wiener_gain
from cryostream.denoise.weights import BANDS, LearnedWeights, WeightSums, fit_learned_weights
from cryostream.denoise.weights_fit import least_squares, weight_sums
from cryostream.matched import estimate_noise, tile_for
from cryostream.metrics import frc


def _rows(value):
    return ((float(value),) * (BANDS + 1),)


def _table(a, b, c, d):
    return LearnedWeights(snr=(1.0,), linear=_rows(a), rest=_rows(b), binned=_rows(c),
                          dropped=_rows(d))


def _scene(rng, shape=(256, 256)):
    """A truth of strong smooth detail and weak fine detail (1 % of the noise's power at every
    frequency), its noisy copy, a "denoiser" that keeps the smooth detail and adds junk, and a
    "binned pass" (a blur of the noisy copy)."""
    import scipy.ndimage

    truth = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 3, mode="wrap") * 20 \
        + 0.1 * rng.normal(size=shape)
    noisy = truth + rng.normal(size=shape)
    estimate = scipy.ndimage.gaussian_filter(noisy, 2, mode="wrap") \
        + 0.3 * scipy.ndimage.gaussian_filter(rng.normal(size=shape), 0.7, mode="wrap")
    binned = scipy.ndimage.gaussian_filter(noisy, 3, mode="wrap")
    return [a.astype(np.float32) for a in (truth, noisy, estimate, binned)]


def _noise(noisy):
    return estimate_noise(noisy, 1.0, tile=tile_for(noisy.shape))


def test_four_parts_are_fitted_within_their_bounds():
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(5)
    n = 4000
    common = rng.normal(size=n) + 1j * rng.normal(size=n)
    parts = [common + s * (rng.normal(size=n) + 1j * rng.normal(size=n))
             for s in (0.3, 1.0, 0.5, 2.0)]
    a = np.stack([np.concatenate([p.real, p.imag]) for p in parts], axis=1)
    for weights in ((0.8, 0.2, 0.5, 0.1), (0.0, 0.4, 1.0, 0.0), (-0.5, 0.3, 2.0, 1.5)):
        truth = sum(w * p for w, p in zip(weights, parts, strict=True))
        rows = [float(np.sum((p * np.conj(q)).real)) for p, q in
                [(truth, p) for p in parts] + [(p, p) for p in parts]
                + [(parts[i], parts[j]) for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3),
                                                     (2, 3))]]
        sums = WeightSums(1.0, np.repeat(np.asarray(rows)[:, None], BANDS + 1, axis=1))
        got = np.asarray(least_squares(sums))[:, 0]
        best = lsq_linear(a, np.concatenate([truth.real, truth.imag]),
                          bounds=([0] * 4, [1.25, 1.0, 1.25, 1.0])).x
        np.testing.assert_allclose(got, best, atol=1e-6)
        # the first three alone: the sums of three parts, fitted as three
        three = np.asarray(least_squares(sums.first(3)))[:, 0]
        np.testing.assert_allclose(three, lsq_linear(a[:, :3], np.concatenate(
            [truth.real, truth.imag]), bounds=([0] * 3, [1.25, 1.0, 1.25])).x, atol=1e-6)


def test_the_dropped_part_is_what_the_gain_took_out_of_the_micrograph():
    truth, noisy, estimate, binned = _scene(np.random.default_rng(1))
    noise = _noise(noisy)

    def out(*weights):
        return match_wiener_gain(estimate, noisy, noise, weights=_table(*weights), binned=binned)

    # the linear part alone and the dropped part alone add up to the micrograph
    np.testing.assert_allclose(out(1, 0, 0, 0) + out(0, 0, 0, 1) - noisy.mean(), noisy,
                               atol=1e-4)
    # the fit's parts are those denoise applies: against a "truth" that is denoise's own
    # dropped part (or linear part, or rest), the sums' least squares explain it whole, and
    # weigh that part alone wherever the others are not empty or alike
    gained = match_wiener_gain(estimate, noisy, noise)
    for weights in ((0, 0, 0, 1), (1, 0, 0, 0), (0, 1, 0, 0)):
        sums = weight_sums(estimate, gained, noisy, out(*weights), noise, binned, dropped=True)
        h, g = sums.gram()
        fitted = np.asarray(least_squares(sums))
        exact = np.repeat(np.asarray(weights, float)[:, None], BANDS + 1, axis=1)
        power = np.einsum("ib,ijb,jb->b", exact, g, exact)  # the truth's, per band
        left = np.einsum("ib,ijb,jb->b", fitted, g, fitted) \
            - 2 * np.einsum("ib,ib->b", fitted, h) + power
        assert np.all(left[1:BANDS] <= 1e-4 * power[1:BANDS])
        assert np.median(np.abs(fitted - exact)[:, 1:BANDS]) < 1e-4
    # d = 0: the table of three parts, bit for bit
    three = LearnedWeights(snr=(1.0,), linear=_rows(0.9), rest=_rows(0.4), binned=_rows(0.3))
    np.testing.assert_array_equal(
        out(0.9, 0.4, 0.3, 0.0),
        match_wiener_gain(estimate, noisy, noise, weights=three, binned=binned))


def test_weighing_what_the_gain_dropped_keeps_the_micrographs_correlation():
    """Where the gain is at its floor (the fine detail, under the measured noise: 1 % of the
    micrograph), the table of three parts correlates with the truth less than the micrograph
    does; with the dropped part fitted as well, at least as much, on a new image."""
    rng = np.random.default_rng(2)
    sums = []
    for _ in range(3):
        truth, noisy, estimate, binned = _scene(rng)
        gained = match_wiener_gain(estimate, noisy, _noise(noisy))
        sums.append(weight_sums(estimate, gained, noisy, truth, _noise(noisy), binned,
                                dropped=True))
    four = fit_learned_weights(sums, rows=1)
    three = fit_learned_weights([s.first(3) for s in sums], rows=1)
    assert four.parts == ("linear", "rest", "binned", "dropped")
    assert LearnedWeights.from_dict(json.loads(json.dumps(four.to_dict()))) == four

    truth, noisy, estimate, binned = _scene(rng)
    noise = _noise(noisy)
    fine = slice(64, 127)  # rings 0.25–0.5 cycles/px of 256

    def fine_frc(image):
        return float(np.mean(frc(image, truth, taper=None)[1][fine]))

    outs = {n: match_wiener_gain(estimate, noisy, noise, weights=t, binned=binned)
            for n, t in (("three", three), ("four", four))}
    assert fine_frc(outs["three"]) < fine_frc(noisy) - 0.003
    assert fine_frc(outs["four"]) >= fine_frc(noisy) - 0.005
    mse = {n: float(np.mean((o - truth) ** 2)) for n, o in outs.items()}
    assert mse["four"] <= mse["three"] * 1.001


def test_a_dropped_part_needs_the_binned_pass():
    with pytest.raises(ConfigError, match="binned pass too"):
        LearnedWeights(snr=(1.0,), linear=_rows(1), rest=_rows(1), dropped=_rows(0.1))
    with pytest.raises(ConfigError, match=r"dropped weights must lie in \[0, 1"):
        _table(1, 1, 0, 1.5)
    truth, noisy, estimate, _ = _scene(np.random.default_rng(3))
    with pytest.raises(ValueError, match="with the binned pass"):
        weight_sums(estimate, estimate, noisy, truth, _noise(noisy), dropped=True)


def test_tapered_sums_leave_out_the_jump_between_opposite_edges():
    """An "estimate" that holds the truth's smooth ramp and none of its fine detail: over the
    whole image, the jump between the ramp's opposite edges puts a cross of power at every
    frequency, the same in the truth, and the estimate's rest seems to correlate with the
    truth at the finest scales more than the micrograph does; inside the window it does not
    (what is left of it is minus the share of the micrograph that the ring's regression, raised
    by the jump, took out)."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:256, :256].astype(np.float32)
    ramp = 10 * xx / 256 + 5 * yy / 256
    truth = (ramp + 0.3 * rng.normal(size=ramp.shape)).astype(np.float32)
    noisy = (truth + rng.normal(size=ramp.shape)).astype(np.float32)
    fine = slice(16, 32)  # the bands of 0.25–0.5 cycles/px

    def rest_over_input(taper):
        s = weight_sums(ramp, ramp, noisy, truth, _noise(noisy), ramp, dropped=True, taper=taper)
        h, g = s.gram()
        rest = h[1, fine].sum() / np.sqrt(g[1, 1, fine].sum())
        micrograph = (h[0] + h[3])[fine].sum() / np.sqrt((g[0, 0] + g[3, 3] + 2 * g[0, 3])[fine].sum())
        return rest / micrograph

    assert rest_over_input(None) > 0.5
    assert rest_over_input(0.2) < 0
