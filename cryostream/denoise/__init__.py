"""Denoising whole micrographs with a trained run.

- :mod:`~cryostream.denoise.tiling`: the network over whole micrographs in tiles of one shape
  (:func:`denoise_array`, :func:`auto_tile`).
- :mod:`~cryostream.denoise.corrections`: the array maths of post-processing (Noisier2Noise
  correction, ring clamp, Wiener gain, 8-fold ensemble).
- :mod:`~cryostream.denoise.steps`: those as composable steps; a
  :class:`~cryostream.config.DenoiseConfig` builds the :class:`Pipeline`.
- :mod:`~cryostream.denoise.weights`: the learned weights a model may ship (fitted on
  simulated micrographs with their truth), which the Wiener gain applies.
- :mod:`~cryostream.denoise.scores`: truth-free scores by recorruption (ranking, the CTF check,
  the ring calibration).
- :mod:`~cryostream.denoise.outputs`: where outputs go, checked before any computing, each
  written whole or not at all.
- :mod:`~cryostream.denoise.star_out`: the STAR file listing them, every name relative to the
  project folder (absolute outside it); :mod:`~cryostream.denoise.star_keep`: the rows of an
  earlier one in the folder kept when it is written again.
- :mod:`~cryostream.denoise.api`: :func:`denoise` and :func:`rank_runs`.
"""

from cryostream.config import DenoiseConfig
from cryostream.denoise.api import denoise, rank_runs
from cryostream.denoise.corrections import (
    check_correctable,
    clamp_negative_rings,
    dihedral_mean,
    keep_input_mean,
    match_wiener_gain,
    n2n_alpha2,
    n2n_correct,
)
from cryostream.denoise.network import load_network
from cryostream.denoise.scores import (
    calibrate_rings,
    ctf_gain_check,
    recorruption_score,
    recorruption_scores,
)
from cryostream.denoise.steps import Micrograph, Pipeline, chain, pipeline_for
from cryostream.denoise.tiling import auto_tile, default_halo, denoise_array, receptive_radius, tile_cores

__all__ = ["DenoiseConfig", "denoise", "rank_runs", "denoise_array", "auto_tile", "default_halo",
           "receptive_radius", "tile_cores", "load_network", "n2n_alpha2", "n2n_correct",
           "keep_input_mean", "check_correctable", "clamp_negative_rings", "match_wiener_gain",
           "dihedral_mean", "recorruption_score", "recorruption_scores", "ctf_gain_check",
           "calibrate_rings", "Micrograph", "Pipeline", "chain", "pipeline_for"]
