"""The spectral layer: ring maps, the Welch spectrum, electron optics and the CTF, Wiener gains.

Written once and imported by the simulator (:mod:`cryostream.simulate`) and by the analysis
(the noise estimate, the CTF fit, metrics, baselines, denoising), which do not import each
other.

* :mod:`~cryostream.spectral.rings`: which ring of spatial frequency each Fourier coefficient
  lies on (:func:`ring_index`), radial means, the merged rings of the denoising steps.
* :mod:`~cryostream.spectral.welch`: the Welch spectrum of a micrograph (:func:`welch_spectrum`).
* :mod:`~cryostream.spectral.optics`: electron wavelength, astigmatic defocus, the CTF, the
  Thon rings' spacing and ``CTF²`` on a whole ``rfft2`` grid.
* :mod:`~cryostream.spectral.wiener`: the Wiener gain ``clip(1 − N / P, 0, 1)`` and the
  per-ring regression gain.
"""

from cryostream.spectral.optics import (
    CTF_ROWS_PER_BLOCK,
    astigmatic_defocus,
    contrast_transfer,
    ctf_squared_grid,
    electron_wavelength,
    faded_ctf_squared,
    ring_spacing,
)
from cryostream.spectral.rings import (
    LAYOUTS,
    MergedRings,
    forget_grids,
    frequencies,
    merge_rings,
    radial_average,
    radial_mean,
    rfft_weight,
    ring_frequencies,
    ring_index,
)
from cryostream.spectral.welch import hann_window, tile_starts, welch_spectrum
from cryostream.spectral.wiener import GAIN_FLOOR, ring_regression, wiener_gain

__all__ = [
    "CTF_ROWS_PER_BLOCK",
    "GAIN_FLOOR",
    "LAYOUTS",
    "MergedRings",
    "astigmatic_defocus",
    "contrast_transfer",
    "ctf_squared_grid",
    "electron_wavelength",
    "faded_ctf_squared",
    "frequencies",
    "hann_window",
    "forget_grids",
    "merge_rings",
    "radial_average",
    "radial_mean",
    "rfft_weight",
    "ring_frequencies",
    "ring_index",
    "ring_regression",
    "ring_spacing",
    "tile_starts",
    "welch_spectrum",
    "wiener_gain",
]
