"""Training losses: per pixel (``mse``, ``l1``) and per band of spatial frequency (``bands``).

At low dose the bands from 0.03 to 0.25 cycles/px, where particles' shapes are, hold far more
noise than signal (22 to 213 times on a simulated T20S micrograph at 10 e/Å², where the best
gain per band removes 0.5–4 % of the error there), so what a network could still win in them
is a small share of the squared error per pixel, next to what no network can remove. ``bands``
divides the error in each of the six bands of the FRC (:data:`LOSS_BANDS`) by the target's
power in that band, so that an error of a tenth of a band's signal costs as much in a weak
band as in a strong one; half of the loss stays the squared error per pixel over the target's
power. Each image's mean level is left out of the bands (a micrograph's mean sits far above its
contrast, and in a patch under 100 px band 0 holds nothing else) and of the target's power, so
the loss does not depend on a micrograph's brightness; an error in the mean level counts in the
per-pixel half. The weights follow each batch's targets, so the loss's minimum is a
weighted conditional mean rather than exactly the per-pixel loss's; what the weighting mostly
changes is where a network of finite size, trained for finite steps, spends its effort. On 512²
patches of a clean simulated micrograph it weighs an error at 0.01–0.06 cycles/px about twice,
and at 0.25–0.5 about ten times, as much as the per-pixel loss does, relative to the bands
between. Experimental: not the default; on the general model's recipe it came level with the
per-pixel loss at the default learning rate, no better (training guide).
"""

from __future__ import annotations

import functools

import numpy as np

from cryostream.config import LOSSES

__all__ = ["LOSS_BANDS", "band_index", "band_power", "training_loss"]

#: Band edges in cycles per pixel: the FRC's six bands, the last one taking the corners.
LOSS_BANDS = (0.0, 0.01, 0.03, 0.06, 0.125, 0.25)

#: The floor under a band's power, as a share of the target's power in all bands: no band
#: weighs more than ``1 / (6 · FLOOR)`` times the per-pixel half.
FLOOR = 1e-4


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


def band_power(x):
    """The power of ``x`` (batch, height, width, channels) in each band of :data:`LOSS_BANDS`,
    summed over the batch, each image's mean level left out of band 0."""
    import jax
    import jax.numpy as jnp

    band, mult = band_index(*x.shape[1:3])
    f = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2))
    power = jnp.sum(jnp.real(f) ** 2 + jnp.imag(f) ** 2, axis=(0, 3)) * mult
    power = power.at[0, 0].set(0.0)
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
    if name != "bands":
        raise ValueError(f"loss={name!r}: must be one of {', '.join(LOSSES)}")
    err_b = band_power(err)
    target_b = band_power(target)
    total = jnp.sum(target_b) + 1e-20
    per_pixel = err.shape[1] * err.shape[2] * jnp.sum(err**2)  # with the mean level's error
    return 0.5 * per_pixel / total + 0.5 * jnp.mean(err_b / (target_b + FLOOR * total))
