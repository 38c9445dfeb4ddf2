"""The public denoising calls: :func:`denoise` writes denoised micrographs, :func:`rank_runs`
orders trained runs by a truth-free score on the micrographs they will denoise."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cryostream.config import DenoiseConfig, to_dict
from cryostream.denoise.corrections import check_correctable
from cryostream.denoise.scores import recorruption_score
from cryostream.denoise.steps import Micrograph
from cryostream.denoise.tiling import network_pass
from cryostream.errors import ConfigError

__all__ = ["denoise", "rank_runs", "denoise_micrograph", "read_micrograph", "normalised",
           "output_record"]


def _checked(run, config: DenoiseConfig):
    """The run's record, after checking that ``config`` applies to it (before any output)."""
    from cryostream.runs import load_record

    record = load_record(run)
    if config.n2n_correction:
        check_correctable(record)
    return record


def read_micrograph(source: str):
    """A micrograph's header and its pixels (native float32), with one read."""
    from cryostream.io.mrc import read_header, read_rows

    header = read_header(source)
    return header, read_rows(header, 0, header.shape[0])


def normalised(image: np.ndarray, header, record, source: str) -> tuple[Micrograph, float]:
    """The :class:`Micrograph` the steps see (the pixels divided by the run's percentile, as in
    training) and that percentile."""
    percentile = float(np.percentile(image, record.prepare.percentile))
    return Micrograph(image / np.float32(percentile), header.pixel_size_angstrom, record,
                      source=str(source)), percentile


def _network(run: str, config: DenoiseConfig):
    def network(image):
        return network_pass(run, image, tile=config.tile, halo=config.halo,
                            batch_size=config.batch_size)

    return network


def output_record(run, config: DenoiseConfig, source: str, found: dict) -> dict:
    """What an output says of how it was made: the run, the config, the input, the cryostream
    version and what the steps found on the micrograph (``NAME.json`` beside ``NAME.mrc``)."""
    from cryostream._version import __version__

    return {"kind": "DenoiseOutput", "cryostream_version": __version__, "run": str(run),
            "input": str(source), "config": to_dict(config), "found": found}


def _label(run: str, config: DenoiseConfig) -> str:
    steps = [s.name for s in config.pipeline().steps]
    if config.ensemble:
        steps.insert(0, "ensemble")
    return f"cryostream denoise {Path(run).name}" + (f" {'+'.join(steps)}" if steps else "")


def denoise_micrograph(source: str, name: str, run: str, config: DenoiseConfig, *,
                       output: str | None, overwrite: bool):
    """One micrograph through the whole pipeline: percentile, network, steps, MRC.

    The micrograph is read once; the percentile, the network and the steps share it, and its
    noise is measured once. With ``output`` (a folder), writes ``NAME.mrc`` with a history
    label and ``NAME.json`` (:func:`output_record`) and returns the MRC path; otherwise returns
    the denoised array in the micrograph's units.
    """
    from cryostream.io.mrc import write_micrograph
    from cryostream.runs import load_record

    header, image = read_micrograph(source)
    micrograph, percentile = normalised(image, header, load_record(run), source)
    estimate, found = config.pipeline().run(micrograph, _network(run, config))
    estimate *= np.float32(percentile)
    if output is None:
        return estimate
    path = Path(output) / f"{name}.mrc"
    write_micrograph(path, estimate, header.pixel_size_angstrom, history=_label(run, config),
                     overwrite=overwrite)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(output_record(run, config, source, found), indent=1))
    return str(path)


def rank_runs(runs: Iterable, inputs, *, config: DenoiseConfig | None = None, draws: int = 2,
              beta: float = 0.5, seed: int = 0) -> list[dict]:
    """Rank trained runs by their denoising error on micrographs, without ground truth.

    Each run denoises recorrupted copies of each micrograph through the pipeline that
    :func:`denoise` would run with ``config``, and gets
    :func:`~cryostream.denoise.scores.recorruption_score` in the micrograph's own units, with
    the same noise draws for every run (a paired comparison). Seeds of one training set
    differ: on simulated micrographs two seeds in six lost 0.13–0.19 dB to the others, and the
    score put both behind the other four on every micrograph (docs/guide/noise.md). Costs
    ``draws`` network passes per run and micrograph.

    Returns one dict per run, best (lowest mean score) first: ``run``, ``score`` (mean over
    the micrographs) and ``scores`` (per micrograph name).
    """
    from cryostream.io.stack import open_micrographs

    config = config or DenoiseConfig()
    runs = list(dict.fromkeys(str(Path(r).absolute()) for r in runs))  # each run once
    if not runs:
        raise ConfigError("rank_runs needs at least one run folder")
    records = {run: _checked(run, config) for run in runs}
    stack = open_micrographs(inputs, chunks=-1)
    scores = {r: {} for r in runs}
    pipeline = config.pipeline()
    for source, name in zip(stack.attrs["sources"], stack.micrograph.values, strict=True):
        header, image = read_micrograph(source)  # once, for every run
        for run in runs:
            micrograph, percentile = normalised(image, header, records[run], source)
            bound = pipeline.bind(micrograph, _network(run, config))
            score = recorruption_score(bound, micrograph.image, micrograph.noise(), draws=draws,
                                       beta=beta, seed=seed)
            scores[run][str(name)] = score * percentile**2  # in the micrograph's units
    ranked = [{"run": r, "score": float(np.mean(list(s.values()))), "scores": s}
              for r, s in scores.items()]
    return sorted(ranked, key=lambda row: row["score"])


def denoise(run, inputs: str | os.PathLike | Iterable, output: str | os.PathLike | None = None, *,
            config: DenoiseConfig | None = None, overwrite: bool = False, workers: int = 2,
            scheduler: str | None = None, cluster_workers: int | None = None):
    """Denoise micrographs with a trained run.

    Parameters
    ----------
    run : path-like
        A run folder written by :func:`cryostream.train`.
    inputs : paths, globs, folders or a STAR file
        Micrographs (any MRC mode); normalised as in training (the store's percentile) and
        restored to their own scale afterwards.
    output : path-like, optional
        Folder for float32 MRC files (same names, pixel size and a history label in the
        header), each with a ``NAME.json`` record of how it was made (the run, the
        :class:`~cryostream.config.DenoiseConfig`, the version, the fitted CTF). Required on a
        cluster.
    config : DenoiseConfig, optional
        The post-processing steps and the tiling (default: the network's output as it is).
    overwrite : bool
        Replace existing outputs.
    workers : int
        Micrographs in flight at once in this process (their reading and writing overlap the
        device work).
    scheduler, cluster_workers : str, int, optional
        Run on an existing Dask scheduler, or on a LocalCluster of that many worker processes
        (as :func:`cryostream.prepare` does); each worker loads the model once.

    Returns
    -------
    xarray.DataArray (micrograph, y, x) float32
        The denoised stack: lazily over the written files when ``output`` is given, in memory
        otherwise. For a lazy result without files, use
        :func:`~cryostream.denoise.tiling.denoise_array`.
    """
    import concurrent.futures
    import functools

    from cryostream.cluster import compute_context
    from cryostream.io.stack import open_micrographs

    config = config or DenoiseConfig()
    _checked(run, config)  # before any output folder is made
    stack = open_micrographs(inputs, chunks=-1)
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
    elif scheduler is not None or cluster_workers is not None:
        raise ConfigError("denoising on a cluster needs an output folder (-o)")
    job = functools.partial(denoise_micrograph, run=str(Path(run).absolute()), config=config,
                            output=None if output is None else str(Path(output).absolute()),
                            overwrite=overwrite)
    sources = list(stack.attrs["sources"])
    names = [str(n) for n in stack.micrograph.values]
    with compute_context(scheduler=scheduler, workers=cluster_workers) as client:
        if client is not None:
            results = client.gather(client.map(job, sources, names))
        else:
            with concurrent.futures.ThreadPoolExecutor(min(workers, len(sources))) as pool:
                results = list(pool.map(job, sources, names))
    if output is None:
        return stack.copy(data=np.stack(results))
    return open_micrographs(results, chunks=-1)
