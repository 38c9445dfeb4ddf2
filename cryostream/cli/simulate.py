"""``cryostream simulate``: EMPIAR-10025-like micrographs with their ground truth."""

from __future__ import annotations

import argparse

from cryostream.cli.common import QUIET_HELP, add_config_flags, config_from_args, peak_rss_mb
from cryostream.config import SimulateConfig

__all__ = ["FLAGS", "add_parser", "run", "simulate_config"]

FLAGS = {
    "shape": ("--shape", "rows and columns", {"metavar": ("H", "W")}),
    "seed": ("--seed", "seed of the simulation"),
    "pixel_size_angstrom": ("--pixel-size", "pixel size in Å; the default is EMPIAR-10025's",
                            {"metavar": "Å"}),
    "defocus_um": ("--defocus", "range of each micrograph's mean defocus in µm (underfocus "
                   "positive)", {"metavar": ("LOW", "HIGH")}),
    "dose_e_per_angstrom2": ("--dose", "electron dose in e/Å² (the shot noise; 10–20 is low "
                             "dose, where CTF fits and denoisers struggle)", {"metavar": "E"}),
    "detector_nps_nyquist": ("--detector-nps", "detector noise power at Nyquist relative to zero "
                             "frequency; 1 = white shot noise, real micrographs ≈0.03–0.1",
                             {"metavar": "R"}),
    "even_odd": ("--even-odd", "also write each micrograph's even- and odd-frame halves "
                 "(even/NAME_EVN.mrc, odd/NAME_ODD.mrc; the full sum is their sum)"),
}
"""The :class:`~cryostream.config.SimulateConfig` fields the command sets."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``simulate`` to the subcommands."""
    p = subparsers.add_parser("simulate", help="write EMPIAR-10025-like micrographs with ground truth",
                              description="Simulate noisy micrographs of the T20S proteasome with "
                              "their noise-free ground truth (MRC) and particle coordinates (STAR).")
    p.add_argument("out", help="output folder")
    p.add_argument("--count", type=int, required=True, help="number of micrographs")
    add_config_flags(p, SimulateConfig, FLAGS)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier simulation (its files this one does not have are removed)")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=run)
    return p


def simulate_config(args: argparse.Namespace) -> SimulateConfig:
    """The :class:`~cryostream.config.SimulateConfig` the flags describe."""
    return config_from_args(SimulateConfig, args, FLAGS)


def run(args: argparse.Namespace) -> int:
    """Simulate, then print what was written, how long it took and the peak memory."""
    from cryostream.simulate import named_files, simulate
    from cryostream.units import format_bytes

    config = simulate_config(args)
    result = simulate(args.out, args.count, config=config, overwrite=args.overwrite,
                      progress=not args.quiet)
    rows, cols = config.shape
    one = len(result.micrographs) == 1
    if result.kept:
        print(f"{result.root} already holds this simulation: {len(result.micrographs)} "
              f"micrograph{'' if one else 's'} of {rows} × {cols} px with these options and "
              "seed; kept as it is (--overwrite simulates it again)")
        return 0
    written = result.micrographs + result.truths + result.evens + result.odds
    nbytes = sum(p.stat().st_size for p in written)
    print(
        f"simulated {len(result.micrographs)} micrograph{'' if one else 's'}"
        f" of {rows} × {cols} px "
        f"{('with its' if one else 'with their') + ' even/odd halves ' if config.even_odd else ''}"
        f"into {result.root} ({format_bytes(nbytes)}, {result.seconds:.1f} s, "
        f"peak memory {peak_rss_mb():,.0f} MB)"
    )
    if result.removed:  # --overwrite: an earlier set's files this one has not
        many = len(result.removed) > 1
        names = named_files(result.root, list(result.removed))
        print(f"removed {len(result.removed) if many else 'the'} file{'s' * many} of the earlier "
              f"set that this one does not have ({names})")
    return 0
