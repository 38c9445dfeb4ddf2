"""cryostream: out-of-core cryo-EM micrograph denoising.

Lazy MRC stacks (:func:`open_micrographs`), an EMPIAR-10025-like simulator with ground truth
(:func:`simulate`), a sizing planner (:func:`plan`) and out-of-core preprocessing into
HDF5 (:func:`prepare`).
"""

from cryostream._version import __version__
from cryostream.config import NoiseConfig, PrepareConfig, SimulateConfig
from cryostream.errors import ConfigError, CryostreamError, InvalidMicrographError, StoreError
from cryostream.io.stack import MicrographSkippedWarning, open_micrographs
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
]
