"""Rank trained runs without ground truth, and check the ranking against the truth (one GPU).

The runs are seeds of one model trained by ``bench_quality_gpu.py sim`` (matched noise α 1,
``--sim-runs matched1:3500:0`` …); the micrographs are that benchmark's held-out simulations
(2048², seed 7, ``detector_nps_nyquist`` 0.1), made again here. Per micrograph, each run and
the mean of their outputs (an ensemble) go through the pipeline ``denoise --n2n-correction
--n2n-clamp --wiener-gain`` runs, and get:

* PSNR and mean squared error against the truth;
* :func:`cryostream.infer.recorruption_score` (two draws, the same for every run): no truth;
* for the ensemble of all runs, :func:`cryostream.infer.calibrate_rings` (4 passes).

Each network output is computed once per input and shared by the runs' and the ensembles'
pipelines. Writes OUT/rank.json and each single run's output − input (float16) for the first
two micrographs.

Usage: python benchmarks/rank_seeds_gpu.py OUT NAME=RUN [NAME=RUN ...] [--micrographs 48 49]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from bench_quality_gpu import denoiser

from cryostream.config import SimulateConfig
from cryostream.infer import calibrate_rings, n2n_correct, recorruption_score
from cryostream.matched import estimate_noise
from cryostream.metrics import psnr, wiener_oracle
from cryostream.simulate.micrograph import simulate_micrograph


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="NAME=RUN folder")
    ap.add_argument("--micrographs", type=int, nargs="+", default=[48, 49, 50, 51])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=1024)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = dict(item.split("=", 1) for item in args.runs)
    nets = {name: denoiser(run, args.tile, True) for name, run in runs.items()}
    cfg = SimulateConfig(shape=(args.size, args.size), seed=7, detector_nps_nyquist=0.1)
    px = cfg.pixel_size_angstrom
    outputs = {}

    def raw(name, image):  # one network pass per (run, input)
        key = (name, hash(image.tobytes()))
        if key not in outputs:
            outputs[key] = nets[name](image)
        return outputs[key]

    def pipeline(names):
        def run(image):
            mean = np.mean([raw(n, image) for n in names], axis=0).astype(np.float32)
            return n2n_correct(mean, image, 1.0, ring_clamp=True, noise=estimate_noise(image, px))
        return run

    groups = {name: [name] for name in runs}
    groups["ensemble_all"] = list(runs)
    groups.update({f"ensemble_{a}_{b}": [a, b] for a, b in itertools.combinations(runs, 2)})
    rows, t0 = [], time.perf_counter()
    for i in args.micrographs:
        outputs.clear()
        sim = simulate_micrograph(cfg, i)
        p = np.percentile(sim.noisy, 95)
        y, x = sim.noisy / p, sim.truth / p
        est = estimate_noise(y, px)
        row = {"micrograph": i, "wiener_oracle": psnr(wiener_oracle(y, x), x),
               "noise_variance_estimated": est.variance}
        for name, members in groups.items():
            f = pipeline(members)
            image = f(y)
            row[f"{name}_psnr"] = psnr(image, x)
            row[f"{name}_mse"] = float(np.mean((image - x) ** 2))
            row[f"{name}_recorruption_score"] = recorruption_score(f, y, est, draws=2)
            if name == "ensemble_all":
                row[f"{name}_calibrated_psnr"] = psnr(calibrate_rings(f, y, est, draws=4)[0], x)
            if len(members) == 1 and len(rows) < 2:
                np.save(out / f"output_{name}_{i}.npy", (raw(name, y) - y).astype(np.float16))
        rows.append(row)
        print(json.dumps(row), round(time.perf_counter() - t0), flush=True)
        (out / "rank.json").write_text(json.dumps({"runs": runs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
