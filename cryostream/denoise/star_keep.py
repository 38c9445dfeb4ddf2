"""The output folder's STAR file written again by a later call (:func:`write_listing`): the
rows of the earlier one whose outputs are still in the folder and that this call did not
denoise are kept, in their order, beside this call's (a subset denoised again into a folder
loses none of the micrographs it listed); where the two cannot be one table (other columns,
optics that disagree, a file that cannot be read), the earlier file is kept beside it as
``denoised_micrographs.star.bak``."""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import os
import shutil
from pathlib import Path, PurePosixPath

from cryostream.denoise.star_out import listing_name, listing_project, rebase_paths, star_tables

__all__ = ["write_listing"]

_GROUP, _GROUP_NAME = "rlnOpticsGroup", "rlnOpticsGroupName"


class _Unkept(Exception):
    """The earlier STAR file's rows cannot join this call's: why (the message) and the outputs
    of the rows left out (None where the file could not be read)."""

    def __init__(self, why: str, left: list[Path] | None = None):
        super().__init__(why)
        self.left = left


def write_listing(star: Path, gathered, outputs: dict[str, str], paths: list[str]):
    """Write the STAR file ``star`` for the micrographs ``gathered`` (see
    :func:`~cryostream.denoise.star_out.star_tables`; ``outputs``: each denoised micrograph's
    source to its output, ``paths``: those outputs in the order of its rows), keeping the
    rows of the file it replaces whose outputs are still in the folder and not among
    ``paths``.

    Returns
    -------
    kept : list of Path
        The outputs of the earlier rows kept, for
        :func:`~cryostream.denoise.star_out.warn_unlisted`.
    backup : tuple or None
        ``(the .bak file, why, outputs of the rows it alone lists)`` where the earlier file's
        rows could not be kept and it was kept beside as a ``.bak`` file instead.
    """
    from cryostream.io.star import write_micrograph_star

    optics, rows = star_tables(gathered, outputs)
    kept, backup = [], None
    if Path(star).is_file():
        try:
            merged = _merged(Path(star), optics, rows, paths, listing_project(gathered))
        except _Unkept as exc:
            backup = (_backup(Path(star)), str(exc), exc.left)
        else:
            if merged is not None:
                optics, rows, kept = merged
    write_micrograph_star(star, optics, rows)
    if kept:
        logging.getLogger("cryostream").info(
            "%s lists this call's %d micrograph%s and %d of its earlier rows, whose outputs are in "
            "the folder and were not denoised again (a folder of its own lists this call's alone)",
            star, len(paths), "" if len(paths) == 1 else "s", len(kept))
    return kept, backup


def _output_file(name, folder: Path) -> Path | None:
    """The file in ``folder`` an earlier row's ``rlnMicrographName`` names: the longest end of
    the name that is a file there (``External/job010/GridA/a.mrc`` is ``GridA/a.mrc`` in
    ``External/job010``, wherever the folder or the project has moved since)."""
    parts = [p for p in PurePosixPath(str(name).strip()).parts if p not in ("/", ".")]
    for k in range(len(parts), 0, -1):
        if ".." not in parts[-k:] and (folder.joinpath(*parts[-k:])).is_file():
            return folder.joinpath(*parts[-k:])
    return None


def _earlier_project(names, files: list[Path]) -> Path | None:
    """The folder the earlier STAR file's relative names were written against: the first
    relative name that is the end of its output's path gives it (None: none is)."""
    for name, file in zip(names, files, strict=True):
        parts = tuple(p for p in PurePosixPath(str(name).strip()).parts if p != ".")
        if not parts or parts[0] == "/":
            continue
        for full in (file, Path(os.path.realpath(file))):
            if len(full.parts) > len(parts) and full.parts[-len(parts):] == parts:
                return Path(*full.parts[:-len(parts)])
    return None


def _same(a, b) -> bool:
    """Two STAR values alike: numbers to the precision the file holds, others as text."""
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return str(a) == str(b)


def _optics_merged(earlier, optics, used):
    """This call's optics table with the earlier groups ``used`` by the rows kept, and the map
    from their earlier numbers to those of the table: a group of the same values is the same
    group; one this table lacks is added with the next free number."""
    import pandas as pd

    if set(earlier.columns) != set(optics.columns):
        raise _Unkept("other optics columns")
    table, numbers_of = optics.copy(), {}
    for number in used:
        found = earlier[earlier[_GROUP] == number] if _GROUP in earlier.columns else earlier
        if found.empty:
            raise _Unkept(f"its optics group {number} is not in its data_optics")
        row = found.iloc[0]
        values = [c for c in table.columns if c not in (_GROUP, _GROUP_NAME)]
        same = [i for i in range(len(table)) if all(_same(row[c], table[c].iloc[i]) for c in values)]
        exact = [i for i in same if all(_same(row[c], table[c].iloc[i]) for c in table.columns)]
        if exact or same:
            numbers_of[number] = int(table[_GROUP].iloc[(exact or same)[0]])
            continue
        new = int(table[_GROUP].max()) + 1 if len(table) else 1
        added = {c: row[c] for c in table.columns} | {_GROUP: new}
        if _GROUP_NAME in table.columns and row[_GROUP_NAME] in set(table[_GROUP_NAME]):
            added[_GROUP_NAME] = f"opticsGroup{new}"
        table = pd.concat([table, pd.DataFrame([added])], ignore_index=True)
        numbers_of[number] = new
    return table, numbers_of


def _merged(star: Path, optics, rows, paths: list[str], project: Path | None):
    """This call's tables with the earlier file's rows kept (see :func:`write_listing`), and
    those rows' outputs; None where no earlier row is to be kept."""
    import pandas as pd
    import starfile

    folder = star.parent.absolute()
    try:
        blocks = starfile.read(star, always_dict=True)
        earlier, earlier_optics = blocks["micrographs"], blocks["optics"]
        names = list(earlier["rlnMicrographName"])
    except Exception as exc:  # any file that is not such a listing: kept as a .bak
        raise _Unkept(f"it could not be read as a micrographs STAR file: {type(exc).__name__}: "
                      f"{exc}") from None
    files = [_output_file(n, folder) for n in names]
    now = {os.path.realpath(p): i for i, p in enumerate(paths)}
    order, keep, placed = [], [], set()
    for j, file in enumerate(files):
        key = os.path.realpath(file) if file is not None else None
        if key is None or key in placed:  # its output is gone, or named twice: nothing to list
            continue
        placed.add(key)
        if key in now:  # denoised again by this call: its new row, in the earlier row's place
            order.append(now[key])
        else:
            order.append(len(rows) + len(keep))
            keep.append(j)
    if not keep:
        return None
    left = [files[j] for j in keep]
    only_earlier = sorted(set(earlier.columns) - set(rows.columns))
    only_now = sorted(set(rows.columns) - set(earlier.columns))
    if only_earlier or only_now:
        raise _Unkept("other columns: " + "; ".join(
            f"{', '.join(cols)} only in {where}" for cols, where in
            ((only_earlier, "it"), (only_now, "this call's")) if cols), left)
    try:
        used = sorted({int(g) for g in earlier[_GROUP].iloc[keep]}) if _GROUP in earlier else []
        optics, numbers_of = _optics_merged(earlier_optics, optics, used)
    except _Unkept as exc:
        raise _Unkept(str(exc), left) from None
    base = _earlier_project([names[j] for j in keep], left) or project
    old = rebase_paths(earlier.iloc[keep].reset_index(drop=True), project, base)
    old["rlnMicrographName"] = [listing_name(f, project) for f in left]
    if used:
        old[_GROUP] = [numbers_of[int(g)] for g in old[_GROUP]]
    order += [i for i, p in enumerate(paths) if os.path.realpath(p) not in placed]
    table = pd.concat([rows, old[list(rows.columns)]], ignore_index=True)
    return optics, table.iloc[order].reset_index(drop=True), left


def _backup(star: Path) -> Path:
    """A copy of ``star`` beside it, ``NAME.bak`` (``NAME.bak2`` … where an earlier one of
    other content is there)."""
    for n in itertools.count(1):
        bak = star.with_name(f"{star.name}.bak{n if n > 1 else ''}")
        if not bak.exists() or bak.read_bytes() == star.read_bytes():
            shutil.copyfile(star, bak)
            return bak
