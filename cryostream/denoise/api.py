"""The public denoising calls: :func:`denoise` writes denoised micrographs, :func:`rank_runs`
orders trained runs by a truth-free score on the micrographs they will denoise."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cryostream.config import DenoiseConfig
from cryostream.config.checks import check_config
from cryostream.denoise.arrays import array_micrographs, array_stack, denoise_arrays, made_with
from cryostream.denoise.cluster_pool import gather_cluster
from cryostream.denoise.corrections import check_correctable
from cryostream.denoise.memory import network_memory
from cryostream.denoise.micrograph import (
    Progress,
    check_micrograph,
    checked_micrograph,
    denoise_image,
    denoise_item,
    denoise_micrograph,
    describe_found,
    network_fn,
    normalised,
    read_micrograph,
)
from cryostream.denoise.network import load_network, model_name, model_path, model_record
from cryostream.denoise.outputs import STAR_NAME, check_writable, plan_denoise
from cryostream.denoise.pixels import note_assumed_optics, warn_outside_model
from cryostream.denoise.pool import (
    NONE_LEFT,
    AllFinished,
    finish_here,
    removed_at_the_end,
    stopped_call,
    to_the_end,
)
from cryostream.denoise.scores import check_scoring, recorruption_score
from cryostream.denoise.sources import gather_inputs
from cryostream.denoise.star_keep import write_listing
from cryostream.denoise.star_unlisted import count_skipped, warn_unlisted
from cryostream.denoise.tiling import check_layouts, check_tile, reused_windows
from cryostream.denoise.weights import binned_offsets
from cryostream.denoise.workers import start_note
from cryostream.errors import ConfigError, InvalidMicrographError, without_skipping
from cryostream.interrupts import told_in_progress
from cryostream.io.paths import plain_path
from cryostream.schedulers import reachable_scheduler
from cryostream.script_guard import refuse_script_rerun, rerun_refused

__all__ = ["denoise", "rank_runs", "denoise_image", "denoise_micrograph", "read_micrograph",
           "check_micrograph", "normalised", "array_stack", "describe_found", "config_for",
           "warn_if_under_input", "ModelWarning"]


def config_for(run, config: DenoiseConfig | None) -> DenoiseConfig:
    """``config`` (default: :class:`DenoiseConfig`'s recipe) decided for the run
    (:meth:`DenoiseConfig.for_run`) and checked against it, before any output is made."""
    record = model_record(run)
    config = (config or DenoiseConfig()).for_run(record)
    if config.n2n_correction:
        check_correctable(record)
    return config


class ModelWarning(UserWarning):
    """A model whose own record says its outputs may be poor (see the message)."""


def warn_if_under_input(run: str) -> None:
    """A warning if the run's network scored under the noisy input when its training last
    evaluated it (:func:`~cryostream.runs.last_evaluation`): its outputs may be worse than the
    micrographs (a ``fit`` stopped after a few steps). Not for a run trained on recorrupted
    targets: its output estimates the clean micrograph, compared there with a noisy target, so
    it scores under the noisy input by design."""
    import warnings

    from cryostream.checkpoints import checkpoint_steps
    from cryostream.fit_run import FIT_RECORD
    from cryostream.runs import last_evaluation, load_record

    ev = last_evaluation(run)
    record = load_record(run) if Path(run).is_dir() else None
    started = record is not None and record.train.init is not None  # fitted from a model

    def further(more_steps: bool) -> str:
        if Path(run, FIT_RECORD).is_file():  # a fit's run folder: fit goes on in it
            how = "train it further: cryostream fit with a larger --budget (Python: budget=)"
        else:  # a run of cryostream train, whose folder fit refuses
            how = ("train it further: its cryostream train command again with --resume"
                   + (f" and more --steps than its {record.train.steps}" if more_steps else "")
                   + " (Python: resume=True)")
        return (how + ("" if started else ", or fit the general model (cryostream fit's default)")
                + "; or leave out --model (Python: pass 'general' as the run) to use the shipped "
                "general model")

    if ev.get("psnr", float("inf")) < ev.get("noisy_psnr", float("-inf")) and \
            record is not None and not record.recorrupt:  # (an evaluation: a run folder)
        warnings.warn(
            f"{model_name(run)}: its network scored under the noisy input when its training "
            f"stopped (test PSNR {ev['psnr']:.2f} against {ev['noisy_psnr']:.2f} dB, step "
            f"{ev.get('step', '?')}): its outputs may be worse than the micrographs; "
            f"{further(True)}",
            ModelWarning, stacklevel=3)
    elif not ev and record is not None:  # stopped before any evaluation, short of its steps
        step, target = (checkpoint_steps(run) or [0])[-1], record.train.steps
        if step < target:
            warnings.warn(
                f"{model_name(run)}: its training stopped at step {step} of {target} (its budget "
                "ran out, or Ctrl-C) before it was ever evaluated: its outputs may be worse than "
                f"the micrographs; {further(False)}", ModelWarning, stacklevel=3)


_RANK_SKIPS_NONE = ("rank skips none: every run is scored on the same micrographs, all of one "
                    "shape; rank those of another shape apart")


def rank_runs(runs: Iterable, inputs, *, config: DenoiseConfig | None = None, draws: int = 2,
              beta: float = 0.5, seed: int = 0) -> list[dict]:
    """Rank trained runs by their denoising error on micrographs, without ground truth.

    Each run denoises recorrupted copies of each micrograph through the pipeline that
    :func:`denoise` would run with ``config`` (decided for each run), and gets
    :func:`~cryostream.denoise.scores.recorruption_score` in the micrograph's own units, with
    the same noise draws for every run (a paired comparison). Seeds of one training set
    differ: on simulated micrographs two seeds in six lost 0.13–0.19 dB to the others, and the
    score put both behind the other four on every micrograph (docs/guide/noise.md). Costs
    ``draws`` network passes per run and micrograph.

    ``draws`` (≥ 1), ``beta`` (from 0.01 to 100,
    :data:`~cryostream.denoise.scores.BETA_RANGE`) and ``seed`` (0 to 2**32 - 1) are checked
    before any network is loaded.

    Returns one dict per run, best (lowest mean score) first: ``run``, ``score`` (mean over
    the micrographs) and ``scores`` (per micrograph name).
    """
    from cryostream.io.stack import open_micrographs
    check_config("config", config, DenoiseConfig)
    check_scoring(draws, beta, seed)  # before any network is loaded or micrograph read
    if isinstance(runs, str | os.PathLike):  # one run
        runs = [runs]
    runs = list(dict.fromkeys(model_path(r) for r in runs))  # each run once
    if not runs:
        raise ConfigError("rank_runs needs at least one run folder")
    configs = {run: config_for(run, config) for run in runs}
    records = {run: model_record(run) for run in runs}
    try:
        stack = open_micrographs(inputs, chunks=-1)
    except InvalidMicrographError as exc:  # rank skips none: every run on the same micrographs
        raise without_skipping(exc, _RANK_SKIPS_NONE) from None
    scores = {r: {} for r in runs}
    first = load_network(runs[0])
    log = logging.getLogger("cryostream")
    for number, (source, name) in enumerate(zip(stack.source.values, stack.micrograph.values,
                                                strict=True), 1):
        start = time.perf_counter()
        header, image = read_micrograph(source)  # once, for every run
        # checked and mended as denoise does (NaN pixels named with the file; a hot pixel
        # would rule the scores), for the first run's network
        try:
            image = checked_micrograph(image, source, first.record, first.config,
                                       configs[runs[0]])[1]
        except InvalidMicrographError as exc:
            raise without_skipping(exc, _RANK_SKIPS_NONE) from None
        found = ""  # the fitted defocus and the CTF check, as the first run's steps found them
        for run in runs:
            micrograph, percentile = normalised(image, header.pixel_size_angstrom, records[run],
                                                source)
            bound = configs[run].pipeline().bind(micrograph, network_fn(
                run, configs[run], offsets=binned_offsets(records[run], configs[run].ensemble)))
            score = recorruption_score(bound, micrograph.image, micrograph.noise(), draws=draws,
                                       beta=beta, seed=seed)
            scores[run][str(name)] = score * percentile**2  # in the micrograph's units
            described = describe_found(bound.describe())
            found = found or described
            log.debug("%s on %s: %s", model_name(run), name, described.removeprefix("; "))
        log.info("scored %d/%d %s for %d run%s: %.1f s%s", number, stack.sizes["micrograph"],
                 name, len(runs), "" if len(runs) == 1 else "s", time.perf_counter() - start,
                 found)
    ranked = [{"run": r, "score": float(np.mean(list(s.values()))), "scores": s}
              for r, s in scores.items()]
    return sorted(ranked, key=lambda row: row["score"])


def denoise(run, inputs: str | os.PathLike | Iterable, output: str | os.PathLike | None = None, *,
            config: DenoiseConfig | None = None, overwrite: bool = False,
            workers: int | None = None,
            scheduler: str | None = None, cluster_workers: int | None = None,
            permissive: bool = False, pixel_size_angstrom: float | None = None, odd=None):
    """Denoise micrographs with a trained run.

    Parameters
    ----------
    run : path-like or str
        The model: ``"general"`` (shipped in the package, trained on simulated micrographs
        over a spread of conditions), a run folder written by :func:`cryostream.train`, or an
        exported ``.npz`` (:func:`cryostream.models.export.export_params`).
    inputs : paths, globs, folders, STAR files, cryoSPARC exposures .cs files, or an array
        Micrographs (any MRC mode; a list of names may be a 1-D array or pandas Series),
        normalised as in training (the store's percentile) and restored to their scale after;
        checked as :func:`cryostream.prepare` checks them (NaN or Inf pixels, constant, a
        percentile that cannot normalise, too small). A RELION STAR file gives each micrograph's
        pixel size and the optics of its CTF gain (its optics group: voltage, Cs, amplitude
        contrast, in place of the config's), and CTFFIND's defocus
        (``rlnDefocusU``/``V``/``Angle``) used instead of a fit, still guarded by the CTF gain's
        recorruption check; a cryoSPARC exposures ``.cs`` file gives the same from its
        ``micrograph_blob`` and ``ctf`` fields. A NumPy, Dask or xarray array, ``(y, x)`` or
        ``(micrograph, y, x)``, is denoised in memory (no ``output``) and comes back as an xarray
        of the same dims with its pixel size and config in ``attrs``, and ``attrs["found"]``: what
        the steps found on each micrograph (the fitted defocus, whether the CTF-shaped gain was
        used), as JSON text (a list for a stack), as ``NAME.json``'s ``found`` for a file.
    output : path-like, optional
        Folder for MRC files (``NAME.mrc`` for each input's file name, or
        ``NAME{output_suffix}.mrc``; float32 or ``config.output_dtype``) that keep the input's
        origin, voxel size and labels plus one history label (and its extended header with
        ``config.keep_extended_header``), each with a ``NAME.json`` record of how it was made
        (the run, the :class:`~cryostream.config.DenoiseConfig`, the input, the version, the
        CTF). Last, ``denoised_micrographs.star`` lists the outputs for RELION
        (the input STAR file's optics table and columns, or an optics table from the pixel
        size and the config's optics; every file name relative to the project folder when
        inside it, absolute otherwise: :func:`~cryostream.denoise.star_out.listing_name`). It
        lists this call's micrographs and keeps the rows of the file it replaces whose outputs
        are still in the folder (:func:`~cryostream.denoise.star_keep.write_listing`; where
        they cannot join, that file is kept as ``.bak``); finished outputs left unlisted are
        named by one :class:`~cryostream.denoise.star_out.UnlistedOutputWarning`.
        Checked before any computing: two inputs of one name, an output that would replace an
        input, or a ``NAME.mrc`` there that is not this run's output with these options are
        refused; so is, as each is written (the output held), one another call made there
        meanwhile with other options: that micrograph fails, the others go on (as for a bad
        one). Finished outputs of the same run, options and input are found and skipped,
        so an interrupted run resumes. Required on a cluster.
    config : DenoiseConfig, optional
        The post-processing steps, the tiling and the output files. Options left ``None``
        (the default) are decided for the run (:meth:`DenoiseConfig.for_run`): the best
        validated recipe. ``DenoiseConfig.raw()`` gives the network's output as it is.
    overwrite : bool
        Replace outputs made otherwise (another model, other options or another cryostream
        version); each is replaced only by a complete new one. Outputs this same call would
        make again the same are kept either way, so it resumes after an interruption. Files it
        would replace made read-only (``chmod a-w``; the STAR file too, where an output is
        replaced) are refused before any work.
    workers : int, optional
        Micrographs in flight at once in this process (their reading, steps and writing overlap
        the device work). None: half the CPU cores on a GPU (2 to 8), 2 on a CPU, and no more
        than half the available memory holds (:func:`~cryostream.denoise.workers.default_workers`).
    scheduler, cluster_workers : str (a Client or cluster object too), int, optional
        Run on an existing Dask scheduler, or on a LocalCluster of that many worker processes
        (as :func:`cryostream.prepare` does); each worker loads the model once.
    permissive : bool
        Skip micrographs that fail the checks with a
        :class:`~cryostream.MicrographSkippedWarning` instead of raising.
    pixel_size_angstrom : float, optional
        The pixel size in Å, over the headers and STAR files (needed where both lack one); for
        arrays, over an xarray's ``pixel_size_angstrom`` attribute.
    odd : paths, globs, folders or a STAR file, optional
        The odd-frame sums of the micrographs, whose even-frame sums are ``inputs`` (a STAR
        file's ``rlnMicrographNameEven`` and ``rlnMicrographNameOdd``). A STAR file given as
        both pairs each row's own two halves, whatever their names; halves given as files,
        folders or globs pair by name (:func:`~cryostream.io.halves.pair_halves`). Each output
        is the sum of the pipeline's outputs on the two halves (as cryoCARE predicts; the full
        sum's scale), named after the micrograph (``NAME.mrc`` for ``NAME_EVN.mrc``; a STAR
        file's row: its ``rlnMicrographName``); its record says so.

    Returns
    -------
    xarray.DataArray (micrograph, y, x) float32, or (y, x) for a 2-D array given
        The denoised stack (for a 2-D array, its one micrograph, 2-D), each micrograph noted on the
        ``cryostream`` logger (INFO) as it is done, an array's as a file's (after the call's first
        note, each named by its file where the xarray has one): its seconds and the gain it took,
        and why (``too small for a CTF fit: radial Wiener gain``). In memory without ``output``,
        with ``attrs`` ``denoise_config`` and ``run`` and none of the raw files' (each one's raw
        file is its ``denoised_from``: :func:`~cryostream.denoise.arrays.denoised_result`); with
        it, lazily over the written files, with ``attrs`` ``kept`` (how many were finished before
        and kept), ``skipped`` (how many ``permissive`` skipped) and ``star`` (the STAR file
        written). Either, given back as ``inputs``, is refused
        (:class:`~cryostream.errors.DenoisedInputError`). Micrographs of several shapes can go to
        an ``output`` folder (each is denoised on its own); no stack holds them, so the result is
        then the written files' paths, dims ``(micrograph,)``. For a lazy
        result without files, use :func:`~cryostream.denoise.tiling.denoise_array`.
    """
    import functools

    from cryostream.cluster import check_local_workers, compute_context
    from cryostream.interrupts import closed_before_the_end

    # before anything is written; a process pool's run of the script may only find every
    # output again (nothing computed, no lock: the pool's processes run the same call at once)
    rerun = refuse_script_rerun("denoise", writes=overwrite or output is None
                                or not os.path.isdir(output))
    check_config("config", config, DenoiseConfig)
    for name, value in (("workers", workers), ("cluster_workers", cluster_workers)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}={value!r} (--{name.replace('_', '-')}): must be an integer ≥ 1")
    if scheduler is None and cluster_workers is not None:
        check_local_workers(cluster_workers, "cluster_workers")
    if output is None and (scheduler is not None or cluster_workers is not None):
        raise ConfigError("denoising on a cluster needs an output folder: -o DIR (Python: output=DIR)")
    scheduler = reachable_scheduler(scheduler)  # one that is gone: refused before any note
    run = model_path(run)
    config = config_for(run, config)  # before any output folder is made
    check_tile(run, config.tile, config.halo)  # before any note or input is read
    network_memory()  # a bad CRYOSTREAM_NETWORK_MEMORY_GB, before any output is made
    if rerun is None:  # built here once, not by each worker at once (a pool's process: no use)
        load_network(str(run), config.precision)
    arrays = array_stack(inputs, pixel_size_angstrom)
    if arrays is not None:
        if output is not None or scheduler is not None or cluster_workers is not None \
                or odd is not None:
            raise ConfigError("arrays are denoised in memory, here: leave out output, "
                              "scheduler, cluster_workers and odd (or pass MRC files)")
        warn_if_under_input(run)
        warn_outside_model(run, array_micrographs(arrays))  # 6.6 for 0.66 Å: said as a file's
        with reused_windows():
            return denoise_arrays(arrays, run, config, permissive,
                                  two_d=getattr(inputs, "ndim", 3) == 2)
    gathered = gather_inputs(inputs, config=config, odd=odd,
                             pixel_size_angstrom=pixel_size_angstrom, permissive=permissive,
                             one_shape=output is None, note_optics=False)
    warn_if_under_input(run)
    micrographs = gathered.micrographs
    warn_outside_model(run, micrographs)
    if scheduler is None and cluster_workers is None and rerun is None:  # (a cluster's workers
        check_layouts(run, config, {m.shape for m in micrographs})  # fit their own) before any output
    plans: list = [None] * len(micrographs)
    made = stopped = None
    if output is not None:
        where = Path(output)  # (absolute on a scheduler: its workers work in folders of their
        where = where.absolute() if scheduler is not None else where  # own; as given otherwise)
        plans, made = plan_denoise(run, config, micrographs, gathered.star, where,
                                   overwrite=overwrite)
        if rerun is not None:  # a process pool's run of the script: every output found, or none
            if not (plans and all(p.done for p in plans)):  # (it would denoise: write)
                raise rerun_refused(rerun, "denoise")
            return _result(micrographs, plans, [], [], gathered, output, rerun)
        check_writable(where)  # the folder made (made: None where it was there)
    try:  # from here on, an error leaves no empty output folder of this call behind
        todo = [(m, p) for m, p in zip(micrographs, plans, strict=True) if p is None or not p.done]
        if todo:  # the first note comes when a micrograph is done: say what is under way now
            import jax

            note_assumed_optics(config, [m for m, _ in todo])  # not of outputs kept
            here = scheduler is None and cluster_workers is None
            if workers is None and here:
                from cryostream.denoise.workers import default_workers

                largest = max(m.shape[0] * m.shape[1] for m, _ in todo)  # from the headers read
                workers = default_workers(largest, jax.default_backend(), count=len(todo))
            start_note(run, config, len(todo), [m.shape for m, _ in todo for _ in range(1 + bool(m.odd))],
                       min(workers, len(todo)) if here else None)
        job = functools.partial(denoise_item, run=run, config=config, permissive=permissive)
        progress = functools.partial(Progress, len(micrographs), len(micrographs) - len(todo),
                                     config=config, micrographs=[m for m, _ in todo])  # -v's optics
        # a process ended at once (a second Ctrl-C) still removes an empty folder it made
        with closed_before_the_end(functools.partial(removed_at_the_end, made)), \
                compute_context(scheduler=scheduler, workers=cluster_workers, call="denoise") as client, \
                reused_windows():
            if not todo:
                results = []
            elif client is not None:  # a note as each is done, paced over the cluster's threads
                results = gather_cluster(client, job, todo, progress(sum(client.nthreads().values())),
                                         output)
            else:
                at_once = min(workers, len(todo))
                progress = progress(at_once)
                results = finish_here(functools.partial(job, progress=progress), todo,
                                      len(micrographs), at_once, progress)
        if all(r is None for r in results) and not any(p is not None and p.done for p in plans):
            raise InvalidMicrographError("<inputs>", "no usable micrograph left", "see the warnings")
    except AllFinished as stop:  # SIGTERM as the last were written: the call ends, then stops
        results, stopped = stop.results, stop
    except BaseException as stop:  # an empty folder it made removed; a script's Ctrl-C said
        stopped_call(stop, made, output)
        raise
    with told_in_progress(lambda: NONE_LEFT):  # a first Ctrl-C's note: none left to finish
        return to_the_end(functools.partial(_result, micrographs, plans, todo, results, gathered,
                                            output, made=made_with(run, config)), stopped)


def _result(micrographs, plans, todo, results, gathered, output, rerun=None, made=None):
    """The denoised stack :func:`denoise` returns: in memory with ``made``'s attrs, as an array's;
    with ``output``, after the STAR file (``rerun``: only found,
    :func:`~cryostream.denoise.star_keep.write_listing`)."""
    from cryostream.denoise.arrays import denoised_result
    from cryostream.io.mrc import read_header
    from cryostream.io.stack import open_micrographs

    done = {m.source: r for (m, _), r in zip(todo, results, strict=True) if r is not None}
    if output is not None:
        done.update({p.source: str(p.path) for p in plans if p.done})
    kept = [m for m in micrographs if m.source in done]
    sizes = {m.pixel_size_angstrom for m in kept}
    one_size = None if len(sizes) == 1 and output is not None else kept[0].pixel_size_angstrom
    if output is None:
        stack = open_micrographs([m.source for m in kept], chunks=-1, pixel_size_angstrom=one_size)
        names = [m.named_after() for m in kept]  # as files would be: a link's, a pair's micrograph's
        names = [n for _, n in names] if len({n for _, n in names}) == len(names) else [f for f, _ in names]
        stack = denoised_result(stack.copy(data=np.stack([done[m.source] for m in kept])), made or {})
        return stack.assign_coords(micrograph=names)
    star = plain_path(output) / STAR_NAME  # as messages name it: no P1/../den1
    paths = [done[m.source] for m in kept]
    listing = write_listing(star, gathered, done, paths, rerun)  # last: after every output
    warn_unlisted(star, paths, *listing, inputs=[m.source for m in kept])  # those left out: said
    if len({read_header(p).shape for p in paths}) == 1:
        result = open_micrographs(paths, chunks=-1, pixel_size_angstrom=one_size)
    else:  # micrographs of several shapes: no stack holds them, the result lists the files
        import xarray as xr

        result = xr.DataArray(np.array(paths, dtype=object), dims=("micrograph",),
                              coords={"micrograph": [Path(p).stem for p in paths]},
                              attrs={"sources": [str(p) for p in paths]})  # as a stack's
    skipped = count_skipped(gathered.skipped) + len(micrographs) - len(kept)
    return result.assign_attrs(kept=sum(p.done for p in plans), star=str(star),
                               pixel_sizes_angstrom=[m.pixel_size_angstrom for m in kept],
                               skipped=skipped)
