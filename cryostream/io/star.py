"""RELION STAR files of micrographs: read with their optics and defocus, written for import.

A RELION 3.1+ micrographs STAR file holds an optics table (``data_optics``: per optics group
the pixel size, voltage, spherical aberration and amplitude contrast) and a micrographs block
(``data_micrographs``: one row per micrograph, its ``rlnOpticsGroup``, and after CTFFIND its
``rlnDefocusU``/``rlnDefocusV``/``rlnDefocusAngle``). :func:`read_star` gives each micrograph
with its optics and defocus, checked; :func:`write_micrograph_star` writes such a file.
Files of RELION 3.0 and earlier (no optics table; the optics in each row) are read too."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path

import pandas as pd
import starfile

from cryostream.errors import InvalidMicrographError, NotMicrographListError
from cryostream.io.cryosparc import is_micrograph_list, star_tables
from cryostream.io.paths import same_file
from cryostream.io.star_columns import near_columns, nearly_spelled, warn_near_columns
from cryostream.io.star_rows import first_folder, missing_rows, row_not_found, skip_row
from cryostream.io.star_write import write_micrograph_star

__all__ = ["Optics", "Defocus", "StarMicrograph", "MicrographStar", "MAX_DEFOCUS_ANGSTROM",
           "StarFileWarning", "read_star", "read_micrograph_star", "write_micrograph_star",
           "is_micrograph_list"]

_COLUMN = "rlnMicrographName"
_GROUP = "rlnOpticsGroup"
_OPTICS = {"voltage_kv": "rlnVoltage", "cs_mm": "rlnSphericalAberration",
           "amplitude_contrast": "rlnAmplitudeContrast"}
#: The micrograph pixel size only: ``rlnImagePixelSize`` is the particle boxes' (often binned).
_PIXEL = ("rlnMicrographPixelSize",)
_DEFOCUS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
#: The movies of an Import job's STAR file, which motion correction makes micrographs of.
_MOVIE = "rlnMicrographMovieName"
#: Columns of a particles STAR file (one row per particle), never of a micrographs one.
_PARTICLE = ("rlnCoordinateX", "rlnCoordinateY", "rlnImageName")

#: Defocus values above this (Å, 10 µm) are taken for a broken CTF column, not a defocus.
MAX_DEFOCUS_ANGSTROM = 100000.0


class StarFileWarning(UserWarning):
    """A STAR file that is read, but not as it says: a micrograph listed on two alike rows
    (used once), a pixel size that differs from the MRC header's (the STAR file's is used)."""


@dataclasses.dataclass(frozen=True)
class Optics:
    """One optics group (or, in RELION 3.0 files, one row's optics); ``None`` where the file
    gives no value.

    Attributes
    ----------
    group : int or None
        ``rlnOpticsGroup``.
    pixel_size_angstrom : float or None
        ``rlnMicrographPixelSize``, Å (``rlnImagePixelSize`` is the particle boxes', not the
        micrograph's, and is not used).
    voltage_kv, cs_mm, amplitude_contrast : float or None
        ``rlnVoltage`` (kV), ``rlnSphericalAberration`` (mm), ``rlnAmplitudeContrast``.
    """

    group: int | None
    pixel_size_angstrom: float | None
    voltage_kv: float | None
    cs_mm: float | None
    amplitude_contrast: float | None

    def ctf_keywords(self) -> dict[str, float]:
        """The given microscope values as :func:`cryostream.ctf.fit_ctf` keywords."""
        return {k: getattr(self, k) for k in _OPTICS if getattr(self, k) is not None}


@dataclasses.dataclass(frozen=True)
class Defocus:
    """A micrograph's defocus as CTFFIND writes it (RELION's convention): underfocus positive,
    ``U ≥ V``, the angle of U from the x axis.

    Attributes
    ----------
    defocus_u_angstrom, defocus_v_angstrom : float
        Å.
    angle_deg : float
        Degrees, in [0, 180).
    """

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    angle_deg: float


@dataclasses.dataclass(frozen=True)
class StarMicrograph:
    """One row of a micrographs block.

    Attributes
    ----------
    path : Path
        The micrograph, resolved as RELION does (:func:`read_star`).
    name : str
        The name as the file writes it.
    row : int
        Its row in the block (0-based).
    optics : Optics or None
        Its optics group's values; None when the file gives none.
    defocus : Defocus or None
        From ``rlnDefocusU``/``V``/``Angle`` when the file has them.
    """

    path: Path
    name: str
    row: int
    optics: Optics | None
    defocus: Defocus | None


@dataclasses.dataclass(frozen=True)
class MicrographStar:
    """A micrographs STAR file as read (:func:`read_star`).

    Attributes
    ----------
    path : Path
        The file.
    project : Path
        The folder its relative names resolve against (RELION's project folder).
    micrographs : list of StarMicrograph
        One per micrograph, in row order (one listed on two alike rows is here once).
    optics_table : pandas.DataFrame or None
        ``data_optics`` as read (None for RELION 3.0 files).
    table : pandas.DataFrame
        The micrographs block as read, every column.
    skipped : list of dict
        The rows ``permissive`` left out (their file is missing): ``{"path", "reason"}``.
    """

    path: Path
    project: Path
    micrographs: list[StarMicrograph]
    optics_table: object
    table: object
    skipped: list = dataclasses.field(default_factory=list)


def _fail(path: Path, problem: str, fix: str,
          kind: type = InvalidMicrographError) -> InvalidMicrographError:
    return kind(path, problem, fix)


def _number(path: Path, where: str, column: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        if pd.isna(value) or not str(value).strip():  # a blank, short or "nan" field
            ctf = column in _DEFOCUS  # nan there is CTFFIND's failed fit
            raise _fail(path, f"{where}: {column} has no value (empty or nan)", "run the CTF "
                        "estimation again, or remove the row" if ctf else "fill it in")
        shown = repr(value) if isinstance(value, str) else f"{value}"
        raise _fail(path, f"{where}: {column}={shown} is not a number",
                    "correct the column (RELION writes numbers there)")
    return number


def _optics(path: Path, row, where: str, group: int | None) -> Optics:
    values = {}
    for key, column in _OPTICS.items():
        values[key] = _number(path, where, column, row[column]) if column in row else None
    pixel = next((c for c in _PIXEL if c in row), None)
    ps = _number(path, where, pixel, row[pixel]) if pixel else None
    if ps is None and "rlnDetectorPixelSize" in row and "rlnMagnification" in row:  # RELION 3.0
        magnification = _number(path, where, "rlnMagnification", row["rlnMagnification"])
        ps = _number(path, where, "rlnDetectorPixelSize", row["rlnDetectorPixelSize"]) * 1e4 \
            / magnification if magnification > 0 else 0.0
    bad = [(c, v) for c, v, ok in (
        (pixel or "pixel size", ps, ps is None or ps > 0),
        ("rlnVoltage", values["voltage_kv"], values["voltage_kv"] is None
         or values["voltage_kv"] > 0),
        ("rlnSphericalAberration", values["cs_mm"], values["cs_mm"] is None
         or values["cs_mm"] >= 0),
        ("rlnAmplitudeContrast", values["amplitude_contrast"],
         values["amplitude_contrast"] is None or 0 <= values["amplitude_contrast"] < 1),
    ) if not ok]
    if bad:
        column, value = bad[0]
        raise _fail(path, f"{where}: {column}={value:g} is impossible",
                    "correct the optics (RELION's units: Å per pixel > 0, kV > 0, Cs in mm ≥ 0, "
                    "amplitude contrast in [0, 1))")
    return Optics(group, ps, **values)


def _defocus(path: Path, row, where: str) -> Defocus | None:
    if "rlnDefocusU" not in row:  # read_star checked that the columns come together
        return None
    u, v = (_number(path, where, c, row[c]) for c in _DEFOCUS[:2])
    angle = _number(path, where, "rlnDefocusAngle", row["rlnDefocusAngle"]) \
        if "rlnDefocusAngle" in row else 0.0
    for column, value in (("rlnDefocusU", u), ("rlnDefocusV", v)):
        if not 0 < value <= MAX_DEFOCUS_ANGSTROM:
            raise _fail(path, f"{where}: {column}={value:g} Å is not a defocus (expected "
                        f"0 < defocus ≤ {MAX_DEFOCUS_ANGSTROM:g} Å, underfocus positive)",
                        "run the CTF estimation again, or remove the micrograph's row")
    if u < v:  # CTFFIND writes U ≥ V; the same ellipse turned by 90°
        u, v, angle = v, u, angle + 90.0
    return Defocus(u, v, angle % 180.0)


def read_star(path: str | os.PathLike, column: str = _COLUMN, *,
              permissive: bool = False) -> MicrographStar:
    """Read a micrographs STAR file with each micrograph's optics and defocus, checked.

    Relative names are resolved as RELION does, against the project folder: the working
    directory first (RELION runs there), then the STAR file's folder and up to three folders
    above it (for a STAR file given from elsewhere). A cryoSPARC exposures ``.cs`` file is
    read as the STAR file it stands for (:func:`cryostream.io.cryosparc.star_tables`).

    Parameters
    ----------
    path : path-like
        The STAR file.
    column : str
        The column of micrograph names (``rlnMicrographNameEven``/``Odd`` for the half-sums).
    permissive : bool
        Leave out a row whose file is found in none of those folders, with a
        :class:`~cryostream.io.stack.MicrographSkippedWarning` saying where it was looked for,
        instead of raising.

    Raises
    ------
    InvalidMicrographError
        Naming the file: it is not STAR, or a particles STAR file, no block has ``column``, a
        row's file is found in none of the folders tried (the message names the row and the
        folders), two rows name one micrograph with different values, a row's optics group is
        not in ``data_optics``, an optics value is impossible, or defocus values are not
        positive, finite and at most :data:`MAX_DEFOCUS_ANGSTROM` (every such row named).

    Warns
    -----
    StarFileWarning
        A micrograph listed on two rows alike (it is used once).
    """
    path, skipped, project, near = Path(path), [], None, []
    if path.suffix.lower() == ".cs":  # cryoSPARC's exposures, as the STAR file they stand for
        tables, skipped, project = star_tables(path, permissive)  # one half's for any column
        column = _COLUMN
    else:
        try:
            blocks = starfile.read(path, always_dict=True)
        except Exception as exc:  # starfile raises many kinds on malformed text
            raise _fail(path, f"not a readable STAR file ({exc})",
                        "check it was written by RELION", NotMicrographListError) from None
        tables = {k: b for k, b in blocks.items() if hasattr(b, "columns")}
        near = near_columns(tables, {column, _COLUMN, _GROUP, *_OPTICS.values(), *_PIXEL})
    particles = [k for k, b in tables.items()
                 if _COLUMN in b.columns and not set(_PARTICLE).isdisjoint(b.columns)]
    name = next((k for k, b in tables.items() if column in b.columns and k not in particles), None)
    if name is None and particles:  # one row per particle: refused, not read as micrographs
        rows = tables[particles[0]]
        raise _fail(path, f"a particles STAR file (data_{particles[0]}: {len(rows)} particles "
                    f"on {rows[_COLUMN].nunique()} micrographs), not a micrographs one",
                    "give the micrographs STAR file instead (e.g. CtfFind/job003/"
                    "micrographs_ctf.star or MotionCorr/job002/corrected_micrographs.star)",
                    NotMicrographListError)
    movies = next((k for k, b in tables.items() if _MOVIE in b.columns), None)
    if name is None and movies is not None:  # an Import job's movies.star: motion correction's
        raise _fail(path, f"a movies STAR file (data_{movies}: {len(tables[movies])} movies, in "
                    f"{_MOVIE}), not a micrographs one", "motion-correct the movies first "
                    "(RELION's MotionCorr job) and give the micrographs STAR file it writes "
                    "(e.g. MotionCorr/job002/corrected_micrographs.star)", NotMicrographListError)
    if name is None:
        typo = nearly_spelled(near, column)  # the error names it (and no warning came before)
        raise _fail(path, "empty (0 bytes)" if path.stat().st_size == 0 else
                    f"no block has a {column} column{typo}", "correct the column's name" if typo
                    else "pass a micrographs STAR file (e.g. from MotionCorr or CtfFind)"
                    + ("" if column == _COLUMN else " that motion correction wrote with its "
                       "even/odd sums"), InvalidMicrographError if typo else NotMicrographListError)
    table = tables[name].reset_index(drop=True)
    if table.empty:
        raise _fail(path, f"data_{name} lists no micrographs (a {column} column, no rows)",
                    "pass the STAR file of a job that wrote micrographs", NotMicrographListError)
    present = [c for c in _DEFOCUS if c in table.columns]
    if present and ("rlnDefocusU" not in present or "rlnDefocusV" not in present):
        import difflib

        absent = [c for c in _DEFOCUS[:2] if c not in present]
        typos = [f"_{c} (_{m[0]}?)" for c in table.columns if c not in _DEFOCUS
                 for m in [difflib.get_close_matches(c, absent, n=1, cutoff=0.9)] if m]
        raise _fail(path, f"data_{name} has {', '.join(present)} but not both rlnDefocusU and "
                    "rlnDefocusV" + (f"; {', '.join(typos)} nearly spells it" if typos else ""),
                    "correct the column's name" if typos else
                    "pass the STAR file CTFFIND wrote, or drop the columns")
    optics_table = next((b for k, b in tables.items() if k != name and _GROUP in b.columns),
                        None)
    groups = {}
    if optics_table is not None:
        for _, row in optics_table.iterrows():
            number = int(_number(path, "data_optics", _GROUP, row[_GROUP]))
            groups[number] = _optics(path, row, f"data_optics group {number}", number)
    bases = list(dict.fromkeys([Path.cwd(), path.parent.absolute(),
                                *list(path.parent.resolve().parents)[:3]]))
    micrographs, bad, seen, later = [], [], {}, {}
    for i, row in table.iterrows():
        text = str(row[column])
        where = f"row {i + 1} ({text})"
        if groups:
            if _GROUP not in row and len(groups) > 1:
                typo = nearly_spelled(near_columns({name: table}, {_GROUP}), _GROUP)
                raise _fail(path, f"{where}: no {_GROUP} column, and data_optics has "
                            f"{len(groups)} groups{typo}", "correct the column's name" if typo
                            else f"add the {_GROUP} column")
            number = int(_number(path, where, _GROUP, row[_GROUP])) if _GROUP in row \
                else next(iter(groups))
            if number not in groups:
                raise _fail(path, f"{where}: optics group {number} is not in data_optics "
                            f"(groups {', '.join(map(str, sorted(groups)))})",
                            "add the group to data_optics, or correct the row's "
                            f"{_GROUP}")
            optics = groups[number]
        else:
            optics = _optics(path, row, where, None)
            if optics == Optics(None, None, None, None, None):
                optics = None
        candidate = Path(text)
        if not candidate.is_absolute():
            # one project folder for the whole file, as RELION has: the first row's decides
            found = [b for b in ([project] if project else bases) if (b / candidate).exists()]
            other = next((b for b in found[1:] if not same_file(b / candidate, found[0] / candidate)),
                         None) if project is None else None
            if other is not None:
                raise _fail(path, f"{where}: two different files have this name, "
                            f"{found[0] / candidate} and {other / candidate}",
                            "run cryostream from the RELION project folder the STAR file "
                            "belongs to, or give absolute names")
            if not found:
                tried, settled = ([project], "the rows before it were found") if project else (
                    bases, "")
                if not project and "others" not in later:  # once: rows before are missing too
                    later["others"] = first_folder(table[column], bases)
                if not project and later["others"] is not None:  # later rows: the folder
                    tried, settled = [later["others"]], "other rows are found"
                problem = row_not_found(path, where, column, text, tried, settled)
                # no row found anywhere (run from elsewhere, a project moved): not the rows
                # to skip one by one (permissive), but the place to run from, said once
                if not permissive or (not project and later["others"] is None):
                    missing = missing_rows(table[column], tried)
                    if missing > 1:  # a moved project: say so, not one row at a time
                        problem = _fail(path, f"{problem.problem}; {missing} of the "
                                        f"{len(table)} rows are not found there", problem.fix)
                    raise problem
                skip_row(problem)
                skipped.append({"path": str(tried[0]) + os.sep + text,
                                "reason": f"{problem.path}: {problem.problem}"})
                continue
            project = project or found[0]
            candidate = project / candidate
        key = os.path.realpath(candidate)
        if key in seen:  # one micrograph on two rows: used once, or refused if they differ
            _listed_twice(path, table, column, seen[key], int(i))
            continue
        seen[key] = int(i)
        try:
            micrographs.append(StarMicrograph(candidate, text, int(i), optics,
                                              _defocus(path, row, where)))
        except InvalidMicrographError as exc:  # every bad defocus named at once, below
            bad.append(exc)
    if bad:  # one line for all: the first five rows, then how many more
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise bad[0] if len(bad) == 1 else _fail(
            path, f"{len(bad)} of the {len(table)} rows have a bad defocus ("
            + "; ".join(e.problem for e in bad[:5]) + f"{more})",
            "run the CTF estimation again, or remove those micrographs' rows")
    warn_near_columns(path, near)  # once read: a file refused for a column gets the error alone
    return MicrographStar(path, project or path.parent, micrographs, optics_table, table,
                          skipped)


def _listed_twice(path: Path, table, column: str, first: int, second: int) -> None:
    """Rows ``first`` and ``second`` (0-based) name one micrograph: refused when any other
    column differs, else a :class:`StarFileWarning` (the micrograph is used once)."""
    a, b = table.iloc[first], table.iloc[second]
    where = f"rows {first + 1} and {second + 1} both list {a[column]}" if a[column] == b[
        column] else f"rows {first + 1} ({a[column]}) and {second + 1} ({b[column]}) name one file"
    differ = [c for c in table.columns if c != column
              and not (a[c] == b[c] or (pd.isna(a[c]) and pd.isna(b[c])))]
    if differ:
        shown = ", ".join(f"{c} {a[c]} and {b[c]}" for c in differ[:4])
        raise _fail(path, f"{where} and they disagree ({shown}"
                    + (f", and {len(differ) - 4} more columns)" if len(differ) > 4 else ")"),
                    "remove the wrong row (RELION lists each micrograph once)")
    warnings.warn(f"{path}: {where} with the same values; the micrograph is used once",
                  StarFileWarning, stacklevel=4)


def read_micrograph_star(path: str | os.PathLike, column: str = _COLUMN, *,
                         permissive: bool = False) -> list[Path]:
    """The micrograph paths a RELION STAR file lists in ``column`` (default
    ``rlnMicrographName``; ``rlnMicrographNameEven`` / ``rlnMicrographNameOdd`` for the
    even- and odd-frame sums RELION's motion correction writes), resolved as
    :func:`read_star` does (``permissive``: rows whose file is missing left out with a
    warning), its optics and defocus checked."""
    return [m.path for m in read_star(path, column, permissive=permissive).micrographs]
