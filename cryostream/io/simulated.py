"""Whether ``cryostream simulate`` finished a simulated set: its ``simulate.json`` is written
last, and its ``simulate.unfinished`` first, removed once ``simulate.json`` is there. A set
that holds the second without the first was stopped short (Ctrl-C, a kill): ``prepare`` (and
``fit``) and ``evaluate --truth`` refuse it, so that no store, training or score is made of part
of the set taken for the whole. Folders without the note (sets of earlier versions, which wrote
``simulate.json`` last too; micrographs of one's own) are taken as they are."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from cryostream.errors import InvalidMicrographError, StoreError
from cryostream.io.paths import write_whole

__all__ = ["FINISHED", "UNFINISHED", "SET_FOLDERS", "mark_unfinished", "mark_finished",
           "finished_request", "remove_left_over", "unfinished_set", "unfinished_request",
           "check_sets_finished"]

#: The set's config and the cryostream version, written once every file of the set is.
FINISHED = "simulate.json"
#: Written before the first micrograph, removed once :data:`FINISHED` is written.
UNFINISHED = "simulate.unfinished"
#: The folders of a simulated set that hold its images.
SET_FOLDERS = ("micrographs", "truth", "even", "odd")


def mark_unfinished(root: Path, count: int, config: dict | None = None) -> None:
    """Say in ``root`` that a simulation of ``count`` micrographs with ``config`` (the
    SimulateConfig as :func:`~cryostream.config.to_dict` gives it) is under way there."""
    write_whole(root / UNFINISHED, json.dumps({
        "kind": "UnfinishedSimulation", "count": count, "config": config,
        "note": "cryostream simulate has not finished this set: run the same command again"}) + "\n")


def unfinished_request(root: Path) -> dict | None:
    """What the simulation that left ``root``'s :data:`UNFINISHED` was asked for: a dict of its
    ``count`` and ``config`` (None where an earlier version wrote only the count); None where
    ``root`` holds no such note, or one ``simulate`` did not write."""
    try:
        note = json.loads((root / UNFINISHED).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(note, dict) or note.get("kind") != "UnfinishedSimulation" \
            or not isinstance(note.get("count"), int):
        return None
    return {"count": note["count"], "config": note.get("config")}


def finished_request(root: Path) -> dict | None:
    """What the simulation that finished ``root`` (its :data:`FINISHED`) was asked for: a dict
    of its ``count`` (where an earlier version did not record it, the micrographs in
    ``micrographs/``), ``config`` and ``version``, the cryostream version that made it (None
    where none is recorded); None where that file cannot be read as one."""
    try:
        done = json.loads((root / FINISHED).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(done, dict) or done.get("kind") != "SimulateConfig" \
            or not isinstance(done.get("config"), dict):
        return None
    count = done.get("count")
    if not isinstance(count, int):
        folder = root / "micrographs"
        count = sum(1 for p in folder.iterdir() if re.fullmatch(r"sim_\d{4,}\.mrc", p.name)) \
            if folder.is_dir() else 0
    version = done.get("cryostream_version")
    return {"count": count, "config": done["config"],
            "version": version if isinstance(version, str) else None}


def mark_finished(root: Path, config_json: str) -> None:
    """Write ``root``'s :data:`FINISHED` (``config_json``, the set's config), whole, then remove
    its :data:`UNFINISHED`: a kill between the two leaves a set that is finished."""
    write_whole(root / FINISHED, config_json)
    (root / UNFINISHED).unlink(missing_ok=True)


def remove_left_over(root: Path, removed: Iterable[Path], halves: Iterable[Path]) -> None:
    """Remove ``removed``, the files of an earlier set in ``root`` that the set ``simulate``
    has just made whole there has not (``simulate --overwrite``), and its ``even/`` and
    ``odd/`` folders once empty where that set has no ``halves``; a
    :class:`~cryostream.errors.StoreError` naming a file that cannot be removed and the fix."""
    for path in removed:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot remove it ({exc.strerror or exc}), a file of the "
                             "earlier set that this one does not have; remove it, then run the "
                             "same command again to finish the set") from None
    for folder in {root / "even", root / "odd"} - set(halves):  # halves no longer made
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def unfinished_set(root: Path) -> bool:
    """Whether ``root`` is a simulated set that ``simulate`` started and did not finish."""
    return (root / UNFINISHED).is_file() and not (root / FINISHED).is_file()


def check_sets_finished(paths: Iterable[str | os.PathLike], what: str = "") -> None:
    """Refuse ``paths`` (micrographs, their folders or STAR files, or a set's own folder) that
    belong to a simulated set ``simulate`` did not finish: one
    :class:`~cryostream.errors.InvalidMicrographError` naming the set, how much of it was
    written, and the fix (run the same ``simulate`` command again). ``what`` (``"truth="``)
    names the argument before the set's path."""
    roots: set[Path] = set()
    for item in paths:
        path = Path(item).absolute()
        roots.add(path)
        roots.add(path.parent)  # a set's image folder or STAR file
        if path.parent.name in SET_FOLDERS:  # a micrograph of the set
            roots.add(path.parent.parent)
    for root in sorted(roots):
        if unfinished_set(root):
            raise InvalidMicrographError(
                f"{what}{root}", f"cryostream simulate did not finish this set "
                f"({_written(root)}, no {FINISHED}; {UNFINISHED} says so), so it is only part "
                "of the set", "run the same cryostream simulate command again (Python: "
                "cryostream.simulate with the same arguments), which simulates the whole set "
                "into it (the same micrographs again for the same seed), then give it again")


def _written(root: Path) -> str:
    """How many of the set's micrographs are written, out of how many (its note's count; an
    earlier set's beyond it, which ``--overwrite`` removes once the set is whole, are none)."""
    try:
        count = json.loads((root / UNFINISHED).read_text())["count"]
    except (OSError, ValueError, KeyError, TypeError):
        count = None
    folder, limit = root / "micrographs", count if isinstance(count, int) else float("inf")
    done = sum(1 for p in folder.iterdir() if (m := re.fullmatch(r"sim_(\d{4,})\.mrc", p.name))
               and int(m[1]) < limit) if folder.is_dir() else 0
    return f"{done} of {count} micrographs written" if isinstance(count, int) else \
        f"{done} micrograph{'s' * (done != 1)} written"
