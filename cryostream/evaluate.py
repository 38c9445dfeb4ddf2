"""Held-out quality of a trained run beside the baselines, on a store's test split."""

from __future__ import annotations

import numpy as np

from cryostream.metrics import best_gaussian, psnr

__all__ = ["compare_on_store"]


def compare_on_store(run, store, *, patches: int = 64, batch_size: int = 8) -> dict[str, float]:
    """PSNR (dB, peak 1.0) on up to ``patches`` test patches: noisy input, best Gaussian, model.

    Inputs of on-device-noise stores are synthesised with the store's noise model (seeded).
    """
    import jax
    import jax.numpy as jnp

    from cryostream.loader import PatchLoader
    from cryostream.noise import add_noise_jax
    from cryostream.training import load_model

    model, _ = load_model(run)
    apply = jax.jit(lambda x: model(x))
    loader = PatchLoader(store, "test", batch_size, shuffle=False, repeat=False,
                         drop_remainder=False)
    noisy, clean, denoised = [], [], []
    for number, batch in enumerate(loader):
        target = batch["target"].astype(np.float32)
        if "input" in batch:
            inp = batch["input"].astype(np.float32)
        else:
            key = jax.random.fold_in(jax.random.key(12345), number)
            inp = np.asarray(add_noise_jax(target, loader.noise, key))
        out = np.asarray(apply(jnp.asarray(inp)[..., None]))[..., 0]
        noisy.append(inp)
        clean.append(target)
        denoised.append(out)
        if sum(len(c) for c in clean) >= patches:
            break
    loader.close()
    noisy, clean, denoised = (np.concatenate(a)[:patches] for a in (noisy, clean, denoised))
    gauss_db, sigma = best_gaussian(noisy, clean)
    return {"patches": int(len(clean)), "noisy_psnr": float(psnr(noisy, clean)),
            "gaussian_psnr": float(gauss_db), "gaussian_sigma": sigma,
            "model_psnr": float(psnr(denoised, clean))}
