"""The held-out patches' figures during training (:func:`cryostream.training.train`): the
jit-compiled evaluation step and its means over a split."""

from __future__ import annotations

import numpy as np

from cryostream.config import NoiseConfig
from cryostream.loader import PatchLoader, model_input
from cryostream.step_memory import micro_batch, whole_batch

__all__ = ["make_eval_step", "HeldOutStep", "evaluate_split"]


def make_eval_step(graphdef, *, noise: NoiseConfig | None = None, seed: int = 0,
                   noise_table: dict | None = None) -> HeldOutStep:
    """The jit-compiled ``(params, batch, batch_number) -> metrics`` on held-out patches
    (:class:`HeldOutStep`).

    Per patch: squared error of the model and of the noisy input, so PSNR can be averaged, and
    the target's mean power (the error of an output of zero).
    The reference is the stored target, also for recorrupted training (``TrainConfig.recorrupt``).
    """
    return HeldOutStep(graphdef, noise, seed, noise_table)


class HeldOutStep:
    """:func:`make_eval_step`'s step: one compiled call on the whole batch, or, where the
    training takes micro-batches (``parts``, which :func:`~cryostream.training.train` sets to
    its step's), one call per micro-batch on inputs drawn for the whole batch, so the figures
    are the same."""

    def __init__(self, graphdef, noise, seed: int, noise_table) -> None:
        import jax
        import jax.numpy as jnp
        from flax import nnx

        def inputs(batch, number):
            return model_input(batch, noise, seed + 1, number, noise_table)

        def figures(params, inp, target):
            pred = nnx.merge(graphdef, params)(inp)
            mse = jnp.mean((pred - target) ** 2, axis=(1, 2, 3))
            noisy = jnp.mean((inp - target) ** 2, axis=(1, 2, 3))
            return {"mse": mse, "noisy_mse": noisy,
                    "target_power": jnp.mean(target**2, axis=(1, 2, 3))}

        def part(params, inp, target, j, parts):
            return figures(params, micro_batch(inp, parts, j), micro_batch(target, parts, j))

        self.parts = 1
        self.whole = jax.jit(lambda params, batch, number: figures(params, *inputs(batch, number)))
        self.inputs = jax.jit(inputs)
        self.part = jax.jit(part, static_argnums=4)

    def __call__(self, params, batch, number):
        if self.parts == 1:
            return self.whole(params, batch, number)
        inp, target = self.inputs(batch, number)
        return whole_batch([self.part(params, inp, target, j, self.parts)
                            for j in range(self.parts)])


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
