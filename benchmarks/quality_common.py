"""Helpers of the quality benchmarks (``bench_quality_gpu.py``, ``rank_seeds_gpu.py``,
``rescore_sim_outputs.py``): the network over a whole micrograph, the post-processing of a
:class:`~cryostream.config.DenoiseConfig` applied to an output computed once, scores (PSNR,
FRC), training and preparing, and the JSON and figure they write.

Post-processing is the library's: :func:`assemble` takes ``DenoiseConfig(...).pipeline()`` and
changes it only where a benchmark measures something else than :func:`cryostream.denoise
.denoise` would do, each said where it is used:

- ``alpha2``: the Noisier2Noise ``α²`` the benchmark gives (for white noise, the added
  variance over the *measured* noise variance; saved outputs rescored without their run);
- ``ctf_fit``: the CTF-shaped Wiener gain with a fit made once per micrograph and used
  whatever :func:`~cryostream.denoise.ctf_gain_check` says (the benchmark records the check
  beside the score instead of falling back to the radial gain).

:class:`MeasuredMicrograph` gives the steps a noise estimate measured elsewhere (the real
micrograph's, measured before normalisation).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from cryostream.config import DenoiseConfig
from cryostream.denoise import Micrograph, Pipeline, dihedral_mean
from cryostream.denoise.steps import N2NCorrection, WienerGain
from cryostream.metrics import frc, psnr

#: Gaussian σ (px) the best-Gaussian baseline tries.
SIGMAS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 8)

#: Bands (cycles per pixel) over which the FRC is averaged.
FRC_BANDS = ((0, 0.01), (0.01, 0.03), (0.03, 0.06), (0.06, 0.125), (0.125, 0.25), (0.25, 0.5))


def affine_fit(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``x`` scaled and shifted to fit ``ref`` by least squares (a peer's best case)."""
    a = np.stack([x.ravel(), np.ones(x.size, np.float32)], 1)
    coef, *_ = np.linalg.lstsq(a, ref.ravel(), rcond=None)
    return (x * coef[0] + coef[1]).astype(np.float32)


def frc_profile(estimate: np.ndarray, truth: np.ndarray) -> dict:
    """The FRC of ``estimate`` against ``truth`` in a few numbers (frequencies in cycles/px)."""
    return summarise_frc(*frc(estimate, truth))


def summarise_frc(f: np.ndarray, c: np.ndarray) -> dict:
    """An FRC curve ``c`` at frequencies ``f``: its mean, 0.5 and 0.143 crossings, band means."""

    def crossing(level):
        below = np.flatnonzero(c < level)
        return float(f[below[0]]) if below.size else float(f[-1])

    return {"mean": float(c.mean()), "crossing_0.5": crossing(0.5),
            "crossing_0.143": crossing(0.143),
            "bands": [round(float(c[(f >= a) & (f < b)].mean()), 4) for a, b in FRC_BANDS]}


def network_fn(run, tile: int, ensemble: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A function: normalised 2-D image -> the run's network output, in windows of ``tile``
    (:func:`cryostream.denoise.tiling.network_pass`), optionally the 8-fold dihedral mean."""
    from cryostream.denoise.tiling import network_pass

    def one(image):
        return network_pass(str(run), image, tile=tile)

    return functools.partial(dihedral_mean, one) if ensemble else one


def known_output(image: np.ndarray, output: np.ndarray,
                 network: Callable | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A network function that returns ``output`` (computed once) for ``image`` itself and
    calls ``network`` for any other image (the recorrupted copies of a score or calibration)."""

    def fn(x):
        if x is image:
            return output
        if network is None:
            raise ValueError("only the micrograph's own network output is known here")
        return network(x)

    return fn


@dataclasses.dataclass(frozen=True)
class KnownAlpha2(N2NCorrection):
    """The Noisier2Noise correction with a given ``α²`` instead of the run's."""

    alpha2: float = 1.0

    def init(self, micrograph):
        return float(self.alpha2)


@dataclasses.dataclass(frozen=True)
class FittedCTFGain(WienerGain):
    """The CTF-shaped Wiener gain with a given fit, used whatever its recorruption check says,
    with the defocus error its Thon-ring score gives it, as ``denoise`` has it."""

    fit: Any = None

    def init(self, micrograph):
        return {"fit": fit_scored(micrograph.image, self.fit), "check": float("nan"),
                "used": True}


def fit_scored(image: np.ndarray, fit):
    """``fit`` with the defocus error its Thon-ring score on ``image`` gives it
    (:func:`cryostream.denoise.fallback.fit_with_error`)."""
    import scipy.fft

    from cryostream.ctf import thon_ring_z
    from cryostream.denoise.fallback import fit_with_error

    spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)
    return fit_with_error(fit, thon_ring_z(spectrum, image.shape, fit))


@dataclasses.dataclass
class MeasuredMicrograph(Micrograph):
    """A :class:`~cryostream.denoise.Micrograph` whose own noise estimate is ``measured``
    (a :class:`~cryostream.matched.NoiseEstimate` in the units of ``image``)."""

    measured: Any = None

    def noise(self, image: np.ndarray | None = None):
        if image is None or image is self.image:
            return self.measured
        return super().noise(image)


def assemble(config: DenoiseConfig, *, alpha2: float | None = None,
             ctf_fit=None) -> Pipeline:
    """``config.pipeline()``, with the benchmark's ``α²`` and CTF fit where given (see the
    module docstring): the Noisier2Noise step becomes :class:`KnownAlpha2`, the CTF-shaped
    Wiener gain :class:`FittedCTFGain`."""
    pipeline = config.pipeline()
    steps = []
    for step in pipeline.steps:
        if alpha2 is not None and isinstance(step, N2NCorrection):
            step = KnownAlpha2(alpha2=alpha2)
        elif ctf_fit is not None and isinstance(step, WienerGain) and step.ctf:
            step = FittedCTFGain(ctf=True, optics=step.optics, fit=ctf_fit)
        steps.append(step)
    return dataclasses.replace(pipeline, steps=tuple(steps))


def topaz_fn(topaz_dir: str):
    """Topaz-Denoise's pretrained U-Net importable from ``topaz_dir``, or ``None``."""
    if not topaz_dir:
        return None
    sys.path.insert(0, topaz_dir)
    from cryostream.baselines import topaz_available, topaz_denoise

    return topaz_denoise if topaz_available() else None


def train_run(store, run, args, seed: int = 0, steps: int | None = None,
              recorrupt: bool = False, init: str | None = None) -> dict:
    """Train ``run`` on ``store`` with the benchmark's options (from ``init``'s parameters, a
    shipped model's name or a run, when given); what it took."""
    from cryostream.training import TrainConfig, train

    steps = steps or args.steps
    cfg = TrainConfig(model=args.model, precision=args.precision, residual=args.residual,
                      recorrupt=recorrupt, steps=steps,
                      batch_size=args.batch,
                      learning_rate=args.lr, warmup_steps=min(200, steps // 10),
                      eval_every=10**9, checkpoint_every=steps, keep_checkpoints=1, seed=seed,
                      threads=8, prefetch=8, init=init)
    t = time.perf_counter()
    result = train(store, run, cfg, log=lambda *_: None)
    return {"seconds": round(time.perf_counter() - t, 1), "final_loss": result.final_loss,
            "steps": steps, "batch": args.batch, "patch": args.patch, "model": args.model,
            "residual": args.residual, "precision": args.precision, "recorrupt": recorrupt,
            "init": init}


def prep(sources, store, noise, args, targets=None):
    """A store of ``sources`` with ``noise``: the benchmark's patch size, half-patch stride."""
    from cryostream import PrepareConfig, prepare

    cfg = PrepareConfig(patch_size=args.patch, stride=args.patch // 2, test_fraction=0.0,
                        noise=noise)
    return prepare(sources, store, cfg, overwrite=True, targets=targets, log=lambda *_: None)


def plain(check: dict) -> dict:
    """A method-noise result with its arrays as short lists, for JSON."""
    return {k: (v[::4].round(4).tolist() if isinstance(v, np.ndarray) else v)
            for k, v in check.items()}


def save(res: dict, out, part: str) -> None:
    """Write what is measured so far (a run cut short still leaves its figures)."""
    (out / f"quality_{part}.json").write_text(json.dumps(res, indent=1))


def score(row: dict, curves: dict, truth: np.ndarray, name: str, image: np.ndarray) -> None:
    """PSNR and FRC of ``image`` against ``truth``, into ``row`` and ``curves`` under ``name``."""
    row[name] = psnr(image, truth)
    f, c = frc(image, truth)
    curves.setdefault(name, []).append(c)
    row[f"frc_mean_{name}"] = float(np.mean(c))
    profile = summarise_frc(f, c)
    row[f"frc05_{name}"] = profile["crossing_0.5"]  # cycles/px where the FRC first falls below ½
    row[f"frc_bands_{name}"] = profile["bands"]  # the FRC averaged over FRC_BANDS


def figure_frc(path, freq: np.ndarray, curves: dict) -> None:
    """The FRC curves (smoothed) against the frequency in 1/Å."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, c in curves.items():
        ax.plot(freq, gaussian_filter(c, 2), label=k)
    ax.axhline(0.5, color="gray", lw=0.5)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FRC with the ground truth")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def device() -> str:
    """The kind of JAX's first device."""
    import jax

    return str(jax.devices()[0].device_kind)
