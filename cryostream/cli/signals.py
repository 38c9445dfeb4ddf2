"""The command line's Ctrl-C and SIGTERM: the first acknowledged (the work in progress finished,
where the command does so), a second ending the process at once, in one line and with the
first's status (130 or 143), never a traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import NoReturn

from cryostream.interrupts import Arrivals, Terminated

__all__ = ["StopSoftly", "TerminateSoftly", "EndAtOnce", "end_now"]


def end_now(status: int, line: str | None = None) -> NoReturn:
    """End the process at once with ``status``, after ``line`` (if any) on stderr.

    Called from a signal handler, which may run in the middle of another print: the streams
    are flushed where they can be, and ``line`` goes straight to the file descriptor."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # (a print the signal came in the middle of)
            stream.flush()
    if line:
        with contextlib.suppress(OSError):
            os.write(2, f"{line}\n".encode())
    os._exit(status)


class StopSoftly:
    """The SIGINT handler of a command that finishes its work in progress: the first Ctrl-C
    prints ``first`` and raises :class:`KeyboardInterrupt` (the work in progress finishes, the
    rest is not started); the second ends the process at once, status 130 (the first delivered
    twice at once is one)."""

    def __init__(self, command: str, first: str):
        self.command, self.first, self.arrivals = command, first, Arrivals()

    def __call__(self, signum, frame):
        if not self.arrivals.new():  # the first, delivered twice
            return
        if self.arrivals.count == 1:
            print(f"cryostream {self.command}: {self.first}", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        end_now(130, f"cryostream {self.command}: stopped at once; what was in progress is not "
                "written (run the same command again to resume)")


class TerminateSoftly:
    """The SIGTERM handler of the command line: the first raises :class:`Terminated` (printing
    ``first``, where the command finishes its work in progress, as for Ctrl-C); the second ends
    the process at once, status 143."""

    def __init__(self, command: str, first: str | None):
        self.command, self.first, self.arrivals = command, first, Arrivals()

    def __call__(self, signum, frame):
        if not self.arrivals.new():  # the first, delivered twice
            return
        if self.arrivals.count > 1:
            end_now(143, f"cryostream {self.command}: terminated at once (SIGTERM again); what "
                    "was in progress is not written")
        if self.first:
            first = self.first.replace("Ctrl-C again", "SIGTERM again")
            print(f"cryostream {self.command}: terminated (SIGTERM): {first}", file=sys.stderr,
                  flush=True)
        raise Terminated


class EndAtOnce:
    """SIGINT's and SIGTERM's handler once a command has stopped on the first of them: a further
    one ends the process at once with ``status`` (the first's), printing ``line`` first where
    it is set (what the command had still to say). Made as the first is handled: a repeat of it
    within :data:`~cryostream.interrupts.DUPLICATE_S` is the same one, not counted.

    Python's own handler would raise :class:`KeyboardInterrupt` wherever the program was (as it
    says how it stopped, puts its handlers back, or shuts down), and print a traceback."""

    def __init__(self, status: int, line: str | None = None):
        self.status, self.line, self.arrivals = status, line, Arrivals()
        self.arrivals.new()  # the first, just handled

    def install(self) -> None:
        """Make this the handler of SIGINT and SIGTERM (from the main thread)."""
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)

    def through_the_exit(self) -> None:
        """Keep this handler while the process shuts down after the command: until Python's
        exit functions run, then ignore both signals to the end, since Python puts their default
        back after those (a handler of its own would no longer run) and JAX's teardown takes a
        second or so: the process ends with ``status`` all the same, in silence."""
        import atexit

        self.install()
        atexit.register(lambda: [signal.signal(s, signal.SIG_IGN)
                                 for s in (signal.SIGINT, signal.SIGTERM)])

    def __call__(self, signum, frame):
        if self.arrivals.new():  # not the first, delivered twice
            end_now(self.status, self.line)
