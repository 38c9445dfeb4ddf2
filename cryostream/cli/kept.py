"""What an interrupted ``train`` or ``fit`` kept, and how to go on from it: the last line's
words, read from the folders alone (a second signal may ask them during a checkpoint's save,
:func:`cryostream.cli.common.run_command`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["train_kept", "fit_kept"]


def train_kept(args: argparse.Namespace, began: float) -> str:
    """What an interrupted ``train`` into ``args.output`` kept, and how to go on from it."""
    from cryostream.checkpoints import CHECKPOINTS, finished_steps

    run = args.output
    steps = finished_steps(Path(run) / CHECKPOINTS)
    return (f"the checkpoint of step {steps[-1]} is kept in {run}: the same command with "
            "--resume continues from it" if steps else "no checkpoint was written: run the "
            "same command again to start")


def fit_kept(args: argparse.Namespace, began: float) -> str:
    """What an interrupted ``fit`` kept, and what the same command does with it: the run's
    last checkpoint (continued; with ``--overwrite`` only one this call wrote is the fit's, and
    the same command trains from the start again), else its store in the work folder (kept
    whole, or its finished shards, which preparing it again goes on from). ``began``: when the
    command began (seconds since the epoch)."""
    from cryostream.checkpoints import CHECKPOINTS
    from cryostream.fit import STORE_NAME
    from cryostream.fit_run import STORE_RECORD
    from cryostream.prepare_output import staging_folder
    from cryostream.store import shard_folder

    run = Path(args.output).absolute()
    work = Path(args.work).absolute() if getattr(args, "work", None) else run / "work"
    overwrite = getattr(args, "overwrite", False)
    steps = _finished(run / CHECKPOINTS, began if overwrite else None)
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


def _finished(directory: Path, since: float | None) -> list[int]:
    """The steps of the finished checkpoints in ``directory``, those saved before ``since``
    (seconds since the epoch; an earlier fit's, which ``--overwrite`` replaces) left out."""
    from cryostream.checkpoints import finished_steps

    steps = finished_steps(directory)
    if since is None:
        return steps
    kept = []
    for step in steps:
        try:
            if (directory / str(step)).stat().st_mtime >= since:
                kept.append(step)
        except OSError:
            pass
    return kept
