"""Even- and odd-frame sums paired by file name.

Motion correction can write, beside each full sum, the sums of its even and of its odd frames
(MotionCor2 ``-SplitSum 1``: ``NAME_EVN.mrc`` / ``NAME_ODD.mrc``; RELION's
``rlnMicrographNameEven`` / ``rlnMicrographNameOdd``; Warp's ``even/`` and ``odd/`` folders):
two images of the same specimen with independent noise. :func:`pair_halves` matches them, by
the STAR row that lists both where one STAR file gives both halves (:class:`HalfKeys`), else by
name, and checks them before anything is computed or written.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from cryostream.errors import ConfigError
from cryostream.io.mrc import read_header

__all__ = ["EVEN_SUFFIXES", "ODD_SUFFIXES", "half_key", "RowKey", "HalfKeys", "pair_halves",
           "check_swapped", "halves_mismatch"]

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


class RowKey(NamedTuple):
    """The micrograph of a STAR file's row that lists both its halves: the STAR file (its real
    path) and the row (0-based)."""

    star: str
    row: int

    def __str__(self) -> str:
        return f"row {self.row + 1} of {self.star}"


@dataclasses.dataclass(frozen=True)
class HalfKeys:
    """Which micrograph each half-sum is (:meth:`even`, :meth:`odd`): its STAR row where one
    row of one STAR file lists both halves, else its name (:func:`half_key`).

    Attributes
    ----------
    even_rows, odd_rows : dict
        A half's real path → its :class:`RowKey`, for halves listed by a STAR file that gives
        both halves (:meth:`from_rows`).
    """

    even_rows: dict = dataclasses.field(default_factory=dict)
    odd_rows: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_rows(cls, even: Iterable[tuple], odd: Iterable[tuple]) -> HalfKeys:
        """The keys of halves given as ``(path, STAR file or None, row or None)``: those of a
        STAR file among both ``even`` and ``odd`` are keyed by their row, the rest by name."""
        even, odd = list(even), list(odd)
        real = {s: os.path.realpath(s) for _, s, _ in even + odd if s is not None}  # once each
        both = {real[s] for _, s, _ in even if s is not None} \
            & {real[s] for _, s, _ in odd if s is not None}

        def rows(entries) -> dict[str, list[RowKey]]:  # a half's path → the rows listing it
            found: dict[str, list[RowKey]] = {}
            for p, s, r in entries:
                if s is not None and real[s] in both:
                    found.setdefault(os.path.realpath(p), []).append(RowKey(real[s], r))
            return found

        # a half that several rows list (a micrograph in two STAR files): its first row, and an
        # odd half the row of its even half's, whichever STAR file came first among the odd
        even_rows = {p: keys[0] for p, keys in rows(even).items()}
        wanted = set(even_rows.values())
        odd_rows = {p: next((k for k in keys if k in wanted), keys[0])
                    for p, keys in rows(odd).items()}
        return cls(even_rows, odd_rows)

    #: each path's real path, found once (the keys are asked many times of many files)
    _real: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def _row(self, rows: dict, path: str | os.PathLike) -> RowKey | None:
        if not rows:  # no STAR file gives both halves: nothing to resolve
            return None
        given = os.fspath(path)
        if (real := self._real.get(given)) is None:
            real = self._real[given] = os.path.realpath(given)
        return rows.get(real)

    def even(self, path: str | os.PathLike) -> str | RowKey:
        """The micrograph the even half ``path`` stands for."""
        return self._row(self.even_rows, path) or half_key(path, EVEN_SUFFIXES)

    def odd(self, path: str | os.PathLike) -> str | RowKey:
        """The micrograph the odd half ``path`` stands for."""
        return self._row(self.odd_rows, path) or half_key(path, ODD_SUFFIXES)


def _keyed(paths: list[Path], key_of, which: str) -> dict:
    keyed: dict = {}
    for p in paths:
        key = key_of(p)
        if key in keyed:
            named = repr(key) if isinstance(key, str) else f"of {key}"
            raise ConfigError(f"{keyed[key]} and {p}: two {which} half-sums of the micrograph "
                              f"{named}; pass each micrograph's {which} sum once")
        keyed[key] = p
    return keyed


def _listing(names: list[str], keyed: dict[str, Path]) -> str:
    shown = ", ".join(str(keyed[n]) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def pair_halves(even, odd, keys: HalfKeys | None = None) -> list[tuple[Path, Path]]:
    """Pair even- and odd-frame sums of the same micrographs: by the STAR row that lists both
    (``keys``), else by name.

    A name is the file stem without ``_EVN``/``_even`` (even) or ``_ODD``/``_odd`` (odd),
    case-insensitive (:func:`half_key`); halves in separate folders may share one stem.
    Nothing is read but the headers, and nothing is written.

    Parameters
    ----------
    even, odd : paths, globs or folders (one or a list)
        The even- and odd-frame sums (:func:`cryostream.io.stack.expand_inputs`).
    keys : HalfKeys, optional
        The halves that a row of a STAR file pairs, whatever their names
        (:meth:`HalfKeys.from_rows`); without it, every half pairs by name.

    Returns
    -------
    list of (Path, Path)
        ``(even, odd)`` per micrograph, in the order of ``even``.

    Raises
    ------
    ConfigError
        The counts differ, a half has no partner (the unmatched files are named), a name
        (or a STAR row) appears twice, or the two halves of a micrograph differ in shape or
        pixel size.
    InvalidMicrographError
        A half is missing or not a readable MRC micrograph.
    """
    from cryostream.io.stack import expand_inputs

    keys = keys or HalfKeys()
    evens = _keyed(expand_inputs(even), keys.even, "even")
    odds = _keyed(expand_inputs(odd), keys.odd, "odd")
    both = {os.path.realpath(p) for p in evens.values()} & {os.path.realpath(p) for p in odds.values()}
    if both:  # one folder given as both halves: said so, before its names fail to pair
        e = next(p for p in evens.values() if os.path.realpath(p) in both)
        more = f"; {len(both)} of the {len(evens)} even halves are" if len(both) > 1 else ""
        raise ConfigError(f"{e} is given as both its even and its odd half (the same file{more}): "
                          "give the odd-frame sums' own files or folder (--odd)")
    lonely_even = [k for k in evens if k not in odds]
    lonely_odd = [k for k in odds if k not in evens]
    if lonely_even or lonely_odd:
        check_swapped(evens.values(), odds.values())
        parts = []
        if lonely_even:
            parts.append(f"no odd half for {_listing(lonely_even, evens)}")
        if lonely_odd:
            parts.append(f"no even half for {_listing(lonely_odd, odds)}")
        raise ConfigError(f"{len(evens)} even and {len(odds)} odd half-sums: "
                          f"{'; '.join(parts)}. Halves pair by name (NAME_EVN.mrc with "
                          "NAME_ODD.mrc, or one name in two folders), or by the row of a STAR "
                          "file given as both halves: pass both halves of every micrograph")
    pairs = []
    for key, e in evens.items():
        o = odds[key]
        mismatch = halves_mismatch(e, read_header(e), o, read_header(o))
        if mismatch:
            raise ConfigError(mismatch)
        pairs.append((e, o))
    return pairs


def check_swapped(evens: Iterable, odds: Iterable) -> None:
    """A :class:`ConfigError` saying so where the even halves (paths) were given as the odd
    ones and the odd as the even (every one named so): they pair by name once swapped."""
    evens, odds = list(evens), list(odds)

    def named(paths, suffixes) -> bool:
        return bool(paths) and all(half_key(p, suffixes) != Path(p).stem for p in paths)

    if named(evens, ODD_SUFFIXES) and named(odds, EVEN_SUFFIXES):
        first_even, first_odd = evens[0], odds[0]
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
