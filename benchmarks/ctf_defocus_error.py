"""The CTF-shaped gain with the defocus error its fit may have: each fit's rings fade where
σ = scale / z^1.5 Å of defocus error (z: the fit's Thon-ring score) blurs them
(:func:`cryostream.denoise.fallback.fit_with_error`), against the sharp rings of the fit as
``denoise`` had them before 2026-12-05.

- ``--calibrate N``: the choice of the scale, on the first N micrographs of a calibration
  spread (``training_condition`` seed 3: neither training, held out nor the learned weights'
  seed 2): the default's linear part (its gain applied to the micrograph; no network) at
  scales 0, 600, 1200, 1800 and 2400 Å, its PSNR against the truth and its FRC at
  0.125–0.25 cycles/px, per micrograph, with the mean and the worst change.
- ``--fit-error N``: the law the scale rests on, on the first N micrographs of the same
  spread: each fit's defocus error (rms over directions, against the simulator's) and its
  Thon-ring score z, and the spread of error · z^1.5 over the fits within 1500 Å. Each fit is
  made and judged as ``denoise`` does (:meth:`cryostream.denoise.steps.WienerGain.fitted`,
  default optics): whether it is used (ring score and error check), its check and the error
  it is stated with. ``--shape H W`` (default 2048 2048): micrographs of that size instead;
  ``--dose LOW HIGH``: their dose drawn log-uniform from that range (e/Å²) instead, the rest
  as it would be; ``--first K``: micrographs K to K+N-1 instead (another draw of the spread).
- otherwise, held-out micrographs of the general model (``train_general_model.py``'s
  conditions, seed 0, the first ``--count`` of each): PSNR and FRC by band of the linear part
  before and now, the micrograph and the oracle Wiener filter; with ``--network``, of the
  default with one network pass (the shipped model's single-pass table and binned pass)
  before and now, from one network output; with ``--ensemble`` too, of the default itself
  (the 8-fold ensemble, its table and binned pass).

Usage (2-core machine: about 10 s a micrograph for the linear parts, a minute with
``--network``)::

    python benchmarks/ctf_defocus_error.py --calibrate 40 \\
        --out docs/results/general_model/defocus_error_calibration_2core.json
    python benchmarks/ctf_defocus_error.py --fit-error 60 \\
        --out docs/results/general_model/defocus_error_fits_2core.json
    python benchmarks/ctf_defocus_error.py --fit-error 150 --shape 1024 1024 --dose 10 20 \\
        --out low.json
    python benchmarks/ctf_defocus_error.py --fit-error 150 --first 150 --shape 1024 1024 \\
        --dose 10 80 --out wide.json
    python benchmarks/ctf_defocus_error.py --merge low.json wide.json \\
        --out docs/results/general_model/ctf_fit_1024_2core.json
    # the same two runs once thon_ring_z left out the bands whose rings alias:
    #   ctf_fit_1024_resolved_2core.json; 40 at 2048² (--fit-error 20, and 20 --first 20,
    #   merged): defocus_error_fits_resolved_2core.json
    python benchmarks/ctf_defocus_error.py --count 2 --out docs/results/general_model/defocus_error_2core.json
    python benchmarks/ctf_defocus_error.py --count 2 --network --conditions t20s-10e-white \\
        t20s-20e-white t20s-50e-white globular-30e-0.5A-thick-ice \\
        --out docs/results/general_model/defocus_error_network_2core.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import platform
from pathlib import Path

import numpy as np
from gain_below_20a import LINEAR_CONDITIONS, default_one_pass, write_summary
from general_model_spread import CONDITIONS, held_out_condition, training_condition
from quality_common import frc_profile

SCALES = [0.0, 600.0, 1200.0, 1800.0, 2400.0]


@contextlib.contextmanager
def scale(value: float):
    """``denoise`` with the scale of the defocus error set to ``value`` (0: sharp rings, as
    before)."""
    fallback = importlib.import_module("cryostream.denoise.fallback")
    kept = fallback.DEFOCUS_ERROR_SCALE
    fallback.DEFOCUS_ERROR_SCALE = value
    try:
        yield
    finally:
        fallback.DEFOCUS_ERROR_SCALE = kept


def micrograph(config: dict, index: int):
    """The normalised micrograph and truth of ``config`` (its 95th percentile as 1), the
    pixel size, its noise as ``denoise`` uses it below 20 Å, its fit with the ring score and
    the simulation (its defocus)."""
    import scipy.fft

    from cryostream import SimulateConfig
    from cryostream.ctf import thon_ring_z
    from cryostream.denoise.fallback import fit_for_gain, noise_below, zeros_noise
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.simulate import simulate_micrograph

    cfg = SimulateConfig(**config)
    sim = simulate_micrograph(cfg, index)
    p = np.float32(np.percentile(sim.noisy, 95))
    y, x = (sim.noisy / p).astype(np.float32), (sim.truth / p).astype(np.float32)
    pixel = cfg.pixel_size_angstrom
    noise = estimate_noise(y, pixel, tile=tile_for(y.shape))
    fit = fit_for_gain(y, pixel, {})
    if fit is None:
        return y, x, pixel, noise, None, None, sim
    z = thon_ring_z(scipy.fft.rfft2(y - y.mean(), workers=-1), y.shape, fit)
    return y, x, pixel, noise_below(noise, zeros_noise(y, noise, fit)[2]), fit, z, sim


def linear(y, noise, fit, z, value: float):
    """The default's linear part with the scale ``value``."""
    from cryostream.denoise import match_wiener_gain
    from cryostream.denoise.fallback import fit_with_error

    with scale(value):
        return match_wiener_gain(y, y, noise, ctf=fit_with_error(fit, z))


def calibration_micrographs(count: int):
    """Of the first ``count`` micrographs of the calibration spread, those whose CTF could be
    fitted: ``(row, micrograph(...))``, the row naming it (index, specimen, dose, pixel size,
    ring score)."""
    for i in range(count):
        config = training_condition(3, i, (2048, 2048))
        made = micrograph(config, i)
        if made[4] is not None:
            yield {"index": i, "particle": config["particle"],
                   "dose": round(config["dose_e_per_angstrom2"], 1), "pixel": round(made[2], 3),
                   "rings_z": round(made[5], 2)}, made


def calibrate(count: int) -> dict:
    from cryostream.metrics import psnr

    rows = []
    for row, (y, x, _, noise, fit, z, _) in calibration_micrographs(count):
        out = {v: linear(y, noise, fit, z, v) for v in SCALES}
        rows.append({**row,
                     "psnr": {str(v): round(float(psnr(o, x)), 4) for v, o in out.items()},
                     "frc_0.125_0.25": {str(v): round(frc_profile(o, x)["bands"][4], 4)
                                        for v, o in out.items()}})
        print(json.dumps(rows[-1]), flush=True)
    summary = calibration_summary(rows)
    print(json.dumps(summary, indent=1))
    return {"summary": summary, "micrographs": rows}


def calibration_summary(rows: list) -> dict:
    """Per scale: the mean and the worst change of the linear part's PSNR (dB) and FRC at
    0.125–0.25 cycles/px against sharp rings, over every micrograph and over those whose
    rings are found (``denoise`` uses the fit only there: z ≥ ``THON_RING_Z``)."""
    from cryostream.ctf import THON_RING_Z

    out = {}
    for which, mine in (("all", rows), ("rings_found", [r for r in rows
                                                        if r["rings_z"] >= THON_RING_Z])):
        out[which] = {"micrographs": len(mine)}
        for v in SCALES[1:]:
            db = [r["psnr"][str(v)] - r["psnr"]["0.0"] for r in mine]
            frc = [r["frc_0.125_0.25"][str(v)] - r["frc_0.125_0.25"]["0.0"] for r in mine]
            out[which][str(v)] = {"mean_db": round(float(np.mean(db)), 4),
                                  "worst_db": round(float(np.min(db)), 4),
                                  "mean_frc": round(float(np.mean(frc)), 4),
                                  "worst_frc": round(float(np.min(frc)), 4)}
    return out


def denoise_fit(config: dict, index: int) -> tuple:
    """Micrograph ``index`` of ``config`` normalised as in training (its 95th percentile as 1)
    and its CTF fitted and judged as ``denoise`` does (:meth:`WienerGain.fitted
    <cryostream.denoise.steps.WienerGain.fitted>`, the default optics): ``(pixel size, the
    fit's state (fit, rings_z, check, used), the simulation)``."""
    import scipy.fft

    from cryostream import DenoiseConfig, SimulateConfig
    from cryostream.denoise.steps import Micrograph, WienerGain
    from cryostream.simulate import simulate_micrograph

    cfg = SimulateConfig(**config)
    sim = simulate_micrograph(cfg, index)
    y = (sim.noisy / np.float32(np.percentile(sim.noisy, 95))).astype(np.float32)
    pixel = cfg.pixel_size_angstrom
    gain = WienerGain(ctf=True, optics=tuple(DenoiseConfig().optics.items()))
    state = gain.fitted(Micrograph(y, pixel, None, f"simulated {index}"),
                        scipy.fft.rfft2(y - y.mean(), workers=-1), quiet=True)
    return pixel, state, sim


def fit_errors(count: int, shape=(2048, 2048), dose=None, first: int = 0) -> dict:
    from cryostream.spectral import astigmatic_defocus

    theta = np.linspace(0, np.pi, 180, endpoint=False)
    rows = []
    for i in range(first, first + count):
        config = training_condition(3, i, tuple(shape), dose=dose)
        pixel, state, sim = denoise_fit(config, i)
        fit = state["fit"]
        if fit is None:  # too small, or pixels too coarse: no fit
            continue
        true, fitted = (astigmatic_defocus(theta, (u + v) / 2, u - v, a) for u, v, a in (
            (sim.defocus_u_angstrom, sim.defocus_v_angstrom, sim.astigmatism_angle_deg),
            (fit.defocus_u_angstrom, fit.defocus_v_angstrom, fit.astigmatism_angle_deg)))
        check = state["check"]
        rows.append({"index": i, "particle": config["particle"],
                     "dose": round(config["dose_e_per_angstrom2"], 1), "pixel": round(pixel, 3),
                     "rings_z": round(state["rings_z"], 2),
                     "error_angstrom": round(float(np.sqrt(np.mean((fitted - true) ** 2))), 1),
                     "defocus_true": [round(sim.defocus_u_angstrom), round(sim.defocus_v_angstrom)],
                     "defocus_fit": [round(fit.defocus_u_angstrom), round(fit.defocus_v_angstrom)],
                     "stated_error_angstrom": round(fit.defocus_error_angstrom, 1),
                     "check": float(check) if np.isfinite(check) else None,
                     "used": bool(state["used"])})
        print(json.dumps(rows[-1]), flush=True)
    summary = fit_summary(rows)
    print(json.dumps(summary, indent=1))
    return {"summary": summary, "micrographs": rows}


def fit_summary(rows: list) -> dict:
    """The spread of error · z^1.5 over the fits within 1500 Å, the scores of those further
    off, and which fits ``denoise`` would use (:func:`used_summary`)."""
    near = [r for r in rows if r["error_angstrom"] < 1500]
    scaled = np.array([r["error_angstrom"] * r["rings_z"] ** 1.5 for r in near])
    return {"fits": len(rows), "within_1500": len(near),
            "off_z": [min((r["rings_z"] for r in rows if r not in near), default=None),
                      max((r["rings_z"] for r in rows if r not in near), default=None)],
            "error_z1.5_median": round(float(np.median(scaled)), 1),
            "error_z1.5_rms": round(float(np.sqrt(np.mean(scaled**2))), 1),
            "log_spread": round(float(np.std(np.log(scaled))), 3),
            **used_summary(rows)}


def used_summary(rows: list) -> dict:
    """Of the fits ``denoise`` would use: how many, how many over 500 and 1000 Å off, the
    largest error with its score and stated error; and the highest score of a fit over
    1000 Å off (used or not)."""
    used = [r for r in rows if r["used"]]
    worst = max(used, key=lambda r: r["error_angstrom"], default=None)
    wrong = [r for r in rows if r["error_angstrom"] > 1000]
    return {"used": len(used), "used_over_500": sum(r["error_angstrom"] > 500 for r in used),
            "used_over_1000": sum(r["error_angstrom"] > 1000 for r in used),
            "worst_used": None if worst is None else {
                k: worst[k] for k in ("index", "dose", "pixel", "error_angstrom", "rings_z",
                                      "stated_error_angstrom")},
            "over_1000": len(wrong),
            "over_1000_max_z": max((r["rings_z"] for r in wrong), default=None)}


def one(name: str, index: int, network: bool, ensemble: bool = False) -> dict:
    from cryostream.denoise.fallback import DEFOCUS_ERROR_SCALE, fit_with_error
    from cryostream.metrics import psnr, wiener_oracle

    config = held_out_condition(name, 0, (2048, 2048))
    y, x, pixel, noise, fit, z, _ = micrograph(config, 1000 * list(CONDITIONS).index(name) + index)
    images = {"noisy": y, "oracle Wiener": wiener_oracle(y, x),
              "linear part, before": linear(y, noise, fit, z, 0.0),
              "linear part, now": linear(y, noise, fit, z, DEFOCUS_ERROR_SCALE)}
    seconds = {}
    if network:
        defaults, seconds["network"] = default_one_pass(
            y, pixel, f"{name}_{index}", {"before": functools.partial(scale, 0.0),
                                          "now": functools.partial(scale, DEFOCUS_ERROR_SCALE)},
            ensemble)
        images.update(defaults)
    return {"condition": name, "index": index, "rings_z": round(z, 2),
            "defocus_error_angstrom": round(fit_with_error(fit, z).defocus_error_angstrom, 1),
            "seconds": seconds,
            "psnr": {k: round(float(psnr(v, x)), 4) for k, v in images.items()},
            "frc_bands": {k: frc_profile(v, x)["bands"] for k, v in images.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calibrate", type=int, default=0, metavar="N",
                    help="choose the scale on N calibration micrographs instead")
    ap.add_argument("--fit-error", type=int, default=0, metavar="N",
                    help="the fits' defocus error against their ring score on N calibration "
                    "micrographs instead")
    ap.add_argument("--shape", type=int, nargs=2, default=[2048, 2048], metavar=("H", "W"),
                    help="with --fit-error: the micrographs' size (2048 2048)")
    ap.add_argument("--dose", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                    help="with --fit-error: the dose drawn log-uniform from this range (e/Å²) "
                    "instead of the spread's")
    ap.add_argument("--first", type=int, default=0, metavar="K",
                    help="with --fit-error: start at micrograph K of the spread (0)")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="instead: one --fit-error result of the micrographs of these (runs "
                    "of other doses or micrographs), with their summary and arguments")
    ap.add_argument("--conditions", nargs="+", default=LINEAR_CONDITIONS, choices=list(CONDITIONS))
    ap.add_argument("--count", type=int, default=2, help="micrographs per condition (2)")
    ap.add_argument("--network", action="store_true", help="the default with one network "
                    "pass as well, before and now (the shipped model, on this machine's device)")
    ap.add_argument("--ensemble", action="store_true", help="with --network: the default "
                    "itself (the 8-fold ensemble and its table) instead of one pass")
    args = ap.parse_args(argv)
    if args.merge:
        runs = [json.loads(f.read_text()) for f in args.merge]
        rows = [r for run in runs for r in run["micrographs"]]
        args.out.write_text(json.dumps({"machine": runs[0]["machine"],
                                        "runs": [run["arguments"] for run in runs],
                                        "summary": fit_summary(rows), "micrographs": rows},
                                       indent=1))
        return 0
    if args.calibrate or args.fit_error:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(
            {"machine": {"processor": platform.processor() or platform.machine(),
                         "python": platform.python_version()},
             "arguments": {k: str(v) for k, v in vars(args).items()},
             **(calibrate(args.calibrate) if args.calibrate else
                fit_errors(args.fit_error, args.shape, args.dose and tuple(args.dose),
                           args.first))},
            indent=1))
        return 0
    rows = []
    for name in args.conditions:
        for index in range(args.count):
            rows.append(one(name, index, args.network, args.ensemble))
            print(json.dumps({k: rows[-1][k] for k in ("condition", "index", "rings_z", "psnr")}),
                  flush=True)
    write_summary(args, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
