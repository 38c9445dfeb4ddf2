"""The training losses: ``bands`` weighs each band of spatial frequency by the target's power."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cryostream.losses import LOSS_BANDS, band_index, training_loss


def _image(seed: int, shape=(2, 64, 48, 1)) -> np.ndarray:
    """Smooth-ish random images: power in every band, most of it at low frequency."""
    rng = np.random.default_rng(seed)
    white = rng.normal(size=shape)
    f = np.fft.fft2(white, axes=(1, 2))
    r = np.hypot(np.fft.fftfreq(shape[1])[:, None], np.fft.fftfreq(shape[2])[None, :])
    return np.real(np.fft.ifft2(f / ((r + 0.01) ** 2)[None, :, :, None], axes=(1, 2))).astype(np.float32)


def _band_power(x: np.ndarray) -> np.ndarray:
    band, mult = band_index(*x.shape[1:3])
    spectrum = np.sum(np.abs(np.fft.rfft2(x[..., 0], axes=(1, 2))) ** 2, axis=0) * mult
    return np.array([spectrum[band == b].sum() for b in range(len(LOSS_BANDS))])


def test_band_index_follows_the_frc_bands_and_counts_mirrored_columns_twice():
    band, mult = band_index(64, 48)
    assert band.shape == mult.shape == (64, 25)
    assert band[0, 0] == 0 and band.max() == len(LOSS_BANDS) - 1
    r = np.hypot(np.fft.fftfreq(64)[:, None], np.fft.rfftfreq(48)[None, :])
    assert np.all(band == np.searchsorted(LOSS_BANDS, r, side="right") - 1)
    # Parseval: the weighted half spectrum's power is the full one's
    x = np.random.default_rng(0).normal(size=(64, 48))
    half = np.sum(np.abs(np.fft.rfft2(x)) ** 2 * mult)
    assert half == pytest.approx(np.sum(np.abs(np.fft.fft2(x)) ** 2), rel=1e-5)
    assert band_index(63, 47)[1][0, -1] == 2  # an odd width has no unpaired last column


def test_an_error_proportional_to_the_target_costs_its_square_in_every_band():
    """(Less where a band's power is near the floor under it, 10⁻⁴ of the total.)"""
    target = _image(1)
    t_band = _band_power(target)
    share = np.mean(t_band / (t_band + 1e-4 * t_band.sum()))
    assert 0.9 < share < 1  # the top band holds 0.02 % of the power: its weight is capped
    for c in (0.1, 0.5):
        loss = training_loss("bands", jnp.asarray(target * (1 + c)), jnp.asarray(target))
        assert float(loss) == pytest.approx(c * c * (0.5 + 0.5 * share), rel=1e-4)
    assert float(training_loss("bands", jnp.asarray(target), jnp.asarray(target))) == 0.0


def test_an_error_in_a_weak_band_counts_by_that_bands_power_not_the_pixels():
    """A cosine at 0.104 cycles/px (band 3): the per-pixel half sees it against all the target's
    power, the per-band half against band 3's alone, so it costs far more than under ``mse``."""
    target = _image(2)
    y, x = np.mgrid[:64, :48]
    wave = np.cos(2 * np.pi * (4 * y / 64 + 4 * x / 48))[None, :, :, None].astype(np.float32)
    err = np.broadcast_to(0.05 * wave * np.sqrt(np.mean(target**2)), target.shape)
    pred = target + err
    band, _ = band_index(64, 48)
    t_band = _band_power(target)
    assert band[4, 4] == band[60, 4] == 3  # where the wave lies
    assert t_band[3] < 0.01 * t_band.sum()
    e_total = _band_power(err).sum()
    floor = 1e-4 * sum(t_band)
    expected = 0.5 * e_total / sum(t_band) + 0.5 * e_total / (t_band[3] + floor) / len(LOSS_BANDS)
    loss = float(training_loss("bands", jnp.asarray(pred), jnp.asarray(target)))
    assert loss == pytest.approx(expected, rel=1e-3)
    relative_mse = float(np.mean(err**2) / np.mean(target**2))
    assert loss > 10 * relative_mse


def test_the_pixel_losses_are_unchanged_and_bf16_predictions_are_compared_in_float32():
    target, pred = _image(3), _image(4)
    assert float(training_loss("mse", pred, target)) == pytest.approx(np.mean((pred - target) ** 2))
    assert float(training_loss("l1", pred, target)) == pytest.approx(np.mean(np.abs(pred - target)))
    half = jnp.asarray(pred, jnp.bfloat16)
    want = np.mean((np.asarray(half, np.float32) - target) ** 2)
    assert float(training_loss("mse", half, jnp.asarray(target))) == pytest.approx(want, rel=1e-6)
