"""Where denoised micrographs go, checked before any computing: one output per input inside
the output folder, none replacing an input, finished ones found and skipped, each written
whole or not at all."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from cryostream.errors import ConfigError, StoreError

__all__ = ["OutputPlan", "plan_outputs", "check_writable", "write_output", "same_record",
           "output_identity", "output_record", "history_label", "made_by_denoise"]


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """One input's output: ``path`` (``OUT/NAME.mrc``), its record ``sidecar`` (``NAME.json``)
    and whether a finished output of the same run, config and input is already there."""

    source: str
    name: str
    path: Path
    sidecar: Path
    done: bool


def same_record(sidecar: Path, record: dict) -> bool:
    """Whether ``sidecar`` holds ``record`` (the version aside): a finished output of the same
    run, config and input."""
    try:
        found = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    keys = ("run", "input", "config")
    return isinstance(found, dict) and all(found.get(k) == record[k] for k in keys)


def plan_outputs(sources: list[str], output, records: list[dict], *,
                 overwrite: bool) -> list[OutputPlan]:
    """The output of each input in the folder ``output``, or a :class:`ConfigError` before
    anything is computed or written.

    Refused: two inputs with one file name (their outputs would collide), an output that is
    an input, a ``NAME.mrc`` already there that is not a finished output of the same run,
    config and input (unless ``overwrite``), and a folder that cannot be written. A
    ``NAME.mrc`` written by ``denoise`` without its ``NAME.json`` (interrupted between the two)
    is made again.
    """
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out}: exists and is not a folder; denoised micrographs go into a "
                          "folder: choose a new name")
    names = [Path(s).stem for s in sources]
    seen: dict[str, str] = {}
    for source, name in zip(sources, names, strict=True):
        if name in seen:
            raise ConfigError(f"{seen[name]} and {source} share the name {name!r}: their outputs "
                              f"would both be {out / (name + '.mrc')}; denoise them into separate "
                              "folders (-o)")
        seen[name] = source
    inputs = {Path(s).resolve() for s in sources}
    plans = []
    for source, name, record in zip(sources, names, records, strict=True):
        path = out / f"{name}.mrc"
        if path.resolve() in inputs:
            raise ConfigError(f"-o {out}: the output {path} would replace the input micrograph "
                              "itself; choose another output folder")
        sidecar = path.with_suffix(".json")
        done = path.is_file() and same_record(sidecar, record)
        unfinished = path.is_file() and not sidecar.exists() and made_by_denoise(path)
        if path.exists() and not done and not unfinished and not overwrite:
            raise ConfigError(f"{path} exists and is not this run's output for {source} with "
                              "these options; pass --overwrite to replace it, or choose another "
                              "output folder (-o)")
        plans.append(OutputPlan(source, name, path, sidecar, done and not overwrite))
    return plans


def made_by_denoise(path: Path) -> bool:
    """Whether an MRC file's labels say ``cryostream denoise`` wrote it: without its record, it
    is an output interrupted between its image and its record, safe to make again."""
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            return any(label.startswith("cryostream denoise") for label in mrc.get_labels())
    except (OSError, ValueError):
        return False


def check_writable(folder: Path) -> None:
    """Make ``folder`` and prove a file can be written there, or a :class:`StoreError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".cryostream-write-test"):
            pass
    except OSError as exc:
        raise StoreError(f"-o {folder}: cannot write there ({exc.strerror or exc}); choose a "
                         "folder you can write to") from None


def write_output(plan: OutputPlan, estimate: np.ndarray, pixel_size_angstrom: float,
                 label: str, record: dict) -> str:
    """Write ``NAME.mrc`` and its record ``NAME.json``, each through a temporary name and a
    rename, the record last: a finished output is the pair.

    Nothing partial survives an error (a full disk included): the temporary files are removed,
    an earlier output of the name stays as it was, and a :class:`StoreError` names the file.
    Non-finite pixels are refused before anything is written.
    """
    from cryostream.io.mrc import write_micrograph

    if not np.isfinite(estimate).all():
        raise StoreError(f"{plan.source}: denoising gave non-finite pixels, so nothing was "
                         "written; the run's checkpoint may be damaged (train it again, or "
                         "pass another --model)")
    partial = plan.sidecar.with_name(f".{plan.sidecar.name}.partial")
    try:
        partial.write_text(json.dumps(record, indent=1))
        write_micrograph(plan.path, estimate, pixel_size_angstrom, history=label, overwrite=True)
        os.replace(partial, plan.sidecar)
    except OSError as exc:
        partial.unlink(missing_ok=True)  # an earlier output of this name stays as it was
        raise StoreError(f"{plan.path}: could not be written ({exc.strerror or exc}); free some "
                         "space or choose another output folder, then run the same command "
                         "again (finished micrographs are kept)") from None
    return str(plan.path)


def output_identity(run, config, source: str) -> dict:
    """What makes two outputs the same: the run, the input and the config (JSON values)."""
    from cryostream.config import to_dict

    return {"run": str(run), "input": str(source), "config": to_dict(config)}


def output_record(run, config, source: str, found: dict) -> dict:
    """What an output says of how it was made: the run, the config, the input, the cryostream
    version and what the steps found on the micrograph (``NAME.json`` beside ``NAME.mrc``)."""
    from cryostream._version import __version__

    return {"kind": "DenoiseOutput", "cryostream_version": __version__,
            **output_identity(run, config, source), "found": found}


def history_label(run: str, config) -> str:
    """The MRC history label: the run's name and the steps applied."""
    steps = [s.name for s in config.pipeline().steps]
    if config.ensemble:
        steps.insert(0, "ensemble")
    return f"cryostream denoise {Path(run).name}" + (f" {'+'.join(steps)}" if steps else "")
