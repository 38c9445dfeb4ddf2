"""``cryostream evaluate``: a report of a run beside the baselines."""

from __future__ import annotations

import argparse

from cryostream.cli.common import add_library_flag, given
from cryostream.cli.denoise import add_pixel_size

__all__ = ["add_parser", "run"]

EVALUATE = "cryostream.evaluate:evaluate"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``evaluate`` to the subcommands."""
    p = subparsers.add_parser("evaluate", help="a report of a run beside the baselines",
                              description="PSNR, SSIM and FRC of a run on a store's test split "
                              "and on simulated micrographs against their ground truth (only "
                              "those held out of the run's training), with figures, and the "
                              "residual check on any micrographs. Progress notes per micrograph "
                              "on stderr (--quiet: none): on a CPU, about how long the --truth "
                              "micrographs and the residual check take before they start, and "
                              "notes of the residual check's network passes "
                              "while a micrograph takes minutes. Ctrl-C or SIGTERM stops it at "
                              "once (status 130 or 143), leaving nothing half-written: the "
                              "report is written whole at its end.")
    p.add_argument("run", help="a run folder, an exported .npz or a shipped model's name")
    p.add_argument("store", nargs="?", help="a store whose test split is scored (optional)")
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--truth", help="a folder written by cryostream simulate; only its "
                   "micrographs held out of the run's training are scored")
    add_library_flag(p, "--patches", EVALUATE, "patches", "test patches scored", type=int,
                     metavar="N")
    add_library_flag(p, "--micrographs", EVALUATE, "micrographs", "simulated micrographs scored",
                     type=int, metavar="N")
    add_library_flag(p, "--tile", EVALUATE, "tile", "denoising window core, px (default: chosen "
                     "for the micrograph and the device, as denoise does)", type=int, metavar="PX")
    p.add_argument("--residual", nargs="+", metavar="MRC",
                   help="micrographs (real ones too) whose residual, input − what denoise gives "
                   "by default, is checked against their measured noise (each takes as long as "
                   "denoise does: give --denoised where denoise wrote them)")
    add_pixel_size(p, "--residual micrographs").help += (
        "; also the pixel size of --truth micrographs whose headers have none (without one, "
        "they are scored at 1 Å per pixel, their FRC and spectra in cycles/px)")
    p.add_argument("--denoised", metavar="FOLDER",
                   help="a folder where `cryostream denoise` wrote this model's outputs: those "
                   "found there are read, not denoised again: checked (--residual) and scored "
                   "(--truth) as they were made; options other than the default's, "
                   "--no-ensemble say, are named in the report (--truth: in a row of their own)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the report and print its headline numbers (from the report's own numbers).

    The report is made in a thread of its own (:func:`~cryostream.cli.signals.waited_for`), so
    that Ctrl-C and SIGTERM stop the command at once, not after the network pass under way: the
    report is given up (:func:`~cryostream.evaluate.staging.give_up_reports`), nothing of it
    left, and the command ends (:attr:`~cryostream.cli.kept.Interruption.ends_process`)."""
    from cryostream.cli.signals import waited_for
    from cryostream.denoise.network import check_model
    from cryostream.evaluate import evaluate, summary_lines
    from cryostream.evaluate.staging import give_up_reports

    check_model(args.run)  # named as given, before the report folder is made
    report = waited_for(lambda: evaluate(
        args.run, args.store, args.output, truth=args.truth, residual=args.residual,
        denoised=args.denoised, pixel_size_angstrom=args.pixel_size_angstrom,
        **given(args, "patches", "micrographs", "tile")), give_up_reports)
    print("\n".join(summary_lines(report, args.output)))
    return 0
