"""What ``denoise`` wrote in a folder (``evaluate --denoised``), read for the report as this
model's default output of a micrograph instead of denoising it again; and the outputs made at
another pixel size than the one the report uses for their micrographs, said once."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from cryostream.evaluate.pixels import APART
from cryostream.io.pixel_sizes import PixelSizeWarning

__all__ = ["DenoisedOutputs"]

_log = logging.getLogger("cryostream")


class DenoisedOutputs:
    """The default outputs of ``run`` that ``denoise`` wrote in ``folder`` (None: no folder
    given, none read), with ``tile``; :meth:`default_of` reads one, :meth:`warn_pixel_sizes`
    says those made at another pixel size."""

    def __init__(self, folder, run: str, record, tile: int | None):
        self.folder, self.run, self.record, self.tile = folder, run, record, tile
        self.off: list[tuple] = []

    def default_of(self, noisy_path: Path, scale, optics: dict | None = None,
                   pixel_size_angstrom: float | None = None,
                   where: str = "") -> tuple[np.ndarray | None, dict | None]:
        """What ``denoise`` wrote for ``noisy_path`` with the run's default recipe, the tile and
        ``optics`` (a STAR file's, as denoise took them; checked through its NAME.json),
        normalised by ``scale``, and what its steps found; ``(None, None)``, with a note, when
        there is none. Where its header gives a pixel size 1 % or more (:data:`APART`) off
        ``pixel_size_angstrom`` (the micrograph's here, from ``where``: ``"--pixel-size"``,
        ``"the MRC header of NAME.mrc"``…), it is kept for :meth:`warn_pixel_sizes`."""
        if self.folder is None:
            return None, None
        from cryostream.config import DenoiseConfig
        from cryostream.denoise.outputs import output_identity, read_record, same_record
        from cryostream.evaluate.numbers import read_micrograph
        from cryostream.io.mrc import read_header

        path, tile = Path(self.folder) / noisy_path.name, self.tile
        record_path = path.with_suffix(".json")
        written = read_record(record_path) or {}
        given = written.get("given") or {}  # a STAR file's pixel size or defocus: its output
        identity = output_identity(self.run, DenoiseConfig(tile=tile, **(optics or {})).for_run(
            self.record), str(noisy_path.resolve()), given)  # all the same
        if "odd" in given:  # the sum of two halves' outputs, not this micrograph's
            identity["given"] = None
        if not (path.is_file() and same_record(record_path, identity)):
            _log.info("%s: %s; %s is denoised here instead, as denoise does by default (the "
                      "report scores the default)", path, (
                          f"not this model's default output of {noisy_path}" + (
                              f" with --tile {tile}" if tile else "") + _how(written, identity))
                      if path.is_file() else "not found", noisy_path.name)
            return None, None
        theirs = read_header(path).pixel_size_angstrom
        if pixel_size_angstrom and theirs > 0 and not math.isclose(
                theirs, pixel_size_angstrom, rel_tol=APART):
            self.off.append((path, theirs, pixel_size_angstrom, where))
        return read_micrograph(path)[0] / scale, written.get("found") or {}

    def warn_pixel_sizes(self, use: str, overrides: bool = True) -> None:
        """One :class:`~cryostream.io.pixel_sizes.PixelSizeWarning` for the outputs read that
        were made at another pixel size than their micrographs' here, naming the first, both
        values, where the used one is from and what it is used for (``use``); the output is
        read as it is. ``overrides``: whether ``--pixel-size`` goes over a header's here (the
        fix it names). Said once: the list is emptied."""
        if not self.off:
            return
        (output, theirs, ours, where), more = self.off[0], len(self.off) - 1
        self.off = []
        typed = f"pass --pixel-size {theirs:g}"
        fix = (typed if where == "--pixel-size" else f"{typed} (or correct {where})" if overrides
               else f"correct {where}")
        warnings.warn(
            f"{output}{f' and {more} more' if more else ''}: its MRC header gives a pixel size of "
            f"{theirs:g} Å (denoise made it at that size), {ours / theirs:.3g}× the {ours:g} Å "
            f"from {where}; {ours:g} Å is used for {use}, and the output is read as it is: check "
            f"it (if {theirs:g} Å is right, {fix}; otherwise "
            "denoise again with the right pixel size, or leave out --denoised to have it "
            "denoised here)", PixelSizeWarning, stacklevel=3)


def _how(written: dict, identity: dict) -> str:
    """How an output in the folder differs from the default output evaluate would make: the
    options, model or input its NAME.json names (``what_differs``), else a micrograph or model
    changed since it was made, else that it has no NAME.json of denoise's."""
    from cryostream.denoise.outputs import what_differs

    if not written:
        return " (no NAME.json of denoise's beside it says how it was made)"
    said = what_differs(written, identity)
    if said:
        return said
    changed = [what for key, what in (("input_files", "its micrograph"), ("model_files",
                                                                            "the model"))
               if key in written and written[key] != identity.get(key)]
    return (f" ({' and '.join(changed)} changed since it was made)" if changed
            else " (its NAME.json says how it was made)")
