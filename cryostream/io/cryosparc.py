"""cryoSPARC exposure files (``.cs``) read as the micrographs STAR file they stand for.

A cryoSPARC job writes its exposures (micrographs) as a ``.cs`` file: a NumPy table, one row
per micrograph, with the micrograph's path relative to the project folder
(``micrograph_blob/path``, e.g. ``J12/motioncorrected/..._patch_aligned_doseweighted.mrc``),
its pixel size (``micrograph_blob/psize_A``) and, after Patch CTF Estimation or CTFFIND, its
defocus and optics (``ctf/df1_A``, ``ctf/df2_A``, ``ctf/df_angle_rad``, ``ctf/accel_kv``,
``ctf/cs_mm``, ``ctf/amp_contrast``; before it, the microscope's ``mscope_params``).
A job keeps the fields it made in one file and those it was given in a passthrough file beside
it (``Jn_passthrough_exposures*.cs``); either may be given, and the other is joined by ``uid``.
:func:`star_tables` turns it into the two tables of a RELION micrographs STAR file, names
resolved, so that :func:`cryostream.io.star.read_star` checks it as any STAR file and
``denoise`` writes the same ``denoised_micrographs.star``.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cryostream.errors import InvalidMicrographError
from cryostream.io.numpy_tables import ForbiddenObjectError, load_table
from cryostream.io.paths import same_file

__all__ = ["LIST_SUFFIXES", "is_micrograph_list", "list_kind", "star_tables"]

#: Files that list micrographs rather than hold one: RELION's STAR files, cryoSPARC's tables.
LIST_SUFFIXES = (".star", ".cs")

_PATH = "micrograph_blob/path"
_PIXEL = "micrograph_blob/psize_A"
#: RELION's optics columns and the cryoSPARC fields that give them, the first with a value used.
_OPTICS = {"rlnVoltage": ("ctf/accel_kv", "mscope_params/accel_kv"),
           "rlnSphericalAberration": ("ctf/cs_mm", "mscope_params/cs_mm"),
           "rlnAmplitudeContrast": ("ctf/amp_contrast",)}
_ZERO_OK = ("mscope_params/cs_mm",)
_FIELDS = {**_OPTICS, "rlnMicrographPixelSize": (_PIXEL,)}
_DEFOCUS = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad")
_GIVE = ("give the exposures .cs file of a cryoSPARC job (a Patch CTF Estimation's or a Curate "
         "Exposures job's, in the job's folder), or the micrographs' folder")


def is_micrograph_list(path: Path) -> bool:
    """Whether ``path`` is a file that lists micrographs (a STAR file or a cryoSPARC table)."""
    return path.suffix.lower() in LIST_SUFFIXES and path.is_file()


def list_kind(path) -> str:
    """What records and messages call a micrographs list: ``"STAR file"`` or ``"cryoSPARC .cs
    file"``."""
    return "cryoSPARC .cs file" if str(path).lower().endswith(".cs") else "STAR file"


def _fail(path: Path, problem: str, fix: str) -> InvalidMicrographError:
    return InvalidMicrographError(path, problem, fix)


def _table(path: Path, mmap: bool = False) -> np.ndarray:
    with open(path, "rb") as f:
        start = f.read(6)
    if start != b"\x93NUMPY":
        raise _fail(path, "not a cryoSPARC .cs table (cryoSPARC writes them in NumPy's format, "
                    f"which this file does not start as: {start!r})", _GIVE)
    try:  # object fields (Python strings) are read, no code of the file run
        table = load_table(path, mmap=mmap)
    except ForbiddenObjectError as exc:
        raise _fail(path, f"holds Python objects other than NumPy's and plain values ({exc.name}), "
                    "which are not read: cryoSPARC's tables hold none", "give the .cs file "
                    "cryoSPARC wrote in the job's folder (or an Export job's), not one made "
                    "or changed elsewhere") from None
    except Exception as exc:  # cut short, a damaged pickle
        raise _fail(path, f"a NumPy file that cannot be read as a cryoSPARC .cs table ({exc})",
                    _GIVE) from None
    if not isinstance(table, np.ndarray) or table.dtype.names is None:
        raise _fail(path, "not a cryoSPARC .cs table (a NumPy array without named fields)",
                    _GIVE)
    return table.reshape(-1)


def _numbers(values) -> np.ndarray:
    """Float32 fields as the decimals they were written as (``2.7``, not 2.700000047683716)."""
    return np.array([float(str(v)) for v in np.asarray(values).reshape(-1)], dtype=float)


def _degrees(values) -> np.ndarray:
    """Radians of a float field in degrees, each the shortest decimal whose radians read back
    as the same value of the field's type: ``144.2`` for float32 ``radians(144.2)``, not
    144.200007 (the decimal digits its radians hold, as :func:`_numbers` gives the others)."""
    values = np.asarray(values).reshape(-1)
    kind = values.dtype.type if values.dtype.kind == "f" else np.float64
    out = []
    for value in values.astype(kind):
        exact = math.degrees(float(value))
        shortest = (round(exact, digits) for digits in range(17))
        out.append(next((d for d in shortest if kind(math.radians(d)) == value), exact))
    return np.array(out, dtype=float)


def _text(value) -> str:
    text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
    return text.lstrip(">")  # cryoSPARC marks some paths with a leading '>'


def _project(path: Path, names: list[str]) -> Path:
    """The folder the table's relative names are in: cryoSPARC's project folder, which holds
    the job folder the ``.cs`` file is in (or, for an export, is further up; the file or its
    folder may be a link), or the working directory; the first holding them all, else the one
    holding most (a link counts, even one whose target is gone: said as such later). Where a
    folder searched before it holds some of them, a name that is two different files in the
    two is refused, naming both: another copy of the project (the working directory, say) must
    not stand in for this one's missing micrographs."""
    tried: list[Path] = []
    for here in (path.parent.absolute(), path.resolve().parent):
        tried += [here.parent, here, *here.parents[1:4]]
    tried = list(dict.fromkeys([*tried, Path.cwd()]))
    counts: list[int] = []
    for base in tried:  # the first holding them all ends the search
        counts.append(sum(os.path.lexists(base / n) for n in names))
        if counts[-1] == len(names):
            break
    if max(counts) == 0:
        jobs = sorted({Path(n).parts[0] for n in names if len(Path(n).parts) > 1})
        base = next((b for b in tried if any((b / j).is_dir() for j in jobs)), None)
        if base is not None:  # the project is found, without the micrographs
            there = [j for j in jobs if (base / j).is_dir()]
            raise _fail(path, f"none of its {len(names)} micrographs ({names[0]} …) is in the "
                        f"cryoSPARC project {base}, which holds the job folder {', '.join(there)} "
                        "they are in without them: the job's files were cleared or moved",
                        f"restore them (or run {there[0]} again in cryoSPARC), then give the .cs "
                        "file again")
        shown = ", ".join(str(b) for b in tried)
        raise _fail(path, f"none of its {len(names)} micrographs ({names[0]} …) is in the "
                    f"folders they could be relative to ({shown})", "give the .cs file in its "
                    "place in the cryoSPARC project (its job folder), or run cryostream from "
                    "the project folder")
    best = tried[counts.index(max(counts))]
    for other, count in zip(tried, counts, strict=False):  # the folders searched
        twice = next((n for n in names if os.path.lexists(other / n)
                      and os.path.lexists(best / n) and not same_file(other / n, best / n)),
                     None) if count and other != best else None
        if twice is not None:
            raise _fail(path, f"two different files have the name {twice}: {best / twice} and "
                        f"{other / twice} ({other} holds {count} of its {len(names)} "
                        f"micrographs, {best} more)", "give the .cs file in its place in its own "
                        "cryoSPARC project and restore the micrographs missing there, or run "
                        "cryostream from the project folder that holds them all")
    return best


def _sibling(path: Path, table: np.ndarray, other: Path) -> tuple[np.ndarray, list[str]] | None:
    """``other``'s rows for ``table``'s (by ``uid``) and the fields it adds, or None where it is
    not a table of the same exposures: no ``uid``, a particles table, no field the table
    lacks, or not every row there; or where it cannot be read (with a warning naming it).
    Mapped, not read whole: only its header and the fields used are read."""
    try:
        extra = _table(other, mmap=True)
    except (InvalidMicrographError, OSError) as error:  # not NumPy's, cut short, objects
        import warnings  # refused; a broken link, a folder, no permission to read it

        from cryostream.io.star import StarFileWarning

        why = error if isinstance(error, InvalidMicrographError) else \
            f"{other}: cannot be read ({error.strerror or error})"
        warnings.warn(StarFileWarning(f"{path}: {other.name} beside it is not joined (none of its "
                                      f"fields are used): {why}"), stacklevel=2)
        return None
    names = extra.dtype.names or ()
    new = [f for f in names if f not in table.dtype.names]
    if "uid" not in names or not new or _particles(names) or extra.ndim != 1 \
            or len(extra) < len(table):
        return None
    known = np.asarray(extra["uid"])
    order = np.argsort(known, kind="stable")
    at = np.searchsorted(known, table["uid"], sorter=order).clip(0, len(known) - 1)
    rows = order[at]
    if not np.array_equal(known[rows], table["uid"]):
        return None
    return extra[rows], new


def _joined(path: Path, table: np.ndarray) -> np.ndarray:
    """``table`` with the fields its job keeps in the other ``.cs`` files beside it, rows
    joined by ``uid``. A cryoSPARC job writes the fields it made in one file (a CTF
    estimation's ``ctf/*``) and passes the fields it was given through in another
    (``Jn_passthrough_exposures*.cs``: ``micrograph_blob/*``, ``mscope_params/*``); either may
    be given. A file beside it is joined only where it holds every one of the table's rows
    (an accepted set's passthrough, not the rejected one's), and only for fields the table
    lacks."""
    import logging

    if "uid" not in table.dtype.names:
        return table
    passthrough = "passthrough" in path.name
    folders = dict.fromkeys([path.parent.absolute(), path.resolve().parent])
    for other in sorted({o for folder in folders for o in folder.glob("*.cs")}):
        if other.name == path.name or ("passthrough" in other.name) == passthrough:
            continue
        found = _sibling(path, table, other)
        if found is None:
            continue
        extra, new = found
        out = np.zeros(len(table), dtype=[*((f, table.dtype[f]) for f in table.dtype.names),
                                          *((f, extra.dtype[f]) for f in new)])
        for f in table.dtype.names:
            out[f] = table[f]
        for f in new:
            out[f] = extra[f]
        table = out
        logging.getLogger("cryostream").info(
            "%s: joined with %s beside it, which holds %s for its rows (cryoSPARC keeps a "
            "job's fields in two files)", path, other.name,
            ", ".join(sorted({f.split("/")[0] + "/*" for f in new})))
    return table


def _particles(fields) -> bool:
    """Whether a table's fields are a particles table's (one row per particle)."""
    return "blob/path" in fields or any(f.startswith("location/") for f in fields)


def _usable(table: np.ndarray, fields: tuple[str, ...]) -> np.ndarray | None:
    """Per row, the first of ``fields`` that has a value (above 0 and finite: cryoSPARC
    leaves zeros where a job did not measure it); NaN where none has; None where no row has."""
    out = np.full(len(table), np.nan)
    for field in reversed([f for f in fields if f in table.dtype.names]):
        values = _numbers(table[field])
        # a Cs of 0 entered at import is a corrected microscope's
        good = np.isfinite(values) & ((values >= 0) if field in _ZERO_OK else (values > 0))
        out[good] = values[good]
    return None if np.isnan(out).all() else out


def _optics(path: Path, table: np.ndarray) -> tuple[pd.DataFrame, list[int]]:
    """RELION's optics columns per row, and each row's optics group (numbered from 1). A value
    some rows lack (0 or missing) is not used for any, with a warning: the option or default
    stands in."""
    from cryostream.io.star import StarFileWarning

    columns = {c: _usable(table, fields) for c, fields in _FIELDS.items()}
    partial = {c: v for c, v in columns.items() if v is not None and np.isnan(v).any()}
    if partial:
        shown = ", ".join(f"{' or '.join(_FIELDS[c])} on {int(np.isnan(v).sum())} of {len(v)} rows"
                          for c, v in partial.items())
        warnings.warn(f"{path}: no value (0 or missing) for {shown}; not used for any micrograph "
                      "(the micrograph's header, the options or their defaults stand in)",
                      StarFileWarning, stacklevel=5)
    given = {c: v for c, v in columns.items() if v is not None and c not in partial}
    keys = list(zip(*given.values(), strict=True)) if given else [()] * len(table)
    groups = {k: n + 1 for n, k in enumerate(dict.fromkeys(keys))}
    optics = pd.DataFrame([{"rlnOpticsGroupName": f"opticsGroup{n}", "rlnOpticsGroup": n,
                            **dict(zip(given, k, strict=True))} for k, n in groups.items()])
    return optics, [groups[k] for k in keys]


def _defocus(path: Path, table: np.ndarray, rows: pd.DataFrame) -> None:
    """The defocus columns of ``rows`` from the table's CTF, where it has one: every row
    estimated, or none (zeros: a motion correction's exposures), else refused."""
    fields = table.dtype.names
    if not set(_DEFOCUS[:2]) <= set(fields):
        return
    u, v = (_numbers(table[f]) for f in _DEFOCUS[:2])
    unset = ~(np.isfinite(u) & np.isfinite(v) & (u > 0) & (v > 0))
    if unset.all():
        return  # the CTF was never estimated: fitted by denoise
    if unset.any():
        where = ", ".join(str(i + 1) for i in np.flatnonzero(unset)[:5])
        count = int(unset.sum())
        raise _fail(path, f"{count} of its {len(u)} micrographs {'has' if count == 1 else 'have'} "
                    f"no defocus (ctf/df1_A or ctf/df2_A 0, negative or NaN: rows {where}"
                    + (" …)" if unset.sum() > 5 else ")"), "give the exposures of a CTF "
                    "estimation that measured every one, or leave those out (Curate Exposures)")
    rows["rlnDefocusU"], rows["rlnDefocusV"] = u, v
    rows["rlnDefocusAngle"] = _degrees(table[_DEFOCUS[2]]) if _DEFOCUS[2] in fields else 0.0


def star_tables(path: Path, permissive: bool = False) -> tuple[dict, list[dict], Path | None]:
    """The ``.cs`` file at ``path`` as the tables of a RELION micrographs STAR file.

    Parameters
    ----------
    path : Path
        A cryoSPARC exposures ``.cs`` file: a job's main file or its passthrough file, the
        other one beside it joined by ``uid`` (:func:`_joined`).
    permissive : bool
        Leave out rows whose micrograph is missing, with a warning, instead of raising.

    Returns
    -------
    tables : dict
        ``{"optics": DataFrame, "micrographs": DataFrame}``, RELION's columns, each row's
        ``rlnMicrographName`` an absolute path; defocus columns where the table has a CTF.
    skipped : list of dict
        The rows ``permissive`` left out: ``{"path", "reason"}``.
    project : Path or None
        The cryoSPARC project folder the names are relative to (None: all absolute).

    Raises
    ------
    InvalidMicrographError
        Naming the file: not a ``.cs`` table, a particles one, no micrograph paths, no rows,
        some micrographs with a defocus and some without, micrographs not found (every
        missing one counted; a link whose target is gone named so), or a name that is two
        different files in two folders the names could be relative to.

    Warns
    -----
    StarFileWarning
        An optics value that some rows have and others lack (0 or missing): used for none.
    """
    table = _table(path)
    if _PATH not in table.dtype.names and _particles(table.dtype.names):
        raise _fail(path, "a particles .cs file (blob/path or location/*: one row per particle), "
                    "not an exposures one", _GIVE)
    table = _joined(path, table) if len(table) else table
    fields = set(table.dtype.names)
    if _PATH not in fields and "movie_blob/path" in fields:
        raise _fail(path, "a movies .cs file (movie_blob/path, and no micrograph_blob/path in it or "
                    "in a .cs file beside it: movies not motion-corrected yet, as an Import Movies "
                    "job's)", "run Patch Motion Correction in "
                    "cryoSPARC and give its micrographs' .cs file (or a Patch CTF Estimation's "
                    "exposures after it)")
    if _PATH not in fields:
        raise _fail(path, f"a .cs file without {_PATH} (fields {', '.join(sorted(fields)[:6])} …), "
                    "nor a .cs file beside it that gives it for its rows (cryoSPARC keeps the "
                    "micrographs' paths of a CTF estimation in its Jn_passthrough_exposures*.cs), "
                    "not an exposures one", _GIVE)
    if len(table) == 0:
        raise _fail(path, "lists no micrographs (no rows)", _GIVE)
    names = [_text(v) for v in table[_PATH]]
    blank = {i for i, n in enumerate(names) if not n.strip()}  # a row of no micrograph
    if len(blank) == len(names):
        raise _fail(path, f"none of its {len(names)} rows names a micrograph ({_PATH} empty)", _GIVE)
    relative = [n for i, n in enumerate(names) if i not in blank and not Path(n).is_absolute()]
    project = _project(path, relative) if relative else None
    files = [Path(n) if Path(n).is_absolute() else project / n for n in names]
    missing = [i for i, f in enumerate(files) if i in blank or not f.exists()]
    if missing and not permissive:
        first = files[missing[0]]
        link = f", a link to {os.readlink(first)}, which is not there" if first.is_symlink() else ""
        shown = f"{_PATH} empty" if missing[0] in blank else f"{first}{link}"
        raise _fail(path, f"{len(missing)} of its {len(files)} micrographs are not found "
                    f"(row {missing[0] + 1}: {shown})",
                    "restore them, or pass --permissive to leave them out")
    from cryostream.io.stack import MicrographSkippedWarning  # stack reads this module

    skipped = []
    for i in missing:
        if i in blank:  # no file to name: the row is the entry
            shown, reason = f"{path}, row {i + 1}", f"{path}: row {i + 1} names no micrograph ({_PATH} empty)"
            said = reason
        else:
            shown, reason = str(files[i]), f"{path}: row {i + 1}'s micrograph is not found"
            said = f"{shown}: {reason}"
        warnings.warn(f"skipping {said}", MicrographSkippedWarning, stacklevel=4)
        skipped.append({"path": shown, "reason": reason})
    keep = np.ones(len(files), dtype=bool)
    keep[missing] = False
    table = table[keep]
    rows = pd.DataFrame({"rlnMicrographName": [str(f) for f, k in zip(files, keep, strict=True)
                                               if k]})
    optics, rows["rlnOpticsGroup"] = _optics(path, table)
    _defocus(path, table, rows)
    return {"optics": optics, "micrographs": rows}, skipped, project
