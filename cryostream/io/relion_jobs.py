"""RELION's job folders, for an output folder given inside a RELION project: the job a folder
is (or is inside), its kind and whether it finished, and the warning that an output folder is
another job's (RELION owns what is in it: cleaning the job up, deleting it or running it again
takes the files with it).

A job folder (``Project/MotionCorr/job002/``) holds ``job.star`` (``run.job`` before RELION
3.1) with the job's kind (``_rlnJobTypeLabel relion.motioncorr.own``, RELION 3.1's
``_rlnJobType 1``), ``note.txt`` and ``run.out``, and, once it has ended,
``RELION_JOB_EXIT_SUCCESS`` (or ``_FAILURE``, ``_ABORTED``); the project folder above it
holds ``default_pipeline.star``. A new External job made for cryostream holds the first few
and no outputs yet: it is no other job's.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

__all__ = ["RelionJob", "RelionJobWarning", "relion_job", "warn_other_job", "job_output",
           "listed_outputs"]

#: Files only a RELION job folder holds.
_JOB_FILES = ("job.star", "run.job", "RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE",
              "RELION_JOB_EXIT_ABORTED")
#: RELION 3.1's number of the External job kind (later versions: ``relion.external``).
_EXTERNAL = 99
#: Where an External job lists its outputs for RELION's pipeline.
_OUTPUT_NODES = "RELION_OUTPUT_NODES.star"
#: What a job's outputs are (RELION's nodes: STAR files and images), and the STAR files of
#: RELION's own bookkeeping among them, which are none.
_OUTPUT_SUFFIXES = (".star", ".mrc", ".mrcs")
_BOOKKEEPING = ("job.star", "job_pipeline.star", "default_pipeline.star")


class RelionJobWarning(UserWarning):
    """The output folder is, or is inside, another RELION job's folder."""


@dataclasses.dataclass(frozen=True)
class RelionJob:
    """A RELION job folder: ``folder``, its ``name`` (``MotionCorr/job002``, relative to the
    project folder where one is found), its ``kind`` (``job.star``'s label; for RELION 3.1's
    number or RELION 3.0's ``run.job``, the kind its folder is named by, ``MotionCorr``; None
    where unknown), whether it is an External job (one that runs another program, as
    cryostream is run) and whether it ``finished`` (``RELION_JOB_EXIT_SUCCESS``)."""

    folder: Path
    name: str
    kind: str | None
    external: bool
    finished: bool


def relion_job(folder: str | Path) -> RelionJob | None:
    """The RELION job folder that ``folder`` is, or is inside (its parent or the one above),
    below the project folder (the one holding ``default_pipeline.star``); None for any other
    folder, one that does not exist yet included."""
    folder = Path(folder).absolute()
    for here in (folder, folder.parent, folder.parent.parent):
        if (here / "default_pipeline.star").is_file():  # the project folder: no job above it
            return None
        if any((here / name).is_file() for name in _JOB_FILES):
            project = next((p for p in here.parents if (p / "default_pipeline.star").is_file()),
                           None)
            kind, external = _kind(here)
            return RelionJob(here, str(here.relative_to(project)) if project else str(here), kind,
                             external, (here / "RELION_JOB_EXIT_SUCCESS").is_file())
    return None


def _kind(folder: Path) -> tuple[str | None, bool]:
    """A job's kind as its ``job.star`` says it (RELION 3.0's ``run.job``: ``job_type == 1``),
    and whether it is an External job (an unknown kind is taken for one)."""
    text = _read(folder / "job.star")
    if found := re.search(r"^\s*_rlnJobTypeLabel\s+(\S+)", text, flags=re.M):
        return found[1], found[1].startswith("relion.external")
    if found := re.search(r"^\s*_rlnJobType\s+(-?\d+)", text, flags=re.M) or re.search(
            r"^\s*job_type\s*==\s*(-?\d+)", _read(folder / "run.job"), flags=re.M):
        return folder.parent.name, int(found[1]) == _EXTERNAL  # the kind its folder is named by
    return None, True


def _read(path: Path) -> str:
    """The text of ``path``; empty where it cannot be read."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def warn_other_job(output: str | Path, own: tuple[str, ...], stacklevel: int = 2,
                   made_here: Callable[[Path], bool] | None = None) -> None:
    """One :class:`RelionJobWarning` where ``output`` is, or is inside, the folder of another
    RELION job: one of another kind than External (MotionCorr, CtfFind…: never a folder for
    another program's outputs), or one that finished (``RELION_JOB_EXIT_SUCCESS``) without
    the files ``own`` that a finished call of this command leaves there (a job that ran it and
    is being run again, to resume or add to it, is this command's own, whether it wrote them in
    the job's folder or in a folder inside it, as ``output`` is; so is one whose
    ``RELION_OUTPUT_NODES.star`` lists only such files, as ``cryostream-relion`` leaves it).
    Such a job is said to have outputs of its own where its folder shows one, named
    (:func:`job_output`; ``made_here``: whether an MRC file is this command's). A new External
    job's folder, which RELION made for the command to write into, is no other job's; nor is
    any folder outside a RELION job."""
    job = relion_job(output)
    if job is None or (job.external and not job.finished) or (job.external and (
            _holds_own(Path(output).absolute(), job.folder, own) or _lists_own(job.folder, own))):
        return
    found = job_output(job.folder, own, made_here) if job.external else None
    what = ("an External job that finished (RELION_JOB_EXIT_SUCCESS)" + (
        f" with outputs of its own: {found}" if found else "") if job.external else
        f"a {job.kind} job{', finished' if job.finished else ''}")
    where = "" if job.folder == Path(output).absolute() else "inside "
    warnings.warn(
        f"{output}: {where}the folder of the RELION job {job.name} ({what}): the denoised micrographs go in "
        "among that job's files, which RELION takes for the job's own (cleaning the job up, "
        "deleting it or running it again takes them too) and its pipeline does not list as "
        "outputs; denoising goes on, but give the outputs a folder of their own: a new "
        "External job's, or -o DIR outside the job folders (Python: output=DIR)",
        RelionJobWarning, stacklevel=stacklevel + 1)


def job_output(job_folder: Path, own: tuple[str, ...] = (),
               made_here: Callable[[Path], bool] | None = None) -> str | None:
    """An output of the job's own in ``job_folder`` or a folder inside it, named relative to
    it: its ``RELION_OUTPUT_NODES.star`` (where an External job lists its outputs), else the
    first STAR or MRC file that is neither RELION's bookkeeping (``job.star``…), one of the
    files ``own`` nor an MRC file ``made_here`` says this command wrote; None where there is
    none (hidden files and folders are not looked in)."""
    if (job_folder / _OUTPUT_NODES).is_file():
        return _OUTPUT_NODES
    for here, folders, files in os.walk(job_folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(_OUTPUT_SUFFIXES) or \
                    name in _BOOKKEEPING or name in own:
                continue
            path = Path(here) / name
            if made_here is not None and not name.endswith(".star"):
                with warnings.catch_warnings():  # (a damaged header: not this command's)
                    warnings.simplefilter("ignore")
                    if made_here(path):
                        continue
            return str(path.relative_to(job_folder))
    return None


def listed_outputs(job_folder: Path) -> list[str]:
    """The outputs an External job's ``RELION_OUTPUT_NODES.star`` lists (none without one)."""
    return [line.split()[0] for line in _read(job_folder / _OUTPUT_NODES).splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "_", "data_", "loop_"))]


def _lists_own(job_folder: Path, own: tuple[str, ...]) -> bool:
    """Whether the job's ``RELION_OUTPUT_NODES.star`` lists outputs and only files ``own``
    (the nodes an External job running this command lists: its own, not another program's)."""
    nodes = listed_outputs(job_folder)
    return bool(nodes) and all(Path(node).name in own for node in nodes)


def _holds_own(output: Path, job_folder: Path, own: tuple[str, ...]) -> bool:
    """Whether one of the files ``own`` is in ``output``, in ``job_folder`` (which holds it) or
    in a folder between the two."""
    folders = [p for p in (output, *output.parents) if p == job_folder or job_folder in p.parents]
    return any((folder / name).exists() for folder in folders for name in own)
