"""Ctrl-C held back to a safe point: work that must not stop halfway (a training step whose
old state is already given up, a checkpoint half written) notes the first interrupt, finishes
what it is doing, keeps it, and then stops with :class:`KeyboardInterrupt`; a second Ctrl-C
stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["Interrupt", "Terminated", "held_interrupt", "ending_at_once", "DUPLICATE_S",
           "Arrivals", "as_sigterm", "say_kept", "closed_before_the_end", "close_before_the_end",
           "told_in_progress", "in_progress", "sigterm_raised", "said_in_a_handler"]

#: A second signal this soon after the first is the same one delivered twice (``timeout`` sends
#: it to the process and again to its process group), not a second Ctrl-C.
DUPLICATE_S = 0.1


class Arrivals:
    """The signals a handler has met, a repeat of the first within :data:`DUPLICATE_S` not
    counted (the same signal: a Ctrl-C just after SIGTERM is a second). ``first``: the first's
    number (None where not given)."""

    def __init__(self) -> None:
        self.count, self.first_at, self.first = 0, 0.0, None

    def new(self, signum: int | None = None) -> bool:
        """Count a signal that just came; False (not counted) for the first's repeat."""
        import time

        now = time.monotonic()
        if self.count and signum == self.first and now - self.first_at < DUPLICATE_S:
            return False
        self.count += 1
        if self.count == 1:
            self.first_at, self.first = now, signum
        return True


def as_sigterm(note: str) -> str:
    """A note written for Ctrl-C, said of SIGTERM: ``interrupted: …`` becomes ``terminated
    (SIGTERM): …``, and ``Ctrl-C again`` ``SIGTERM again``."""
    if note.startswith("interrupted: "):
        note = "terminated (SIGTERM): " + note.removeprefix("interrupted: ")
    return note.replace("Ctrl-C again", "SIGTERM again")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time limit, ``kill``), where cryostream turns it into an
    exception: it stops work as a first Ctrl-C does, and the command ends with status 143.
    ``cryostream.train`` and ``cryostream.fit`` raise it in a script, its message saying what
    is kept and how to go on; a job script catches it as ``cryostream.Terminated``."""


def say_kept(stop: KeyboardInterrupt, kept: str, then: str, *, over: bool = False) -> None:
    """Give ``stop``, the interrupt a training raises once it has kept its step, the words its
    traceback ends with: how it stopped, what is ``kept`` (the checkpoint and its folder) and,
    ``then``, how to go on: ``terminated (SIGTERM): the checkpoint of step 40 of 200 is kept in
    RUN/checkpoints/40; train(..., resume=True) continues from it``. One with words of its own
    (raised so by a caller's callback) keeps them, unless ``over`` (a call that knows better
    how to go on: ``fit``)."""
    if stop.args and not over:
        return
    how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
    stop.args = (f"{how}: {kept}; {then}",)


class Interrupt:
    """Whether a Ctrl-C came while :func:`held_interrupt` held it back.

    Attributes
    ----------
    requested : bool
        A first Ctrl-C came: stop at the next safe point (:meth:`check`).
    forced : bool
        A second Ctrl-C came: stop at once, saving nothing more.
    """

    def __init__(self) -> None:
        self.requested = False
        self.forced = False
        self.terminated = False  # the request was SIGTERM's

    def check(self) -> None:
        """Raise :class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) if one came;
        call it where stopping is safe."""
        if self.requested:
            raise Terminated if self.terminated else KeyboardInterrupt


#: The functions :func:`ending_at_once` gave, innermost last.
_ENDINGS: list[Callable[[int, int], object]] = []


@contextlib.contextmanager
def ending_at_once(end: Callable[[int, int], object]) -> Iterator[None]:
    """While the block runs, the second signal that :func:`held_interrupt` meets calls
    ``end(first, second)`` (the two signals' numbers, SIGINT or SIGTERM each), which ends the
    process (the command line: one line, then the first's status), instead of raising
    :class:`KeyboardInterrupt` wherever the program is: in a checkpoint's save, whose writer
    threads then print errors of their own and leave its temporary folder, or in a garbage
    collector's callback, where Python prints a traceback and drops it."""
    _ENDINGS.append(end)
    try:
        yield
    finally:
        _ENDINGS.remove(end)


#: What :func:`closed_before_the_end` gave, innermost last.
_CLOSINGS: list[Callable[[], object]] = []


@contextlib.contextmanager
def closed_before_the_end(close: Callable[[], object]) -> Iterator[None]:
    """While the block runs, a process that ends at once (a second signal:
    :func:`cryostream.cli.signals.end_now`) first calls ``close()``, which returns once nothing
    is being written in part (a denoise call's outputs under way are finished and none starts:
    :class:`~cryostream.denoise.pool.Gate`), and what was written (None: nothing to say), for
    the process's last line."""
    _CLOSINGS.append(close)
    try:
        yield
    finally:
        _CLOSINGS.remove(close)


@contextlib.contextmanager
def sigterm_raised() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` where the program is, as Ctrl-C
    raises :class:`KeyboardInterrupt`, for a call whose caller says what is kept (``fit``
    preparing its store, which has no step to finish); a second SIGTERM ends the process as
    SIGTERM's default does (the first delivered twice at once is one: :data:`DUPLICATE_S`).
    Only in the main thread and where SIGTERM has its default handler (a program's own, or the
    command line's, keeps its way); the handler before is put back after."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    arrivals = Arrivals()

    def handler(signum, frame) -> None:
        if not arrivals.new(signum):  # the first, delivered twice
            return
        if arrivals.count > 1:  # stop at once, as the default would have
            import os

            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def close_before_the_end() -> list:
    """Call what :func:`closed_before_the_end` gave, innermost first (the process is about to
    end at once), each error let be; what they returned, None left out."""
    said = []
    for close in reversed(list(_CLOSINGS)):
        with contextlib.suppress(Exception):
            said.append(close())
    return [s for s in said if s is not None]


#: What :func:`told_in_progress` gave, innermost last.
_TELLERS: list[Callable[[], object]] = []


@contextlib.contextmanager
def told_in_progress(tell: Callable[[], object]) -> Iterator[None]:
    """While the block runs, :func:`in_progress` asks ``tell()`` what is in progress (a denoise
    call's micrographs: how many, and about how long they take to finish), for the note of a
    first Ctrl-C, which lets them finish."""
    _TELLERS.append(tell)
    try:
        yield
    finally:
        _TELLERS.remove(tell)


def in_progress() -> object:
    """What the innermost :func:`told_in_progress` tells, or None (none, or it failed: it is
    asked from a signal's handler, and never stands in the way of stopping)."""
    try:
        return _TELLERS[-1]() if _TELLERS else None
    except Exception:
        return None


def said_in_a_handler(log: Callable[[str], object], text: str) -> None:
    """``log(text)`` from a signal's handler. Python runs the handler in the main thread
    between two of its steps, which may be inside a write to the same stream (a progress bar's
    line): the stream's lock is then held by the write the handler interrupted, and writing
    again raises ``RuntimeError: reentrant call``, which had turned a first Ctrl-C into a
    traceback. There the note is written by a thread of its own instead, once the interrupted
    write is done."""
    try:
        log(text)
    except RuntimeError as error:
        if "reentrant" not in str(error):
            raise
        threading.Thread(target=log, args=(text,), name="cryostream-signal-note").start()


@contextlib.contextmanager
def held_interrupt(note: str | Callable[[], str],
                   log: Callable[[str], object] = print) -> Iterator[Interrupt]:
    """Hold Ctrl-C (SIGINT) and SIGTERM back while the block runs: the first sets
    :attr:`Interrupt.requested` and logs ``note`` (say what happens next; of SIGTERM, in its
    words: :func:`as_sigterm`; a callable gives it as the signal comes), a second (either signal) raises
    :class:`KeyboardInterrupt` where the program is, or ends the process where the program
    said how (:func:`ending_at_once`; the first delivered twice at once is one:
    :data:`DUPLICATE_S`). The handler before is put back after.

    Only in the main thread and when SIGINT has Python's default handler (a program that
    handles SIGINT itself keeps its own way); otherwise the block runs as it is and
    :attr:`Interrupt.requested` stays ``False``. Where SIGINT is ignored (a process started so:
    a background job of a shell script, ``cmd &``), it stays ignored and SIGTERM alone is held
    back (a batch system's time limit then keeps the step under way too).

    Examples
    --------
    >>> with held_interrupt("stopping after this step") as interrupt:
    ...     for step in range(3):
    ...         interrupt.check()  # a safe point: the work so far is whole
    """
    interrupt, arrivals = Interrupt(), Arrivals()
    main = threading.current_thread() is threading.main_thread()
    sigint = main and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if not sigint and not (main and signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield interrupt
        return

    def handler(signum, frame) -> None:
        term = signum == signal.SIGTERM
        if not arrivals.new(signum):  # the first, delivered twice
            return
        if interrupt.requested:
            interrupt.forced = True
            if _ENDINGS:
                _ENDINGS[-1](signal.SIGTERM if interrupt.terminated else signal.SIGINT, signum)
            raise Terminated if term else KeyboardInterrupt
        interrupt.requested, interrupt.terminated = True, term
        said = note() if callable(note) else note
        said_in_a_handler(log, as_sigterm(said) if term else said)

    if sigint:  # (ignored: kept so)
        signal.signal(signal.SIGINT, handler)
    term = signal.signal(signal.SIGTERM, handler)  # held the same way (a time limit)
    try:
        yield interrupt
    finally:
        if sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if term is None else term)
