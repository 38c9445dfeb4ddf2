"""Micrographs given to :func:`~cryostream.denoise.denoise` as an array instead of files."""

from __future__ import annotations

from cryostream.errors import ConfigError

__all__ = ["array_stack"]


def array_stack(inputs, pixel_size_angstrom: float | None):
    """``inputs`` as an xarray (micrograph, y, x) when it is an array of pixels (NumPy, Dask or
    xarray; 2-D or 3-D), else None (an array of file names too: paths, as a list). The pixel
    size is ``pixel_size_angstrom`` or the xarray's ``pixel_size_angstrom`` attribute. A list
    of images is refused with a word of ``np.stack``."""
    import numpy as np
    import xarray as xr

    if getattr(getattr(inputs, "dtype", None), "kind", None) in ("U", "O"):
        return None  # file names (listed_inputs takes them)
    if isinstance(inputs, list | tuple) and any(getattr(i, "ndim", 0) >= 2 for i in inputs):
        raise ConfigError(f"inputs: a list of {len(inputs)} images in memory; denoise takes them "
                          "as one array: np.stack(images) makes the stack (micrograph, y, x) of "
                          "images of one shape (pass pixel_size_angstrom=), or denoise each on "
                          "its own")
    if isinstance(inputs, xr.DataArray):
        stack = inputs
    elif isinstance(inputs, np.ndarray) or type(inputs).__module__.startswith("dask"):
        stack = xr.DataArray(inputs, dims=("micrograph", "y", "x")[-inputs.ndim:])
    else:
        return None
    if stack.ndim not in (2, 3):
        raise ConfigError(f"an array of shape {stack.shape}: pass one micrograph (y, x) or a "
                          "stack (micrograph, y, x)")
    if stack.ndim == 2:
        stack = stack.expand_dims("micrograph")
    stack = stack.transpose("micrograph", ...)
    pixel = pixel_size_angstrom or stack.attrs.get("pixel_size_angstrom")
    if not pixel or not pixel > 0:
        raise ConfigError("an array has no pixel size: pass pixel_size_angstrom= (Å), or an "
                          "xarray with a pixel_size_angstrom attribute")
    return stack.assign_attrs(pixel_size_angstrom=float(pixel))
