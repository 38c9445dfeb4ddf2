"""A LocalCluster's own chatter kept off the screen.

distributed sets its loggers to INFO and lets their records go on to the root logger's
handlers. Where the root logger has one, every worker started, retired and closed is a line:
a script that called ``logging.basicConfig()`` to see cryostream's notes, and any process that
read a run folder's checkpoint (orbax logs through absl, whose first record calls
``logging.basicConfig()`` on a root logger without handlers, in the command's process and in
each worker's) showed 30–140 ``INFO:distributed...`` lines around a handful of notes. While
cryostream runs a LocalCluster of its own, distributed's records under WARNING are not passed
on, in this process and on its workers; its warnings and errors are. A scheduler given by
address is the scientist's: its workers are left as they are.
"""

from __future__ import annotations

import contextlib
import logging

__all__ = ["quiet_distributed", "quiet_workers"]


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


def quiet_workers(client) -> None:
    """The same on each worker of ``client``'s cluster (a LocalCluster of cryostream's own),
    for the rest of its life; a worker that has just died (its nanny starts another, not
    quieted) is passed over, not an error."""
    client.run(_quiet, on_error="ignore")
