"""A STAR file's column names checked against those cryostream reads: a column one letter off
one that is missing (``_rlnVoltag`` for ``_rlnVoltage``) would otherwise leave the value to a
default without a word."""

from __future__ import annotations

import difflib
import warnings

__all__ = ["RELION_NEIGHBOURS", "warn_near_columns"]

#: RELION columns close in spelling to those read, and meant so: never taken for a typo.
RELION_NEIGHBOURS = frozenset({
    "rlnMicrographNameNoDW", "rlnMicrographMovieName", "rlnMicrographNameEven",
    "rlnMicrographNameOdd", "rlnOpticsGroupName", "rlnMicrographOriginalPixelSize",
    "rlnImagePixelSize", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"})


def warn_near_columns(path, tables: dict, read: set[str]) -> None:
    """One :class:`~cryostream.io.star.StarFileWarning` naming each column of ``tables`` (the
    STAR file's blocks) that is not one of ``read`` (the columns cryostream reads) but nearly
    spells one that no block has."""
    from cryostream.io.star import StarFileWarning

    present = {c for table in tables.values() for c in table.columns}
    missing = sorted(read - present)
    near = []
    for column in sorted(present - read - RELION_NEIGHBOURS):
        match = difflib.get_close_matches(column, missing, n=1, cutoff=0.9)
        if match:
            near.append(f"_{column} (_{match[0]}?)")
    if near:
        warnings.warn(f"{path}: {', '.join(near)} is not a column cryostream reads, and the one "
                      "it nearly spells is missing, so its value is not used (a default or "
                      "the MRC header's stands in); correct the column's name",
                      StarFileWarning, stacklevel=4)
