"""The micrographs of a folder: its ``.mrc`` files and one-section ``.mrcs`` files, with a note
on what is left out (movies, outputs of ``cryostream denoise``, even/odd half-sums beside their
full sums, other files) and one on even/odd half-sums without full sums, which are kept as
micrographs of their own."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from cryostream.errors import InvalidMicrographError

__all__ = ["MOVIE_SUFFIXES", "folder_micrographs", "halves_left_out", "note_lone_halves"]

#: Movies (frame stacks) that motion correction sums into micrographs: TIFF and EER frames,
#: and MRC stacks (``.mrcs``, as EPU and SerialEM can write frames; one of a single section is
#: a micrograph, as RELION can write one, and is not left out).
MOVIE_SUFFIXES = (".tif", ".tiff", ".eer", ".mrcs")
_MOTION_TOOLS = "MotionCor2 or RELION's own, for example"


def folder_micrographs(folder: Path) -> list[Path]:
    """A folder's ``.mrc`` files and one-section ``.mrcs`` files (RELION writes a micrograph so
    at times; one of many sections is a movie's frames) in name order, with one note that
    counts the other files left out and names the first three, movies, even/odd half-sums
    beside their full sums (``NAME_EVN.mrc`` and ``NAME_ODD.mrc`` beside ``NAME.mrc``, as
    MotionCor2 ``-SplitSum`` writes them) and outputs of ``cryostream denoise`` beside the
    micrographs they were made from (a ``NAME.json`` of kind ``DenoiseOutput`` beside
    ``NAME.mrc``) apart. Hidden files (left out as ``FOLDER/*.mrc`` would), sub-folders and
    what ``cryostream denoise`` writes beside its outputs (``NAME.json`` beside ``NAME.mrc``,
    ``denoised_micrographs.star`` and its ``.bak`` copies) go without a word; a folder without
    ``.mrc`` files is an
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
    kept = set(found) | set(denoised) | set(halves)
    other = [q for q in files if q not in kept and not re.fullmatch(
             r"denoised_micrographs\.star(\.bak\d*)?", q.name)
             and not (q.suffix.lower() == ".json" and q.stem in stems) and q.is_file()]
    movies = [q for q in other if q.suffix.lower() in MOVIE_SUFFIXES]
    rest = [q for q in other if q.suffix.lower() not in MOVIE_SUFFIXES]
    subs = [q for q in files if q.is_dir() and _holds_mrc(q)]  # (EPU: GridSquare_N/Data/)
    if not found:
        if movies:
            raise InvalidMicrographError(
                folder, f"folder holds no .mrc files, but {len(movies)} movie"
                f"{'s' * (len(movies) > 1)} ({names(movies)})", f"motion-correct them first "
                f"({_MOTION_TOOLS}) and give the motion-corrected micrographs (.mrc)")
        raise InvalidMicrographError(folder, "folder holds no .mrc files", _elsewhere(folder, subs))
    said = []
    if denoised:
        said.append(f"{len(denoised)} output{'s' * (len(denoised) > 1)} of cryostream denoise "
                    f"({names(denoised)}; each with its NAME.json), not raw micrographs")
    if halves:
        said.append(_halves_said(halves, folder))
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


def _halves_said(halves: list[Path], folder: Path) -> str:
    """What is said of even/odd half-sums left out beside their full sums."""
    shown = ", ".join(q.name for q in halves[:3]) + (", …" if len(halves) > 3 else "")
    return (f"{len(halves)} even/odd half-sum{'s' * (len(halves) > 1)} beside "
            f"{'their full sums' if len(halves) > 1 else 'its full sum'} ({shown}): the full sums "
            f"are the micrographs; to denoise the halves in pairs, give "
            f"'{folder / '*_EVN.mrc'}' --odd '{folder / '*_ODD.mrc'}'")


def halves_left_out(matches: list, glob: str) -> list:
    """A glob's ``matches`` less the even/odd half-sums whose full sum it matched too
    (``Movies/*.mrc`` over MotionCor2's ``NAME.mrc``, ``NAME_EVN.mrc``, ``NAME_ODD.mrc``), with
    a note, as a folder given whole leaves them out."""
    paths = [Path(q) for q in matches]
    stems: dict[Path, set[str]] = {}
    for q in paths:  # each folder's names, once (a glob may match thousands)
        stems.setdefault(q.parent, set()).add(q.stem)
    halves = [q for q in paths if _beside_full_sum(q, stems[q.parent])]
    if halves:
        where = Path(glob).parent if Path(glob).name in ("*.mrc", "*") else halves[0].parent
        logging.getLogger("cryostream").info("%s: left out %s", glob, _halves_said(halves, where))
    return [m for m, q in zip(matches, paths, strict=True) if q not in halves]


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
    even, odd = (f"*{q.name[len(first):]}" for q in (evens[first], odds[first]))
    shown = ", ".join(q.name for q in halves[:3]) + (", …" if len(halves) > 3 else "")
    folder = evens[first].parent if folder is None else folder
    logging.getLogger("cryostream").info(
        "%s: %d files look like even/odd half-sums without their full sums (%s): each is taken "
        "as a micrograph of its own; to take them in pairs (the two halves of each micrograph), "
        "give '%s' --odd '%s'", folder, len(halves), shown, folder / even, folder / odd)


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


def _elsewhere(folder: Path, subs: list[Path]) -> str:
    """Where a folder without micrographs has them: a set ``cryostream simulate`` made (its
    STAR file, which carries each micrograph's pixel size and defocus), or ``subs``, its
    sub-folders that hold ``.mrc`` files; else "check the folder"."""
    if (folder / "micrographs.star").is_file() and (folder / "micrographs").is_dir():
        return (f"it holds a set made by cryostream simulate: give {folder / 'micrographs.star'} "
                f"(or the folder {folder / 'micrographs'})")
    if len(subs) == 1:
        return f"its sub-folder {subs[0].name}/ holds .mrc files: give {subs[0]}"
    if subs:
        shown = ", ".join(f"{d.name}/" for d in subs[:3]) + (", …" if len(subs) > 3 else "")
        named = " ".join(str(d) for d in subs[:3]) + (" …" if len(subs) > 3 else "")
        return (f"its sub-folders {shown} hold .mrc files: give them ({named}), or all at once "
                f"as '{folder / '*' / '*.mrc'}'")
    return "check the folder"


def _holds_mrc(folder: Path) -> bool:
    """Whether ``folder`` holds a ``.mrc`` file (False where it cannot be read)."""
    try:
        return any(q.suffix.lower() == ".mrc" for q in folder.iterdir())
    except OSError:
        return False
