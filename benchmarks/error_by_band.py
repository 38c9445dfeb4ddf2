"""Where a network loses to the oracle Wiener filter: the error power against the truth by band.

For the first held-out micrograph of each named condition of the general model's set
(:data:`general_model_spread.CONDITIONS`, simulated here exactly as ``train_general_model.py``
simulates it), the noisy input over its 95th percentile goes through each model's network
alone (:func:`cryostream.denoise.tiling.network_pass`: no ensemble, no gain, no weights) on
the automatic tile and on 512² tiles (with their halos the same output, unless tiling were
wrong), and through the oracle Wiener filter. For each output: the power of ``output − truth``
in radial bands of cycles/px (``EDGES``; the last entry is everything at or beyond 0.5: the
Nyquist row and column and the corners) and in total (as PSNR with peak 1), and the mean
error.

A network whose total is under the filter's loses to it in some bands and may win in others;
the bands say whether it is the coarse scales (the whole micrograph's spectrum, which the
filter knows and a receptive field does not) or the finest (where the signal is nil).

Usage (2-core machine, about 40 s per network pass of 2048²)::

    python benchmarks/error_by_band.py --models shipped=general other=/path/model.npz \\
        --conditions t20s-50e-nps0.1 t20s-10e-white --out docs/results/general_model/error_by_band_2core.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from general_model_spread import CONDITIONS, held_out_condition

EDGES = (0.0, 0.005, 0.01, 0.03, 0.06, 0.125, 0.25, 0.5)


def band_power(error: np.ndarray, edges: tuple[float, ...] = EDGES) -> list[float]:
    """Mean squared error split over the radial bands of ``edges``, then all at or beyond the
    last edge (Parseval: the entries sum to ``mean(error²)``)."""
    power = np.abs(np.fft.fft2(error)) ** 2 / error.size**2
    fy, fx = np.fft.fftfreq(error.shape[0]), np.fft.fftfreq(error.shape[1])
    radius = np.hypot(fy[:, None], fx[None, :])
    bands = [float(power[(radius >= a) & (radius < b)].sum())
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return bands + [float(power[radius >= edges[-1]].sum())]


def summary(output: np.ndarray, truth: np.ndarray) -> dict:
    bands = band_power(output - truth)
    return {"psnr": round(10 * np.log10(1 / sum(bands)), 3), "bands": bands,
            "mean_error": float(np.mean(output - truth))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["shipped=general"], metavar="LABEL=MODEL")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS),
                    default=["t20s-50e-nps0.1", "t20s-10e-white"])
    ap.add_argument("--shape", type=int, nargs=2, default=(2048, 2048))
    ap.add_argument("--seed", type=int, default=0, help="the general model's data seed")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from cryostream import SimulateConfig
    from cryostream.denoise.network import model_path
    from cryostream.denoise.tiling import network_pass
    from cryostream.metrics import wiener_oracle
    from cryostream.simulate import simulate_micrograph

    models = dict(m.split("=", 1) for m in args.models)
    results = {"machine": platform.platform(), "edges": EDGES, "models": models, "conditions": {}}
    for name in args.conditions:
        index = 1000 * list(CONDITIONS).index(name)  # held-out micrograph 0, as in training
        sim = simulate_micrograph(SimulateConfig(**held_out_condition(name, args.seed,
                                                                      args.shape)), index)
        p = np.float32(np.percentile(sim.noisy, 95))
        y, x = sim.noisy / p, sim.truth / p
        row = {"noisy": summary(y, x), "wiener": summary(wiener_oracle(y, x), x)}
        for label, model in models.items():
            for tile in (None, 512):
                start = time.perf_counter()
                row[f"{label}_tile{tile or 'auto'}"] = {
                    **summary(network_pass(model_path(model), y, tile=tile), x),
                    "seconds": round(time.perf_counter() - start, 1)}
        results["conditions"][name] = row
        print(name)
        for key, value in row.items():
            print(f"  {key:24s} {value['psnr']:6.2f} dB  "
                  + " ".join(f"{b:.2e}" for b in value["bands"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
