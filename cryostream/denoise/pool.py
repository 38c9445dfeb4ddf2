"""The micrographs of one ``denoise`` call, run in a thread pool here or on a Dask cluster:
their results in order, every bad micrograph named at the end (the others are denoised), an
error every micrograph would meet (the device's memory, a setting) or Ctrl-C stopping the run
as it comes. SIGTERM (a batch system's time limit) gives up the micrographs in progress here
at once: their threads cannot be stopped, so a :class:`Gate` lets none of them write its
output, or say anything (:func:`given_up`), after that; where none was in progress (the last
being written), the call ends as it would (:class:`AllFinished`, :func:`to_the_end`). A
second signal, which ends the process at once, closes the gate first: no output is cut, and the
process's last line says how many were written (:class:`Closed`). While the pool runs, a first
Ctrl-C's note says how many micrographs are in progress and about how long they take to finish
(:func:`~cryostream.interrupts.told_in_progress`)."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator
from typing import NamedTuple

from cryostream.errors import (
    ConfigError,
    DeviceMemoryError,
    InvalidMicrographError,
    OutputTakenError,
    one_error,
)
from cryostream.interrupts import Terminated

__all__ = ["finish", "finish_here", "Gate", "Closed", "Abandoned", "AllFinished", "to_the_end",
           "given_up", "stopped_call", "SCRIPT_STOPPING", "NONE_LEFT", "in_a_script", "stop_on_first",
           "gather", "Removed", "removed_at_the_end"]


class Abandoned(Exception):
    """A micrograph whose output was not written: the call gave it up (SIGTERM) first."""


class AllFinished(Terminated):
    """SIGTERM as the last micrographs of a call were being written, or after (as its STAR
    file was): none was given up, so the call ends as it would (its STAR file,
    :func:`to_the_end`), and then stops on it, this the record that every micrograph was
    finished. ``results``: the micrographs' results, in order (empty where the signal came
    after them)."""

    def __init__(self, results: list):
        super().__init__()
        self.results = results


#: Of a thread of :func:`finish_here`'s pool: the gate of the micrograph it denoises
#: (``gate``) and whether its output was let through (``through``).
_here = threading.local()


class Closed(NamedTuple):
    """What a call's :class:`Gate` had let be written when it closed
    (:meth:`Gate.close_counted`): ``written`` outputs, each whole (all the call wrote),
    ``finished`` of them being written as it closed (waited for), and ``cut``, those being
    written still unfinished when the wait ended (held up: a hidden temporary file, which the
    next run makes again)."""

    written: int
    finished: int
    cut: int


class Gate:
    """Whether the outputs of a call may still be written: :meth:`writing` holds one open
    while it is written, :meth:`close` (SIGTERM) lets no more start and waits for those being
    written, so that nothing of the call is written after it returns, and nothing in part.
    ``entered``: how many outputs were let through (each micrograph's once); ``written``: how
    many were written whole."""

    def __init__(self) -> None:
        self.closed, self.entered, self.written, self._writing, self._outputs = \
            False, 0, 0, 0, 0
        self._change = threading.Condition()  # (reentrant: a signal's handler may close it)

    @contextlib.contextmanager
    def writing(self, output: bool = True) -> Iterator[None]:
        """Around an output's writing (and its note; ``output`` False: a note alone, of a
        micrograph skipped): :class:`Abandoned` once closed."""
        with self._change:
            if self.closed:
                raise Abandoned("given up before its output was written")
            self._writing, self.entered = self._writing + 1, self.entered + 1
            self._outputs += output
            _here.through = True
        whole = False
        try:
            yield
            whole = True
        finally:
            with self._change:
                self._writing, self._outputs = self._writing - 1, self._outputs - output
                self.written += output and whole
                self._change.notify_all()

    def close(self, timeout: float = 20.0) -> None:
        """No output starts being written from now on; those being written are finished, waited
        for ``timeout`` seconds at most (one held up by a disk or another call's listing is left
        unfinished, a hidden temporary file, and made again by the next run), so that a batch
        system's SIGKILL, 30 s after its SIGTERM by default, does not come first."""
        with self._change:
            self.closed = True
            self._change.wait_for(lambda: not self._writing, timeout=timeout)

    def close_counted(self, timeout: float = 20.0) -> Closed:
        """:meth:`close`, then what was written (:class:`Closed`), for the last line of a
        process that ends at once."""
        with self._change:
            before = self.written
            self.close(timeout)
            return Closed(self.written, self.written - before, self._outputs)


def given_up() -> bool:
    """Whether this thread denoises a micrograph that its call gave up (its gate closed before
    its output was let through): its notes and warnings are not said (the command has ended,
    or a script's call has returned, while the thread goes on)."""
    gate = getattr(_here, "gate", None)
    return gate is not None and gate.closed and not getattr(_here, "through", False)


def _through(gate: Gate, running: set, took: list, job, item):
    """``job(item, gate=gate)`` in a thread of :func:`finish_here`'s pool, silent once given up
    (:func:`given_up`); the thread is in ``running`` while it runs (its micrograph in
    progress, whose pass notes tell how far it is: :func:`_in_progress`), and the seconds a
    micrograph took from its pass notes' making go to ``took``."""
    import time

    from cryostream.denoise.pace import forget_notes, notes_of

    _here.gate, _here.through = gate, False
    forget_notes()  # (the last micrograph's, done)
    running.add(threading.get_ident())
    try:
        result = job(item, gate=gate)
        notes = notes_of(threading.get_ident())
        if notes is not None:  # (none for a micrograph skipped)
            took.append(time.perf_counter() - notes.start)
        return result
    finally:
        running.discard(threading.get_ident())
        forget_notes()
        _here.gate = None


#: What a ``denoise`` call tells is in progress (:func:`~cryostream.interrupts.told_in_progress`)
#: once its micrographs are finished, as its STAR file is written (and the command line's, as
#: it says what it did), for a first Ctrl-C's note: none is, and none is left to begin.
NONE_LEFT = "none left"


def _in_progress(running: set, took: list) -> tuple[int, float]:
    """How many micrographs are in progress in the pool's threads ``running``, and about how
    many seconds they take to finish (:func:`~cryostream.denoise.pace.finishing_seconds`, with
    the median of the seconds those finished ``took``: NaN where no pace is known yet)."""
    import statistics

    from cryostream.denoise.pace import finishing_seconds

    threads, took = list(running), list(took)
    return len(threads), finishing_seconds(threads, statistics.median(took) if took else math.nan)


_quieting = threading.Lock()


def _quiet_given_up() -> None:
    """Let no thread :func:`given_up` say anything: a filter of the ``cryostream`` logger (its
    notes) and, in front of :func:`warnings.showwarning`, one of its warnings (installed once in
    a process, and again where something replaced it since)."""
    import warnings

    logging.getLogger("cryostream").addFilter(_said)  # (once: a filter is not added twice)
    with _quieting:
        if getattr(warnings.showwarning, "_cryostream_given_up", False):
            return
        shown = warnings.showwarning

        def show(*args, **kwargs):
            if not given_up():
                return shown(*args, **kwargs)

        show._cryostream_given_up = True
        warnings.showwarning = show


def _said(record: logging.LogRecord) -> bool:
    return not given_up()


def finish_here(job, todo, total: int, workers: int, progress=None) -> list:
    """:func:`finish` in a pool of ``workers`` threads here, ``job`` given a :class:`Gate`
    (``gate=``); ``progress`` (a :class:`~cryostream.denoise.micrograph.Progress`) told to
    stop on Ctrl-C. After SIGTERM the pool's threads are not waited for: their micrographs are
    given up, and the gate keeps them from writing or saying anything; where none was given
    up (the last were being written), :class:`AllFinished`. A process ended at once meanwhile
    (a second signal) closes the gate first: no output is cut (:meth:`Gate.close_counted`).
    Meanwhile a first Ctrl-C's note is told what is in progress (:func:`_in_progress`)."""
    import concurrent.futures
    import functools

    from cryostream.interrupts import closed_before_the_end, told_in_progress

    _quiet_given_up()
    gate, pool, running, took = Gate(), concurrent.futures.ThreadPoolExecutor(workers), set(), []
    futures: list = []
    on_stop = None if progress is None else progress.stop
    with closed_before_the_end(gate.close_counted):  # (to the pool's end: its wait too)
        try:
            with told_in_progress(functools.partial(_in_progress, running, took)):
                return finish(pool, functools.partial(_through, gate, running, took, job), todo,
                              total, on_stop, gate, futures)
        except Terminated:  # (closed already where finish met it)
            gate.close()
            if gate.entered < len(todo):  # some given up
                raise
            concurrent.futures.wait(futures)  # (each past its output: returning)
            results = gather(futures, total)
            if all(r is None for r in results):  # all skipped: the call's own error
                raise
            raise AllFinished(results) from None
        finally:
            pool.shutdown(wait=not gate.closed, cancel_futures=True)


def to_the_end(end, stop: Terminated | None = None):
    """``end()``, what ends a call whose micrographs are all finished (its STAR file: fast),
    made whole though SIGTERM comes meanwhile (made again, whole, where the signal cut it); the
    SIGTERM then goes on as :class:`AllFinished` (``stop``: one that came as the last
    micrographs were written), for the command to end 143 saying so. An error of ``end()``
    (the STAR file not written) goes on instead."""
    try:
        result = end()
    except Terminated:  # every micrograph was finished: the stop says so
        stop, result = stop or AllFinished([]), end()
    if stop is not None:
        raise stop
    return result


def finish(pool, job, todo, total: int, on_stop=None, gate: Gate | None = None,
           futures: list | None = None) -> list:
    """``job`` over ``todo`` in ``pool`` (:func:`gather`). On Ctrl-C or an error every
    micrograph would meet (memory, a setting) those not started are dropped and those in
    progress finish (their outputs whole); after Ctrl-C (``on_stop`` called first), if every
    one had finished, the run completes (its STAR file is written), else the interrupt goes
    on. SIGTERM (:class:`~cryostream.interrupts.Terminated`) with a ``gate`` (the one ``job``
    writes through) does not wait for those in progress: the gate is closed (an output being
    written is finished first) and the interrupt goes on at once. ``futures``: a list the
    jobs' futures are put in, as they are submitted."""
    import concurrent.futures

    futures = [] if futures is None else futures
    warned: set = set()
    try:  # (a Ctrl-C as they are submitted, the first already begun, waits for it too)
        futures.extend(pool.submit(job, item) for item in todo)
        stop_on_first(concurrent.futures.as_completed(futures), len(futures) > 1, warned)
        return gather(futures, total)
    except (DeviceMemoryError, ConfigError):  # every micrograph would fail so: none more starts
        for f in futures:
            f.cancel()
        raise
    except KeyboardInterrupt as stop:
        if on_stop is not None:
            on_stop()
        for f in futures:
            f.cancel()
        if gate is not None and isinstance(stop, Terminated):  # those in progress given up
            gate.close()
            raise
        if gate is not None and in_a_script() and any(f.running() for f in futures):
            logging.getLogger("cryostream").warning(SCRIPT_STOPPING)
        try:
            concurrent.futures.wait(futures)
        except KeyboardInterrupt as again:  # a script's second Ctrl-C (the command line's
            if gate is not None:            # ends the process): those in progress given up
                gate.close()
            raise again from None
        stop_on_first([f for f in futures if not f.cancelled()], len(futures) > 1, warned)
        if any(f.cancelled() for f in futures) or len(futures) < len(todo):
            raise
        return gather(futures, total)  # all done: the run completes, or names its bad ones


#: What a script is told at its first Ctrl-C while micrographs are in progress (the command
#: line says it in its own words: cryostream.cli.kept).
SCRIPT_STOPPING = ("interrupted: stopping after the micrographs in progress (each is written "
                   "whole or not at all; none more starts); Ctrl-C again to give them up")


def in_a_script() -> bool:
    """Whether Ctrl-C has Python's own handler here: a script's call (the command line's
    handler says what happens itself)."""
    import signal

    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


def stopped_call(stop: BaseException, made, output) -> None:
    """What a ``denoise`` call stopped by ``stop`` leaves: the output folder it ``made`` removed
    where it holds nothing, and a script's Ctrl-C (a plain :class:`KeyboardInterrupt`) given
    the words its traceback ends with: what is kept in ``output`` and how to go on
    (:func:`~cryostream.interrupts.say_kept`)."""
    from pathlib import Path

    from cryostream.interrupts import say_kept
    from cryostream.io.paths import drop_empty

    drop_empty(made)  # the folder this call made, where it holds nothing: leave no trace
    if type(stop) is not KeyboardInterrupt:
        return
    if output is None:
        say_kept(stop, "nothing is kept (the micrographs were denoised in memory)",
                 "call denoise again to denoise them")
    elif not Path(output).is_dir():
        say_kept(stop, "no micrograph was finished and nothing was written",
                 "call denoise again with the same arguments to denoise them")
    else:
        say_kept(stop, f"the finished micrographs are kept in {output}", "call denoise again "
                 "with the same arguments to denoise the rest (it skips the finished ones) and "
                 "write denoised_micrographs.star")


class Removed(NamedTuple):
    """The output ``folder`` a ``denoise`` call made, removed as the process ended at once (a
    second Ctrl-C): it held nothing (:func:`removed_at_the_end`)."""

    folder: object


def removed_at_the_end(made) -> Removed | None:
    """As the process ends at once (:func:`~cryostream.interrupts.closed_before_the_end`, after
    the call's outputs being written are finished: its :class:`Gate`), the output folder the
    call ``made`` (None: it was there before: never removed) removed where it holds nothing,
    as a call stopped otherwise leaves it (:func:`stopped_call`); :class:`Removed`, or None
    where it is kept."""
    from cryostream.io.paths import drop_empty

    drop_empty(made)
    return Removed(made) if made is not None and not made.exists() else None


def stop_on_first(completed, warn: bool, warned: set) -> None:
    """Raise the first error every micrograph would meet (memory, a setting) among the futures
    as they complete, not in their order (one late in the list stops the run at once); with
    ``warn``, a warning for each micrograph that fails its checks as it does (each once:
    ``warned`` holds those said)."""
    for future in completed:
        error = future.exception()
        if isinstance(error, DeviceMemoryError | ConfigError):
            raise error
        if warn and isinstance(error, InvalidMicrographError) and id(future) not in warned:
            warned.add(id(future))
            logging.getLogger("cryostream").warning(
                "%s: not denoised: %s; going on with the others", error.path, error.problem)


def gather(futures, total: int) -> list:
    """The futures' results in order. A micrograph that fails its checks does not stop the
    others: each is denoised, then one error names every failed micrograph and its problem
    (the STAR file, written last, is not; a rerun keeps the finished outputs)."""
    results, failed = [], []
    for future in futures:
        try:
            results.append(future.result())
        except InvalidMicrographError as exc:
            failed.append(exc)
            results.append(None)
    if failed:  # one micrograph alone: its own error
        taken = all(isinstance(e, OutputTakenError) for e in failed)  # made meanwhile elsewhere
        raise one_error(failed, total, "not written: their outputs were made meanwhile by another "
                        "call (--overwrite replaces them, or choose another -o); the others are "
                        "denoised" if taken else "not denoised: repair or exclude them "
                        "(--permissive (Python: permissive=True) skips them); the others are "
                        "denoised, and a rerun keeps them", single=len(futures) == 1,
                        kind=OutputTakenError if taken else InvalidMicrographError)
    return results
