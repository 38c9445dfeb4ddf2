"""Fit a model's table of learned weights (``cryostream.denoise.weights``) on simulated
micrographs with their truth, and write it into the model's record.

Calibration micrographs are drawn from the general model's training spread
(``general_model_spread.SPREAD``) with their own seed (``--seed``, default 2: the training set is
seed 0 and the held-out conditions seed 1), so none is a training or a held-out micrograph. For
each, the network runs in this process (the GPU, where there is one): once, and as the 8-fold
ensemble. In a pool of processes, each output goes through what ``cryostream denoise`` does
with no option, less the learned weights (``DenoiseConfig(learned_weights=False).for_run``: the
CTF-shaped gain with its check and fallback), and the sums of
:func:`cryostream.denoise.weights.weight_sums` (the gain's linear response and the network's
rest, against the truth) are taken. One table is fitted
for the ensemble and one for a single pass (:func:`~cryostream.denoise.weights.fit_learned_weights`).

The model is a run folder (the table goes into its ``config.json``) or an exported ``.npz``
(``--export`` writes a copy with the table; its metadata are kept). Writes
``OUT/learned_weights.json``: the tables, each micrograph's condition, measured
signal-to-noise ratio and sums (a table can be fitted again from them without the GPU), and the
PSNR of each micrograph before and after the weights (in-sample:
the held-out scores are ``train_general_model.py``'s and ``bench_dose_gpu.py``'s).

Usage (one H200, about 3 minutes for 96 micrographs of 2048²)::

    python benchmarks/fit_learned_weights.py --model cryostream/data/general_model.npz \\
        --work /tmp/lw --out OUT --export OUT/general_model.npz

``--binned-pass`` fits the weight of the binned pass as well (the network on each micrograph
binned by 2, :mod:`cryostream.denoise.binned`); its sums hold what the gain dropped too, which
``--dropped`` weighs as a fourth part. ``--binned-offsets 4`` takes the binned pass as the mean
over the four starts of its 2×2 blocks (the table records it, and ``denoise`` runs the pass so
for it; held out it moved the FRC by −0.0012 to +0.0035 and the PSNR by −0.014 to +0.006 dB,
for about 1.7 times the network's work and 2.5 times its time in the H200 scoring loop:
``h200_binned_offsets4_*``, not the shipped recipe). ``--taper 0.2`` takes the sums inside
the FRC's edge window. ``--condition NAME`` draws the calibration micrographs as that held-out
condition draws its own, another seed than its test set's (a table for one kind of micrograph:
docs/benchmarks.md, "Tables fitted for one condition"). ``--by-size fit --rows 2`` fits a table of
2 rows by ratio in each pixel-size group instead of scaling one. ``--keep-input-frc 0.005``
holds, in each row, the bands where the
least-squares mix leaves a calibration micrograph under its input's FRC to a mix that keeps
every one at or above it (``frc_constrained_weights.py``), cheapest bands first, while the row
loses at most 0.005 dB of PSNR on average. The shipped table is all of these
(:data:`SHIPPED_RECIPE`, seed 2, 96 micrographs, the network computed in float32 as
``denoise`` computes it), fitted from the sums of ``h200_learned_weights_fp32.json``. CPU
smoke run: ``--count 4 --shape 512 512 --rows 1 --pixel-groups 2``. Fit again from a results
file's sums, without the GPU: ``--from OUT/learned_weights.json --out OUT2 --export
OUT2/general_model.npz``. The shipped table is, bit for bit
(``tests/test_shipped_table.py``)::

    python benchmarks/fit_learned_weights.py --model cryostream/data/general_model.npz \
        --from docs/results/general_model/h200_learned_weights_fp32.json --dropped \
        --by-size fit --rows 2 --keep-input-frc 0.005 --out OUT --export OUT/general_model.npz

The ones before: least squares alone, on the network's bfloat16 outputs, ``--from
h200_learned_weights_fit_dropped_taper.json --dropped --by-size fit --rows 2`` on the model
before the table of four parts (``git show 7a254bc:cryostream/data/general_model.npz``); four
parts scaled per group from whole-image sums, ``--from h200_learned_weights_fit_dropped.json
--dropped`` on the same model; three parts, ``--from h200_learned_weights_fit_binned.json`` on
the model at f76b2ea; two parts, ``--by-size scale`` of the model at 0128b9f with ``--from``
``h200_learned_weights_fit_ctf_edge.json`` and ``h200_learned_weights_fit_seed3.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
from general_model_spread import CONDITIONS, SPREAD, held_out_condition, simulate_one, training_condition

#: How the tables follow the pixel size. On the general model's calibration micrographs
#: (leave-one-out), a fit per group of pixel size left 0.64 of the error over each
#: micrograph's own best weights that a table by ratio alone left, one scale per group 0.79.
#: On sums over the whole image, held out on the H200, the fit per group gained 0.06 dB at
#: T20S 10 e/Å² but lowered the FRC there at 0.03–0.5 cycles/px by 6–20 % (the edge jump made
#: the network's rest look correlated with the truth at fine scales); on sums inside the FRC's
#: window (``--taper 0.2``) it kept the FRC at or above the input's and Topaz's in 48 of 60
#: held-out band cells against 45 for the scale, at the same PSNR: the shipped recipe.
BY_SIZE = {"scale": "the model's table by ratio (or one fitted), one scale per band and "
                    "pixel-size group (each ring's FRC stays the table's)",
           "fit": "a table by ratio fitted in each pixel-size group",
           "none": "the table by ratio alone"}
#: The shipped general model's recipe, ``--binned-pass --dropped --taper 0.2 --by-size fit
#: --rows 2``: what ``train_general_model.py``'s weights stage fits.
SHIPPED_RECIPE = {"rows": 2, "by_size": "fit", "binned_pass": True, "dropped": True, "taper": 0.2,
                  "keep_input_frc": 0.005}
#: Groups of calibration micrographs by pixel size.
PIXEL_GROUPS = 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_only() -> None:
    """Pool initialiser: the workers never take the GPU the parent process holds."""
    os.environ["JAX_PLATFORMS"] = "cpu"


def pool(workers: int):
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=cpu_only)


def calibration_tasks(count: int, shape, seed: int, work: Path,
                      high_signal_share: float | None = None,
                      dose: tuple[float, float] | None = None,
                      low_dose_share: float | None = None,
                      condition: str | None = None) -> list[dict]:
    """The calibration micrographs: drawn from the training spread, or with ``condition`` as
    the held-out condition of that name draws its own, with another seed than its test
    micrographs' (``--seed`` 2 draws with 4, the test set with 1)."""
    def config(i: int) -> dict:
        if condition is not None:
            return held_out_condition(condition, seed + 1, shape)
        return training_condition(seed, i, shape, high_signal_share, dose, low_dose_share)

    return [{"index": i, "config": config(i),
             "noisy": str(work / "micrographs" / f"cal_{i:04d}.mrc"),
             "truth": str(work / "truth" / f"cal_{i:04d}.mrc")} for i in range(count)]


def _calibration_micrograph(task: dict, record):
    """The noisy micrograph and its truth over the micrograph's 95th percentile, and the
    :class:`~cryostream.denoise.steps.Micrograph` the steps see."""
    import mrcfile

    from cryostream.denoise.steps import Micrograph

    noisy, truth = mrcfile.read(task["noisy"]), mrcfile.read(task["truth"])
    p = np.float32(np.percentile(noisy, 95))
    y, x = noisy / p, truth / p
    return y, x, Micrograph(y, task["pixel_size"], record, source=task["noisy"])


def _default_output(config, micrograph, out: np.ndarray,
                    binned: np.ndarray | None = None) -> np.ndarray:
    """``config``'s pipeline on the network's output ``out`` (and the binned pass's, ``binned``;
    computed already), warnings quiet; the radial gain where no CTF can be fitted (Nyquist
    coarser than 3 Å)."""
    import warnings

    from quality_common import known_output

    from cryostream.errors import CryostreamError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pipeline = dataclasses.replace(config.pipeline(), ensemble=False)
            return pipeline.run(micrograph, known_output(micrograph.image, out), binned)[0]
        except CryostreamError:
            config = dataclasses.replace(config, ctf_gain=False, wiener_gain=True)
            pipeline = dataclasses.replace(config.pipeline(), ensemble=False)
            return pipeline.run(micrograph, known_output(micrograph.image, out), binned)[0]


def sums_one(task: dict) -> dict:
    """Worker: the default pipeline (no learned weights) on the network's outputs of one
    micrograph, and their :class:`WeightSums` against the truth, for one pass and the ensemble."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.weights import weight_sums
    from cryostream.metrics import psnr

    record = task["record"]  # no model loaded here: the parent holds the GPU
    if DenoiseConfig().for_run(record).n2n_correction:
        raise SystemExit("learned weights are fitted for models that estimate the clean image "
                         "(trained on truth): here the gain would take the corrected estimate")
    y, x, micrograph = _calibration_micrograph(task, record)
    row = {"index": task["index"], "psnr": {}}
    for kind in ("single", "ensemble"):
        out = np.load(task[kind])
        binned = np.load(task[f"binned_{kind}"]) if task.get(f"binned_{kind}") else None
        config = DenoiseConfig(learned_weights=False, ensemble=kind == "ensemble").for_run(record)
        estimate = _default_output(config, micrograph, out)
        sums = weight_sums(out, estimate, y, x, micrograph.noise(), binned,
                           dropped=binned is not None,  # a table of 3 or 4 parts from them
                           taper=task.get("taper") or None)
        row[kind] = {"snr": sums.snr, "sums": sums.sums.tolist()}
        row["psnr"][kind] = round(psnr(estimate, x), 4)
    row["truth"], row["noisy"], row["pixel_size"] = task["truth"], task["noisy"], task["pixel_size"]
    return row


def _model_key(model: str) -> str:
    """A folder name for a model's outputs: its name, its parent's, and a run's last step or an
    export's size (a run trained again, or another run of the same name, gets new outputs)."""
    from cryostream.runs import checkpoint_steps

    path = Path(model)
    if path.is_dir():
        steps = checkpoint_steps(path)
        return f"{path.parent.name}_{path.name}_step{steps[-1] if steps else 0}"
    return f"{path.parent.name}_{path.stem}_{path.stat().st_size if path.exists() else 0}"


def calibration_draws(args) -> dict:
    """How the calibration micrographs are drawn (the shares used, SPREAD's where ``args``
    has none, and the dose range) and the work folder's subfolder that holds them."""
    drawn = {"high_signal_share": getattr(args, "high_signal_share", None),
             "low_dose_share": getattr(args, "low_dose_share", None),
             "dose": list(args.dose) if getattr(args, "dose", None) else None,
             "condition": getattr(args, "condition", None)}
    for corner in ("high_signal", "low_dose"):
        if drawn[f"{corner}_share"] is None:
            drawn[f"{corner}_share"] = SPREAD[corner]["share"]
    folder = (f"seed{args.seed}_{args.shape[0]}x{args.shape[1]}"
              f"_high{drawn['high_signal_share']:g}_low{drawn['low_dose_share']:g}"
              + (f"_dose{drawn['dose'][0]:g}-{drawn['dose'][1]:g}" if drawn["dose"] else "")
              + (f"_{drawn['condition']}" if drawn["condition"] else ""))
    return drawn | {"folder": folder}


def fit(args) -> dict:
    from cryostream.denoise import dihedral_mean
    from cryostream.denoise.binned import binned_estimate
    from cryostream.denoise.network import model_path, model_record
    from cryostream.denoise.tiling import network_pass

    model = model_path(args.model)
    with_binned = args.binned_pass
    offsets = getattr(args, "binned_offsets", 1)
    drawn = calibration_draws(args)
    work = args.work / drawn["folder"]  # each set of draws its own micrographs and outputs
    outputs = work / "outputs" / _model_key(model)  # each model its own network outputs
    outputs.mkdir(parents=True, exist_ok=True)
    tasks = calibration_tasks(args.count, args.shape, args.seed, work, drawn["high_signal_share"],
                              drawn["dose"], drawn["low_dose_share"], drawn["condition"])
    for t in tasks:
        Path(t["noisy"]).parent.mkdir(parents=True, exist_ok=True)
        Path(t["truth"]).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with pool(args.workers) as ex:
        list(ex.map(simulate_one, tasks))
    simulated = time.perf_counter() - start
    log(f"simulated {len(tasks)} calibration micrographs in {simulated:.0f} s")
    import mrcfile

    record = model_record(model)
    t0 = time.perf_counter()
    jobs = []
    for t in tasks:
        kinds = ("single", "ensemble") + (("binned_single", "binned_ensemble")
                                          if with_binned else ())
        outs = {k: str(outputs / f"cal_{t['index']:04d}_{file_kind(k, offsets)}.npy")
                for k in kinds}
        if not all(Path(v).exists() for v in outs.values()):
            noisy = mrcfile.read(t["noisy"])
            y = noisy / np.float32(np.percentile(noisy, 95))
            net = lambda im: network_pass(model, im)  # noqa: E731
            np.save(outs["single"], net(y))
            np.save(outs["ensemble"], dihedral_mean(net, y))
            if with_binned:
                np.save(outs["binned_single"], binned_estimate(net, y, offsets=offsets))
                np.save(outs["binned_ensemble"], binned_estimate(net, y, ensemble=True,
                                                                 offsets=offsets))
        jobs.append({**t, **outs, "record": record, "taper": args.taper,
                     "pixel_size": t["config"]["pixel_size_angstrom"]})
    network_seconds = time.perf_counter() - t0
    passes = f"9 passes and {9 * offsets} binned" if with_binned else "9 passes"
    log(f"network ({passes} each) in "
        f"{network_seconds:.0f} s; the pipeline and sums on "
        f"{args.workers} processes")
    with pool(args.workers) as ex:
        rows = list(ex.map(sums_one, jobs))
    tables, bases = fit_tables(rows, args, record, shape=args.shape, taper=args.taper)
    after = {}
    if not args.no_in_sample:
        with pool(args.workers) as ex:
            after = dict(zip([r["index"] for r in rows],
                             ex.map(after_one, [(j, tables) for j in jobs]), strict=True))
    return {"model": model, "count": args.count, "shape": list(args.shape), "seed": args.seed,
            **{k: v for k, v in drawn.items() if k != "folder" and v is not None},
            "rows": args.rows,
            "by_size": args.by_size, "pixel_groups": args.pixel_groups,
            "binned_pass": with_binned, "dropped": args.dropped, "taper": args.taper,
            "keep_input_frc": args.keep_input_frc,
            **({"binned_offsets": offsets} if with_binned else {}),
            "scaled_from": bases, "simulate_seconds": round(simulated, 1),
            "network_seconds": round(network_seconds, 1),
            "seconds": round(time.perf_counter() - start, 1), "tables": tables,
            "micrographs": [{**r, "condition": {k: tasks[r["index"]]["config"][k] for k in (
                "dose_e_per_angstrom2", "pixel_size_angstrom", "detector_nps_nyquist",
                "particle", "ice_thickness_relative")}}
                | ({"psnr_after": after[r["index"]]} if after else {}) for r in rows]}


def fit_tables(rows: list[dict], args, record=None, *, shape=(2048, 2048),
               taper: float = 0.0) -> tuple[dict, dict]:
    """The two tables (ensemble, single pass) from the calibration micrographs' sums, by
    ``args.by_size`` (:data:`BY_SIZE`), and what each scaled table was scaled from: with
    ``scale``, the model's own table (``record``'s) where it is by ratio alone, so that the
    mix in each band, and each ring's FRC, stay what the model gave; else a table by ratio
    fitted on the sums. ``shape`` and ``taper``: the micrographs' and the sums' window
    (``--keep-input-frc`` turns its budget in dB into squared error with them)."""
    from cryostream.denoise.weights import (
        WeightSums,
        fit_learned_weights,
        scale_by_pixel_size,
        weights_for,
    )

    tables, bases = {}, {}
    for kind in ("ensemble", "single"):
        sums = [WeightSums(r[kind]["snr"], np.asarray(r[kind]["sums"]), r["pixel_size"])
                for r in rows]
        held = min(s.parts for s in sums)  # files of several runs may hold different parts
        parts = 4 if args.dropped else min(held, 3)
        if held < parts:
            raise SystemExit("--dropped: some sums were taken without --binned-pass, or before "
                             "the part was summed; fit them apart")
        if len({min(s.parts, 3) for s in sums}) > 1:
            raise SystemExit("the sums are some with the binned pass, some without; fit them "
                             "apart")
        sums = [s.first(parts) for s in sums]
        if args.by_size == "fit" and getattr(args, "keep_input_frc", None) is not None:
            from frc_constrained_weights import kept_table

            table = kept_table(sums, 1.0, 0, args.rows, args.pixel_groups,
                               budget_db=args.keep_input_frc,
                               psnrs=[r["psnr"][kind] for r in rows], shape=tuple(shape),
                               taper=taper)
        elif args.by_size == "fit":
            table = fit_learned_weights(sums, args.rows, args.pixel_groups)
        elif args.by_size == "none":
            table = fit_learned_weights(sums, args.rows)
        else:
            own = None if record is None else weights_for(record, kind == "ensemble")
            if own is not None and (len(own.parts) != sums[0].parts or (
                    own.binned is not None
                    and own.binned_offsets != getattr(args, "binned_offsets", 1))):
                own = None  # a table of other parts, or of another binned pass
            if own is not None and own.pixel_size is not None:
                raise SystemExit(f"--by-size scale: the model's {kind} table is by pixel size "
                                 "already; pass the model it was scaled from (its table by "
                                 "ratio), or --by-size fit or none")
            base = own if own is not None else fit_learned_weights(sums, args.rows)
            bases[kind] = "the model's table" if own is not None \
                else f"a table of {args.rows} rows by ratio fitted on the sums"
            table = scale_by_pixel_size(base, sums, args.pixel_groups)
        if table.binned is not None:  # the binned pass the sums were taken with
            table = dataclasses.replace(table, binned_offsets=getattr(args, "binned_offsets", 1))
        tables[kind] = table.to_dict()
    return tables, bases


def file_kind(kind: str, offsets: int) -> str:
    """The network output's file name part: the binned pass's names its offsets (other than 1),
    so that outputs of another binned pass are not read back as these."""
    return kind.replace("binned", f"binned{offsets}") if offsets != 1 else kind


def refit(args) -> dict:
    """The tables fitted again from results files' sums (``--from``, one or more runs of this
    script on one model and shape, with different ``--seed``): no simulation, no network, no
    GPU; the in-sample PSNR is not measured again."""
    from cryostream.denoise.network import model_path, model_record

    stored = [json.loads(path.read_text()) for path in args.source]
    if len({(tuple(s["shape"]), s["seed"]) for s in stored}) < len(stored) \
            or len({tuple(s["shape"]) for s in stored}) > 1:
        raise SystemExit("--from: the files must share one shape and differ in --seed")
    if len({s.get("taper", 0.0) for s in stored}) > 1:
        raise SystemExit("--from: the files' sums were taken with different --taper")
    if len({s.get("binned_offsets", 1) for s in stored}) > 1:
        raise SystemExit("--from: the files' sums were taken with binned passes at different "
                         "offsets")
    args.binned_offsets = stored[0].get("binned_offsets", 1)
    micrographs = [{k: v for k, v in m.items() if k != "psnr_after"} | {"seed": s["seed"]}
                   for s in stored for m in s["micrographs"]]
    model = model_path(args.model)
    tables, bases = fit_tables(micrographs, args, model_record(model),
                               shape=tuple(stored[0]["shape"]), taper=stored[0].get("taper", 0.0))
    return {"count": len(micrographs), "shape": stored[0]["shape"],
            "seed": [s["seed"] for s in stored], "model": model,
            "refitted_from": [str(p) for p in args.source], "rows": args.rows,
            "binned_pass": "binned" in tables["ensemble"], "dropped": "dropped" in tables["ensemble"],
            **({"binned_offsets": args.binned_offsets} if "binned" in tables["ensemble"] else {}),
            "taper": stored[0].get("taper", 0.0),
            "by_size": args.by_size, "pixel_groups": args.pixel_groups, "scaled_from": bases,
            "keep_input_frc": args.keep_input_frc, "seconds": 0.0, "tables": tables,
            "micrographs": micrographs}


def after_one(job: tuple[dict, dict]) -> dict:
    """Worker: one calibration micrograph's PSNR with the tables in its model's record, as
    ``denoise`` gives it (in-sample: the micrograph helped fit them)."""
    from cryostream.config import DenoiseConfig
    from cryostream.metrics import psnr

    task, tables = job
    record = dataclasses.replace(task["record"], learned_weights=tables)
    _, x, micrograph = _calibration_micrograph(task, record)
    return {kind: round(psnr(_default_output(
        DenoiseConfig(ensemble=kind == "ensemble").for_run(record), micrograph, np.load(task[kind]),
        np.load(task[f"binned_{kind}"]) if task.get(f"binned_{kind}") else None), x), 4)
        for kind in ("single", "ensemble")}


def write_tables(model: str, tables: dict, export: Path | None, result: dict) -> str:
    """The tables into a run folder's ``config.json``, or a copy of an exported model."""
    from cryostream.runs import RECORD_FILE, load_record

    if not model.endswith(".npz"):
        record = dataclasses.replace(load_record(model), learned_weights=tables)
        path = Path(model) / RECORD_FILE
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(record.to_dict(), indent=1))
        os.replace(tmp, path)
        return str(path)
    if export is None:
        raise SystemExit("an exported model is not changed in place: pass --export NEW.npz")
    from cryostream.models.export import export_metadata, export_params, load_exported

    net, record = load_exported(model)
    metadata = export_metadata(model).get("metadata", {})
    metadata["learned_weights"] = {k: result[k] for k in ("count", "shape", "seed", "rows",
                                                           "by_size", "pixel_groups",
                                                           "binned_pass", "dropped", "taper",
                                                           "keep_input_frc", "binned_offsets")
                                   if k in result} \
        | {"fitted_by": "benchmarks/fit_learned_weights.py"}
    export_params(net, dataclasses.replace(record, learned_weights=tables), export,
                  metadata=metadata)
    return str(export)


def parse_args(argv=None):
    from cryostream.metrics import FRC_TAPER

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="general", help="a run folder, an exported .npz or a "
                    "shipped model's name (general)")
    ap.add_argument("--work", type=Path, help="micrographs and network outputs")
    ap.add_argument("--out", type=Path, required=True, help="results folder")
    ap.add_argument("--export", type=Path, help="for an exported model: the copy with the tables")
    ap.add_argument("--count", type=int, default=96, help="calibration micrographs (96)")
    ap.add_argument("--shape", type=int, nargs=2, default=(2048, 2048), metavar=("H", "W"))
    ap.add_argument("--rows", type=int, default=8, help="rows by signal-to-noise ratio (8; in "
                    "each pixel-size group with --by-size fit)")
    ap.add_argument("--by-size", choices=BY_SIZE, default="scale",
                    help="the pixel size's part (scale): "
                    + "; ".join(f"{k}: {v}" for k, v in BY_SIZE.items()))
    ap.add_argument("--pixel-groups", type=int, default=PIXEL_GROUPS,
                    help=f"groups by pixel size ({PIXEL_GROUPS})")
    ap.add_argument("--from", dest="source", type=Path, nargs="+", help="learned_weights.json "
                    "files (of one model, different --seed) to fit again from their sums "
                    "together (no GPU; --work is not used)")
    ap.add_argument("--binned-pass", action="store_true", help="fit the binned pass's weight "
                    "as well (cryostream.denoise.binned: the network on each micrograph binned "
                    "by 2; 9 more passes of a quarter the size each)")
    ap.add_argument("--binned-offsets", type=int, choices=(1, 4), default=1, help="with "
                    "--binned-pass: the binned pass at 1 start of the 2×2 blocks (the shipped "
                    "table) or the mean over all 4 (cryostream.denoise.binned)")
    ap.add_argument("--dropped", action="store_true", help="with --binned-pass (or --from its "
                    "sums): weigh what the gain took out of the micrograph as well (a table of "
                    "four parts)")
    ap.add_argument("--taper", type=float, default=0.0, help="compare the parts with the "
                    "truth inside cryostream.metrics.edge_taper's window of this margin (0, the "
                    f"whole image; {FRC_TAPER}: as the FRC and the shipped table, which leaves "
                    "out the jump between opposite edges: docs/research.md)")
    ap.add_argument("--keep-input-frc", type=float, metavar="DB", help="with --by-size fit "
                    "and --dropped: in each row, hold the bands where the least-squares mix "
                    "leaves a calibration micrograph under its input's FRC to a mix that keeps "
                    "every one at or above it, cheapest bands first, while the row's mean "
                    "in-sample PSNR falls by at most DB (frc_constrained_weights.py; the shipped "
                    "table: 0.005)")
    ap.add_argument("--no-in-sample", action="store_true", help="skip the calibration "
                    "micrographs' PSNR with the new tables (half the time)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--dose", type=float, nargs=2, metavar=("LOW", "HIGH"), help="calibration "
                    "micrographs at a dose drawn from this range (e/Å², log-uniform) instead of "
                    "the spread's, the rest of each as it would be: sums for a table that "
                    "reaches under the spread's dose, fitted with --from beside the spread's")
    ap.add_argument("--low-dose-share", type=float, help="share of calibration micrographs with "
                    "the dose drawn from under the spread's floor (default SPREAD['low_dose']'s, "
                    "0.2, what the shipped model was trained and fitted with; 0 for the spread "
                    "before it)")
    ap.add_argument("--condition", choices=tuple(CONDITIONS), help="calibration micrographs "
                    "drawn as this held-out condition draws its own (other seeds): a table for "
                    "one kind of micrograph, to measure what the spread's table costs there")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    if args.condition is not None and args.dose is not None:
        ap.error("--condition sets the dose; leave --dose out")
    args.shape = tuple(args.shape)
    if args.keep_input_frc is not None and not args.keep_input_frc >= 0:
        ap.error(f"--keep-input-frc {args.keep_input_frc}: a PSNR budget in dB, 0 or more")
    if args.keep_input_frc is not None and (args.by_size != "fit" or not args.dropped):
        ap.error("--keep-input-frc fits a table of four parts by pixel size: add --by-size fit "
                 "--dropped")
    if args.dropped and not args.binned_pass and args.source is None:
        ap.error("--dropped is weighed with the binned pass: add --binned-pass")
    if args.binned_offsets != 1 and (not args.binned_pass or args.source is not None):
        ap.error("--binned-offsets is how new sums take the binned pass: with --binned-pass, "
                 "not --from (its files say theirs)")
    if not 0 <= args.taper <= 0.5:
        ap.error(f"--taper {args.taper}: a margin in [0, 0.5] of each side (0: none)")
    if args.source is not None and (args.taper or args.no_in_sample):
        ap.error("--taper and --no-in-sample apply to new sums, not to --from (its files' "
                 "sums were taken with their own --taper)")
    if args.work is None and args.source is None:
        ap.error("--work is needed (or --from to fit again from stored sums)")
    if args.export is not None and args.export.parent.exists() and not args.export.parent.is_dir():
        ap.error(f"--export {args.export}: {args.export.parent} is a file, not a folder")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = fit(args) if args.source is None else refit(args)
    sums = args.out / "learned_weights.json"
    sums.write_text(json.dumps(result, indent=1, default=str))  # the sums kept if the export fails
    result["written"] = write_tables(result["model"], result["tables"], args.export, result)
    sums.write_text(json.dumps(result, indent=1, default=str))
    before = {k: np.mean([m["psnr"][k] for m in result["micrographs"]]) for k in ("single", "ensemble")}
    measured = all("psnr_after" in m for m in result["micrographs"])
    after = {k: np.mean([m["psnr_after"][k] for m in result["micrographs"]]) if measured
             else None for k in before}
    log(f"fitted on {result['count']} micrographs in {result['seconds']} s; mean PSNR in-sample: "
        + ", ".join(f"{k} {before[k]:.3f}" + (f" -> {after[k]:.3f}" if measured else "")
                    for k in before)
        + f"; snr rows (ensemble) {[round(s, 3) for s in result['tables']['ensemble']['snr']]}; "
        f"written to {result['written']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
