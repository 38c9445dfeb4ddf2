"""A project moved or copied since its outputs were made (``mv``, ``cp -a``, ``rsync -a``): the
paths an output's record ``NAME.json`` gives for its input, odd half and model are those of
before, and are taken as the ones given now where the two end alike (the same file name, and
the same folders after the point where they differ) and evidence says they are one file: the
input's stamps (size and time of modification, kept by such a copy; where the times are whole
seconds, as an archive unpacked leaves them, with the digest of the files' ends too), the
model's state (an ``.npz``'s digest, a run folder's last checkpoint and its time), or the
output itself having moved with them (its folder changed as theirs did: exact where the record
names the output's own path, :func:`placed`; a guess from the folders for older records). A
copy that did not keep the times is then the same input changed since, made again; a
micrograph of the same name elsewhere is no such evidence, and stays another input."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path, PurePath

__all__ = ["same_model_place", "same_input_place", "inputs_by_name", "input_now", "placed",
           "ends_digest", "ends_differ"]

#: How much of each end of an input file :func:`ends_digest` reads: 1 MiB (about 5 ms warm,
#: 10-20 ms from disk, for a 7420 × 7676 float32 micrograph of 228 MB).
ENDS_BYTES = 1 << 20


def placed(record: dict, plan) -> dict:
    """``record`` as it is written beside its output (``plan``: its
    :class:`~cryostream.denoise.outputs.OutputPlan`): with the output's own absolute path
    (``output``) and its output folder (``output_folder``), which say later for certain
    whether the output moved with its input (:func:`_moved_with`), and the digest of the ends
    of each input file, the micrograph's and its odd half's (``input_ends_sha256``,
    :func:`ends_digest`), which tells apart files of one name, size and time to the second
    (unpacked from one archive) where those stamps alone would decide."""
    path = Path(os.path.abspath(plan.path))
    odd = (record.get("given") or {}).get("odd")
    return {**record, "output": str(path),
            "output_folder": str(path.parents[plan.name.count("/")]),  # GridA/x: above GridA
            "input_ends_sha256": [ends_digest(f) for f in [record.get("input"), odd] if f]}


def ends_digest(path) -> str | None:
    """The SHA-256 (16 hex digits) of a file's size and its first and last :data:`ENDS_BYTES`
    (the whole file where it is shorter), read once per size and time of modification; None
    where the file cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return _ends_digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _ends_digest(path: str, size: int, modified_ns: int) -> str | None:
    """:func:`ends_digest` of the file ``path`` of that size and time."""
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    try:
        with open(path, "rb") as file:
            digest.update(file.read(ENDS_BYTES))
            if size > ENDS_BYTES:
                file.seek(max(ENDS_BYTES, size - ENDS_BYTES))
                digest.update(file.read(ENDS_BYTES))
    except OSError:
        return None
    return digest.hexdigest()[:16]


def _leads(old, new) -> tuple[tuple, tuple] | None:
    """The leading folders of the paths ``old`` (as recorded) and ``new`` (as given now) before
    the end they share (at least the file name); None where their names differ or either is
    no path."""
    if not (isinstance(old, str) and isinstance(new, str)):
        return None
    a, b = PurePath(old).parts, PurePath(os.path.abspath(new)).parts
    k = 0
    while k < min(len(a), len(b)) and a[-1 - k] == b[-1 - k]:
        k += 1
    return (a[:len(a) - k], b[:len(b) - k]) if k else None


def _alike(old, new, evidence: Callable[[], bool], output, recorded=None) -> bool:
    """Whether the recorded path ``old`` is the path ``new`` now: equal, or ending alike
    (:func:`_leads`) where ``evidence`` (asked only then) says they are one file, or where the
    output moved with it (:func:`_moved_with`; ``recorded``: the output's path its record
    gives)."""
    if old == new:
        return True
    leads = _leads(old, new)
    if leads is None:
        return False
    return evidence() or _moved_with(old, leads, output, recorded)


def _moved_with(old: str, leads: tuple[tuple, tuple], output, recorded=None) -> bool:
    """Whether the output (``output``: its path now) moved with the file recorded as ``old``
    (``leads``: :func:`_leads`): it lies inside the leading folders of the path now, at the
    place under them where it lay under those of ``old`` (``recorded``: its path as its record
    gives it, exact; None for a record made before records gave it: guessed, and not where the
    folders now are the root alone), and the file is no longer where it was (moved away), or a
    copy of the output is where it was (the same record at its old place: copied, the original
    left). An output that lay there all along (by its record, or made of a file of the same
    name elsewhere that is still there) did not: that file is another input. Its path is taken
    as given and as its real one (an input's is real, a model's and the output's as given: a
    project reached through a symbolic link), the recorded one likewise."""
    if output is None:
        return False
    return any(_moved_from(old, leads, Path(now), recorded)
               for now in dict.fromkeys((os.path.abspath(output), os.path.realpath(output))))


def _moved_from(old: str, leads: tuple[tuple, tuple], output: Path, recorded) -> bool:
    """:func:`_moved_with` for the output's absolute path ``output``, one way of writing it."""
    old_lead, new_lead = leads
    parts = output.parts
    if parts[:len(new_lead)] != new_lead:
        return False
    before = Path(*old_lead, *parts[len(new_lead):])
    if isinstance(recorded, str):  # the record says where the output was: there, and here now
        if before.parts == parts or before.parts not in {
                PurePath(recorded).parts, PurePath(os.path.realpath(recorded)).parts}:
            return False
    elif len(new_lead) <= 1:
        return False
    if not os.path.lexists(old):
        return True
    try:
        return before.with_suffix(".json").read_bytes() == output.with_suffix(".json").read_bytes()
    except (OSError, ValueError):
        return False


def _stamped(stamps) -> bool:
    """Whether the stamps ``input_files`` of a record say something: each file's time."""
    return (isinstance(stamps, list) and bool(stamps)
            and all(isinstance(s, dict) and s.get("modified_ns") is not None for s in stamps))


def _same_ends(digests, stamps: list, files: list) -> bool:
    """Whether the files ``files`` (given now) whose stamps are ``stamps`` (equal to those an
    output's record gives) are the files of that record by their ends' digests ``digests``
    (its ``input_ends_sha256``, :func:`ends_digest`): asked only of files whose times are whole
    seconds (an archive unpacked, a file system of coarse times), where files of one name and
    size may share them; a record without digests, or a file unreadable, is left to the
    stamps."""
    if not (isinstance(digests, list) and len(digests) == len(stamps) == len(files)):
        return True
    return all(not isinstance(s.get("modified_ns"), int) or s["modified_ns"] % 10**9
               or recorded is None or (now := ends_digest(file)) is None or now == recorded
               for s, recorded, file in zip(stamps, digests, files, strict=True))


def ends_differ(found: dict, record: dict, *, paths_differ: bool = False) -> bool:
    """Whether this call's input files (``record``'s input and odd half) are other files than
    those an output's record ``found`` was made of, though in other places with the same
    stamps (``input_files``): by their ends' digests (:func:`_same_ends`), asked only where
    the paths differ (``paths_differ``: known to) and those stamps are the same whole seconds
    (one archive's files). Whatever else says the output moved with them (:func:`_moved_with`:
    a copy of the output where it was), such an output is not this input's."""
    stamps = found.get("input_files")
    if not (paths_differ or found.get("input") != record.get("input")) or not (
            _stamped(stamps) and stamps == record.get("input_files")):
        return False
    given = record.get("given")
    odd = given.get("odd") if isinstance(given, dict) else None
    return not _same_ends(found.get("input_ends_sha256"), stamps,
                          [record.get("input"), *[odd] * bool(odd)])


def _evidence(state) -> bool:
    """Whether a model's state ``model_files`` tells one model from another: an ``.npz``'s
    digest, or a run folder's last checkpoint with its time."""
    return isinstance(state, dict) and (bool(state.get("sha256")) or (
        state.get("checkpoint") is not None and state.get("modified_ns") is not None))


def same_model_place(found: dict, record: dict, output=None) -> bool:
    """Whether the model ``found`` (an output's record) names is the one ``record`` (this
    call's) names: the same path, or one ending alike (a run folder's or file's name) with the
    same state (:func:`_evidence`), or one moved with the output (``output``: its path now).
    A shipped model (its path inside the installed package, ``cryostream/data/NAME.npz``) is
    the same in another installation (a new environment): whether it is the same state is
    then for the caller to compare."""
    old, new = found.get("run"), record.get("run")
    state = found.get("model_files")

    def evidence() -> bool:
        return _evidence(state) and state == record.get("model_files")

    if _alike(old, new, evidence, output, found.get("output")):
        return True
    from cryostream.denoise.network import SHIPPED, model_path

    leads = _leads(old, new)
    shipped = {model_path(name) for name in SHIPPED}
    return (leads is not None and new in shipped
            and PurePath(old).parts[-3:] == PurePath(new).parts[-3:])


def same_input_place(found: dict, record: dict, output=None, *, given: bool = True) -> bool:
    """Whether the input ``found`` (an output's record) names is the one ``record`` (this
    call's) names, with what came with it (``given``: the same values, the odd half's path
    alike too): the same paths, or paths ending alike where the stamps of the files
    (``input_files``; and their ends' digests where those give times to the second alone,
    :func:`_same_ends`) are the same, or where the output (``output``: its path now) moved
    with them."""
    old, new = found.get("given"), record.get("given")

    def evidence() -> bool:
        stamps = found.get("input_files")
        return _stamped(stamps) and stamps == record.get("input_files") and not ends_differ(
            found, record, paths_differ=True)

    recorded = found.get("output")
    if not _alike(found.get("input"), record.get("input"), evidence, output, recorded):
        return False
    if not given:
        return True
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return old == new
    return (old.keys() == new.keys()
            and all(old[k] == new[k] for k in old if k != "odd")
            and ("odd" not in old or _alike(old["odd"], new["odd"], evidence, output, recorded)))


def inputs_by_name(paths) -> dict[str, list[str]]:
    """The paths ``paths`` (inputs as given now) by their file name, for :func:`input_now`."""
    named: dict[str, list[str]] = {}
    for path in paths:
        named.setdefault(PurePath(path).name, []).append(str(path))
    return named


def input_now(made_from: str, record: dict, named: dict[str, list[str]], output=None) -> str:
    """The input as given now (``named``: :func:`inputs_by_name`) that an earlier output's
    record names as ``made_from``, where the project moved since: the one of its name whose
    stamps (and ends, :func:`_same_ends`) are those of the record, or that moved with the
    output (``output``: its path now); ``made_from`` itself where no other, or several, are."""
    from cryostream.denoise.outputs import input_stamps

    stamps = record.get("input_files")
    first = stamps[:1] if _stamped(stamps) else None
    digests = record.get("input_ends_sha256")
    digests = digests[:1] if isinstance(digests, list) else None

    def found(path: str) -> bool:
        def evidence() -> bool:
            return (first is not None and input_stamps(path) == first
                    and _same_ends(digests, first, [path]))

        return _alike(made_from, path, evidence, output, record.get("output"))

    now = {p for p in named.get(PurePath(made_from).name, []) if p != made_from and found(p)}
    return now.pop() if len(now) == 1 else made_from
