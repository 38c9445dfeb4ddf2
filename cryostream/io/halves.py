"""Even- and odd-frame sums paired by file name.

Motion correction can write, beside each full sum, the sums of its even and of its odd frames
(MotionCor2 ``-SplitSum 1``: ``NAME_EVN.mrc`` / ``NAME_ODD.mrc``; RELION's
``rlnMicrographNameEven`` / ``rlnMicrographNameOdd``; Warp's ``even/`` and ``odd/`` folders):
two images of the same specimen with independent noise. :func:`pair_halves` matches them by
name and checks them before anything is computed or written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from cryostream.errors import ConfigError
from cryostream.io.mrc import read_header

__all__ = ["EVEN_SUFFIXES", "ODD_SUFFIXES", "half_key", "pair_halves", "halves_mismatch"]

#: Name endings of even-frame sums (case-insensitive), stripped to find the micrograph's name.
EVEN_SUFFIXES = ("_EVN", "_even", "-even", ".even")
#: Name endings of odd-frame sums (case-insensitive).
ODD_SUFFIXES = ("_ODD", "-odd", ".odd")


def half_key(path: str | os.PathLike, suffixes: Iterable[str]) -> str:
    """The micrograph name of a half-sum: its file stem without one of ``suffixes``
    (case-insensitive), or the stem itself when it ends in none (halves kept apart by
    folders, as Warp does).

    Examples
    --------
    >>> half_key("Movies/mic_001_EVN.mrc", EVEN_SUFFIXES)
    'mic_001'
    >>> half_key("odd/mic_001.mrc", ODD_SUFFIXES)
    'mic_001'
    """
    stem = Path(path).stem
    pattern = "(" + "|".join(re.escape(s) for s in suffixes) + ")$"
    return re.sub(pattern, "", stem, count=1, flags=re.IGNORECASE) or stem


def _keyed(paths: list[Path], suffixes: tuple[str, ...], which: str) -> dict[str, Path]:
    keyed: dict[str, Path] = {}
    for p in paths:
        key = half_key(p, suffixes)
        if key in keyed:
            raise ConfigError(f"{keyed[key]} and {p}: two {which} half-sums of the micrograph "
                              f"{key!r}; pass each micrograph's {which} sum once")
        keyed[key] = p
    return keyed


def _listing(names: list[str], keyed: dict[str, Path]) -> str:
    shown = ", ".join(str(keyed[n]) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def pair_halves(even, odd) -> list[tuple[Path, Path]]:
    """Pair even- and odd-frame sums of the same micrographs by name.

    A name is the file stem without ``_EVN``/``_even`` (even) or ``_ODD``/``_odd`` (odd),
    case-insensitive (:func:`half_key`); halves in separate folders may share one stem.
    Nothing is read but the headers, and nothing is written.

    Parameters
    ----------
    even, odd : paths, globs or folders (one or a list)
        The even- and odd-frame sums (:func:`cryostream.io.stack.expand_inputs`).

    Returns
    -------
    list of (Path, Path)
        ``(even, odd)`` per micrograph, in the order of ``even``.

    Raises
    ------
    ConfigError
        The counts differ, a half has no partner (the unmatched files are named), a name
        appears twice, or the two halves of a micrograph differ in shape or pixel size.
    InvalidMicrographError
        A half is missing or not a readable MRC micrograph.
    """
    from cryostream.io.stack import expand_inputs

    evens = _keyed(expand_inputs(even), EVEN_SUFFIXES, "even")
    odds = _keyed(expand_inputs(odd), ODD_SUFFIXES, "odd")
    both = {os.path.realpath(p) for p in evens.values()} & {os.path.realpath(p) for p in odds.values()}
    if both:  # one folder given as both halves: said so, before its names fail to pair
        e = next(p for p in evens.values() if os.path.realpath(p) in both)
        more = f"; {len(both)} of the {len(evens)} even halves are" if len(both) > 1 else ""
        raise ConfigError(f"{e} is given as both its even and its odd half (the same file{more}): "
                          "give the odd-frame sums' own files or folder (--odd)")
    lonely_even = [k for k in evens if k not in odds]
    lonely_odd = [k for k in odds if k not in evens]
    if lonely_even or lonely_odd:
        _check_swapped(evens, odds)
        parts = []
        if lonely_even:
            parts.append(f"no odd half for {_listing(lonely_even, evens)}")
        if lonely_odd:
            parts.append(f"no even half for {_listing(lonely_odd, odds)}")
        raise ConfigError(f"{len(evens)} even and {len(odds)} odd half-sums: "
                          f"{'; '.join(parts)}. Halves pair by name (NAME_EVN.mrc with "
                          "NAME_ODD.mrc, or one name in two folders): pass both halves of every "
                          "micrograph")
    pairs = []
    for key, e in evens.items():
        o = odds[key]
        mismatch = halves_mismatch(e, read_header(e), o, read_header(o))
        if mismatch:
            raise ConfigError(mismatch)
        pairs.append((e, o))
    return pairs


def _check_swapped(evens: dict[str, Path], odds: dict[str, Path]) -> None:
    """A :class:`ConfigError` saying so where the even halves were given as the odd ones and
    the odd as the even (every one named so): they pair by name once swapped."""
    def named(paths, suffixes) -> bool:
        return bool(paths) and all(half_key(p, suffixes) != Path(p).stem for p in paths)

    if named(evens.values(), ODD_SUFFIXES) and named(odds.values(), EVEN_SUFFIXES):
        first_even, first_odd = next(iter(evens.values())), next(iter(odds.values()))
        raise ConfigError(f"the inputs are odd halves ({first_even}, …) and --odd gives even "
                          f"halves ({first_odd}, …): swap them, the even-frame sums (NAME_EVN.mrc) "
                          "as the inputs and the odd-frame sums (NAME_ODD.mrc) as --odd")


def halves_mismatch(even, header_even, odd, header_odd) -> str | None:
    """Why two halves (their paths and :class:`~cryostream.io.mrc.MicrographHeader`) cannot be
    one micrograph's: a different shape or pixel size, in words with the fix; None if they
    can."""
    shape_e, shape_o = header_even.shape, header_odd.shape
    if shape_e != shape_o:
        return (f"{even} is {shape_e[0]} × {shape_e[1]} px but its odd half {odd} is "
                f"{shape_o[0]} × {shape_o[1]}: both halves come from one movie and have one "
                "shape; check they are the same micrograph's")
    ps_e, ps_o = header_even.pixel_size_angstrom, header_odd.pixel_size_angstrom
    if ps_e > 0 and ps_o > 0 and abs(ps_e - ps_o) > 1e-3 * max(ps_e, ps_o):
        return (f"{even} has {ps_e:g} Å pixels but its odd half {odd} has {ps_o:g} Å: both "
                "halves come from one movie; check they are the same micrograph's (or fix the "
                "header that is wrong)")
    return None
