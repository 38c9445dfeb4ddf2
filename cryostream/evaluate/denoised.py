"""What ``denoise`` wrote in a folder (``evaluate --denoised``), read for the report as this
model's default output of a micrograph instead of denoising it again."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["DenoisedOutputs"]

_log = logging.getLogger("cryostream")


class DenoisedOutputs:
    """The default outputs of ``run`` that ``denoise`` wrote in ``folder`` (None: no folder
    given, none read), with ``tile``; :meth:`default_of` reads one."""

    def __init__(self, folder, run: str, record, tile: int | None):
        self.folder, self.run, self.record, self.tile = folder, run, record, tile

    def default_of(self, noisy_path: Path, scale,
                   optics: dict | None = None) -> tuple[np.ndarray | None, dict | None]:
        """What ``denoise`` wrote for ``noisy_path`` with the run's default recipe, the tile and
        ``optics`` (a STAR file's, as denoise took them; checked through its NAME.json),
        normalised by ``scale``, and what its steps found; ``(None, None)``, with a note, when
        there is none."""
        if self.folder is None:
            return None, None
        from cryostream.config import DenoiseConfig
        from cryostream.denoise.outputs import output_identity, read_record, same_record
        from cryostream.evaluate.numbers import read_micrograph

        path, tile = Path(self.folder) / noisy_path.name, self.tile
        record_path = path.with_suffix(".json")
        written = read_record(record_path) or {}
        given = written.get("given") or {}  # a STAR file's pixel size or defocus: its output
        identity = output_identity(self.run, DenoiseConfig(tile=tile, **(optics or {})).for_run(
            self.record), str(noisy_path.resolve()), given)  # all the same
        if "odd" in given:  # the sum of two halves' outputs, not this micrograph's
            identity["given"] = None
        if not (path.is_file() and same_record(record_path, identity)):
            _log.info("%s: %s; %s is denoised here instead, as denoise does by default", path, (
                f"not this model's default output of {noisy_path}" + (
                    f" with --tile {tile}" if tile else "") + " (its NAME.json says how it was "
                "made)") if path.is_file() else "not found", noisy_path.name)
            return None, None
        return read_micrograph(path)[0] / scale, written.get("found") or {}
