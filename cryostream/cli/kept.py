"""What an interrupted ``train`` or ``fit`` kept, and how to go on from it: the last line's
words, read from the folders alone (a second signal may ask them during a checkpoint's save,
:func:`cryostream.cli.common.run_command`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["train_kept", "fit_kept", "checkpoints_now"]


def train_kept(args: argparse.Namespace, began: float) -> str:
    """What an interrupted ``train`` into ``args.output`` kept, and how to go on from it."""
    from cryostream.checkpoints import CHECKPOINTS, finished_steps

    run = args.output
    steps = finished_steps(Path(run) / CHECKPOINTS)
    return (f"the checkpoint of step {steps[-1]} is kept in {run}: the same command with "
            "--resume continues from it" if steps else "no checkpoint was written: run the "
            "same command again to start")


def checkpoints_now(run: Path) -> dict[int, tuple[int, int]]:
    """Each finished checkpoint of ``run`` by step, with its folder's inode and modification
    time (ns): one written later differs in one or both, whatever the clocks of this machine
    and of the file server say."""
    from cryostream.checkpoints import CHECKPOINTS, finished_steps

    directory, found = Path(run) / CHECKPOINTS, {}
    for step in finished_steps(directory):
        try:
            stat = (directory / str(step)).stat()
        except OSError:
            continue
        found[step] = (stat.st_ino, stat.st_mtime_ns)
    return found


def fit_kept(args: argparse.Namespace, began: float) -> str:
    """What an interrupted ``fit`` kept, and what the same command does with it: the run's
    last checkpoint (continued; with ``--overwrite`` only one this call wrote is the fit's, and
    the same command trains from the start again), else its store in the work folder (kept
    whole, or its finished shards, which preparing it again goes on from). This call's
    checkpoints are told from an earlier fit's by ``args.checkpoints_before``
    (:func:`checkpoints_now` as the command began; none is this call's without it)."""
    from cryostream.fit import STORE_NAME
    from cryostream.fit_run import STORE_RECORD
    from cryostream.prepare_output import staging_folder
    from cryostream.store import shard_folder

    run = Path(args.output).absolute()
    work = Path(args.work).absolute() if getattr(args, "work", None) else run / "work"
    overwrite = getattr(args, "overwrite", False)
    steps = sorted(step for step, seen in checkpoints_now(run).items() if not overwrite or (
        getattr(args, "checkpoints_before", None) is not None
        and args.checkpoints_before.get(step) != seen))
    whole = (work / STORE_RECORD).is_file() and (work / STORE_NAME).is_file()
    store = f"the store in {work}" if whole else f"the store's finished shards in {work}" if any(
        next((folder / shard_folder(Path(STORE_NAME)).name).glob("*.h5"), None)
        for folder in (work, staging_folder(work / STORE_NAME))) else None
    if steps:
        return (f"the checkpoint of step {steps[-1]} is kept in {run}" + (f" and {store}" if
                store else "") + (": the same command without --overwrite continues from that "
                                  "step (with --overwrite it trains from the start again)" if
                                  overwrite else ": run the same command again to continue "
                                  "from that step"))
    if store is None:
        return ("no checkpoint or shard of the store was written: run the same command again "
                "to start")
    return f"no checkpoint was written; {store} {'is' if whole else 'are'} kept: run the same " \
        f"command again to {'train on it' if whole else 'go on from them'}"
