"""A STAR file's column names checked against those cryostream reads: a column one letter off
one that is missing (``_rlnVoltag`` for ``_rlnVoltage``) would otherwise leave the value to a
default without a word. Where the missing column is one the file cannot be read without
(``_rlnMicrographname`` for ``_rlnMicrographName``), the error that refuses the file names the
column instead (:func:`nearly_spelled`), and no warning comes before it."""

from __future__ import annotations

import difflib
import warnings

__all__ = ["RELION_NEIGHBOURS", "near_columns", "nearly_spelled", "warn_near_columns"]

#: RELION columns close in spelling to those read, and meant so: never taken for a typo.
RELION_NEIGHBOURS = frozenset({
    "rlnMicrographNameNoDW", "rlnMicrographMovieName", "rlnMicrographNameEven",
    "rlnMicrographNameOdd", "rlnOpticsGroupName", "rlnMicrographOriginalPixelSize",
    "rlnImagePixelSize", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"})


def near_columns(tables: dict, read: set[str]) -> list[tuple[str, str]]:
    """Each column of ``tables`` (the STAR file's blocks) that is not one of ``read`` (the
    columns cryostream reads) but nearly spells one that no block has, as ``(column, the one it
    nearly spells)``."""
    present = {c for table in tables.values() for c in table.columns}
    missing = sorted(read - present)
    near = []
    for column in sorted(present - read - RELION_NEIGHBOURS):
        match = difflib.get_close_matches(column, missing, n=1, cutoff=0.9)
        if match:
            near.append((column, match[0]))
    return near


def nearly_spelled(near: list[tuple[str, str]], column: str) -> str:
    """What an error that a missing ``column`` refuses a file for adds of the columns in
    ``near`` (:func:`near_columns`) that nearly spell it: ``; _rlnMicrographname
    (_rlnMicrographName?) nearly spells it``, or nothing."""
    typos = [f"_{found} (_{meant}?)" for found, meant in near if meant == column]
    return f"; {', '.join(typos)} nearly spells it" if typos else ""


def warn_near_columns(path, near: list[tuple[str, str]]) -> None:
    """One :class:`~cryostream.io.star.StarFileWarning` naming each column of ``near``
    (:func:`near_columns`), once the file is read: a file refused for a missing column gets the
    error alone, which names the column that nearly spells it."""
    from cryostream.io.star import StarFileWarning

    if near:
        named = ", ".join(f"_{found} (_{meant}?)" for found, meant in near)
        warnings.warn(f"{path}: {named} is not a column cryostream reads, and the one it nearly "
                      "spells is missing, so its value is not used (a default or the MRC "
                      "header's stands in); correct the column's name",
                      StarFileWarning, stacklevel=4)
