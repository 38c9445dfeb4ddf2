"""Micrographs above the learned weights' last row: the default against ``--no-learned-weights``.

The general model's learned weights are a table by measured signal-to-noise ratio; a micrograph
that measures above its last row (a real EPU micrograph measured 4.21 against 2.09) takes that
row's weights as they are, and ``denoise`` says so once a call. What that costs is measured
here: simulated micrographs at doses that put them within and above the table (white shot
noise and a detector roll-off), each denoised by ``cryostream.denoise`` with the shipped model's
default and with ``learned_weights=False``, scored against the truth: the error over the
truth's variance (the output affine-fitted to the truth, each's best case) and the FRC by band
(untapered, ``quality_common.FRC_BANDS``), with the ratio each micrograph measured
(``found.learned_weights_snr`` of its record).

Usage: python benchmarks/above_table_gpu.py OUT --doses 50 300 600 --count 4
CPU smoke: ``OUT --doses 300 --count 1 --size 512``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mrcfile
import numpy as np
from quality_common import FRC_BANDS, affine_fit, device, frc_profile

import cryostream
from cryostream.config import DenoiseConfig, SimulateConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--doses", type=float, nargs="+", default=[50.0, 300.0, 600.0])
    ap.add_argument("--rolloffs", type=float, nargs="+", default=[1.0, 0.05],
                    help="detector NPS at Nyquist (1: white shot noise)")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(device(), flush=True)
    for nps in args.rolloffs:
        for dose in args.doses:
            sim = args.out / f"sim_{dose:g}_{nps:g}"
            cryostream.simulate(sim, args.count, config=SimulateConfig(
                shape=(args.size, args.size), pixel_size_angstrom=0.6575,
                dose_e_per_angstrom2=dose, detector_nps_nyquist=nps, seed=args.seed))
            mics = sorted((sim / "micrographs").glob("*.mrc"))
            for name, config in (("default", DenoiseConfig()),
                                 ("no_learned_weights", DenoiseConfig(learned_weights=False))):
                out = args.out / f"out_{dose:g}_{nps:g}_{name}"
                t = time.perf_counter()
                cryostream.denoise("general", mics, out, config=config, overwrite=True)
                took = time.perf_counter() - t
                for m in mics:
                    truth = mrcfile.read(sim / "truth" / m.name).astype(np.float32)
                    image = affine_fit(mrcfile.read(out / m.name).astype(np.float32), truth)
                    record = json.loads((out / f"{m.stem}.json").read_text())
                    row = {"dose": dose, "detector_nps": nps, "micrograph": m.name, "recipe": name,
                           "snr": record["found"].get("learned_weights_snr"),
                           "error_over_truth_variance": float(np.mean((image - truth) ** 2)
                                                              / np.var(truth)),
                           "frc_bands": frc_profile(image, truth)["bands"],
                           "seconds_for_all": round(took, 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    (args.out / "above_table.json").write_text(json.dumps({"device": device(), "rows": rows},
                                                          indent=1))
    print("\n| NPS | dose | ratio | recipe | error / var(truth) | FRC " +
          " | ".join(f"{a}–{b}" for a, b in FRC_BANDS) + " |")
    for nps in args.rolloffs:
        for dose in args.doses:
            for name in ("default", "no_learned_weights"):
                sel = [r for r in rows if r["dose"] == dose and r["detector_nps"] == nps
                       and r["recipe"] == name]
                bands = np.mean([r["frc_bands"] for r in sel], 0)
                print(f"| {nps:g} | {dose:g} | {np.mean([r['snr'] or 0 for r in sel]):.2f} | {name} "
                      f"| {np.mean([r['error_over_truth_variance'] for r in sel]):.4f} | "
                      + " | ".join(f"{b:.4f}" for b in bands) + " |")


if __name__ == "__main__":
    main()
