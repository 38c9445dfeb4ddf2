"""A RELION 4/5 picking job's coordinates STAR file (``AutoPick/jobNNN/autopick.star``,
``ManualPick/jobNNN/manualpick.star``): its table of micrographs and their coordinate files
(``data_coordinate_files``: ``rlnMicrographName``, ``rlnMicrographCoordinates``), read from
its text and written back with only the micrograph names changed, every other byte as it was.

RELION's Extract (``--coord_list``) pairs each micrograph of its micrographs STAR file with a
coordinate file by ``rlnMicrographName``, the name as written. RELION 3's coordinate files,
found by each micrograph's name and a suffix (``coords_suffix_autopick.star``), have no such
table and are refused, saying so."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from cryostream.errors import InvalidMicrographError

__all__ = ["NAME", "COORDINATES", "CoordinateList", "read_coordinate_list", "renamed_text"]

#: The column of micrograph names, and that of each one's coordinate file.
NAME, COORDINATES = "rlnMicrographName", "rlnMicrographCoordinates"

#: One value of a row: a quoted string (its quote followed by a space or the line's end) or a
#: run of characters other than spaces.
_VALUE = re.compile(r"'[^']*'(?=\s|$)|\"[^\"]*\"(?=\s|$)|\S+")

_FIX = ("give the picking job's coordinates STAR file of RELION 4 or 5 (AutoPick/jobNNN/"
        "autopick.star or ManualPick/jobNNN/manualpick.star, its table data_coordinate_files); "
        "RELION 3's coordinate files, found by each micrograph's name and a suffix, are not "
        "supported")


@dataclasses.dataclass(frozen=True)
class CoordinateList:
    """A coordinates STAR file as read (:func:`read_coordinate_list`).

    Attributes
    ----------
    path : Path
        The file.
    lines : list of str
        Its text, line by line, each with its line ending.
    block : str
        The table's name (``coordinate_files``).
    rows : list of int
        The index in :attr:`lines` of each row of the table, in order.
    names : list of str
        Each row's ``rlnMicrographName``, without quotes.
    coordinates : list of str
        Each row's ``rlnMicrographCoordinates``, without quotes.
    column : int
        The place of ``rlnMicrographName`` among a row's values (0-based).
    """

    path: Path
    lines: list
    block: str
    rows: list
    names: list
    coordinates: list
    column: int


def _fail(path: Path, problem: str, fix: str = _FIX) -> InvalidMicrographError:
    return InvalidMicrographError(path, problem, fix)


def _unquoted(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"" else value


def _tables(lines: list[str]):
    """``(block, labels, row line indices)`` of each loop of ``lines``."""
    block, i, n = "", 0, len(lines)
    while i < n:
        text = lines[i].strip()
        i += 1
        if text.startswith("data_"):
            block = text[5:].split()[0] if text[5:].split() else ""
        elif text.startswith("loop_"):
            labels, rows = [], []
            while i < n and (lines[i].strip().startswith("_") or not lines[i].strip()
                             or lines[i].lstrip().startswith("#")):
                if lines[i].strip().startswith("_"):
                    labels.append(lines[i].split()[0][1:])
                i += 1
            while i < n and not lines[i].strip().startswith(("data_", "loop_", "_")):
                if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                    rows.append(i)
                elif rows and not lines[i].strip():  # the blank line that ends the rows
                    break
                i += 1
            yield block, labels, rows


def read_coordinate_list(path: str | os.PathLike) -> CoordinateList:
    """Read a RELION 4/5 coordinates STAR file's table of micrographs and coordinate files.

    Raises
    ------
    InvalidMicrographError
        Naming the file: it cannot be read, it has no table with both ``rlnMicrographName`` and
        ``rlnMicrographCoordinates`` (saying what it is instead where it can tell: RELION 3's
        ``coords_suffix`` file, one micrograph's coordinates, a particles STAR file), the table
        has no rows, or a row has another number of values than the table has columns.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:  # (CRLF lines kept as they are)
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise _fail(path, f"cannot be read ({reason})", "give the coordinates STAR file of a "
                    "picking job (AutoPick/jobNNN/autopick.star)") from None
    lines = text.splitlines(keepends=True)
    tables = list(_tables(lines))
    found = [t for t in tables if NAME in t[1] and COORDINATES in t[1]]
    if not found:
        words = text.split()
        if path.name.startswith("coords_suffix") or (len(words) == 1 and words[0].endswith(".star")):
            problem = ("RELION 3's coords_suffix file (it names the micrographs STAR file; each "
                       "micrograph's coordinates are found by its name and the suffix)")
        elif any("rlnCoordinateX" in t[1] for t in tables):
            problem = ("coordinates of particles (rlnCoordinateX/Y: one micrograph's coordinate "
                       "file, or a particles STAR file), not a picking job's list of "
                       "micrographs and their coordinate files")
        elif any(NAME in t[1] for t in tables):
            problem = (f"a micrographs STAR file (_{NAME} without _{COORDINATES}), not a "
                       "picking job's coordinates")
        else:
            problem = f"no table with both _{NAME} and _{COORDINATES}"
        raise _fail(path, problem)
    block, labels, rows = next((t for t in found if t[0] == "coordinate_files"), found[0])
    if not rows:
        raise _fail(path, f"data_{block} lists no micrographs", "give the coordinates STAR "
                    "file of a picking job that picked particles")
    column, other = labels.index(NAME), labels.index(COORDINATES)
    names, coordinates = [], []
    for number, i in enumerate(rows, 1):
        values = _VALUE.findall(lines[i])
        if len(values) != len(labels):
            raise _fail(path, f"data_{block} row {number} has {len(values)} values for "
                        f"{len(labels)} columns", "correct the row, or give the file the "
                        "picking job wrote")
        names.append(_unquoted(values[column]))
        coordinates.append(_unquoted(values[other]))
    return CoordinateList(path, lines, block, rows, names, coordinates, column)


def renamed_text(table: CoordinateList, names: dict[int, str | None]) -> str:
    """The file's text with row ``k``'s ``rlnMicrographName`` (``k`` 0-based in
    :attr:`CoordinateList.rows`) replaced by ``names[k]``, its row left out where that is None;
    every other row, value, space and line as it was. A name with a space in it is quoted."""
    lines = list(table.lines)
    drop = set()
    for k, name in names.items():
        i = table.rows[k]
        if name is None:
            drop.add(i)
            continue
        value = list(_VALUE.finditer(lines[i]))[table.column]
        shown = f'"{name}"' if re.search(r"\s", name) else name
        lines[i] = lines[i][:value.start()] + shown + lines[i][value.end():]
    return "".join(line for i, line in enumerate(lines) if i not in drop)
