"""The STAR file ``denoise`` writes beside its outputs
(:data:`~cryostream.denoise.outputs.STAR_NAME`): its optics and micrographs tables, with every
file name in them written one way, as RELION reads them from its project folder (relative to
the input STAR file's project folder, or the working directory for other inputs, when the file
is inside it, absolute otherwise; absolute where the input STAR file names its micrographs by
absolute paths), and the warning class of the finished outputs in the folder that it does not
list (:mod:`~cryostream.denoise.star_unlisted` says them)."""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path

__all__ = ["ROW_OPTICS", "PATH_COLUMNS", "UnlistedOutputWarning", "star_name", "listing_project",
           "listing_version", "star_project", "joined_stars", "listing_name", "rebase_paths", "star_tables",
           "joined_columns", "same_value", "optics_merged"]

#: Per-row optics columns of STAR files without an optics table (RELION 3.0): in the output
#: they live in its optics table.
ROW_OPTICS = frozenset({"rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                        "rlnMicrographPixelSize", "rlnImagePixelSize", "rlnDetectorPixelSize",
                        "rlnMagnification", "rlnMicrographOriginalPixelSize"})

#: RELION's columns of file names in micrographs STAR files (either block). Any other column
#: whose every value names a file in the input STAR file's project folder is taken as one too.
PATH_COLUMNS = frozenset({"rlnMicrographName", "rlnMicrographNameEven", "rlnMicrographNameOdd",
                          "rlnMicrographNameNoDW", "rlnMicrographMovieName",
                          "rlnMicrographMetadata", "rlnMicrographGainName",
                          "rlnMicrographDefectFile", "rlnCtfImage", "rlnCtfPowerSpectrum",
                          "rlnMtfFileName"})

#: A name and RELION's type suffix, as in ``CtfFind/job003/a.ctf:mrc``.
_TYPED = re.compile(r"(.+?)(:[A-Za-z]\w*)?")

_GROUP, _GROUP_NAME = "rlnOpticsGroup", "rlnOpticsGroupName"


class UnlistedOutputWarning(UserWarning):
    """Finished outputs in the output folder that its STAR file does not list: denoised by
    another call, of other inputs, and not kept from the STAR file it replaced (that file kept
    as ``.bak`` where its rows could not join this call's)."""


def star_name(path: str | os.PathLike, project: str | os.PathLike | None = None,
              base: str | os.PathLike | None = None) -> str:
    """``path`` as the output's STAR file names it: relative to the ``project`` folder (the
    RELION project the input STAR file belongs to, which RELION reads the names from; default:
    the working directory) when the file is inside it, absolute otherwise, with ``/`` on every
    system. A relative ``path`` is taken relative to ``base`` (default: the working
    directory)."""
    root = Path(project if project is not None else Path.cwd()).absolute()
    full = Path(os.path.abspath(Path(base if base is not None else Path.cwd()) / path))
    for inside, folder in ((full, root), (full.resolve(), root.resolve())):
        if inside.is_relative_to(folder):
            name = inside.relative_to(folder).as_posix()
            # a value that starts as a STAR keyword would read as one (data_den/a.mrc ends
            # the loop, in RELION and starfile alike): ./data_den/a.mrc is the same file
            return f"./{name}" if name.startswith(("data_", "loop_", "save_", "global_",
                                                   "stop_", "_", "#")) else name
    return full.as_posix()


def listing_project(gathered) -> Path | None:
    """The one folder every file name of the STAR file written for ``gathered``
    (:class:`~cryostream.denoise.sources.DenoiseInputs`) is relative to, ``rlnMicrographName``
    and the columns carried over (``rlnCtfImage``, the halves …) alike: the input STAR file's
    project folder (where :func:`~cryostream.io.star.read_star` found its relative names),
    whatever the working directory of the call, since RELION resolves every name against the
    folder it runs in, its project; the working directory for other inputs. None where the
    input STAR file names every micrograph by an absolute path (it has no project folder of
    its own, and RELION reads such names from wherever it runs): the names written are
    absolute too. A cryoSPARC ``.cs`` file's names are relative to its project folder, which
    is used. For micrographs of several STAR files with optics tables (:func:`joined_stars`),
    the folder they share, or None (absolute names) where they do not share one."""
    if gathered.star is not None:
        return star_project(gathered.star)
    if stars := joined_stars(gathered):
        projects = {star_project(s) for s in stars}
        return projects.pop() if len(projects) == 1 else None
    return Path.cwd()


def listing_version(gathered) -> int:
    """The number of the ``# version`` lines of the STAR file written for ``gathered``: the
    highest its input STAR files have (50001 for a RELION 5 project's, whose jobs write it so),
    RELION 3.1's 30001 where none has one (MRC files, a cryoSPARC ``.cs`` file, RELION 3.0's
    files), the form the tables are written in."""
    from cryostream.io.star_write import RELION_31_VERSION, star_version

    stars = {s.path for s in [gathered.star, *gathered.listed.values()] if s is not None}
    found = [v for p in stars if p.suffix.lower() != ".cs" and (v := star_version(p)) is not None]
    return max([RELION_31_VERSION, *found])


def joined_stars(gathered) -> list:
    """The STAR files of ``gathered``'s micrographs where there are several and each with an
    optics table, every micrograph listed in one (their rows and optics are joined in the STAR
    file written: :func:`star_tables`); else an empty list."""
    listed = [gathered.listed.get(m.source) for m in gathered.micrographs]
    if gathered.star is not None or not listed or not all(
            s is not None and s.optics_table is not None for s in listed):
        return []
    return list({id(s): s for s in listed}.values())


def star_project(star) -> Path | None:
    """The folder the names of the STAR file written for the micrographs of ``star`` (a
    :class:`~cryostream.io.star.MicrographStar`) are relative to (:func:`listing_project`)."""
    if star.path.suffix.lower() == ".cs":  # its rows are made absolute: the cryoSPARC project's
        return star.project
    if star.micrographs and all(os.path.isabs(m.name) for m in star.micrographs):
        return None
    return star.project


def listing_name(path: str | os.PathLike, project: Path | None) -> str:
    """``path`` as :func:`star_name` names it for the ``project`` of :func:`listing_project`;
    absolute where that is None."""
    if project is None:
        return Path(os.path.abspath(path)).as_posix()
    return star_name(path, project)


def _rebased(value, project: Path | None, base: Path | None):
    """A carried STAR value naming a file relative to ``base`` (the folder the STAR file it
    came from resolves names against), named as :func:`listing_name` says (a type suffix such
    as ``:mrc`` kept); other values, and relative names where ``base`` is None, as they are."""
    if not isinstance(value, str) or not value.strip():
        return value
    name, typed = _TYPED.fullmatch(value).groups()
    if base is None and not os.path.isabs(name):
        return value
    full = Path(os.path.abspath(Path(base or Path.cwd()) / name))
    return listing_name(full, project) + (typed or "")


def rebase_paths(table, project: Path | None, base: Path | None = None):
    """``table`` (a copy) with the file names of its path columns (:data:`PATH_COLUMNS`, and
    any other column whose every value names a file in ``base``), read relative to ``base``
    (default: ``project``; None: relative names are left as they are), named by
    :func:`listing_name` for ``project``."""
    from pandas.api.types import is_string_dtype

    base = base if base is not None else project

    def names_files(column) -> bool:
        values = table[column]  # strings: object under pandas 2, str under pandas 3
        return base is not None and is_string_dtype(values.dtype) and len(values) > 0 and all(
            isinstance(v, str) and v.strip() and (base / _TYPED.fullmatch(v).group(1)).is_file()
            for v in values)

    table = table.copy()
    for column in table.columns:
        if column in PATH_COLUMNS or (column != "rlnOpticsGroupName" and names_files(column)):
            table[column] = [_rebased(v, project, base) for v in table[column]]
    return table


#: The optics table's columns and the keys of the values each micrograph was denoised with.
_USED_OPTICS = {"rlnVoltage": "voltage_kv", "rlnSphericalAberration": "cs_mm",
                "rlnAmplitudeContrast": "amplitude_contrast"}


def star_tables(gathered, outputs: dict[str, str]):
    """The optics and micrographs blocks of the output's STAR file, as pandas.DataFrames, for
    the micrographs ``gathered`` (:class:`~cryostream.denoise.sources.DenoiseInputs`).

    ``outputs`` maps each denoised micrograph's source to its output file (those skipped are
    left out). From one STAR file: its optics table as it was (with the voltage, Cs or amplitude
    contrast it lacked, as the CTF fit took them from an option or its default), its rows with
    ``rlnMicrographName`` pointing at the outputs and every other column kept. From several
    STAR files with optics tables: their rows and optics groups joined (:func:`joined_columns`
    says which columns only some of them have, which are left out). Otherwise: one
    optics group per pixel size and optics, and ``rlnMicrographName``, ``rlnOpticsGroup`` (and
    the defocus where known), and from a STAR file without an optics table (RELION 3.0) its
    other columns but the per-row optics (:data:`ROW_OPTICS`). Every file name, the outputs'
    and those carried over (:data:`PATH_COLUMNS`, resolved against the input STAR file's
    project folder), is named by :func:`listing_name`: relative to the project folder (the
    input STAR file's; the working directory for other inputs) when the file is inside it,
    absolute otherwise. Where the input STAR file names its micrographs by absolute paths (no
    project folder: :func:`listing_project`), the outputs are named by absolute paths too and
    the carried names are kept as they are (absolute ones normalised).
    """
    import pandas as pd

    kept = [m for m in gathered.micrographs if m.source in outputs]
    star = gathered.star
    project = listing_project(gathered)
    if star is not None and star.optics_table is not None:
        return _one_star(star, kept, outputs, project)
    if kept and joined_stars(gathered):
        return _joined(gathered, kept, outputs, project)
    groups: dict[tuple, int] = {}
    for m in kept:
        groups.setdefault((m.pixel_size_angstrom, m.optics["voltage_kv"], m.optics["cs_mm"],
                           m.optics["amplitude_contrast"]), len(groups) + 1)
    optics = pd.DataFrame([{"rlnOpticsGroupName": f"opticsGroup{n}", "rlnOpticsGroup": n,
                            "rlnMicrographOriginalPixelSize": ps, "rlnVoltage": kv,
                            "rlnSphericalAberration": cs, "rlnAmplitudeContrast": ac,
                            "rlnMicrographPixelSize": ps}
                           for (ps, kv, cs, ac), n in groups.items()])
    rows = pd.DataFrame({
        "rlnMicrographName": [listing_name(outputs[m.source], project) for m in kept],
        "rlnOpticsGroup": [groups[(m.pixel_size_angstrom, m.optics["voltage_kv"],
                                   m.optics["cs_mm"], m.optics["amplitude_contrast"])]
                           for m in kept]})
    if kept and all(m.defocus is not None for m in kept):
        rows["rlnDefocusU"] = [m.defocus.defocus_u_angstrom for m in kept]
        rows["rlnDefocusV"] = [m.defocus.defocus_v_angstrom for m in kept]
        rows["rlnDefocusAngle"] = [m.defocus.angle_deg for m in kept]
    if star is not None and kept:  # a STAR file without an optics table: its other columns too
        carried = rebase_paths(star.table.iloc[[m.star_row for m in kept]].reset_index(drop=True),
                               project)
        for column in carried.columns:
            if column not in rows.columns and column not in ROW_OPTICS:
                rows[column] = carried[column].to_numpy()
    return optics, rows


def _one_star(star, kept: list, outputs: dict[str, str], project: Path | None,
              base: Path | None = None):
    """The optics table and rows of one STAR file with an optics table, for its micrographs
    ``kept``: its own, names rebased (read against ``base``, default ``project``), with
    ``rlnMicrographName`` pointing at the outputs."""
    rows = rebase_paths(star.table.iloc[[m.star_row for m in kept]], project, base)
    rows["rlnMicrographName"] = [listing_name(outputs[m.source], project) for m in kept]
    optics = rebase_paths(star.optics_table, project, base)
    given = {m.pixel_size_angstrom for m in kept if m.pixel_size_from == "argument"}
    if given:  # --pixel-size corrects the file: the outputs' headers and optics agree
        optics["rlnMicrographPixelSize"] = given.pop()
    for column, key in _USED_OPTICS.items():  # one the file lacks: what the CTF fit used
        used = {m.optics[key] for m in kept}
        if column not in optics.columns and len(used) == 1:
            optics[column] = used.pop()
    if "rlnMicrographPixelSize" not in optics.columns and _GROUP in optics.columns:
        # the headers' pixel size of each group's micrographs, which RELION's jobs read here
        sizes: dict[str, set] = {}
        for m, group in zip(kept, rows.get(_GROUP, [optics[_GROUP].iloc[0]] * len(kept)),
                            strict=True):
            sizes.setdefault(str(group), set()).add(m.pixel_size_angstrom)
        each = [sizes.get(str(g), set()) for g in optics[_GROUP]]
        if all(len(s) == 1 for s in each):
            optics["rlnMicrographPixelSize"] = [s.pop() for s in each]
    return optics, rows.reset_index(drop=True)


def joined_columns(stars: list) -> list[str]:
    """The columns of the STAR files ``stars`` (their micrographs and optics blocks) that not
    every one of them has: the STAR file written for their micrographs together leaves them
    out, since RELION reads no empty value (the optics values the CTF fit used are added where
    a file lacks them, so they are not among these)."""
    lost: dict[str, None] = {}
    for block in ("table", "optics_table"):
        tables = [getattr(s, block) for s in stars]
        shared = set.intersection(*(set(tb.columns) for tb in tables))
        lost.update(dict.fromkeys(c for tb in tables for c in tb.columns
                                  if c not in shared and c not in (*_USED_OPTICS, _GROUP)))
    return list(lost)


def _joined(gathered, kept: list, outputs: dict[str, str], project: Path | None):
    """One optics table and one micrographs block for micrographs of several STAR files with
    optics tables: each file's own (:func:`_one_star`), their columns that every file has
    (:func:`joined_columns`), the first file's optics groups as they are and the others merged
    in by :func:`optics_merged` (a group of the same values and name is one; others take the
    next number, renamed ``opticsGroupN`` where a name is taken); the rows in the order of
    ``kept``. Names are as :func:`listing_project` says (``project``)."""
    import pandas as pd

    stars = list({id(gathered.listed[m.source]): gathered.listed[m.source] for m in kept}.values())
    mine = [[i for i, m in enumerate(kept) if gathered.listed[m.source] is s] for s in stars]
    parts = [_one_star(s, [kept[i] for i in each], outputs, project, star_project(s) or s.project)
             for s, each in zip(stars, mine, strict=True)]
    for optics, part in parts:  # rows without the column: the file's one optics group
        if _GROUP not in part.columns:
            part[_GROUP] = optics[_GROUP].iloc[0]
    optics_columns = [c for c in parts[0][0].columns if all(c in o.columns for o, _ in parts)]
    row_columns = [c for c in parts[0][1].columns if all(c in r.columns for _, r in parts)]
    table, rows = parts[0][0][optics_columns], []
    for optics, part in parts:  # the first file's groups as they are, the others merged in
        table, numbers_of = optics_merged(optics[optics_columns], table, list(optics[_GROUP]))
        part = part[row_columns].copy()
        part[_GROUP] = [numbers_of[g] for g in part[_GROUP]]
        rows.append(part)
    joined = pd.concat(rows, ignore_index=True)  # back in the order of kept
    joined = joined.iloc[sorted(range(len(joined)), key=[i for each in mine for i in each].__getitem__)]
    return table.reset_index(drop=True), joined.reset_index(drop=True)


def same_value(a, b) -> bool:
    """Two STAR values alike: numbers to the precision the file holds, others as text."""
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
    return str(a) == str(b)


def optics_merged(earlier, optics, used):
    """This call's optics table with the earlier groups ``used`` by the rows kept, and the map
    from their earlier numbers to those of the table: a group of the same values and name is
    the same group (AFIS groups differ by their names alone); one this table lacks is added
    with the next free number, renamed where its name is taken. A ValueError where the tables'
    columns differ or a group used is not in ``earlier``."""
    import pandas as pd

    if set(earlier.columns) != set(optics.columns):
        raise ValueError("other optics columns")
    table, numbers_of = optics.copy(), {}
    for number in used:
        found = earlier[earlier[_GROUP] == number] if _GROUP in earlier.columns else earlier
        if found.empty:
            raise ValueError(f"its optics group {number} is not in its data_optics")
        row = found.iloc[0]
        values = [c for c in table.columns if c != _GROUP]
        same = [i for i in range(len(table)) if all(same_value(row[c], table[c].iloc[i]) for c in values)]
        exact = [i for i in same if _GROUP not in table or same_value(row[_GROUP], table[_GROUP].iloc[i])]
        if exact or same:
            numbers_of[number] = int(table[_GROUP].iloc[(exact or same)[0]])
            continue
        new = int(table[_GROUP].max()) + 1 if len(table) else 1
        added = {c: row[c] for c in table.columns} | {_GROUP: new}
        if _GROUP_NAME in table.columns:
            taken, k = {str(n) for n in table[_GROUP_NAME]}, new
            while str(added[_GROUP_NAME]) in taken:
                added[_GROUP_NAME], k = f"opticsGroup{k}", k + 1
        table = pd.concat([table, pd.DataFrame([added])], ignore_index=True)
        numbers_of[number] = new
    return table, numbers_of
