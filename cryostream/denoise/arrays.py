"""Micrographs given to :func:`~cryostream.denoise.denoise` as an array instead of files."""

from __future__ import annotations

import json
import time

import numpy as np

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.micrograph import Progress, denoise_image
from cryostream.errors import ConfigError, InvalidMicrographError
from cryostream.io.inputs import holds_names

__all__ = ["array_stack", "denoise_arrays"]


def array_stack(inputs, pixel_size_angstrom: float | None):
    """``inputs`` as an xarray (micrograph, y, x) when it is an array of pixels (NumPy, Dask or
    xarray; 2-D or 3-D), else None (an array of file names too, as text or bytes: paths, as a
    list). The pixel size is ``pixel_size_angstrom`` or the xarray's ``pixel_size_angstrom``
    attribute. A list of images is refused with a word of ``np.stack``."""
    import xarray as xr

    if hasattr(inputs, "dtype") and holds_names(inputs):
        return None  # file names, as text or bytes (listed_inputs takes them or says why not)
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


def denoise_arrays(stack, run: str, config: DenoiseConfig, permissive: bool, two_d: bool):
    """Each micrograph of ``stack`` (:func:`array_stack`'s) through the whole pipeline
    (:func:`~cryostream.denoise.micrograph.denoise_image`), in memory, with the note a file's
    gets as each is done (:class:`~cryostream.denoise.micrograph.Progress`: its seconds and
    the gain it took, e.g. ``too small for a CTF fit: radial Wiener gain``). Returns the
    denoised xarray, ``(y, x)`` where ``two_d`` (a 2-D array was given)."""
    pixel = stack.attrs["pixel_size_angstrom"]
    total = stack.sizes["micrograph"]
    progress = Progress(total, 0, 1, config)
    kept, results, found = [], [], []
    for i in range(total):
        name = f"array[{i}]"
        image = np.asarray(stack[i], dtype=np.float32)
        start = time.perf_counter()
        progress.begin(name)
        estimate, steps_found = denoise_image(image, pixel, name, run, config,
                                              permissive=permissive)
        progress.note(name, time.perf_counter() - start, steps_found, key=name)
        if estimate is not None:
            kept.append(i)
            results.append(estimate)
            found.append(json.dumps(steps_found))
    if not results:
        raise InvalidMicrographError("<array>", "no usable micrograph left", "see the warnings")
    out = stack.isel(micrograph=kept).copy(data=np.stack(results))
    # what NAME.json's "found" holds for a file: one JSON text per micrograph
    out.attrs.update(pixel_size_angstrom=pixel, denoise_config=json.dumps(to_dict(config)),
                     run=run, found=found[0] if two_d else found)
    return out[0] if two_d else out
