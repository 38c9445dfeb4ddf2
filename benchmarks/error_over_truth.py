"""Where a model's raw network errs, against how much signal there is, band by band.

For held-out simulated micrographs (``general_model_spread.CONDITIONS``), the network's single
pass (no ensemble, gain or table) is compared with the truth: per band of cycles/px, the error
power over the truth's power. Under 1 the output holds more of the band's signal than it adds
error; over 1 it would do better to leave the band out (a zero there has an error equal to the
truth's power): noise passed through or structure made up. The mean-square-error estimate a
network is trained towards should not go over 1 in a band, so a ratio well over 1 is the
network's own error (too few steps, or noise learned by heart), not the data's.

Usage (2 cores, about a minute per model and micrograph of 1024²)::

    python benchmarks/error_over_truth.py --model cryostream/data/general_model.npz OLD.npz \\
        --condition t20s-10e-white --shape 1024 --out docs/results/general_model/NAME.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import common  # noqa: E402
from error_by_band import band_power  # noqa: E402
from general_model_spread import CONDITIONS, held_out_condition  # noqa: E402
from quality_common import FRC_BANDS  # noqa: E402

#: Band edges, cycles/px: the FRC's six bands.
EDGES = tuple(a for a, _ in FRC_BANDS) + (FRC_BANDS[-1][1],)


def band_powers(image: np.ndarray) -> list[float]:
    """The image's power (mean removed) in each band of :data:`EDGES`."""
    return band_power(image - image.mean(), EDGES)[:-1]  # not what lies beyond Nyquist


def main(argv=None) -> int:
    from cryostream import SimulateConfig
    from cryostream.denoise.tiling import network_pass
    from cryostream.simulate import simulate_micrograph

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", required=True, help="exported models (.npz) or run folders")
    p.add_argument("--condition", nargs="+", default=["t20s-10e-white"], choices=list(CONDITIONS))
    p.add_argument("--shape", type=int, default=1024, help="micrograph side, px (1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="the JSON to write")
    args = p.parse_args(argv)
    rows = []
    for name in args.condition:
        sim = simulate_micrograph(SimulateConfig(**held_out_condition(name, args.seed,
                                                                     (args.shape, args.shape))), 0)
        scale = np.float32(np.percentile(sim.noisy, 95))  # the store's normalisation
        y, x = sim.noisy.astype(np.float32) / scale, sim.truth.astype(np.float32) / scale
        truth, noise = band_powers(x), band_powers(y - x)
        for model in args.model:
            start = time.perf_counter()
            error = band_powers(network_pass(model, y) - x)
            rows.append({"condition": name, "model": model,
                         "seconds": round(time.perf_counter() - start, 1),
                         "error_over_truth": [round(e / t, 3) for e, t in zip(error, truth, strict=True)],
                         "noise_over_truth": [round(n / t, 3) for n, t in zip(noise, truth, strict=True)],
                         "error_share": [round(e / sum(error), 3) for e in error]})
            print(f"{name} {model}: error/truth by band {rows[-1]['error_over_truth']}", flush=True)
    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d"), "shape": args.shape,
              "seed": args.seed, "bands_cycles_per_px": list(EDGES), "rows": rows}
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
