"""EMPIAR-10025-like micrographs with their ground truth, written as MRC files.

Layout of a simulated set ``OUT``::

    OUT/micrographs/sim_0000.mrc      shot-noise micrographs (float32, pixel size in header)
    OUT/truth/sim_0000.mrc            their noise-free expectations
    OUT/even/sim_0000_EVN.mrc         with ``SimulateConfig.even_odd``: the even- and odd-frame
    OUT/odd/sim_0000_ODD.mrc          halves (MotionCor2's names), ``sim_0000.mrc`` = EVN + ODD
    OUT/micrographs.star              RELION list of micrographs with CTF parameters (and, with
                                      the halves, ``rlnMicrographNameEven/Odd`` as RELION writes)
    OUT/particles.star                particle centres (pixels) and Euler angles; with a
                                      particle other than T20S (``SimulateConfig.particle``)
                                      also each particle's shape as ``rlnClassNumber``
                                      (1 + its index in ``PARTICLE_SHAPES``)
    OUT/simulate.json                 the SimulateConfig, the count and the cryostream
                                      version, written last: a set without it is not
                                      finished; the same call again keeps the set it records
                                      where this version of cryostream made it
    OUT/simulate.unfinished           only while it is being made (or after a stop: run the
                                      same command again), which prepare and evaluate refuse;
                                      it holds the count and config, so only the same
                                      request makes that set whole

Files in ``OUT`` that simulate would write or remove and that no simulation of its own left
there (no ``simulate.json`` or ``simulate.unfinished`` beside them) are refused before anything
is written, ``overwrite`` or not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import starfile
from tqdm.auto import tqdm

from cryostream._version import __version__
from cryostream.config import SimulateConfig, to_json
from cryostream.config.checks import check_config
from cryostream.config.simulate import PARTICLE_SHAPES
from cryostream.errors import ConfigError, StoreError
from cryostream.io.mrc import labelled_by, write_micrograph
from cryostream.io.paths import refuse_read_only
from cryostream.io.simulated import (
    FINISHED,
    UNFINISHED,
    finished_request,
    mark_finished,
    mark_unfinished,
    remove_left_over,
    unfinished_request,
)
from cryostream.script_guard import refuse_script_rerun
from cryostream.simulate.micrograph import SimulatedMicrograph, check_memory, simulate_micrograph
from cryostream.simulate.particles import ParticleModel, particle_model

__all__ = ["SimulatedSet", "simulate", "simulate_micrograph", "SimulatedMicrograph",
           "ParticleModel", "particle_model"]


@dataclasses.dataclass(frozen=True)
class SimulatedSet:
    """Paths of a simulated set written by :func:`simulate`.

    ``evens`` and ``odds`` are the half-sums, one per micrograph in the same order, with
    ``SimulateConfig.even_odd``; empty without. ``kept``: ``out`` held this very simulation
    (the same count and config), finished; it was kept as it is (``seconds`` 0). ``removed``:
    the files of an earlier set in ``out`` that this one does not have (its micrographs beyond
    this set's count, its halves where none are asked for now), which ``overwrite`` removed.
    """

    root: Path
    micrographs: tuple[Path, ...]
    truths: tuple[Path, ...]
    micrographs_star: Path
    particles_star: Path
    seconds: float
    evens: tuple[Path, ...] = ()
    odds: tuple[Path, ...] = ()
    kept: bool = False  # the same simulation was there already: kept, nothing written
    removed: tuple[Path, ...] = ()  # an earlier set's files this one has not: removed

    def __fspath__(self) -> str:
        """The set's folder, so that the set itself may be given where a path is taken
        (``evaluate(truth=sim)``; a command given the folder names its STAR file)."""
        return str(self.root)


def simulate(
    out: str | os.PathLike,
    count: int,
    *,
    shape: tuple[int, int] | None = None,
    seed: int | None = None,
    config: SimulateConfig | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> SimulatedSet:
    """Simulate ``count`` micrographs and write them, with ground truth, under ``out``.

    Parameters
    ----------
    out : path-like
        Output folder (created).
    count : int
        Number of micrographs.
    shape : (int, int), optional
        (rows, columns) in pixels; EMPIAR-10025's size (7676, 7420) by default.
    seed : int, optional
        Seed (0 by default); the same seed gives byte-identical files.
    config : SimulateConfig, optional
        Full control of optics, dose and particles; it holds the shape and the seed too, so
        ``shape`` and ``seed`` are given in it, not beside it.
    overwrite : bool
        Replace an earlier simulation in ``out``; its files this set does not have (its
        micrographs beyond ``count``, its halves where none are asked for) are removed once
        the new set is whole, a stop before leaves them (``SimulatedSet.removed``).
        Without it, a finished set of the same count and config (the same seed: the same
        bytes) is kept as it is and returned at once (``SimulatedSet.kept``), so a notebook
        cell run again costs nothing; a finished set of other arguments is refused, naming
        what differs, and so is one another cryostream version made (or one whose
        ``simulate.json`` records no version), whose simulator may differ.
        A simulation stopped short (``simulate.unfinished`` in ``out``, which ``prepare``
        and ``evaluate`` refuse) is made whole without it by the same call (the same count
        and config); one of other arguments needs it. Files simulate would write or replace
        that no simulation of its own left (no ``simulate.json`` or ``simulate.unfinished``:
        a ``micrographs.star`` or micrographs of your own) are refused even with it, before
        anything is written, never replaced or mixed with simulated ones; so are files of an
        earlier set made read-only (``chmod a-w``), which it would replace or remove.
    progress : bool
        Show a progress bar.

    Returns
    -------
    SimulatedSet
    """
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"count={count!r}: must be an integer ≥ 1")
    check_config("config", config, SimulateConfig)
    if config is not None and (shape is not None or seed is not None):
        given = ", ".join(f"{k}={v!r}" for k, v in (("shape", shape), ("seed", seed))
                          if v is not None)
        raise ConfigError(f"{given} beside config=: the config holds them; give "
                          f"SimulateConfig({given}, ...) alone")
    if shape is not None and (isinstance(shape, str) or not hasattr(shape, "__len__")):
        raise ConfigError(f"shape={shape!r}: give (rows, columns), e.g. shape=(1024, 1024)")
    if config is None:
        config = SimulateConfig(**({"shape": tuple(shape)} if shape is not None else {}),
                                seed=0 if seed is None else seed)
    root = Path(out)
    found = not overwrite and (root / FINISHED).exists()  # this call's set kept, another refused
    refuse_script_rerun("simulate", writes=not found)  # (a worker's run of the script: found)
    request = json.loads(to_json(config))["config"]  # as simulate.json and the note hold it
    if found:  # (no memory asked of a set found again)
        return _finished_again(root, count, config, request)
    check_memory(config)  # before any folder is made
    mic_dir, truth_dir = root / "micrographs", root / "truth"
    half_dirs = (root / "even", root / "odd") if config.even_odd else ()
    ours = _earlier_files(root)
    removed = left_over(root, count, config, ours)  # of ours: those this set has not
    replaced = [*(folder / _image_name(folder, index) for index in range(count)
                  for folder in (mic_dir, truth_dir, *half_dirs)),
                root / "micrographs.star", root / "particles.star", root / FINISHED,
                root / UNFINISHED]  # every file this call writes, where one is there already
    if not (root / FINISHED).exists():  # else an earlier set's files, replaced with overwrite
        _check_earlier(root, count, request, overwrite, [*replaced, *removed], removed)
    if overwrite:  # an earlier set's files made read-only are kept: said before any is written
        refuse_read_only(replaced, "simulate into another folder", removed)
    try:
        for folder in (mic_dir, truth_dir, *half_dirs):
            folder.mkdir(parents=True, exist_ok=True)
        mark_unfinished(root, count, request)  # until the end: prepare and evaluate refuse the set
        (root / FINISHED).unlink(missing_ok=True)  # complete again only at the end
        for path in set(ours) - set(removed):  # an earlier set's, replaced: none is left among
            path.unlink()  # these; those this set has not go once it is whole (remove_left_over)
    except OSError as exc:
        raise StoreError(f"{root}: cannot create the output folder ({exc}); choose another") from None
    start = time.perf_counter()
    mic_rows, particle_rows = [], []
    ps = config.pixel_size_angstrom
    for index in tqdm(range(count), desc="simulate", unit="mic", disable=not progress):
        sim = simulate_micrograph(config, index)
        name = _image_name(mic_dir, index)
        label = f"cryostream simulate seed={config.seed} index={index}"
        write_micrograph(mic_dir / name, sim.noisy, ps, history=label, overwrite=True)
        write_micrograph(truth_dir / name, sim.truth, ps, history=label + " truth", overwrite=True)
        half_names = {}
        for which, folder, image in zip(("Even", "Odd"), half_dirs, (sim.even, sim.odd),
                                        strict=False):
            half = folder / _image_name(folder, index)
            write_micrograph(half, image, ps, history=f"{label} {which.lower()} frames",
                             overwrite=True)
            half_names[f"rlnMicrographName{which}"] = f"{folder.name}/{half.name}"
        mic_rows.append(
            {
                "rlnMicrographName": f"micrographs/{name}",
                **half_names,
                "rlnDefocusU": sim.defocus_u_angstrom,
                "rlnDefocusV": sim.defocus_v_angstrom,
                "rlnDefocusAngle": sim.astigmatism_angle_deg,
                "rlnVoltage": config.voltage_kv,
                "rlnSphericalAberration": config.cs_mm,
                "rlnAmplitudeContrast": config.amplitude_contrast,
                "rlnMicrographPixelSize": ps,
            }
        )
        for p in sim.particles:
            particle_rows.append(
                {
                    "rlnMicrographName": f"micrographs/{name}",
                    "rlnCoordinateX": p.x,
                    "rlnCoordinateY": p.y,
                    "rlnAngleRot": p.rot,
                    "rlnAngleTilt": p.tilt,
                    "rlnAnglePsi": p.psi,
                    "rlnClassNumber": PARTICLE_SHAPES.index(p.shape) + 1,
                }
            )
    mic_star, particle_star = root / "micrographs.star", root / "particles.star"
    starfile.write({"micrographs": pd.DataFrame(mic_rows)}, mic_star, overwrite=True)
    columns = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"]
    columns += ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    if config.particle != "t20s":
        columns.append("rlnClassNumber")
    starfile.write({"particles": pd.DataFrame(particle_rows, columns=columns)}, particle_star,
                   overwrite=True)
    remove_left_over(root, removed, half_dirs)  # only now: a stop before leaves them, and the note
    done = {**json.loads(to_json(config)), "count": count}  # what a call again compares
    mark_finished(root, json.dumps(done, sort_keys=True) + "\n")  # last
    return dataclasses.replace(_set_of(root, count, config, time.perf_counter() - start),
                               removed=tuple(removed))


def _set_of(root: Path, count: int, config: SimulateConfig, seconds: float,
            kept: bool = False) -> SimulatedSet:
    """The paths of the set of ``count`` micrographs with ``config`` in ``root``."""
    folders = ("micrographs", "truth", *(("even", "odd") if config.even_odd else ()))
    paths = {name: tuple(root / name / _image_name(root / name, index) for index in range(count))
             for name in folders}
    return SimulatedSet(root=root, micrographs=paths["micrographs"], truths=paths["truth"],
                        micrographs_star=root / "micrographs.star",
                        particles_star=root / "particles.star", seconds=seconds,
                        evens=paths.get("even", ()), odds=paths.get("odd", ()), kept=kept)


def _finished_again(root: Path, count: int, config: SimulateConfig,
                    request: dict) -> SimulatedSet:
    """The finished set in ``root`` when it is this call's (``count`` micrographs with
    ``config``, ``request`` as ``simulate.json`` holds it, made by this cryostream version,
    every file there), kept as it is; else a :class:`StoreError` saying what differs (the
    version too), or which file is gone or was changed after the set was finished (newer than
    ``simulate.json``)."""
    done = finished_request(root)
    if done is None:
        raise StoreError(f"{root / FINISHED}: cannot be read as the record of a cryostream "
                         "simulate, so whether it holds this simulation is not known; pass "
                         "overwrite=True (--overwrite) to simulate it again, or choose another "
                         "folder")
    old = done["config"]
    differs = ([f"count {done['count']} there, {count} asked for"]
               if done["count"] != count else [])
    differs += [f"{key} {_shown(old.get(key))} there, {_shown(request.get(key))} asked for"
                for key in sorted(set(old) | set(request)) if old.get(key) != request.get(key)]
    made = done["version"]  # None where simulate.json records none: another version's too
    if differs:
        if made != __version__:
            differs.append(f"cryostream version {made or 'not recorded'} there, "
                           f"{__version__} here")
        raise StoreError(f"{root} already holds a simulated set of other arguments "
                         f"({'; '.join(differs)}); pass overwrite=True (--overwrite) to "
                         f"replace it{_and_remove(root, left_over(root, count, config))}, or "
                         "choose another folder")
    if made != __version__:  # its simulator may differ: not this version's output to keep
        by = f"cryostream {made}" if made else f"a cryostream version its {FINISHED} does not record"
        raise StoreError(f"{root} holds a simulated set of these arguments made by {by}, not by "
                         f"this version ({__version__}), whose simulator may make other images; "
                         "pass overwrite=True (--overwrite) to simulate it again with this "
                         "version, or choose another folder")
    kept = _set_of(root, count, config, 0.0, kept=True)
    files = (*kept.micrographs, *kept.truths, *kept.evens, *kept.odds, kept.micrographs_star,
             kept.particles_star)
    gone = next((p for p in files if not p.is_file()), None)
    if gone is not None:
        raise StoreError(f"{root} holds this simulation, but {gone} is gone; pass "
                         "overwrite=True (--overwrite) to simulate the set again, or choose "
                         "another folder")
    finished = (root / FINISHED).stat().st_mtime_ns  # written last: a file newer was changed
    changed = next((p for p in files if p.stat().st_mtime_ns > finished), None)
    if changed is not None:
        raise StoreError(f"{root} holds this simulation, but {changed} was changed after it "
                         "was finished (or the set was copied without its times); pass "
                         "overwrite=True (--overwrite) to simulate the set again, or choose "
                         "another folder")
    return kept


def _shown(value) -> str:
    """A config value as a command's flags take it (a pair as ``1024 1024``)."""
    if value is None:
        return "none"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _image_name(folder: Path, index: int) -> str:
    """The name of micrograph ``index``'s image in ``folder`` (micrographs, truth, even, odd)."""
    suffix = {"even": "_EVN", "odd": "_ODD"}.get(folder.name, "")
    return f"sim_{index:04d}{suffix}.mrc"


def _check_earlier(root: Path, count: int, request: dict, overwrite: bool,
                   paths: list[Path], removed: list[Path]) -> None:
    """Refuse, with a :class:`StoreError`, files among ``paths`` (those simulate would write
    or remove in ``root``, in that order) that no simulation of its own left there: without
    ``root``'s ``simulate.unfinished`` (or ``simulate.json``) the first of them there is named;
    with a ``simulate.unfinished`` of another count or config (``request``, as
    ``simulate.json`` holds it), that note unless ``overwrite``. A stopped simulation of this
    count and config (an older note holds only the count) is made whole; a note that cannot
    be read is named, and replaced with ``overwrite``. Each fix with ``overwrite`` names the
    files of ``root`` it would remove, ``removed`` (:func:`_and_remove`)."""
    removing = _and_remove(root, removed)
    note = unfinished_request(root)
    if note is not None:
        if overwrite or (note["count"] == count and note["config"] in (None, request)):
            return
        raise StoreError(
            f"{root / UNFINISHED}: a cryostream simulate of other arguments ({note['count']} "
            "micrographs or another config) started this set and did not finish it; run that "
            f"command again to make it whole, pass --overwrite (overwrite=True) to replace "
            f"it{removing}, or simulate into another folder")
    if os.path.lexists(root / UNFINISHED):  # there, but unreadable: cut short as it was written
        if overwrite:
            return
        raise StoreError(
            f"{root / UNFINISHED}: the note of a cryostream simulate that did not finish this "
            "set, damaged (it cannot be read), so which command would finish the set is not "
            "known; pass --overwrite (overwrite=True) to make it again from the start"
            f"{removing}, or simulate into another folder")
    # a set a version before the note stopped (its micrographs alone, labelled by simulate) is
    # made again with overwrite; any other file there is refused, overwrite or not
    taken = next((p for p in paths if os.path.lexists(p) and not (
        p.suffix == ".mrc" and labelled_by(p, "cryostream simulate"))), None)
    stopped = None if taken or overwrite else next((p for p in paths if os.path.lexists(p)), None)
    if stopped is not None:
        raise StoreError(
            f"{stopped}: written by a cryostream simulate that did not finish its set and left "
            f"no note of its arguments (an earlier version's: no {UNFINISHED} or {FINISHED} in "
            f"{root}); pass --overwrite (overwrite=True) to make the set again from the start"
            f"{removing}, or simulate into another folder")
    if taken is not None:
        raise StoreError(
            f"{taken}: already there, and not written by a cryostream simulate that this one "
            f"could finish (no {UNFINISHED} or {FINISHED} in {root}); simulate into another "
            "folder, or move the files simulate writes (micrographs/, truth/, even/, odd/, "
            f"micrographs.star, particles.star, {FINISHED}) out of {root} first")


_OURS = re.compile(r"sim_\d{4,}(_EVN|_ODD)?\.mrc")
_IMAGES = ("micrographs", "truth", "even", "odd")  # the folders of a set's images


def _earlier_files(root: Path) -> list[Path]:
    """The files an earlier simulation wrote in ``root``'s image folders, to be replaced; a
    :class:`StoreError` where those folders hold any other file (never mixed in, never
    deleted)."""
    found = [p for name in _IMAGES if (root / name).is_dir()
             for p in sorted((root / name).iterdir()) if not p.name.startswith(".")]
    other = [p for p in found if not (p.is_file() and _OURS.fullmatch(p.name))]
    if other:
        shown = ", ".join(f"{p.parent.name}/{p.name}" for p in other[:3])
        raise StoreError(f"{root}: holds files simulate did not make ({shown}"
                         f"{' …' if len(other) > 3 else ''}); simulate into another folder, so "
                         "that simulated and other micrographs are not mixed")
    return found


def left_over(root: Path, count: int, config: SimulateConfig,
               earlier: list[Path] | None = None) -> list[Path]:
    """The files of an earlier set in ``root`` (named as simulate names them; ``earlier``:
    :func:`_earlier_files`, if listed already) that a set of ``count`` micrographs with
    ``config`` does not have: its micrographs beyond ``count``, its halves where ``config``
    asks for none. Simulating that set there removes them."""
    new = _set_of(root, count, config, 0.0)
    have = {*new.micrographs, *new.truths, *new.evens, *new.odds}
    if earlier is None:
        earlier = [p for name in _IMAGES if (root / name).is_dir()
                   for p in sorted((root / name).iterdir()) if _OURS.fullmatch(p.name)]
    return [p for p in earlier if p not in have]


def _and_remove(root: Path, paths: list[Path]) -> str:
    """The words a fix with ``overwrite`` ends with where it would remove ``paths`` of
    ``root`` (:func:`left_over`): `` and remove its 2 files this set does not have
    (micrographs/sim_0001.mrc, truth/sim_0001.mrc)``; none where there are none."""
    if not paths:
        return ""
    files = f"{len(paths)} files" if len(paths) > 1 else "file"
    return f" and remove its {files} this set does not have ({named_files(root, paths)})"


def named_files(root: Path, paths: list[Path]) -> str:
    """``paths`` of ``root`` in words: up to three named (``micrographs/sim_0002.mrc,
    truth/sim_0002.mrc``), more counted in each folder, its first and last named
    (``4 in micrographs/: sim_0002.mrc … sim_0005.mrc; 6 in even/: …``), so that no folder
    among them goes unsaid."""
    if len(paths) <= 3:
        return ", ".join(p.relative_to(root).as_posix() for p in paths)
    folders: dict[str, list[str]] = {}
    for path in paths:
        folders.setdefault(path.parent.relative_to(root).as_posix(), []).append(path.name)
    return "; ".join(f"{len(names)} in {folder}/: " + (f"{names[0]} … {names[-1]}" if len(
        names) > 2 else ", ".join(names)) for folder, names in folders.items())
