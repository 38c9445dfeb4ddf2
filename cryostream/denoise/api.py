"""The public denoising calls: :func:`denoise` writes denoised micrographs, :func:`rank_runs`
orders trained runs by a truth-free score on the micrographs they will denoise."""

from __future__ import annotations

import json
import logging
import os
import time
import types
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.corrections import check_correctable
from cryostream.denoise.network import model_path, model_record
from cryostream.denoise.outputs import (
    STAR_NAME,
    OutputPlan,
    history_label,
    output_record,
    plan_denoise,
    recipe_steps,
    write_output,
)
from cryostream.denoise.scores import recorruption_score
from cryostream.denoise.sources import array_stack, gather_inputs, star_tables
from cryostream.denoise.steps import Micrograph
from cryostream.denoise.tiling import network_pass
from cryostream.errors import ConfigError, InvalidMicrographError

__all__ = ["denoise", "rank_runs", "denoise_image", "denoise_micrograph", "read_micrograph",
           "check_micrograph", "normalised", "array_stack", "describe_found", "config_for"]


def config_for(run, config: DenoiseConfig | None) -> DenoiseConfig:
    """``config`` (default: :class:`DenoiseConfig`'s recipe) decided for the run
    (:meth:`DenoiseConfig.for_run`) and checked against it, before any output is made."""
    record = model_record(run)
    config = (config or DenoiseConfig()).for_run(record)
    if config.n2n_correction:
        check_correctable(record)
    return config


def read_micrograph(source: str):
    """A micrograph's header and its pixels (native float32), with one read."""
    from cryostream.io.mrc import read_header, read_rows

    header = read_header(source)
    return header, read_rows(header, 0, header.shape[0])


def check_micrograph(image: np.ndarray, source: str, record, network_config,
                     config: DenoiseConfig):
    """The checks ``prepare`` makes (NaN or Inf pixels, a constant image, a percentile that
    cannot normalise), and a size the network can take; an
    :class:`~cryostream.errors.InvalidMicrographError` naming the file otherwise."""
    from cryostream.denoise.tiling import default_halo
    from cryostream.preprocess import check_statistics

    finite = bool(np.isfinite(image).all())
    lo, hi = (float(image.min()), float(image.max())) if finite else (0.0, 0.0)
    value = float(np.percentile(image, record.percentile)) if finite else float("nan")
    check_statistics(types.SimpleNamespace(path=str(source)), (value, finite, lo, hi),
                     record.percentile)
    smallest = max(64, config.halo or default_halo(network_config))
    if min(image.shape) < smallest:
        raise InvalidMicrographError(source, f"is {image.shape[0]} × {image.shape[1]} pixels; "
                                     f"this run's network needs at least {smallest} on each side",
                                     "exclude it (--permissive skips it)")


def normalised(image: np.ndarray, pixel_size_angstrom: float, record,
               source: str) -> tuple[Micrograph, float]:
    """The :class:`Micrograph` the steps see (the pixels divided by the run's percentile, as in
    training) and that percentile."""
    percentile = float(np.percentile(image, record.prepare.percentile))
    return Micrograph(image / np.float32(percentile), pixel_size_angstrom, record,
                      source=str(source)), percentile


#: Seconds between notes while one micrograph is still being denoised (minutes on a CPU).
NOTE_EVERY_S = 30.0


def _network(run: str, config: DenoiseConfig, source: str | None = None):
    """The network pass the steps call (once, 8 times for the ensemble, more to calibrate);
    with ``source``, a note at most every :data:`NOTE_EVERY_S` seconds while they run."""
    expected = (8 if config.ensemble else 1) * (1 + config.calibrate)
    start = time.perf_counter()
    clock = {"last": start, "passes": 0}

    def network(image):
        out = network_pass(run, image, tile=config.tile, halo=config.halo,
                           batch_size=config.batch_size)
        clock["passes"] += 1
        now = time.perf_counter()
        if source is not None and now - clock["last"] >= NOTE_EVERY_S:
            clock["last"] = now
            done = clock["passes"]
            logging.getLogger("cryostream").info(
                "%s: network pass %d%s done, %.0f s so far", Path(source).name, done,
                f" of {expected}" if done <= expected else "", now - start)
        return out

    return network


def denoise_image(image: np.ndarray, pixel_size_angstrom: float, source: str, run: str,
                  config: DenoiseConfig, *, permissive: bool = False, pipeline=None):
    """One 2-D micrograph in memory through the whole pipeline: checks, percentile, network,
    steps. Returns ``(estimate, found)``: the denoised image in the micrograph's units and what
    the steps found on it; ``(None, {})`` when ``permissive`` skips a micrograph that fails the
    checks (:func:`check_micrograph`, with a :class:`~cryostream.MicrographSkippedWarning`).
    ``pipeline`` replaces ``config.pipeline()`` (e.g. one taking a known defocus,
    :meth:`~cryostream.denoise.sources.InputMicrograph.pipeline`)."""
    import warnings

    from cryostream.denoise.network import load_network
    from cryostream.io.stack import MicrographSkippedWarning

    network = load_network(run)
    try:
        check_micrograph(image, source, network.record, network.config, config)
    except InvalidMicrographError as exc:
        if not permissive:
            raise
        warnings.warn(f"skipping {exc}", MicrographSkippedWarning, stacklevel=2)
        return None, {}
    micrograph, percentile = normalised(image, pixel_size_angstrom, network.record, source)
    estimate, found = (pipeline or config.pipeline()).run(micrograph,
                                                              _network(run, config, source))
    estimate *= np.float32(percentile)
    return estimate, found


def denoise_micrograph(source: str, run: str, config: DenoiseConfig, *,
                       plan: OutputPlan | None = None, permissive: bool = False):
    """One micrograph file through the whole pipeline (:func:`denoise_image`), read once.

    With ``plan`` (:func:`~cryostream.denoise.outputs.plan_outputs`), writes ``NAME.mrc`` with
    a history label and its record ``NAME.json`` (:func:`output_record`) and returns the MRC
    path; otherwise returns the denoised array in the micrograph's units (None when skipped).
    """
    (micrograph,) = gather_inputs([source], config=config).micrographs
    return _denoise_item((micrograph, plan), run=run, config=config, permissive=permissive)


def _denoise_arrays(stack, run: str, config: DenoiseConfig, permissive: bool, two_d: bool):
    pixel = stack.attrs["pixel_size_angstrom"]
    kept, results = [], []
    for i in range(stack.sizes["micrograph"]):
        image = np.asarray(stack[i], dtype=np.float32)
        estimate, _ = denoise_image(image, pixel, f"array[{i}]", run, config,
                                    permissive=permissive)
        if estimate is not None:
            kept.append(i)
            results.append(estimate)
    if not results:
        raise InvalidMicrographError("<array>", "no usable micrograph left", "see the warnings")
    out = stack.isel(micrograph=kept).copy(data=np.stack(results))
    out.attrs.update(pixel_size_angstrom=pixel, denoise_config=json.dumps(to_dict(config)),
                     run=run)
    return out[0] if two_d else out


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

    Returns one dict per run, best (lowest mean score) first: ``run``, ``score`` (mean over
    the micrographs) and ``scores`` (per micrograph name).
    """
    from cryostream.io.stack import open_micrographs
    runs = list(dict.fromkeys(model_path(r) for r in runs))  # each run once
    if not runs:
        raise ConfigError("rank_runs needs at least one run folder")
    configs = {run: config_for(run, config) for run in runs}
    records = {run: model_record(run) for run in runs}
    stack = open_micrographs(inputs, chunks=-1)
    scores = {r: {} for r in runs}
    log = logging.getLogger("cryostream")
    for number, (source, name) in enumerate(zip(stack.attrs["sources"], stack.micrograph.values,
                                                strict=True), 1):
        start = time.perf_counter()
        header, image = read_micrograph(source)  # once, for every run
        found = ""  # the fitted defocus and the CTF check, as the first run's steps found them
        for run in runs:
            micrograph, percentile = normalised(image, header.pixel_size_angstrom, records[run],
                                                source)
            bound = configs[run].pipeline().bind(micrograph, _network(run, configs[run]))
            score = recorruption_score(bound, micrograph.image, micrograph.noise(), draws=draws,
                                       beta=beta, seed=seed)
            scores[run][str(name)] = score * percentile**2  # in the micrograph's units
            described = describe_found(bound.describe())
            found = found or described
            log.debug("%s on %s: %s", Path(run).name, name, described)
        log.info("scored %d/%d %s for %d runs: %.1f s%s", number, stack.sizes["micrograph"], name,
                 len(runs), time.perf_counter() - start, found)
    ranked = [{"run": r, "score": float(np.mean(list(s.values()))), "scores": s}
              for r, s in scores.items()]
    return sorted(ranked, key=lambda row: row["score"])


def describe_found(found: dict) -> str:
    """What the steps found on a micrograph, in a few words for a progress note."""
    if "ctf_used" not in found:
        return ""
    fit = found.get("ctf")
    if fit is None:
        return "; too small for a CTF fit: radial Wiener gain"
    defocus = f"defocus {fit['defocus_u_angstrom'] / 1e4:.2f}/{fit['defocus_v_angstrom'] / 1e4:.2f} µm"
    if found["ctf_used"]:
        return f"; {defocus}, CTF check passed: CTF-shaped gain"
    return f"; {defocus}, CTF check failed: radial Wiener gain"


class _Progress:
    """One note per finished micrograph: its number, name, seconds and what the steps found."""

    def __init__(self, total: int, already: int):
        import threading

        self.total, self.count, self.lock = total, already, threading.Lock()

    def note(self, source: str, seconds: float, found: dict | None) -> None:
        import logging

        with self.lock:
            self.count += 1
            what = "skipped" if found is None else f"{seconds:.1f} s{describe_found(found)}"
            logging.getLogger("cryostream").info("denoised %d/%d %s: %s", self.count, self.total,
                                                 Path(source).name, what)


def _percentile(run: str) -> float:
    from cryostream.denoise.network import load_network

    return load_network(run).record.percentile


def _computed_on(run: str) -> dict:
    """Where the network runs and in what precision, for the output's record: a bf16 run
    computes in float32 on a CPU, so its outputs differ from a GPU's in the last digits."""
    import jax

    from cryostream.denoise.network import load_network

    return {"backend": jax.default_backend(), "dtype": load_network(run).compute_dtype}


def _halves_usable(halves: list, run: str, config: DenoiseConfig, permissive: bool) -> bool:
    """Both halves of a pair pass :func:`check_micrograph` before any work on either; with
    ``permissive`` a bad half skips the pair with a warning naming both (False)."""
    import warnings

    from cryostream.denoise.network import load_network
    from cryostream.io.stack import MicrographSkippedWarning

    network = load_network(run)
    for (half, image), (other, _) in zip(halves, halves[::-1], strict=True):
        try:
            check_micrograph(image, half, network.record, network.config, config)
        except InvalidMicrographError as exc:
            if not permissive:
                raise
            warnings.warn(f"skipping {exc} (and its other half {other})",
                          MicrographSkippedWarning, stacklevel=3)
            return False
    return True


def _denoise_item(item: tuple, *, run: str, config: DenoiseConfig, permissive: bool,
                  progress: _Progress | None = None):
    import time

    from cryostream.denoise.sources import halves_pipeline
    from cryostream.io.mrc import read_header_copy

    micrograph, plan = item
    start = time.perf_counter()
    config = micrograph.config(config)
    halves = [(half, read_micrograph(half)[1]) for half in (micrograph.source, micrograph.odd)
              if half is not None]
    usable = len(halves) == 1 or _halves_usable(halves, run, config, permissive)
    pipeline = halves_pipeline(micrograph, config, halves, _percentile(run)) if usable else None
    found = {}
    estimate = None
    for half, image in halves if usable else ():
        out, seen = denoise_image(image, micrograph.pixel_size_angstrom, half, run, config,
                                  permissive=permissive, pipeline=pipeline)
        if out is None:
            estimate = None
            break
        if estimate is None:
            estimate, found = out, seen
        else:  # the odd half: the full sum's estimate is the sum of the halves' (cryoCARE's way)
            estimate = estimate + out
            found = {**found, "odd_half": seen,
                     "halves": "the sum of the pipeline's outputs on the even and odd halves "
                     "(the full sum's scale)"}
    if estimate is not None and plan is not None:
        like = read_header_copy(micrograph.source, extended_header=config.keep_extended_header)
        estimate = write_output(plan, estimate, micrograph.pixel_size_angstrom,
                                history_label(run, config),
                                output_record(run, config, micrograph.source, found,
                                              micrograph.given(), _computed_on(run)),
                                dtype=config.output_dtype, like=like)
    if progress is not None:
        named = plan.path if plan is not None else micrograph.source  # a pair: the micrograph
        progress.note(named, time.perf_counter() - start, found if estimate is not None else None)
    return estimate


def denoise(run, inputs: str | os.PathLike | Iterable, output: str | os.PathLike | None = None, *,
            config: DenoiseConfig | None = None, overwrite: bool = False, workers: int = 2,
            scheduler: str | None = None, cluster_workers: int | None = None,
            permissive: bool = False, pixel_size_angstrom: float | None = None, odd=None):
    """Denoise micrographs with a trained run.

    Parameters
    ----------
    run : path-like or str
        The model: ``"general"`` (shipped in the package, trained on simulated micrographs
        over a spread of conditions), a run folder written by :func:`cryostream.train`, or an
        exported ``.npz`` (:func:`cryostream.models.export.export_params`).
    inputs : paths, globs, folders, STAR files, or an array
        Micrographs (any MRC mode); normalised as in training (the store's percentile) and
        restored to their own scale afterwards. Checked as :func:`cryostream.prepare` checks
        them (NaN or Inf pixels, constant, a percentile that cannot normalise, too small). A
        RELION STAR file gives each micrograph's pixel size and the optics of its CTF gain
        (its optics group: voltage, Cs, amplitude contrast, in place of the config's), and
        CTFFIND's defocus (``rlnDefocusU``/``V``/``Angle``) used instead of a fit, still
        guarded by the CTF gain's recorruption check. A NumPy, Dask or xarray array,
        ``(y, x)`` or ``(micrograph, y, x)``, is denoised in memory (no ``output``) and comes
        back as an xarray of the same dims with its pixel size and config in ``attrs``.
    output : path-like, optional
        Folder for MRC files (``NAME.mrc`` for each input's file name, or
        ``NAME{output_suffix}.mrc``; float32 or ``config.output_dtype``) that keep the input's
        origin, voxel size and labels plus one history label (and its extended header with
        ``config.keep_extended_header``), each with a ``NAME.json`` record of how it was made
        (the run, the :class:`~cryostream.config.DenoiseConfig`, the input, the version, the
        CTF). Last, ``denoised_micrographs.star`` lists the outputs for RELION or cryoSPARC
        (the input STAR file's optics table and columns, or an optics table from the pixel
        size and the config's optics). Checked before any computing: two inputs of one name,
        an output that would replace an input, or a ``NAME.mrc`` there that is not this run's
        output with these options are refused. Finished outputs of the same run, options and
        input are found and skipped, so an interrupted run resumes. Required on a cluster.
    config : DenoiseConfig, optional
        The post-processing steps, the tiling and the output files. Options left ``None``
        (the default) are decided for the run (:meth:`DenoiseConfig.for_run`): the best
        validated recipe. ``DenoiseConfig.raw()`` gives the network's output as it is.
    overwrite : bool
        Replace outputs made otherwise, and recompute finished ones; each is replaced only by
        a complete new one.
    workers : int
        Micrographs in flight at once in this process (their reading and writing overlap the
        device work).
    scheduler, cluster_workers : str, int, optional
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
        file's ``rlnMicrographNameEven`` and ``rlnMicrographNameOdd``), paired by name
        (:func:`~cryostream.io.halves.pair_halves`). Each output is the sum of the
        pipeline's outputs on the two halves (as cryoCARE predicts; the full sum's scale),
        named after the micrograph (``NAME.mrc`` for ``NAME_EVN.mrc``); its record says so.

    Returns
    -------
    xarray.DataArray (micrograph, y, x) float32
        The denoised stack: lazily over the written files when ``output`` is given (``attrs``
        ``kept``: how many were finished before and kept; ``star``: the STAR file written),
        in memory otherwise. For a lazy result without files, use
        :func:`~cryostream.denoise.tiling.denoise_array`.
    """
    import concurrent.futures
    import functools

    from cryostream.cluster import compute_context

    for name, value in (("workers", workers), ("cluster_workers", cluster_workers)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}={value!r} (--{name.replace('_', '-')}): must be an integer "
                              "≥ 1")
    if output is None and (scheduler is not None or cluster_workers is not None):
        raise ConfigError("denoising on a cluster needs an output folder (-o)")
    run = model_path(run)
    config = config_for(run, config)  # before any output folder is made
    arrays = array_stack(inputs, pixel_size_angstrom)
    if arrays is not None:
        if output is not None or scheduler is not None or cluster_workers is not None \
                or odd is not None:
            raise ConfigError("arrays are denoised in memory, here: leave out output, "
                              "scheduler, cluster_workers and odd (or pass MRC files)")
        return _denoise_arrays(arrays, run, config, permissive,
                               two_d=getattr(inputs, "ndim", 3) == 2)
    gathered = gather_inputs(inputs, config=config, odd=odd,
                             pixel_size_angstrom=pixel_size_angstrom, permissive=permissive)
    micrographs = gathered.micrographs
    plans: list = [None] * len(micrographs)
    made = None
    if output is not None:
        plans, made = plan_denoise(run, config, micrographs, gathered.star, Path(output),
                                   overwrite=overwrite)
    todo = [(m, p) for m, p in zip(micrographs, plans, strict=True) if p is None or not p.done]
    if todo:  # the first note comes when a micrograph is done: say what is under way now
        import jax

        logging.getLogger("cryostream").info(
            "denoising %d micrograph%s with %s (%s) on the %s; a note as each is done", len(todo),
            "" if len(todo) == 1 else "s", Path(run).name,
            " + ".join(recipe_steps(config)) or "the network alone", jax.default_backend().upper())
    job = functools.partial(_denoise_item, run=run, config=config, permissive=permissive)
    try:
        with compute_context(scheduler=scheduler, workers=cluster_workers) as client:
            if not todo:
                results = []
            elif client is not None:
                results = client.gather(client.map(job, todo))
            else:
                job = functools.partial(job, progress=_Progress(len(micrographs),
                                                                len(micrographs) - len(todo)))
                with concurrent.futures.ThreadPoolExecutor(min(workers, len(todo))) as pool:
                    results = list(pool.map(job, todo))
    except BaseException:
        if made is not None and not any(made.iterdir()):
            made.rmdir()  # the folder this call made holds nothing: leave no trace
        raise
    if all(r is None for r in results) and not any(p is not None and p.done for p in plans):
        raise InvalidMicrographError("<inputs>", "no usable micrograph left", "see the warnings")
    return _result(micrographs, plans, todo, results, gathered, output)


def _result(micrographs, plans, todo, results, gathered, output):
    """The denoised stack :func:`denoise` returns; with ``output``, after the STAR file."""
    from cryostream.io.stack import open_micrographs
    from cryostream.io.star import write_micrograph_star

    done = {m.source: r for (m, _), r in zip(todo, results, strict=True) if r is not None}
    if output is not None:
        done.update({p.source: str(p.path) for p in plans if p.done})
    kept = [m for m in micrographs if m.source in done]
    sizes = {m.pixel_size_angstrom for m in kept}
    one_size = None if len(sizes) == 1 and output is not None else kept[0].pixel_size_angstrom
    if output is None:
        stack = open_micrographs([m.source for m in kept], chunks=-1, pixel_size_angstrom=one_size)
        return stack.copy(data=np.stack([done[m.source] for m in kept]))
    star = Path(output) / STAR_NAME
    write_micrograph_star(star, *star_tables(gathered, done))  # last: after every output
    result = open_micrographs([done[m.source] for m in kept], chunks=-1,
                              pixel_size_angstrom=one_size)
    return result.assign_attrs(kept=sum(p.done for p in plans), star=str(star),
                               pixel_sizes_angstrom=[m.pixel_size_angstrom for m in kept])
