"""cryostream: out-of-core cryo-EM micrograph denoising.

Lazy MRC stacks (:func:`open_micrographs`), an EMPIAR-10025-like simulator with ground truth
(:func:`simulate`), a sizing planner (:func:`plan`) out-of-core preprocessing into HDF5
(:func:`prepare`), training from a prefetching loader (:class:`PatchLoader`, :func:`train`),
whole-micrograph denoising (:func:`denoise`, :class:`DenoiseConfig`), training on a user's
own micrographs in one call (:func:`fit`), truth-free ranking of runs
(:func:`rank_runs`) and evaluation reports (:func:`evaluate`). :class:`Terminated` is what
:func:`train` and :func:`fit` raise on SIGTERM (a batch system's time limit).
"""

from cryostream.starting import quiet_start

quiet_start()  # (a Ctrl-C as the command line starts: one line, no traceback of the imports)
# ruff: noqa: E402 (the imports below come after it)

from cryostream._version import __version__
from cryostream.config import DenoiseConfig, NoiseConfig, PrepareConfig, SimulateConfig, TrainConfig
from cryostream.denoise import denoise, rank_runs
from cryostream.errors import (
    ClusterError,
    ConfigError,
    CryostreamError,
    DenoisedInputError,
    DeviceMemoryError,
    InvalidMicrographError,
    NotMicrographListError,
    OutputTakenError,
    StoreError,
    TrainingDivergedError,
)
from cryostream.evaluate import evaluate
from cryostream.fit import FitResult, fit
from cryostream.interrupts import Terminated
from cryostream.io.stack import MicrographSkippedWarning, open_micrographs
from cryostream.loader import PatchLoader
from cryostream.plan import Plan, plan
from cryostream.prepare import PrepareResult, prepare
from cryostream.runs import RunRecord, load_model
from cryostream.simulate import SimulatedSet, simulate

__all__ = [
    "__version__",
    "ConfigError",
    "DenoiseConfig",
    "CryostreamError",
    "FitResult",
    "InvalidMicrographError",
    "OutputTakenError",
    "DenoisedInputError",
    "NotMicrographListError",
    "MicrographSkippedWarning",
    "NoiseConfig",
    "PatchLoader",
    "Plan",
    "PrepareConfig",
    "PrepareResult",
    "RunRecord",
    "SimulateConfig",
    "SimulatedSet",
    "TrainConfig",
    "StoreError",
    "Terminated",
    "TrainingDivergedError",
    "ClusterError",
    "DeviceMemoryError",
    "denoise",
    "evaluate",
    "fit",
    "load_model",
    "open_micrographs",
    "plan",
    "prepare",
    "rank_runs",
    "simulate",
    "train",
]


def __getattr__(name: str):
    """``cryostream.train`` is :func:`cryostream.training.train` itself, imported (with JAX) on
    first use, so that ``import cryostream`` stays light."""
    if name == "train":
        from cryostream.training import train

        return train
    raise AttributeError(f"module 'cryostream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "train"})
