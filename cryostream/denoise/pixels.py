"""Each input micrograph's pixel size: from ``--pixel-size``, its STAR file's optics group or
its MRC header, in that order, checked against the range a micrograph can have; and the
warnings where the sources disagree."""

from __future__ import annotations

import warnings

from cryostream.errors import InvalidMicrographError
from cryostream.io.star import StarFileWarning

__all__ = ["PIXEL_RANGE", "PixelSizeWarning", "pixel_size_for", "far_from_header",
           "warn_header_pixel_sizes", "warn_pixel_size_argument"]

#: Pixel sizes (Å) a micrograph can have; outside, a header, STAR value or argument is wrong.
PIXEL_RANGE = (0.05, 100.0)


class PixelSizeWarning(UserWarning):
    """``--pixel-size`` (used) far from the MRC headers' pixel size."""


def pixel_size_for(header, star_entry, pixel_size_angstrom) -> tuple[float, str]:
    """``(Å, source)`` of a micrograph (its :class:`~cryostream.io.mrc.MicrographHeader` and
    :class:`~cryostream.io.star.StarMicrograph` or None): ``pixel_size_angstrom`` if given
    (``"argument"``), else its STAR file's (``"STAR file"``), else its header's
    (``"header"``); an :class:`InvalidMicrographError` where none is set or it is outside
    :data:`PIXEL_RANGE`."""
    optics = star_entry.optics if star_entry is not None else None
    if pixel_size_angstrom is not None:
        value, source, given = float(pixel_size_angstrom), "argument", "--pixel-size"
    elif optics is not None and optics.pixel_size_angstrom:
        value, source, given = optics.pixel_size_angstrom, "STAR file", "its STAR file"
    elif header.pixel_size_angstrom > 0:
        value, source, given = header.pixel_size_angstrom, "header", "its header"
    else:
        raise InvalidMicrographError(header.path, "the header leaves the pixel size unset (0 Å)"
                                     + (" and its STAR file gives none" if star_entry else ""),
                                     "pass --pixel-size Å (Python: pixel_size_angstrom=)")
    if not PIXEL_RANGE[0] <= value <= PIXEL_RANGE[1]:  # NaN and infinity too
        raise InvalidMicrographError(header.path, f"a pixel size of {value:g} Å (from {given}) "
                                     f"is outside {PIXEL_RANGE[0]:g}–{PIXEL_RANGE[1]:g} Å",
                                     "pass the right --pixel-size Å (Python: "
                                     "pixel_size_angstrom=), or correct the source")
    return value, source


def far_from_header(value: float, header, star_entry) -> bool:
    """Whether a given pixel size is twice or half the header's or further off (a typo, a
    binning mix-up), and not the micrograph's STAR file's either."""
    if header.pixel_size_angstrom <= 0 or 1 / 1.9 < value / header.pixel_size_angstrom < 1.9:
        return False
    optics = star_entry.optics if star_entry is not None else None
    return optics is None or optics.pixel_size_angstrom != value


def warn_header_pixel_sizes(star, differ: list[tuple]) -> None:
    """One :class:`~cryostream.io.star.StarFileWarning` for a STAR file whose pixel size is
    used where its micrographs' headers give another (``differ``: STAR value, header value,
    file name), each pair of values named with one of its files."""
    pairs: dict[tuple, list[str]] = {}
    for star_value, header_value, name in differ:
        pairs.setdefault((star_value, header_value), []).append(name)
    listed = "; ".join(f"{s:g} Å in the STAR file, {h:g} Å in the header of {names[0]}"
                       + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                       for (s, h), names in list(pairs.items())[:4])
    warnings.warn(f"{star.path}: its pixel size differs from the MRC headers' ({listed}); the "
                  "STAR file's is used (RELION's headers are often wrong): pass --pixel-size Å "
                  "(Python: pixel_size_angstrom=) if it is not right", StarFileWarning,
                  stacklevel=4)


def warn_pixel_size_argument(value: float, off: list[tuple]) -> None:
    """One :class:`PixelSizeWarning` for ``--pixel-size`` (``value``, used) far from the
    headers of micrographs (``off``: header value, file name; :func:`far_from_header`)."""
    header, name = off[0]
    more = f" and {len(off) - 1} more" if len(off) > 1 else ""
    warnings.warn(f"--pixel-size {value:g} Å is {value / header:.3g}× the {header:g} Å in the "
                  f"MRC header of {name}{more}; it is used as given: check it (a wrong pixel "
                  "size misplaces the CTF fit; nothing to do if the headers are wrong)",
                  PixelSizeWarning, stacklevel=4)
