"""Rank trained runs without ground truth, and check the ranking against the truth (one GPU).

The runs are seeds of one model trained by ``bench_quality_gpu.py sim`` (matched noise α 1,
``--sim-runs matched1:3500:0`` …); the micrographs are that benchmark's held-out simulations
(2048², seed 7, ``detector_nps_nyquist`` 0.1), made again here. Per micrograph, each run and
the mean of their outputs (an ensemble) go through the pipeline ``denoise --n2n-correction
--n2n-clamp --wiener-gain`` runs (:data:`PIPELINE`, α² from the runs' record), and get:

* PSNR and mean squared error against the truth;
* :func:`cryostream.denoise.recorruption_score` (two draws, the same for every run): no truth;
* for the ensemble of all runs, the ring calibration (``calibrate=4``,
  :func:`cryostream.denoise.calibrate_rings`).

Each network output is computed once per input and shared by the runs' and the ensembles'
pipelines. Writes OUT/rank.json and each single run's output − input (float16) for the first
two micrographs.

Usage: python benchmarks/rank_seeds_gpu.py OUT NAME=RUN [NAME=RUN ...] [--micrographs 48 49]
(A CPU smoke run: runs of ``bench_quality_gpu.py sim``'s smoke run, ``--size 512 --tile 256``.)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
from quality_common import network_fn

from cryostream.config import DenoiseConfig, SimulateConfig
from cryostream.denoise import Micrograph, recorruption_score
from cryostream.metrics import psnr, wiener_oracle
from cryostream.runs import load_record
from cryostream.simulate.micrograph import simulate_micrograph

#: What ``denoise --n2n-correction --n2n-clamp --wiener-gain`` runs after the network.
PIPELINE = DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True, wiener_gain=True)


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
    records = {name: load_record(run) for name, run in runs.items()}
    first = next(iter(records.values()))
    if any(r.noise != first.noise for r in records.values()):
        raise SystemExit("the runs were trained with different noise: rank seeds of one model")
    nets = {name: network_fn(run, args.tile, True) for name, run in runs.items()}
    cfg = SimulateConfig(shape=(args.size, args.size), seed=7, detector_nps_nyquist=0.1)
    px = cfg.pixel_size_angstrom
    outputs = {}

    def raw(name, image):  # one network pass per (run, input)
        key = (name, hash(image.tobytes()))
        if key not in outputs:
            outputs[key] = nets[name](image)
        return outputs[key]

    def network(names):  # the mean of the runs' outputs
        def run(image):
            return np.mean([raw(n, image) for n in names], axis=0).astype(np.float32)
        return run

    groups = {name: [name] for name in runs}
    groups["ensemble_all"] = list(runs)
    groups.update({f"ensemble_{a}_{b}": [a, b] for a, b in itertools.combinations(runs, 2)})
    pipeline = PIPELINE.pipeline()
    calibrated = dataclasses.replace(PIPELINE, calibrate=4).pipeline()
    rows, t0 = [], time.perf_counter()
    for i in args.micrographs:
        outputs.clear()
        sim = simulate_micrograph(cfg, i)
        p = np.percentile(sim.noisy, 95)
        y, x = sim.noisy / p, sim.truth / p
        micrograph = Micrograph(y, px, first, source=f"simulated micrograph {i}")
        est = micrograph.noise()
        row = {"micrograph": i, "wiener_oracle": psnr(wiener_oracle(y, x), x),
               "noise_variance_estimated": est.variance}
        for name, members in groups.items():
            f = pipeline.bind(micrograph, network(members))
            image = f(y)
            row[f"{name}_psnr"] = psnr(image, x)
            row[f"{name}_mse"] = float(np.mean((image - x) ** 2))
            row[f"{name}_recorruption_score"] = recorruption_score(f, y, est, draws=2)
            if name == "ensemble_all":
                row[f"{name}_calibrated_psnr"] = psnr(
                    calibrated.run(micrograph, network(members))[0], x)
            if len(members) == 1 and len(rows) < 2:
                np.save(out / f"output_{name}_{i}.npy", (raw(name, y) - y).astype(np.float16))
        rows.append(row)
        print(json.dumps(row), round(time.perf_counter() - t0), flush=True)
        (out / "rank.json").write_text(json.dumps({"runs": runs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
