"""The STAR file ``denoise`` writes beside its outputs
(:data:`~cryostream.denoise.outputs.STAR_NAME`): its optics and micrographs tables, with every
file name in them written one way, as RELION reads them from its project folder (relative to
the input STAR file's project folder, or the working directory for other inputs, when the file
is inside it, absolute otherwise), and a warning for the finished outputs in the folder that it
does not list."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

__all__ = ["ROW_OPTICS", "PATH_COLUMNS", "UnlistedOutputWarning", "star_name", "star_tables",
           "warn_unlisted"]

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


class UnlistedOutputWarning(UserWarning):
    """Finished outputs in the output folder that its STAR file does not list: denoised by
    another call, of other inputs."""


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


def _rebased(value, project: Path):
    """A carried STAR value naming a file relative to the input's ``project`` folder, named
    as :func:`star_name` says (a type suffix such as ``:mrc`` kept); other values as they are."""
    if not isinstance(value, str) or not value.strip():
        return value
    name, typed = _TYPED.fullmatch(value).groups()
    return star_name(name, project, base=project) + (typed or "")


def _rebase_paths(table, project: Path):
    """``table`` (a copy) with the file names of its path columns (:data:`PATH_COLUMNS`, and
    any other column whose every value names a file in ``project``) named by
    :func:`star_name`."""
    def names_files(column) -> bool:
        values = table[column]
        return values.dtype == object and len(values) > 0 and all(
            isinstance(v, str) and v.strip() and (project / _TYPED.fullmatch(v).group(1)).is_file()
            for v in values)

    table = table.copy()
    for column in table.columns:
        if column in PATH_COLUMNS or (column != "rlnOpticsGroupName" and names_files(column)):
            table[column] = [_rebased(v, project) for v in table[column]]
    return table


def star_tables(gathered, outputs: dict[str, str]):
    """The optics and micrographs blocks of the output's STAR file, as pandas.DataFrames, for
    the micrographs ``gathered`` (:class:`~cryostream.denoise.sources.DenoiseInputs`).

    ``outputs`` maps each denoised micrograph's source to its output file (those skipped are
    left out). From one STAR file: its optics table as it was, its rows with
    ``rlnMicrographName`` pointing at the outputs and every other column kept. Otherwise: one
    optics group per pixel size and optics, and ``rlnMicrographName``, ``rlnOpticsGroup`` (and
    the defocus where known), and from a STAR file without an optics table (RELION 3.0) its
    other columns but the per-row optics (:data:`ROW_OPTICS`). Every file name, the outputs'
    and those carried over (:data:`PATH_COLUMNS`, resolved against the input STAR file's
    project folder), is named by :func:`star_name`: relative to the project folder (the input
    STAR file's; the working directory for other inputs) when the file is inside it, absolute
    otherwise.
    """
    import pandas as pd

    kept = [m for m in gathered.micrographs if m.source in outputs]
    star = gathered.star
    if star is not None and star.optics_table is not None:
        rows = _rebase_paths(star.table.iloc[[m.star_row for m in kept]], star.project)
        rows["rlnMicrographName"] = [star_name(outputs[m.source], star.project) for m in kept]
        optics = _rebase_paths(star.optics_table, star.project)
        given = {m.pixel_size_angstrom for m in kept if m.pixel_size_from == "argument"}
        if given:  # --pixel-size corrects the file: the outputs' headers and optics agree
            optics["rlnMicrographPixelSize"] = given.pop()
        return optics, rows.reset_index(drop=True)
    project = star.project if star is not None else Path.cwd()
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
        "rlnMicrographName": [star_name(outputs[m.source], project) for m in kept],
        "rlnOpticsGroup": [groups[(m.pixel_size_angstrom, m.optics["voltage_kv"],
                                   m.optics["cs_mm"], m.optics["amplitude_contrast"])]
                           for m in kept]})
    if kept and all(m.defocus is not None for m in kept):
        rows["rlnDefocusU"] = [m.defocus.defocus_u_angstrom for m in kept]
        rows["rlnDefocusV"] = [m.defocus.defocus_v_angstrom for m in kept]
        rows["rlnDefocusAngle"] = [m.defocus.angle_deg for m in kept]
    if star is not None and kept:  # a STAR file without an optics table: its other columns too
        carried = _rebase_paths(star.table.iloc[[m.star_row for m in kept]].reset_index(drop=True),
                                star.project)
        for column in carried.columns:
            if column not in rows.columns and column not in ROW_OPTICS:
                rows[column] = carried[column].to_numpy()
    return optics, rows


def warn_unlisted(star: Path, listed: list[str]) -> None:
    """One :class:`UnlistedOutputWarning` when the folder of the STAR file ``star``, which
    lists the outputs ``listed``, holds finished outputs it does not list (``NAME.mrc`` with
    its ``NAME.json`` record, made by an earlier call of other inputs): the STAR file, like
    RELION's, lists this call's micrographs, so that those left out of a selection stay out."""
    folder = Path(star).parent
    listed_files = {Path(p).resolve() for p in listed}
    left = []
    for sidecar in sorted(folder.glob("*.json")):
        image = sidecar.with_suffix(".mrc")
        if image.resolve() in listed_files or not image.is_file():
            continue
        try:
            kind = json.loads(sidecar.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            continue
        if kind == "DenoiseOutput":
            left.append(image.name)
    if not left:
        return
    n, one = len(listed), len(left) == 1
    shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
    warnings.warn(f"{star} lists only this call's {n} micrograph{'' if n == 1 else 's'}; "
                  f"{len(left)} earlier output{'' if one else 's'} in {folder} "
                  f"{'is' if one else 'are'} not listed ({shown}): give {'its' if one else 'their'}"
                  f" input{'' if one else 's'} again with these to list {'it' if one else 'them'}"
                  " too (finished outputs are kept, not made again)", UnlistedOutputWarning,
                  stacklevel=4)
