"""A LocalCluster of cryostream's own kept quiet: its chatter off the screen.

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
"""

from __future__ import annotations

import contextlib
import logging

from distributed import Worker

__all__ = ["quiet_distributed", "QuietWorker", "worker_processes"]


def _quiet() -> int:
    """Raise the ``distributed`` logger to WARNING where it is at distributed's own INFO (or
    unset, taking a lower level from above); its old level. A level set lower on purpose
    (DEBUG, to look into the cluster) is left."""
    logger = logging.getLogger("distributed")
    old = logger.level
    if old in (logging.NOTSET, logging.INFO) and logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
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


class QuietWorker(Worker):
    """A worker of a LocalCluster of cryostream's own, in a process of its own (made by its
    nanny: :func:`worker_processes`): distributed's INFO records held back there from its
    first, in one that its nanny starts again too (they had been held back once the cluster had
    started, by ``client.run``, whose own record came through)."""

    def __init__(self, *args, **kwargs):
        _quiet()
        super().__init__(*args, **kwargs)


def worker_processes():
    """The ``worker_class`` of a LocalCluster of worker processes whose workers are
    :class:`QuietWorker`: a ``distributed.Nanny`` that makes them so."""
    import functools

    from distributed import Nanny

    return functools.partial(Nanny, worker_class=QuietWorker)
