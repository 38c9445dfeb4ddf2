"""The finished outputs in ``denoise``'s output folder that its STAR file does not list
(:func:`warn_unlisted`, one :class:`~cryostream.denoise.star_out.UnlistedOutputWarning`): of
other inputs, kept from no earlier STAR file; and those of this call's inputs that it skipped
(:func:`skipped_inputs`: a STAR file's row whose micrograph is missing now, a bad file), which
the STAR file leaves out since they cannot be used now, kept on disk."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from cryostream.denoise.moved import input_now, inputs_by_name
from cryostream.denoise.star_out import UnlistedOutputWarning

__all__ = ["skipped_inputs", "warn_unlisted", "count_skipped"]


def skipped_inputs(gathered, outputs: dict[str, str]) -> set[str]:
    """The inputs of ``gathered`` (:class:`~cryostream.denoise.sources.DenoiseInputs`) this call
    did not denoise (``outputs``: those it did, by source): the files ``permissive`` skipped (a
    STAR file's row whose micrograph is missing, a bad file; an odd half's even half too) and
    the micrographs that failed. As real paths: an earlier output made of one (its
    ``NAME.json``'s ``input``) is no row of the STAR file written, since its micrograph cannot
    be used now (:func:`~cryostream.denoise.star_keep.write_listing`, :func:`warn_unlisted`)."""
    files = [p for s in gathered.skipped for p in (s["path"], s.get("even")) if p]
    files += [m.source for m in gathered.micrographs if m.source not in outputs]
    return {os.path.realpath(p) for p in files}


def _made_from(sidecar: Path, named: dict | None = None) -> tuple[bool, str | None]:
    """Whether ``sidecar`` is an output's ``NAME.json`` record of denoise's, and the input (its
    real path; None where it names none) it says the output was made from: the one of
    ``named`` (:func:`~cryostream.denoise.moved.inputs_by_name`) it is where the project moved
    since (:func:`~cryostream.denoise.moved.input_now`)."""
    try:
        record = json.loads(sidecar.read_text())
        kind, made_from = record.get("kind"), record.get("input")
    except (OSError, ValueError, AttributeError):
        return False, None
    if isinstance(made_from, str) and named:
        made_from = input_now(made_from, record, named, sidecar.with_suffix(".mrc"))
    return kind == "DenoiseOutput", (os.path.realpath(made_from) if isinstance(made_from, str)
                                     else None)


def _skipped_clause(folder: Path, gone: list[tuple[str, str]]) -> str:
    """The words of :func:`warn_unlisted` for earlier outputs ``gone`` (``(name, its input)``)
    of ``folder`` whose micrographs this call skipped (missing now, or bad): their rows left
    out, as a new folder's STAR file would leave them; kept on disk; what lists them again."""
    one, missing = len(gone) == 1, [i for _, i in gone if not os.path.exists(i)]
    shown = ", ".join(n for n, _ in gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3
                                                 else "")
    its, it = ("its", "it") if one else ("their", "them")
    why = (f"{its} micrograph{'' if one else 's'} {'is' if one else 'are'} missing now ("
           f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}): this call skipped "
           f"{it}" if len(missing) == len(gone) else
           f"this call skipped {its} micrograph{'' if one else 's'} (see the warnings)")
    name = Path(gone[0][0])
    delete = (f"{name} and {name.with_suffix('.json')}" if one
              else "each NAME.mrc with its NAME.json")
    return (f"; {len(gone)} earlier output{'' if one else 's'} in {folder} of this call's inputs "
            f"{'is' if one else 'are'} not listed ({shown}): {why}, and {its} row"
            f"{'' if one else 's'} {'is' if one else 'are'} left out, as a new folder's STAR file "
            f"would leave {it} out; the output{'' if one else 's'} {'is' if one else 'are'} kept "
            f"on disk: restore the micrograph{'' if one else 's'} and run the same command again "
            f"to list {it}, or delete {delete}")


def warn_unlisted(star: Path, listed: list[str], kept: list = (), backup: tuple | None = None,
                  skipped: set = frozenset(), inputs: list = ()) -> None:
    """One :class:`UnlistedOutputWarning` when the folder of the STAR file ``star``, which
    lists this call's outputs ``listed`` and those ``kept`` from the file it replaced
    (:func:`~cryostream.denoise.star_keep.write_listing`), holds finished outputs it does not
    list (``NAME.mrc`` with its ``NAME.json`` record, made by an earlier call of other inputs),
    or where that file's rows could not be kept (``backup``: the ``.bak`` copy, why, and the
    outputs only it lists). An unlisted output made from one of this call's ``inputs`` under
    another name (a Subset's ``a.mrc`` beside the full file's ``GridA/a.mrc``) is no missing
    row but a duplicate of a listed one: named in an INFO note as one that can be deleted. One
    made from an input this call ``skipped`` (:func:`skipped_inputs`: its micrograph missing
    now, or bad) is said as such: kept on disk, not listed, since it cannot be used now."""
    folder = Path(star).parent
    listed_files = {Path(p).resolve() for p in [*listed, *kept]}
    given = {os.path.realpath(p) for p in inputs}
    named = inputs_by_name([*inputs, *skipped])  # (a project moved since: its inputs as now)
    left, duplicates, gone = [], [], []
    for sidecar in sorted(folder.glob("*.json")):
        image = sidecar.with_suffix(".mrc")
        if image.resolve() in listed_files or not image.is_file():
            continue
        output, made_from = _made_from(sidecar, named)
        if not output:
            continue
        if made_from is not None and made_from in given:
            duplicates.append(image.name)
        elif made_from is not None and made_from in skipped:
            gone.append((image.name, made_from))
        else:
            left.append(image.name)
    if duplicates:
        one = len(duplicates) == 1
        logging.getLogger("cryostream").info(
            "%s: %s %s an earlier output of %s this call denoised, under another name: "
            "%s listed by its new name; the earlier file%s can be deleted", folder,
            ", ".join(duplicates), "is" if one else "are", "an input" if one else "inputs",
            "it is" if one else "they are", "" if one else "s")
    for file in backup[2] or [] if backup is not None else []:  # sub-folders too (GridA/a.mrc)
        name, made_from = Path(file).relative_to(folder.absolute()).as_posix(), _made_from(
            Path(file).with_suffix(".json"), named)[1]
        if made_from is not None and made_from in skipped:
            gone += [(name, made_from)] if name not in [g for g, _ in gone] else []
        elif name not in left:
            left.append(name)
    if not left and not gone and backup is None:
        return
    n, k, one = len(listed), len(kept), len(left) == 1
    said = (f"{star} lists {'' if k else 'only '}this call's {n} micrograph{'' if n == 1 else 's'}"
            + (f" and {k} of its earlier rows" if k else ""))
    if left:
        shown = ", ".join(left[:3]) + (f" and {len(left) - 3} more" if len(left) > 3 else "")
        said += (f"; {len(left)} earlier output{'' if one else 's'} in {folder} "
                 f"{'is' if one else 'are'} not listed ({shown}): give {'its' if one else 'their'}"
                 f" input{'' if one else 's'} again with these to list {'it' if one else 'them'}"
                 " too (finished outputs are kept, not made again)")
    if gone:
        said += _skipped_clause(folder, gone)
    if backup is not None:
        said += (f"; the STAR file it replaces is kept as {backup[0]}: its rows cannot join this "
                 f"call's ({backup[1]})" if backup[0] is not None else
                 f"; the rows of the STAR file it replaces are not kept ({backup[1]})")
    warnings.warn(said, UnlistedOutputWarning, stacklevel=5)  # (denoise → to_the_end → _result → here)


def count_skipped(skipped: list[dict]) -> int:
    """Micrographs among the skipped files: a pair's two halves (each may be named) count
    once, an odd half by its even half's path where its record has it (``"even"``), else by
    name."""
    from cryostream.io.halves import EVEN_SUFFIXES, ODD_SUFFIXES, half_key

    def micrograph(path: str) -> str:
        p = Path(path)
        stem = half_key(half_key(str(p), EVEN_SUFFIXES), ODD_SUFFIXES)
        return str(p.parent.resolve() / Path(stem).name)

    return len({micrograph(s.get("even", s["path"])) for s in skipped})
