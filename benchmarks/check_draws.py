"""How much the CTF check's reading varies from one recorrupted draw to the next on full-size
micrographs: is one draw enough there?

``ctf_gain_check`` scores the CTF-shaped gain against the radial one on recorrupted copies of
the micrograph. Its readings were measured on 2048² micrographs with two draws; a full-size
7676 × 7420 micrograph holds 13.6 times the pixels, so each draw averages over far more. For
each dose, one simulated full-size micrograph (EMPIAR-10025-like, the default simulator) is
fitted as ``denoise`` fits it (the Thon rings' score, the fit's defocus error, the noise at
its zeros), and the check is read on ``--draws`` single draws of the fit and of the fit
moved 400 Å, on the whole micrograph (as ``denoise`` reads it) and on its centre
(``--sides``: ``whole`` and sides in pixels: would a 4096² centre, 29 % of the pixels, tell
the same?), for each of ``--seeds`` (one micrograph each). Prints and writes
``check_draws.json``.

Usage: python benchmarks/check_draws.py --out OUT [--doses 50 20 10] [--draws 3]
       [--sides whole 4096] [--seeds 3]
(2-core machine: about two minutes per dose and side.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--doses", type=float, nargs="+", default=[50.0, 20.0, 10.0])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[3])
    ap.add_argument("--sides", nargs="+", default=["whole", "4096"],
                    help="what the check reads: whole, or the centre's side in pixels")
    args = ap.parse_args(argv)
    sides = [None if s == "whole" else int(s) for s in args.sides]

    import scipy.fft

    from cryostream import SimulateConfig
    from cryostream.ctf import thon_ring_z
    from cryostream.denoise.fallback import fit_for_gain, fit_with_error, no_rings, zeros_noise
    from cryostream.denoise.scores import check_draws, ctf_gain_check
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.simulate.micrograph import simulate_micrograph

    rows = []
    for dose, seed in ((d, s) for d in args.doses for s in args.seeds):
        config = SimulateConfig(seed=seed, dose_e_per_angstrom2=dose)
        sim = simulate_micrograph(config, 0)
        image = sim.noisy.astype(np.float32)
        image /= np.percentile(image, 95)
        pixel = config.pixel_size_angstrom
        fit = fit_for_gain(image, pixel, {})
        spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)
        z = thon_ring_z(spectrum, image.shape, fit)
        fit = fit_with_error(fit, z)
        noise = zeros_noise(image, estimate_noise(image, pixel, tile=tile_for(image.shape)), fit,
                            spectrum)[0]
        off = dataclasses.replace(fit, defocus_u_angstrom=fit.defocus_u_angstrom + 400,
                                  defocus_v_angstrom=fit.defocus_v_angstrom + 400)
        row = {"dose_e_per_angstrom2": dose, "seed": seed, "shape": list(image.shape),
               "draws_denoise_makes": check_draws(image.shape), "rings_z": round(z, 2),
               "rings_found": not no_rings(z, fit),
               "fitted_defocus_u_angstrom": round(fit.defocus_u_angstrom),
               "true_defocus_u_angstrom": round(sim.defocus_u_angstrom)}
        for (name, f), side in ((c, s) for c in (("fit", fit), ("fit_400A_off", off))
                                for s in sides):
            key = f"{name}_{side or 'whole'}"
            start = time.perf_counter()
            read = image if side is None else np.ascontiguousarray(image[tuple(
                slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + min(n, side))
                for n in image.shape)])
            row[key] = [ctf_gain_check(read, noise, f, draws=1, seed=k) for k in range(args.draws)]
            row[f"{key}_seconds_per_draw"] = round((time.perf_counter() - start) / args.draws, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check_draws.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
