"""Noise models: one definition, used by preprocessing (NumPy) and, later, on the device.

``gaussian``: ``x + N(0, σ²)``; ``poisson``: ``Poisson(dose · max(x, 0)) / dose``;
``poisson-gaussian``: the Poisson draw, then the Gaussian; ``matched``: the micrograph's own
noise statistics (:mod:`cryostream.matched`; per band in ``preprocess``, per patch here).
Noise of a patch is seeded from what the patch *is*, never from scheduling:
``default_rng([seed, micrograph_uid, y, x])``.
"""

from __future__ import annotations

import numpy as np

from cryostream.config import NoiseConfig

__all__ = ["patch_rng", "add_noise"]


def patch_rng(seed: int, micrograph_uid: int, y: int, x: int) -> np.random.Generator:
    """The generator of one patch, from its meaning (seed, micrograph, origin in pixels)."""
    return np.random.default_rng([seed, micrograph_uid, y, x])


def add_noise(target: np.ndarray, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """A noisy float32 copy of ``target`` (normalised intensities) under ``noise``."""
    target = np.asarray(target, dtype=np.float32)
    if noise.model in ("poisson", "poisson-gaussian"):
        counts = rng.poisson(np.maximum(target, 0) * np.float32(noise.dose))
        out = counts.astype(np.float32)
        out *= np.float32(1 / noise.dose)
    else:
        out = target.copy()
    if noise.model in ("gaussian", "poisson-gaussian") and noise.sigma > 0:
        out += rng.standard_normal(size=target.shape, dtype=np.float32) * np.float32(noise.sigma)
    return out


def add_noise_jax(target, noise: NoiseConfig, key, matched: dict | None = None):
    """The same noise models as :func:`add_noise`, on the device with a JAX key.

    ``target`` is a float array (any shape; (B, P, P) for matched noise); the result is
    float32. Used by the training loader for stores prepared with ``noise_mode="on-device"``:
    fresh noise every step. Matched noise needs ``matched``: per-patch ``kernel`` (B, K, K),
    ``shot_fraction`` and ``mean`` (B,) of each patch's micrograph
    (:func:`cryostream.matched.matched_noise_jax`).
    """
    import jax
    import jax.numpy as jnp

    target = jnp.asarray(target, dtype=jnp.float32)
    if noise.model == "matched":
        from cryostream.matched import matched_noise_jax

        return target + matched_noise_jax(target, matched["kernel"], matched["shot_fraction"],
                                          matched["mean"], noise.alpha, key)
    k_poisson, k_gauss = jax.random.split(key)
    if noise.model in ("poisson", "poisson-gaussian"):
        lam = jnp.maximum(target, 0) * noise.dose
        out = jax.random.poisson(k_poisson, lam).astype(jnp.float32) * (1 / noise.dose)
    else:
        out = target
    if noise.model in ("gaussian", "poisson-gaussian") and noise.sigma > 0:
        out = out + noise.sigma * jax.random.normal(k_gauss, target.shape, dtype=jnp.float32)
    return out
