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

__all__ = ["PIXEL_RANGE", "MIXED_APART", "PixelSizeWarning", "pixel_size_number",
           "unset_pixel_size", "pixel_size_groups", "odd_pixel_sizes", "warn_mixed_pixel_sizes",
           "warn_unequal_axes", "say_epu_pixel_sizes", "say_header_pixel_sizes"]

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


#: How far apart (relative) micrographs' pixel sizes must be to be said as several: 1 %.
MIXED_APART = 0.01


def pixel_size_groups(headers) -> list[list]:
    """The headers (each a :class:`~cryostream.io.mrc.MicrographHeader`) that give a pixel
    size, grouped where within :data:`MIXED_APART` of their group's smallest, smallest first;
    each group in the order given."""
    order = {id(h): i for i, h in enumerate(headers)}
    groups: list[list] = []
    for h in sorted((h for h in headers if h.pixel_size_angstrom > 0),
                    key=lambda h: h.pixel_size_angstrom):
        if groups and h.pixel_size_angstrom <= (1 + MIXED_APART) * groups[-1][0].pixel_size_angstrom:
            groups[-1].append(h)
        else:
            groups.append([h])
    return [sorted(g, key=lambda h: order[id(h)]) for g in groups]


def _size(group: list) -> float:
    """A group's pixel size: the one most of its headers give."""
    import collections

    return collections.Counter(h.pixel_size_angstrom for h in group).most_common(1)[0][0]


def _named(group: list) -> str:
    """A group's first file by name, and how many more."""
    more = len(group) - 1
    return Path(group[0].path).name + (f" and {more} more" if more else "")


def odd_pixel_sizes(groups: list[list]) -> tuple[list, list]:
    """``(odd, others)`` of :func:`pixel_size_groups`' groups: the groups that stand out
    (odd), and the one group of the rest (others); ``([], [])`` where none stands out. Exactly
    1 Å is most likely a placeholder (a header whose pixel size was never set): where the rest
    give one size, those at 1 Å are the odd ones, however many; otherwise the one group of
    most micrographs is the others."""
    placeholder = [g for g in groups if _size(g) == 1.0]
    measured = [g for g in groups if _size(g) != 1.0]
    if placeholder and len(measured) == 1:
        return placeholder, measured[0]
    most = max(len(g) for g in groups)
    largest = [g for g in groups if len(g) == most]
    if len(largest) == 1:
        return [g for g in groups if g is not largest[0]], largest[0]
    return [], []


def warn_mixed_pixel_sizes(headers, consequence: str, otherwise: str, *,
                           option: str = "", stacklevel: int = 3) -> None:
    """A :class:`PixelSizeWarning` when micrographs' headers give pixel sizes more than
    :data:`MIXED_APART` apart (seldom meant: one magnification per data set), naming one file
    of each size and, where some stand out (:func:`odd_pixel_sizes`), those, their size, the
    others' and how to correct them; a header's 1 Å is said to be most likely a placeholder.
    ``consequence``: what the command does with them; ``otherwise``: what to do where they are
    of several data sets; ``option``: another fix for the odd ones, after correcting the header
    (``"run {them} on {their} own with --pixel-size Å"``: ``it``/``its`` for one file)."""
    groups = pixel_size_groups(headers)
    if len(groups) < 2:
        return
    listed = ", ".join(f"{_size(g):g} Å ({_named(g)})" for g in groups[:4])
    odd, others = odd_pixel_sizes(groups)
    said = f"the micrographs' headers give {len(groups)} pixel sizes ({listed}); {consequence}."
    check, placeholder, one = "check the headers", False, False
    if odd:
        count = len(others)
        said += (" " + "; ".join(f"{_named(g)} give{'s' if len(g) == 1 else ''} {_size(g):g} Å"
                                 for g in odd)
                 + f", the other {f'{count} micrographs' if count > 1 else 'micrograph'} "
                 f"{_size(others):g} Å")
        if placeholder := any(_size(g) == 1.0 for g in odd):
            said += ("; exactly 1 Å is most likely a placeholder (a header whose pixel size was "
                     "never set), not a measured size")
        one = len(odd) == 1 and len(odd[0]) == 1
        check = (f"correct {_named(odd[0])}'s header" if one else "correct the odd headers") \
            + " (e.g. IMOD's alterheader)" + (", or " + option.format(
                them="it" if one else "them", their="its" if one else "their") if option else "")
    sizes = ("1 Å is " + ("its" if one else "their") + " true size"
             if all(_size(g) == 1.0 for g in odd) else "those are their true sizes")
    said += (f". {check[0].upper()}{check[1:]}; if {sizes}, {otherwise}" if placeholder
             else f". If they come from one data set, {check}; otherwise {otherwise}")
    warnings.warn(said, PixelSizeWarning, stacklevel=stacklevel)


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
