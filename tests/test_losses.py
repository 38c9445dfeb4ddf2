"""The training losses: ``bands`` weighs each band of spatial frequency by the target's power."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cryostream.losses import FLOOR, LOSS_BANDS, band_index, training_loss


def _image(seed: int, shape=(2, 64, 48, 1), level: float = 0.0) -> np.ndarray:
    """Random images with power in every band, most of it at low frequency, each image's mean
    at ``level`` standard deviations (a micrograph's mean level is far above its contrast)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fft2(rng.normal(size=shape), axes=(1, 2))
    r = np.hypot(np.fft.fftfreq(shape[1])[:, None], np.fft.fftfreq(shape[2])[None, :])
    x = np.real(np.fft.ifft2(f / ((r + 0.01) ** 2)[None, :, :, None], axes=(1, 2)))
    x -= x.mean(axis=(1, 2), keepdims=True)
    return (x + level * x.std()).astype(np.float32)


def _band_power(x: np.ndarray, mean_level: bool = True) -> np.ndarray:
    """NumPy's account of each band's power over the batch (full FFT, no column weights)."""
    f = np.fft.fft2(x[..., 0], axes=(1, 2))
    if not mean_level:
        f[:, 0, 0] = 0
    r = np.hypot(np.fft.fftfreq(x.shape[1])[:, None], np.fft.fftfreq(x.shape[2])[None, :])
    band = np.searchsorted(LOSS_BANDS, r, side="right") - 1
    power = np.sum(np.abs(f) ** 2, axis=0)
    return np.array([power[band == b].sum() for b in range(len(LOSS_BANDS))])


def _expected(pred: np.ndarray, target: np.ndarray) -> float:
    err_b = _band_power(pred - target, mean_level=False)
    t_b = _band_power(target, mean_level=False)
    per_pixel = _band_power(pred - target).sum()  # with the mean level's error
    return 0.5 * per_pixel / t_b.sum() + 0.5 * np.mean(err_b / (t_b + FLOOR * t_b.sum()))


def _bands(pred, target) -> float:
    return float(training_loss("bands", jnp.asarray(pred), jnp.asarray(target)))


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
    t_b = _band_power(target)
    share = np.mean(t_b / (t_b + FLOOR * t_b.sum()))
    assert 0.5 < share < 0.99  # band 0 holds only the mean, left out: its weight is capped
    for c in (0.1, 0.5):
        assert _bands(target * (1 + c), target) == pytest.approx(c * c * (0.5 + 0.5 * share),
                                                                 rel=1e-4)
    assert _bands(target, target) == 0.0


def test_the_mean_level_of_the_micrographs_does_not_change_the_loss():
    """A micrograph's mean sits far above its contrast: it must not count as band 0's signal
    (that would switch band 0's weight off), and the same error costs the same on any level."""
    dark, bright = _image(5), _image(5, level=30.0)
    err = 0.2 * _image(6)
    assert _bands(bright + err, bright) == pytest.approx(_bands(dark + err, dark), rel=1e-4)
    assert _bands(bright + err, bright) == pytest.approx(_expected(bright + err, bright), rel=1e-4)
    # an error in the mean level alone counts in the per-pixel half: 0.1² of the contrast's power
    shifted = _bands(bright + 0.1 * bright.std(), bright)
    assert shifted == pytest.approx(0.5 * 0.01, rel=1e-3)


def test_an_error_in_a_weak_band_counts_by_that_bands_power_not_the_pixels():
    """A cosine at 0.42 cycles/px (band 5): the per-pixel half sees it against all the target's
    power, the per-band half against band 5's alone, so it costs far more than under ``mse``."""
    target = _image(2, level=10.0)
    y, x = np.mgrid[:64, :48]
    wave = np.cos(2 * np.pi * (16 * y / 64 + 16 * x / 48))[None, :, :, None].astype(np.float32)
    err = np.broadcast_to(0.05 * wave * target.std(), target.shape)
    t_b = _band_power(target, mean_level=False)
    assert band_index(64, 48)[0][16, 16] == 5  # where the wave lies
    assert t_b[5] < 0.01 * t_b.sum()
    e_total = _band_power(err).sum()
    floor = FLOOR * t_b.sum()
    expected = 0.5 * e_total / t_b.sum() + 0.5 * e_total / (t_b[5] + floor) / len(LOSS_BANDS)
    loss = _bands(target + err, target)
    assert loss == pytest.approx(expected, rel=1e-3)
    assert loss > 5 * float(np.mean(err**2) / np.var(target))


def test_the_pixel_losses_are_unchanged_and_bf16_is_compared_in_float32():
    target, pred = _image(3), _image(4)
    assert float(training_loss("mse", pred, target)) == pytest.approx(np.mean((pred - target) ** 2))
    assert float(training_loss("l1", pred, target)) == pytest.approx(np.mean(np.abs(pred - target)))
    half_p, half_t = jnp.asarray(pred, jnp.bfloat16), jnp.asarray(target, jnp.bfloat16)
    as_f32 = (np.asarray(half_p, np.float32), np.asarray(half_t, np.float32))
    assert float(training_loss("mse", half_p, half_t)) == pytest.approx(
        np.mean((as_f32[0] - as_f32[1]) ** 2), rel=1e-6)
    assert _bands(half_p, half_t) == pytest.approx(_expected(*as_f32), rel=1e-4)


def test_an_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="loss='l2'"):
        training_loss("l2", jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 8, 8, 1)))
