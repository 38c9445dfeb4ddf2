"""One tree of frozen, validated configuration dataclasses.

Every store, checkpoint and output carries its config as JSON (:func:`to_json`) together with
the cryostream version, so each artefact says how it was made. :func:`from_dict` rebuilds a
config and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, TypeVar

from cryostream._version import __version__
from cryostream.errors import ConfigError
from cryostream.patches import EDGE_POLICIES

__all__ = [
    "NOISE_MODELS",
    "NOISE_MODES",
    "STORE_DTYPES",
    "COMPRESSIONS",
    "NoiseConfig",
    "PrepareConfig",
    "SimulateConfig",
    "TrainConfig",
    "MODEL_PRESETS",
    "to_dict",
    "from_dict",
    "to_json",
]

NOISE_MODELS = ("gaussian", "poisson", "poisson-gaussian", "matched", "none")
NOISE_MODES = ("stored", "on-device")
STORE_DTYPES = ("float32", "float16")
COMPRESSIONS = ("none", "lz4", "zstd")
MODEL_PRESETS = ("unet-small", "unet", "unet-large")

T = TypeVar("T")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, int | float) and math.isfinite(value) and ok):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: must be a finite number {bound}")


def _floats(config, *names: str) -> None:
    """Store integer values of float fields as floats: 10 and 10.0 are one config (same JSON)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, name, float(value))


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: must be one of {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Synthetic noise added to normalised patches (the seed's protocol).

    Parameters
    ----------
    model : {"gaussian", "poisson", "poisson-gaussian", "matched"}
        ``gaussian``: ``x + N(0, sigma²)``; ``poisson``: ``Poisson(dose · max(x, 0)) / dose``;
        ``poisson-gaussian``: both, Poisson first; ``matched``: noise with each micrograph's
        own measured spectrum and shot-noise share, ``alpha`` times as strong
        (:mod:`cryostream.matched`); ``none``: no added noise, for stores whose targets are
        separate files (``prepare(..., targets=...)``, e.g. simulated ground truth).
    sigma : float
        Standard deviation of the Gaussian part, in normalised intensity units.
    dose : float
        Counts per unit of normalised intensity for the Poisson part.
    mode : {"stored", "on-device"}
        ``stored`` writes noisy inputs next to the targets; ``on-device`` stores targets only
        and the training loader synthesises fresh noise on the device every epoch.
    alpha : float
        ``matched``: standard deviation of the added noise relative to the micrograph's own
        (the Noisier2Noise ``α``).
    shot : float, optional
        ``matched``: share of the noise that follows the local intensity like shot noise;
        ``None`` uses each micrograph's estimate.
    radius : int
        ``matched``: radius in pixels of the kernel that shapes the noise spectrum.
    """

    model: str = "poisson-gaussian"
    sigma: float = 0.05
    dose: float = 10.0
    mode: str = "stored"
    alpha: float = 1.0
    shot: float | None = None
    radius: int = 16

    def __post_init__(self) -> None:
        _floats(self, "sigma", "dose", "alpha", "shot")
        _choice("noise", self.model, NOISE_MODELS)
        _choice("noise_mode", self.mode, NOISE_MODES)
        if self.model == "none" and self.mode != "stored":
            raise ConfigError("noise=none stores its inputs: use noise_mode='stored'")
        _positive("sigma", self.sigma, allow_zero=True)
        _positive("dose", self.dose)
        _positive("alpha", self.alpha)
        if self.shot is not None and not (isinstance(self.shot, float) and 0 <= self.shot <= 1):
            raise ConfigError(f"shot={self.shot!r}: must be in [0, 1], or None to use the estimate")
        if not isinstance(self.radius, int) or isinstance(self.radius, bool) or not 1 <= self.radius <= 64:
            raise ConfigError(f"radius={self.radius!r}: must be an integer in [1, 64]")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How micrographs become a patch store.

    Parameters
    ----------
    patch_size, stride : int
        Patch edge and step in pixels.
    edge : {"cover", "drop"}
        Edge policy of the patch grid (:func:`cryostream.patches.patch_origins`).
    percentile : float
        Per-micrograph percentile mapped to 1.0 by normalisation (exact, per micrograph).
    noise : NoiseConfig
        The synthetic noise model.
    dtype : {"float32", "float16"}
        Stored sample dtype.
    compression : {"none", "lz4", "zstd"}
        HDF5 chunk compression (lz4 is bitshuffle-LZ4).
    test_fraction : float
        Fraction of micrographs held out, chosen by a stable hash of each name.
    seed : int
        Seed of the noise and of the split.
    """

    patch_size: int = 1024
    stride: int = 512
    edge: str = "cover"
    percentile: float = 95.0
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    dtype: str = "float32"
    compression: str = "none"
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        _floats(self, "percentile", "test_fraction")
        for name in ("patch_size", "stride", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name}={value!r}: must be an integer")
        _positive("patch_size", self.patch_size)
        _positive("stride", self.stride)
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed}: must be ≥ 0")
        _choice("edge", self.edge, EDGE_POLICIES)
        _choice("dtype", self.dtype, STORE_DTYPES)
        _choice("compression", self.compression, COMPRESSIONS)
        if not (0 < self.percentile <= 100):
            raise ConfigError(f"percentile={self.percentile!r}: must be in (0, 100]")
        if not (0 <= self.test_fraction < 1):
            raise ConfigError(f"test_fraction={self.test_fraction!r}: must be in [0, 1)")
        if not isinstance(self.noise, NoiseConfig):
            raise ConfigError(f"noise={self.noise!r}: must be a NoiseConfig")


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """EMPIAR-10025-like micrographs (T20S proteasome, 300 kV), with their ground truth.

    Parameters
    ----------
    shape : (int, int)
        Micrograph size (rows, columns) in pixels; EMPIAR-10025 is 7676 × 7420.
    pixel_size_angstrom : float
        Pixel size in Å.
    dose_e_per_angstrom2 : float
        Total electron dose; 50 e⁻/Å² is ≈22 e⁻ per 0.6575 Å pixel.
    particles_per_micrograph : int
        Particles placed per full-size micrograph (scaled with area for smaller shapes).
    defocus_um : (float, float)
        Range of the per-micrograph mean defocus, µm (underfocus positive).
    astigmatism_angstrom : float
        Largest defocus difference between the two astigmatic axes, Å.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics of the microscope.
    b_factor_angstrom2 : float
        Envelope B-factor damping high frequencies (``exp(-B k² / 4)``).
    ice_contrast : float
        Relative amplitude of the slowly varying ice-thickness background.
    detector_nps_nyquist : float
        Detector response: the shot noise's power at Nyquist relative to zero frequency
        (``1`` = white shot noise; real micrographs read ≈0.03–0.1). The noise power spectrum
        is ``r + (1 - r) · cos²(π f)`` of the Poisson noise (``f`` the radial frequency in cycles
        per pixel, held at ``r`` beyond Nyquist); the signal is not filtered
        (:func:`cryostream.simulate.micrograph.detector_nps`).
    seed : int
        Seed; micrograph ``i`` of a run is fully determined by ``(seed, i)``.
    """

    shape: tuple[int, int] = (7676, 7420)
    pixel_size_angstrom: float = 0.6575
    dose_e_per_angstrom2: float = 50.0
    particles_per_micrograph: int = 50
    defocus_um: tuple[float, float] = (1.47, 1.99)
    astigmatism_angstrom: float = 300.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    b_factor_angstrom2: float = 60.0
    ice_contrast: float = 0.02
    detector_nps_nyquist: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "defocus_um", tuple(float(d) for d in self.defocus_um))
        if len(self.shape) != 2 or min(self.shape) < 64:
            raise ConfigError(f"shape={self.shape}: must be (rows, columns), each ≥ 64 px")
        _positive("pixel_size_angstrom", self.pixel_size_angstrom)
        _positive("dose_e_per_angstrom2", self.dose_e_per_angstrom2)
        _positive("particles_per_micrograph", self.particles_per_micrograph, allow_zero=True)
        lo, hi = self.defocus_um
        if not (0 < lo <= hi):
            raise ConfigError(f"defocus_um={self.defocus_um}: must be (low, high) with 0 < low ≤ high")
        _positive("astigmatism_angstrom", self.astigmatism_angstrom, allow_zero=True)
        _positive("voltage_kv", self.voltage_kv)
        _positive("cs_mm", self.cs_mm, allow_zero=True)
        if not (0 <= self.amplitude_contrast < 1):
            raise ConfigError(f"amplitude_contrast={self.amplitude_contrast}: must be in [0, 1)")
        _positive("b_factor_angstrom2", self.b_factor_angstrom2, allow_zero=True)
        _positive("ice_contrast", self.ice_contrast, allow_zero=True)
        _floats(self, "detector_nps_nyquist")
        if not (isinstance(self.detector_nps_nyquist, float) and 0 < self.detector_nps_nyquist <= 1):
            raise ConfigError(f"detector_nps_nyquist={self.detector_nps_nyquist!r}: must be in (0, 1]")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r}: must be an integer ≥ 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Parameters
    ----------
    model : str
        Preset name (``unet-small``, ``unet``, ``unet-large``).
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
    loss : {"mse", "l1"}
    eval_every, eval_batches : int
        Evaluate on the test split every ``eval_every`` steps over ``eval_batches`` batches.
    checkpoint_every, keep_checkpoints : int
        Save every N steps (and at the end); keep the last N.
    seed : int
        Seed of initialisation, shuffling and on-device noise.
    threads, prefetch : int
        Loader reader threads and queued batches.
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
    loss: str = "mse"
    eval_every: int = 200
    eval_batches: int = 4
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    seed: int = 0
    threads: int = 4
    prefetch: int = 4

    def __post_init__(self) -> None:
        _choice("model", self.model, MODEL_PRESETS)
        _choice("precision", self.precision, ("bf16", "fp32"))
        _choice("loss", self.loss, ("mse", "l1"))
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every",
                     "keep_checkpoints", "threads", "prefetch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be ≥ 1")
        _positive("learning_rate", self.learning_rate)

    def model_config(self):
        """The :class:`~cryostream.models.ModelConfig` of the preset, precision and residual."""
        from cryostream.models.unet import PRESETS

        preset = PRESETS[self.model]
        dtype = "bfloat16" if self.precision == "bf16" else "float32"
        return dataclasses.replace(preset, compute_dtype=dtype, residual=self.residual)



def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-ready values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output; unknown keys are an error."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown keys {unknown}; known keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_json(config: Any) -> str:
    """The config with its kind and the cryostream version, as a JSON string."""
    return json.dumps(
        {
            "kind": type(config).__name__,
            "cryostream_version": __version__,
            "config": to_dict(config),
        },
        sort_keys=True,
    )
