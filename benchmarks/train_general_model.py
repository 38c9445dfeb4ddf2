"""Train the general model cryostream ships, score it on held-out simulations, export it.

Five stages, each resumable (a rerun skips what is done), run in order:

``data``    Simulate ``--count`` training micrographs, each under its own condition drawn from
            :data:`SPREAD` (dose 10–80 e/Å², a fifth of them 4–10 instead, ``--low-dose-share``;
            pixel 0.5–1.5 Å, defocus 0.5–3.5 µm, detector
            noise white to a tenfold roll-off, ice thickness and texture, the four particle
            shapes and mixtures, crowding), and ``--test-count`` held-out micrographs for each
            named condition of :data:`CONDITIONS`, in parallel (one process per core). Then a
            paired store: each noisy micrograph with its ground truth as target
            (``prepare(..., targets=...)``, ``NoiseConfig(model="none")``; both divided by the
            micrograph's 95th percentile), no test split (scoring is on whole micrographs).
``train``   ``cryostream.train`` on the store: fixed batch shape, bf16 on the GPU, residual,
            checkpoints every ``--checkpoint-every`` steps (a cut-off run resumes).
``weights`` The run's table of learned weights (``fit_learned_weights.py``: ``--weights-count``
            calibration micrographs drawn from the spread with their own seed, the network
            once and as the ensemble, the default pipeline, least-squares weights per band of
            frequency against the truth; the shipped recipe, ``SHIPPED_RECIPE``: the binned
            pass and what the gain dropped as parts, sums inside the FRC's edge window, a table
            per pixel-size group, each row held to its micrographs' input FRC within 0.005 dB),
            written into the run's record: ``default`` below and the exported model use it.
``score``   Each held-out micrograph, divided by its 95th percentile (the store's
            normalisation; PSNR peak 1): the noisy input, the best Gaussian (σ chosen with the
            truth), the oracle Wiener filter (``cryostream.metrics.wiener_oracle``), Topaz's
            pretrained U-Net affine-fitted to the truth (its best case; with ``--topaz DIR``
            or when importable), and the network: raw, 8-fold ensemble, and ``default`` —
            what ``cryostream denoise`` applies to this run with no option
            (``DenoiseConfig().for_run(record)``: the ensemble and the CTF-shaped Wiener gain
            with its check). PSNR and FRC by band (cycles/px, ``quality_common.FRC_BANDS``).
            The network runs in this process (the GPU), in float32 as ``denoise`` computes
            it by default (``--inference-precision bf16``: in bfloat16, as tables before
            2026-12-04 were scored); the scores in a pool of processes.
``export``  The parameters and record as one compressed ``.npz`` (≤ 20 MB;
            :func:`cryostream.models.export.export_params`), read back and checked equal.

Writes ``OUT/general_model.json`` (every stage's figures, the machine, the arguments, each
micrograph's scores), ``OUT/general_model.md`` (the tables, and where the model does not beat a
baseline), the training curve and the exported model. The work folder (``--work``: micrographs,
store, run; tens of GB at full size) keeps the state between calls: keep it outside OUT.

Full size, the shipped model's options (one H200, 16 cores): 192 training micrographs of 2048²
(9408 patches of 512² at stride 256 in a float16 store, ≈10 GB; ≈20 GB in the work folder
with the micrographs), 11 conditions × 4 held-out micrographs, ``unet`` (bf16, residual) for
9000 steps of 16 patches of 512² (144k patches, 15 passes over the store) with
``--fresh-noise`` (each patch's stored noise moved at every step), no augmentation.
Measured there: data 67–76 s, train 243–250 s (a ≈60–70 s compile, then ≈805 patches/s),
weights 250 s with ``--no-in-sample`` (432 s without; holding the table to the input's FRC
adds ≈30 s of CPU), score 97 s (128 s with Topaz), export seconds. Two calls of under 10
minutes each, with the work folder kept between them (a cut-off stage resumes where it
stopped)::

    python benchmarks/train_general_model.py --out $OUT --stages data train score export
    python benchmarks/train_general_model.py --out $OUT --stages weights score export \\
        --no-in-sample --topaz DIR

The shipped model was made so, its second call as ``fit_learned_weights.py --model
general_model.npz --export NEW.npz`` with the weights stage's recipe (``SHIPPED_RECIPE``,
``--no-in-sample``), then ``--stages data score --count 0 --model-file NEW.npz --topaz DIR``:
the first call's work folder was gone. Its table was fitted again on 2026-12-04 from the
network's float32 outputs, held to the input's FRC (``SHIPPED_RECIPE``'s ``keep_input_frc``;
``fit_learned_weights.py``'s docstring has the command). ``--low-dose-share 0.2`` (the
default) draws a fifth of the micrographs at 4–10 e/Å² (a model trained on 10–80 e/Å² alone
ran against the truth at 5 e/Å²). The recipe's second training seed (``--train-seed 1``)
diverged both times: at step 1550 of 4000 without fresh noise (its default 0.2–3.3 dB worse)
and at step 3060 of 9000 with it (0.06–0.64 dB worse; the raw network up to 2.6 dB):
train again when ``train`` warns of a loss spike, and score before shipping.

Tried and not shipped (benchmarks page, "The shipped general model" and "Fresh noise"): 9000
steps without fresh noise (the held-out quality fell); 4000 steps with it (no change); 640
micrographs at stride 512 with ``--augment`` for 5000 steps; ``--no-residual``; ``--model
unet-deep``; ``--model unet-large``; ``--beta2 0.99``; ``--lr 5e-4``; ``--loss bands`` in its
first form (FRC up in the raw network, PSNR down; "A loss that weighs each band") and as on main
(level with the shipped model at ``--lr 5e-4``); ``--steps 18000`` (diverged at 10⁻³, level with the
shipped model at 5 × 10⁻⁴; "Twice the steps"), ``--particles t20s`` (a specialist: up to
+0.008 FRC on T20S, at 0–0.06 cycles/px; "Float32 at denoising, and a specialist"; its
micrographs differ, so give it its own ``--work``), ``--train-condition t20s-10e-white`` (a
specialist for one held-out condition, 6000 steps: +0.015 FRC at 0.03–0.06 cycles/px, still under
Topaz; "A specialist for one condition"; its own ``--work`` too), ``--patch 1024 --stride 512
--batch 4`` (each pixel's whole context in training: level at 0.03–0.06 cycles/px, 0.02–0.04 FRC
under at 0–0.01 at 5 × 10⁻⁴; spiked at 10⁻³; "Whole-context patches"; its own ``--work``),
``--precision fp32`` (at 5 × 10⁻⁴: the same final loss in twice the time, 0.1966 against
its bfloat16 control's 0.1985 at 0.03–0.06 cycles/px at 10 e/Å²; "Training in float32"), and
``--train-seed 1``, the spread between
trainings (``--run NAME`` keeps several runs on one store).

CPU smoke run (tiny sizes, a few minutes on 2 cores): ``--smoke --out OUT``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from general_model_spread import CONDITIONS, SPREAD, data_tasks, held_out_condition, simulate_one
from quality_common import FRC_BANDS, SIGMAS, affine_fit, known_output, summarise_frc

from cryostream.config import LOSSES

#: ``SimulateConfig.particles_per_micrograph`` counts particles per full-size micrograph.
METHODS = ("noisy", "gaussian", "wiener", "topaz", "raw", "ensemble", "unweighted", "default")
LABELS = {"noisy": "noisy", "gaussian": "best Gaussian", "wiener": "oracle Wiener",
          "topaz": "Topaz (affine)", "raw": "general, raw", "ensemble": "general, ensemble",
          "unweighted": "general, default less the learned weights",
          "default": "general, default"}

FULL = dict(count=192, shape=(2048, 2048), test_count=4, test_shape=None, patch=512, stride=None,
            model="unet", steps=9000, batch=16, precision="bf16", workers=os.cpu_count(),
            checkpoint_every=1000, weights_count=96)
SMOKE = dict(count=6, shape=(512, 512), test_count=1, test_shape=None, patch=128, stride=None,
             model="unet-small", steps=20, batch=4, precision="fp32", workers=2,
             checkpoint_every=10, weights_count=4)
STAGES = ("data", "train", "weights", "score", "export")
EXPORT_LIMIT_BYTES = 20e6


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def peak_memory_mb() -> dict:
    """Peak resident memory of this process and of its largest finished child, MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process_mb": round(own), "largest_child_mb": round(child)}


def pool(workers: int):
    """Worker processes started fresh (no JAX state inherited), on the CPU (the parent holds
    the GPU)."""
    from fit_learned_weights import cpu_only

    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=cpu_only)


def stage_data(args, work: Path, results: dict) -> None:
    from cryostream import NoiseConfig, PrepareConfig, prepare

    start = time.perf_counter()
    train, test = data_tasks(args, work)
    for t in train + test:
        Path(t["noisy"]).parent.mkdir(parents=True, exist_ok=True)
        Path(t["truth"]).parent.mkdir(parents=True, exist_ok=True)
    log(f"simulating {len(train)} training + {len(test)} held-out micrographs on "
        f"{args.workers} processes")
    infos = []
    with pool(args.workers) as ex:
        for n, info in enumerate(ex.map(simulate_one, train + test), 1):
            infos.append(info)
            if n % max(1, (len(train) + len(test)) // 10) == 0:
                log(f"  {n}/{len(train) + len(test)} simulated")
    simulated = time.perf_counter() - start
    store = work / "pairs.h5"
    prep = {"skipped": True}
    if train and not store.exists():
        config = PrepareConfig(patch_size=args.patch, stride=args.stride, test_fraction=0.0,
                               noise=NoiseConfig(model="none"), dtype=args.store_dtype,
                               seed=args.seed)
        log(f"preparing the paired store {store} (patch {args.patch}, stride {args.stride})")
        made = prepare([t["noisy"] for t in train], store, config,
                       targets=[t["truth"] for t in train], log=log)
        log(made.summary())
        prep = {"patches": made.train_patches, "bytes": made.bytes_written,
                "seconds": round(made.seconds, 1)}
    drawn = [t["config"] for t in train]
    results["data"] = {
        "seconds": round(time.perf_counter() - start, 1), "simulate_seconds": round(simulated, 1),
        "train_micrographs": len(train), "test_micrographs": len(test), "store": prep,
        "spread_drawn": {k: [round(min(d[k] for d in drawn), 3), round(max(d[k] for d in drawn), 3)]
                         for k in ("dose_e_per_angstrom2", "pixel_size_angstrom",
                                   "detector_nps_nyquist", "ice_thickness_relative",
                                   "particles_per_micrograph")} if drawn else {},
        "particles_drawn": {p: sum(d["particle"] == p for d in drawn) for p in SPREAD["particle"]},
        "simulated": [i for i in infos if not i.get("skipped")][:8], "memory": peak_memory_mb()}
    (work / "train_conditions.json").write_text(json.dumps(drawn, indent=1))


def use_compilation_cache(work: Path) -> str:
    import jax

    jax.config.update("jax_compilation_cache_dir", str(work / "jax-cache"))
    return str(jax.devices()[0].device_kind)


def stage_train(args, work: Path, out: Path, results: dict) -> None:
    import cryostream
    from cryostream import TrainConfig
    from cryostream.runs import checkpoint_steps, load_record

    device = use_compilation_cache(work)
    run = work / args.run
    cfg = TrainConfig(model=args.model, precision=args.precision, residual=args.residual,
                      steps=args.steps, batch_size=args.batch, learning_rate=args.lr, beta2=args.beta2,
                      loss=args.loss,
                      warmup_steps=max(1, min(200, args.steps // 10)), eval_every=args.steps,
                      checkpoint_every=args.checkpoint_every, keep_checkpoints=2,
                      seed=args.seed if args.train_seed is None else args.train_seed,
                      threads=8, prefetch=8, augment=args.augment, fresh_noise=args.fresh_noise)
    done = checkpoint_steps(run)
    if done and load_record(run).train != cfg:
        raise SystemExit(f"{run} was trained with other options; remove it to train afresh")
    if done and done[-1] >= args.steps:
        log(f"{run} already trained to step {done[-1]}")
        return
    log(f"training {args.model} ({args.precision}, residual={args.residual}) for {args.steps} "
        f"steps of {args.batch} × {args.patch}² on {device}" + (f", resuming at {done[-1]}" if done else ""))
    result = cryostream.train(work / "pairs.h5", run, cfg, resume=bool(done), log=log)
    timed_steps = result.steps - (done[-1] if done else 0) - 2
    rate = result.patches_per_second
    timed = timed_steps * args.batch / rate if timed_steps > 0 and rate > 0 else 0.0
    results["train"] = {
        "device": device, "config": dataclasses.asdict(cfg), "steps": result.steps,
        "seconds": round(result.seconds, 1), "final_loss": result.final_loss,
        "patches_per_second": round(rate, 1),
        "setup_and_compile_seconds": round(result.seconds - timed, 1), "memory": peak_memory_mb(),
        "loss_spike": result.loss_spike}  # train warned: a training to run again, not to ship
    log(f"trained: {result.steps} steps, {result.seconds:.0f} s "
        f"({results['train']['setup_and_compile_seconds']} s before the second step), "
        f"{rate:.0f} patches/s, loss {result.final_loss:.3g}")
    for name in ("metrics.jsonl", "loss.png"):
        if (run / name).exists():
            shutil.copy(run / name, out / f"train_{name}")


def topaz_function(args):
    if args.topaz:
        sys.path.insert(0, args.topaz)
    from cryostream.baselines import topaz_available, topaz_denoise

    return topaz_denoise if topaz_available() else None


def post_process(config, y: np.ndarray, images: dict, task: dict, record):
    """``config``'s pipeline on the network output computed once (the ensemble's if it asks)."""
    from cryostream.denoise import Micrograph

    network_out = images["ensemble"] if config.ensemble else images["raw"]
    binned = None
    if config.binned_pass:
        binned = np.load(task["binned_ensemble"] if config.ensemble else task["binned_raw"])
    pipeline = dataclasses.replace(config.pipeline(), ensemble=False)
    micrograph = Micrograph(y, task["pixel_size"], record, source=task["name"])
    return pipeline.run(micrograph, known_output(y, network_out), binned)


def score_one(task: dict) -> dict:
    """Worker: every method's PSNR and FRC bands on one held-out micrograph."""
    import mrcfile
    from scipy.ndimage import gaussian_filter

    from cryostream.config import DenoiseConfig
    from cryostream.errors import CryostreamError
    from cryostream.metrics import best_gaussian, frc, psnr, wiener_oracle

    noisy, truth = mrcfile.read(task["noisy"]), mrcfile.read(task["truth"])
    p = np.float32(np.percentile(noisy, 95))
    y, x = noisy / p, truth / p
    g_psnr, sigma = best_gaussian(y, x, SIGMAS)
    images = {"noisy": y, "gaussian": gaussian_filter(y, sigma) if sigma else y,
              "wiener": wiener_oracle(y, x)}
    if task.get("topaz"):
        images["topaz"] = affine_fit(np.load(task["topaz"]), x)
    images["raw"], images["ensemble"] = np.load(task["raw"]), np.load(task["ensemble"])
    record = task["record"]  # no model loaded here: the parent holds the GPU
    config = DenoiseConfig().for_run(record)  # what `cryostream denoise` does with no option
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            images["default"], found = post_process(config, y, images, task, record)
        except CryostreamError as exc:  # e.g. no CTF fit where Nyquist is coarser than 3 Å
            error = str(exc)
            config = dataclasses.replace(config, ctf_gain=False, wiener_gain=True)
            images["default"], found = post_process(config, y, images, task, record)
        if config.learned_weights:
            images["unweighted"], _ = post_process(dataclasses.replace(
                config, learned_weights=False, binned_pass=False), y, images, task, record)
    row = {"condition": task["condition"], "name": task["name"], "gaussian_sigma": sigma,
           "default_steps": [type(s).__name__ for s in config.pipeline().steps],
           "default_ensemble": config.ensemble, "default_error": error,
           "found": json.loads(json.dumps(found, default=float)),
           "warnings": [str(w.message)[:200] for w in caught], "psnr": {}, "frc_bands": {},
           "frc_mean": {}}
    for name, image in images.items():
        row["psnr"][name] = round(psnr(image, x), 4)
        profile = summarise_frc(*frc(image, x))
        row["frc_bands"][name], row["frc_mean"][name] = profile["bands"], round(profile["mean"], 4)
    row["gaussian_psnr_check"] = round(g_psnr, 4)
    return row


def stage_score(args, work: Path, results: dict) -> None:
    import mrcfile
    from fit_learned_weights import file_kind

    from cryostream.denoise import dihedral_mean
    from cryostream.denoise.binned import binned_estimate
    from cryostream.denoise.network import model_record
    from cryostream.denoise.tiling import network_pass
    from cryostream.denoise.weights import weights_for
    from cryostream.runs import checkpoint_steps

    device = use_compilation_cache(work)
    run = str(args.model_file.absolute()) if args.model_file else str(work / args.run)
    topaz = topaz_function(args)
    _, test = data_tasks(args, work)
    record = model_record(run)
    if args.model_file:
        folder = work / "outputs" / args.model_file.stem
    else:
        steps = checkpoint_steps(run)
        if not steps:
            raise SystemExit(f"{run} has no checkpoint: run the train stage first (--stages train)")
        folder = work / "outputs" / f"{args.run}_step{steps[-1]}"  # a retrained run: new outputs
    folder = folder.with_name(f"{folder.name}_{args.inference_precision}")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks, timings, topaz_timings = [], [], []
    tables = [weights_for(record, ensemble) for ensemble in (True, False)]
    binned = any(t is not None and t.binned is not None for t in tables)  # its weights need it
    # each table's binned pass (ensemble, single pass)
    offsets = {f"binned_{k}": 1 if t is None else t.binned_offsets
               for k, t in zip(("ensemble", "raw"), tables, strict=True)}
    kinds = ("raw", "ensemble") + (("binned_raw", "binned_ensemble") if binned else ())
    for t in test:
        name = f"{t['condition']}_{Path(t['noisy']).stem.split('_')[1]}"
        paths = {k: folder / f"{name}_{file_kind(k, offsets.get(k, 1))}.npy"
                 for k in (*kinds, "topaz")}
        if not (all(paths[k].exists() for k in kinds)
                and (topaz is None or paths["topaz"].exists())):
            noisy = mrcfile.read(t["noisy"])
            y = noisy / np.float32(np.percentile(noisy, 95))
            t0 = time.perf_counter()
            net = lambda im: network_pass(run, im, precision=args.inference_precision)  # noqa: E731
            np.save(paths["raw"], net(y))
            np.save(paths["ensemble"], dihedral_mean(net, y))
            if binned:  # the binned pass, once and as the ensemble
                np.save(paths["binned_raw"], binned_estimate(net, y,
                                                             offsets=offsets["binned_raw"]))
                np.save(paths["binned_ensemble"], binned_estimate(
                    net, y, ensemble=True, offsets=offsets["binned_ensemble"]))
            timings.append(round(time.perf_counter() - t0, 2))
            if topaz is not None:
                t0 = time.perf_counter()
                np.save(paths["topaz"], topaz(y))
                topaz_timings.append(round(time.perf_counter() - t0, 2))
            binned_passes = offsets["binned_raw"] + 8 * offsets["binned_ensemble"]
            log(f"  {name}: network (9 passes{f' and {binned_passes} binned' if binned else ''}) "
                f"{timings[-1]} s"
                + (f", Topaz {topaz_timings[-1]} s" if topaz is not None else ""))
        tasks.append({"condition": t["condition"], "name": name, "noisy": t["noisy"],
                      "truth": t["truth"], "run": run, "record": record,
                      "pixel_size": t["config"]["pixel_size_angstrom"],
                      **{k: str(paths[k]) for k in kinds},
                      "topaz": str(paths["topaz"]) if topaz is not None else None})
    network_seconds = time.perf_counter() - start
    log(f"scoring {len(tasks)} micrographs on {args.workers} processes")
    with pool(args.workers) as ex:
        rows = list(ex.map(score_one, tasks))
    by_condition = {}
    for name in args.conditions:
        mine = [r for r in rows if r["condition"] == name]
        methods = [m for m in METHODS if m in mine[0]["psnr"]]
        by_condition[name] = {
            "micrographs": len(mine), "config": held_out_condition(name, args.seed, args.test_shape),
            "psnr": {m: round(float(np.mean([r["psnr"][m] for r in mine])), 3) for m in methods},
            "frc_bands": {m: np.round(np.mean([r["frc_bands"][m] for r in mine], axis=0), 4).tolist()
                          for m in methods},
            "frc_mean": {m: round(float(np.mean([r["frc_mean"][m] for r in mine])), 4) for m in methods}}
    results["score"] = {"device": device, "topaz": topaz is not None,
                        "network_precision": args.inference_precision,
                        "network_and_topaz_seconds": round(network_seconds, 1),
                        "network_seconds_each": timings, "topaz_seconds_each": topaz_timings,
                        "seconds": round(time.perf_counter() - start, 1),
                        "conditions": by_condition, "micrographs": rows, "memory": peak_memory_mb()}


def stage_weights(args, work: Path, out: Path, results: dict) -> None:
    """The run's table of learned weights (``fit_learned_weights.py``), into its record; each
    calibration micrograph's sums go to ``OUT/learned_weights.json`` (``fit_learned_weights.py
    --from`` fits another table from them without the GPU)."""
    from fit_learned_weights import PIXEL_GROUPS, SHIPPED_RECIPE, fit, write_tables

    use_compilation_cache(work)
    recipe = SHIPPED_RECIPE | ({"rows": 1} if args.smoke else {})  # a smoke run's 4 micrographs
    options = argparse.Namespace(model=str(work / args.run), work=work / "weights",
                                 count=args.weights_count, shape=args.shape, **recipe,
                                 pixel_groups=2 if args.smoke else PIXEL_GROUPS,
                                 seed=args.seed + 2, workers=args.workers,
                                 high_signal_share=args.high_signal_share,
                                 low_dose_share=args.low_dose_share,
                                 no_in_sample=args.no_in_sample)
    fitted = fit(options)
    (out / "learned_weights.json").write_text(json.dumps(fitted, indent=1, default=str))
    write_tables(fitted["model"], fitted["tables"], None, fitted)
    results["weights"] = {k: v for k, v in fitted.items() if k != "micrographs"}
    log(f"learned weights fitted on {options.count} micrographs in {fitted['seconds']} s")


def stage_export(args, work: Path, results: dict) -> None:
    import jax
    from flax import nnx

    from cryostream import load_model
    from cryostream.models.export import export_params, load_exported

    model, record = load_model(work / args.run)
    summary = {k: v["psnr"] for k, v in results.get("score", {}).get("conditions", {}).items()}
    spread = SPREAD | {corner: SPREAD[corner] | {"share": getattr(args, f"{corner}_share")}
                       for corner in ("high_signal", "low_dose")}  # the shares this run drew
    metadata = {"trained_by": "benchmarks/train_general_model.py", "spread": spread,
                "arguments": vars(args) | {"shape": list(args.shape), "test_shape": list(args.test_shape)},
                "train": results.get("train", {}).get("config"), "held_out_psnr": summary}
    path = export_params(model, record, args.export, metadata=json.loads(json.dumps(metadata, default=str)))
    loaded, loaded_record = load_exported(path)
    leaves = [jax.tree.leaves(nnx.split(m, nnx.Param)[1]) for m in (model, loaded)]
    equal = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(*leaves, strict=True))
    size = path.stat().st_size
    results["export"] = {"path": str(path), "bytes": size, "within_20_mb": size <= EXPORT_LIMIT_BYTES,
                         "parameters": int(sum(a.size for a in leaves[0])),
                         "equal_after_loading": bool(equal and loaded_record.train == record.train)}
    log(f"exported {path} ({size / 1e6:.2f} MB, parameters equal after loading: {equal})")


def markdown(results: dict) -> str:
    """The tables: PSNR by condition, FRC by band per condition, and where it does not hold."""
    lines = ["# General model on held-out simulated micrographs", "",
             f"Machine: {results['machine']}; device: {results.get('train', {}).get('device', '?')}; "
             f"arguments: `{json.dumps(results['arguments'])}`.", ""]
    score = results.get("score")
    if not score:
        return "\n".join(lines + ["(not scored yet)"])
    conds = score["conditions"]
    methods = [m for m in METHODS if any(m in c["psnr"] for c in conds.values())]
    lines += ["## PSNR (dB; the noisy micrograph's 95th percentile as 1), mean per condition", "",
              "| condition | n | " + " | ".join(LABELS[m] for m in methods) + " |",
              "|---|---|" + "---|" * len(methods)]
    for name, c in conds.items():
        best = max(c["psnr"].values())
        cells = [f"**{c['psnr'][m]:.2f}**" if c["psnr"][m] == best else f"{c['psnr'][m]:.2f}"
                 for m in methods]
        lines.append(f"| {name} | {c['micrographs']} | " + " | ".join(cells) + " |")
    bands = " | ".join(f"{a:g}–{b:g}" for a, b in FRC_BANDS)
    lines += ["", "## FRC with the truth by band (cycles/px)", ""]
    for name, c in conds.items():
        lines += [f"**{name}**", "", f"| method | {bands} | mean |",
                  "|---|" + "---|" * (len(FRC_BANDS) + 1)]
        for m in methods:
            lines.append(f"| {LABELS[m]} | " + " | ".join(f"{v:.3f}" for v in c["frc_bands"][m])
                         + f" | {c['frc_mean'][m]:.3f} |")
        lines.append("")
    lines += ["## Where the default output does not beat a baseline", ""]
    misses = []
    for name, c in conds.items():
        d = c["psnr"]["default"]
        for m in ("gaussian", "wiener", "topaz"):
            if m in c["psnr"] and d <= c["psnr"][m]:
                misses.append(f"- {name}: PSNR {d:.2f} ≤ {LABELS[m]} {c['psnr'][m]:.2f}")
        for ref in ("topaz", "noisy"):
            if ref in c["frc_bands"]:
                below = [f"{a:g}–{b:g}" for (a, b), v, r in
                         zip(FRC_BANDS, c["frc_bands"]["default"], c["frc_bands"][ref], strict=True) if v < r]
                if below:
                    misses.append(f"- {name}: FRC below {LABELS[ref]} in bands {', '.join(below)}")
    lines += misses or ["- none: above every baseline in PSNR, and above Topaz and the input in "
                        "every FRC band"]
    export = results.get("export")
    if export:
        lines += ["", f"Exported: `{Path(export['path']).name}`, {export['bytes'] / 1e6:.2f} MB, "
                  f"{export['parameters']:,} parameters, equal after loading: "
                  f"{export['equal_after_loading']}."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="results folder (JSON, tables, model)")
    ap.add_argument("--work", type=Path, help="work folder kept between calls (default: OUT/work "
                    "with --smoke, else bench-output/general-model)")
    ap.add_argument("--export", type=Path, help="exported model (default OUT/general_model.npz)")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run: 6 micrographs of 512², "
                    "patch 128, unet-small, 20 steps, one held-out micrograph per condition")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--count", type=int, help="training micrographs (192)")
    ap.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"), help="their size (2048 2048)")
    ap.add_argument("--high-signal-share", type=float, default=SPREAD["high_signal"]["share"],
                    help="share of training and calibration micrographs drawn from the spread's "
                    "high-signal corner (dose 40–80 e/Å², pixel 1.0–1.5 Å; default %(default)s)")
    ap.add_argument("--low-dose-share", type=float, default=SPREAD["low_dose"]["share"],
                    help="share of training and calibration micrographs whose dose is drawn from "
                    "under the spread's floor (4–10 e/Å²; default %(default)s, the shipped model's)")
    ap.add_argument("--test-count", type=int, help="held-out micrographs per condition (4)")
    ap.add_argument("--test-shape", type=int, nargs=2, metavar=("H", "W"), help="(as --shape)")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    ap.add_argument("--patch", type=int, help="patch size (512)")
    ap.add_argument("--stride", type=int, help="patch stride (half the patch)")
    ap.add_argument("--store-dtype", default="float16", choices=("float16", "float32"))
    ap.add_argument("--model", help="model preset (unet)")
    ap.add_argument("--steps", type=int, help="training steps (9000)")
    ap.add_argument("--batch", type=int, help="patches per step (16)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--loss", default="mse", choices=LOSSES,
                    help="training loss (TrainConfig.loss; bands: cryostream.losses)")
    ap.add_argument("--beta2", type=float, default=0.999, help="AdamW's beta2 (TrainConfig.beta2)")
    ap.add_argument("--precision", choices=("bf16", "fp32"), help="(bf16)")
    ap.add_argument("--particles", nargs="+", choices=SPREAD["particle"],
                    help="train on these specimens only (default: SPREAD's five)")
    ap.add_argument("--train-condition", choices=list(CONDITIONS),
                    help="draw every training micrograph as this held-out condition draws its "
                         "own, from other seeds (a specialist for one condition: the most a "
                         "network could gain from knowing the dose, pixel size, specimen and "
                         "defocus range)")
    ap.add_argument("--inference-precision", choices=("fp32", "bf16"), default="fp32",
                    help="what the network computes in when scored (DenoiseConfig.precision; "
                    "default fp32, as denoise)")
    ap.add_argument("--residual", action=argparse.BooleanOptionalAction, default=True,
                    help="predict a correction added to the input (default on)")
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                    help="one random symmetry of the square per step (default off, as shipped)")
    ap.add_argument("--fresh-noise", action=argparse.BooleanOptionalAction, default=True,
                    help="move each patch's stored noise by a random shift and symmetry at every "
                    "step (TrainConfig.fresh_noise; default on, as shipped)")
    ap.add_argument("--checkpoint-every", type=int, help="(1000)")
    ap.add_argument("--workers", type=int, help="processes for simulation and scoring (all cores)")
    ap.add_argument("--topaz", help="a folder Topaz-Denoise imports from (the unpacked wheel)")
    ap.add_argument("--model-file", type=Path, help="score this exported model (.npz) instead "
                    "of the work folder's run (with --stages data score and --count 0)")
    ap.add_argument("--weights-count", type=int, help="calibration micrographs of the weights "
                    "stage (96)")
    ap.add_argument("--no-in-sample", action="store_true", help="weights stage: skip each "
                    "calibration micrograph's PSNR after the table (saves minutes on the GPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default="run", help="the run's folder in the work folder, so that "
                    "several trainings share one store (run)")
    ap.add_argument("--train-seed", type=int, help="the training's own seed (--seed): another "
                    "training of the same data")
    ap.add_argument("--overwrite", action="store_true", help="start the work folder afresh")
    args = ap.parse_args(argv)
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.shape = tuple(args.shape)
    args.test_shape = tuple(args.test_shape or args.shape)
    args.stride = args.stride or args.patch // 2
    default_work = args.out / "work" if args.smoke else Path("bench-output/general-model")
    args.work = args.work or default_work
    args.export = args.export or args.out / "general_model.npz"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out, work = args.out, args.work
    if args.overwrite and work.exists():
        shutil.rmtree(work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    plan = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()
            if k in ("count", "shape", "test_count", "test_shape", "patch", "stride", "store_dtype",
                     "seed", "high_signal_share", "low_dose_share")
            and not (k.endswith("_share") and not v)}  # what the data depend on (a share
    # of 0 left out: work folders made before the option existed stay valid)
    plan_file = work / "plan.json"
    if plan_file.exists() and json.loads(plan_file.read_text()) != plan:
        raise SystemExit(f"{work} holds a run with other arguments ({plan_file}); pass --overwrite "
                         "or another --work")
    plan_file.write_text(json.dumps(plan, indent=1))
    state = work / ("results.json" if args.run == "run" else f"results_{args.run}.json")
    results = json.loads(state.read_text()) if state.exists() else {}
    results["machine"] = (f"{platform.node()}: {os.cpu_count()} cores, "
                          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    results["arguments"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    for stage in args.stages:  # a stage cut short leaves no figures of an earlier run under these arguments
        results.pop(stage, None)
    for stage in args.stages:
        t = time.perf_counter()
        log(f"stage {stage}")
        if stage == "data":
            stage_data(args, work, results)
        elif stage == "train":
            stage_train(args, work, out, results)
        elif stage == "weights":
            stage_weights(args, work, out, results)
        elif stage == "score":
            stage_score(args, work, results)
        else:
            stage_export(args, work, results)
        results.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - t, 1)
        state.write_text(json.dumps(results, indent=1, default=str))
        (out / "general_model.json").write_text(json.dumps(results, indent=1, default=str))
        (out / "general_model.md").write_text(markdown(results))
        log(f"stage {stage} done in {results['stage_seconds'][stage]} s")
    if "score" in results:
        print(markdown(results).split("## FRC")[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
