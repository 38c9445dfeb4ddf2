"""How far above the oracle Wiener filter can any denoiser get on the simulated micrographs?

The simulator's truth is particles and background plus an amorphous-ice texture: a Gaussian
phase field seen through the CTF. For a Gaussian signal in (near-)Gaussian noise the best
estimate is linear, so only the particles leave room above a linear filter. A *genie* that
knows every particle exactly and filters only the ice texture (oracle Wiener on
``z − particles``, target the texture) does at least as well as any denoiser that must also
find the particles. Its PSNR over the oracle Wiener filter's bounds what a network can gain.

Both filters are computed two ways: radially averaged spectra (``cryostream.metrics
.wiener_oracle``, the figure the denoising issue names) and 2-D spectra smoothed over a few
Fourier pixels (which follow an astigmatic CTF's elliptical rings).

CPU only. Usage: python benchmarks/bound_sim_quality.py OUT.json [--size 2048]
[--indices 24 25] (the quality benchmark's simulation: seed 7, detector_nps_nyquist 0.1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from cryostream.config import SimulateConfig
from cryostream.metrics import psnr, wiener_oracle
from cryostream.simulate.micrograph import simulate_micrograph


def wiener_2d(noisy: np.ndarray, reference: np.ndarray, smooth: float = 2.0) -> np.ndarray:
    """Oracle Wiener filter from the true 2-D spectra, each smoothed by ``smooth`` Fourier px."""
    noisy = np.asarray(noisy, np.float64)
    reference = np.asarray(reference, np.float64)
    fr = np.fft.fft2(reference - reference.mean())
    fz = np.fft.fft2(noisy - noisy.mean())

    def smoothed(power):
        return np.fft.ifftshift(gaussian_filter(np.fft.fftshift(power), smooth, mode="wrap"))

    s = smoothed(np.abs(fr) ** 2)
    n = smoothed(np.abs(fz - fr) ** 2)
    gain = s / (s + n + 1e-30)
    return (np.real(np.fft.ifft2(gain * fz)) + reference.mean()).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--indices", type=int, nargs="+", default=[24, 25])
    ap.add_argument("--detector-nps", type=float, default=0.1)
    args = ap.parse_args(argv)
    cfg = SimulateConfig(shape=(args.size, args.size), seed=7,
                         detector_nps_nyquist=args.detector_nps)
    rows = []
    for i in args.indices:
        t = time.perf_counter()
        sim = simulate_micrograph(cfg, i, components=True)
        p = np.percentile(sim.noisy, 95)
        y, x, ice = sim.noisy / p, sim.truth / p, sim.ice / p
        known = x - ice  # particles and background: what the genie is told
        row = {
            "micrograph": i,
            "noisy": psnr(y, x),
            "wiener_radial": psnr(wiener_oracle(y, x), x),
            "wiener_2d": psnr(wiener_2d(y, x), x),
            "genie_radial": psnr(wiener_oracle(y - known, ice) + known, x),
            "genie_2d": psnr(wiener_2d(y - known, ice) + known, x),
            "ice_share_of_truth_variance": float(np.var(ice) / np.var(x)),
            "seconds": time.perf_counter() - t,
        }
        row["bound_over_wiener_db"] = max(row["genie_radial"], row["genie_2d"]) - row["wiener_radial"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k != "micrograph"]
    result = {"config": {"size": args.size, "seed": 7, "detector_nps_nyquist": args.detector_nps,
                         "indices": args.indices},
              "rows": rows, "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys}}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["mean"], indent=1))


if __name__ == "__main__":
    main()
