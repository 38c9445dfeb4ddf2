"""How gently a fit from the general model should train: learning rates against the unfitted
general model, with and without the general model's table of learned weights.

Simulated micrographs as :mod:`bench_fit_gpu` makes them (``--count`` at ``--dose``, the last
``--held-out`` kept aside with their truth). For each ``--lr``, ``cryostream.fit`` from the
general model (``start="general"``, the recipe's training with that peak learning rate,
``--steps`` steps) and the run's last checkpoint scored on the held-out micrographs with the
default recipe without a table of learned weights and with the general model's table in its
record (what a recorrupted fit keeps): PSNR against the truth (both divided by the
noisy micrograph's 95th percentile, peak 1) and FRC by band. Beside them the noisy input, the
oracle Wiener filter and the unfitted general model (``cryostream denoise`` with no
``--model``).

Each learning rate compiles its own step (≈50 s on an H200 at 512 px, batch 16). Prints one
JSON object and writes it to ``OUT/bench_fit_gentle.json`` after each stage.

One H200 (≈ 7 min for three rates)::

    python benchmarks/bench_fit_gentle_gpu.py --out $OUT --dose 20 --lr 1e-3 1e-4 2e-5

CPU smoke run (tiny sizes, the same code)::

    python benchmarks/bench_fit_gentle_gpu.py --tiny --out OUT
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
from bench_fit_gpu import (
    FULL,
    TINY,
    held_out_baselines,
    log,
    recorder,
    scores,
    with_table,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for bench_fit_gentle.json")
    ap.add_argument("--work", help="micrographs, store, runs (/tmp/cryostream-bench-gentle[-tiny])")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke sizes")
    for name, kind in (("count", int), ("held-out", int), ("size", int), ("patch", int),
                       ("batch", int), ("precision", str)):
        ap.add_argument(f"--{name}", type=kind, help=f"(full: {FULL[name.replace('-', '_')]})")
    ap.add_argument("--steps", type=int, help="steps of each fit (full: 600)")
    ap.add_argument("--lr", type=float, nargs="*", default=[1e-3, 1e-4, 2e-5],
                    help="peak learning rates, one fit each (the store's α: the recipe's 1)")
    ap.add_argument("--variant", nargs="+", default=[], metavar="ALPHA:LR",
                    help="fits with recorrupted targets (--recorrupt): the store's α and the "
                    "peak learning rate, e.g. 0.5:1e-4")
    ap.add_argument("--scratch", action="store_true", help="also fit from scratch with the "
                    "recipe (Noisier2Noise, the recipe's learning rate), scored as it is")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dose", type=float, default=20.0, help="e/Å² of the simulated micrographs")
    ap.add_argument("--pixel", type=float, help="Å per pixel of the simulated micrographs "
                    "(the simulator's default: EMPIAR-10025's 0.6575)")
    ap.add_argument("--nps", type=float, help="the detector's noise power at Nyquist over at 0 "
                    "(white: 1, the simulator's default; the general model was trained on "
                    "0.1–1)")
    args = ap.parse_args(argv)
    defaults = dict(TINY if args.tiny else FULL, steps=4 if args.tiny else 600,
                    **({} if args.tiny else {"count": 12, "held_out": 4}))
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    work = Path(args.work or f"/tmp/cryostream-bench-gentle{'-tiny' if args.tiny else ''}")
    work = work / (f"{args.dose:g}e" + (f"_{args.pixel:g}A" if args.pixel else "")
                   + (f"_nps{args.nps:g}" if args.nps else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)

    import cryostream
    from cryostream.fit import RECIPE_TRAIN, recipe

    results, save = recorder(out / "bench_fit_gentle.json", args)
    results["fits"] = {}

    t0 = time.perf_counter()
    train_mics, held_out, held_truths = held_out_baselines(work, args, results)
    save("simulate", t0)

    prepare = dataclasses.replace(recipe((args.size, args.size)), patch_size=args.patch,
                                  stride=args.patch // 2)
    if args.scratch:  # the recipe from scratch, scored with its own default
        t0 = time.perf_counter()
        config = dataclasses.replace(RECIPE_TRAIN, precision=args.precision, batch_size=args.batch,
                                     checkpoint_every=args.steps)
        fitted = cryostream.fit(train_mics, work / "scratch", budget=f"{args.steps}steps",
                                work=work / "store_a1", train=config, prepare=prepare,
                                overwrite=True)
        values = scores(str(fitted.run), held_out, held_truths, bands := [])
        results["scratch"] = {"psnr": round(float(np.mean(values)), 3), "each": values,
                              "frc_bands": np.round(np.mean(bands, 0), 4).tolist(),
                              "fit_seconds": round(fitted.seconds, 1)}
        log(f"scratch: {results['scratch']}")
        save("scratch", t0)
    variants = [(f"{lr:g}", 1.0, lr, False) for lr in args.lr]
    for text in args.variant:
        alpha, lr = (float(v) for v in text.split(":"))
        variants.append((f"recorrupt_a{alpha:g}_{lr:g}", alpha, lr, True))
    for label, alpha, lr, recorrupt in variants:
        t0 = time.perf_counter()
        config = dataclasses.replace(RECIPE_TRAIN, precision=args.precision, batch_size=args.batch,
                                     learning_rate=lr, checkpoint_every=args.steps,
                                     recorrupt=recorrupt)
        store_prep = dataclasses.replace(prepare, noise=dataclasses.replace(prepare.noise,
                                                                            alpha=alpha))
        run = work / f"general_{label}"
        fitted = cryostream.fit(train_mics, run, start="general", budget=f"{args.steps}steps",
                                work=work / f"store_a{alpha:g}", train=config, prepare=store_prep,
                                overwrite=True)
        exports = work / f"exports_{label}"
        exports.mkdir(exist_ok=True)
        found = {"alpha": alpha, "learning_rate": lr, "recorrupt": recorrupt,
                 "final_loss": fitted.final_loss, "fit_seconds": round(fitted.seconds, 1)}
        found.update(with_table(run, fitted.steps, "general", exports, held_out, held_truths))
        results["fits"][label] = found
        log(f"{label}: {found}")
        save(label, t0)
    print(json.dumps({k: results.get(k) for k in ("device", "baselines", "frc_bands", "fits",
                                                  "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
