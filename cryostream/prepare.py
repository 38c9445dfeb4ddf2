"""``cryostream.prepare``: micrographs → normalised, patched, noised HDF5 store.

Two passes over the lazy stack: exact per-micrograph percentiles, then ``map_overlap`` over row
bands, each task cutting its patches, adding noise and writing its own shard. Finished shards
survive an interrupted run and are skipped by the next one; the master file appears only when
all is written. The same run on a finished store keeps it (:mod:`cryostream.prepare_result`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import dask
import numpy as np

from cryostream._version import __version__
from cryostream.cluster import (
    PeakMemory,
    check_cluster_options,
    compute_context,
    computer,
    task_function,
)
from cryostream.config import NoiseConfig, PrepareConfig, to_dict, to_json
from cryostream.config.checks import check_config
from cryostream.errors import ConfigError, InvalidMicrographError
from cryostream.interrupts import say_kept
from cryostream.io.paths import refuse_read_only
from cryostream.io.simulated import check_sets_finished
from cryostream.io.stack import (
    MicrographSkippedWarning,
    expand_inputs,
    listed_inputs,
    micrograph_names,
    micrograph_uid,
    stack_from_headers,
)
from cryostream.locks import store_lock
from cryostream.prepare_checks import (
    check_counts,
    check_targets,
    read_inputs,
    warn_blank,
    warn_hot,
)
from cryostream.prepare_halves import HalfDirections, check_halves_config, half_directions
from cryostream.prepare_output import (
    check_output,
    check_patch_size,
    fingerprint,
    load_estimate,
    noise_file,
    noise_table,
    open_workspace,
    read_statistics,
    save_estimate,
    settle_replacement,
    write_statistics,
)
from cryostream.prepare_result import STAMP_NAME, PrepareResult, keep_finished, note_made_up_noise
from cryostream.preprocess import (
    band_layout,
    band_patch_views,
    check_statistics,
    noise_measurable,
    normalised_and_noisy,
    overlap_bands,
    statistics_and_noise,
)
from cryostream.progress import PrepareProgress
from cryostream.schedulers import reachable_scheduler, scheduler_address
from cryostream.script_guard import refuse_script_rerun
from cryostream.split import split_micrographs
from cryostream.store import shard_folder, shard_name, write_master, write_shard

__all__ = ["MODEL_MULTIPLE", "PrepareResult", "prepare"]

#: Patch sides must be multiples of this: the pooling factor of the U-Net presets of five
#: levels (tests/test_prepare.py checks it); ``train`` refuses a store whose patches the
#: ``unet-deep`` preset (six levels, multiples of 64) cannot take. A number here, so that
#: preparing a store does not import JAX.
MODEL_MULTIPLE = 32


def _write_band_block(block, block_info=None, *, layout, config, uids, folder, shard_attrs):
    m, _, band, _ = block_info[0]["chunk-location"]
    n = len(layout.row_origins[band]) * len(layout.col_origins)
    path = Path(folder) / shard_name(uids[m], band)
    if n and not path.exists():
        patches = band_patch_views(block, band, layout, config.patch_size)
        write_shard(path, patches, dtype=config.dtype, compression=config.compression,
                    attrs=shard_attrs)
    return np.full((1, 1, 1, 1), n, dtype=np.int64)


def prepare(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    output: str | os.PathLike,
    config: PrepareConfig | None = None,
    *,
    permissive: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: str | None = None,
    dashboard_address: str = "127.0.0.1:0",
    report: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    targets: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    odd: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    log=None,
) -> PrepareResult:
    """Normalise, patch and noise micrographs into an HDF5 store (see docs/guide/preparing.md).

    Parameters
    ----------
    inputs : paths, globs, folders, a RELION STAR file or a cryoSPARC exposures .cs file
        The micrographs.
    output : path-like
        The store's master file (``DATA.h5``); shards go to ``DATA.h5.shards/``.
    config : PrepareConfig, optional
        Patch, normalisation, noise, storage, split and seed options.
    permissive : bool
        Skip bad micrographs (unreadable, other shape, NaN/Inf, blank) and record them.
    scheduler : str, Client or cluster, optional
        Address of an existing Dask scheduler to run on, or a ``distributed.Client`` or
        cluster object (``LocalCluster``) whose scheduler it is.
    workers : int, optional
        Start a LocalCluster of this many worker processes (dashboard on 127.0.0.1).
    memory_limit : str, optional
        Memory limit per LocalCluster worker (e.g. ``"4GiB"``).
    dashboard_address : str
        Where a started LocalCluster serves its dashboard.
    report : str, optional
        Save a Dask performance report (HTML) here.
    overwrite : bool
        Replace an existing store: every input is checked and the new store is built beside
        the old one (``.DATA.h5.new/``), which it replaces only when complete; a failure leaves
        the old store as it was; a store or shard made read-only (``chmod a-w``) is refused
        before any work. Without it, a finished store prepared from the same inputs (unchanged
        since) with the same config is kept as it is (``PrepareResult.kept``); one of other
        inputs or options is refused with what differs.
    progress : bool, optional
        True: progress bars; False: neither bars nor notes. Without it, the two passes are
        noted on the ``cryostream`` logger every few seconds, in micrographs, where they run on
        this process's threads (as ``fit`` notes them; Python shows them once logging is set
        to INFO).
    targets : paths, globs or folders, optional
        One target image per micrograph, in the same order and of the same shape (e.g. the
        ``truth/`` folder of :func:`cryostream.simulate`): the store then pairs each micrograph
        (input) with its target, both divided by the micrograph's percentile, and adds no noise
        (needs ``noise.model == "none"``).
    odd : paths, globs, folders or RELION STAR files, optional
        The odd-frame sums of the micrographs whose even-frame sums are ``inputs``
        (docs/guide/even_odd.md): the halves pair by name (``NAME_EVN.mrc`` with ``NAME_ODD.mrc``,
        or one name in two folders; a STAR file gives its ``rlnMicrographNameEven`` among
        ``inputs``, ``rlnMicrographNameOdd`` here, and given as both, pairs each row's two) and
        the store holds both directions, even→odd and odd→even, as (input, target) pairs named
        ``NAME_EVN`` and ``NAME_ODD``, each divided by its input half's percentile, with no added
        noise: ``config`` defaults to noise model ``none`` and must keep it. Both directions of
        a micrograph fall in the same split.
    log : callable, optional
        Receives the dashboard link (None: a note of the ``cryostream`` logger).

    Returns
    -------
    PrepareResult

    Raises
    ------
    StoreError
        Another ``prepare`` (or ``fit``) is writing the store ``output``: one at a time.
    """
    start = time.perf_counter()
    check_config("config", config, PrepareConfig)
    halves = None
    if odd is not None:
        if targets is not None:
            raise ConfigError("targets (--targets) and odd (--odd) were both given: the odd "
                              "halves are the even halves' targets; give one of them")
        config = config or PrepareConfig(noise=NoiseConfig(model="none"))
        check_halves_config(config)
    config = config or PrepareConfig()
    output, scheduler = Path(output).absolute(), scheduler_address(scheduler)
    # before anything is read or written; a worker process's run of the script may only find
    # the store again (no lock: the pool's processes run the same call at once)
    rerun = refuse_script_rerun("prepare", writes=overwrite or not output.exists())
    check_cluster_options(scheduler=scheduler, workers=workers, memory_limit=memory_limit)
    check_patch_size(config, MODEL_MULTIPLE)
    given, given_targets = _listed(inputs), _listed(targets) + _listed(odd)
    if odd is not None:
        halves = half_directions(given, _listed(odd))
        paths, target_paths = list(halves.inputs), list(halves.targets)
    else:
        # (with targets, a skipped row would unpair the two lists: those stay strict)
        paths = expand_inputs(given, permissive=permissive and targets is None)
        target_paths = expand_inputs(given_targets) if targets is not None else None
    named = [*given, *paths, *given_targets, *(target_paths or ())]
    made_up = config.noise == NoiseConfig() and not given_targets and progress is not False
    check_sets_finished(named)  # never a part of a simulated set taken for the whole
    check_output(output, named, overwrite)
    if overwrite:  # a store (or a shard of it) made read-only is kept: said before any work
        refuse_read_only([output, shard_folder(output)], "choose another name for the store (-o)")
    with store_lock(output, fix="give this store another file name (-o)") if rerun is None \
            else contextlib.nullcontext():  # one at a time
        if rerun is None:  # a replacement a kill stopped, put right under the lock
            settle_replacement(output)
        headers, skipped, target_headers = read_inputs(paths, target_paths, config, permissive,
                                                       MODEL_MULTIPLE)
        stamp = fingerprint(config, headers, target_headers)
        if rerun or (output.exists() and not overwrite):  # run again: kept, or refused
            return note_made_up_noise(keep_finished(output, stamp, halves=odd is not None,
                                                    start=start), config.noise, made_up)
        reachable_scheduler(scheduler)  # a scheduler given: answering, before anything is written
        made = not shard_folder(output).exists()
        work = open_workspace(output, overwrite, stamp)
        folder = work.folder
        layout = band_layout(headers[0].shape, config.patch_size, config.stride, config.edge)
        try:
            with PeakMemory() as peak, compute_context(
                scheduler=scheduler, workers=workers, memory_limit=memory_limit,
                dashboard_address=dashboard_address, report=report, log=log, call="prepare",
            ) as client, PrepareProgress(len(headers)) if progress is None and client is None \
                    else contextlib.nullcontext():  # a script's call on threads: notes
                compute = computer(client, bool(progress))
                statistics = _measure(folder, headers, config, compute, client)
                usable = _usable(headers, statistics, config, permissive, skipped, halves)
                write_statistics(folder, statistics)
                kept = _keep(usable, headers, target_headers, statistics, config, halves)
                check_targets(kept, statistics, config, compute, client)  # before any shard
                warn_hot(kept.headers, statistics, config.percentile)
                noises = noise_table(folder, kept.headers, kept.percentiles, config)
                _write_shards(compute, folder, kept, layout, noises, config, client)

            counts = _write_master(work.output, folder, kept, layout, noises, config, skipped)
            work.finish()
        except Exception:
            work.abandon()  # a replacement being built is removed; the old store stays
            if made and work.folder.is_dir() and os.listdir(work.folder) == [STAMP_NAME]:
                shutil.rmtree(work.folder)  # nothing of it written (workers that never started)
            raise
        except KeyboardInterrupt as stop:  # a script's Ctrl-C: what is kept, and how to go on
            say_kept(stop, f"the finished shards and statistics are kept in {folder}",
                     "call prepare again with the same arguments to go on from them")
            raise
        folder = shard_folder(output)
        nbytes = output.stat().st_size + sum(p.stat().st_size for p in folder.glob("*.h5"))
        result = PrepareResult(output, len(kept.headers), counts["train"], counts["test"],
                               nbytes, time.perf_counter() - start, peak.peak, tuple(skipped),
                               halves=odd is not None)
        return note_made_up_noise(result, config.noise, made_up)


@dataclasses.dataclass(frozen=True)
class _Kept:
    """The micrographs that passed the checks, with what the store records about each."""

    headers: list
    target_headers: list | None
    names: list[str]
    uids: tuple[int, ...]
    percentiles: np.ndarray
    splits: list[str]


def _listed(inputs) -> list:
    """``inputs`` (a path, an iterable of them, or None) as a list (:func:`listed_inputs`)."""
    return [] if inputs is None else listed_inputs(inputs)


def _measure(folder: Path, headers, config: PrepareConfig, compute, client=None) -> dict[str, list]:
    """Pass 1: exact percentiles and noise estimates, one read per micrograph (on a cluster,
    ``client``, the tasks' warnings come back and are shown here).

    Returns each source's statistics; the noise estimates go next to the shards, and both are
    reused by a resumed run.
    """
    cached = read_statistics(folder)
    todo = [h for h in headers if h.path not in cached or (
        noise_measurable(h, cached[h.path])
        and load_estimate(noise_file(folder, h.path)) is None)]
    results = compute([dask.delayed(task_function(statistics_and_noise, client))(h, config.percentile)
                       for h in todo], label=f"pass 1 of 2: percentile and noise of {len(todo)} "
                      "micrographs") if todo else []
    for h, (stats, estimate, _) in zip(todo, results, strict=True):
        cached[h.path] = list(stats)
        if estimate is not None:
            save_estimate(noise_file(folder, h.path), estimate)
    warn_blank({h.path: found for h, (_, _, found) in zip(todo, results, strict=True) if found})
    return {h.path: cached[h.path] for h in headers}


def _usable(headers, statistics: dict, config: PrepareConfig, permissive: bool,
            skipped: list[dict], halves: HalfDirections | None = None) -> list[int]:
    """Positions of the micrographs whose statistics pass; the others are skipped or raise.
    Half-sums: a micrograph is kept in both directions or in neither."""
    usable = []
    for i, h in enumerate(headers):
        try:
            check_statistics(h, tuple(statistics[h.path]), config.percentile)
            check_counts(h, statistics[h.path], config)
            usable.append(i)
        except InvalidMicrographError as exc:
            if not permissive:
                raise
            skipped.append({"path": h.path, "reason": f"{exc.path}: {exc.problem}"})
            warnings.warn(f"skipping {exc.path}: {exc.problem}", MicrographSkippedWarning,
                          stacklevel=3)
    if halves is not None:
        for i in [i for i in usable if halves.partner(i) not in usable]:
            skipped.append({"path": headers[i].path, "reason": "its other half "
                            f"{headers[halves.partner(i)].path} was skipped"})
        usable = [i for i in usable if halves.partner(i) in usable]
    return usable


def _keep(usable: list[int], headers, target_headers, statistics: dict,
          config: PrepareConfig, halves: HalfDirections | None = None) -> _Kept:
    """The usable micrographs with their names, uids, percentiles and splits (half-sums: both
    directions of a micrograph in one split)."""
    if not usable:
        raise InvalidMicrographError("<inputs>", "no usable micrograph left", "see the warnings")
    headers = [headers[i] for i in usable]
    target_headers = None if target_headers is None else [target_headers[i] for i in usable]
    names = micrograph_names(headers) if halves is None else [halves.names[i] for i in usable]
    uids = tuple(micrograph_uid(n) for n in names)
    if len(set(uids)) != len(uids):
        raise InvalidMicrographError("<inputs>", "two micrographs share a name",
                                     "give every micrograph a distinct file name")
    splits = (split_micrographs(names, config.test_fraction, config.seed) if halves is None
              else halves.splits(usable, config.test_fraction, config.seed))
    return _Kept(headers, target_headers, names, uids,
                 percentiles=np.array([statistics[h.path][0] for h in headers]), splits=splits)


def _write_shards(compute, folder: Path, kept: _Kept, layout, noise_table: dict,
                  config: PrepareConfig, client=None) -> None:
    """Pass 2: normalise and noise each band once (``map_blocks``), then ``map_overlap`` over
    the bands; each task cuts its patches and writes its own shard (finished ones are kept). On
    a cluster (``client``) the tasks' warnings come back and are shown here. Where every shard
    is finished (a run stopped before it wrote the master), no micrograph is read again."""
    if all((folder / shard_name(uid, band)).exists() for uid in kept.uids
           for band, rows in enumerate(layout.row_origins) if rows):
        return
    matched = {k: noise_table[k] for k in ("kernel", "shot_fraction", "mean")} \
        if config.noise.model == "matched" else None
    stack = stack_from_headers(kept.headers, layout.heights)
    target_stack = (stack_from_headers(kept.target_headers, layout.heights)
                    if kept.target_headers else None)
    prepared, _ = normalised_and_noisy(stack, config, kept.percentiles, kept.uids, matched,
                                       target_stack)
    shard_attrs = {"cryostream_version": __version__, "config": to_json(config)}
    written = overlap_bands(
        prepared, layout, task_function(_write_band_block, client),
        chunks=((1,) * len(kept.headers), (1,), (1,) * len(layout.heights), (1,)),
        dtype=np.int64, meta=np.empty((0, 0, 0, 0), dtype=np.int64),
        config=config, uids=kept.uids, folder=str(folder), shard_attrs=shard_attrs,
    )
    compute([written], label=f"pass 2 of 2: normalise, patch, noise and write "
            f"{len(kept.headers)} micrographs", values=False)


def _write_master(output: Path, folder: Path, kept: _Kept, layout, noise_table: dict,
                  config: PrepareConfig, skipped: list[dict]) -> dict[str, int]:
    """Write the master file over the shards; returns the patch count of each split."""
    kinds = ("input", "target") if config.noise.mode == "stored" else ("target",)
    split_shards: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    index: dict[str, list] = {"train": [], "test": []}
    n_cols = len(layout.col_origins)
    for m, (uid, split) in enumerate(zip(kept.uids, kept.splits, strict=True)):
        for band, rows in enumerate(layout.row_origins):
            if rows:
                rel = f"{folder.name}/{shard_name(uid, band)}"
                split_shards[split].append((rel, len(rows) * n_cols))
                index[split] += [(m, y, x) for y in rows for x in layout.col_origins]
    headers = kept.headers
    write_master(
        output,
        splits=split_shards,
        index={k: np.array(v, dtype=np.int64) for k, v in index.items()},
        micrographs={
            "name": np.array(kept.names, dtype=object),
            "uid": np.array(kept.uids, dtype=np.uint64),
            "source": np.array([h.path for h in headers], dtype=object),
            "split": np.array(kept.splits, dtype=object),
            "percentile": kept.percentiles,
            **{f"noise_{k}": v for k, v in noise_table.items()},
        },
        patch_size=config.patch_size,
        dtype=config.dtype,
        kinds=kinds,
        attrs={
            "cryostream_version": __version__,
            "config": to_json(config),
            "noise": json.dumps(to_dict(config.noise)),
            "sources": json.dumps([h.path for h in headers]),
            "targets": json.dumps([h.path for h in kept.target_headers or ()]),
            "skipped": json.dumps(skipped),
            "pixel_size_angstrom": headers[0].pixel_size_angstrom,
        },
    )
    return {k: len(v) for k, v in index.items()}
