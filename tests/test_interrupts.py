"""Ctrl-C held back to a safe point: the first one noted and remembered, a second one stops
at once, and SIGINT handled as before outside the block, in other threads, or when the
program handles it itself."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from cryostream.interrupts import DUPLICATE_S, held_interrupt


def test_the_first_ctrl_c_is_noted_and_the_second_stops():
    said = []
    with held_interrupt("stopping after this step", said.append) as interrupt:
        interrupt.check()  # nothing yet
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested and said == ["stopping after this step"]
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert not interrupt.forced  # the first: stop at a safe point, saving the work
        time.sleep(DUPLICATE_S)  # a second press, not the first delivered twice
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert interrupt.forced  # the second: stop at once, save nothing more
    assert said == ["stopping after this step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # Python's own again
        signal.raise_signal(signal.SIGINT)


def test_the_first_ctrl_c_delivered_twice_at_once_is_one():
    """``timeout -s INT 2h cryostream train …`` sends its signal to the process and again to
    its group, milliseconds apart, from another process: one Ctrl-C (the step under way is
    saved), not a second that stops at once. In a child process, which a second would end."""
    script = ("import os, subprocess, sys, time\n"
              "from cryostream.interrupts import held_interrupt\n"
              "with held_interrupt('stopping', print) as interrupt:\n"
              "    pid = os.getpid()\n"
              "    subprocess.run(['sh', '-c', f'kill -s INT {pid}; sleep 0.01; kill -s INT {pid}'])\n"
              "    time.sleep(0.3)\n"
              "    print(interrupt.requested, interrupt.forced)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["stopping", "True False"]


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
            time.sleep(DUPLICATE_S)
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


def test_sigint_ignored_stays_so_and_sigterm_alone_is_held_back():
    """A process started with SIGINT ignored (a background job of a job script): SIGTERM, the
    batch system's time limit, had not been held back (it raised where the step was, or ended
    the process); now it is, as where Ctrl-C has Python's handler, and Ctrl-C stays ignored."""
    from cryostream.interrupts import Terminated

    said = []

    def ending(signum, frame):
        raise AssertionError("SIGTERM not held back: it ends the process here")

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous = signal.signal(signal.SIGTERM, ending)
    try:
        with held_interrupt("interrupted: stopping after this step (Ctrl-C again stops at once)",
                            said.append) as interrupt:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored, as the process was started
            assert not interrupt.requested
            signal.raise_signal(signal.SIGTERM)  # held back: noted, not raised here
            assert interrupt.requested and interrupt.terminated
            assert said == ["terminated (SIGTERM): stopping after this step (SIGTERM again stops "
                            "at once)"]
            with pytest.raises(Terminated):
                interrupt.check()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is ending
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, previous)


def test_another_thread_installs_nothing():
    seen = []

    def work():
        with held_interrupt("never said", print) as interrupt:
            seen.append((signal.getsignal(signal.SIGINT), interrupt.requested))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [(signal.default_int_handler, False)]


def test_terminated_is_cryostream_terminated():
    """A job script catches SIGTERM's exception as ``cryostream.Terminated`` (it had to import
    it from the submodule ``cryostream.interrupts``): the same class, a KeyboardInterrupt."""
    import cryostream
    from cryostream import interrupts

    assert cryostream.Terminated is interrupts.Terminated and "Terminated" in cryostream.__all__
    assert issubclass(cryostream.Terminated, KeyboardInterrupt)


def test_sigterm_raised_raises_terminated_once_then_puts_the_default_back():
    """Within :func:`sigterm_raised` SIGTERM raises Terminated where the program is (a fit
    preparing its store); its default handler is back after. A program's own handler is kept."""
    from cryostream.interrupts import Terminated, sigterm_raised

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(Terminated), sigterm_raised():
        signal.raise_signal(signal.SIGTERM)
        pytest.fail("SIGTERM did not stop the block")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def own(signum, frame):
        own.called = True

    signal.signal(signal.SIGTERM, own)
    try:
        with sigterm_raised():
            signal.raise_signal(signal.SIGTERM)
        assert own.called and signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_a_second_sigterm_ends_the_process_as_its_default_does():
    """A second SIGTERM within :func:`sigterm_raised` (while the first's Terminated is being
    handled) ends the process as SIGTERM's default does; the first delivered twice at once
    (``timeout``: to the process and its group) is one. In a child process."""
    script = ("import os, signal, subprocess, time\n"
              "from cryostream.interrupts import Terminated, sigterm_raised\n"
              "pid = os.getpid()\n"
              "with sigterm_raised():\n"
              "    try:\n"
              "        subprocess.run(['sh', '-c', f'kill {pid}; sleep 0.01; kill {pid}'])\n"
              "        time.sleep(5)\n"
              "    except Terminated:  # (what is kept, said)\n"
              "        print('stopped once', flush=True)\n"
              "        time.sleep(0.3)\n"
              "        os.kill(pid, signal.SIGTERM)\n"
              "        time.sleep(5)\n"
              "print('not ended')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout == "stopped once\n", result.stderr
    assert result.returncode == -signal.SIGTERM


SWALLOWED = '''
import argparse, gc, os, signal, sys, time
from cryostream.cli.common import run_command

def work(args):
    sent = []

    def callback(phase, info):  # as JAX's: the collector's callbacks cannot raise
        if phase == "start" and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)

    gc.callbacks.append(callback)
    gc.collect()
    gc.callbacks.remove(callback)
    time.sleep(3)
    print("ran to its end", flush=True)
    return 0

sys.exit(run_command(argparse.Namespace(command="denoise", func=work, output=sys.argv[1])))
'''


def test_a_ctrl_c_swallowed_by_a_garbage_collector_callback_still_stops_the_command(tmp_path):
    """A Ctrl-C that comes while the main thread is in a callback of the garbage collector (JAX
    has one; seen about 2 s into denoise) had its exception swallowed there ("Exception ignored
    in ..."): the command said it was stopping, then ran to its end, status 0. It is raised
    again in the main thread: the command stops, status 130, with its last line."""
    import subprocess
    import sys

    script = tmp_path / "swallowed.py"
    script.write_text(SWALLOWED)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert "ran to its end" not in done.stdout, done.stderr
    assert done.returncode == 130, done.stderr
    assert "Exception ignored" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("cryostream denoise: interrupted"), \
        done.stderr


#: A program whose stderr's raw writes are Python code, the first Ctrl-C coming in the middle
#: of one (as it may in a progress bar's write): the handler then runs inside the stream's lock.
_IN_A_WRITE = """
import io, os, signal, sys
from cryostream.interrupts import held_interrupt

class Raw(io.FileIO):
    fire = False

    def write(self, data):
        if Raw.fire:
            Raw.fire = False
            os.kill(os.getpid(), signal.SIGINT)  # handled at the next step, still in this write
        return super().write(data)

sys.stderr = io.TextIOWrapper(io.BufferedWriter(Raw(2, "w", closefd=False)), line_buffering=True)
with held_interrupt("stopping after this step",
                    log=lambda text: print(text, file=sys.stderr, flush=True)) as interrupt:
    Raw.fire = True
    print("train: 1%", file=sys.stderr, flush=True)
    print(f"requested {interrupt.requested}", file=sys.stderr, flush=True)
"""


def test_a_first_ctrl_c_in_the_middle_of_a_write_to_stderr_is_noted_not_a_traceback():
    """A first Ctrl-C that came while the progress bar wrote to stderr printed its note into
    the same stream from the handler, inside the write's lock: ``RuntimeError: reentrant
    call``, and the training ended in a traceback (seen in a real ``train`` on two loaded
    cores). The note is written once the interrupted write is done, and the program goes on."""
    done = subprocess.run([sys.executable, "-c", _IN_A_WRITE], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "reentrant" not in done.stderr, done.stderr
    assert sorted(done.stderr.splitlines()) == ["requested True", "stopping after this step",
                                                "train: 1%"]
