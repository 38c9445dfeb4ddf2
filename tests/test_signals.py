"""Signals and closed pipes in real processes: the command piped into ``head`` (its stderr's
pipe closed early) still stops on Ctrl-C, and still finishes its work without one; denoise
stops at once on SIGTERM, giving up the micrographs in progress; a script's training stopped by
SIGTERM says in its traceback what it kept and how to go on."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest

import cryostream
from tests.faults_support import child_environment, leftovers, small_then_large, start_cli

#: The last line of a denoise that SIGTERM stopped (``{out}``: its output folder).
TERMINATED = ("cryostream denoise: terminated (SIGTERM) after N s; the finished micrographs are "
              "kept in {out}; those in progress are not written: run the same command again to "
              "denoise the rest (it skips the finished ones) and write denoised_micrographs.star")


def _whole_outputs(out: Path, shape: tuple[int, int]) -> list[str]:
    """The names of the outputs in ``out``, each checked whole (a valid MRC file of ``shape``
    and finite pixels, with its record); no partial file is left."""
    assert not leftovers(out), sorted(p.name for p in out.iterdir())
    images = sorted(out.glob("*.mrc"))
    for image in images:
        assert mrcfile.validate(str(image), print_file=io.StringIO()), image
        with mrcfile.open(image, permissive=False) as mrc:
            assert mrc.data.shape == shape and np.isfinite(mrc.data).all(), image
        assert json.loads(image.with_suffix(".json").read_text()), image
    return [p.name for p in images]


def test_ctrl_c_stops_denoise_whose_stderr_pipe_was_closed(tiny_run, tmp_path):
    """`cryostream denoise ... 2>&1 | head -1`: once the reader of its stderr has gone, the
    note of a Ctrl-C raised BrokenPipeError in its handler instead of KeyboardInterrupt, so the
    Ctrl-C stopped nothing: the command went on to denoise every micrograph (and then ended
    with a traceback no one saw, status 1). Now the closed pipe only silences it: the Ctrl-C
    stops it after the micrograph in progress, with status 130, each output written whole and
    none of those not started."""
    sim = cryostream.simulate(tmp_path / "sim", 6, shape=(512, 512), seed=5)
    out = tmp_path / "out"  # one at a time, each a second or so on a CPU: one in progress at
    # the Ctrl-C, and more not started
    proc = start_cli("denoise", *sim.micrographs, "-o", out, "-m", tiny_run.run,
                     "--no-ensemble", "--workers", "1", cwd=tmp_path)
    seen, first = [], threading.Event()

    def read() -> None:  # until the first micrograph is done, as `head` reads its lines
        for line in proc.stderr:
            seen.append(line)
            if "cryostream: denoised 1/6 " in line:
                first.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(timeout=120), "".join(seen)
        reader.join(timeout=5)
        proc.stderr.close()  # the reader has gone: the next note finds the pipe closed
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        status = proc.wait(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    assert status == 130 and seconds < 20, (status, seconds)
    names = _whole_outputs(out, (512, 512))
    assert 1 <= len(names) < 6, names  # the one done and the one in progress at most
    assert not (out / "denoised_micrographs.star").exists()  # written by a complete run only


def test_denoise_piped_into_head_finishes_its_work_with_status_0(tiny_run, tmp_path):
    """`cryostream denoise ... 2>&1 | head -1` (stdout and stderr one pipe, closed once `head`
    has its line): the micrographs were denoised, but the summary line written into the closed
    pipe raised BrokenPipeError, and the command ended with a traceback and status 1. Now the
    command goes on in silence: status 0, every output written and listed."""
    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(256, 256), seed=6)
    out = tmp_path / "out"
    command = " ".join([sys.executable, "-m", "cryostream", "denoise",
                        *map(str, sim.micrographs), "-o", str(out), "-m", str(tiny_run.run),
                        "--no-ensemble"])
    done = subprocess.run(["bash", "-c", f"{command} 2>&1 | head -1; "
                           "echo status ${PIPESTATUS[0]}"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=child_environment())
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("cryostream: "), done.stdout
    assert lines[1] == "status 0", done.stdout
    assert _whole_outputs(out, (256, 256)) == [m.name for m in sim.micrographs]
    assert (out / "denoised_micrographs.star").is_file()



def test_sigterm_stops_denoise_at_once_keeping_the_finished_micrographs(tmp_path):
    """SIGTERM (Slurm's scancel, a queue's time limit) while `cryostream denoise` has two
    micrographs of 2048² in progress on a CPU (a minute or more each): it waited for them to
    finish (43 s and more were measured), past Slurm's 30 s before its SIGKILL. Now it ends
    within seconds with status 143: those in progress are given up (no output, no partial
    file), the one finished is kept whole with its record, no STAR file is written, and the
    last line says what is kept and how to go on."""
    micrographs, _ = small_then_large(tmp_path / "mics")
    out = tmp_path / "out"  # two at once: the small one, done in seconds, then the large ones
    proc = start_cli("denoise", *micrographs, "-o", out, "--no-ensemble", "--workers", "2",
                     cwd=tmp_path)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        from tests.faults_support import wait_until

        assert wait_until(proc, lambda: "cryostream: denoised 1/3 a_small.mrc" in "".join(err),
                          timeout=240), "".join(err)
        time.sleep(1)  # both large ones under way
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=120)
        seconds = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
        reader.join(timeout=10)
    text = "".join(err)
    assert status == 143 and "Traceback" not in text, text
    assert seconds < 8, (seconds, text)
    lines = text.splitlines()
    assert lines[-2] == ("cryostream denoise: terminated (SIGTERM): stopping now: the "
                         "micrographs in progress are dropped, not written (an output being "
                         "written is finished first)"), text
    assert re.sub(r"after \d+ s", "after N s", lines[-1]) == TERMINATED.format(out=out), text
    assert _whole_outputs(out, (512, 512)) == ["a_small.mrc"]
    assert sorted(p.name for p in out.iterdir()) == ["a_small.json", "a_small.mrc"]


def test_a_micrograph_given_up_on_sigterm_writes_nothing_after_the_command_ends(tmp_path,
                                                                               capsys):
    """SIGTERM to `cryostream denoise` run in this process, whose thread denoising a micrograph
    cannot be stopped: the command ends at once (status 143), and that thread, left to finish
    its work, writes no output, partial file or note after the command's last line."""
    from cryostream.cli import main

    micrographs, _ = small_then_large(tmp_path / "mics", large=1024)  # some seconds each
    out = tmp_path / "out"
    before = set(threading.enumerate())

    def signal_once_the_small_one_is_done() -> None:
        while not (out / "a_small.json").is_file():
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_once_the_small_one_is_done, daemon=True).start()
    status = main(["denoise", *map(str, micrographs), "-o", str(out), "--raw", "--workers",
                   "2"])
    ended = capsys.readouterr().err.splitlines()
    left = [t for t in threading.enumerate()  # the pool's threads, still denoising
            if t not in before and t.name.startswith("ThreadPoolExecutor") and t.is_alive()]
    assert status == 143 and left, (status, left)
    for thread in left:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in left)
    assert re.sub(r"after \d+ s", "after N s", ended[-1]) == TERMINATED.format(out=out), ended
    assert capsys.readouterr().err == ""  # nothing more said once it had ended
    assert sorted(p.name for p in out.iterdir()) == ["a_small.json", "a_small.mrc"]


def test_an_output_being_written_at_sigterm_is_finished_and_none_starts_after():
    """The gate SIGTERM closes: an output being written as it comes (here a thread holding it
    open) is waited for, so it is whole before the command ends; one that comes to be written
    after it is refused (Abandoned), its micrograph given up."""
    from cryostream.denoise.pool import Abandoned, Gate

    gate, inside, release, closed = Gate(), threading.Event(), threading.Event(), []

    def write() -> None:
        with gate.writing():
            inside.set()
            release.wait(timeout=30)

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(timeout=30)
    closer = threading.Thread(target=lambda: closed.append(gate.close()))
    closer.start()
    time.sleep(0.3)
    assert closer.is_alive() and not closed  # waiting for the write under way
    release.set()
    closer.join(timeout=30)
    writer.join(timeout=30)
    assert closed == [None] and gate.closed
    with pytest.raises(Abandoned), gate.writing():
        pytest.fail("written after the gate closed")


#: A user's script as a batch job runs it: the shared run's training (``TINY_TRAIN``, for many
#: steps) of its store into ``RUN``, or a fit of its micrographs from scratch.
_SCRIPT = """
import dataclasses, sys
import cryostream
from tests.conftest import TINY_TRAIN

config = dataclasses.replace(TINY_TRAIN, steps=100_000, eval_every=100_000)
what, run, *inputs = sys.argv[1:]
if what == "train":
    cryostream.train(inputs[0], run, config)
else:
    cryostream.fit(inputs, run, start="scratch", patch_size=32, train=config)
"""


def _terminated(what: str, run: Path, *inputs: Path) -> tuple[int, str]:
    """Run :data:`_SCRIPT` (``what``: train or fit) and send it SIGTERM, as a batch system's
    time limit does, once ``run`` holds a checkpoint: its exit status and stderr."""
    from tests.faults_support import REPO, finished_steps, wait_until

    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, what, str(run), *map(str, inputs)],
                            cwd=REPO, env=child_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(proc, lambda: bool(finished_steps(run)), timeout=120), \
            proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


@pytest.mark.slow
def test_a_script_s_training_terminated_says_what_it_kept_and_how_to_go_on(tiny_run, tmp_path):
    """`cryostream.train` in a script, and SIGTERM (a batch system's kill): training holds it
    back as it holds Ctrl-C (the step under way finished and saved), then raises `Terminated`,
    whose traceback ended `cryostream.interrupts.Terminated` and no more. Now its message names
    the checkpoint kept, where, and how to go on; the call it names goes on from it."""
    from tests.faults_support import finished_steps

    run = tmp_path / "run"
    status, err = _terminated("train", run, tiny_run.store)
    kept = finished_steps(run)[-1]
    assert status == 1, err  # Python's status for an exception not caught (130 is Ctrl-C's)
    assert err.splitlines()[-1] == (
        f"cryostream.interrupts.Terminated: terminated (SIGTERM): the checkpoint of step {kept} "
        f"of 100000 is kept in {run / 'checkpoints' / str(kept)}; train(..., resume=True) with "
        "the same store, run and config continues from it"), err
    from cryostream.training import train
    from tests.conftest import TINY_TRAIN

    logged: list[str] = []  # the call it names, stopped a step on
    train(tiny_run.store, run, dataclasses.replace(TINY_TRAIN, steps=100_000,
                                                   eval_every=100_000),
          resume=True, stop_at=kept + 1, log=logged.append)
    assert logged[0] == f"resumed from step {kept}" and finished_steps(run)[-1] == kept + 1


@pytest.mark.slow
def test_a_script_s_fit_terminated_says_what_it_kept_and_how_to_go_on(tiny_run, tmp_path):
    """`cryostream.fit` in a script, SIGTERM during its training: the `Terminated` it raises
    names the checkpoint kept and the store, and says to call fit again (not train)."""
    from tests.faults_support import finished_steps

    run = tmp_path / "run"
    status, err = _terminated("fit", run, *tiny_run.sim.micrographs)
    kept = finished_steps(run)[-1]
    assert status == 1, err
    assert err.splitlines()[-1] == (
        f"cryostream.interrupts.Terminated: terminated (SIGTERM): the checkpoint of step {kept} "
        f"of 100000 is kept in {run / 'checkpoints' / str(kept)} and the store in "
        f"{run / 'work'}; call fit again with the same arguments to continue from that step"), err
