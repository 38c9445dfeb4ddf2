"""The command line's Ctrl-C and SIGTERM: the first acknowledged (the work in progress finished,
where the command does so), a second (either signal) ending the process at once, in one line
naming it and with the first's status (130 or 143), never a traceback. A process started with
Ctrl-C ignored (a background job of a script) keeps ignoring it, as Python does: none of these
handlers is made SIGINT's there (``sigint`` False)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from cryostream.interrupts import Arrivals, Terminated, as_sigterm

__all__ = ["StopSoftly", "EndAtOnce", "end_now", "at_once", "status_of", "LAST_WORDS",
           "REWORDED", "reworded", "waited_for"]

#: What must still be done when the process ends at once (a RELION External job's EXIT file,
#: which RELION waits for): each called with the status, its errors let be.
LAST_WORDS: list = []

#: How the command's lines (its errors, warnings and notes, and those of an interruption) are
#: said otherwise, for a program that runs a command for another one (``cryostream-relion``:
#: RELION's user presses *Abort running* and runs the job again, not Ctrl-C and the same
#: command, and sets options as Params rows): ``(words, instead)`` pairs, or callables that
#: give a line as it is said.
REWORDED: list = []


def reworded(line: str) -> str:
    """``line`` as :data:`REWORDED` says it: its pairs' words replaced, its callables applied."""
    for entry in REWORDED:
        line = entry(line) if callable(entry) else line.replace(*entry)
    return line


#: Whether the process is ending (:func:`end_now` called): a further signal does not wait.
_ENDING: list[int] = []


def end_now(status: int, line: str | Callable[[list], str] | None = None) -> NoReturn:
    """End the process at once with ``status``, after ``line`` (if any) on stderr.

    First, what must not be cut is finished (:func:`~cryostream.interrupts.close_before_the_end`:
    a denoise output being written, a moment; none starts after), unless this is called again
    meanwhile (a further signal while it waits), which ends at once. ``line`` may be a
    callable, given what those said they had written (a list: a denoise call's
    :class:`~cryostream.denoise.pool.Closed`; empty where nothing said so), that returns the
    line. Called from a signal handler, which may run in the middle of another print: the
    streams are flushed where they can be, and ``line`` goes straight to the file descriptor."""
    from cryostream.interrupts import close_before_the_end

    written = []
    if not _ENDING:
        _ENDING.append(status)
        written = close_before_the_end()
    if callable(line):
        try:
            line = line(written)
        except Exception:  # (never in the way of ending)
            line = None
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # (a print the signal came in the middle of)
            stream.flush()
    if line:
        with contextlib.suppress(OSError):
            os.write(2, f"{line}\n".encode())
    for hook in LAST_WORDS:
        with contextlib.suppress(Exception):
            hook(status)
    os._exit(status)


#: What a second signal's line says of the work it stopped (:class:`StopSoftly`).
AT_ONCE = "what was in progress is not written (run the same command again to resume)"

#: How each signal is named to the user.
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def at_once(first: int, second: int) -> str:
    """How a second signal ended the process, naming it (and the first, where another):
    ``stopped at once (Ctrl-C again)``, ``terminated at once (SIGTERM again)``, ``stopped at
    once (Ctrl-C after SIGTERM)`` or ``terminated at once (SIGTERM after Ctrl-C)``."""
    how = "terminated at once" if second == signal.SIGTERM else "stopped at once"
    name = _NAMES.get(second, f"signal {second}")
    return f"{how} ({name} again)" if second == first else \
        f"{how} ({name} after {_NAMES.get(first, f'signal {first}')})"


def status_of(signum: int) -> int:
    """The exit status of a command stopped by ``signum``: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if signum == signal.SIGTERM else 130


class StopSoftly:
    """The SIGTERM handler of the command line, and the SIGINT handler of a command that
    finishes its work in progress (``first``: what it says of the first Ctrl-C, or a callable
    given :func:`~cryostream.interrupts.in_progress` that returns it; None for the others, whose
    SIGINT keeps Python's handler until a SIGTERM comes). The first signal raises
    :class:`KeyboardInterrupt` (Ctrl-C) or :class:`Terminated` (SIGTERM), printing ``first``
    (of SIGTERM in its words); the second, whichever it is, ends the process at once with the
    first's status (130 or 143), in one line naming it and saying ``at_once`` of the work in
    progress (a callable: given what was written as the process ended, :func:`end_now`). The
    first delivered twice at once is one. ``term``: what a first SIGTERM prints instead, where
    the command stops otherwise on it (denoise: at once; a callable, as ``first``). ``sigint``
    False (Ctrl-C ignored as the process started): after a SIGTERM, a Ctrl-C is still ignored,
    not taken as the second."""

    def __init__(self, command: str, first: str | Callable | None,
                 at_once: str | Callable[[list], str] = AT_ONCE,
                 term: str | Callable | None = None,
                 sigint: bool = True):
        self.command, self.first, self.arrivals = command, first, Arrivals()
        self.at_once, self.term, self.sigint = at_once, term, sigint
        self.again = None  # the first signal, its exception swallowed: raised again (swallowed)

    def _ended(self, first: int, second: int, written: list) -> str:
        """The line of a second signal (``written``: as :func:`end_now` gives it)."""
        words = self.at_once(written) if callable(self.at_once) else self.at_once
        return reworded(f"cryostream {self.command}: {at_once(first, second)}; {words}")

    def __call__(self, signum, frame):
        if self.again == signum:  # the first's exception, swallowed where it was raised
            self.again = None
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        if not self.arrivals.new(signum):  # the first, delivered twice
            return
        first = self.arrivals.first
        if self.arrivals.count > 1:
            end_now(status_of(first), lambda written: self._ended(first, signum, written))
        term = signum == signal.SIGTERM
        if term and self.sigint:  # a Ctrl-C while the command stops is the second, not
            signal.signal(signal.SIGINT, self)  # Python's interrupt
        if self.first:
            from cryostream.interrupts import in_progress, said_in_a_handler

            said = self.first(in_progress()) if callable(self.first) else self.first
            if term:
                instead = self.term(in_progress()) if callable(self.term) else self.term
                said = f"terminated (SIGTERM): {instead or as_sigterm(said)}"
            said_in_a_handler(lambda text: print(text, file=sys.stderr, flush=True),
                              reworded(f"cryostream {self.command}: {said}"))
        raise Terminated if term else KeyboardInterrupt


class EndAtOnce:
    """SIGINT's and SIGTERM's handler once a command has stopped on the first of them: a further
    one ends the process at once with ``status`` (the first's), printing ``line`` first where
    it is set (what the command had still to say). Made as the first is handled: a repeat of it
    within :data:`~cryostream.interrupts.DUPLICATE_S` is the same one, not counted.

    Python's own handler would raise :class:`KeyboardInterrupt` wherever the program was (as it
    says how it stopped, puts its handlers back, or shuts down), and print a traceback."""

    def __init__(self, status: int, line: str | None = None, sigint: bool = True):
        self.status, self.line, self.arrivals = status, line, Arrivals()
        self.arrivals.new(signal.SIGTERM if status == 143 else signal.SIGINT)  # the first
        self.sigint = sigint  # False: Ctrl-C ignored as the process started, and still

    def install(self) -> None:
        """Make this the handler of SIGINT (unless ignored: ``sigint``) and SIGTERM (from the
        main thread)."""
        if self.sigint:
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
        if self.arrivals.new(signum):  # not the first, delivered twice
            end_now(self.status, self.line)


def waited_for(work, on_stop):
    """``work()``'s result, computed in a thread of its own while this one, the main thread,
    waits for it, so that Ctrl-C and SIGTERM stop the command at once: a signal's handler runs
    in the main thread alone and only between Python's steps, and a network pass (XLA) or a
    NumPy call holds the thread it runs in until it returns (up to a minute on a CPU). Where
    the wait is interrupted (:class:`KeyboardInterrupt`, :class:`Terminated`), ``on_stop`` is
    called with the thread, which is left to end by itself (a daemon: Python's exit does not
    wait for it), and the interruption goes on. ``work``'s own errors are raised here. Outside
    the main thread, ``work()`` runs in this one."""
    import concurrent.futures
    import threading

    if threading.current_thread() is not threading.main_thread():
        return work()
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run():
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # (a KeyboardInterrupt of a report given up: nobody waits)
            future.set_exception(exc)

    thread = threading.Thread(target=run, name="cryostream-work", daemon=True)
    thread.start()
    try:
        while True:  # woken each 0.2 s: a signal the OS gave another thread is handled here
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:
        if not future.done():  # the wait interrupted, not the work's own error
            on_stop(thread)
        raise


def swallowed(unraisable) -> None:
    """:data:`sys.unraisablehook` while a command runs: a Ctrl-C's or SIGTERM's exception raised
    where Python cannot raise one (in a callback of the garbage collector, JAX's among them, or
    an object's ``__del__``: Python prints "Exception ignored" and goes on) is raised again in
    the main thread, so that the command stops as its note said it would (it had said so, then
    run to its end, status 0): the signal is sent to the main thread again, and its handler
    raises the same stop (not a second signal); anything else as Python's own hook does."""
    exc = unraisable.exc_value
    if not isinstance(exc, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)
        return
    import threading

    signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
    handler = signal.getsignal(signum)
    if isinstance(handler, StopSoftly):
        handler.again = signum
    # from another thread, once out of the callback: to the main thread, whose wait it wakes
    threading.Timer(0.01, _again, (signum,)).start()


def _again(signum: int) -> None:
    """:func:`swallowed`'s stop sent to the main thread, where the command still runs (its
    hook in place): once it has returned, SIGTERM's default would end the process unannounced
    and Python's Ctrl-C would raise after its end."""
    import threading

    if sys.unraisablehook is swallowed:
        signal.pthread_kill(threading.main_thread().ident, signum)
