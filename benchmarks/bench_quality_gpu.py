"""Denoising quality against the peers and the best linear filter (device runs on one H100).

Two parts, each one process (one compilation of the training step serves its trainings):

``real``  The real micrograph (4096², 0.667 Å/px). Its top-left 2048² crop is scored exactly as
          ``anchor_quality.py`` does: divided by its 95th percentile, plus N(0, 0.1²) from
          ``default_rng(0)``. Models never see that crop: they train on the three other
          quadrants (three 2048² MRC files), noise synthesised on the device every step.
          * the reference plan's protocol (JSON key ``seed_gaussian0.1``): trained with
            Gaussian σ 0.1, scored with and without the 8-fold dihedral ensemble;
          * matched noise (α 1): the crop scored under matched noise (its own measured
            spectrum); then the micrograph crop itself is denoised with the Noisier2Noise
            correction and its residual (input − output) is compared with the measured noise
            spectrum and correlated with the low-pass image.
``sim``   Simulated micrographs whose shot noise is coloured like a real detector's
          (``detector_nps_nyquist`` 0.1); eight train, two are scored against their ground
          truth (PSNR with the noisy micrograph's 95th percentile as 1.0, and FRC). Models
          trained the reference plan's way with white noise of the micrograph's own variance and with
          matched noise (α 1 and 0.5), each with and without the correction (and with the
          ring clamp, the Wiener gain and the recorruption calibration), trained on
          recorrupted targets (``--recorrupt``, α 1 and 0.5: raw, with the Wiener gain and
          calibrated), and one trained on the simulation's (micrograph, ground truth) pairs
          (``prepare --targets``).
          Each model also gets its oracle blend (``cryostream.metrics.blend_oracle``): the
          best per-ring mix of input and output, which bounds what re-weighting the output
          by frequency can give.

Baselines in the same process: the noisy input, the best Gaussian low-pass, the oracle Wiener
filter (radial spectra of the truth and of the noise, as ``anchor_quality.py``), the sim part's
Wiener filter from the *measured* noise (``wiener_measured``, no truth) and Topaz's
pretrained U-Net (affine-fitted to the reference, its best case) when importable.

Post-processing is :class:`~cryostream.config.DenoiseConfig`'s pipeline, applied to each
network output computed once (``quality_common.assemble``: the benchmark's α² for white noise,
and the CTF-shaped gain scored with its fit whatever the fit's check says, the check recorded
beside it). Shared helpers are in ``quality_common.py``.

Usage: python benchmarks/bench_quality_gpu.py {real,sim} OUTDIR [--steps N] [--topaz DIR] ...
Writes OUTDIR/quality_{part}.json and figures. A CPU smoke run (a minute or two per part):
``sim OUT --size 512 --train-micrographs 2 --test-micrographs 1 --model unet-small --patch 64
--batch 4 --steps 4 --tile 256 --precision fp32 --calibrate 1``; ``real`` likewise with
``--mrc`` a micrograph of 1024² or more and ``--crop 512``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import numpy as np
from quality_common import (
    SIGMAS,
    MeasuredMicrograph,
    affine_fit,
    assemble,
    device,
    figure_frc,
    fit_scored,
    known_output,
    network_fn,
    plain,
    prep,
    save,
    score,
    topaz_fn,
    train_run,
)
from scipy.ndimage import gaussian_filter

from cryostream.baselines import wiener_measured
from cryostream.config import DenoiseConfig
from cryostream.evaluate import method_noise, plot_method_noise
from cryostream.metrics import best_gaussian, psnr, wiener_oracle

#: The post-processing scored on each model output, by the model's kind and the score's suffix
#: (``DenoiseConfig.raw``: every step named, none left to the run; the 8-fold ensemble is in the
#: network function, ``network_fn``).
SCORED = {
    "recorrupted": {  # estimates the truth: no correction
        "gain": DenoiseConfig.raw(wiener_gain=True),
        "ctf_gain": DenoiseConfig.raw(ctf_gain=True),
    },
    "n2n": {
        "n2n": DenoiseConfig.raw(n2n_correction=True),
        "n2n_clamp": DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True),
        "n2n_clamp_gain": DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True,
                                            wiener_gain=True),
        # the Wiener gain shaped by the fitted CTF (the CTF fitted once per micrograph)
        "n2n_ctf_gain": DenoiseConfig.raw(n2n_correction=True, ctf_gain=True),
    },
}
#: The pipelines scored without truth (recorruption score, calibration), by the kind: the
#: prefix of their scores' names and the :data:`SCORED` entry they run.
TRUTH_FREE = {"recorrupted": {"": "gain"}, "n2n": {"ctf_": "n2n_ctf_gain", "": "n2n_clamp_gain"}}


def part_real(args, out):
    import mrcfile

    from cryostream.config import NoiseConfig
    from cryostream.ctf import fit_ctf
    from cryostream.denoise import ctf_gain_check
    from cryostream.io.mrc import write_micrograph
    from cryostream.matched import estimate_noise, matched_noise_image
    from cryostream.runs import load_record

    with mrcfile.open(args.mrc, permissive=True) as m:
        full = np.asarray(m.data, dtype=np.float32).squeeze()
        pixel = float(m.voxel_size.x)
    c = args.crop
    raw_crop = full[:c, :c]
    p95 = np.percentile(raw_crop, 95)
    clean = raw_crop / p95
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 0.1, clean.shape).astype(np.float32)
    work = out / "real_work"
    work.mkdir(parents=True, exist_ok=True)
    quads = []
    for name, (y, x) in {"q01": (0, c), "q10": (c, 0), "q11": (c, c)}.items():
        path = work / f"{name}.mrc"
        write_micrograph(path, full[y : y + c, x : x + c], pixel, history="quadrant", overwrite=True)
        quads.append(path)
    res = {"crop": c, "pixel_size": pixel, "device": device()}
    topaz = topaz_fn(args.topaz)

    def baselines(noisy_img, ref, tag):
        g = best_gaussian(noisy_img, ref, SIGMAS)
        row = {"noisy": psnr(noisy_img, ref), "gaussian": g[0], "gaussian_sigma": g[1],
               "wiener_oracle": psnr(wiener_oracle(noisy_img, ref), ref)}
        if topaz:
            t = time.perf_counter()
            row["topaz"] = psnr(affine_fit(topaz(noisy_img), ref), ref)
            row["topaz_seconds"] = time.perf_counter() - t
        res[tag] = row
        print(tag, json.dumps(row), flush=True)
        save(res, out, "real")

    baselines(noisy, clean, "seed_gaussian0.1")
    prep(quads, work / "g.h5", NoiseConfig(model="gaussian", sigma=0.1, mode="on-device"), args)
    res["train_gaussian"] = train_run(work / "g.h5", work / "run_g", args)
    print("trained gaussian", res["train_gaussian"], flush=True)
    for ens in (False, True):
        den = network_fn(work / "run_g", args.tile, ens)(noisy)
        res["seed_gaussian0.1"]["model" + ("_x8" if ens else "")] = psnr(den, clean)
    print("reference plan", json.dumps(res["seed_gaussian0.1"]), flush=True)
    save(res, out, "real")

    # matched noise: the crop's own estimate, α = 1
    est = estimate_noise(raw_crop, pixel).scaled(1 / p95)
    noisy_m = clean + matched_noise_image(clean, est, alpha=1.0, seed=0)
    baselines(noisy_m, clean, "seed_matched")
    prep(quads, work / "m.h5", NoiseConfig(model="matched", alpha=1.0, mode="on-device"), args)
    res["train_matched"] = train_run(work / "m.h5", work / "run_m", args)
    print("trained matched", res["train_matched"], flush=True)
    fm = network_fn(work / "run_m", args.tile, True)
    fg = network_fn(work / "run_g", args.tile, True)
    res["seed_matched"]["model_matched_x8"] = psnr(fm(noisy_m), clean)
    res["seed_matched"]["model_white0.1_x8"] = psnr(fg(noisy_m), clean)
    print("matched noise", json.dumps(res["seed_matched"]), flush=True)
    save(res, out, "real")

    # the micrograph itself, N2N-corrected: the residual must be the measured noise (the
    # crop's, measured before normalising); α² from the run's record (matched, α 1)
    micrograph = MeasuredMicrograph(clean, pixel, load_record(work / "run_m"), source=args.mrc,
                                    measured=est)
    network = known_output(clean, fm(clean))

    def post(config, **kwargs):
        return assemble(config, **kwargs).run(micrograph, network)[0]

    corrected = post(SCORED["n2n"]["n2n"])
    check = method_noise(clean, corrected, pixel, noise=est)
    g_out = gaussian_filter(clean, res["seed_gaussian0.1"]["gaussian_sigma"])
    plot_method_noise(out / "real_residual.png", check, clean, corrected)
    res["n2n_on_micrograph"] = plain(check)
    res["n2n_on_micrograph"]["gaussian_for_comparison"] = plain(
        method_noise(clean, g_out, pixel, noise=est))
    print("n2n residual", json.dumps({k: v for k, v in res["n2n_on_micrograph"].items()
                                      if not isinstance(v, list | dict)}), flush=True)
    np.save(out / "real_crop_corrected_512.npy", corrected[:512, :512])

    def residual(tag, output, figure):
        """The micrograph's residual ``clean − output`` against the measured noise."""
        check = method_noise(clean, output, pixel, noise=est)
        plot_method_noise(out / figure, check, clean, output)
        res[tag] = plain(check)
        print(tag, json.dumps({k: v for k, v in res[tag].items()
                               if not isinstance(v, list | dict)}), flush=True)

    # the clamp, and the linear response from the measured noise
    residual("n2n_clamp_gain_on_micrograph", post(SCORED["n2n"]["n2n_clamp_gain"]),
             "real_residual_clamp_gain.png")
    # the correction and the CTF-shaped Wiener gain (no clamp), and the fit's own check
    t = time.perf_counter()
    fit = fit_ctf(clean, pixel)
    res["ctf_fit"] = {**dataclasses.asdict(fit), "seconds": time.perf_counter() - t,
                      "gain_check": ctf_gain_check(clean, est, fit)}
    residual("n2n_ctf_gain_on_micrograph", post(SCORED["n2n"]["n2n_ctf_gain"], ctf_fit=fit),
             "real_residual_ctf_gain.png")
    return res


def part_sim(args, out):
    import h5py
    import mrcfile

    import cryostream
    from cryostream.config import NoiseConfig, SimulateConfig
    from cryostream.ctf import fit_ctf
    from cryostream.denoise import (
        Micrograph,
        ctf_gain_check,
        match_wiener_gain,
        n2n_alpha2,
        recorruption_score,
    )
    from cryostream.matched import estimate_noise
    from cryostream.metrics import blend_oracle, frc
    from cryostream.runs import load_record
    from cryostream.simulate.micrograph import simulate_micrograph

    work = out / "sim_work"
    n = args.train_micrographs + args.test_micrographs
    cfg = SimulateConfig(shape=(args.size, args.size), seed=7, detector_nps_nyquist=0.1)
    t = time.perf_counter()
    sim = cryostream.simulate(work / "sim", n, config=cfg, overwrite=True)
    res = {"device": device(), "simulate_seconds": time.perf_counter() - t, "size": args.size,
           "train_micrographs": args.train_micrographs, "test_micrographs": args.test_micrographs,
           "detector_nps_nyquist": 0.1}
    train_mics = list(sim.micrographs[: args.train_micrographs])
    prep(train_mics, work / "m1.h5", NoiseConfig(model="matched", alpha=1.0, mode="on-device"), args)
    with h5py.File(work / "m1.h5") as f:
        own_var = float(f["micrographs/noise_variance"][:].mean())
    sigma_w = float(np.sqrt(own_var))
    res["white_sigma"] = sigma_w
    stores = {
        "supervised": ("s.h5", NoiseConfig(model="none"), list(sim.truths[: args.train_micrographs])),
        "white": ("w.h5", NoiseConfig(model="gaussian", sigma=sigma_w, mode="on-device"), None),
        "matched1": ("m1.h5", None, None),
        "matched0.5": ("m05.h5", NoiseConfig(model="matched", alpha=0.5, mode="on-device"), None),
    }
    # recorrupted targets (TrainConfig.recorrupt) on the matched stores: no correction
    stores["recorrupted1"] = stores["matched1"]
    stores["recorrupted0.5"] = stores["matched0.5"]
    runs = {}
    prepared = set()
    for item in filter(None, args.sim_runs.split(",")):  # "" trains nothing: baselines only
        tag, steps, seed = (item.split(":") + ["", ""])[:3]
        name = f"{tag}_seed{seed}" if seed else tag  # several seeds of one model stay apart
        store, noise, targets = stores[tag]
        if noise is not None and store not in prepared:
            prep(train_mics, work / store, noise, args, targets)
            prepared.add(store)
        res[f"train_{name}"] = train_run(work / store, work / f"run_{name}", args,
                                         seed=int(seed or 0), steps=int(steps) if steps else None,
                                         recorrupt=tag.startswith("recorrupted"))
        runs[name] = (tag, work / f"run_{name}")
        print("trained", name, res[f"train_{name}"], flush=True)
        save(res, out, "sim")
    topaz = topaz_fn(args.topaz)
    rows, curves = [], {}
    for i in range(args.train_micrographs, n):
        y = mrcfile.read(sim.micrographs[i]).astype(np.float32)
        x = mrcfile.read(sim.truths[i]).astype(np.float32)
        p = np.percentile(y, 95)
        y, x = y / p, x / p
        est = estimate_noise(y, cfg.pixel_size_angstrom)
        t_fit = time.perf_counter()
        fit = fit_ctf(y, cfg.pixel_size_angstrom)
        truth_ctf = simulate_micrograph(dataclasses.replace(cfg, shape=(64, 64)), i)
        g = best_gaussian(y, x, SIGMAS)
        wien = wiener_oracle(y, x)
        row = {"micrograph": i, "gaussian": g[0], "gaussian_sigma": g[1],
               "wiener_measured": psnr(wiener_measured(y, est), x),
               "noise_variance_estimated": est.variance,
               "noise_variance_true": float(np.var(y - x)),
               "ctf_fit": dataclasses.asdict(fit),
               "ctf_gain_check": ctf_gain_check(y, est, fit),
               "ctf_fit_seconds": time.perf_counter() - t_fit,
               "ctf_true": [truth_ctf.defocus_u_angstrom, truth_ctf.defocus_v_angstrom,
                            truth_ctf.astigmatism_angle_deg]}
        scored = functools.partial(score, row, curves, x)
        scored("wiener_measured_ctf", match_wiener_gain(y, y, est, ctf=fit_scored(y, fit)))
        scored("noisy", y)
        scored("wiener_oracle", wien)  # a radial filter: nearly the noisy input's FRC
        if topaz:
            tz = affine_fit(topaz(y), x)
            scored("topaz", tz)
            if args.save_outputs:
                np.save(out / f"output_topaz_{i}.npy", (tz - y).astype(np.float16))
        crop = slice(0, args.save_crop)
        first = args.save_crop and i == args.train_micrographs
        if first:
            np.savez(out / "arrays_input.npz", noisy=y[crop, crop], truth=x[crop, crop])
        for name, (kind, run) in runs.items():
            f_ens = network_fn(run, args.tile, True)
            out_f = f_ens(y)
            scored(f"{name}_raw", out_f)
            if kind != "supervised":  # the supervised model estimates the truth directly
                # the network's output on y, computed once; on recorrupted copies, run again
                network = known_output(y, out_f, f_ens)
                micrograph = Micrograph(y, cfg.pixel_size_angstrom, load_record(run),
                                        source=str(sim.micrographs[i]))
                family = "recorrupted" if kind.startswith("recorrupted") else "n2n"
                alpha2 = None
                if kind == "white":  # α² from the measured noise variance
                    alpha2 = sigma_w**2 / est.variance
                if family == "n2n":
                    row[f"{name}_alpha2"] = (alpha2 if alpha2 is not None
                                             else n2n_alpha2(micrograph.record, y))
                pipeline = functools.partial(assemble, alpha2=alpha2, ctf_fit=fit)
                for suffix, config in SCORED[family].items():
                    scored(f"{name}_{suffix}", pipeline(config).run(micrograph, network)[0])
                # truth-free: differences between models estimate differences of their error
                for prefix, suffix in TRUTH_FREE[family].items():
                    config = SCORED[family][suffix]
                    bound = pipeline(config).bind(micrograph, network)
                    row[f"{name}_{prefix}recorruption_score"] = recorruption_score(
                        bound, y, micrograph.noise())
                    if args.calibrate:
                        calibrated = dataclasses.replace(config, calibrate=args.calibrate)
                        scored(f"{name}_{prefix}calibrated",
                               pipeline(calibrated).run(micrograph, network)[0])
            if first:
                np.savez(out / f"arrays_{name}.npz", output=out_f[crop, crop])
            if args.save_outputs:  # float16 output − input: 8 MiB, enough for offline checks
                np.save(out / f"output_{name}_{i}.npy", (out_f - y).astype(np.float16))
            scored(f"{name}_blend_oracle", blend_oracle(y, out_f, x))
        rows.append(row)
        print("sim", json.dumps(row), flush=True)
        res["rows"] = rows
        save(res, out, "sim")
    res["rows"] = rows
    keys = [k for k in rows[0] if isinstance(rows[0][k], float | int)]
    res["mean"] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    freq = frc(y, x)[0]
    res["frc_curves"] = {k: np.mean(v, axis=0)[::4].round(4).tolist() for k, v in curves.items()}
    res["frc_freq_per_angstrom"] = (freq[::4] / cfg.pixel_size_angstrom).round(4).tolist()
    figure_frc(out / "sim_frc.png", freq / cfg.pixel_size_angstrom,
               {k: np.mean(v, axis=0) for k, v in curves.items()})
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=("real", "sim"))
    ap.add_argument("out")
    ap.add_argument("--mrc", default=".dev/epu2.9_example.mrc")
    ap.add_argument("--crop", type=int, default=2048)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--train-micrographs", type=int, default=8)
    ap.add_argument("--test-micrographs", type=int, default=2)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--patch", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--topaz", default="")
    ap.add_argument("--sim-runs", default="supervised,white,matched1,matched0.5",
                    help="which models the sim part trains, in order (TAG, TAG:STEPS or TAG:STEPS:SEED; "
                         "a seed names the model TAG_seedSEED); tags: supervised, white, matched1, "
                         "matched0.5, recorrupted1, recorrupted0.5")
    ap.add_argument("--save-crop", type=int, default=0,
                    help="save this top-left crop of the first scored micrograph's input, "
                         "truth and each model's output (arrays_*.npz)")
    ap.add_argument("--residual", action="store_true",
                    help="train residual models (input + correction: the output is not rounded "
                         "to bfloat16 as a whole)")
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--calibrate", type=int, default=4,
                    help="recorrupted passes of the ring calibration (DenoiseConfig.calibrate) per "
                         "scored model (0: none)")
    ap.add_argument("--save-outputs", action="store_true",
                    help="save each scored model output − input as float16 (output_TAG_I.npy; "
                         "Topaz's affine-fitted output too)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    res = part_real(args, out) if args.part == "real" else part_sim(args, out)
    res["args"] = vars(args)
    res["total_seconds"] = time.perf_counter() - t
    (out / f"quality_{args.part}.json").write_text(json.dumps(res, indent=1))
    print("done in", round(res["total_seconds"]), "s", flush=True)


if __name__ == "__main__":
    main()
