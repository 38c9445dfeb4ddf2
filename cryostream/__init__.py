"""cryostream: out-of-core cryo-EM micrograph denoising.

Lazy MRC stacks (:func:`open_micrographs`), an EMPIAR-10025-like simulator with ground truth
(:func:`simulate`), a sizing planner (:func:`plan`) out-of-core preprocessing into HDF5
(:func:`prepare`), and training from a prefetching loader (:class:`PatchLoader`, :func:`train`).
"""

from cryostream._version import __version__
from cryostream.config import NoiseConfig, PrepareConfig, SimulateConfig
from cryostream.errors import ConfigError, CryostreamError, InvalidMicrographError, StoreError
from cryostream.io.stack import MicrographSkippedWarning, open_micrographs
from cryostream.loader import PatchLoader
from cryostream.plan import Plan, plan
from cryostream.prepare import PrepareResult, prepare
from cryostream.simulate import SimulatedSet, simulate

__all__ = [
    "__version__",
    "ConfigError",
    "CryostreamError",
    "InvalidMicrographError",
    "MicrographSkippedWarning",
    "NoiseConfig",
    "PatchLoader",
    "Plan",
    "PrepareConfig",
    "PrepareResult",
    "SimulateConfig",
    "SimulatedSet",
    "StoreError",
    "open_micrographs",
    "plan",
    "prepare",
    "simulate",
    "train",
]


def train(*args, **kwargs):
    """Train a denoiser on a store (:func:`cryostream.training.train`; imports JAX on first use)."""
    from cryostream.training import train as _train

    return _train(*args, **kwargs)
