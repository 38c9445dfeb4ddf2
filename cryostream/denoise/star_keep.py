"""The output folder's STAR file written again by a later call (:func:`write_listing`): the
rows of the earlier one whose outputs are still in the folder and whose inputs this call did
not denoise are kept, in their order, beside this call's (a subset denoised again into a folder
loses none of the micrographs it listed); an earlier optics group this call's table lacks is
added (a group is its values and its name). Where the two cannot be one table (other columns,
optics tables of other columns, outputs of another model or other options, a file that cannot
be read or merged), the earlier file is kept beside it as ``denoised_micrographs.star.bak``.
An output made again moves the listing aside first (:func:`set_aside`), so that no STAR file
lists it as it was; its rows are merged from there. Each output is written with the folder
held (:func:`held_output`), so that one another call made meanwhile with other options is
kept."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from pathlib import Path, PurePosixPath

from cryostream.denoise.moved import input_now, inputs_by_name, same_model_place, same_model_state
from cryostream.denoise.outputs import (
    STAR_NAME,
    made_by_denoise,
    read_record,
    same_record,
    what_differs,
)
from cryostream.denoise.star_out import (
    listing_name,
    listing_project,
    listing_version,
    optics_merged,
    rebase_paths,
    star_tables,
)
from cryostream.denoise.star_unlisted import skipped_inputs
from cryostream.errors import OutputTakenError, StoreError
from cryostream.locks import folder_lock, store_lock
from cryostream.script_guard import rerun_refused

__all__ = ["write_listing", "set_aside", "held_output", "ASIDE_NAME"]

#: The folder's :data:`STAR_NAME` moved aside while an output it may list is made again: hidden,
#: and not a listing's name, so nothing takes it for one; merged from, then removed, when the
#: new listing is written.
ASIDE_NAME = f".{STAR_NAME}.aside"

_GROUP, _GROUP_NAME = "rlnOpticsGroup", "rlnOpticsGroupName"


class _Unkept(Exception):
    """The earlier STAR file's rows cannot join this call's: why (the message) and the outputs
    of the rows left out (None where the file could not be read)."""

    def __init__(self, why: str, left: list[Path] | None = None, text: bytes | None = None):
        super().__init__(why)
        self.left, self.text = left, text


def write_listing(star: Path, gathered, outputs: dict[str, str], paths: list[str],
                  rerun: str | None = None):
    """Write the STAR file ``star`` for the micrographs ``gathered`` (see
    :func:`~cryostream.denoise.star_out.star_tables`; ``outputs``: each denoised micrograph's
    source to its output, ``paths``: those outputs in the order of its rows), keeping the
    rows of the file it replaces (or of the one :func:`set_aside` moved aside) whose outputs
    are still in the folder, made with this call's model and options, and whose inputs are not
    this call's (one made of an input this call skipped, its micrograph missing now or bad, is
    left out: it cannot be used now), after the ``# version`` line of the input STAR files'
    (:func:`~cryostream.denoise.star_out.listing_version`). The folder is held
    (:func:`~cryostream.locks.folder_lock`) from the reading to the writing, so two calls into
    one folder each merge the other's rows. In a process pool's run of the script ``rerun``
    (:func:`~cryostream.script_guard.refuse_script_rerun`: its path) nothing is held or
    written: the file must hold what it would be written with already, else
    :func:`~cryostream.script_guard.rerun_refused`.

    Returns
    -------
    kept : list of Path
        The outputs of the earlier rows kept, for
        :func:`~cryostream.denoise.star_unlisted.warn_unlisted`.
    backup : tuple or None
        ``(the .bak file, why, outputs of the rows it alone lists)`` where the earlier file's
        rows could not be kept and it was kept beside as a ``.bak`` file instead.
    skipped : set of str
        The inputs this call skipped (:func:`~cryostream.denoise.star_unlisted.skipped_inputs`),
        whose earlier outputs :func:`~cryostream.denoise.star_unlisted.warn_unlisted` names.
    """
    from cryostream.io.star import write_micrograph_star

    star = Path(star)
    optics, rows = star_tables(gathered, outputs)
    kept, backup, skipped = [], None, skipped_inputs(gathered, outputs)
    with _held(star.parent) if rerun is None else contextlib.nullcontext():
        if rerun is None:
            _sweep(star)
        aside = star.with_name(ASIDE_NAME)
        # set_aside (another call remaking an output) does not wait for the folder: the listing
        # may move to the aside file at any moment; whichever is there is read, none is no file
        for earlier in (star, aside, star):
            try:
                merged = _merged(earlier, optics, rows, outputs, paths, listing_project(gathered),
                                 {k for m in gathered.micrographs for k in m.optics}, skipped)
            except FileNotFoundError:
                continue
            except _Unkept as exc:
                if rerun is not None:  # (its .bak: written)
                    raise rerun_refused(rerun, "denoise") from None
                backup = (_backup(exc.text, star), str(exc), exc.left)
            else:
                if merged is not None:
                    optics, rows, kept = merged
            break
        if rerun is not None:
            _found_again(star, optics, rows, listing_version(gathered), rerun)
        else:
            write_micrograph_star(star, optics, rows, listing_version(gathered))
            aside.unlink(missing_ok=True)
    if kept:
        from cryostream.io.relion_jobs import relion_job

        n, job = len(paths), relion_job(star.parent)
        finished = "" if job is None or not job.finished else (
            f"; {star.parent} is the RELION job {job.name}, which had finished "
            "(RELION_JOB_EXIT_SUCCESS): RELION took its outputs as they were, and this call "
            "changed them behind its back: denoise new micrographs as a new External job, or "
            "run this one again from RELION")
        logging.getLogger("cryostream").warning(
            "%s lists this call's %d micrograph%s and %d earlier row%s from outside this call's "
            "inputs (their outputs are in the folder); a folder of its own (-o) lists only the "
            "selection%s", star, n, "" if n == 1 else "s", len(kept), "" if len(kept) == 1 else
            "s", finished)
    return kept, backup, skipped


def _found_again(star: Path, optics, rows, version: int, rerun: str) -> None:
    """Nothing, where ``star`` holds these tables already and no listing is set aside (see
    :func:`write_listing`); else :func:`~cryostream.script_guard.rerun_refused`."""
    from cryostream.io.star_write import micrograph_star_text

    try:
        same = star.read_text() == micrograph_star_text(optics, rows, version)
    except OSError:
        same = False
    if not same or star.with_name(ASIDE_NAME).exists():
        raise rerun_refused(rerun, "denoise")


def set_aside(folder: Path, made: str) -> None:
    """Before the output ``made`` of ``folder`` is made again, move the folder's
    :data:`~cryostream.denoise.outputs.STAR_NAME`, which may list it as it was, to
    :data:`ASIDE_NAME`: no STAR file lists outputs of two recipes if the run stops early, and
    :func:`write_listing` merges the rows of the other outputs from there when all are
    denoised."""
    star = Path(folder) / STAR_NAME
    try:  # no is_file() first: another call may move or replace it meanwhile
        os.replace(star, star.with_name(ASIDE_NAME))
    except FileNotFoundError:
        return
    else:
        logging.getLogger("cryostream").info(
            "%s: the earlier %s is set aside as %s, as an output it may list is made again (%s); "
            "a new one, keeping its other rows, is written when all are denoised (if this run "
            "stops first, running the same command again writes it)", folder, STAR_NAME,
            ASIDE_NAME, made)


def _sweep(star: Path, stale_s: float = 3600.0) -> None:
    """Remove the temporary files of writes of ``star`` killed midway
    (``.NAME.*.partial``, see :func:`~cryostream.io.star.write_micrograph_star`) older than
    ``stale_s``: no write lasts that long."""
    now = time.time()
    for partial in star.parent.glob(f".{star.name}.*.partial"):
        with contextlib.suppress(OSError):
            if now - partial.stat().st_mtime > stale_s:
                partial.unlink()


@contextlib.contextmanager
def held_output(plan, record: dict):
    """Hold the output of ``plan`` (an :class:`~cryostream.denoise.outputs.OutputPlan`; that
    file alone, by a lock file ``.NAME.mrc.lock`` beside it, so that the outputs of one call's
    workers are written at once) while it is written, of ``record``: where another call made
    that output meanwhile (its checks, before any computing, found none there, or one it may
    replace) with another model or other options, or wrote a file there that denoise did not
    make, it is kept unless the plan's ``overwrite``, and this micrograph fails with an
    :class:`~cryostream.errors.OutputTakenError` naming it and the fix (the others go on).
    One made again the same (the same run, input and options), or cut between its image and its
    record, is replaced. An output that cannot be locked is said at DEBUG level only."""
    with _held(plan.path, unlockable=logging.DEBUG, one_file=True):
        if plan.path.exists():
            found = read_record(plan.sidecar)
            ours = found is not None and same_record(  # its input's stamps and model aside
                {k: v for k, v in found.items() if k not in ("input_files", "model_files")},
                record, plan.path)
            made = found is not None or made_by_denoise(plan.path)
            cut = made and found is None and not plan.sidecar.exists()
            if not (ours or cut or (made and plan.overwrite)):
                # the fix in the problem too: the line naming several bad micrographs gives
                # their problems alone
                keep = ("--overwrite (Python: overwrite=True) replaces it" if made
                        else "never replaced: move it away")
                raise OutputTakenError(
                    plan.path, "made meanwhile by another call, not as this run's output for "
                    f"{plan.source} with these options{what_differs(found, record)}: not "
                    f"replaced ({keep})",
                    "or choose another output folder: -o DIR (Python: output=DIR)")
        yield


@contextlib.contextmanager
def _held(place: Path, wait_s: float = 120.0, unlockable: int = logging.INFO,
          one_file: bool = False):
    """Hold the folder ``place`` for the listing (``one_file``: the output file ``place``
    alone, so that the outputs of one call, written by its workers at once, do not wait on
    each other), waiting up to ``wait_s`` while another call holds it (for a moment: its own
    listing or that output; the wait outlasts an NFS lock's lease, that of a call killed on
    another host). A place that cannot be locked (a file system without ``flock``: Lustre
    without ``-o flock``, some NFS) is said at the level ``unlockable`` (an INFO note for the
    listing), not a warning on every run."""
    until = time.monotonic() + wait_s
    fix = "run the same command again when the other call has finished"
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(
                    store_lock(place, command="denoise", fix=fix, unlockable=unlockable)
                    if one_file else folder_lock(place, command="denoise", what="-o", fix=fix,
                                                 unlockable=unlockable))
                break
            except StoreError as exc:
                if "in use by" not in str(exc) or time.monotonic() > until:
                    raise
                time.sleep(0.2)
        yield


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


def _recipe(found: dict | None, mine: dict | None, optic_keys: set,
            output: Path | None = None) -> str | None:
    """What an earlier output's record ``found`` was made with that this call's ``mine`` was
    not (``"another model"``, ``"other options"``), by :func:`same_record` with the input and
    each micrograph's own optics (``optic_keys``) aside (``output``: its file); None where the
    recipe is the same."""
    if found is None or mine is None:
        return None
    config, theirs = mine.get("config"), found.get("config")
    if isinstance(config, dict) and isinstance(theirs, dict):
        config = config | {k: theirs[k] for k in optic_keys if k in theirs}
    like = mine | {"config": config} | {k: found.get(k) for k in ("input", "given", "input_files")}
    if same_record(found, like, output):
        return None
    if not same_model_place(found, mine, output):  # (a project moved since: the same)
        return "another model"
    if "model_files" in found and not same_model_state(found["model_files"], mine.get("model_files")):
        return "an earlier checkpoint of this run"  # the same run folder, trained further since
    return "other options"


def _merged(star: Path, optics, rows, outputs: dict[str, str], paths: list[str],
            project: Path | None, optic_keys: set, skipped: set = frozenset()):
    """This call's tables with the earlier file's rows kept (see :func:`write_listing`; none
    made of an input this call ``skipped``), and those rows' outputs; None where no earlier row
    is to be kept. Any failure is an
    :class:`_Unkept` (the earlier file is kept as ``.bak``, never lost to a crash)."""
    folder = star.parent.absolute()
    try:
        text = star.read_bytes()
    except FileNotFoundError:  # moved aside (or removed) meanwhile: for the caller
        raise
    except OSError as exc:  # unreadable: not merged, and nothing to copy as .bak
        raise _Unkept(f"it could not be read ({exc.strerror or exc})") from None
    try:
        blocks = _read(text, star)
        earlier, earlier_optics = blocks["micrographs"], blocks["optics"]
        names = list(earlier["rlnMicrographName"])
        files = [_output_file(n, folder) for n in names]
    except Exception as exc:  # any file that is not such a listing: kept as a .bak
        raise _Unkept(f"it could not be read as a micrographs STAR file: {type(exc).__name__}: "
                      f"{exc}", text=text) from None
    now = {os.path.realpath(p): i for i, p in enumerate(paths)}
    by_input = {os.path.realpath(s): now[os.path.realpath(o)] for s, o in outputs.items()
                if os.path.realpath(o) in now}
    mine = next((r for p in paths if (r := read_record(Path(p).with_suffix(".json")))), None)
    order, keep, seen, placed, other = [], [], set(), set(), {}
    named = inputs_by_name([*outputs, *skipped])  # (a project moved since: its inputs as now)
    for j, file in enumerate(files):
        key = os.path.realpath(file) if file is not None else None
        record = read_record(file.with_suffix(".json")) if file is not None else None
        if key is None or key in seen or record is None:  # gone, named twice or unfinished
            continue
        seen.add(key)
        made_from = record.get("input")
        if isinstance(made_from, str) and key not in now:
            made_from = input_now(made_from, record, named, file)
        if isinstance(made_from, str) and os.path.realpath(made_from) in skipped:
            continue  # its micrograph missing now, or bad: said by warn_unlisted, not listed
        i = now.get(key, by_input.get(os.path.realpath(made_from)) if isinstance(made_from, str)
                    else None)
        if i is not None:  # its input denoised by this call: its new row, in this row's place
            if i not in placed:
                order.append(i)
                placed.add(i)
            continue
        if (why := _recipe(record, mine, optic_keys, file)) is not None:
            other.setdefault(why, []).append(file.name)
        order.append(len(rows) + len(keep))
        keep.append(j)
    if not keep:
        return None
    left = [files[j] for j in keep]
    try:
        return _joined(earlier, earlier_optics, names, left, keep, order, other, optics, rows,
                       paths, placed, project)
    except _Unkept as exc:
        raise _Unkept(str(exc), left, text) from None
    except Exception as exc:  # odd values (a group that is not a number …): kept as a .bak
        raise _Unkept(f"its rows could not be merged: {type(exc).__name__}: {exc}", left,
                      text) from None


def _joined(earlier, earlier_optics, names, left, keep, order, other, optics, rows, paths,
            placed, project):
    """The tables :func:`_merged` returns, from the rows it keeps; an :class:`_Unkept` where
    they cannot join this call's."""
    import pandas as pd

    if other:
        raise _Unkept("; ".join(f"{', '.join(files[:3])}{' …' if len(files) > 3 else ''} made "
                                f"with {why}" for why, files in other.items()))
    only_earlier = sorted(set(earlier.columns) - set(rows.columns))
    only_now = sorted(set(rows.columns) - set(earlier.columns))
    if only_earlier or only_now:
        raise _Unkept("other columns: " + "; ".join(
            f"{', '.join(cols)} only in {where}" for cols, where in
            ((only_earlier, "it"), (only_now, "this call's")) if cols))
    used = sorted({int(g) for g in earlier[_GROUP].iloc[keep]}) if _GROUP in earlier else []
    try:
        optics, numbers_of = optics_merged(earlier_optics, optics, used)
    except ValueError as exc:
        raise _Unkept(str(exc)) from None
    base = _earlier_project([names[j] for j in keep], left) or project
    old = rebase_paths(earlier.iloc[keep].reset_index(drop=True), project, base)
    old["rlnMicrographName"] = [listing_name(f, project) for f in left]
    if used:
        old[_GROUP] = [numbers_of[int(g)] for g in old[_GROUP]]
    order = order + [i for i in range(len(paths)) if i not in placed]
    table = pd.concat([rows, old[list(rows.columns)]], ignore_index=True)
    return optics, table.iloc[order].reset_index(drop=True), left


def _read(text: bytes, star: Path) -> dict:
    """The blocks of the STAR file ``star`` read as ``text`` (its bytes, read once: the file
    itself may be moved aside meanwhile), parsed from a private copy (starfile reads files)."""
    import tempfile

    import starfile

    fd, name = tempfile.mkstemp(prefix="cryostream-", suffix=".star")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        return starfile.read(name, always_dict=True)
    finally:
        os.unlink(name)


def _backup(text: bytes | None, star: Path) -> Path | None:
    """The earlier listing's bytes ``text`` (the listing, or the one set aside, as read) kept
    beside ``star`` as ``NAME.bak`` (``NAME.bak2`` … where an earlier one of other content is
    there); None where there is nothing to keep."""
    if text is None:
        return None
    for n in itertools.count(1):
        bak = star.with_name(f"{star.name}.bak{n if n > 1 else ''}")
        try:
            same = bak.read_bytes() == text
        except FileNotFoundError:
            same = True
        if same:
            bak.write_bytes(text)
            return bak
