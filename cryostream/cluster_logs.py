"""A LocalCluster of cryostream's own kept quiet: its chatter off the screen, and Ctrl-C left
to the call that started it.

distributed sets its loggers to INFO and lets their records go on to the root logger's
handlers. Where the root logger has one, every worker started, retired and closed is a line:
a script that called ``logging.basicConfig()`` to see cryostream's notes, and any process that
read a run folder's checkpoint (orbax logs through absl, whose first record calls
``logging.basicConfig()`` on a root logger without handlers, in the command's process and in
each worker's) showed 30–140 ``INFO:distributed...`` lines around a handful of notes. While
cryostream runs a LocalCluster of its own, distributed's records under WARNING are not passed
on, in this process and on its workers; its warnings and errors are. A worker process holds
them back from its first record (:class:`QuietWorker`): a script's logging lines at its top
run again in each worker process as it starts (Python's ``spawn`` runs the script up to its
``if __name__ == "__main__":`` line), whose root handler had shown a worker's start-up, about
15 lines each, before the workers could be told otherwise. A scheduler given by address is the
scientist's: its workers are left as they are.

A terminal's Ctrl-C goes to every process of the command's group: each worker process had
printed its ``KeyboardInterrupt`` traceback as it died, and this process the asyncio tasks
distributed leaves behind when a gather is interrupted (``Task exception was never retrieved
... AllExit``, one for each task), or tornado's traceback of distributed's cancelling a wait
whose work had not yet begun (a ``NameError`` in ``sync``'s ``cancel``, nothing to cancel).
The worker processes are the call's, which closes them as its interrupt goes on: they start
with Ctrl-C's signal blocked (:func:`ctrl_c_here_alone`), and those records are not passed on
(:func:`quiet_interrupted_gathers`). As the call closes its cluster (at its end, on Ctrl-C,
on an error), neither this process nor the workers say anything more (:func:`quiet_closing`,
:meth:`QuietWorker.close`): the tasks cut short, a heartbeat with them (a traceback), a busy
worker killed are the call's doing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator

from distributed import Worker

__all__ = ["quiet_distributed", "quiet_closing", "QuietWorker", "worker_processes",
           "ctrl_c_here_alone", "quiet_interrupted_gathers", "not_cancelled_before_start"]


def _quiet(level: int = logging.WARNING) -> int:
    """Raise the ``distributed`` logger to ``level`` where it is lower (distributed's own INFO,
    or unset, taking a lower level from above); its old level. A level set lower on purpose
    (DEBUG, to look into the cluster) is left."""
    logger = logging.getLogger("distributed")
    old = logger.level
    if (old == logging.NOTSET or old >= logging.INFO) and logger.getEffectiveLevel() < level:
        logger.setLevel(level)
    return old


@contextlib.contextmanager
def quiet_distributed():
    """In this process, while a LocalCluster of cryostream's own starts, runs and closes:
    distributed's INFO records held back, its level as it was afterwards."""
    old = _quiet()
    try:
        yield
    finally:
        logging.getLogger("distributed").setLevel(old)


def quiet_closing() -> None:
    """As cryostream closes a LocalCluster of its own (at the call's end, on Ctrl-C or on an
    error), none of distributed's records in this process, till :func:`quiet_distributed`'s
    block ends: a worker still busy killed after its time to close, the results it held lost
    with it, are the call's doing, not news (a level set lower on purpose is left)."""
    _quiet(logging.CRITICAL)


class QuietWorker(Worker):
    """A worker of a LocalCluster of cryostream's own, in a process of its own (made by its
    nanny: :func:`worker_processes`): distributed's INFO records held back there from its first
    (one that its nanny starts again too), and none of its records once it closes (the call
    closes it: at its end, or on Ctrl-C): the tasks it was running cancelled (``Async
    instruction ... ended with CancelledError``), a heartbeat cut short (``Failed to
    communicate with scheduler during heartbeat``, a traceback)."""

    def __init__(self, *args, **kwargs):
        _quiet()
        super().__init__(*args, **kwargs)

    async def close(self, *args, **kwargs):
        _quiet(logging.CRITICAL)
        return await super().close(*args, **kwargs)


def worker_processes():
    """The ``worker_class`` of a LocalCluster of worker processes whose workers are
    :class:`QuietWorker`: a ``distributed.Nanny`` that makes them so."""
    import functools

    from distributed import Nanny

    return functools.partial(Nanny, worker_class=QuietWorker)


@contextlib.contextmanager
def ctrl_c_here_alone() -> Iterator[None]:
    """While the block starts a LocalCluster, Ctrl-C's signal (SIGINT) blocked in this thread:
    the threads started meanwhile (the cluster's event loop, and those it starts processes
    from) and the worker processes they start keep it blocked for their lives, so that a
    terminal's Ctrl-C, sent to the whole process group, reaches this process alone (another
    thread here, or this one after the block, takes it: it is not lost). multiprocessing's
    resource tracker is started first: starting it (as the first worker process would) unblocks
    the signal in the thread that does. Where threads have no signal mask (Windows: no such
    group signal) the block runs as it is."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _not_all_exit(record: logging.LogRecord) -> bool:
    """False for asyncio's record of a task that ended on distributed's ``AllExit``, its own way
    to stop waiting (never an error of the work's)."""
    from distributed.client import AllExit

    return not (record.exc_info and isinstance(record.exc_info[1], AllExit))


def not_cancelled_before_start(record: logging.LogRecord) -> bool:
    """False for tornado's record of distributed's ``sync`` cancelling, as an interrupt (Ctrl-C,
    or SIGTERM's :class:`cryostream.Terminated`) ends its wait, work that had not yet begun: its
    ``cancel`` raises ``NameError`` on the future not yet made (distributed 2026.8), logged with
    a traceback though there was nothing to cancel."""
    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, NameError) or exc.__traceback__ is None:
        return True
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return not (code.co_name == "cancel"
                and os.path.normpath(code.co_filename).endswith(os.path.join("distributed",
                                                                               "utils.py")))


def quiet_interrupted_gathers() -> None:
    """Pass on no record of asyncio's of a task that ended on distributed's ``AllExit`` (one for
    each task of a gather that Ctrl-C interrupted, logged as they are collected, after the call),
    nor tornado's of a cancel with nothing to cancel (:func:`not_cancelled_before_start`):
    filters of the ``asyncio`` and ``tornado.application`` loggers, added once in a process."""
    logging.getLogger("asyncio").addFilter(_not_all_exit)  # (a filter is not added twice)
    logging.getLogger("tornado.application").addFilter(not_cancelled_before_start)
