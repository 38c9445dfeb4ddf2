"""Quality by dose: the default recipe, even/odd Noise2Noise, a supervised bound, the peers.

For each condition (a dose in e/Å² and a detector noise roll-off; ``--detector-nps 1`` is white
shot noise) one process simulates ``--train`` + ``--test`` micrographs with their even- and
odd-frame halves (``SimulateConfig(even_odd=True)``: the dose split in two, each half its own
shot noise), trains the models named by ``--runs`` and scores the held-out micrographs against
their ground truth:

``matched``    the default recipe: matched noise α 1 on the full sums (``prepare --noise matched
               --alpha 1 --noise-mode on-device``), ``train --residual``, scored as ``denoise``
               runs it by default (``DenoiseConfig().for_run``: the Noisier2Noise correction, the
               CTF-shaped gain with its check and fallback, the 8-fold ensemble), and its parts:
               the network's output alone (``_raw``), the default less the learned weights for
               models that ship them (``_unweighted``), the correction alone (``_n2n``) and the
               per-ring oracle mix of input and output (``_blend_oracle``, truth-fitted: what
               re-weighting by frequency could give at best; optimistic by the chance fit of
               two weights per ring, which ``noise_blend_oracle``, the same fit with pure
               noise for the output, shows; ``_blend_cross`` is the mix cross-fitted between
               two halves of each ring, pessimistic); with ``--calibrate N`` also the
               default with the per-ring weighting fitted by N recorruption passes, no truth
               (``_calibrated``).
``evenodd``    plain Noise2Noise on the halves (``prepare EVEN --odd ODD``: both directions, no
               added noise), scored on the full sum (``_sum``) and as the sum of the two halves
               each denoised (``_halves``, cryoCARE's way), each with the run's default recipe.
``supervised`` the same network trained on (full sum, ground truth) pairs: a bound for what the
               network, the data and the steps can do when the target is the truth itself.
``recorrupted`` matched noise α 0.5, recorrupted targets (``train --recorrupt``): an estimate of
               the clean image directly, for a network input nearer the micrograph's own noise.
``general``    the shipped general model, not trained here: what ``cryostream denoise`` does with
               no ``--model`` (its default for that model: the ensemble and the CTF-shaped gain).
``fit``        the default recipe started from the general model (``cryostream fit``'s
               ``--from general``): matched noise α 1, ``train --residual`` from its parameters.

Baselines in the same process: the noisy input, the best Gaussian, the oracle Wiener filter,
and Topaz-Denoise's pretrained U-Net (affine-fitted to the truth, its best case) when
``--topaz`` is importable. PSNR uses the noisy micrograph's 95th percentile as 1; the FRC is by
band (``quality_common.FRC_BANDS``) and over 0.01–0.25 cycles/px, untapered (as the issue's
independent check) and, where :func:`cryostream.metrics.frc` takes ``taper``, tapered.

Usage: python benchmarks/bench_dose_gpu.py OUT --doses 50 20 --topaz DIR
CPU smoke (two minutes): ``OUT --size 256 --train 2 --test 1 --model unet-small --patch 64
--batch 4 --steps 4 --tile 256 --precision fp32 --doses 50``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import time
from pathlib import Path

import numpy as np
from quality_common import (
    FRC_BANDS,
    SIGMAS,
    affine_fit,
    device,
    known_output,
    network_fn,
    prep,
    summarise_frc,
    topaz_fn,
    train_run,
)

from cryostream.config import DenoiseConfig, NoiseConfig, SimulateConfig
from cryostream.denoise import Micrograph
from cryostream.denoise.network import model_path, model_record
from cryostream.metrics import best_gaussian, blend_oracle, frc, psnr, wiener_oracle

#: Band over which the issue's independent check averages the FRC (cycles/px).
MID = (0.01, 0.25)


def read(path) -> np.ndarray:
    import mrcfile

    return np.asarray(mrcfile.read(path), dtype=np.float32)


def frc_numbers(estimate: np.ndarray, truth: np.ndarray) -> dict:
    """Bands and the 0.01–0.25 mean, untapered and (where available) tapered."""
    out = {}
    tapers = {"": {}}
    if "taper" in inspect.signature(frc).parameters:
        tapers = {"": {"taper": None}, "tapered_": {}}
    for prefix, kw in tapers.items():
        f, c = frc(estimate, truth, **kw)
        out[f"{prefix}bands"] = summarise_frc(f, c)["bands"]
        out[f"{prefix}mid"] = round(float(c[(f >= MID[0]) & (f < MID[1])].mean()), 4)
    return out


def halves_of(sim) -> tuple[list, list]:
    """The even and odd halves of a simulated set (``SimulatedSet.evens``/``odds``)."""
    return list(sim.evens), list(sim.odds)


def condition(args, dose: float, nps: float, out: Path, topaz, run_names, partial=None) -> dict:
    """Simulate, train ``run_names`` and score one condition; ``partial(res)`` is called with
    the figures so far after each scored micrograph."""
    import cryostream
    from cryostream.config import PrepareConfig
    from cryostream.prepare import prepare

    tag = f"dose{dose:g}_nps{nps:g}"
    work = out / f"work_{tag}"
    n = args.train + args.test
    cfg = SimulateConfig(shape=(args.size, args.size), seed=11, dose_e_per_angstrom2=dose,
                         detector_nps_nyquist=nps,
                         **({"even_odd": True} if "evenodd" in run_names else {}))
    t = time.perf_counter()
    sim = cryostream.simulate(work / "sim", n, config=cfg, overwrite=True)
    res = {"dose": dose, "detector_nps_nyquist": nps, "size": args.size, "train": args.train,
           "test": args.test, "simulate_seconds": round(time.perf_counter() - t, 1)}
    evens, odds = halves_of(sim)
    k = args.train
    runs = {}
    for name in run_names:
        t = time.perf_counter()
        if name == "matched":
            prep(sim.micrographs[:k], work / "m.h5",
                 NoiseConfig(model="matched", alpha=1.0, mode="on-device"), args)
            store, recorrupt = work / "m.h5", False
        elif name == "recorrupted":
            prep(sim.micrographs[:k], work / "m05.h5",
                 NoiseConfig(model="matched", alpha=0.5, mode="on-device"), args)
            store, recorrupt = work / "m05.h5", True
        elif name == "supervised":
            prep(sim.micrographs[:k], work / "s.h5", NoiseConfig(model="none"), args,
                 list(sim.truths[:k]))
            store, recorrupt = work / "s.h5", False
        elif name == "general":  # shipped, nothing to train
            runs[name] = model_path("general")
            continue
        elif name == "fit":
            prep(sim.micrographs[:k], work / "m.h5",
                 NoiseConfig(model="matched", alpha=1.0, mode="on-device"), args)
            store, recorrupt = work / "m.h5", False
        elif name == "evenodd":
            pc = PrepareConfig(patch_size=args.patch, stride=args.patch // 2, test_fraction=0.0,
                               noise=NoiseConfig(model="none"))
            prepare(evens[:k], work / "eo.h5", pc, odd=odds[:k], overwrite=True,
                    log=lambda *_: None)
            store, recorrupt = work / "eo.h5", False
        else:
            raise SystemExit(f"unknown run {name!r}")
        prepared = time.perf_counter() - t
        res[f"train_{name}"] = train_run(store, work / f"run_{name}", args, recorrupt=recorrupt,
                                         init="general" if name == "fit" else None)
        res[f"train_{name}"]["prepare_seconds"] = round(prepared, 1)
        runs[name] = work / f"run_{name}"
        print(tag, "trained", name, res[f"train_{name}"], flush=True)

    rows = []
    for i in range(k, n):
        y_counts = read(sim.micrographs[i])
        p = float(np.percentile(y_counts, 95))
        y, x = y_counts / p, read(sim.truths[i]) / p
        row = {"micrograph": i}
        scores = {}

        def scored(name, image, scores=scores, x=x):
            scores[name] = {"psnr": round(psnr(image, x), 3), **frc_numbers(image, x)}

        g = best_gaussian(y, x, SIGMAS)
        row["gaussian_sigma"] = g[1]
        scored("noisy", y)
        from scipy.ndimage import gaussian_filter

        scored("gaussian", gaussian_filter(y, g[1]))
        scored("wiener_oracle", wiener_oracle(y, x))
        # the mix bound's chance gain: the same fit with an output that knows nothing
        junk = np.random.default_rng(i).normal(size=y.shape).astype(np.float32) * y.std()
        scored("noise_blend_oracle", blend_oracle(y, junk, x))
        if topaz:
            t = time.perf_counter()
            scored("topaz", affine_fit(topaz(y), x))
            row["topaz_seconds"] = round(time.perf_counter() - t, 2)
        for name, run in runs.items():
            record = model_record(run)
            f_ens = network_fn(run, args.tile, True)

            def default(image, source, record=record, f_ens=f_ens):
                config = DenoiseConfig().for_run(record)
                out_f = f_ens(image)
                network = known_output(image, out_f, f_ens)
                # the ensemble is out_f, computed once (f_ens for recorrupted copies)
                pipeline = dataclasses.replace(config.pipeline(), ensemble=False)
                estimate, found = pipeline.run(
                    Micrograph(image, cfg.pixel_size_angstrom, record, source=source), network)
                return estimate, out_f, found

            if name == "evenodd":
                estimate, out_f, found = default(y, str(sim.micrographs[i]))
                scored(f"{name}_sum", estimate)
                row[f"{name}_sum_found"] = jsonable(found)
                both = []
                for half in (evens[i], odds[i]):
                    h = read(half)
                    ph = float(np.percentile(h, 95))
                    est_h, _, _ = default(h / ph, str(half))
                    both.append(est_h * ph)
                scored(f"{name}_halves", (both[0] + both[1]) / p)
                continue
            estimate, out_f, found = default(y, str(sim.micrographs[i]))
            scored(name, estimate)
            row[f"{name}_found"] = jsonable(found)
            scored(f"{name}_raw", out_f)
            if DenoiseConfig().for_run(record).learned_weights:  # the default less that step
                plain, _ = dataclasses.replace(DenoiseConfig(learned_weights=False).for_run(
                    record).pipeline(), ensemble=False).run(
                    Micrograph(y, cfg.pixel_size_angstrom, record, source=str(sim.micrographs[i])),
                    known_output(y, out_f))
                scored(f"{name}_unweighted", plain)
            scored(f"{name}_blend_oracle", blend_oracle(y, out_f, x))
            scored(f"{name}_blend_cross", blend_oracle(y, out_f, x, cross_fit=True))
            if name in ("matched", "fit"):
                corrected, _ = DenoiseConfig.raw(n2n_correction=True).pipeline().run(
                    Micrograph(y, cfg.pixel_size_angstrom, record), known_output(y, out_f))
                scored(f"{name}_n2n", corrected)
            if args.calibrate:  # the default with the per-ring recorruption weighting
                config = dataclasses.replace(DenoiseConfig().for_run(record),
                                             calibrate=args.calibrate)
                calibrated, _ = config.pipeline().run(
                    Micrograph(y, cfg.pixel_size_angstrom, record, source=str(sim.micrographs[i])),
                    known_output(y, out_f, f_ens))
                scored(f"{name}_calibrated", calibrated)
        row["scores"] = scores
        rows.append(row)
        print(tag, "micrograph", i, json.dumps({k: v["psnr"] for k, v in scores.items()}),
              flush=True)
        res["rows"] = rows
        res["mean"] = means(rows)
        if partial is not None:  # a run cut short keeps the micrographs scored so far
            partial(res)
    return res


def means(rows: list) -> dict:
    """Each method's scores averaged over the micrographs in ``rows``."""
    out = {}
    for name in rows[0]["scores"]:
        per = [r["scores"][name] for r in rows]
        out[name] = {key: (np.mean([q[key] for q in per], axis=0).round(4).tolist())
                     for key in per[0]}
    return out


def jsonable(found: dict) -> dict:
    return json.loads(json.dumps(found, default=lambda o: dataclasses.asdict(o)
                                 if dataclasses.is_dataclass(o) else str(o)))


def table(res: dict) -> str:
    """A Markdown table of one condition's means: PSNR, the 0.01–0.25 FRC and the bands."""
    bands = " | ".join(f"{a:g}–{b:g}" for a, b in FRC_BANDS)
    lines = [f"| method | PSNR | FRC 0.01–0.25 | {bands} |",
             "|" + "---|" * (3 + len(FRC_BANDS))]
    for name, m in res["mean"].items():
        lines.append(f"| {name} | {m['psnr']:.2f} | {m['mid']:.3f} | "
                     + " | ".join(f"{v:.3f}" for v in m["bands"]) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--doses", type=float, nargs="+", default=[50, 20, 10])
    ap.add_argument("--detector-nps", type=float, nargs="+", default=[1.0],
                    help="detector noise at Nyquist relative to zero frequency (1: white)")
    ap.add_argument("--runs", nargs="+", default=["matched", "evenodd", "supervised"],
                    choices=("matched", "evenodd", "supervised", "recorrupted", "general", "fit"))
    ap.add_argument("--conditions", nargs="+", metavar="DOSE/NPS:RUN,RUN",
                    help="instead of --doses × --detector-nps with --runs: each condition with "
                         "its own runs, e.g. 50/1:matched,evenodd 10/1:matched")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--train", type=int, default=8)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--patch", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--no-residual", dest="residual", action="store_false")
    ap.add_argument("--calibrate", type=int, default=0,
                    help="also score each run's default with this many recorruption passes "
                         "weighting its output per ring (denoise --calibrate N)")
    ap.add_argument("--topaz", default="")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    topaz = topaz_fn(args.topaz)
    results = {"device": device(), "args": vars(args), "conditions": []}
    t0 = time.perf_counter()
    plan = [(dose, nps, args.runs) for nps in args.detector_nps for dose in args.doses]
    if args.conditions:
        plan = []
        for item in args.conditions:
            where, names = item.split(":")
            dose, nps = where.split("/")
            plan.append((float(dose), float(nps), names.split(",")))
    def write(res):
        done = [c for c in results["conditions"] if c is not res]
        results["seconds"] = round(time.perf_counter() - t0, 1)
        (out / "quality_dose.json").write_text(
            json.dumps({**results, "conditions": [*done, res]}, indent=1))

    for dose, nps, run_names in plan:
        res = condition(args, dose, nps, out, topaz, run_names, partial=write)
        results["conditions"].append(res)
        write(res)
        print(f"\n## {res['dose']:g} e/Å², detector roll-off {nps:g}\n\n{table(res)}\n",
              flush=True)
    print("done in", round(time.perf_counter() - t0), "s", flush=True)


if __name__ == "__main__":
    main()
