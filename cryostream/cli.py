"""The ``cryostream`` command: each subcommand is a thin wrapper over one library call.

User mistakes print one line (``cryostream: error: …``) and exit with status 2; they never
print a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from cryostream._version import __version__
from cryostream.config import (
    COMPRESSIONS,
    NOISE_MODELS,
    NOISE_MODES,
    STORE_DTYPES,
    NoiseConfig,
    PrepareConfig,
)
from cryostream.errors import CryostreamError
from cryostream.patches import EDGE_POLICIES

__all__ = ["main", "build_parser"]


def _peak_rss_mb() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def add_prepare_options(parser: argparse.ArgumentParser) -> None:
    """The preprocessing options shared by ``plan`` and ``prepare``."""
    d = PrepareConfig()
    g = parser.add_argument_group("preprocessing options")
    g.add_argument("--patch", type=int, default=d.patch_size, help="patch edge, px (%(default)s)")
    g.add_argument("--stride", type=int, default=d.stride, help="patch step, px (%(default)s)")
    g.add_argument("--edge", choices=EDGE_POLICIES, default=d.edge, help="edge policy (%(default)s)")
    g.add_argument("--percentile", type=float, default=d.percentile,
                   help="per-micrograph percentile mapped to 1.0 (%(default)s)")
    g.add_argument("--noise", choices=NOISE_MODELS, default=d.noise.model, help="(%(default)s)")
    g.add_argument("--sigma", type=float, default=d.noise.sigma, help="Gaussian σ (%(default)s)")
    g.add_argument("--dose", type=float, default=d.noise.dose,
                   help="Poisson counts per unit intensity (%(default)s)")
    g.add_argument("--noise-mode", choices=NOISE_MODES, default=d.noise.mode, help="(%(default)s)")
    g.add_argument("--alpha", type=float, default=d.noise.alpha,
                   help="matched: added noise σ over the micrograph's own (%(default)s)")
    g.add_argument("--shot", type=float, default=d.noise.shot,
                   help="matched: shot-noise share in [0, 1] (default: each micrograph's estimate)")
    g.add_argument("--noise-radius", type=int, default=d.noise.radius,
                   help="matched: radius of the spectrum-shaping kernel, px (%(default)s)")
    g.add_argument("--dtype", choices=STORE_DTYPES, default=d.dtype, help="(%(default)s)")
    g.add_argument("--compression", choices=COMPRESSIONS, default=d.compression,
                   help="(%(default)s)")
    g.add_argument("--test-fraction", type=float, default=d.test_fraction, help="(%(default)s)")
    g.add_argument("--seed", type=int, default=d.seed, help="(%(default)s)")
    g.add_argument("--permissive", action="store_true", help="skip bad micrographs with a warning")


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    """The denoising pipeline's options, shared by ``denoise`` and ``rank``."""
    parser.add_argument("--tile", type=int,
                        help="window core, px (default: the fewest pixels through the network; "
                        "3840 for full-size micrographs on a GPU)")
    parser.add_argument("--halo", type=int, help="context per side, px (default: receptive field)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per device call")
    parser.add_argument("--n2n-correction", action="store_true",
                        help="Noisier2Noise correction for models trained on noisy micrographs")
    parser.add_argument("--n2n-clamp", action="store_true",
                        help="with the correction, zero the spatial-frequency rings where it is "
                        "anti-correlated with the micrograph")
    parser.add_argument("--wiener-gain", action="store_true",
                        help="measure each micrograph's noise and give the output the Wiener "
                        "filter's linear response per frequency ring, keeping the rest")
    parser.add_argument("--ensemble", action="store_true",
                        help="average the network over the 8 rotations and flips (8 passes)")
    parser.add_argument("--ctf-gain", action="store_true",
                        help="the Wiener gain shaped by each micrograph's CTF above 20 Å, fitted "
                        "from its power spectrum; implies --wiener-gain")
    parser.add_argument("--voltage", type=float, default=300.0,
                        help="accelerating voltage, kV, for --ctf-gain (%(default)s)")
    parser.add_argument("--cs", type=float, default=2.7,
                        help="spherical aberration, mm, for --ctf-gain (%(default)s)")
    parser.add_argument("--amplitude-contrast", type=float, default=0.1,
                        help="amplitude contrast for --ctf-gain (%(default)s)")


def pipeline_options(args: argparse.Namespace) -> dict:
    """The keyword arguments :func:`cryostream.infer.denoise` takes from those options."""
    return {"tile": args.tile, "halo": args.halo, "batch_size": args.batch_size,
            "n2n_correction": args.n2n_correction, "n2n_clamp": args.n2n_clamp,
            "wiener_gain": args.wiener_gain, "ctf_gain": args.ctf_gain,
            "ensemble": args.ensemble,
            "ctf_optics": {"voltage_kv": args.voltage, "cs_mm": args.cs,
                           "amplitude_contrast": args.amplitude_contrast}}


def prepare_config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """Build the :class:`PrepareConfig` the options describe."""
    return PrepareConfig(
        patch_size=args.patch,
        stride=args.stride,
        edge=args.edge,
        percentile=args.percentile,
        noise=NoiseConfig(model=args.noise, sigma=args.sigma, dose=args.dose, mode=args.noise_mode,
                          alpha=args.alpha, shot=args.shot, radius=args.noise_radius),
        dtype=args.dtype,
        compression=args.compression,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from cryostream.config import SimulateConfig
    from cryostream.simulate import simulate

    result = simulate(
        args.out,
        args.count,
        config=SimulateConfig(shape=tuple(args.shape), seed=args.seed,
                              detector_nps_nyquist=args.detector_nps),
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    nbytes = sum(p.stat().st_size for p in result.micrographs + result.truths)
    print(
        f"simulated {len(result.micrographs)} micrographs of {args.shape[0]} × {args.shape[1]} px "
        f"into {result.root} ({nbytes / 1e6:,.0f} MB, {result.seconds:.1f} s, "
        f"peak memory {_peak_rss_mb():,.0f} MB)"
    )
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from cryostream.plan import plan

    config = prepare_config_from_args(args)
    if args.inputs and args.shape:
        raise CryostreamError("plan: give INPUTS or --shape H W --count N, not both")
    if args.inputs:
        p = plan(args.inputs, config=config, output=args.output, permissive=args.permissive)
    else:
        if args.shape is None or args.count is None:
            raise CryostreamError("plan: give INPUTS, or --shape H W and --count N")
        p = plan(shape=tuple(args.shape), count=args.count, config=config, output=args.output)
    print(p.table())
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from cryostream.prepare import prepare

    result = prepare(
        args.inputs,
        args.output,
        prepare_config_from_args(args),
        permissive=args.permissive,
        scheduler=args.scheduler,
        workers=args.workers,
        memory_limit=args.memory_limit,
        dashboard_address=args.dashboard,
        report=args.report,
        overwrite=args.overwrite,
        progress=not args.quiet,
        targets=args.targets,
    )
    print(result.summary())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from cryostream.inspect import show, show_noise

    if args.noise:
        print(f"wrote {show_noise(args.store, args.output)}")
        return 0
    print(f"wrote {show(args.store, args.output, count=args.count, split=args.split)}")
    return 0


def _cmd_export_bin(args: argparse.Namespace) -> int:
    from cryostream.inspect import export_bin

    paths = export_bin(args.store, args.outdir)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} .bin files and bin.json to {args.outdir} ({total / 1e9:.2f} GB)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from cryostream.training import TrainConfig, train

    config = TrainConfig(
        model=args.model, precision=args.precision, residual=args.residual,
        recorrupt=args.recorrupt, steps=args.steps,
        batch_size=args.batch_size, learning_rate=args.lr, loss=args.loss,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep, seed=args.seed,
    )
    r = train(args.store, args.output, config, resume=args.resume, progress=not args.quiet)
    ev = r.eval
    test = (f"test PSNR {ev['psnr']:.2f} dB (noisy input {ev['noisy_psnr']:.2f} dB)"
            if ev else "no test split")
    print(f"trained {args.model} for {r.steps} steps into {r.run}: loss {r.final_loss:.4g}, "
          f"{test}, {r.patches_per_second:.1f} patches/s, {r.seconds:.0f} s, "
          f"peak memory {_peak_rss_mb():,.0f} MB")
    return 0


def _cmd_denoise(args: argparse.Namespace) -> int:
    from cryostream.infer import denoise

    start = time.perf_counter()
    result = denoise(args.run, args.inputs, args.output, **pipeline_options(args),
                     calibrate=args.calibrate, overwrite=args.overwrite, workers=args.workers,
                     scheduler=args.scheduler, cluster_workers=args.cluster_workers)
    n = result.sizes["micrograph"]
    seconds = time.perf_counter() - start
    print(f"denoised {n} micrographs into {args.output} ({seconds:.1f} s, "
          f"{n / seconds:.2f} micrographs/s, peak memory {_peak_rss_mb():,.0f} MB)")
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:
    import json

    from cryostream.infer import rank_runs

    ranked = rank_runs(args.runs, args.inputs, draws=args.draws, beta=args.beta, seed=args.seed,
                       **pipeline_options(args))
    best = ranked[0]["score"]
    width = max(len(r["run"]) for r in ranked)
    print(f"{'run':<{width}}  score (lower is better)  above the best")
    for r in ranked:
        print(f"{r['run']:<{width}}  {r['score']:.6g}  {r['score'] - best:+.3g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ranked, f, indent=1)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cryostream.evaluate import evaluate

    report = evaluate(args.run, args.store, args.output, truth=args.truth, patches=args.patches,
                      micrographs=args.micrographs, tile=args.tile, residual=args.residual)
    a = report["test_split"]
    print(f"wrote {args.output}/report.md: test split PSNR noisy {a['noisy_psnr']:.2f}, "
          f"best Gaussian {a['gaussian_psnr']:.2f}, model {a['model_psnr']:.2f} dB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cryostream`` command."""
    parser = argparse.ArgumentParser(
        prog="cryostream",
        description="Out-of-core cryo-EM micrograph denoising.",
    )
    parser.add_argument("--version", action="version", version=f"cryostream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("simulate", help="write EMPIAR-10025-like micrographs with ground truth",
                       description="Simulate noisy micrographs of the T20S proteasome with their "
                       "noise-free ground truth (MRC) and particle coordinates (STAR).")
    p.add_argument("out", help="output folder")
    p.add_argument("--count", type=int, required=True, help="number of micrographs")
    p.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"), default=(7676, 7420),
                   help="rows and columns (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(%(default)s)")
    p.add_argument("--detector-nps", type=float, default=1.0, metavar="R",
                   help="detector noise power at Nyquist relative to zero frequency; 1 = white "
                   "shot noise, real micrographs ≈0.03–0.1 (%(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier simulation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("plan", help="sizes, counts and the RAM/disk/time estimate of a run",
                       description="Plan a preprocessing run: patch grid for both edge "
                       "policies, split, store size per dtype and noise mode, RAM, disk, time.")
    p.add_argument("inputs", nargs="*", help="MRC files, globs, folders or a RELION STAR file")
    p.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"),
                   help="plan for hypothetical micrographs of this size")
    p.add_argument("--count", type=int, help="number of hypothetical micrographs")
    p.add_argument("-o", "--output", help="where the store would go (checks free disk)")
    add_prepare_options(p)
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("prepare", help="normalise, patch and noise micrographs into HDF5",
                       description="Build an HDF5 training store from micrographs with Dask.")
    p.add_argument("inputs", nargs="+", help="MRC files, globs, folders or a RELION STAR file")
    p.add_argument("-o", "--output", required=True, help="the store (DATA.h5)")
    p.add_argument("--targets", nargs="+", metavar="TARGET",
                   help="one target per micrograph (e.g. a simulation's truth/ folder): pair "
                   "them as (input, target) with --noise none")
    add_prepare_options(p)
    g = p.add_argument_group("where it runs")
    g.add_argument("--scheduler", help="address of an existing Dask scheduler")
    g.add_argument("--workers", type=int, help="start a LocalCluster of N worker processes")
    g.add_argument("--memory-limit", help="memory limit per worker, e.g. 4GiB")
    g.add_argument("--dashboard", default="127.0.0.1:0",
                   help="dashboard address of a started cluster (%(default)s)")
    g.add_argument("--report", help="save a Dask performance report (HTML)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_prepare)

    from cryostream.models.unet import PRESETS
    from cryostream.training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a U-Net denoiser on a store",
                       description="Train with jit-compiled steps fed by the prefetching loader; "
                       "checkpoints, metrics.jsonl and loss.png go to the run folder.")
    p.add_argument("store")
    p.add_argument("-o", "--output", required=True, help="run folder")
    p.add_argument("--model", choices=tuple(PRESETS), default=d.model, help="(%(default)s)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=d.precision,
                   help="(%(default)s)")
    p.add_argument("--residual", action="store_true", help="predict a correction to the input")
    p.add_argument("--recorrupt", action="store_true",
                   help="recorrupted targets y − m/α (matched-noise stores): the network "
                   "estimates the clean image; denoise without --n2n-correction")
    p.add_argument("--steps", type=int, default=d.steps, help="(%(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(%(default)s)")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate")
    p.add_argument("--loss", choices=("mse", "l1"), default=d.loss, help="(%(default)s)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="(%(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="(%(default)s)")
    p.add_argument("--keep", type=int, default=d.keep_checkpoints, help="checkpoints kept")
    p.add_argument("--seed", type=int, default=d.seed, help="(%(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("denoise", help="denoise whole micrographs with a trained run",
                       description="Tiled whole-micrograph denoising; writes float32 MRC files.")
    p.add_argument("run", help="run folder from cryostream train")
    p.add_argument("inputs", nargs="+", help="MRC files, globs, folders or a RELION STAR file")
    p.add_argument("-o", "--output", required=True, help="output folder")
    add_pipeline_options(p)
    p.add_argument("--calibrate", type=int, default=0, metavar="N",
                   help="fit, per frequency ring, the weight of the output's part beyond a "
                   "linear filter from N recorrupted passes (no truth; N more network passes)")
    p.add_argument("--workers", type=int, default=2, help="micrographs in flight (%(default)s)")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler")
    p.add_argument("--cluster-workers", type=int, help="start a LocalCluster of N workers")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser("rank", help="rank trained runs on micrographs without ground truth",
                       description="Score each run's whole denoising pipeline by recorruption "
                       "(the same noise draws for every run) and list the runs best first.")
    p.add_argument("runs", nargs="+", help="run folders from cryostream train")
    p.add_argument("-i", "--inputs", nargs="+", required=True,
                   help="MRC files, globs, folders or a RELION STAR file to score on")
    add_pipeline_options(p)
    p.add_argument("--draws", type=int, default=2, help="recorrupted passes per run and "
                   "micrograph (%(default)s)")
    p.add_argument("--beta", type=float, default=0.5, help="recorruption strength (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (%(default)s)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.set_defaults(func=_cmd_rank)

    p = sub.add_parser("evaluate", help="a report of a run beside the baselines",
                       description="PSNR, SSIM and FRC of a run on a store's test split and on "
                       "simulated micrographs against their ground truth, with figures.")
    p.add_argument("run")
    p.add_argument("store")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--truth", help="a folder written by cryostream simulate")
    p.add_argument("--patches", type=int, default=64, help="test patches scored")
    p.add_argument("--micrographs", type=int, default=2, help="simulated micrographs scored")
    p.add_argument("--tile", type=int, default=512, help="denoising window core, px")
    p.add_argument("--residual", nargs="+", metavar="MRC",
                   help="micrographs (real ones too) whose residual input − output is checked "
                   "against their measured noise")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("show", help="draw input/target pairs of a store with their statistics")
    p.add_argument("store")
    p.add_argument("-o", "--output", required=True, help="PNG file")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--noise", action="store_true",
                   help="draw the measured noise spectra and shot-noise share instead")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("export-bin", help="write the seed's train_input.bin … layout + JSON")
    p.add_argument("store")
    p.add_argument("outdir")
    p.set_defaults(func=_cmd_export_bin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cryostream`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        return int(args.func(args) or 0)
    except CryostreamError as exc:
        print(f"cryostream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"cryostream {args.command}: interrupted after {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
