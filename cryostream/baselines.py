"""Peer baselines for the evaluation report: Topaz-Denoise's pretrained U-Net, when installed.

Topaz-Denoise (``pip install topaz-em``, with PyTorch) ships its pretrained weights as plain
PyTorch state dicts (``topaz/pretrained/denoise/unet_L2_v0.2.2.sav``); they load with
``torch.load``. Topaz normalises each image to zero mean and unit variance; the result is put
back on the input's scale so it compares with cryostream's output directly.
"""

from __future__ import annotations

import functools
import os

import numpy as np

__all__ = ["topaz_available", "topaz_denoise"]


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
