"""Baselines for the evaluation report: a Wiener filter from the measured noise, and
Topaz-Denoise's pretrained U-Net, when installed.

:func:`wiener_measured` needs neither ground truth nor training: per ring of spatial frequency
its gain is ``clip(1 − N / P, 0, 1)``, with ``P`` the micrograph's power and ``N`` its measured
noise spectrum (:func:`cryostream.matched.estimate_noise`). It is the linear filter a trained
model has to beat on real data, where the oracle Wiener filter cannot be built.

Topaz-Denoise (``pip install topaz-em``, with PyTorch) ships its pretrained weights as plain
PyTorch state dicts (``topaz/pretrained/denoise/unet_L2_v0.2.2.sav``); they load with
``torch.load``. Topaz normalises each image to zero mean and unit variance; the result is put
back on the input's scale so it compares with cryostream's output directly.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from cryostream.spectral import radial_mean, ring_index, wiener_gain

__all__ = ["wiener_measured", "topaz_available", "topaz_denoise"]


def wiener_measured(image: np.ndarray, estimate=None, *,
                    pixel_size_angstrom: float = 1.0) -> np.ndarray:
    """The radial Wiener filter of a 2-D ``image`` from its *measured* noise (no truth).

    ``estimate`` is the image's :class:`~cryostream.matched.NoiseEstimate` in the image's units
    (measured here when None, with ``pixel_size_angstrom``). Per ring of the image's rfft
    (:func:`cryostream.spectral.ring_index`) the gain is the Wiener gain ``clip(1 − N / P, 0, 1)``
    (:func:`cryostream.spectral.wiener_gain`): ``P`` the image's mean power over the ring, ``N``
    the estimate's radial noise power interpolated to the image's rings. The mean is kept.
    """
    import scipy.fft

    from cryostream.matched import estimate_noise, tile_for

    image = np.asarray(image, np.float32)
    if estimate is None:
        estimate = estimate_noise(image, pixel_size_angstrom, tile=tile_for(image.shape))
    ring = ring_index(image.shape, "rfft", dtype=np.float32)
    mean = float(image.mean(dtype=np.float64))
    z = scipy.fft.rfft2(image - np.float32(mean), workers=-1)
    power = radial_mean(np.abs(z) ** 2, ring)
    gain = wiener_gain(power, estimate.ring_power(image.shape, power.size))
    gain[0] = 1.0
    out = scipy.fft.irfft2(gain[ring] * z, s=image.shape, workers=-1)
    return (out + mean).astype(np.float32)


def topaz_available() -> bool:
    """Whether Topaz-Denoise and PyTorch can be imported."""
    try:
        import topaz.denoise  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _topaz():
    import topaz
    import topaz.denoising.models as models
    import torch
    from topaz.denoise import Denoise

    net = models.UDenoiseNet(base_width=11, top_width=5)
    weights = os.path.join(os.path.dirname(topaz.__file__), "pretrained", "denoise",
                           "unet_L2_v0.2.2.sav")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False))
    net.eval()
    return Denoise(torch.nn.Sequential(net), use_cuda=torch.cuda.is_available()), torch


def topaz_denoise(image: np.ndarray) -> np.ndarray:
    """Denoise a 2-D image with Topaz's pretrained U-Net (its default 1024 + 500 px tiling)."""
    denoiser, torch = _topaz()
    image = np.asarray(image, np.float32)
    mean, std = float(image.mean()), float(image.std()) or 1.0
    whole = max(image.shape) <= 1024
    with torch.no_grad():
        out = denoiser.denoise((image - mean) / std, patch_size=-1 if whole else 1024,
                               padding=0 if whole else 500)
    return np.asarray(out, np.float32) * std + mean
