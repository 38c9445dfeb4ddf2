"""``cryostream evaluate``: a report of a run beside the baselines."""

from __future__ import annotations

import argparse

from cryostream.cli.common import add_library_flag, given

__all__ = ["add_parser", "run"]

EVALUATE = "cryostream.evaluate:evaluate"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the subcommands."""
    p = subparsers.add_parser("evaluate", help="a report of a run beside the baselines",
                              description="PSNR, SSIM and FRC of a run on a store's test split "
                              "and on simulated micrographs against their ground truth, with "
                              "figures.")
    p.add_argument("run")
    p.add_argument("store")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--truth", help="a folder written by cryostream simulate")
    add_library_flag(p, "--patches", EVALUATE, "patches", "test patches scored", type=int)
    add_library_flag(p, "--micrographs", EVALUATE, "micrographs", "simulated micrographs scored",
                     type=int)
    add_library_flag(p, "--tile", EVALUATE, "tile", "denoising window core, px", type=int)
    p.add_argument("--residual", nargs="+", metavar="MRC",
                   help="micrographs (real ones too) whose residual input − output is checked "
                   "against their measured noise")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the report and print its headline numbers."""
    from cryostream.evaluate import evaluate

    report = evaluate(args.run, args.store, args.output, truth=args.truth, residual=args.residual,
                      **given(args, "patches", "micrographs", "tile"))
    a = report["test_split"]
    print(f"wrote {args.output}/report.md: test split PSNR noisy {a['noisy_psnr']:.2f}, "
          f"best Gaussian {a['gaussian_psnr']:.2f}, model {a['model_psnr']:.2f} dB")
    return 0
