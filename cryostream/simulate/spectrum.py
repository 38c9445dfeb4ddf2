"""Power spectra, now in :mod:`cryostream.spectral`.

Kept only for ``cryostream/evaluate.py`` until it imports :mod:`cryostream.spectral` itself:
``welch_spectrum(image, tile)`` is :func:`power_spectrum`, and :func:`radial_average` is
:func:`cryostream.spectral.radial_average`.
"""

from __future__ import annotations

import numpy as np

from cryostream.spectral import radial_average, welch_spectrum

__all__ = ["power_spectrum", "radial_average"]  # alias for evaluate.py; removed when it moves


# alias for evaluate.py; removed when it imports cryostream.spectral
def power_spectrum(image: np.ndarray, tile: int = 512) -> np.ndarray:
    """Welch-averaged, Hann-windowed power spectrum, centred, ``(tile, tile)`` float64
    (:func:`cryostream.spectral.welch_spectrum`)."""
    return welch_spectrum(image, tile)
