"""Warnings about the pixel sizes micrographs' MRC headers give: one class for all of them.

A header can give x and y pixel sizes that differ (pixels are taken as square, at x's size),
micrographs meant to be one data set can give sizes far apart, and an EPU micrograph's FEI
extended header can give one that its MRC header leaves unset, or another. Each is said once
per command, naming one file, since a data set written by one program repeats the same header.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

__all__ = ["PIXEL_RANGE", "PixelSizeWarning", "pixel_size_number", "unset_pixel_size",
           "warn_mixed_pixel_sizes", "warn_unequal_axes", "say_epu_pixel_sizes", "say_header_pixel_sizes"]

#: Pixel sizes (Å) a micrograph can have; outside, a header, STAR value or argument is wrong.
PIXEL_RANGE = (0.05, 100.0)


class PixelSizeWarning(UserWarning):
    """A pixel size that may be wrong: micrographs of pixel sizes more than 1 % apart where one
    was expected, an MRC header whose x and y pixel sizes differ, or ``--pixel-size`` (used)
    other than a STAR file's or far from the MRC headers'."""


def pixel_size_number(value, option: str = "") -> float:
    """A pixel size given as an argument, as a float: any number, NumPy's too (an MRC file's
    ``voxel_size.x`` is a 0-d float32), or a :class:`~cryostream.errors.ConfigError` for text,
    True/False, an array of more than one value, or a number not > 0 Å. ``option``: how the
    command line names it (``" (--pixel-size)"``)."""
    import numpy as np

    from cryostream.errors import ConfigError

    given = np.asarray(value) if not isinstance(value, bool) else np.asarray("")
    if given.shape != () or given.dtype.kind not in "iuf":
        raise ConfigError(f"pixel_size_angstrom={value!r}{option}: must be a number of Å, e.g. "
                          f"0.66, not a {type(value).__name__}")
    if not float(given) > 0:
        raise ConfigError(f"pixel_size_angstrom={value!r}{option}: must be a pixel size > 0 Å")
    return float(given)


def unset_pixel_size(header) -> str:
    """What a header (:class:`~cryostream.io.mrc.MicrographHeader`) whose pixel size cannot be
    used gives instead: none (0 Å), or the value it writes (negative, not finite, or over a
    sampling of 0), named with its ``cella.x`` and ``mx`` so that the user can find it."""
    cell, sampling = header.pixel_size_written
    if cell == 0:
        return "the header leaves the pixel size unset (0 Å)"
    value = f"{cell / sampling:g} Å " if sampling > 0 else ""
    return (f"the header gives a pixel size of {value}(cella.x {cell:g} Å over mx {sampling}), "
            "which no micrograph has")


def warn_mixed_pixel_sizes(headers, consequence: str, otherwise: str) -> None:
    """A warning when micrographs' headers give pixel sizes more than 1 % apart (seldom meant:
    one magnification per data set), naming one file of each size."""
    by_size: dict = {}
    for h in headers:
        by_size.setdefault(h.pixel_size_angstrom, Path(h.path).name)
    sizes = [s for s in by_size if s]
    if sizes and max(sizes) > 1.01 * min(sizes):
        listed = ", ".join(f"{size:g} Å ({name})" for size, name in sorted(by_size.items())[:4])
        warnings.warn(f"the micrographs' headers give {len(by_size)} pixel sizes ({listed}); "
                      f"{consequence}. If they come from one data set, check the headers; "
                      f"otherwise {otherwise}", PixelSizeWarning, stacklevel=3)


#: How far apart (relative) an MRC header's pixel size and its EPU header's must be to be said:
#: EPU writes the nominal size, and a calibrated one (a few % off) set in the MRC header, as
#: cryostream's outputs and IMOD's alterheader do, is routine; 10 % or more is a wrong header.
EPU_APART = 0.1


def _first_of(headers) -> tuple:
    """The first of ``headers`` and how a message names them: its path, and how many more."""
    more = len(headers) - 1
    return headers[0], f"{headers[0].path}{f' and {more} more' if more else ''}"


def warn_unequal_axes(headers, fix: str = "pass --pixel-size Å (Python: pixel_size_angstrom=)",
                      *, stacklevel: int = 4) -> None:
    """One :class:`PixelSizeWarning` for the micrographs (their
    :class:`~cryostream.io.mrc.MicrographHeader`) whose headers give x and y pixel sizes 0.1 %
    or more apart, naming the first and how many more: x's is used (pixels are taken as
    square), and ``fix`` says how to set the right one."""
    unequal = [h for h in headers if h.pixel_size_angstrom > 0 and h.pixel_size_y_angstrom > 0
               and not math.isclose(h.pixel_size_angstrom, h.pixel_size_y_angstrom, rel_tol=1e-3)]
    if unequal:
        h, named = _first_of(unequal)
        x, y = h.pixel_size_angstrom, h.pixel_size_y_angstrom
        warnings.warn(f"{named}: the {h.pixel_size_from} gives two "
                      f"pixel sizes, {x:g} Å along x and {y:g} Å along y; x's, {x:g} Å, is used "
                      f"(pixels are taken as square): {fix} if it is not right",
                      PixelSizeWarning, stacklevel=stacklevel)


def say_epu_pixel_sizes(headers, fix: str = "pass --pixel-size Å (Python: pixel_size_angstrom=)",
                        *, stacklevel: int = 4) -> None:
    """For the micrographs whose pixel size is their headers' (each a
    :class:`~cryostream.io.mrc.MicrographHeader`): a note where it is an EPU header's (the MRC
    header leaves it unset, or gives the 1 Å placeholder: :func:`~cryostream.io.fei.pixel_size_with_fei`),
    and one :class:`PixelSizeWarning` where the MRC header and the EPU header give pixel sizes
    more than :data:`EPU_APART` apart (the MRC header's is used), each naming the first file, its values and
    how many more; ``fix`` says how to set the right one."""
    import logging

    taken = [h for h in headers if h.pixel_size_from == "EPU header"]
    if taken:
        h, more = taken[0], len(taken) - 1
        cell, sampling = h.pixel_size_written
        own = ("gives 1 Å, taken as a placeholder" if sampling > 0 and 0 < cell < math.inf
               else "leaves it unset" if cell == 0 else "gives none a micrograph has")
        logging.getLogger("cryostream").info(
            "%s: the pixel size %s from %s (%s MRC header %s); %s if it is not right",
            h.path + (f" and {more} more" if more else ""),
            f"({h.pixel_size_angstrom:g} Å for the first) comes" if more
            else f"{h.pixel_size_angstrom:g} Å comes", "the micrographs' EPU headers" if more
            else "the micrograph's EPU header", "the first's" if more else "its", own, fix)
    apart = [h for h in headers if h.pixel_size_from == "MRC header" and h.pixel_size_angstrom > 0
             and h.epu_pixel_size_angstrom > 0
             and not math.isclose(h.pixel_size_angstrom, h.epu_pixel_size_angstrom,
                                  rel_tol=EPU_APART)]
    if apart:
        h, named = _first_of(apart)
        ours, theirs = h.pixel_size_angstrom, h.epu_pixel_size_angstrom
        warnings.warn(f"{named}: the MRC header gives a "
                      f"pixel size of {ours:g} Å, the EPU (FEI) extended header {theirs:g} Å; the "
                      f"MRC header's, {ours:g} Å, is used: {fix} if it is not right",
                      PixelSizeWarning, stacklevel=stacklevel)


def say_header_pixel_sizes(headers, fix: str = "pass --pixel-size Å (Python: pixel_size_angstrom=)",
                           *, stacklevel: int = 4) -> None:
    """For the micrographs whose pixel size is their headers' (``headers``), once each: a
    warning where x's and y's differ (:func:`warn_unequal_axes`), and a note where an EPU header
    gave it and a warning where the MRC header's and the EPU header's differ
    (:func:`say_epu_pixel_sizes`)."""
    warn_unequal_axes(headers, fix, stacklevel=stacklevel + 1)
    say_epu_pixel_sizes(headers, fix, stacklevel=stacklevel + 1)
