"""A project moved or copied since its outputs were made (``mv``, ``cp -a``, ``rsync -a``): the
paths an output's record ``NAME.json`` gives for its input, odd half and model are those of
before, and are taken as the ones given now where the two end alike (the same file name, and
the same folders after the point where they differ) and evidence says they are one file: the
input's stamps (size and time of modification, kept by such a copy; where the times are whole
seconds, as an archive unpacked leaves them, with the digest of the files' ends too), the
model's state (an ``.npz``'s digest, a run folder's last checkpoint and its checksum or time), or the
output itself having moved with them (its folder changed as theirs did: exact where the record
names the output's own path, :func:`placed`; a guess from the folders for older records). A
copy that did not keep the times is then the same input changed since, made again; a
micrograph of the same name elsewhere is no such evidence, and stays another input.

A copy onto a file system that keeps whole seconds alone (Lustre, some NFS; or any copy that
cuts the times) leaves each time truncated to its second: :func:`same_stamps` and
:func:`same_model_state` take such stamps as the same where the files' content says so (the
input's ends' digest, a checkpoint's checksum), so that nothing is made again for it."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path, PurePath

__all__ = ["same_model_place", "same_input_place", "inputs_by_name", "input_now", "placed",
           "ends_digest", "ends_differ", "same_stamps", "same_model_state", "same_files",
           "changed_since"]

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
    return not _same_ends(found.get("input_ends_sha256"), stamps, _files(record))


def _files(record: dict) -> list:
    """The input files a record names: its input, and its odd half where it has one."""
    given = record.get("given")
    odd = given.get("odd") if isinstance(given, dict) else None
    return [record.get("input"), *[odd] * bool(odd)]


def _to_second(recorded, now) -> bool:
    """Whether the time ``now`` (ns) is the time ``recorded`` (ns), or that time cut to a whole
    second (truncated or rounded), as a copy onto a file system of whole seconds leaves it."""
    if not (isinstance(recorded, int) and isinstance(now, int)):
        return False
    second = 10**9
    return recorded == now or (now % second == 0 and now in (
        recorded - recorded % second, (recorded + second // 2) // second * second))


def _coarse(recorded, now) -> bool:
    """Whether the stamp ``now`` (``{"bytes", "modified_ns"}``) is ``recorded`` with its time
    cut to a whole second (:func:`_to_second`), its size the same."""
    return (isinstance(recorded, dict) and isinstance(now, dict)
            and {**recorded, "modified_ns": 0} == {**now, "modified_ns": 0}
            and _to_second(recorded.get("modified_ns"), now.get("modified_ns")))


def same_stamps(found: dict, record: dict, files: list | None = None) -> bool:
    """Whether the input files' stamps (``input_files``) of an output's record ``found`` and
    of this call's ``record`` are one file's each: equal, or where a stamp now differs by its
    time alone, cut to a whole second (a copy with its times onto a file system of whole
    seconds: Lustre, some NFS), where the digest of the file's ends now (``files``: the paths
    now, by default ``record``'s input and odd half; :func:`ends_digest`) is the one ``found``
    gives (``input_ends_sha256``). A record without that digest (written before it was) is
    left to the stamps alone: changed."""
    stamps, now = found.get("input_files"), record.get("input_files")
    if stamps == now:
        return True
    files = _files(record) if files is None else files
    digests = found.get("input_ends_sha256")
    if not (_stamped(stamps) and isinstance(now, list) and isinstance(digests, list)
            and len(stamps) == len(now) == len(digests) == len(files)):
        return False
    return all(s == n or (_coarse(s, n) and isinstance(d, str) and ends_digest(f) == d)
               for s, n, d, f in zip(stamps, now, digests, files, strict=True))


def same_model_state(found, now) -> bool:
    """Whether a model's state ``found`` (an output's record's ``model_files``) is its state
    ``now`` (:func:`~cryostream.denoise.network.model_state`): equal, or a run folder's same
    last checkpoint (its step) with the same checksum of its parameters (``params_sha256``,
    saved with it: whatever its time, copied with or without it), or, where either state has no
    checksum (a record written before states gave it), the same time or that time cut to a
    whole second (:func:`_to_second`). An ``.npz``'s state is its content's digest: equal or
    not."""
    if found == now:
        return True
    if not (isinstance(found, dict) and isinstance(now, dict)) or found.get("sha256") \
            or found.get("checkpoint") is None or found.get("checkpoint") != now.get("checkpoint"):
        return False
    ours, theirs = found.get("params_sha256"), now.get("params_sha256")
    if ours and theirs:
        return ours == theirs
    return _to_second(found.get("modified_ns"), now.get("modified_ns"))


def same_files(found: dict, record: dict) -> bool:
    """Whether the files an output's record ``found`` was made of, its input's
    (:func:`same_stamps`, and not another file of the same stamps: :func:`ends_differ`) and
    its model's (:func:`same_model_state`), are this call's (``record``) as they are now; a
    record made before they were stamped (without ``input_files``, ``model_files``) is taken
    as made of them."""
    return not ends_differ(found, record) and ("input_files" not in found or same_stamps(found, record)) and (
        "model_files" not in found or same_model_state(found["model_files"],
                                                       record.get("model_files")))


def changed_since(found: dict, record: dict) -> str:
    """What changed since an output was made (``found``: its record; ``record``: this call's),
    in words for the note that makes it again: the input's size or time, or its ends alone
    (:func:`same_stamps`, :func:`ends_differ`: its size and time, to the second, the same), the
    run's last checkpoint or the model file."""
    said = []
    stamps, now = found.get("input_files"), record.get("input_files")
    if "input_files" in found and not same_stamps(found, record):
        alike = (isinstance(stamps, list) and isinstance(now, list) and len(stamps) == len(now)
                 and isinstance(found.get("input_ends_sha256"), list)  # the digest decided
                 and all(s == n or _coarse(s, n) for s, n in zip(stamps, now, strict=True)))
        said.append("the input's first or last MiB, its size and time to the second the same"
                    if alike else "the input's size or time of modification")
    elif ends_differ(found, record):
        said.append("the input's first or last MiB: another file of the same name, size and "
                    "time to the second")
    state = found.get("model_files")
    if "model_files" in found and not same_model_state(state, record.get("model_files")):
        said.append("the run's last checkpoint" if isinstance(state, dict) and "checkpoint" in state
                    else "the model file")
    return "; ".join(said) or "a file's size or time of modification"


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
        return _evidence(state) and same_model_state(state, record.get("model_files"))

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
        return _stamped(stamps) and same_stamps(found, record) and not ends_differ(
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
    stamps (:func:`same_stamps`; and ends, :func:`_same_ends`) are those of the record, or that moved with the
    output (``output``: its path now); ``made_from`` itself where no other, or several, are."""
    from cryostream.denoise.outputs import input_stamps

    stamps = record.get("input_files")
    first = stamps[:1] if _stamped(stamps) else None
    digests = record.get("input_ends_sha256")
    digests = digests[:1] if isinstance(digests, list) else None

    def found(path: str) -> bool:
        def evidence() -> bool:
            return (first is not None and same_stamps(
                {"input_files": first, "input_ends_sha256": digests},
                {"input_files": input_stamps(path)}, [path]) and _same_ends(digests, first, [path]))

        return _alike(made_from, path, evidence, output, record.get("output"))

    now = {p for p in named.get(PurePath(made_from).name, []) if p != made_from and found(p)}
    return now.pop() if len(now) == 1 else made_from
