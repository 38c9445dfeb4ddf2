"""What each command keeps when Ctrl-C or SIGTERM stops it, and how to go on
(:data:`INTERRUPTIONS`, said by :func:`cryostream.cli.common.run_command`); for an interrupted
``train`` or ``fit``, the last line's words read from the folders alone (a second signal may
ask them during a checkpoint's save)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

from cryostream.cli.signals import AT_ONCE

__all__ = ["Interruption", "INTERRUPTIONS", "train_kept", "fit_kept", "checkpoints_now",
           "terminated_denoise_kept", "interrupted_denoise_kept", "scheduler_denoise_kept",
           "denoise_first", "denoise_stops_now", "denoise_first_on_a_scheduler",
           "denoise_at_once", "simulate_kept"]


@dataclasses.dataclass(frozen=True)
class Interruption:
    """What a command says when Ctrl-C stops it.

    Attributes
    ----------
    first : str, callable or None
        Printed as soon as the first Ctrl-C arrives, for a command that finishes the work in
        progress before it stops; a second Ctrl-C then stops the process at once. A callable
        is given what the command tells is in progress
        (:func:`~cryostream.interrupts.in_progress`, None where nothing tells) and returns
        the text. None: the first Ctrl-C stops the command as Python does. Of an entry
        ``COMMAND on SIGTERM`` (SIGTERM's own way, where it differs from Ctrl-C's), what the
        first SIGTERM prints.
    then : str or callable
        Printed after ``interrupted after N s``: what is kept and how to go on. Fields of the
        parsed command line fill ``{braces}`` (``{output}``); a callable is given the parsed
        command line and when the command began (seconds since the epoch) and returns the text
        (where it depends on what was kept: :mod:`cryostream.cli.kept`).
    at_once : str or callable
        What the line of a second signal, which ends the process at once, says of the work in
        progress; a callable is given what was written as the process ended
        (:func:`~cryostream.cli.signals.end_now`) and returns the text.
    ends_process : bool
        Where the command is the process's, it ends at once after its last line: its work goes
        on in a thread that no signal stops (a network pass, up to a minute on a CPU), which
        nothing of the command waits for any more, but Python's exit would.
    """

    first: str | Callable[[object], str] | None
    then: str | Callable[[argparse.Namespace, float], str]
    at_once: str | Callable[[list], str] = AT_ONCE
    ends_process: bool = False


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
    from cryostream.fit_run import store_kept

    run = Path(args.output).absolute()
    work = Path(args.work).absolute() if getattr(args, "work", None) else run / "work"
    overwrite = getattr(args, "overwrite", False)
    steps = sorted(step for step, seen in checkpoints_now(run).items() if not overwrite or (
        getattr(args, "checkpoints_before", None) is not None
        and args.checkpoints_before.get(step) != seen))
    store, whole = store_kept(work) or (None, False)
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


def terminated_denoise_kept(args: argparse.Namespace, began: float) -> str:
    """What a ``denoise`` into ``args.output`` that SIGTERM stopped kept: every micrograph and
    the STAR file, where the call says it finished them all and wrote it (``args.all_finished``:
    the signal came as the last were written, or after, and none was in progress; not read
    from the folder, where another call may write a STAR file meanwhile); nothing, where no
    folder is left (none was finished: the call removed the folder it had made); else the
    finished micrographs."""
    from cryostream.denoise.outputs import STAR_NAME

    out = args.output
    if getattr(args, "all_finished", False):
        return (f"every micrograph was finished (none was in progress): all are kept in {out} "
                f"and listed in {STAR_NAME}, written there as a complete run does; nothing is "
                "left to do")
    return _denoise_kept(out, "; those in progress are not written")


def interrupted_denoise_kept(args: argparse.Namespace, began: float) -> str:
    """What a ``denoise`` into ``args.output`` that Ctrl-C stopped kept: nothing, where no
    folder is left (none was finished: the call removed the folder it had made, as a Ctrl-C
    before the micrographs began leaves it), else the finished micrographs."""
    return _denoise_kept(args.output)


def scheduler_denoise_kept(args: argparse.Namespace, began: float) -> str:
    """What a ``denoise --scheduler`` into ``args.output`` that Ctrl-C stopped kept, once it
    waited for the micrographs under way on the scheduler's workers: nothing, where no folder is
    left (none had begun: the call removed the folder it had made), else the finished
    micrographs, those under way among them."""
    return _denoise_kept(args.output, ", those under way on the cluster's workers too")


def _denoise_kept(out, dropped: str = "") -> str:
    """What a stopped ``denoise`` into ``out`` kept, ``dropped`` said after the finished ones:
    nothing, where no folder is left (the call removed the one it had made), else the finished
    micrographs, and how to go on."""
    from cryostream.denoise.outputs import STAR_NAME

    if not Path(out).is_dir():
        return ("no micrograph was finished and nothing was written: run the same command "
                "again to denoise them")
    return (f"the finished micrographs are kept in {out}{dropped}: run the same command again "
            f"to denoise the rest (it skips the finished ones) and write {STAR_NAME}")


def denoise_first(told: object) -> str:
    """The note of a first Ctrl-C in ``denoise``, as the call tells what is in progress
    (``told``, :func:`~cryostream.interrupts.in_progress`): where no micrograph is (None: none
    has begun yet, as the model loads or the inputs are read;
    :data:`~cryostream.denoise.pool.NONE_LEFT`: every one is finished), that it stops now
    (:func:`denoise_stops_now`); else it finishes the micrographs in progress: how many
    (``(count, seconds)``, :func:`~cryostream.denoise.pool.finish_here`'s) and about how long
    they take, at the pace of their network passes and of the micrographs this call finished
    (nothing of the time where none is known yet: ``seconds`` NaN)."""
    import math

    from cryostream.units import format_duration

    if not isinstance(told, tuple):
        return denoise_stops_now(told)
    count, seconds = told
    what = ("the micrograph in progress" if count == 1 else f"the {count} micrographs in "
            "progress" if count else "the micrographs in progress")
    when = "" if not count or not math.isfinite(seconds) else \
        f"{'about ' * (seconds >= 0.5)}{format_duration(seconds)}; "
    return (f"stopping after {what} ({when}{'it is' if count == 1 else 'each is'} written whole "
            "or not at all); Ctrl-C again to stop at once")


def denoise_stops_now(told: object) -> str:
    """The note of a first Ctrl-C in ``denoise`` where no micrograph is in progress, which
    stops it now (the interrupt raised where the command is, at the end of a step in C such as
    the model's compiling): none has begun yet (``told`` None), so this call has written nothing
    (an output folder it made is removed); or every one is finished (``told``
    :data:`~cryostream.denoise.pool.NONE_LEFT`), and the STAR file, written last, may be
    left unwritten. (Nothing is imported for the first: the signal may come as the modules
    are.)"""
    if told is None:
        return "stopping now: no micrograph has begun yet, and this call has written nothing"
    from cryostream.denoise.outputs import STAR_NAME  # (both there: the call told)

    return (f"stopping now: every micrograph is finished and written; {STAR_NAME}, written "
            "last, may not be (the same command again writes it)")


def denoise_first_on_sigterm(told: object) -> str:
    """What a first SIGTERM to ``denoise`` does (``told`` as :func:`denoise_first` has it): where
    micrographs are in progress, they are given up; where none has begun yet, nothing is
    written; where every one is finished, the call ends as it would, its STAR file written."""
    if told is None:
        return "stopping now: no micrograph has begun yet, and this call has written nothing"
    if not isinstance(told, tuple):
        return "every micrograph is finished and written: ending as the run ends, with its STAR file"
    return ("stopping now: the micrographs in progress are dropped, not written (an output being "
            "written is finished first)")


def denoise_first_on_a_scheduler(told: object) -> str:
    """The note of a first Ctrl-C in ``denoise --scheduler``: where no micrograph is in
    progress, as :func:`denoise_stops_now` says; else it waits for those under way on the
    scheduler's workers, which are not this process's (``told``: what
    :func:`~cryostream.denoise.cluster_pool.gather_cluster` tells, any tuple)."""
    if not isinstance(told, tuple):
        return denoise_stops_now(told)
    return ("stopping after the micrographs under way on the cluster's workers (each is written "
            "whole or not at all); Ctrl-C again to stop at once")


def denoise_at_once(written: list) -> str:
    """What the line of a second signal in ``denoise`` says of its outputs: how many this call
    wrote, each whole, those being written as it came finished first (``written``: the
    :class:`~cryostream.denoise.pool.Closed` of its gate, :func:`~cryostream.cli.signals.end_now`;
    none: the micrographs were not under way); nothing, where none was finished and the output
    folder the call made was removed (a :class:`~cryostream.denoise.pool.Removed` among them)."""
    from cryostream.denoise.pool import Closed, Removed

    if any(isinstance(w, Removed) for w in written):
        return ("no micrograph was finished and nothing was written (the output folder it made, "
                "which held nothing, is removed): run the same command again to denoise them")
    closed = next((w for w in written if isinstance(w, Closed)), None)
    if closed is None:
        return AT_ONCE
    n, done, cut = closed

    def were(k: int) -> str:
        return "was" if k == 1 else "were"

    whole = (f"{n} output{'s' * (n != 1)} of this call {'is' if n == 1 else 'are'} written whole"
             if n else "no output of this call was written")
    if done:
        whole += f" (the {'one' if done == 1 else done} being written {were(done)} finished first)"
    left = "nothing half-written is left" if not cut else (
        f"{cut} held up as {'it was' if cut == 1 else 'they were'} being written "
        f"{'is' if cut == 1 else 'are'} left unfinished (a hidden temporary file, which the next "
        "run makes again)")
    return (f"{whole}, and {left}; the micrographs still in progress are not written (run the "
            "same command again to resume)")


def simulate_kept(args: argparse.Namespace, began: float) -> str:
    """What an interrupted ``simulate`` into ``args.out`` kept: the micrographs made so far,
    and, where the folder holds files of an earlier set that this one does not have (its
    micrographs beyond the count, its halves where none are asked for: ``--overwrite``), those,
    named as still there (they are removed only once the set is whole)."""
    root = Path(args.out)
    said = (f"{args.out} holds the micrographs made so far and no simulate.json: the set is not "
            "finished (prepare, fit, denoise and evaluate --truth refuse it); run the same command "
            "again to make it whole")
    if not hasattr(args, "count"):  # (no command line of simulate's: nothing more to tell)
        return said
    from cryostream.cli.simulate import simulate_config
    from cryostream.io.simulated import unfinished_set
    from cryostream.simulate import left_over, named_files

    try:
        left = left_over(root, args.count, simulate_config(args)) if unfinished_set(root) else []
    except (OSError, ValueError):
        return said
    if not left:
        return said
    files = f"{len(left)} files" if len(left) > 1 else "file"
    return (f"{said}; the earlier set's {files} that this one does not have "
            f"({named_files(root, left)}) {'are' if len(left) > 1 else 'is'} still there, "
            "removed only once the set is whole")


#: Each command's :class:`Interruption` (commands not listed say only how long they ran).
INTERRUPTIONS = {
    # the note of a first Ctrl-C: how many are in progress, about how long they take (the
    # pace of their network passes), or that it stops now where none is (none begun yet, or
    # all finished); a second signal's line: how many outputs were written
    "denoise": Interruption(
        first=denoise_first, then=interrupted_denoise_kept, at_once=denoise_at_once),
    # SIGTERM (a batch system's time limit, whose SIGKILL follows in 30 s): those in progress
    # are given up at once (cryostream.denoise.pool.Gate: none of them writes anything more),
    # and the process ends after its last line, not waiting for their threads; where none was
    # given up (all finished), the call ends as it would (its STAR file) first
    "denoise on SIGTERM": Interruption(
        first=denoise_first_on_sigterm, then=terminated_denoise_kept, ends_process=True),
    # on Ctrl-C the command closes its LocalCluster's workers (the signal kept from them): what
    # they hold is lost
    "denoise on a cluster": Interruption(
        first=None, then="the finished micrographs are kept in {output}; those the cluster's "
        "workers were denoising are not written (but one that finished as the cluster closed): "
        "run the same command again to denoise the rest (it skips the finished ones) and write "
        "denoised_micrographs.star"),
    # a scheduler's workers are not this process's: those under way finish, as here (none
    # begun yet, or all finished: it stops now, as here)
    "denoise on a scheduler": Interruption(
        first=denoise_first_on_a_scheduler,
        then=scheduler_denoise_kept,
        at_once="the micrographs under way on the cluster's workers are written all the same, "
        "each whole, as they finish there (run the same command again to resume)"),
    # the report is written whole at its end: nothing of it to keep; its network passes are
    # in a thread of their own (cryostream.cli.evaluate), whose pass under way is dropped
    "evaluate": Interruption(first=None, then="nothing half-written is kept in {output}: the "
                             "report is written whole at its end, or not at all; run the same "
                             "command again to make it", ends_process=True),
    # training notes the step it keeps itself; the last line, what a rerun goes on from
    "fit": Interruption(first=None, then=fit_kept),
    "prepare": Interruption(first=None, then="the finished shards are kept: run the same "
                            "command again to go on from them"),
    # with files of an earlier set that this one has not (--overwrite): kept until it is whole
    "simulate": Interruption(first=None, then=simulate_kept),
    # training notes the step it keeps (not with --quiet): how to go on from it, in any case
    "train": Interruption(first=None, then=train_kept),
}
