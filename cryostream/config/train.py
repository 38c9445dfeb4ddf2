"""How a denoiser is trained: the model preset, precision, optimiser and schedule."""

from __future__ import annotations

import dataclasses

from cryostream.config.checks import check_choice, check_positive, check_seed
from cryostream.errors import ConfigError

__all__ = ["MODEL_PRESETS", "PRECISIONS", "LOSSES", "TrainConfig"]

MODEL_PRESETS = ("unet-small", "unet", "unet-large", "unet-deep", "unet-pyramid")
PRECISIONS = ("bf16", "fp32")
LOSSES = ("mse", "l1", "bands")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Parameters
    ----------
    model : str
        Preset name (``unet-small``, ``unet``, ``unet-large``, ``unet-deep``).
    precision : {"bf16", "fp32"}
        Compute precision (parameters are float32 either way).
    residual : bool
        Predict a correction added to the input.
    recorrupt : bool
        Recorrupted-to-recorrupted targets (Pang et al., CVPR 2021), for stores with matched
        noise: the input stays ``y + α·m`` and the target becomes ``y − m / α``, where ``m``
        is drawn like the micrograph's own noise and ``α`` is the store's. For Gaussian noise
        the two carry independent noise, so the network learns the clean image itself at
        ``(1 + α²)`` times the micrograph's noise: denoise without ``--n2n-correction``.
    steps, batch_size : int
        Optimisation steps and patches per step (divisible by the device count).
    learning_rate, warmup_steps, weight_decay, clip_norm : float, int, float, float
        AdamW with linear warm-up, cosine decay to 1 % and global-norm clipping.
    beta2 : float
        AdamW's decay of its running mean of squared gradients (0 < ``beta2`` < 1; its mean
        of gradients decays at 0.9). After a long quiet stretch of small gradients that mean
        is small, and a sudden large gradient then moves every parameter it touches by
        ``0.1 / sqrt(1 − beta2)`` times the learning rate at once, and by up to 6.6 times a
        dozen steps on if it persists (at 0.999; at 0.99: 1.0 and 2.1): ``0.99`` forgets the
        quiet stretch faster. The default is 0.999: on the general model's recipe 0.99 turned
        one seed's divergence into a small spike but spiked another seed that was smooth at
        0.999 (docs, benchmarks).
    loss : {"mse", "l1", "bands"}
        The squared or absolute error per pixel, or ``bands`` (experimental): half the squared
        error, half the error in each band of spatial frequency over the target's power there,
        the mean level left out (:mod:`cryostream.losses`). ``mse`` stays the default: on the
        general model's recipe at a peak learning rate of 5e-4, ``bands`` gained 0–0.4 dB over
        ``mse`` at that rate, which brought it level with ``mse`` at the default 1e-3, and no
        FRC where Topaz leads (docs, benchmarks, "Twice the steps").
    eval_every, eval_batches : int
        Evaluate on the test split every ``eval_every`` steps over ``eval_batches`` batches.
    checkpoint_every, keep_checkpoints : int
        Save every N steps (and at the end); keep the last N.
    seed : int
        Seed of initialisation, shuffling and on-device noise.
    threads, prefetch : int
        Loader reader threads and queued batches.
    init : str, optional
        Where the parameters start: ``None`` draws them from ``seed``; otherwise a shipped
        model's name (``"general"``), an exported ``.npz`` or a run folder (its last
        checkpoint), whose network must have this run's shape
        (:func:`cryostream.warm_start.start_params`). The optimizer starts fresh either way.
        Recorded in the run's ``config.json``, so a run says where it started.
    augment : bool
        Show each batch under one of the eight symmetries of the square (quarter turns and
        mirror images; one per step for the whole batch, drawn on the device): eight times
        the views of the same patches, against overfitting a small store. Input and target
        turn together. Off by default: the noise turns with the patch (the micrograph's own
        and any added), so use it only for detectors whose noise looks the same in every
        direction.
    fresh_noise : bool
        For stores of noisy micrographs paired with clean targets (``prepare(targets=...)``,
        noise ``none``; refused for even/odd halves and for stores with added noise, whose
        targets carry noise of their own):
        at every step each patch's stored noise (its input less its target) is moved before it
        is added back to the target, by a random circular shift and one of the square's eight
        symmetries, drawn per patch on the device. The noise keeps its values and, for a
        detector whose noise looks the same in every direction, its spectrum, but almost never
        sits on the same structure twice, so a long training cannot learn the store's noise by
        heart.
        The held-out figures are on the stored noise.
    """

    model: str = "unet"
    precision: str = "bf16"
    residual: bool = False
    recorrupt: bool = False
    steps: int = 1000
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    beta2: float = 0.999
    loss: str = "mse"
    eval_every: int = 200
    eval_batches: int = 4
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    seed: int = 0
    threads: int = 4
    prefetch: int = 4
    init: str | None = None
    augment: bool = False
    fresh_noise: bool = False

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODEL_PRESETS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("loss", self.loss, LOSSES)
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every",
                     "keep_checkpoints", "threads", "prefetch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be ≥ 1")
        check_positive("learning_rate", self.learning_rate)
        check_seed("seed", self.seed)
        if not 0.0 < self.beta2 < 1.0:
            raise ConfigError(f"beta2={self.beta2!r}: must be in (0, 1) (AdamW's default 0.999)")
        if self.init is not None and not (isinstance(self.init, str) and self.init.strip()):
            raise ConfigError(f"init={self.init!r}: must be a shipped model's name ('general'), "
                              "an exported .npz or a run folder, or None to start from the seed")

    def model_config(self):
        """The :class:`~cryostream.models.ModelConfig` of the preset, precision and residual."""
        from cryostream.models.unet import PRESETS

        preset = PRESETS[self.model]
        dtype = "bfloat16" if self.precision == "bf16" else "float32"
        return dataclasses.replace(preset, compute_dtype=dtype, residual=self.residual)
