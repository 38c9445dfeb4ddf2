"""Where :func:`cryostream.prepare.prepare` writes: the output checked before any work, the
resumable shard folder (its fingerprint and caches), and a replaced store swapped in whole.

A store is ``DATA.h5`` (the master) and ``DATA.h5.shards/`` (shards, ``prepare.json`` — the
fingerprint of the inputs and options —, ``statistics.json`` and the noise estimates). A run
without ``overwrite`` fills the shard folder in place, so an interrupted run resumes; inputs
whose size or modification time changed since are prepared again (their statistics, noise
estimates and shards dropped). With ``overwrite`` the new store is built in ``.DATA.h5.new/``
beside the old one and moved into place only when complete; a failure removes it and leaves
the old store as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cryostream.config import PrepareConfig, to_dict
from cryostream.errors import ConfigError, StoreError
from cryostream.io.paths import same_file
from cryostream.io.stack import micrograph_uid
from cryostream.matched import NoiseEstimate, noise_kernel
from cryostream.prepare_result import STAMP_NAME, differences
from cryostream.preprocess import band_layout
from cryostream.store import STORE_FORMAT, shard_folder

__all__ = [
    "Workspace",
    "check_output",
    "check_patch_size",
    "check_stride",
    "staging_folder",
    "settle_replacement",
    "fingerprint",
    "open_workspace",
    "noise_file",
    "noise_table",
    "save_estimate",
    "load_estimate",
    "read_statistics",
    "write_statistics",
]

_log = logging.getLogger("cryostream")
_STAMP = STAMP_NAME
_STATISTICS = "statistics.json"


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def staging_folder(output: Path) -> Path:
    """Where ``overwrite`` builds the new store before it replaces ``output``."""
    return output.with_name(f".{output.name}.new")


def settle_replacement(output: Path) -> None:
    """Finish the bookkeeping of a replacement (:meth:`Workspace.finish`) that a kill stopped:
    where the old store was set aside and the new master had not landed, the old store goes
    back in place (the new shards back to the staging folder, where ``--overwrite`` resumes
    them); where the new master landed, the set-aside old store is removed."""
    staging = staging_folder(output)
    aside, shards = staging / "replaced", shard_folder(output)
    if not aside.is_dir():
        return
    if output.exists():  # the new store is whole in place: only the old one's copy is left
        if not (staging / output.name).exists():
            shutil.rmtree(staging, ignore_errors=True)
        return
    if shards.exists() and not (staging / shards.name).exists():  # the new shards moved in
        os.replace(shards, staging / shards.name)
    for path in (output, shards):
        if (aside / path.name).exists():
            os.replace(aside / path.name, path)
    aside.rmdir()


def check_output(output: Path, inputs: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Refuse an output that cannot be a store, before anything is read or written.

    Refused: an existing folder; a path that is one of ``inputs`` (micrographs, targets, STAR
    files) or whose shard or staging folder holds one; an existing file that is not a store (a
    micrograph, a user's own HDF5 file): only stores, whole or damaged, are replaced. An
    existing store without ``overwrite`` passes: once the inputs are read it is kept or
    refused (:func:`cryostream.prepare_result.keep_finished`).

    Raises
    ------
    StoreError
        Naming the output and the fix.
    """
    if output.is_dir():
        raise StoreError(f"{output}: is a folder, not a store file; give the store's file name, "
                         f"e.g. -o {output / 'data.h5'}")
    for item in inputs:
        path = Path(item)
        if same_file(path, output):
            raise StoreError(f"{output}: the output (-o) is one of the input micrographs; give "
                             "the store another name, e.g. -o data.h5")
        for folder in (shard_folder(output), staging_folder(output)):
            if _inside(path, folder):
                raise StoreError(f"{output}: its folder {folder} holds the input {path}; move the "
                                 "inputs or give the store another name")
    if output.exists() and (kind := _not_a_store(output)):
        raise StoreError(f"{output} exists and is {kind}, not a cryostream store; "
                         f"{'--overwrite replaces only stores: ' * overwrite}choose another "
                         "name for the store")


def _not_a_store(path: Path) -> str | None:
    """What ``path`` is if it is plainly not a store (``None`` for a store, a damaged one, one
    beside its shards folder, or an empty file): not a regular file, not an HDF5 file, or a
    readable HDF5 file without a store's format."""
    import h5py

    if not path.is_file():
        return "not a regular file"
    if shard_folder(path).is_dir() or path.stat().st_size == 0:
        return None  # its shards are beside it (however damaged the master), or nothing to lose
    if not h5py.is_hdf5(path):
        return "not an HDF5 file (an MRC micrograph?)" if path.suffix.lower() in (".mrc", ".mrcs") \
            else "not an HDF5 file"
    try:
        with h5py.File(path, "r") as f:
            known = str(f.attrs.get("format", "")).split("/")[0] == STORE_FORMAT.split("/")[0]
    except Exception:  # noqa: BLE001 — damaged in any way HDF5 can say: a store cut short
        return None
    return None if known else "an HDF5 file of something else"


def _file_stamp(path: str) -> list[int]:
    return [(stat := os.stat(path)).st_size, stat.st_mtime_ns]


def fingerprint(config: PrepareConfig, headers, target_headers) -> dict:
    """What a store's shards are made from: the options, the inputs and each input's size and
    modification time, and the band heights (one shard per band). A resumed run must have the
    same options and inputs; inputs that changed since are prepared again, and so are all the
    shards when the bands differ (shards of an older cryostream)."""
    layout = band_layout(headers[0].shape, config.patch_size, config.stride, config.edge)
    return {"config": to_dict(config), "sources": [h.path for h in headers],
            "targets": [h.path for h in target_headers or ()],
            "files": {"sources": [_file_stamp(h.path) for h in headers],
                      "targets": [_file_stamp(h.path) for h in target_headers or ()]},
            "band_heights": list(layout.heights)}


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Where a run writes: ``output`` (the master) and ``folder`` (the shards), which are the
    store itself, or under ``staging`` when the run replaces the store ``final``."""

    final: Path
    output: Path
    folder: Path
    staging: Path | None

    def finish(self) -> None:
        """Move a staged store into place: the old master and shards aside, the new shards and
        then the new master in, the old store removed. Without staging there is nothing to do."""
        if self.staging is None:
            return
        shards, aside = shard_folder(self.final), self.staging / "replaced"
        aside.mkdir(exist_ok=True)
        moved: list[tuple[Path, Path]] = []
        try:
            for path in (self.final, shards):
                if path.exists() or path.is_symlink():
                    os.replace(path, aside / path.name)
                    moved.append((aside / path.name, path))
            os.replace(self.folder, shards)
            moved.append((shards, self.folder))
            os.replace(self.output, self.final)
        except OSError as exc:
            for source, back in reversed(moved):
                os.replace(source, back)
            raise StoreError(f"{self.final}: could not move the new store into place ({exc}); "
                             "the old store is unchanged") from None
        shutil.rmtree(self.staging, ignore_errors=True)

    def abandon(self) -> None:
        """Remove a staged store after a failure (the old store stays as it was)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def open_workspace(output: Path, overwrite: bool, stamp: dict) -> Workspace:
    """Prepare the shard folder of a run with fingerprint ``stamp`` (see :func:`fingerprint`).

    Without ``overwrite`` the store's own shard folder is used: a folder of another run's
    options or inputs is refused if it holds shards, and cleared if it holds only caches (a run
    refused after pass 1, whose fix is other options); inputs changed since the interrupted run
    lose their cached statistics, noise estimates and shards. With ``overwrite`` the new store
    goes to a staging folder beside the old one (an interrupted replacement with the same
    fingerprint resumes).

    Raises
    ------
    StoreError
        Another run's shards, a damaged fingerprint file, or an output that is not writable.
    """
    if overwrite:
        staging = staging_folder(output)
        work = Workspace(output, staging / output.name,
                         staging / shard_folder(output).name, staging)
        if staging.exists() and not _resumable(work.folder, stamp):
            shutil.rmtree(staging)
    else:
        work = Workspace(output, output, shard_folder(output), None)
        if (work.folder / _STAMP).exists() and not _resumable(
                work.folder, stamp, refuse=any(work.folder.glob("*.h5"))):
            shutil.rmtree(work.folder)  # no shards: a refused run's caches, nothing to keep
    try:
        work.folder.mkdir(parents=True, exist_ok=True)
        probe = work.folder / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
        _replace_whole(work.folder / _STAMP, lambda partial: partial.write_text(  # whole or
            json.dumps(stamp, sort_keys=True)))  # not at all: the shards' key, rewritten here
    except OSError as exc:
        work.abandon()
        if isinstance(exc, StoreError):  # the fingerprint could not be written: it says so
            raise
        raise StoreError(f"{output}: the output location is not writable ({exc}); "
                         "choose another path") from None
    for leftover in work.folder.glob("*.partial"):
        leftover.unlink()
    return work


def _resumable(folder: Path, stamp: dict, refuse: bool = False) -> bool:
    """Whether ``folder`` holds shards of a run with ``stamp``'s options and inputs; drop what
    it cached of inputs changed since. A mismatch returns False, or raises with ``refuse``."""
    path = folder / _STAMP
    try:
        old = json.loads(path.read_text())
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        if not refuse:
            return False
        raise StoreError(f"{path}: damaged ({exc}); pass overwrite=True (--overwrite) to start "
                         "again") from None
    if any(old.get(key) != stamp[key] for key in ("config", "sources", "targets")):
        if not refuse:
            return False
        said = differences(old, {k: stamp[k] for k in ("config", "sources", "targets")})
        raise StoreError(f"{folder} holds shards of a run with other inputs or options: "
                         f"{'; '.join(said)}; pass overwrite=True (--overwrite) to start again")
    if old.get("band_heights") != stamp["band_heights"]:  # shards cut in other bands
        shards = list(folder.glob("*.h5"))
        for shard in shards:
            shard.unlink()
        if shards:
            _log.info("%s: its shards were cut in other bands (an older cryostream): making "
                      "them again", folder)
    files = old.get("files")
    if not isinstance(files, dict):  # a run of an older version: sizes and times unknown
        _drop(folder, stamp["sources"])
        _log.info("%s records no sizes and times of its inputs: preparing them all again", path)
        return True
    changed = []
    for kind in ("sources", "targets"):
        before = files.get(kind)
        for i, (path_now, now) in enumerate(zip(stamp[kind], stamp["files"][kind], strict=True)):
            if not isinstance(before, list) or i >= len(before) or before[i] != now:
                changed.append((i, path_now))
    if changed:
        _drop(folder, sorted({stamp["sources"][i] for i, _ in changed}))
        names = ", ".join(Path(p).name for _, p in changed[:3]) + (" …" if len(changed) > 3 else "")
        _log.info("%s changed since the interrupted run: preparing %s again", names,
                  "it" if len(changed) == 1 else "them")
    return True


def _drop(folder: Path, sources: list[str]) -> None:
    """Forget what the folder holds of ``sources``: statistics, noise estimates and shards."""
    statistics = read_statistics(folder)
    if any(s in statistics for s in sources):
        write_statistics(folder, {k: v for k, v in statistics.items() if k not in sources})
    for source in sources:
        noise_file(folder, source).unlink(missing_ok=True)
        for name in {source, Path(source).stem}:  # the uid follows the name the store gives it
            for shard in folder.glob(f"{micrograph_uid(name):016x}-*.h5"):
                shard.unlink()


def noise_file(folder: Path, source: str) -> Path:
    """Where pass 1 caches one micrograph's noise estimate (raw units)."""
    return folder / f"noise-{hashlib.sha1(source.encode()).hexdigest()[:16]}.npz"


def _replace_whole(path: Path, write) -> None:
    """``write(partial)``, then ``partial`` renamed to ``path``: whole or not at all. A full
    disk is a StoreError; neither it nor a stop (Ctrl-C, SIGTERM) leaves the partial file."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if not isinstance(exc, OSError) or isinstance(exc, StoreError):
            raise
        raise StoreError(f"{path}: could not write it ({exc.strerror or exc}); free disk space "
                         "and run the same command again") from None


def save_estimate(path: Path, estimate: NoiseEstimate) -> None:
    """Write a noise estimate atomically (:func:`_replace_whole`)."""
    def write(partial: Path) -> None:
        with open(partial, "wb") as f:
            np.savez(f, **estimate.to_arrays())
    _replace_whole(path, write)


def load_estimate(path: Path) -> NoiseEstimate | None:
    """A cached noise estimate; ``None`` when the file is missing or damaged."""
    try:
        with np.load(path) as f:
            return NoiseEstimate.from_arrays(f)
    except FileNotFoundError:
        return None
    except Exception as exc:  # OSError, ValueError, zipfile.BadZipFile, a missing array, ...
        _log.info("%s is damaged (%s): measuring its micrograph again", path.name, exc)
        return None


def _valid_statistics(value) -> bool:
    return (isinstance(value, list) and len(value) == 7 and isinstance(value[1], bool)
            and (value[4] is None or isinstance(value[4], str))  # mostly blank: what is
            and type(value[5]) is int and isinstance(value[6], int | float)  # cold pixels
            and all(isinstance(v, int | float) and not isinstance(v, bool)
                    for v in (value[0], value[2], value[3]))
            and (not value[1] or all(math.isfinite(v) for v in (value[0], value[2], value[3]))))


def read_statistics(folder: Path) -> dict[str, list]:
    """The cached per-micrograph statistics (``{}`` when none); a damaged file or entry is
    dropped with a note, and measured again."""
    path = folder / _STATISTICS
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        _log.info("%s is damaged (%s): measuring the micrographs again", path, exc)
        return {}
    return {k: v for k, v in found.items() if _valid_statistics(v)}


def write_statistics(folder: Path, statistics: dict[str, list]) -> None:
    """Write the per-micrograph statistics atomically (:func:`_replace_whole`)."""
    _replace_whole(folder / _STATISTICS, lambda partial: partial.write_text(json.dumps(statistics)))


def check_stride(config: PrepareConfig) -> None:
    """Refuse a stride above the patch for a new grid (stores made so before still load)."""
    if config.stride > config.patch_size:
        raise ConfigError(f"stride={config.stride} is larger than patch_size={config.patch_size}: "
                          "the pixels between patches would never be seen; give a stride of at "
                          f"most {config.patch_size} (--stride), or leave it out for half the patch")


def check_patch_size(config: PrepareConfig, multiple: int, model: str | None = None) -> None:
    """Refuse a patch side the networks cannot take (not a multiple of ``multiple``), and a
    stride above the patch (:func:`check_stride`). ``model``: the preset that needs
    ``multiple`` where the others need less (``unet-deep``), for the message."""
    check_stride(config)
    if config.patch_size % multiple:
        fix = max(multiple, config.patch_size // multiple * multiple)  # down: it still fits
        who = f"{model} (--model) needs" if model else "the U-Net presets need"
        raise ConfigError(f"patch_size={config.patch_size} (--patch): {who} patch sides that are "
                          f"multiples of {multiple}; use --patch {fix}")


def noise_table(folder: Path, headers, percentiles: np.ndarray, config: PrepareConfig) -> dict:
    """Per-micrograph noise estimates in normalised units, stacked for the master file.

    Keys: ``psd`` (n, TILE, TILE), ``radial``, ``total_radial`` (n, TILE / 2), ``variance``,
    ``mean``, ``shot_fraction`` (the one used: the config's or the estimate), ``shot_fitted``,
    ``equivalent_dose``, ``anisotropy`` and, for matched noise, ``kernel`` (n, 2R + 1, 2R + 1).
    """
    estimates = []
    for h, p in zip(headers, percentiles, strict=True):
        path = noise_file(folder, h.path)
        if not path.exists():  # smaller than one estimation tile
            if config.noise.model == "matched":
                raise ConfigError(f"noise=matched: {h.path} is under 32 pixels on a side, too "
                                  "small to measure its noise; use another --noise")
            return {}
        estimate = load_estimate(path)
        if estimate is None:
            raise StoreError(f"{path}: damaged while this run used it; run the same command "
                             "again")
        estimates.append(estimate.scaled(1.0 / p))
    table = {k: np.stack([e.to_arrays()[k] for e in estimates]) for k in estimates[0].to_arrays()}
    if config.noise.shot is not None:
        table["shot_fraction"] = np.full(len(estimates), config.noise.shot)
    if config.noise.model == "matched":
        tile = table["psd"].shape[-1]
        if 2 * config.noise.radius + 1 > tile:
            raise ConfigError(f"radius={config.noise.radius}: the noise spectra are measured on "
                              f"{tile}-pixel tiles; use --noise-radius ≤ {(tile - 1) // 2}")
        table["kernel"] = np.stack([noise_kernel(e.psd, config.noise.radius) for e in estimates])
    return table
