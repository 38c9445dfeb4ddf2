"""``cryostream fit``: a denoiser trained on the user's own micrographs in one command."""

from __future__ import annotations

import argparse

from cryostream.cli.common import add_config_flags, config_from_args
from cryostream.config import MODEL_PRESETS
from cryostream.fit import FINETUNE_TRAIN, RECIPE_TRAIN

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
        description="Measure each micrograph's noise, prepare a store in a work folder and "
        "fine-tune the shipped general model on the micrographs themselves (their own noise "
        "added, α 1; recorrupted targets, a gentle learning rate; the general model's learned "
        "weights kept); --from scratch trains the recipe from random parameters instead. Run "
        "the same command again to continue. Then: cryostream denoise INPUTS -o OUT --model RUN. "
        "Memory: where one training step does not fit the memory there is for the network (80% "
        "of what JAX holds on a GPU, a quarter of the machine's on a CPU; the environment "
        "variable CRYOSTREAM_NETWORK_MEMORY_GB=N sets it), each batch is trained in "
        "micro-batches, with a note; where not even one patch fits, --patch N trains on "
        "smaller patches.")
    p.add_argument("inputs", nargs="+", help="MRC files, globs, folders, a RELION STAR file or a "
                   "cryoSPARC exposures .cs file")
    p.add_argument("-o", "--output", required=True, help="the run folder")
    p.add_argument("--from", dest="start", metavar="general|scratch|RUN",
                   help="where the network starts: the shipped general model (the default for "
                   "the unet: fine-tuned gently, its learned weights kept), scratch (random "
                   "parameters, Noisier2Noise; the default for other --model presets), or a run "
                   "folder or an exported .npz of the same network (fine-tuned gently if its "
                   "output estimates the clean micrograph, else trained on as from scratch)")
    p.add_argument("--budget", metavar="30m|2000steps",
                   help="how long to train: minutes of wall clock from the start of the command "
                   "('30m', '1.5h'; training stops with a checkpoint when they are up) or steps "
                   f"('2000steps'); without it, {FINETUNE_TRAIN.steps} steps from the general "
                   f"model, {RECIPE_TRAIN.steps} from scratch")
    p.add_argument("--work", metavar="FOLDER",
                   help="where the store goes, kept for resuming (RUN/work without it)")
    p.add_argument("--patch", dest="patch_size", type=int, metavar="N",
                   help="the side of the training patches in px (the stride half of it): a "
                   "multiple of 32 (64 for --model unet-deep), at most the micrographs' shorter "
                   "side. Smaller patches take less memory per training step, for a GPU where "
                   "one patch does not fit. Without it: 1024, halved until two fit across the "
                   "micrographs. A fit continued without it keeps the patch it was made with "
                   "(another needs --overwrite, which prepares the store again and starts over)")
    add_config_flags(p, RECIPE_TRAIN, FLAGS)
    p.add_argument("--permissive", action="store_true",
                   help="skip bad micrographs (unreadable, NaN, blank) with a warning")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder that holds another fit or run, training afresh")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Fit, then print what was done and the command that denoises with the run."""
    from pathlib import Path

    from cryostream.cli.kept import checkpoints_now
    from cryostream.fit import fit, training_for

    # what an earlier fit left: an interruption's last line names this call's checkpoints alone
    args.checkpoints_before = checkpoints_now(Path(args.output).absolute())
    train = None  # the unet: fit chooses the training by --from
    if config_from_args(RECIPE_TRAIN, args, FLAGS) != RECIPE_TRAIN:  # another preset, which the
        start = args.start or "scratch"  # general model (a unet) cannot start; --from's training
        train = config_from_args(training_for(start, Path(args.output).absolute()), args, FLAGS)
    result = fit(args.inputs, args.output, start=args.start, budget=args.budget, work=args.work,
                 patch_size=args.patch_size, train=train, overwrite=args.overwrite,
                 permissive=args.permissive)
    print(result.summary())
    return 0
