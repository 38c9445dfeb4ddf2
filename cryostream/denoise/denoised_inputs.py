"""Outputs of ``cryostream denoise`` given back to it as inputs (their MRC labels say so):
refused before any work, since they would be denoised as if they were raw micrographs, or,
with ``permissive``, skipped where raw micrographs come with them. Each output's record
(``NAME.json`` beside it) names the raw micrograph it was made from."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from cryostream.denoise.outputs import read_record
from cryostream.errors import DenoisedInputError
from cryostream.io.mrc import MicrographHeader
from cryostream.io.stack import MicrographSkippedWarning

__all__ = ["refuse_denoised", "raw_micrograph"]


def raw_micrograph(header: MicrographHeader) -> str:
    """The raw micrograph an output of ``cryostream denoise`` was made from, as its record
    (``NAME.json`` beside it, of kind ``DenoiseOutput``) names it; "" where it has none."""
    record = read_record(Path(header.path).with_suffix(".json")) or {}
    return str(record.get("input") or "") if record.get("kind") == "DenoiseOutput" else ""


def refuse_denoised(headers: list[MicrographHeader], skipped: list[dict],
                    permissive: bool = False) -> list[MicrographHeader]:
    """The headers of ``headers`` that are not outputs of ``cryostream denoise``.

    Any output among them is a :class:`~cryostream.errors.DenoisedInputError` naming the
    first, how many there are, and the raw micrograph its record names. With ``permissive``,
    each is skipped instead (a :class:`~cryostream.io.stack.MicrographSkippedWarning`, and a
    ``{"path", "reason"}`` added to ``skipped``), unless all of them are outputs: then they
    are refused all the same. An output whose raw micrograph is among the inputs too (a glob
    of a folder that holds both, ``FOLDER/*.mrc``) is left out with a note, as a folder's are.
    """
    denoised = [h for h in headers if h.denoised_by]
    kept = [h for h in headers if not h.denoised_by]
    if not denoised:
        return headers
    given = {Path(h.path).resolve() for h in kept}
    raws = {h.path: raw_micrograph(h) for h in denoised}  # each record read once
    beside = [h for h in denoised if raws[h.path] and Path(raws[h.path]).resolve() in given]
    if beside:
        logging.getLogger("cryostream").info(
            "left out %d output%s of cryostream denoise among the inputs, each given with its "
            "raw micrograph (%s%s)", len(beside), "s" * (len(beside) > 1),
            ", ".join(Path(h.path).name for h in beside[:3]), ", …" * (len(beside) > 3))
        denoised = [h for h in denoised if h not in beside]
        headers = [h for h in headers if h not in beside]
        if not denoised:
            return kept
    if permissive and kept:
        for h in denoised:
            raw = raws[h.path]
            reason = (f"{h.path}: written by cryostream denoise, not a raw micrograph"
                      + (f" (its raw micrograph, as its record says: {raw})" if raw else ""))
            warnings.warn(f"skipping {reason}", MicrographSkippedWarning, stacklevel=3)
            skipped.append({"path": h.path, "reason": reason})
        return kept
    first, n = denoised[0], len(denoised)
    others = "" if n == 1 else (f", as were all {n} inputs" if not kept
                                else f", as were {n} of the {len(headers)} inputs")
    raw = raws[first.path]
    record = Path(first.path).with_suffix(".json").name
    if not raw:
        where = f"no {record} beside it names its own"
    else:
        gone = "" if Path(raw).is_file() else ", not there now"
        where = f"this one's is {raw}, as its record {record} says{gone}"
    fix = f"give {'the raw micrographs instead of them' if n > 1 else 'its raw micrograph instead'} ({where})"
    if kept:  # --permissive skips the outputs among raw micrographs
        fix += f", or pass --permissive (Python: permissive=True) to skip {'them' if n > 1 else 'it'}"
    elif permissive:
        fix += " (--permissive skips them only beside raw micrographs)"
    raise DenoisedInputError(first.path, f"written by cryostream denoise (its MRC label: "
                             f"'{first.denoised_by}'){others}, so it would be denoised as if it "
                             "were a raw micrograph", fix)
