"""How micrographs become a patch store: the noise model and the preparation."""

from __future__ import annotations

import dataclasses

from cryostream.config.checks import check_choice, check_positive, check_seed, made_now, store_floats
from cryostream.errors import ConfigError
from cryostream.patches import EDGE_POLICIES

__all__ = ["NOISE_MODELS", "NOISE_MODES", "STORE_DTYPES", "COMPRESSIONS", "POISSON_DOSES", "NoiseConfig",
           "PrepareConfig"]

NOISE_MODELS = ("gaussian", "poisson", "poisson-gaussian", "matched", "none")
NOISE_MODES = ("stored", "on-device")
STORE_DTYPES = ("float32", "float16")
COMPRESSIONS = ("none", "lz4", "zstd")
#: The doses the Poisson noise models take, counts per unit of normalised intensity: below the
#: first over 99 % of the pixels at intensity 1 draw no count (``e^-0.01``), at the last the
#: shot noise is 0.1 % of the signal (and NumPy draws no Poisson count above 9.2e18).
POISSON_DOSES = (0.01, 1e6)


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Synthetic noise added to normalised patches (the reference plan's noise).

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
        Counts per unit of normalised intensity for the Poisson part, from 0.01 to 1e6
        (:data:`POISSON_DOSES`; checked for the Poisson models only).
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
        store_floats(self, "sigma", "dose", "alpha", "shot")
        check_choice("noise", self.model, NOISE_MODELS)
        check_choice("noise_mode", self.mode, NOISE_MODES)
        if self.model == "none" and self.mode != "stored":
            raise ConfigError("model='none' (--noise) stores its inputs: use mode='stored' "
                              "(--noise-mode)")
        check_positive("sigma", self.sigma, allow_zero=True)
        if made_now() and self.model == "gaussian" and self.sigma == 0:
            raise ConfigError("sigma=0 (--sigma) with noise='gaussian' (--noise gaussian) adds no "
                              "noise: each input would be its target; give sigma > 0")
        check_positive("dose", self.dose)
        low, high = POISSON_DOSES
        if made_now() and self.model in ("poisson", "poisson-gaussian") and self.dose < low:
            raise ConfigError(
                f"dose={self.dose!r} (--dose): at least {low:g} counts per unit intensity for "
                "Poisson noise: below it over 99 % of the pixels at intensity 1 (the "
                "--percentile's level) draw no count (e^-dose of them) and the noisy inputs are "
                "all but empty; give a dose such as 10 (the default)")
        if made_now() and self.model in ("poisson", "poisson-gaussian") and self.dose > high:
            raise ConfigError(
                f"dose={self.dose!r} (--dose): at most 1e6 counts per unit intensity for "
                "Poisson noise (its shot noise is then 0.1 % of the signal, nothing to denoise; "
                "NumPy draws no count above 9.2e18); for little noise give a dose such as 100, "
                "or --noise gaussian with a small --sigma")
        check_positive("alpha", self.alpha)
        if self.shot is not None and not (isinstance(self.shot, float) and 0 <= self.shot <= 1):
            raise ConfigError(f"shot={self.shot!r}: must be in [0, 1], or left out to use each "
                              "micrograph's estimate (Python: None)")
        if not isinstance(self.radius, int) or isinstance(self.radius, bool) or not 1 <= self.radius <= 64:
            raise ConfigError(f"radius={self.radius!r}: must be an integer in [1, 64]")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How micrographs become a patch store.

    Parameters
    ----------
    patch_size, stride : int
        Patch edge and step in pixels; the stride defaults to half the patch (each pixel in up
        to four patches). ``prepare`` and ``plan`` refuse a stride above the patch (pixels
        between patches would never be seen); stores made so before still load.
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
    stride: int | None = None
    edge: str = "cover"
    percentile: float = 95.0
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    dtype: str = "float32"
    compression: str = "none"
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        store_floats(self, "percentile", "test_fraction")
        if self.stride is None and isinstance(self.patch_size, int):
            object.__setattr__(self, "stride", max(1, self.patch_size // 2))
        for name in ("patch_size", "stride", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{name}={value!r}: must be an integer")
        check_positive("patch_size", self.patch_size)
        check_positive("stride", self.stride)
        check_seed("seed", self.seed)
        check_choice("edge", self.edge, EDGE_POLICIES)
        check_choice("dtype", self.dtype, STORE_DTYPES)
        check_choice("compression", self.compression, COMPRESSIONS)
        if not (0 < self.percentile <= 100):
            raise ConfigError(f"percentile={self.percentile!r}: must be in (0, 100]")
        if not (0 <= self.test_fraction < 1):
            raise ConfigError(f"test_fraction={self.test_fraction!r}: must be in [0, 1)")
        if not isinstance(self.noise, NoiseConfig):
            raise ConfigError(f"noise={self.noise!r}: must be a NoiseConfig")
