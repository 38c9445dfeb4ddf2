"""One tree of frozen, validated configuration dataclasses.

Every store, checkpoint and output carries its config as JSON (:func:`to_json`) together with
the cryostream version, so each artefact says how it was made. :func:`from_dict` rebuilds a
config and rejects unknown keys.
"""

from cryostream.config.denoise import FROM_THE_RUN, DenoiseConfig
from cryostream.config.serial import from_dict, to_dict, to_json
from cryostream.config.simulate import SimulateConfig
from cryostream.config.store import (
    COMPRESSIONS,
    NOISE_MODELS,
    NOISE_MODES,
    STORE_DTYPES,
    NoiseConfig,
    PrepareConfig,
)
from cryostream.config.train import LOSSES, MODEL_PRESETS, PRECISIONS, TrainConfig

__all__ = [
    "NOISE_MODELS",
    "NOISE_MODES",
    "STORE_DTYPES",
    "COMPRESSIONS",
    "MODEL_PRESETS",
    "PRECISIONS",
    "LOSSES",
    "NoiseConfig",
    "PrepareConfig",
    "SimulateConfig",
    "TrainConfig",
    "DenoiseConfig",
    "FROM_THE_RUN",
    "to_dict",
    "from_dict",
    "to_json",
]
