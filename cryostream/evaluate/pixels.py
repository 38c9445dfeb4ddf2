"""The pixel sizes an evaluation report uses, said where none is known or two disagree: the
truth section's, a simulated micrograph whose header has none (scored at 1 Å per pixel, its
figures then in cycles/px, as the residual check's) or a truth whose header gives another than
its micrograph's; and how a warning names where a pixel size is from."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from cryostream.io.pixel_sizes import PixelSizeWarning, unset_pixel_size

__all__ = ["APART", "pixel_size_source", "truth_pixel_sizes"]

#: How far apart (relative) two pixel sizes of one micrograph must be to be said: 1 %, as
#: ``denoise`` says a STAR file's against a header's (a ``denoise`` output's MRC header holds
#: the pixel size it was made at, to float32 rounding).
APART = 0.01


def pixel_size_source(origin: str, name: str) -> str:
    """Where a micrograph ``name``'s pixel size is from, as a warning says it, from its origin
    (:func:`~cryostream.denoise.pixels.pixel_size_for`'s: ``"argument"``, ``"header"``, ``"EPU
    header"``, ``"STAR file"``, ``"cryoSPARC .cs file"``; or ``"MRC header"``)."""
    if origin == "argument":
        return "--pixel-size"
    if origin in ("header", "MRC header", "EPU header"):
        return f"the {'MRC header' if origin == 'header' else origin} of {name}"
    return f"the {origin} listing {name}"


_FIX = "pass --pixel-size Å (Python: pixel_size_angstrom=)"


def _more(items: list) -> str:
    return f" and {len(items) - 1} more" if len(items) > 1 else ""


def truth_pixel_sizes(pairs, pixel_size_angstrom: float | None,
                      residual: bool) -> tuple[tuple[float | None, str | None], ...]:
    """Each ``(micrograph, truth)`` pair's pixel size (Å) for the truth section and where it
    is from: its micrograph's header's (``"the MRC header of NAME.mrc"``); where that has none,
    ``pixel_size_angstrom`` (``"--pixel-size"``), else ``(None, None)`` (scored at 1 Å per
    pixel, its FRC and spectra in cycles/px), with one
    :class:`~cryostream.io.pixel_sizes.PixelSizeWarning` naming the first such file and the
    fix. One warning too where truths' headers give another pixel size than their micrographs'
    (1 % or more off: the micrograph's is used). A :class:`~cryostream.errors.ConfigError`
    where ``pixel_size_angstrom`` is given for nothing: no ``residual`` micrographs, and every
    micrograph's header gives its own."""
    from cryostream.errors import ConfigError
    from cryostream.io.mrc import read_header

    sizes, unset, apart = [], [], []
    for noisy, truth in pairs:
        header, truth_header = read_header(noisy), read_header(truth)
        own, theirs = header.pixel_size_angstrom, truth_header.pixel_size_angstrom
        if own <= 0:
            unset.append(header)
        elif theirs > 0 and not math.isclose(own, theirs, rel_tol=APART):
            apart.append((truth, own, theirs))
        sizes.append((own, pixel_size_source(header.pixel_size_from, Path(noisy).name)) if own > 0 else
                     (pixel_size_angstrom, "--pixel-size" if pixel_size_angstrom else None))
    if pixel_size_angstrom is not None and not residual and not unset:
        raise ConfigError(f"pixel_size_angstrom={pixel_size_angstrom!r} (--pixel-size) is for "
                          "the micrographs checked with --residual and the --truth micrographs "
                          "whose headers have none, and these give theirs (e.g. "
                          f"{sizes[0][0]:g} Å in {pairs[0][0]}): leave it out")
    if unset and pixel_size_angstrom is None:
        first = unset[0]
        warnings.warn(f"{first.path}{_more(unset)}: {unset_pixel_size(first)}; it is scored at 1 "
                      "Å per pixel, its FRC and power spectra in cycles/px (the report's "
                      f"figures): {_FIX}, or write the pixel size into the headers of the set's "
                      "micrographs (e.g. IMOD's alterheader; cryostream simulate writes it)",
                      PixelSizeWarning, stacklevel=3)
    if apart:
        truth, own, theirs = apart[0]
        warnings.warn(f"{truth}{_more(apart)}: the truth's header gives a pixel size of "
                      f"{theirs:g} Å, its micrograph's {own:g} Å; the micrograph's, {own:g} Å, is "
                      "used: check the set (the truth and its micrograph are one sampling)",
                      PixelSizeWarning, stacklevel=3)
    return tuple(sizes)
