"""What ``denoise`` wrote in a folder (``evaluate --denoised``), read for the report instead of
denoising a micrograph again: any output of this model and micrograph as it was made (the
truth section scores it, the residual check checks it; the report names the options of one
made otherwise than by default); and the outputs made at another pixel size than the one the
report uses for their micrographs, said once."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from cryostream.evaluate.pixels import APART
from cryostream.io.pixel_sizes import PixelSizeWarning

__all__ = ["DenoisedOutputs", "made_otherwise"]

_log = logging.getLogger("cryostream")

#: What each section of the report does with an output made otherwise than by default, said
#: as it is read: the residual check checks it, the truth section scores it.
_READ_AS = {"residual": "its residual is checked as denoise wrote it, and the report names its "
                        "options (leave out --denoised to check the default)",
            "truth": "it is scored as denoise wrote it, in a row of the report's table that names "
                     "its options (leave out --denoised to score the default)"}


class DenoisedOutputs:
    """The outputs of ``run`` that ``denoise`` wrote in ``folder`` (None: no folder given, none
    read), with ``tile``, for the report's ``section`` (``"residual"`` or ``"truth"``):
    :meth:`written_of` reads one made with whatever options (the section takes it as it is);
    :meth:`warn_pixel_sizes` says those made at another pixel size."""

    def __init__(self, folder, run: str, record, tile: int | None, section: str = "residual"):
        self.folder, self.run, self.record, self.tile = folder, run, record, tile
        self.read_as = _READ_AS[section]
        self.off: list[tuple] = []

    def written_of(self, noisy_path: Path, scale, optics: dict | None = None,
                   pixel_size_angstrom: float | None = None,
                   where: str = "") -> tuple[np.ndarray | None, dict | None, dict | None]:
        """What ``denoise`` wrote for ``noisy_path`` with this model, whatever options made it
        (``--no-ensemble``, ``--raw``, another ``--tile``, ``optics``: a STAR file's, as
        denoise took them), normalised by ``scale``; how it was made: None for the default
        output (the run's default recipe with the tile and ``optics``), else
        :func:`made_otherwise`'s words and steps, said in a note as it is read; and what its
        steps found (its NAME.json's). ``(None, None, None)``, with a note, where there is no
        output of this model and of the micrograph as it is now (another model's, a micrograph
        or model changed since, the sum of its even and odd halves' outputs, no NAME.json): it
        is denoised by default instead. Where its header gives a pixel size 1 % or more
        (:data:`APART`) off ``pixel_size_angstrom`` (the micrograph's here, from ``where``:
        ``"--pixel-size"``, ``"the MRC header of NAME.mrc"``…), it is kept for
        :meth:`warn_pixel_sizes`."""
        if self.folder is None:
            return None, None, None
        from cryostream.denoise.outputs import same_record

        path, written, identity = self._found(noisy_path, optics)
        if not (path.is_file() and _of_this(written, identity, path)):
            self._not_taken(path, noisy_path, written, identity)
            return None, None, None
        image = self._read(path, scale, pixel_size_angstrom, where)
        found = written.get("found") or {}
        if same_record(written, identity, path):
            return image, None, found
        how = made_otherwise(written, identity)
        _log.info("%s: made %s, not as denoise does by default: %s", path, how["words"],
                  self.read_as)
        return image, how, found

    def _found(self, noisy_path: Path, optics: dict | None) -> tuple[Path, dict, dict]:
        """The output of ``noisy_path`` in the folder, its record (``{}`` where there is none)
        and what the default output's record would hold (``optics``: a STAR file's)."""
        from cryostream.config import DenoiseConfig
        from cryostream.denoise.outputs import output_identity, read_record

        path, tile = Path(self.folder) / noisy_path.name, self.tile
        written = read_record(path.with_suffix(".json")) or {}
        given = written.get("given") or {}  # a STAR file's pixel size or defocus: its output
        identity = output_identity(self.run, DenoiseConfig(tile=tile, **(optics or {})).for_run(
            self.record), str(noisy_path.resolve()), given)  # all the same
        if "odd" in given:  # the sum of two halves' outputs, not this micrograph's
            identity["given"] = None
        return path, written, identity

    def _not_taken(self, path: Path, noisy_path: Path, written: dict, identity: dict) -> None:
        """The note of an output not taken, and that the micrograph is denoised here instead."""
        _log.info("%s: %s; %s is denoised here instead, as denoise does by default (the report "
                  "scores the default)", path, (
                      f"not this model's output of {noisy_path} as it is now"
                      + _how(written, identity)) if path.is_file() else "not found",
                  noisy_path.name)

    def _read(self, path: Path, scale, pixel_size_angstrom: float | None, where: str):
        """The output at ``path`` normalised by ``scale``; one whose header gives a pixel size
        :data:`APART` or more off ``pixel_size_angstrom`` kept for :meth:`warn_pixel_sizes`."""
        from cryostream.evaluate.numbers import read_micrograph
        from cryostream.io.mrc import read_header

        theirs = read_header(path).pixel_size_angstrom
        if pixel_size_angstrom and theirs > 0 and not math.isclose(
                theirs, pixel_size_angstrom, rel_tol=APART):
            self.off.append((path, theirs, pixel_size_angstrom, where))
        return read_micrograph(path)[0] / scale

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
    from cryostream.denoise.moved import same_model_state, same_stamps
    from cryostream.denoise.outputs import what_differs

    if not written:
        return " (no NAME.json of denoise's beside it says how it was made)"
    said = what_differs(written, identity)
    if said:
        return said
    changed = ["its micrograph"] * ("input_files" in written and not same_stamps(written, identity))
    changed += ["the model"] * ("model_files" in written and not same_model_state(
        written["model_files"], identity.get("model_files")))
    return (f" ({' and '.join(changed)} changed since it was made)" if changed
            else " (its NAME.json says how it was made)")


def _of_this(written: dict, identity: dict, output: Path | None = None) -> bool:
    """Whether the record ``written`` is of an output of this model and of this micrograph as
    they are now (whatever the options): not of another model or input, nor the sum of an
    even/odd pair's outputs, nor made before the micrograph or the model changed. Paths of a
    project moved since (``output``: the output's path now) are taken as ``denoise`` takes
    them (``moved.same_model_place``, ``same_input_place``), whatever version wrote it."""
    from cryostream.denoise.moved import same_files, same_input_place, same_model_place

    return (bool(written) and isinstance(written.get("config"), dict)
            and same_model_place(written, identity, output)
            and same_input_place(written, identity, output, given=False)
            and "odd" not in (written.get("given") or {})
            # a record from before inputs and models were stamped is taken as it is; stamps
            and same_files(written, identity))  # cut to whole seconds, the same content, too


def made_otherwise(written: dict, identity: dict) -> dict:
    """How an output of this model and micrograph was made otherwise than by default, for the
    report: ``options``, what its NAME.json gives that the default does not (``"ensemble off,
    not on"``), ``recipe``, the steps it applied (``recipe_steps``; None where its record
    cannot be read as a config) and ``words``, both in one phrase: ``"with ensemble off, not
    on (n2n_correction + ctf_gain)"``; the network's output alone where no step was on."""
    from cryostream.config import DenoiseConfig, from_dict
    from cryostream.denoise.outputs import recipe_steps, what_differs
    from cryostream.errors import ConfigError

    options = what_differs(written, identity).removeprefix(" (made with ").removesuffix(")")
    try:  # a record written before the binned pass existed had none
        recipe = recipe_steps(from_dict(DenoiseConfig, {"binned_pass": False,
                                                        **written["config"]}))
    except ConfigError:  # (a newer version's record, say)
        recipe = None
    steps = ("" if recipe is None else f" ({' + '.join(recipe)})" if recipe
             else " (the network's output alone)")
    return {"options": options or "other options", "recipe": recipe,
            "words": f"with {options or 'other options'}{steps}"}
