"""The held-out patches' figures during training (:func:`cryostream.training.train`): the
jit-compiled evaluation step and its means over a split."""

from __future__ import annotations

import numpy as np

from cryostream.config import NoiseConfig
from cryostream.loader import PatchLoader, model_input

__all__ = ["make_eval_step", "evaluate_split"]


def make_eval_step(graphdef, *, noise: NoiseConfig | None = None, seed: int = 0,
                   noise_table: dict | None = None):
    """The jit-compiled ``(params, batch, batch_number) -> metrics`` on held-out patches.

    Per patch: squared error of the model and of the noisy input, so PSNR can be averaged, and
    the target's mean power (the error of an output of zero).
    The reference is the stored target, also for recorrupted training (``TrainConfig.recorrupt``).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    def evaluate(params, batch, number):
        inp, target = model_input(batch, noise, seed + 1, number, noise_table)
        pred = nnx.merge(graphdef, params)(inp)
        mse = jnp.mean((pred - target) ** 2, axis=(1, 2, 3))
        noisy = jnp.mean((inp - target) ** 2, axis=(1, 2, 3))
        return {"mse": mse, "noisy_mse": noisy, "target_power": jnp.mean(target**2, axis=(1, 2, 3))}

    return jax.jit(evaluate)


def evaluate_split(eval_step, params, loader: PatchLoader, batches: int, sharding=None) -> dict:
    """Mean loss and PSNR (dB, peak 1.0) of the model and of the noisy input over ``batches``."""
    def _psnr_db(mse: np.ndarray) -> float:
        return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))

    mses, noisy = [], []
    loader.restore({"epoch": 0, "batch": 0})
    for number, batch in zip(range(batches), loader.device_batches(sharding), strict=False):
        out = eval_step(params, batch, number)
        mses.append(np.asarray(out["mse"]))
        noisy.append(np.asarray(out["noisy_mse"]))
    loader.close()
    mse, nmse = np.concatenate(mses), np.concatenate(noisy)
    return {"loss": float(mse.mean()), "psnr": _psnr_db(mse), "noisy_psnr": _psnr_db(nmse),
            "patches": int(mse.size)}
