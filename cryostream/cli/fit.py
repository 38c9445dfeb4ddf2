"""``cryostream fit``: a denoiser trained on the user's own micrographs in one command."""

from __future__ import annotations

import argparse

from cryostream.cli.common import add_config_flags, config_from_args
from cryostream.config import MODEL_PRESETS
from cryostream.fit import RECIPE_TRAIN

__all__ = ["FLAGS", "add_parser", "run"]

FLAGS = {
    "model": ("--model", "network preset (unet-small for a CPU)", {"choices": MODEL_PRESETS}),
}
"""The :class:`~cryostream.config.TrainConfig` fields the command sets; the rest is the
recipe's (:data:`cryostream.fit.RECIPE_TRAIN`)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``fit`` to the subcommands."""
    p = subparsers.add_parser(
        "fit", help="train a denoiser on your own micrographs, in one command",
        description="Measure each micrograph's noise, prepare a store in a work folder and train "
        "the validated recipe (matched noise α 1, residual U-Net) on the micrographs themselves; "
        "run the same command again to continue. Then: cryostream denoise INPUTS -o OUT "
        "--model RUN.")
    p.add_argument("inputs", nargs="+", help="MRC files, globs, folders or a RELION STAR file")
    p.add_argument("-o", "--output", required=True, help="the run folder")
    p.add_argument("--from", dest="start", metavar="general|RUN",
                   help="start from the shipped general model, a run folder or an exported .npz "
                   "(same network) instead of random parameters")
    p.add_argument("--budget", metavar="30m|2000steps",
                   help="how long to train: minutes of wall clock from the start of the command "
                   "('30m', '1.5h'; training stops with a checkpoint when they are up) or steps "
                   f"('2000steps'); without it, the recipe's {RECIPE_TRAIN.steps} steps")
    p.add_argument("--work", metavar="FOLDER",
                   help="where the store goes, kept for resuming (RUN/work without it)")
    add_config_flags(p, RECIPE_TRAIN, FLAGS)
    p.add_argument("--permissive", action="store_true",
                   help="skip bad micrographs (unreadable, NaN, blank) with a warning")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder that holds another fit or run, training afresh")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Fit, then print what was done and the command that denoises with the run."""
    from cryostream.fit import fit

    result = fit(args.inputs, args.output, start=args.start, budget=args.budget, work=args.work,
                 train=config_from_args(RECIPE_TRAIN, args, FLAGS), overwrite=args.overwrite,
                 permissive=args.permissive)
    print(result.summary())
    return 0
