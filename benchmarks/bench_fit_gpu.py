"""``cryostream fit`` from the shipped general model against from scratch.

Simulated micrographs (the default simulator, EMPIAR-10025-like optics, at ``--dose``: 50 e/Å²
by default), ``--count``
of them, the last ``--held-out`` kept aside with their truth. Both runs fit the same store
(``cryostream.fit``: matched noise α 1 measured on the micrographs, the residual ``unet``,
``TrainConfig``'s defaults but ``--batch`` patches of ``--patch`` px) over one schedule of
``--steps`` steps, with a checkpoint every ``--every`` steps:

- from scratch, the whole schedule (``fit(..., budget="{steps}steps")``);
- from the general model (``fit(..., start="general")``), stopped after the last of
  ``--general-at`` (``train(..., stop_at=...)``: the same schedule, so the same compiled step,
  which the second training takes from JAX's persistent compilation cache).

Each checkpoint at ``--scratch-at`` / ``--general-at`` is exported (``.npz``) and denoises the
held-out micrographs with the default recipe (``cryostream.denoise`` with no config: what
``cryostream denoise --model RUN`` applies); PSNR against the truth, both divided by the noisy
micrograph's 95th percentile (the store's normalisation), peak 1. Beside them the noisy input
the oracle Wiener filter and the shipped general model itself (``cryostream denoise`` with no
``--model``). The answer: the fewest general-start steps whose PSNR reaches the
from-scratch final PSNR, and their share of the from-scratch steps (the issue asks ≤ 1/3).

``--inherit`` scores the general-start run's last checkpoint again with the general model's
table of learned weights in its record (what a fit would get if it inherited the table); these
and the baselines with their FRC by band. (The results of 2026-12-03 also hold
``inherited_unweighted``, the same as ``own_default`` to the digit: no longer scored twice.)

Prints one JSON object and writes it to ``OUT/bench_fit.json`` (rewritten after each stage, so
a cut-off run leaves what it measured). The work folder (``--work``, outside OUT; a folder per
``--dose`` in it) keeps the micrographs, the store, the runs and the compilation cache.

One H200 (≤ 8 min: the full-size step compiles once, ≈135 s)::

    python benchmarks/bench_fit_gpu.py --out $OUT

CPU smoke run (tiny sizes, the same code; a few minutes on 2 cores)::

    python benchmarks/bench_fit_gpu.py --tiny --out OUT
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

FULL = dict(count=8, held_out=2, size=2048, patch=512, batch=16, steps=1800, every=100,
            scratch_at=[300, 900, 1800], general_at=[100, 300, 600], precision="bf16")
TINY = dict(count=3, held_out=1, size=256, patch=64, batch=2, steps=6, every=2,
            scratch_at=[2, 6], general_at=[2, 4], precision="fp32")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def use_compilation_cache(folder: Path) -> str:
    """JAX's persistent compilation cache in ``folder``; returns the device's kind."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return str(jax.devices()[0].device_kind)


def simulated(work: Path, args) -> tuple[list[Path], list[Path]]:
    """The micrographs and their truths (simulated once, reused by a rerun)."""
    import cryostream
    from cryostream.config import SimulateConfig

    root = work / "sim"
    if not (root / "simulate.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        cryostream.simulate(root, args.count, config=SimulateConfig(
            shape=(args.size, args.size), seed=args.seed, dose_e_per_angstrom2=args.dose,
            **({"pixel_size_angstrom": args.pixel} if getattr(args, "pixel", None) else {}),
            **({"detector_nps_nyquist": args.nps} if getattr(args, "nps", None) else {})))
    mics = sorted((root / "micrographs").glob("*.mrc"))
    return mics, [root / "truth" / m.name for m in mics]


def scores(model: str, held_out: list[Path], truths: list[Path],
           bands: list | None = None) -> list[float]:
    """PSNR against the truth of the default recipe's output, per held-out micrograph; with
    ``bands`` (a list), each micrograph's FRC by band appended to it."""
    import mrcfile
    from quality_common import summarise_frc

    import cryostream
    from cryostream.metrics import frc, psnr

    out = cryostream.denoise(model, held_out)
    values = []
    for i, (noisy, truth) in enumerate(zip(held_out, truths, strict=True)):
        scale = np.float32(np.percentile(mrcfile.read(noisy), 95))
        image, x = np.asarray(out[i]) / scale, mrcfile.read(truth) / scale
        values.append(round(psnr(image, x), 3))
        if bands is not None:
            bands.append(summarise_frc(*frc(image, x))["bands"])
    return values


def frc_bands(held_out: list[Path], truths: list[Path]) -> list:
    """The noisy input's FRC with the truth by band, per held-out micrograph."""
    import mrcfile
    from quality_common import summarise_frc

    from cryostream.metrics import frc

    return [summarise_frc(*frc(mrcfile.read(n), mrcfile.read(t)))["bands"]
            for n, t in zip(held_out, truths, strict=True)]


def with_table(run: Path, step: int, table_from: str, exports: Path, held_out, truths) -> dict:
    """A run's checkpoint scored without a table of learned weights (``own``: a Noisier2Noise
    fit has none) and with ``table_from``'s in its record (``inherited``: what a fit on
    recorrupted targets keeps): PSNR and FRC by band of the default recipe."""
    from cryostream import load_model
    from cryostream.denoise.network import model_record
    from cryostream.models.export import export_params

    model, record = load_model(run, step=step)
    table = model_record(table_from).learned_weights
    found = {}
    for label, rec in (("own", dataclasses.replace(record, learned_weights=None)),
                       ("inherited", dataclasses.replace(record, learned_weights=table))):
        path = export_params(model, rec, exports / f"{label}_{step}.npz")
        bands: list = []
        values = scores(str(path), held_out, truths, bands)
        found[f"{label}_default"] = {"psnr": round(float(np.mean(values)), 3), "each": values,
                                     "frc_bands": np.round(np.mean(bands, 0), 4).tolist()}
        log(f"{label} table: {found[f'{label}_default']}")
    return found


def baselines(held_out: list[Path], truths: list[Path]) -> dict:
    import mrcfile

    from cryostream.metrics import psnr, wiener_oracle

    rows = {"noisy": [], "oracle_wiener": []}
    for noisy_path, truth_path in zip(held_out, truths, strict=True):
        noisy, truth = mrcfile.read(noisy_path), mrcfile.read(truth_path)
        scale = np.float32(np.percentile(noisy, 95))
        rows["noisy"].append(round(psnr(noisy / scale, truth / scale), 3))
        rows["oracle_wiener"].append(round(psnr(wiener_oracle(noisy / scale, truth / scale),
                                                truth / scale), 3))
    return rows


def recorder(path: Path, args):
    """``(results, save)``: the JSON object to fill and ``save(stage, t0)``, which records the
    stage's seconds since ``t0`` and the total, and rewrites ``path`` (a cut-off run leaves
    what it measured)."""
    results: dict = {"args": vars(args), "seconds": {}}
    start = time.perf_counter()

    def save(stage: str, t0: float) -> None:
        results["seconds"][stage] = round(time.perf_counter() - t0, 1)
        results["seconds"]["total"] = round(time.perf_counter() - start, 1)
        path.write_text(json.dumps(results, indent=1))

    return results, save


def held_out_baselines(work: Path, args, results: dict) -> tuple[list, list, list]:
    """Simulate (once) and split the micrographs; into ``results``: the device, the held-out
    baselines (noisy input, oracle Wiener filter, the unfitted general model) and their FRC by
    band. Returns the micrographs to fit, the held-out ones and their truths."""
    results["device"] = use_compilation_cache(work / "jax-cache")
    mics, truths = simulated(work, args)
    train_mics, held_out = mics[: -args.held_out], mics[-args.held_out:]
    held_truths = truths[-args.held_out:]
    results["baselines"] = {k: round(float(np.mean(v)), 3)
                            for k, v in baselines(held_out, held_truths).items()}
    unfitted_bands: list = []
    results["baselines"]["general_model_unfitted"] = round(float(np.mean(scores(
        "general", held_out, held_truths, bands=unfitted_bands))), 3)  # denoise, no --model
    results["frc_bands"] = {"noisy": np.round(np.mean(frc_bands(held_out, held_truths), 0), 4).tolist(),
                            "general_model_unfitted": np.round(np.mean(unfitted_bands, 0), 4).tolist()}
    log(f"{len(train_mics)} micrographs to fit, {len(held_out)} held out; "
        f"baselines {results['baselines']}")
    return train_mics, held_out, held_truths


def curve(run: Path, steps: list[int], label: str, exports: Path, held_out, truths) -> dict:
    """``{step: mean PSNR}`` of a run's checkpoints, each exported and denoising the held-out."""
    from cryostream import load_model
    from cryostream.models.export import export_params

    found = {}
    for step in steps:
        t0 = time.perf_counter()
        model, record = load_model(run, step=step)
        path = export_params(model, record, exports / f"{label}_{step}.npz")
        values = scores(str(path), held_out, truths)
        found[step] = {"psnr": round(float(np.mean(values)), 3), "each": values,
                       "seconds": round(time.perf_counter() - t0, 1)}
        log(f"{label} at step {step}: {found[step]['psnr']} dB ({found[step]['seconds']} s)")
    return found


def reached(general: dict, target: float) -> int | None:
    """The fewest general-start steps measured at or above ``target``."""
    return next((s for s in sorted(general) if general[s]["psnr"] >= target), None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for bench_fit.json")
    ap.add_argument("--work", help="micrographs, store, runs, compilation cache "
                    "(/tmp/cryostream-bench-fit[-tiny])")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke sizes")
    for name, kind in (("count", int), ("held-out", int), ("size", int), ("patch", int),
                       ("batch", int), ("steps", int), ("every", int), ("precision", str)):
        ap.add_argument(f"--{name}", type=kind, help=f"(full: {FULL[name.replace('-', '_')]})")
    ap.add_argument("--scratch-at", type=int, nargs="+")
    ap.add_argument("--general-at", type=int, nargs="+")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dose", type=float, default=50.0, help="e/Å² of the simulated micrographs")
    ap.add_argument("--inherit", action="store_true", help="also score the general-start run's "
                    "last checkpoint with the general model's learned weights (and FRC by band)")
    args = ap.parse_args(argv)
    for key, value in (TINY if args.tiny else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    work = Path(args.work or f"/tmp/cryostream-bench-fit{'-tiny' if args.tiny else ''}") / f"{args.dose:g}e"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    note = logging.StreamHandler(sys.stderr)
    note.setFormatter(logging.Formatter("[%(asctime)s] cryostream: %(message)s", "%H:%M:%S"))
    logging.getLogger("cryostream").addHandler(note)
    logging.getLogger("cryostream").setLevel(logging.INFO)
    logging.getLogger("cryostream").propagate = False

    import cryostream
    from cryostream.fit import RECIPE_TRAIN, Budget, recipe
    from cryostream.progress import TrainProgress
    from cryostream.training import train

    results, save = recorder(out / "bench_fit.json", args)

    t0 = time.perf_counter()
    train_mics, held_out, held_truths = held_out_baselines(work, args, results)
    save("simulate", t0)

    last = max(args.scratch_at + args.general_at)
    config = dataclasses.replace(
        RECIPE_TRAIN, precision=args.precision, batch_size=args.batch, steps=args.steps,
        checkpoint_every=args.every, keep_checkpoints=max(1, last // args.every))
    prepare = dataclasses.replace(recipe((args.size, args.size)), patch_size=args.patch,
                                  stride=args.patch // 2)
    store_work = work / "store"
    runs = {"scratch": work / "scratch", "general": work / "general"}

    t0 = time.perf_counter()
    fitted = cryostream.fit(train_mics, runs["scratch"], budget=f"{args.steps}steps",
                            work=store_work, train=config, prepare=prepare)
    results["scratch_fit"] = {"steps": fitted.steps, "final_loss": fitted.final_loss,
                              "seconds": round(fitted.seconds, 1),
                              "store_gb": round(fitted.store_bytes / 1e9, 3)}
    save("fit_scratch", t0)

    t0 = time.perf_counter()
    general_config = dataclasses.replace(config, init="general")
    cryostream.fit(train_mics, runs["general"], start="general", budget=Budget(minutes=1e-6),
                   work=store_work, train=config, prepare=prepare)  # the store is kept
    log(f"training from the general model to step {max(args.general_at)} of {args.steps}")
    trained = train(fitted.store, runs["general"], general_config, resume=True,
                    stop_at=max(args.general_at), log=lambda m: log(str(m)),
                    on_metrics=TrainProgress(args.steps, args.batch))
    results["general_fit"] = {"steps": trained.steps, "final_loss": trained.final_loss,
                              "seconds": round(trained.seconds, 1)}
    save("fit_general", t0)

    t0 = time.perf_counter()
    exports = work / "exports"
    exports.mkdir(exist_ok=True)
    results["scratch"] = curve(runs["scratch"], args.scratch_at, "scratch", exports, held_out,
                               held_truths)
    save("score_scratch", t0)
    t0 = time.perf_counter()
    results["general"] = curve(runs["general"], args.general_at, "general", exports, held_out,
                               held_truths)
    target = results["scratch"][max(args.scratch_at)]["psnr"]
    steps = reached(results["general"], target)
    results["answer"] = {
        "scratch_final_step": max(args.scratch_at), "scratch_final_psnr": target,
        "general_steps_to_reach_it": steps,
        "share_of_scratch_steps": None if steps is None else round(steps / max(args.scratch_at), 3),
        "at_most_a_third": steps is not None and 3 * steps <= max(args.scratch_at)}
    save("score_general", t0)
    if args.inherit:
        t0 = time.perf_counter()
        results["tables"] = with_table(runs["general"], max(args.general_at), "general", exports,
                                       held_out, held_truths)
        save("score_tables", t0)
    print(json.dumps({k: results.get(k) for k in ("device", "baselines", "frc_bands", "scratch",
                                                  "general", "answer", "tables", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
