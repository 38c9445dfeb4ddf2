"""Particles picked on denoised micrographs, pointed at the original micrographs for RELION's
Extract (``cryostream picks-to-originals``).

A RELION 4/5 picking job run on ``denoised_micrographs.star`` names the denoised micrographs
in its coordinates STAR file (``AutoPick/job011/autopick.star``: ``rlnMicrographName`` and
``rlnMicrographCoordinates``). Extract pairs the micrographs of its input STAR file (the
CtfFind job's ``micrographs_ctf.star``, on the originals) with coordinate files by that name,
as written: with the denoised names it finds no particles. :func:`picks_to_originals` writes a
copy of the coordinates STAR file whose ``rlnMicrographName`` are the originals' names, every
other byte as it was. Each denoised micrograph's original is the input its record
``NAME.json`` names (written by ``cryostream denoise`` beside ``NAME.mrc``); with the
originals' STAR file, the name is the one that file gives it, and a micrograph whose record is
gone is matched by its file name."""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

from cryostream.errors import ConfigError, InvalidMicrographError

__all__ = ["PicksResult", "CoordinateFilesWarning", "picks_to_originals"]

_EVEN = "rlnMicrographNameEven"


class CoordinateFilesWarning(UserWarning):
    """Coordinate files the coordinates STAR file names are not there: Extract finds no
    particles for those micrographs."""


@dataclasses.dataclass(frozen=True)
class PicksResult:
    """What :func:`picks_to_originals` wrote.

    Attributes
    ----------
    output : Path
        The coordinates STAR file written.
    micrographs : int
        The rows it lists, each naming an original micrograph.
    left_out : list of str
        The names of the rows ``permissive`` left out (no original found), in row order.
    missing_coordinates : list of str
        Coordinate files the rows name that are not there (Extract finds no particles for
        those micrographs).
    already_written : bool
        ``output`` already held, byte for byte, what it would be written with (the same
        command run again): it was left as it was, not written.
    """

    output: Path
    micrographs: int
    left_out: list
    missing_coordinates: list
    already_written: bool = False


def picks_to_originals(coordinates: str | os.PathLike, output: str | os.PathLike, *,
                       originals: str | os.PathLike | None = None, overwrite: bool = False,
                       permissive: bool = False) -> PicksResult:
    """Write a copy of a RELION 4/5 coordinates STAR file whose micrograph names are the
    originals' of the denoised micrographs it names, for Extract (``--coord_list``) with the
    originals' micrographs STAR file.

    Each row's ``rlnMicrographName`` is resolved against the RELION project folder (the
    originals' STAR file's, where given; else the working directory, or the folder of
    ``coordinates`` or up to three above it, where the first row's file is). Its original is
    the ``input`` of the record ``NAME.json`` beside the denoised ``NAME.mrc``: named as
    ``originals`` names it (the row whose micrograph, or even half, is that file), or without
    ``originals`` relative to the project folder. With ``originals``, a row that already
    names one of its micrographs is kept, and one without a record (or whose recorded input is
    gone, the project moved) is matched by its file name, where one micrograph of
    ``originals`` has it (outputs of ``--suffix`` need their records). Every other value,
    table and line is written as it was.

    Parameters
    ----------
    coordinates : path-like
        The picking job's coordinates STAR file (``AutoPick/jobNNN/autopick.star``,
        ``ManualPick/jobNNN/manualpick.star``).
    output : path-like
        The STAR file to write (through a temporary name and a rename).
    originals : path-like, optional
        The originals' micrographs STAR file that Extract is given (the CtfFind job's
        ``micrographs_ctf.star``): the names written are its names. Needed where the records
        cannot say the name: outputs of even/odd halves, inputs outside the project folder.
    overwrite : bool
        Replace ``output`` where it exists (never ``coordinates`` or ``originals``). One that
        already holds, byte for byte, what would be written is left as it is, ``overwrite`` or
        not (:attr:`PicksResult.already_written`).
    permissive : bool
        Leave out rows whose original is not found, with a
        :class:`~cryostream.io.stack.MicrographSkippedWarning` naming them, instead of
        refusing.

    Raises
    ------
    InvalidMicrographError
        ``coordinates`` is not a RELION 4/5 coordinates STAR file (RELION 3's coordinate
        files are not supported), ``originals`` cannot be read or lists denoised micrographs,
        a row's original is not found (every such row named with why; unless ``permissive``
        leaves another row), or two rows stand for one original.
    ConfigError
        ``output`` is ``coordinates`` or ``originals``, or exists with other contents than
        it would be written with and ``overwrite`` is not given; nothing is written.
    """
    from cryostream.io.coordinate_star import read_coordinate_list, renamed_text
    from cryostream.io.paths import holds_text, output_file, same_file, write_whole

    table = read_coordinate_list(coordinates)
    out = Path(output)
    for given, what in ((coordinates, "the coordinates STAR file"),
                        (originals, "the originals' STAR file")):
        if given is not None and (same_file(out, Path(given)) or out.absolute() == Path(
                given).absolute()):
            raise ConfigError(f"-o {out}: would replace {what} {given}, which is never "
                              "written; give another name, e.g. -o "
                              f"{out.with_name(out.stem + '_originals.star')}")
    output_file(out, "-o", "coords_originals.star")
    star = _read_originals(originals) if originals is not None else None
    project = star.project if star is not None else _project(table)
    known = _Originals.of(star) if star is not None else None
    names, why = {}, {}
    for k, name in enumerate(table.names):
        found, reason = _original(name, project, known)
        if found is not None:
            names[k] = found
        else:
            why[k] = reason
    _refuse_twice(table, names)
    if why and (not permissive or not names):
        rows = [f"row {k + 1} ({table.names[k]}): {reason}" for k, reason in why.items()]
        more = f"; and {len(rows) - 5} more" if len(rows) > 5 else ""
        fix = ("give the originals' micrographs STAR file that Extract reads (--originals "
               "CtfFind/jobNNN/micrographs_ctf.star)" if star is None else
               "correct the rows, or give the STAR file that lists their originals")
        raise InvalidMicrographError(
            table.path, f"{len(why)} of the {len(table.names)} micrographs it names cannot be "
            f"pointed at an original micrograph ({'; '.join(rows[:5])}{more})",
            fix + ("" if permissive else "; or pass --permissive to leave those rows out"))
    left_out = [table.names[k] for k in why]
    if left_out:
        from cryostream.io.stack import MicrographSkippedWarning

        warnings.warn(f"{table.path}: {len(left_out)} of the {len(table.names)} micrographs' "
                      f"picks are left out, no original found ({', '.join(left_out[:5])}"
                      f"{', …' if len(left_out) > 5 else ''}): "
                      + "; ".join(f"{table.names[k]}: {r}" for k, r in list(why.items())[:3]),
                      MicrographSkippedWarning, stacklevel=2)
    missing = [c for k, c in enumerate(table.coordinates)
               if k in names and not (project / c).exists()]
    if missing:
        warnings.warn(f"{table.path}: {len(missing)} of the coordinate files it lists are not "
                      f"there ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}): "
                      "Extract finds no particles for those micrographs",
                      CoordinateFilesWarning, stacklevel=2)
    text = renamed_text(table, {**names, **dict.fromkeys(why)})
    if holds_text(out, text):  # the same command run again: the file kept as it is
        return PicksResult(out, len(names), left_out, missing, already_written=True)
    if out.exists() and not overwrite:
        raise ConfigError(f"-o {out}: exists, and differs from what these picks write (other "
                          "picks, or other names); pass --overwrite (Python: overwrite=True) "
                          "to replace it, or give another name")
    write_whole(out, text)
    return PicksResult(out, len(names), left_out, missing)


#: What ``--originals`` takes, said where it is given another file.
_ORIGINALS_FIX = ("give --originals the micrographs STAR file the micrographs were denoised from, "
                  "the one Extract reads (CtfFind/jobNNN/micrographs_ctf.star, or "
                  "MotionCorr/jobNNN/corrected_micrographs.star)")


def _read_originals(originals):
    """The originals' STAR file as :func:`~cryostream.io.star.read_star` reads it, its errors
    naming ``--originals``; refused where it is no micrographs STAR file (a particles STAR
    file, one without a micrographs table) or lists outputs of ``cryostream denoise``
    (``denoised_micrographs.star`` given in its place), saying which file to give."""
    from cryostream.denoise.outputs import made_by_denoise
    from cryostream.errors import NotMicrographListError
    from cryostream.io.star import read_star

    given = f"--originals {originals}"
    try:
        star = read_star(originals)
    except NotMicrographListError as exc:
        raise InvalidMicrographError(given, exc.problem, _ORIGINALS_FIX) from None
    except InvalidMicrographError as exc:  # its rows: the file is the right one, to correct
        raise InvalidMicrographError(given if exc.path == str(Path(originals)) else exc.path,
                                     exc.problem, exc.fix) from None
    denoised = next((m for m in star.micrographs if made_by_denoise(m.path)), None)
    if denoised is not None:
        raise InvalidMicrographError(given, f"lists denoised micrographs ({denoised.name} was "
                                     "written by cryostream denoise), not the originals",
                                     _ORIGINALS_FIX)
    return star


def _project(table) -> Path:
    """The RELION project folder of a coordinates STAR file's names, found as
    :func:`~cryostream.io.star.read_star` finds a micrographs STAR file's: the working
    directory, else the file's folder or one of the three above it, where the first name
    found is; the working directory where none is."""
    from cryostream.io.star_rows import first_folder

    bases = list(dict.fromkeys([Path.cwd(), table.path.parent.absolute(),
                                *list(table.path.parent.resolve().parents)[:3]]))
    return first_folder(table.names, bases) or Path.cwd()


@dataclasses.dataclass(frozen=True)
class _Originals:
    """The originals' STAR file as read, with its names by file (each micrograph's, and its
    even half's where the file lists the halves), by file name (``NAME.mrc``: every original
    of that name) and all of them."""

    star: object
    by_file: dict
    by_name: dict
    names: frozenset

    @classmethod
    def of(cls, star) -> _Originals:
        by_file, by_name = {}, {}
        halves = star.table[_EVEN] if _EVEN in star.table.columns else None
        for m in star.micrographs:
            by_file.setdefault(os.path.realpath(m.path), m.name)
            by_name.setdefault(Path(m.name).name, []).append(m.name)
            if halves is not None and str(halves.iloc[m.row]).strip():
                even = Path(str(halves.iloc[m.row]))
                by_file.setdefault(os.path.realpath(even if even.is_absolute() else
                                                    star.project / even), m.name)
        return cls(star, by_file, by_name, frozenset(m.name for m in star.micrographs))

    def moved(self, source: str) -> str | None:
        """The one original whose name, as the STAR file writes it, ends the recorded input
        ``source``: the same micrograph in the project where it was denoised, since copied or
        moved (``/old/project/MotionCorr/job002/Movies/a.mrc`` for
        ``MotionCorr/job002/Movies/a.mrc``); None where none or several do."""
        tail = Path(source).as_posix()
        found = [n for n in self.names if not os.path.isabs(n)
                 and tail.endswith("/" + Path(n).as_posix())]
        return found[0] if len(found) == 1 else None

    def named(self, file_name: str, there: str) -> tuple[str | None, str]:
        """The one original named ``file_name``, or None and why not (``there``: why the
        record did not say)."""
        found = self.by_name.get(file_name, [])
        if len(found) == 1:
            return found[0], ""
        if found:
            return None, (f"{there}, and {len(found)} micrographs of {self.star.path} are named "
                          f"{file_name} ({', '.join(found[:3])})")
        return None, f"{there}, and no micrograph of {self.star.path} is named {file_name}"


def _original(name: str, project: Path, originals: _Originals | None) -> tuple[str | None, str]:
    """The name the output gives the micrograph ``name`` of a coordinates STAR file, or None
    and why none is found."""
    from cryostream.denoise.outputs import read_record

    if originals is not None and name in originals.names:  # already an original's name
        return name, ""
    denoised = Path(name) if Path(name).is_absolute() else project / name
    sidecar = denoised.with_suffix(".json")
    record = read_record(sidecar) if sidecar.is_file() else None
    made = isinstance(record, dict) and record.get("kind") == "DenoiseOutput" \
        and isinstance(record.get("input"), str)
    if not made:
        there = (f"no such file in the RELION project folder {project}" if not denoised.exists()
                 else f"no {sidecar.name} record beside it (not an output of cryostream "
                 "denoise, or its record was removed)" if not sidecar.is_file()
                 else f"its record {sidecar.name} is damaged (cut short or edited: not a record "
                 "of cryostream denoise naming its input); denoise its original again into "
                 f"{denoised.parent.name} to write it whole")
        if originals is None:
            return None, there + "; --originals matches it by its file name"
        same = originals.by_file.get(os.path.realpath(denoised)) if denoised.exists() else None
        return (same, "") if same else originals.named(Path(name).name, there)
    source = record.get("input")
    recorded = f"its input {source} (recorded in {sidecar.name})"
    if originals is not None:
        found = originals.by_file.get(os.path.realpath(source)) if os.path.exists(source) \
            else None
        found = found or originals.moved(source)
        if found or os.path.exists(source):
            return (found, "") if found else (None, f"{recorded} is not listed in "
                                              f"{originals.star.path}")
        return originals.named(Path(source).name, f"{recorded} is not there")
    if (record.get("given") or {}).get("odd"):
        return None, (f"made from even/odd halves ({sidecar.name}): the micrograph they stand "
                      "for is named by the originals' STAR file; give it with --originals")
    from cryostream.denoise.star_out import star_name

    written = star_name(source, project) if os.path.exists(source) else None
    if written is None or os.path.isabs(written):
        moved = _moved_into(project, source, record)
        if moved is not None:
            return star_name(moved, project), ""
        return None, (f"{recorded} is not there (the project moved?)" if written is None else
                      f"{recorded} is outside the RELION project folder {project}")
    return written, ""


def _moved_into(project: Path, source: str, record: dict) -> Path | None:
    """The file of the project folder that the recorded input ``source`` is, where the project
    was copied or moved since it was denoised: the longest end of ``source`` of a folder and a
    name or more (``MotionCorr/job002/Movies/a.mrc`` of ``/old/project/MotionCorr/…``) that is
    a file there, of the size the record gives; None where none is."""
    parts = Path(source).parts[1:]
    stamps = record.get("input_files")
    size = stamps[0].get("bytes") if isinstance(stamps, list) and stamps \
        and isinstance(stamps[0], dict) else None
    for k in range(len(parts) - 1):
        there = project.joinpath(*parts[k:])
        if there.is_file() and (size is None or there.stat().st_size == size):
            return there
    return None


def _refuse_twice(table, names: dict) -> None:
    """Refuse two rows that stand for one original: Extract would read one of their
    coordinate files only."""
    first: dict[str, int] = {}
    for k, name in names.items():
        if name in first:
            j = first[name]
            raise InvalidMicrographError(
                table.path, f"rows {j + 1} ({table.names[j]}) and {k + 1} ({table.names[k]}) "
                f"both stand for {name}: Extract would read one of their coordinate files "
                f"only ({table.coordinates[j]} or {table.coordinates[k]})",
                "remove the row of the micrograph picked twice, or join its coordinates")
        first[name] = k
