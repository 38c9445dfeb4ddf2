"""The radial Wiener gain below 20 Å, beside the CTF-shaped gain above: each ring's power alone
and the measured noise (before 2026-12-05), against each ring's power and noise summed over its
neighbours (:func:`cryostream.denoise.corrections.ring_sums`) and the noise as the CTF's zeros
show it just above 20 Å (:func:`cryostream.denoise.fallback.noise_below`), as ``denoise`` has
them now. On held-out micrographs of the general model (``train_general_model.py``'s
conditions, seed 0, the first ``--count`` of each), PSNR and FRC by band against the truth
(peak: the micrograph's 95th percentile), of:

- the default's linear part alone (the gain applied to the micrograph; no network), beside the
  micrograph, the oracle Wiener filter and the same gain with the simulator's own defocus (how
  much the CTF fit's error costs above 20 Å, which this change does not touch);
- with ``--network``, the default with one network pass (``DenoiseConfig(ensemble=False)``: the
  shipped model's single-pass table of learned weights and its binned pass), before and now,
  from one network output each.

Usage (2-core machine: about 12 s a micrograph for the linear parts, a minute with
``--network``)::

    python benchmarks/gain_below_20a.py --count 2 --out docs/results/general_model/gain_below_20a_2core.json
    python benchmarks/gain_below_20a.py --count 2 --network --conditions \\
        filament-40e-1.0A-far-focus t20s-10e-white t20s-20e-white --out OUT.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import platform
import time
from pathlib import Path

import numpy as np
from general_model_spread import CONDITIONS, held_out_condition
from quality_common import FRC_BANDS, frc_profile, known_output

LINEAR_CONDITIONS = ["filament-40e-1.0A-far-focus", "t20s-10e-white", "t20s-20e-white",
                     "t20s-50e-white", "t20s-10e-nps0.1", "shell-80e-1.5A-nps0.1",
                     "globular-30e-0.5A-thick-ice", "mixed-25e-1.2A-thin-ice"]


@contextlib.contextmanager
def before():
    """The gain below 20 Å as it was: each ring's power alone, the measured noise."""
    corrections = importlib.import_module("cryostream.denoise.corrections")
    steps = importlib.import_module("cryostream.denoise.steps")
    kept = corrections.SMOOTH_RINGS, steps.noise_below
    corrections.SMOOTH_RINGS = 0
    steps.noise_below = lambda noise, factor: noise
    try:
        yield
    finally:
        corrections.SMOOTH_RINGS, steps.noise_below = kept


def one(name: str, index: int, network: bool) -> dict:
    from cryostream import SimulateConfig
    from cryostream.denoise import match_wiener_gain
    from cryostream.denoise.fallback import fit_for_gain, noise_below, zeros_noise
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.metrics import psnr, wiener_oracle
    from cryostream.simulate import simulate_micrograph

    config = SimulateConfig(**held_out_condition(name, 0, (2048, 2048)))
    sim = simulate_micrograph(config, 1000 * list(CONDITIONS).index(name) + index)
    p = np.float32(np.percentile(sim.noisy, 95))
    y, x = (sim.noisy / p).astype(np.float32), (sim.truth / p).astype(np.float32)
    pixel = config.pixel_size_angstrom
    noise = estimate_noise(y, pixel, tile=tile_for(y.shape))
    fit = fit_for_gain(y, pixel, {})
    factor = zeros_noise(y, noise, fit)[2]
    true = dataclasses.replace(fit, defocus_u_angstrom=sim.defocus_u_angstrom,
                               defocus_v_angstrom=sim.defocus_v_angstrom,
                               astigmatism_angle_deg=sim.astigmatism_angle_deg)
    with before():
        linear_before = match_wiener_gain(y, y, noise, ctf=fit)
    now = noise_below(noise, factor)
    images = {"noisy": y, "oracle Wiener": wiener_oracle(y, x),
              "linear part, before": linear_before,
              "linear part, now": match_wiener_gain(y, y, now, ctf=fit),
              "linear part, now, true defocus": match_wiener_gain(y, y, now, ctf=true)}
    seconds = {}
    if network:
        defaults, seconds["network"] = default_one_pass(
            y, pixel, f"{name}_{index}", {"before": before, "now": contextlib.nullcontext})
        images.update(defaults)
    return {"condition": name, "index": index, "noise_below_20A_factor": round(factor, 3),
            "defocus_fit_error_angstrom": round(abs(
                (fit.defocus_u_angstrom + fit.defocus_v_angstrom)
                - (sim.defocus_u_angstrom + sim.defocus_v_angstrom)) / 2, 1),
            "seconds": seconds,
            "psnr": {k: round(float(psnr(v, x)), 4) for k, v in images.items()},
            "frc_bands": {k: frc_profile(v, x)["bands"] for k, v in images.items()}}


def default_one_pass(y: np.ndarray, pixel: float, source: str, contexts: dict,
                     ensemble: bool = False) -> tuple:
    """The default with one pass of the shipped model (``DenoiseConfig(ensemble=False)``: its
    single-pass table and binned pass; with ``ensemble``, the default itself: the 8-fold
    ensemble, its table and binned pass) on ``y``, once in each of ``contexts`` (label: a
    context manager to enter), from one network output: ``({"default, one pass, LABEL"
    (or "default, ensemble, LABEL"): output}, the network's seconds)``."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise import Micrograph
    from cryostream.denoise.binned import binned_estimate
    from cryostream.denoise.corrections import dihedral_mean
    from cryostream.denoise.network import model_path, model_record
    from cryostream.denoise.tiling import network_pass
    from cryostream.denoise.weights import binned_offsets

    run = str(model_path("general"))
    record = model_record(run)
    # the network's output made once here, for every context (the ensemble's mean included)
    pipeline = dataclasses.replace(DenoiseConfig(ensemble=ensemble).for_run(record).pipeline(),
                                   ensemble=False)
    t = time.perf_counter()
    if ensemble:
        raw = dihedral_mean(lambda im: network_pass(run, im), y)
        binned = binned_estimate(lambda im: network_pass(run, im), y, True, record.percentile,
                                 binned_offsets(record, True))
    else:
        raw = network_pass(run, y)
        binned = binned_estimate(lambda im: network_pass(run, im), y)
    seconds = round(time.perf_counter() - t, 1)
    images = {}
    for label, context in contexts.items():
        with context():
            images[f"default, {'ensemble' if ensemble else 'one pass'}, {label}"] = pipeline.run(
                Micrograph(y, pixel, record, source=source), known_output(y, raw), binned)[0]
    return images, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--conditions", nargs="+", default=LINEAR_CONDITIONS, choices=list(CONDITIONS))
    ap.add_argument("--count", type=int, default=2, help="micrographs per condition (2)")
    ap.add_argument("--network", action="store_true", help="the default with one network "
                    "pass as well, before and now (the shipped model, on this machine's device)")
    args = ap.parse_args(argv)
    rows = []
    for name in args.conditions:
        for index in range(args.count):
            rows.append(one(name, index, args.network))
            print(json.dumps({k: rows[-1][k] for k in ("condition", "index", "psnr")}), flush=True)
    write_summary(args, rows)
    return 0


def write_summary(args, rows: list) -> None:
    """Per condition of ``args.conditions``: the mean PSNR and FRC by band of each image of
    ``rows`` (one dict a micrograph), printed, and written to ``args.out`` with the rows."""
    summary = {}
    for name in args.conditions:
        mine = [r for r in rows if r["condition"] == name]
        summary[name] = {
            "psnr": {k: round(float(np.mean([r["psnr"][k] for r in mine])), 3) for k in mine[0]["psnr"]},
            "frc_bands": {k: np.round(np.mean([r["frc_bands"][k] for r in mine], 0), 4).tolist()
                          for k in mine[0]["frc_bands"]}}
        bands = ", ".join(f"{a:g}–{b:g}" for a, b in FRC_BANDS)
        print(f"\n{name} (mean of {len(mine)}; FRC {bands} cycles/px)")
        for k, values in summary[name]["frc_bands"].items():
            print(f"  {k:34s} {summary[name]['psnr'][k]:7.3f} dB  "
                  + " ".join(f"{v:.4f}" for v in values))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"processor": platform.processor() or platform.machine(),
                                                "python": platform.python_version()},
                                    "arguments": {k: str(v) for k, v in vars(args).items()},
                                    "summary": summary, "micrographs": rows}, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
