"""``cryostream train``: a U-Net denoiser trained on a store."""

from __future__ import annotations

import argparse
import logging

from cryostream.cli.common import QUIET_HELP, add_config_flags, config_from_args, peak_rss_mb
from cryostream.config import LOSSES, MODEL_PRESETS, PRECISIONS, TrainConfig

__all__ = ["FLAGS", "add_parser", "run", "slow_advice", "train_config"]

FLAGS = {
    "model": ("--model", "network preset", {"choices": MODEL_PRESETS}),
    "precision": ("--precision", "compute precision", {"choices": PRECISIONS}),
    "residual": ("--residual", "predict a correction to the input"),
    "recorrupt": ("--recorrupt", "recorrupted targets y − m/α (matched-noise stores): the network "
                  "estimates the clean image; denoise without --n2n-correction"),
    "augment": ("--augment", "show each batch turned or mirrored (one of the square's eight "
                "symmetries per step), against overfitting a small store; only for "
                "detectors whose noise looks the same in every direction"),
    "fresh_noise": ("--fresh-noise", "stores of noisy micrographs paired with clean "
                    "targets (--targets, --noise none): move each patch's noise by a random shift "
                    "and symmetry at every step, so that a long training cannot learn it by "
                    "heart; only for noise that looks the same in every direction"),
    "steps": ("--steps", "optimisation steps"),
    "batch_size": ("--batch-size", "patches per step"),
    "learning_rate": ("--lr", "peak learning rate; half of it is the first thing to try when "
                      "the loss spiked (train warns)"),
    "beta2": ("--beta2", "AdamW's decay of its mean of squared gradients; 0.99 is one more thing "
              "to try when the loss spiked"),
    "loss": ("--loss", "training loss: mse, l1, or bands (experimental: the error in each "
                      "band of spatial frequency over the target's power there; training guide)",
             {"choices": LOSSES}),
    "eval_every": ("--eval-every", "steps between evaluations on the test split"),
    "checkpoint_every": ("--checkpoint-every", "steps between checkpoints"),
    "keep_checkpoints": ("--keep", "checkpoints kept"),
    "seed": ("--seed", "seed of initialisation, shuffling and on-device noise"),
}
"""The :class:`~cryostream.config.TrainConfig` fields the command sets."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to the subcommands."""
    p = subparsers.add_parser("train", help="train a U-Net denoiser on a store",
                              description="Train with jit-compiled steps fed by the prefetching "
                              "loader; checkpoints, metrics.jsonl and loss.png go to the run "
                              "folder. Where one step does not fit the memory there is for "
                              "the network (80% of what JAX holds on a GPU, a quarter of the "
                              "machine's on a CPU; the environment variable "
                              "CRYOSTREAM_NETWORK_MEMORY_GB=N sets it), each batch is trained "
                              "in micro-batches, with a note.")
    p.add_argument("store", help="a store written by cryostream prepare (its .h5 file)")
    p.add_argument("-o", "--output", required=True, help="run folder")
    add_config_flags(p, TrainConfig, FLAGS)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    p.set_defaults(func=run)
    return p


def slow_advice(config: TrainConfig, after: int = 10, over_s: float = 600.0):
    """An ``on_step`` that times ``after`` steps past the first (compiled) one and, where the
    full ``unet`` trains on a CPU and the steps left would take over ``over_s``, says once what
    is faster (as ``fit`` does); None where there is nothing to say."""
    import sys
    import time

    from cryostream.progress import slow_note, steps_left

    note = slow_note(config)
    if note is None:
        return None
    marks: list[tuple[int, float]] = []

    def on_step(step: int, metrics: dict) -> None:
        if len(marks) == 2 or (marks and step < marks[0][0] + after):
            return
        metrics["loss"].block_until_ready()
        marks.append((step, time.perf_counter()))
        if len(marks) == 2:
            per_step = (marks[1][1] - marks[0][1]) / (marks[1][0] - marks[0][0])
            if (config.steps - step) * per_step > over_s:
                from tqdm.auto import tqdm

                tqdm.write("train: " + note.format(estimate=steps_left(config.steps - step,
                                                                       per_step)), file=sys.stderr)

    return on_step


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~cryostream.config.TrainConfig` the flags describe."""
    return config_from_args(TrainConfig, args, FLAGS)


def run(args: argparse.Namespace) -> int:
    """Train, then print the loss, the test PSNR, the speed and the peak memory."""
    config = train_config(args)
    from cryostream.runs import checkpoint_steps
    from cryostream.training import train

    done = checkpoint_steps(args.output)[-1:] if args.resume else []
    r = train(args.store, args.output, config, resume=args.resume, progress=not args.quiet,
              on_step=None if args.quiet else slow_advice(config),
              log=logging.getLogger("cryostream").info)  # notes on stderr, as fit's (--quiet: none)
    if done and r.steps <= done[0]:  # a finished run resumed: nothing was trained
        print(f"nothing to train: {r.run} is already at step {r.steps} of {config.steps}; give "
              "more --steps to train it on")
        return 0
    ev = r.eval
    test = (f"test PSNR {ev['psnr']:.2f} dB (noisy input {ev['noisy_psnr']:.2f} dB)"
            if ev else "no test split")
    speed = (f"{r.patches_per_second:.1f} patches/s, " if r.patches_per_second is not None
             else "")  # too few steps to time
    steps = f"from step {done[0]} to {r.steps}" if done else f"for {r.steps} step{'s' * (r.steps != 1)}"
    print(f"trained {config.model} {steps} into {r.run}: loss {r.final_loss:.4g}, "
          f"{test}, {speed}{r.seconds:.0f} s, peak memory {peak_rss_mb():,.0f} MB")
    return 0
