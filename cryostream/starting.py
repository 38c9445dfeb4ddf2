"""Ctrl-C as the command line starts: ``import cryostream`` takes seconds (xarray, dask, JAX's
first imports; more on a busy machine), and Python's own handler then printed a traceback of
the imports and ended the process by the signal. From the package's first line to the
command's own handlers (:func:`~cryostream.cli.common.run_command`), a Ctrl-C of the
``cryostream`` or ``cryostream-relion`` command (or ``python -m cryostream``) ends it in one
line with status 130: nothing was begun. A script importing cryostream keeps Python's
:class:`KeyboardInterrupt`. Imports nothing but the standard library."""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["quiet_start", "started", "the_command", "running_module"]

#: The commands whose start is quiet, as their processes are named (``sys.argv[0]``).
COMMANDS = frozenset({"cryostream", "cryostream-relion"})

#: The line of a Ctrl-C as the command starts.
STOPPED = "cryostream: interrupted as it started; nothing was done\n"


def stop(signum, frame) -> None:
    """SIGINT's handler while the command starts: one line, status 130."""
    os.write(2, STOPPED.encode())
    os._exit(130)


def the_command() -> bool:
    """Whether this process is the command line: ``cryostream`` or ``cryostream-relion`` (their
    entry points), or ``python -m cryostream``."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in COMMANDS:
        return True
    return running_module() in ("cryostream", "cryostream.cli")


def running_module() -> str | None:
    """The module ``python -m`` runs, as its package is imported (``sys.argv[0]`` is then
    ``"-m"``): the word after the interpreter's own ``-m`` (or ``-mNAME``), never one among
    the arguments of a script or of the module (``python batch.py -m cryostream``); None
    where no module is run so."""
    argv, given = sys.argv, list(getattr(sys, "orig_argv", []))
    if not argv or argv[0] != "-m" or len(given) < len(argv) + 1:
        return None
    interpreter = given[:len(given) - len(argv) + 1]  # its options, to the module's name
    if interpreter[-2:-1] == ["-m"]:
        return interpreter[-1]
    return interpreter[-1][2:] if interpreter[-1].startswith("-m") else None


def quiet_start() -> None:
    """Make :func:`stop` SIGINT's handler where this is the command line, in its main thread,
    and Ctrl-C has Python's own handler (one ignored, a shell script's background job's, stays
    ignored)."""
    if (the_command() and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, stop)


def started() -> None:
    """Python's handler back (the command's own take over from here), where :func:`stop` is
    SIGINT's."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is stop:
        signal.signal(signal.SIGINT, signal.default_int_handler)
