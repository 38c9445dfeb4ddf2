"""The micrographs of a folder: its ``.mrc`` files and one-section ``.mrcs`` files, with a note
on what is left out (gain references, movies, outputs of ``cryostream denoise``, even/odd
half-sums beside their full sums, other files) and one on even/odd half-sums without full sums,
which are kept as micrographs of their own; the half-sums beside their full sums that a glob
matches, or that are named one by one with them (a glob the shell expanded), are left out
alike."""

from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path

from cryostream.errors import InvalidMicrographError

__all__ = ["MOVIE_SUFFIXES", "folder_micrographs", "halves_left_out", "is_gain_reference", "is_glob",
           "named_halves_left_out", "note_lone_halves"]

#: Movies (frame stacks) that motion correction sums into micrographs: TIFF and EER frames,
#: and MRC stacks (``.mrcs``, as EPU and SerialEM can write frames; one of a single section is
#: a micrograph, as RELION can write one, and is not left out).
MOVIE_SUFFIXES = (".tif", ".tiff", ".eer", ".mrcs")
_MOTION_TOOLS = "MotionCor2 or RELION's own, for example"
#: How far below a folder without micrographs they are looked for (EPU's
#: ``Images-Disc1/GridSquare_N/Data/``; RELION's ``MotionCorr/jobNNN/Movies/``, below which
#: the movies' own folders are mirrored): levels down, folders listed and names read, so that
#: a huge tree does not stall the error.
_LEVELS, _FOLDERS, _NAMES = 6, 1000, 100_000


def folder_micrographs(folder: Path) -> list[Path]:
    """A folder's ``.mrc`` files and one-section ``.mrcs`` files (RELION writes a micrograph so
    at times; one of many sections is a movie's frames) in name order, with one note that
    counts the other files left out and names the first three, gain references (their names
    say so: :func:`is_gain_reference`), movies, even/odd half-sums beside their full sums
    (``NAME_EVN.mrc`` and ``NAME_ODD.mrc`` beside ``NAME.mrc``, as MotionCor2 ``-SplitSum``
    writes them) and outputs of ``cryostream denoise`` beside the micrographs they were made
    from (a ``NAME.json`` of kind ``DenoiseOutput`` beside ``NAME.mrc``) apart. Hidden files
    (left out as ``FOLDER/*.mrc`` would), sub-folders and what ``cryostream denoise`` writes
    beside its outputs (``NAME.json`` beside ``NAME.mrc``, ``denoised_micrographs.star`` and its
    ``.bak`` copies) go without a word; a folder without ``.mrc`` files is an
    :class:`InvalidMicrographError` (saying so when it holds movies). Pairs of even/odd
    half-sums without their full sum (``NAME_EVN.mrc`` and ``NAME_ODD.mrc``, no ``NAME.mrc``)
    stay micrographs, each taken on its own, with a second note that names them and gives the
    ``--odd`` globs that take them in pairs."""
    def names(files: list[Path]) -> str:
        return ", ".join(q.name for q in files[:3]) + (", …" if len(files) > 3 else "")

    files = sorted(q for q in folder.iterdir() if not q.name.startswith("."))
    found = [q for q in files if q.suffix.lower() == ".mrc"
             or (q.suffix.lower() == ".mrcs" and _one_section(q))]
    stems = {q.stem for q in found}
    # outputs written into the folder of their inputs are left out; a folder of outputs alone
    # is taken as asked (denoise refuses it, prepare and plan warn: a DenoisedInputWarning)
    denoised = [q for q in found if _denoise_output(q)]
    if len(denoised) < len(found):
        found = [q for q in found if q not in denoised]
    else:
        denoised = []
    # MotionCor2 -SplitSum writes NAME_EVN.mrc and NAME_ODD.mrc beside NAME.mrc: the full sum
    # is the micrograph (the halves as micrographs too would be denoised, and listed, twice)
    halves = [q for q in found if _beside_full_sum(q, stems)]
    found = [q for q in found if q not in halves]
    # a gain reference written as MRC (RELION's and SerialEM's) beside the micrographs is none;
    # where every name says gain, they are taken as asked
    gain_mrcs = [q for q in found if is_gain_reference(q.name)]
    gain_mrcs = gain_mrcs if len(gain_mrcs) < len(found) else []
    found = [q for q in found if q not in gain_mrcs]
    kept = set(found) | set(denoised) | set(halves) | set(gain_mrcs)
    other = [q for q in files if q not in kept and not re.fullmatch(
             r"denoised_micrographs\.star(\.bak\d*)?", q.name)
             and not (q.suffix.lower() == ".json" and q.stem in stems) and q.is_file()]
    gains = gain_mrcs + [q for q in other if is_gain_reference(q.name)]  # no movie either
    movies = [q for q in other if q.suffix.lower() in MOVIE_SUFFIXES and q not in gains]
    rest = [q for q in other if q.suffix.lower() not in MOVIE_SUFFIXES and q not in gains]
    if not found:
        if movies:
            hint = _found_below(folder)[0]
            raise InvalidMicrographError(
                folder, f"folder holds no .mrc files, but {len(movies)} movie"
                f"{'s' * (len(movies) > 1)} ({names(movies)})", f"motion-correct them first "
                f"({_MOTION_TOOLS}) and give the motion-corrected micrographs (.mrc)"
                + (f"; {hint}" if hint else ""))
        raise InvalidMicrographError(folder, "folder holds no .mrc files", _elsewhere(folder))
    subs = [q for q in files if q.is_dir() and _holds_mrc(q)]  # (EPU: GridSquare_N/Data/)
    said = []
    if denoised:
        said.append(f"{len(denoised)} output{'s' * (len(denoised) > 1)} of cryostream denoise "
                    f"({names(denoised)}; each with its NAME.json), not raw micrographs")
    if halves:
        said.append(_halves_said(halves, folder))
    if gains:
        said.append(f"{len(gains)} gain reference{'s' * (len(gains) > 1)} ({names(gains)}), which "
                    f"motion correction uses, not {'micrographs' if len(gains) > 1 else 'a micrograph'}"
                    ": nothing to do")
    if movies:
        said.append(f"{len(movies)} movie{'s' * (len(movies) > 1)} ({names(movies)}), which "
                    f"need{'s' * (len(movies) == 1)} motion correction first ({_MOTION_TOOLS}): "
                    "give the motion-corrected micrographs (.mrc)")
    if rest:
        said.append(f"{len(rest)} file{'s that are' if len(rest) > 1 else ' that is'} not "
                    f"{'MRC micrographs' if len(rest) > 1 else 'an MRC micrograph'} (.mrc): "
                    f"{names(rest)}")
    if subs:
        said.append(f"{len(subs)} sub-folder{'s' * (len(subs) > 1)} that hold{'s' * (len(subs) == 1)} "
                    f".mrc files ({', '.join(q.name + '/' for q in subs[:3])}"
                    f"{', …' if len(subs) > 3 else ''}), not searched: give "
                    f"{'it' if len(subs) == 1 else 'them'} too if their micrographs are wanted")
    if said:
        logging.getLogger("cryostream").info("%s: left out %s", folder, "; and ".join(said))
    note_lone_halves(found, folder)
    return found


def is_gain_reference(name: str) -> bool:
    """Whether a file's ``name`` says it is a detector's gain reference, which a folder of
    movies often holds beside them (EPU's ``gain_ref.tiff`` for a K3, a ``.gain`` file beside
    EER movies, SerialEM's ``CountRef_…`` and ``SuperRef_…``): neither a movie nor a
    micrograph."""
    return re.search(r"(?<![a-z])(gain|countref|superref)", name.lower()) is not None


def _halves_said(halves: list[Path], folder: Path) -> str:
    """What is said of even/odd half-sums left out beside their full sums."""
    shown = ", ".join(q.name for q in halves[:3]) + (", …" if len(halves) > 3 else "")
    even, odd = _pair_globs(folder, halves)
    return (f"{len(halves)} even/odd half-sum{'s' * (len(halves) > 1)} beside "
            f"{'their full sums' if len(halves) > 1 else 'its full sum'} ({shown}): the full sums "
            f"are the micrographs; to denoise the halves in pairs, give '{even}' --odd '{odd}'")


def _pair_globs(folder: Path, halves: list[Path]) -> tuple[str, str]:
    """The globs of ``folder``'s even and odd half-sums, with the endings ``halves`` use
    (``_EVN``/``_ODD``, ``_even``/``-odd`` …; ``_EVN``/``_ODD`` where one kind is missing) and
    the name of a folder that is one escaped (a ``[`` in it would match itself no more); the
    folders of a glob are its own pattern."""
    from cryostream.io.halves import EVEN_SUFFIXES, ODD_SUFFIXES, half_key

    def ending(suffixes, fallback):
        for q in halves:
            if (key := half_key(q, suffixes)) != q.stem:
                return q.name[len(key):]
        return fallback

    base = glob.escape(str(folder)) if os.path.isdir(folder) else str(folder)  # (a glob's own)
    return (os.path.join(base, "*" + glob.escape(ending(EVEN_SUFFIXES, "_EVN.mrc"))),
            os.path.join(base, "*" + glob.escape(ending(ODD_SUFFIXES, "_ODD.mrc"))))


def halves_left_out(matches: list, glob: str) -> list:
    """A glob's ``matches`` less the even/odd half-sums whose full sum it matched too
    (``Movies/*.mrc`` over MotionCor2's ``NAME.mrc``, ``NAME_EVN.mrc``, ``NAME_ODD.mrc``), with
    a note, as a folder given whole leaves them out (files named one by one:
    :func:`named_halves_left_out`)."""
    paths = [Path(q) for q in matches]
    stems: dict[Path, set[str]] = {}
    for q in paths:  # each folder's names, once (a glob may match thousands)
        stems.setdefault(q.parent, set()).add(q.stem)
    halves = [q for q in paths if _beside_full_sum(q, stems[q.parent])]
    if halves:
        where = Path(glob).parent if Path(glob).name in ("*.mrc", "*") else halves[0].parent
        logging.getLogger("cryostream").info("%s: left out %s", glob, _halves_said(halves, where))
    return [m for m, q in zip(matches, paths, strict=True) if q not in halves]


def is_glob(item) -> bool:
    """Whether the input ``item`` is a glob to expand: a name with ``*``, ``?`` or ``[`` that is
    no file."""
    return any(ch in os.fspath(item) for ch in "*?[") and not os.path.lexists(item)


def named_halves_left_out(items: list, *, say: bool = True) -> list:
    """``items`` (inputs named one by one, as a shell gives ``Movies/*.mrc`` once it has
    expanded it) less the even/odd half-sums whose full sum they name too, with a note
    (``say``), as a folder or a quoted glob leaves them out (:func:`halves_left_out`). A half
    named without its full sum is taken as given; globs and folders are kept as they are."""
    paths = [Path(q) if Path(q).suffix.lower() in (".mrc", ".mrcs") and not is_glob(q) else None
             for q in items]
    where = [None if q is None else os.path.abspath(q.parent) for q in paths]
    stems: dict[str, set[str]] = {}  # Data/a.mrc and /session/Data/a_EVN.mrc: one folder
    for q, folder in zip(paths, where, strict=True):
        if q is not None:
            stems.setdefault(folder, set()).add(q.stem)
    halves = [q is not None and _beside_full_sum(q, stems[folder])
              for q, folder in zip(paths, where, strict=True)]
    if say and any(halves):
        shown = list(dict.fromkeys(q for q, half in zip(paths, halves, strict=True) if half))
        folder = _folders_glob([q.parent for q in shown])
        logging.getLogger("cryostream").info("%s: left out %s", folder,
                                             _halves_said(shown, folder))
    return [item for item, half in zip(items, halves, strict=True) if not half]


def _folders_glob(folders: list[Path]) -> Path:
    """One folder where ``folders`` are one; else the glob of them all (the shell's
    ``Images-Disc1/*/Data/*.mrc`` expanded over grid squares): ``*`` for each level where they
    differ, the others escaped; ``**`` below the folder they share where their depths differ."""
    by_path = {os.path.abspath(q): q for q in reversed(folders)}  # (each as first spelled)
    if len(by_path) == 1:
        return next(iter(by_path.values()))
    unique = [Path(os.path.normpath(q)) for q in by_path.values()]
    if len({q.is_absolute() for q in unique}) > 1:  # (Data/ beside /session/Data/)
        unique = [Path(q) for q in by_path]
    if len({len(q.parts) for q in unique}) == 1:
        return Path(*_levels_glob([q.parts for q in unique]))
    return Path(glob.escape(os.path.commonpath([os.path.abspath(q) for q in unique])), "**")


def note_lone_halves(found: list[Path], folder: Path | None = None) -> None:
    """One note when ``found`` (a folder's micrographs, or micrographs given by name) holds even
    and odd half-sums of one name (``NAME_EVN.mrc`` and ``NAME_ODD.mrc``) with no full sum
    ``NAME.mrc``: each is taken as a micrograph of its own, and the note gives the ``--odd``
    globs that pair them (in ``folder``; None: the first even half's)."""
    from cryostream.io.halves import EVEN_SUFFIXES, ODD_SUFFIXES, half_key

    found = [Path(q) for q in found]
    evens = {k: q for q in found if (k := half_key(q, EVEN_SUFFIXES)) != q.stem}
    odds = {k: q for q in found if (k := half_key(q, ODD_SUFFIXES)) != q.stem}
    sums = {(q.parent, q.stem) for q in found}
    paired = sorted(k for k in evens if k in odds and (evens[k].parent, k) not in sums)
    if not paired:
        return
    halves = sorted([evens[k] for k in paired] + [odds[k] for k in paired])
    first = paired[0]  # the globs of the endings the first pair uses (_EVN/_ODD, _even/_odd …)
    shown = ", ".join(q.name for q in halves[:3]) + (", …" if len(halves) > 3 else "")
    folder = evens[first].parent if folder is None else folder
    even, odd = _pair_globs(folder, [evens[first], odds[first]])
    logging.getLogger("cryostream").info(
        "%s: %d files look like even/odd half-sums without their full sums (%s): each is taken "
        "as a micrograph of its own; to take them in pairs (the two halves of each micrograph), "
        "give '%s' --odd '%s'", folder, len(halves), shown, even, odd)


def _one_section(path: Path) -> bool:
    """Whether the ``.mrcs`` file ``path`` holds one section (a micrograph RELION wrote as a stack
    of one), read from its header; a movie's frames, or a file whose header cannot be read, is
    not."""
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True) as mrc:
            return int(mrc.header.nz) == 1
    except (ValueError, OSError):
        return False


def _denoise_output(path: Path) -> bool:
    """Whether ``path`` is an output of ``cryostream denoise``: its ``NAME.json`` beside it
    says so."""
    import json

    try:
        record = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("kind") == "DenoiseOutput"


def _beside_full_sum(path: Path, stems: set[str]) -> bool:
    """Whether ``path`` is an even- or odd-frame sum (``NAME_EVN.mrc``, ``NAME_ODD.mrc``, …)
    whose full sum ``NAME.mrc`` is among ``stems``."""
    from cryostream.io.halves import EVEN_SUFFIXES, ODD_SUFFIXES, half_key

    return any((key := half_key(path, suffixes)) != path.stem and key in stems
               for suffixes in (EVEN_SUFFIXES, ODD_SUFFIXES))


def _elsewhere(folder: Path) -> str:
    """Where a folder without micrographs has them: a set ``cryostream simulate`` made (its
    STAR file, which carries each micrograph's pixel size and defocus), or the folders below it
    that hold ``.mrc`` files (:func:`_found_below`), or movies to motion-correct first; else
    "check the folder"."""
    if (folder / "micrographs.star").is_file() and (folder / "micrographs").is_dir():
        return (f"it holds a set made by cryostream simulate: give {folder / 'micrographs.star'} "
                f"(or the folder {folder / 'micrographs'})")
    star = _relion_star(folder)
    if star:
        return (f"it is a RELION project or job: give its STAR file {star} (the micrographs with "
                "their pixel size and optics, read from the project folder)")
    hint, movies = _found_below(folder)
    if hint:
        return hint
    if movies:
        movies = sorted(movies)
        shown = ", ".join(f"{d}/" for d in movies[:3]) + (", …" if len(movies) > 3 else "")
        return (f"its sub-folder{'s' * (len(movies) > 1)} {shown} hold{'s' * (len(movies) == 1)} "
                f"movies, not micrographs: motion-correct them first ({_MOTION_TOOLS}) and give "
                "the motion-corrected micrographs (.mrc)")
    return "check the folder"


def _relion_star(folder: Path) -> Path | None:
    """The STAR file of a RELION project's micrographs where ``folder`` is the project (the
    latest CtfFind job's ``micrographs_ctf.star``, which adds each micrograph's defocus, else the
    latest MotionCorr job's ``corrected_micrographs.star``), one such job, or the folder of such
    jobs (``MotionCorr/``); None elsewhere."""
    for pattern in ("micrographs_ctf.star", "corrected_micrographs.star",
                    "CtfFind/job*/micrographs_ctf.star", "MotionCorr/job*/corrected_micrographs.star",
                    "job*/micrographs_ctf.star", "job*/corrected_micrographs.star"):
        try:
            stars = [q for q in folder.glob(pattern) if q.is_file()]
        except OSError:
            continue
        if stars:
            return max(stars, key=lambda q: (q.stat().st_mtime, str(q)))
    return None


def _found_below(folder: Path) -> tuple[str, list[str]]:
    """What is said of the folders below ``folder`` (up to ``_LEVELS`` levels down, ``_FOLDERS``
    folders listed and ``_NAMES`` names read at most; hidden ones and those that cannot be read
    passed over) that hold ``.mrc`` files: where they are, and the folder or the quoted glob to
    give ("" where none does, unless the search stopped before its end); and, where none does,
    those that hold movies (paths relative to ``folder``).

    The glob is of the folders that hold the most ``.mrc`` files among those of one depth and,
    where several share one, one name (EPU's ``Data`` beside ``FoilHoles``, below squares of
    their own images), a level's name kept where all of them agree (``Images-Disc1/*/Data/``);
    the others are counted."""
    found: dict[tuple[str, ...], int] = {}  # (relative parts): how many .mrc files
    movies: list[str] = []
    queue, listed, read, stopped = [()], 0, 0, False
    try:
        seen = {(folder.stat().st_dev, folder.stat().st_ino)}  # (a link back up: listed once)
    except OSError:
        seen = set()
    while queue:
        if listed == _FOLDERS or read >= _NAMES:
            stopped = True
            break
        parts = queue.pop(0)
        listed += 1
        try:
            with os.scandir(folder.joinpath(*parts)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        read += len(entries)
        mrc, frames = 0, []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    key = (e.stat().st_dev, e.stat().st_ino)
                    if len(parts) < _LEVELS and key not in seen:
                        seen.add(key)
                        queue.append((*parts, e.name))
                    continue
            except OSError:
                continue
            suffix = os.path.splitext(e.name)[1].lower()
            mrc += suffix == ".mrc"
            if suffix in MOVIE_SUFFIXES and not is_gain_reference(e.name):
                frames.append(Path(e.path))
        if parts and mrc:
            found[parts] = mrc
        elif parts and frames and not (frames[0].suffix.lower() == ".mrcs"
                                       and _one_section(frames[0])):
            movies.append("/".join(parts))
    more = f" ({len(found)} in the first {listed} folders looked in)" if stopped else ""
    if not found:
        return ("" if movies or not stopped else f"check the folder (none in the first {listed} "
                f"folders below it, {_LEVELS} levels down at most)"), movies
    return _found_said(folder, found, more), []


def _levels_glob(paths: list) -> list[str]:
    """The glob of paths of one depth (each as its parts), level by level: a level's name,
    escaped, where all agree, else ``*``."""
    return [glob.escape(names[0]) if len(set(names)) == 1 else "*"
            for names in zip(*paths, strict=True)]


def _found_said(folder: Path, found: dict[tuple[str, ...], int], more: str) -> str:
    """What :func:`_found_below` says of ``found``, the folders below ``folder`` (as parts of
    their paths relative to it) that hold ``.mrc`` files, with how many."""
    subs = sorted(found)
    if len(subs) == 1:
        return f"its sub-folder {'/'.join(subs[0])}/ holds .mrc files: give " \
               f"{folder.joinpath(*subs[0])}{more}"
    groups: dict[tuple[int, str], list[tuple[str, ...]]] = {}
    for q in subs:  # by depth, and by name where several of that depth share one
        shared = sum(r[-1] == q[-1] for r in subs if len(r) == len(q)) > 1
        groups.setdefault((len(q), q[-1] if shared else ""), []).append(q)
    best = max(groups.values(), key=lambda g: (sum(found[q] for q in g), -len(g[0])))
    where = f"'{Path(glob.escape(str(folder))).joinpath(*_levels_glob(best), '*.mrc')}'"
    subs = best + [q for q in subs if q not in best]
    shown = ", ".join(f"{'/'.join(q)}/" for q in subs[:3]) + (", …" if len(subs) > 3 else "")
    said = f"its sub-folders {shown}{f' ({len(subs)} in all)' * (len(subs) > 3)} hold .mrc files"
    if len(best) < len(subs):
        total = sum(found.values())
        return (f"{said}, {sum(found[q] for q in best)} of their {total} in {where}: give that "
                f"glob, or the folders wanted{more}")
    if len(subs) > 3:
        return f"{said}: give them all at once as {where}{more}"
    named = " ".join(str(folder.joinpath(*q)) for q in subs)
    return f"{said}: give them ({named}), or all at once as {where}{more}"


def _holds_mrc(folder: Path) -> bool:
    """Whether ``folder`` holds a ``.mrc`` file (False where it cannot be read)."""
    try:
        return any(q.suffix.lower() == ".mrc" for q in folder.iterdir())
    except OSError:
        return False
