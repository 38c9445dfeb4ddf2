"""Rescore saved model outputs of ``bench_quality_gpu.py sim --save-outputs`` on the CPU.

The device run keeps each model's output − input (``output_TAG_I.npy``, float16). The
simulation is deterministic, so the inputs and the ground truth are made again here and the
outputs can be scored under corrections the device run did not apply (the Noisier2Noise
formula alone, ``cryostream.denoise.n2n_correct``; then the pipelines of :data:`PIPELINES`:
the correction with the input's mean kept, with the ring clamp, with the Wiener filter's
linear response, each with the ``α²`` given on the command line) and split into bands of
spatial frequency against the oracle Wiener filter, without another device run.

Each output also gets its FRC against the truth summarised (``frc``: the mean over all rings,
where 0.5 and 0.143 are first crossed, and the mean over bands ``FRC_BANDS``), beside the
oracle Wiener filter's and, with ``--topaz DIR`` (Topaz-Denoise importable from DIR), the
pretrained Topaz U-Net's, run here on the CPU and affine-fitted to the truth as
``bench_quality_gpu.py`` does.

Usage: python benchmarks/rescore_sim_outputs.py OUT.json LABEL=DIR:TAG:ALPHA2 [...]
       [--indices 24 25] [--topaz DIR] (the benchmark's simulation: 2048², seed 7, detector_nps_nyquist 0.1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from quality_common import FRC_BANDS, assemble, frc_profile, known_output

from cryostream.baselines import wiener_measured
from cryostream.config import DenoiseConfig, SimulateConfig
from cryostream.denoise import Micrograph, n2n_correct
from cryostream.metrics import frc, psnr, wiener_oracle
from cryostream.simulate.micrograph import simulate_micrograph
from cryostream.spectral import ring_index

#: Ring edges (units of 1/2048 cycles per pixel) of the error bands.
EDGES = (1, 4, 8, 16, 32, 64, 128, 256, 512, 1449)

#: The post-processing each saved output is scored under (with the given α²), by name.
PIPELINES = {
    "mean_kept": DenoiseConfig.raw(n2n_correction=True),
    "clamp_mean_kept": DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True),
    "wiener_gain": DenoiseConfig.raw(n2n_correction=True, wiener_gain=True),
    "clamp_wiener_gain": DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True,
                                           wiener_gain=True),
}


def band_errors(estimate: np.ndarray, truth_spectrum: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Squared error against the truth summed over each band of ``EDGES`` (the mean excluded)."""
    err = np.abs(np.fft.rfft2(estimate - estimate.mean()) - truth_spectrum) ** 2
    per_ring = np.bincount(ring.ravel(), err.ravel(), minlength=EDGES[-1])
    return np.array([per_ring[a:b].sum() for a, b in zip(EDGES[:-1], EDGES[1:], strict=True)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+", help="LABEL=DIR:TAG:ALPHA2")
    ap.add_argument("--indices", type=int, nargs="+", default=[24, 25])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--topaz", help="a folder Topaz-Denoise imports from: score it too")
    args = ap.parse_args(argv)
    if args.topaz:
        import sys

        sys.path.insert(0, args.topaz)
        from quality_common import affine_fit

        from cryostream.baselines import topaz_denoise
    cfg = SimulateConfig(shape=(args.size, args.size), seed=7, detector_nps_nyquist=0.1)
    runs = []
    for item in args.runs:
        label, _, rest = item.partition("=")
        folder, tag, alpha2 = rest.split(":")
        runs.append((label, Path(folder), tag, float(alpha2)))
    rows = []
    for i in args.indices:
        sim = simulate_micrograph(cfg, i)
        p = np.percentile(sim.noisy, 95)
        y, x = sim.noisy / p, sim.truth / p
        ring = ring_index(y.shape, "rfft", dtype=np.float32)
        truth_spectrum = np.fft.rfft2(x - x.mean())
        wiener = wiener_oracle(y, x)
        base = band_errors(wiener, truth_spectrum, ring)
        micrograph = Micrograph(y, cfg.pixel_size_angstrom, None, source=f"simulated micrograph {i}")
        noise = micrograph.noise()
        row = {"micrograph": i, "wiener_oracle": psnr(wiener, x),
               "frc_mean_wiener_oracle": float(frc(wiener, x)[1].mean()),
               "wiener_measured": psnr(wiener_measured(y, noise), x),
               "band_edges_cycles_per_px": [e / args.size for e in EDGES],
               "band_share_of_wiener_error": (base / base.sum()).round(4).tolist(),
               "frc_bands_cycles_per_px": FRC_BANDS, "frc_wiener_oracle": frc_profile(wiener, x)}
        if args.topaz:
            topaz = affine_fit(topaz_denoise(y), x)
            row["topaz_cpu"] = psnr(topaz, x)
            row["frc_topaz_cpu"] = frc_profile(topaz, x)
        for label, folder, tag, alpha2 in runs:
            output = y + np.load(folder / f"output_{tag}_{i}.npy").astype(np.float32)
            free = n2n_correct(output, y, alpha2)  # the formula alone: the network's offset too
            network = known_output(y, output)
            post = {name: assemble(config, alpha2=alpha2).run(micrograph, network)[0]
                    for name, config in PIPELINES.items()}
            kept, gained, both = post["mean_kept"], post["wiener_gain"], post["clamp_wiener_gain"]
            row[label] = {
                "n2n": psnr(free, x),
                "n2n_offset": float(free.mean() - x.mean()),
                "n2n_mean_kept": psnr(kept, x),
                "n2n_clamp_mean_kept": psnr(post["clamp_mean_kept"], x),
                "n2n_wiener_gain": psnr(gained, x),
                "n2n_clamp_wiener_gain": psnr(both, x),
                "frc_mean_n2n_mean_kept": float(frc(kept, x)[1].mean()),
                "frc_mean_n2n_wiener_gain": float(frc(gained, x)[1].mean()),
                "frc_mean_n2n_clamp_wiener_gain": float(frc(both, x)[1].mean()),
                "band_error_over_wiener": (band_errors(kept, truth_spectrum, ring) / base).round(3).tolist(),
                "frc_n2n_mean_kept": frc_profile(kept, x),
                "frc_n2n_wiener_gain": frc_profile(gained, x),
                "frc_n2n_clamp_wiener_gain": frc_profile(both, x),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"config": {"size": args.size, "seed": 7,
                                                     "detector_nps_nyquist": 0.1},
                                          "runs": {r[0]: f"{r[2]} α²={r[3]}" for r in runs},
                                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
