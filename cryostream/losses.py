"""Training losses: per pixel (``mse``, ``l1``) and per band of spatial frequency (``bands``).

A network trained by the squared error per pixel spends its effort where the error's power is,
and in a micrograph almost all of it lies below 0.01 cycles/px: at 10 e/Å² the bands from 0.03
to 0.25 cycles/px, where particles' features are, hold a few per cent of it, and there the
error stays at the truth's own power (the network gives up on them). ``bands`` weighs each of
the six bands of the FRC (:data:`LOSS_BANDS`) by the target's power in it, so an error of a
tenth of the signal counts as much in a weak band as in a strong one; half of it stays the
squared error per pixel (relative to the target's power), which keeps the low bands' gradient
where it was. Either weighting has the same minimum over all functions (the conditional mean);
what it changes is where a network of finite size, trained for finite steps, looks.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["LOSS_BANDS", "band_index", "training_loss"]

#: Band edges in cycles per pixel: the FRC's six bands, the last one taking the corners.
LOSS_BANDS = (0.0, 0.01, 0.03, 0.06, 0.125, 0.25)


@functools.lru_cache(maxsize=16)
def band_index(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For a real FFT of ``height × width``: each frequency's band (0–5) and its weight in the
    full spectrum (2 for the columns that stand for their mirror image, else 1)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    band = np.searchsorted(np.asarray(LOSS_BANDS[1:]), np.hypot(fy, fx), side="right")
    twice = np.full(fx.shape[1], 2.0, np.float32)
    twice[0] = 1.0
    if width % 2 == 0:
        twice[-1] = 1.0
    return band.astype(np.int32), np.broadcast_to(twice, band.shape).astype(np.float32)


def band_power(x, band: np.ndarray, mult: np.ndarray):
    """The power of ``x`` (batch, height, width, channels) in each band, summed over the batch."""
    import jax
    import jax.numpy as jnp

    f = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2))
    power = jnp.sum(jnp.real(f) ** 2 + jnp.imag(f) ** 2, axis=(0, 3)) * mult
    return jax.ops.segment_sum(power.ravel(), jnp.asarray(band.ravel()),
                               num_segments=len(LOSS_BANDS))


def training_loss(name: str, pred, target):
    """The scalar loss ``name`` (:data:`cryostream.config.LOSSES`) of ``pred`` against
    ``target``, both (batch, height, width, channels)."""
    import jax.numpy as jnp

    err = pred.astype(jnp.float32) - target.astype(jnp.float32)
    if name == "mse":
        return jnp.mean(err**2)
    if name == "l1":
        return jnp.mean(jnp.abs(err))
    band, mult = band_index(*err.shape[1:3])
    err_b = band_power(err, band, mult)
    target_b = band_power(target, band, mult)
    total = jnp.sum(target_b)
    floor = 1e-4 * total + 1e-12  # a band with (almost) no target power weighs ≤ 10⁴
    return 0.5 * jnp.sum(err_b) / (total + 1e-12) + 0.5 * jnp.mean(err_b / (target_b + floor))
