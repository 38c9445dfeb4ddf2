"""Flax NNX denoisers: U-Net presets (see :mod:`cryostream.models.unet`)."""

from cryostream.models.unet import PRESETS, ModelConfig, UNet, count_parameters, macs_per_pixel

__all__ = ["PRESETS", "ModelConfig", "UNet", "count_parameters", "macs_per_pixel"]
