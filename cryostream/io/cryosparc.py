"""cryoSPARC exposure files (``.cs``) read as the micrographs STAR file they stand for.

A cryoSPARC job writes its exposures (micrographs) as a ``.cs`` file: a NumPy table, one row
per micrograph, with the micrograph's path relative to the project folder
(``micrograph_blob/path``, e.g. ``J12/motioncorrected/..._patch_aligned_doseweighted.mrc``),
its pixel size (``micrograph_blob/psize_A``) and, after Patch CTF Estimation or CTFFIND, its
defocus and optics (``ctf/df1_A``, ``ctf/df2_A``, ``ctf/df_angle_rad``, ``ctf/accel_kv``,
``ctf/cs_mm``, ``ctf/amp_contrast``). :func:`star_tables` turns it into the two tables of a
RELION micrographs STAR file, names resolved, so that :func:`cryostream.io.star.read_star`
checks it as any STAR file and ``denoise`` writes the same ``denoised_micrographs.star``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cryostream.errors import InvalidMicrographError

__all__ = ["LIST_SUFFIXES", "is_micrograph_list", "star_tables"]

#: Files that list micrographs rather than hold one: RELION's STAR files, cryoSPARC's tables.
LIST_SUFFIXES = (".star", ".cs")

_PATH = "micrograph_blob/path"
_PIXEL = "micrograph_blob/psize_A"
#: RELION's optics columns and the cryoSPARC fields that give them, the first present used.
_OPTICS = {"rlnVoltage": ("ctf/accel_kv", "mscope_params/accel_kv"),
           "rlnSphericalAberration": ("ctf/cs_mm", "mscope_params/cs_mm"),
           "rlnAmplitudeContrast": ("ctf/amp_contrast",)}
_DEFOCUS = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad")
_EXAMPLE = "J5/J5_exposures_ctf_estimated.cs, or a Curate Exposures job's exposures_accepted.cs"


def is_micrograph_list(path: Path) -> bool:
    """Whether ``path`` is a file that lists micrographs (a STAR file or a cryoSPARC table)."""
    return path.suffix.lower() in LIST_SUFFIXES and path.is_file()


def _fail(path: Path, problem: str, fix: str) -> InvalidMicrographError:
    return InvalidMicrographError(path, problem, fix)


def _table(path: Path) -> np.ndarray:
    try:
        table = np.load(path, allow_pickle=False)
    except Exception as exc:  # not NumPy, cut short, or object fields (pickled)
        raise _fail(path, f"not a cryoSPARC .cs table NumPy can read ({exc})",
                    "give the .cs file cryoSPARC wrote in the job's folder, or export the "
                    "micrographs as a STAR file (or give their folder)") from None
    if not isinstance(table, np.ndarray) or table.dtype.names is None:
        raise _fail(path, "not a cryoSPARC .cs table (a NumPy array without named fields)",
                    "give the exposures .cs file of a cryoSPARC job")
    return table.reshape(-1)


def _numbers(values) -> np.ndarray:
    """Float32 fields as the decimals they were written as (``2.7``, not 2.700000047683716)."""
    return np.array([float(str(v)) for v in np.asarray(values).reshape(-1)], dtype=float)


def _text(value) -> str:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.lstrip(">")  # cryoSPARC marks some paths with a leading '>'


def _project(path: Path, first: str) -> Path:
    """The folder the table's names are relative to: cryoSPARC's project folder, which holds
    the job folder the ``.cs`` file is in (or, for an export, is further up)."""
    here = path.parent.absolute()
    tried = [here.parent, here, *here.parents[1:4], Path.cwd()]
    found = next((b for b in dict.fromkeys(tried) if (b / first).exists()), None)
    if found is None:
        shown = ", ".join(str(b) for b in dict.fromkeys(tried))
        raise _fail(path, f"row 1's micrograph {first} is in none of the folders it could be "
                    f"relative to ({shown})", "give the .cs file in its place in the cryoSPARC "
                    "project (its job folder), or run cryostream from the project folder")
    return found


def star_tables(path: Path, column: str = "rlnMicrographName",
                permissive: bool = False) -> tuple[dict, list[dict]]:
    """The ``.cs`` file at ``path`` as the tables of a RELION micrographs STAR file.

    Parameters
    ----------
    path : Path
        A cryoSPARC exposures ``.cs`` file.
    column : str
        The STAR column asked for; only ``rlnMicrographName`` is read from a ``.cs`` file
        (odd-frame sums are given as files).
    permissive : bool
        Leave out rows whose micrograph is missing, with a warning, instead of raising.

    Returns
    -------
    tables : dict
        ``{"optics": DataFrame, "micrographs": DataFrame}``, RELION's columns, each row's
        ``rlnMicrographName`` an absolute path; defocus columns where the table has a CTF.
    skipped : list of dict
        The rows ``permissive`` left out: ``{"path", "reason"}``.

    Raises
    ------
    InvalidMicrographError
        Naming the file: not a ``.cs`` table, a particles one, no micrograph paths, no rows,
        another column asked for, or micrographs not found (every missing one counted).
    """
    table = _table(path)
    fields = set(table.dtype.names)
    if _PATH not in fields:
        kind = ("a particles .cs file (blob/path: one row per particle)" if "blob/path" in fields
                else f"a .cs file without {_PATH} (fields {', '.join(sorted(fields)[:6])} …)")
        raise _fail(path, f"{kind}, not an exposures one", f"give the micrographs' .cs file "
                    f"(e.g. {_EXAMPLE})")
    if column != "rlnMicrographName":
        raise _fail(path, f"a cryoSPARC .cs file has no {column} column",
                    "give the odd-frame sums as files or a folder (--odd ODD...)")
    if len(table) == 0:
        raise _fail(path, "lists no micrographs (no rows)", f"give the .cs file of a job that "
                    f"kept micrographs (e.g. {_EXAMPLE})")
    names = [_text(v) for v in table[_PATH]]
    project = None if all(Path(n).is_absolute() for n in names) else _project(
        path, next(n for n in names if not Path(n).is_absolute()))
    files = [Path(n) if Path(n).is_absolute() else project / n for n in names]
    missing = [i for i, f in enumerate(files) if not f.exists()]
    skipped = []
    if missing and not permissive:
        raise _fail(path, f"{len(missing)} of the {len(files)} micrographs are not found "
                    f"(row {missing[0] + 1}: {files[missing[0]]})",
                    "restore them, or pass --permissive to leave them out")
    for i in missing:
        from cryostream.io.stack import MicrographSkippedWarning

        reason = f"{path}: row {i + 1}'s micrograph is not found"
        warnings.warn(f"skipping {files[i]}: {reason}", MicrographSkippedWarning, stacklevel=3)
        skipped.append({"path": str(files[i]), "reason": reason})
    keep = np.ones(len(files), dtype=bool)
    keep[missing] = False
    rows = pd.DataFrame({"rlnMicrographName": [str(f) for f, k in zip(files, keep, strict=True) if k]})
    optics = {c: next((table[f][keep] for f in cs if f in fields), None)
              for c, cs in _OPTICS.items()}
    optics["rlnMicrographPixelSize"] = table[_PIXEL][keep] if _PIXEL in fields else None
    given = {c: _numbers(v) for c, v in optics.items() if v is not None}
    keys = list(zip(*given.values(), strict=True)) if given else [()] * len(rows)
    groups = {k: i + 1 for i, k in enumerate(dict.fromkeys(keys))}
    rows["rlnOpticsGroup"] = [groups[k] for k in keys]
    optics_table = pd.DataFrame([{"rlnOpticsGroupName": f"opticsGroup{n}", "rlnOpticsGroup": n,
                                  **dict(zip(given, k, strict=True))} for k, n in groups.items()])
    if set(_DEFOCUS[:2]) <= fields:
        u, v = (_numbers(table[f][keep]) for f in _DEFOCUS[:2])
        if np.any(u != 0) or np.any(v != 0):  # all zero: the CTF was never estimated
            rows["rlnDefocusU"], rows["rlnDefocusV"] = u, v
            rows["rlnDefocusAngle"] = np.degrees(_numbers(table[_DEFOCUS[2]][keep])) \
                if _DEFOCUS[2] in fields else 0.0
    return {"optics": optics_table, "micrographs": rows}, skipped
