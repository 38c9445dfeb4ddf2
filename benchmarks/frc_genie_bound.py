"""How much FRC is there to win, band by band, on the general model's held-out micrographs?

The simulator's truth is the particles and the background plus an amorphous-ice texture, a
Gaussian phase field seen through the CTF (``simulate_micrograph(..., components=True)``
returns that texture apart). For a Gaussian signal in near-Gaussian noise the best estimate is
linear, and a linear filter leaves each ring's FRC where the micrograph's is. So what lifts a
band's FRC above the input's is the particles. A *genie* told the particles and the background
exactly, which only has to filter the texture (the oracle Wiener filter on ``y − known``
against the texture, plus ``known``), shows the room: with everything but the texture given,
its FRC is about the most any denoiser that has to find the particles could reach. Beside it,
each band's share of the truth's power that the texture holds. ``--local-wiener`` adds, for
the conditions it names, a Wiener gain that varies over the image (each band's signal power
measured locally; :func:`local_wiener`) and the same with the truth's local power (a genie):
whether a spatially varying linear filter could keep the particles' share.

The same genie bounds the PSNR: each micrograph's PSNR (peak its 95th percentile, as the
scoring) for the input, the oracle Wiener filter and the genie, each also with 2-D spectra
smoothed over 2 Fourier px instead of radial ones (``bound_sim_quality.wiener_2d``: they
follow an astigmatic CTF's elliptical rings). The genie over the oracle Wiener filter is the
most PSNR any denoiser could add to the linear filter here.

The held-out micrographs are those of ``train_general_model.py`` (same conditions, indices and
seed); ``--results`` adds the noisy input, Topaz and the default from a scoring run to the
tables (their FRC on the same micrographs, the genie's computed here).

CPU only (2 cores: 6–11 s per micrograph of 2048² in each of 2 processes, about a minute with
``--local-wiener``; the 44 in under 10 minutes). Usage::

    python benchmarks/frc_genie_bound.py --out docs/results/general_model/genie_bound_psnr_2core.json \\
        --results docs/results/general_model/h200_table_kept_0.005db_scores.json \\
        --local-wiener t20s-10e-white
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import common  # noqa: E402
from bound_sim_quality import wiener_2d  # noqa: E402
from error_by_band import band_power  # noqa: E402
from general_model_spread import CONDITIONS, held_out_condition  # noqa: E402
from quality_common import FRC_BANDS, summarise_frc  # noqa: E402

#: Band edges, cycles/px: the FRC's six bands.
EDGES = tuple(a for a, _ in FRC_BANDS) + (FRC_BANDS[-1][1],)


def local_wiener(y: np.ndarray, x: np.ndarray, sigma: float, known_power: bool,
                 bands: int = 32) -> np.ndarray:
    """A Wiener gain that varies over the image, per band of frequency (``bands`` equal ones):
    each band of ``y`` times ``S / (S + N)`` where ``N`` is the band's noise power (known from
    the truth ``x``) and ``S`` its signal's local power, a Gaussian mean over ``sigma`` px:
    measured (``y``'s local power less ``N``) or, with ``known_power``, the truth's own (a
    genie)."""
    from scipy.ndimage import gaussian_filter

    fy, fx = np.fft.fftfreq(y.shape[0])[:, None], np.fft.rfftfreq(y.shape[1])[None, :]
    band = np.minimum((np.hypot(fy, fx) * 2 * bands).astype(int), bands)
    yf, xf = np.fft.rfft2(y - y.mean()), np.fft.rfft2(x - x.mean())
    out = np.full(y.shape, y.mean(), np.float64)
    for b in range(bands + 1):
        inside = band == b
        yb = np.fft.irfft2(np.where(inside, yf, 0), s=y.shape)
        xb = np.fft.irfft2(np.where(inside, xf, 0), s=y.shape)
        noise = float(np.mean((yb - xb) ** 2))
        power = gaussian_filter((xb if known_power else yb) ** 2, sigma)
        signal = power if known_power else np.maximum(power - noise, 0)
        out += signal / np.maximum(signal + noise, 1e-30) * yb
    return out


def one(task: tuple[str, int, int, int, bool]) -> dict:
    """The genie's, the oracle Wiener filter's and the input's FRC bands on one micrograph."""
    from cryostream import SimulateConfig
    from cryostream.metrics import frc, psnr, wiener_oracle
    from cryostream.simulate import simulate_micrograph

    name, j, shape, seed, local = task
    start = time.perf_counter()
    index = 1000 * list(CONDITIONS).index(name) + j  # as train_general_model.data_tasks
    sim = simulate_micrograph(SimulateConfig(**held_out_condition(name, seed, (shape, shape))),
                              index, components=True)
    p = np.float32(np.percentile(sim.noisy, 95))
    y, x, ice = sim.noisy / p, sim.truth / p, sim.ice / p
    known = x - ice  # the particles and the background: what the genie is told
    images = {"noisy": y, "wiener": wiener_oracle(y, x),
              "genie": wiener_oracle(y - known, ice) + known,
              "wiener_2d": wiener_2d(y, x), "genie_2d": wiener_2d(y - known, ice) + known}
    if local:
        images["local_wiener_40px"] = local_wiener(y, x, 40.0, known_power=False)
        images["local_genie_20px"] = local_wiener(y, x, 20.0, known_power=True)
    truth_power = band_power(x - x.mean(), EDGES)[:-1]
    ice_power = band_power(ice - ice.mean(), EDGES)[:-1]
    return {"condition": name, "micrograph": j,
            "frc_bands": {k: summarise_frc(*frc(v, x))["bands"] for k, v in images.items()},
            "psnr": {k: round(float(psnr(v, x)), 3) for k, v in images.items()},
            "texture_share": [round(float(i / t), 4) for i, t in zip(ice_power, truth_power,
                                                                      strict=True)],
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="the JSON to write")
    ap.add_argument("--results", type=Path, help="a scoring run's JSON (train_general_model.py) "
                    "whose input, Topaz and default FRC go beside the genie's")
    ap.add_argument("--topaz-from", type=Path, help="a results JSON with Topaz, if --results has none")
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    ap.add_argument("--count", type=int, default=4, help="held-out micrographs per condition (4)")
    ap.add_argument("--shape", type=int, default=2048, help="their side, px (2048)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--local-wiener", nargs="*", default=[], choices=list(CONDITIONS),
                    help="conditions that also get the local Wiener gain (measured, 40 px) and "
                    "its genie (the truth's local power, 20 px): about 15 s per micrograph more")
    args = ap.parse_args(argv)
    tasks = [(n, j, args.shape, args.seed, n in args.local_wiener) for n in args.conditions
             for j in range(args.count)]
    with concurrent.futures.ProcessPoolExecutor(args.workers) as ex:
        rows = list(ex.map(one, tasks))
    scored = {}
    if args.results:
        scored = json.loads(args.results.read_text())["score"]["conditions"]
    topaz = json.loads(args.topaz_from.read_text())["score"]["conditions"] if args.topaz_from else {}
    conditions = {}
    for name in args.conditions:
        mine = [r for r in rows if r["condition"] == name]
        bands = {k: np.round(np.mean([r["frc_bands"][k] for r in mine], axis=0), 4).tolist()
                 for k in mine[0]["frc_bands"]}
        entry = {"micrographs": len(mine), "frc_bands": bands,
                 "psnr": {k: round(float(np.mean([r["psnr"][k] for r in mine])), 3)
                          for k in mine[0]["psnr"]},
                 "texture_share": np.round(np.mean([r["texture_share"] for r in mine], axis=0),
                                           3).tolist()}
        if name in scored:
            s = scored[name]["frc_bands"]
            entry["scored_psnr"] = {k: scored[name]["psnr"][k] for k in ("noisy", "wiener",
                                                                          "default")}
            entry["scored"] = {"noisy": s["noisy"], "default": s["default"],
                               "topaz": s.get("topaz", topaz.get(name, {}).get("frc_bands", {})
                                              .get("topaz"))}
        conditions[name] = entry
        print(name, json.dumps(entry), flush=True)
    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d"),
              "shape": args.shape, "seed": args.seed, "count": args.count,
              "bands_cycles_per_px": list(EDGES), "results": str(args.results or ""),
              "conditions": conditions, "micrographs": rows}
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
