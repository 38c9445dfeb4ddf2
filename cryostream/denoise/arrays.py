"""Micrographs given to :func:`~cryostream.denoise.denoise` as an array instead of files."""

from __future__ import annotations

import json
import time

import numpy as np

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.micrograph import Progress, denoise_image
from cryostream.errors import ConfigError, DenoisedInputError, InvalidMicrographError
from cryostream.io.inputs import holds_names

__all__ = ["array_micrographs", "array_stack", "denoise_arrays", "made_with",
           "refuse_denoised_array", "image_names", "denoised_result", "RAW_ATTRS"]

#: The attrs of a stack opened from files (:func:`~cryostream.io.stack.open_micrographs`) that
#: describe those raw files, not a denoised result (their paths, headers, the bands they are
#: read in, those skipped when opened; :func:`array_stack`'s ``pixel_size_from``): a result in
#: memory drops them (:func:`denoised_result`).
RAW_ATTRS = ("sources", "headers", "band_rows", "skipped", "pixel_size_from")


def array_stack(inputs, pixel_size_angstrom: float | None):
    """``inputs`` as an xarray (micrograph, y, x) when it is an array of pixels (NumPy, Dask or
    xarray; 2-D or 3-D), else None (an array of file names too, as text or bytes: paths, as a
    list). The pixel size is ``pixel_size_angstrom`` or the xarray's ``pixel_size_angstrom``
    attribute, checked as a file's is (a number within
    :data:`~cryostream.io.pixel_sizes.PIXEL_RANGE` Å); ``attrs["pixel_size_from"]`` says which.
    A 3-D xarray without a ``micrograph`` dim takes its dim other than ``y`` and ``x`` (its
    first, where it has no ``y`` and ``x``) as the micrographs, as a NumPy stack's first axis.
    A list of images is refused with a word of ``np.stack``, a complex array as not an image.
    """
    import xarray as xr

    from cryostream.denoise.pixels import check_pixel_size

    if hasattr(inputs, "dtype") and holds_names(inputs):
        return None  # file names, as text or bytes (listed_inputs takes them or says why not)
    if isinstance(inputs, list | tuple) and any(getattr(i, "ndim", 0) >= 2 for i in inputs):
        raise ConfigError(f"inputs: a list of {len(inputs)} images in memory; denoise takes them "
                          "as one array: np.stack(images) makes the stack (micrograph, y, x) of "
                          "images of one shape (pass pixel_size_angstrom=), or denoise each on "
                          "its own")
    if not (isinstance(inputs, xr.DataArray | np.ndarray)
            or type(inputs).__module__.startswith("dask")):
        return None
    if inputs.ndim not in (2, 3):  # (before the dims are named: a 4-D one has no names)
        raise ConfigError(f"inputs: an array of shape {tuple(inputs.shape)}: pass one micrograph "
                          "(y, x) or a stack (micrograph, y, x)"
                          + ("; np.squeeze drops axes of length 1" if 1 in inputs.shape else ""))
    if np.dtype(inputs.dtype).kind == "c":  # (cast to float32 further on: the real part alone)
        raise ConfigError(f"inputs: a complex array ({inputs.dtype}), where micrographs are real "
                          "images: pass the image, its real part (np.real) or its magnitude "
                          "(np.abs) as the case may be (a Fourier transform is not a micrograph)")
    if isinstance(inputs, xr.DataArray):
        refuse_denoised_array(inputs)
        stack = inputs
        if stack.ndim == 3 and "micrograph" not in stack.dims:  # as a NumPy stack's first axis
            others = [d for d in stack.dims if d not in ("y", "x")]
            stack = stack.rename({others[0] if len(others) == 1 else stack.dims[0]: "micrograph"})
    else:
        stack = xr.DataArray(inputs, dims=("micrograph", "y", "x")[-inputs.ndim:])
    if stack.ndim == 2:
        stack = stack.expand_dims("micrograph")
    stack = stack.transpose("micrograph", ...)
    if pixel_size_angstrom is not None:
        pixel, source = check_pixel_size(pixel_size_angstrom), "argument"
    elif stack.attrs.get("pixel_size_angstrom") is not None:
        pixel, source = stack.attrs["pixel_size_angstrom"], "xarray's pixel_size_angstrom attribute"
        try:  # an xarray's own: checked as a header's is (open_micrographs' is one)
            pixel = check_pixel_size(pixel)
        except ConfigError:
            raise ConfigError(f"inputs: the xarray's pixel_size_angstrom attribute is {pixel!r}, "
                              "not a pixel size; pass pixel_size_angstrom= (Å)") from None
    else:
        raise ConfigError("an array has no pixel size: pass pixel_size_angstrom= (Å), or an "
                          "xarray with a pixel_size_angstrom attribute")
    return stack.assign_attrs(pixel_size_angstrom=pixel, pixel_size_from=source)


def refuse_denoised_array(array) -> None:
    """A :class:`~cryostream.errors.DenoisedInputError` where an xarray is an output of
    :func:`~cryostream.denoise.denoise`: its result in memory (its ``attrs`` hold the
    ``denoise_config`` it was made with), or a stack over written outputs (its ``sources``,
    as :func:`~cryostream.io.stack.open_micrographs` sets them, have the MRC label
    ``cryostream denoise``). Denoised again it would be taken for raw micrographs, with no
    word (a notebook cell ``x = cryostream.denoise(run, x)`` run twice)."""
    from cryostream.denoise.denoised_inputs import raw_micrograph
    from cryostream.io.mrc import read_header

    fix = ("give the raw micrographs (a notebook cell such as x = cryostream.denoise(run, x), "
           "run again, gives denoise its own result: keep the result under another name)")
    if "denoise_config" in array.attrs:
        raise DenoisedInputError("inputs", "an xarray that cryostream.denoise returned (its attrs "
                                 "hold the denoise_config it was made with), so it would be "
                                 "denoised as if it were raw micrographs", fix)
    for source in array.attrs.get("sources") or ():
        try:
            header = read_header(source)
        except (OSError, ValueError):  # (a file gone or renamed since: no word of it here)
            continue
        if header.denoised_by:
            raw = raw_micrograph(header)
            raise DenoisedInputError(
                "inputs", f"an xarray of outputs of cryostream denoise ({source}, its MRC label: "
                f"'{header.denoised_by}'), so it would be denoised as if it were raw micrographs",
                fix + (f"; this one's raw micrograph, as its record says: {raw}" if raw else ""))


def array_micrographs(stack) -> list:
    """Each micrograph of ``stack`` (:func:`array_stack`'s) as the pixel-size checks of files
    take one (``source``, ``pixel_size_angstrom``, ``pixel_size_from``; the argument's named
    ``pixel_size_angstrom=``; ``optics_from``, empty: an array carries no optics), e.g. for
    :func:`~cryostream.denoise.pixels.warn_outside_model` and
    :func:`~cryostream.denoise.pixels.note_assumed_optics`."""
    from types import SimpleNamespace

    source = stack.attrs["pixel_size_from"]
    source = "pixel_size_angstrom=" if source == "argument" else source
    return [SimpleNamespace(source=name, pixel_size_angstrom=stack.attrs["pixel_size_angstrom"],
                            pixel_size_from=source, optics_from={})  # (no STAR file's optics)
            for name in image_names(stack)]


def image_names(stack) -> list[str]:
    """How notes, warnings and errors name each micrograph of ``stack`` (:func:`array_stack`'s):
    by its file where the xarray gives one (a ``source`` coordinate along ``micrograph``, as
    :func:`~cryostream.io.stack.open_micrographs` sets it: the path, as a file given by name is
    named), else by its name (a ``micrograph`` coordinate of text), else ``array[i]``. Names
    that are not text, or that repeat, name nothing: ``array[i]`` then too."""
    count = stack.sizes["micrograph"]
    for key in ("source", "micrograph"):
        coord = stack.coords.get(key)
        if coord is None or coord.dims not in ((), ("micrograph",)):
            continue
        names = np.atleast_1d(coord.values).tolist()  # (a 2-D selection's: one, as a scalar)
        if len(names) == count and all(isinstance(n, str) and n for n in names) \
                and len(set(names)) == count:
            return names
    return [f"array[{i}]" for i in range(count)]


def denoised_result(stack, made: dict):
    """``stack`` (an input's coordinates and attrs over the denoised pixels) as a result in
    memory says it is: its attrs ``made`` adds (:func:`made_with`'s) and the rest but
    :data:`RAW_ATTRS` (the raw files' paths and headers, which would claim the result is those
    files); its ``source`` coordinate, each micrograph's raw file, renamed ``denoised_from``
    (so its ``micrograph`` names and that still line each image up with its input); named
    ``denoised`` where the input was unnamed or ``micrographs`` (open_micrographs' name)."""
    out = stack.rename({"source": "denoised_from"}) if "source" in stack.coords else stack
    out = out.rename("denoised") if out.name in (None, "micrographs") else out.copy(deep=False)
    out.attrs = {k: v for k, v in out.attrs.items() if k not in RAW_ATTRS} | made
    return out


def made_with(run: str, config: DenoiseConfig) -> dict:
    """The ``attrs`` that say a result in memory is :func:`~cryostream.denoise.denoise`'s:
    ``denoise_config`` (JSON text) and ``run``; :func:`refuse_denoised_array` refuses it."""
    return {"denoise_config": json.dumps(to_dict(config)), "run": run}


def denoise_arrays(stack, run: str, config: DenoiseConfig, permissive: bool, two_d: bool):
    """Each micrograph of ``stack`` (:func:`array_stack`'s) through the whole pipeline
    (:func:`~cryostream.denoise.micrograph.denoise_image`), in memory, with the notes files
    get: one as the call starts (how many, and on a CPU about how long:
    :func:`~cryostream.denoise.workers.start_note`) and one as each is done
    (:class:`~cryostream.denoise.micrograph.Progress`: its seconds and the gain it took, e.g.
    ``too small for a CTF fit: radial Wiener gain``), each named as :func:`image_names` says
    (its file, for a stack opened from files), as its warnings and errors are; before them,
    where the config gives no optics, the note of those the CTF fit takes
    (:func:`~cryostream.denoise.pixels.note_assumed_optics`). Returns the
    denoised xarray (:func:`denoised_result`), ``(y, x)`` where ``two_d`` (a 2-D array was
    given)."""
    from cryostream.denoise.pixels import note_assumed_optics
    from cryostream.denoise.workers import start_note
    from cryostream.io.paths import name_depth

    pixel = stack.attrs["pixel_size_angstrom"]
    total = stack.sizes["micrograph"]
    note_assumed_optics(config, array_micrographs(stack), "arrays")  # as a file's, before it
    start_note(run, config, total, [stack.shape[1:]] * total, what=" in memory")
    progress = Progress(total, 0, 1, config)
    names = image_names(stack)
    progress.depth = name_depth(names)  # as a file's note names it: folders only where needed
    kept, results, found = [], [], []
    for i, name in enumerate(names):
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
    out = denoised_result(out, {"pixel_size_angstrom": pixel, **made_with(run, config),
                                "found": found[0] if two_d else found})
    return out[0] if two_d else out
