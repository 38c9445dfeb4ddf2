"""Ctrl-C held back to a safe point: the first one noted and remembered, a second one stops
at once, and SIGINT handled as before outside the block, in other threads, or when the
program handles it itself."""

from __future__ import annotations

import signal
import threading

import pytest

from cryostream.interrupts import held_interrupt


def test_the_first_ctrl_c_is_noted_and_the_second_stops():
    said = []
    with held_interrupt("stopping after this step", said.append) as interrupt:
        interrupt.check()  # nothing yet
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested and said == ["stopping after this step"]
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert not interrupt.forced  # the first: stop at a safe point, saving the work
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert interrupt.forced  # the second: stop at once, save nothing more
    assert said == ["stopping after this step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # Python's own again
        signal.raise_signal(signal.SIGINT)


def test_sigterm_is_held_to_the_safe_point_too():
    """A batch system's time limit (SIGTERM) inside the block: noted, the work goes on to the
    safe point, which stops it with Terminated (status 143 on the command line); a second
    SIGTERM stops at once; the handler before is put back."""
    from cryostream.interrupts import Terminated

    said = []

    def before(signum, frame):
        raise AssertionError("the handler before the block: not called within it")

    previous = signal.signal(signal.SIGTERM, before)
    try:
        with held_interrupt("stopping after this step", said.append) as interrupt:
            signal.raise_signal(signal.SIGTERM)
            assert interrupt.requested and interrupt.terminated and said
            with pytest.raises(Terminated):
                interrupt.check()
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)
            assert interrupt.forced
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_program_that_handles_sigint_keeps_its_way():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with held_interrupt("never said", print) as interrupt:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored, as the program asked
            assert not interrupt.requested
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_another_thread_installs_nothing():
    seen = []

    def work():
        with held_interrupt("never said", print) as interrupt:
            seen.append((signal.getsignal(signal.SIGINT), interrupt.requested))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [(signal.default_int_handler, False)]
