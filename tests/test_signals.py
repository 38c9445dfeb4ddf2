"""Signals and closed pipes in real processes: the command piped into ``head`` (its stderr's
pipe closed early) still stops on Ctrl-C, and still finishes its work without one; denoise
stops at once on SIGTERM, giving up the micrographs in progress; a script's training stopped by
SIGTERM says in its traceback what it kept and how to go on, and the training guide's job
script, which catches it (`cryostream.Terminated`), ends as the guide says."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
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
    micrographs, _ = small_then_large(tmp_path / "mics", small=256)
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
    assert _whole_outputs(out, (256, 256)) == ["a_small.mrc"]
    assert sorted(p.name for p in out.iterdir()) == ["a_small.json", "a_small.mrc"]


@pytest.mark.slow  # (the suite's time: kept for make test-all)
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


def test_a_write_held_up_is_waited_for_a_bounded_time():
    """A write held up (a disk, another call's listing: up to 120 s) is waited for ``timeout``
    seconds at most, so the command ends before a batch system's SIGKILL; none starts after."""
    from cryostream.denoise.pool import Abandoned, Gate

    gate, inside, release = Gate(), threading.Event(), threading.Event()

    def write() -> None:
        with gate.writing():
            inside.set()
            release.wait(timeout=30)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert inside.wait(timeout=30)
    start = time.monotonic()
    gate.close(timeout=0.5)
    assert 0.4 < time.monotonic() - start < 5 and gate.closed
    with pytest.raises(Abandoned), gate.writing():
        pytest.fail("written after the gate closed")
    release.set()
    writer.join(timeout=30)


#: The last line of a denoise that SIGTERM stopped once every micrograph was finished.
ALL_FINISHED = ("cryostream denoise: terminated (SIGTERM) after N s; every micrograph was "
                "finished (none was in progress): all are kept in {out} and listed in "
                "denoised_micrographs.star, written there as a complete run does; nothing is "
                "left to do")

#: The outputs' MRC writing (and the STAR file's) slowed in the child, as on a busy disk
#: (tests.faults_support.start_cli): the signals come while one is being written.
SLOW_WRITE = ("cryostream.io.mrc.write_micrograph", 4, "after")


def _denoised(tiny_run, out: Path, *options: str, slowed: tuple, signals: list):
    """`cryostream denoise` of the shared run's three micrographs (160 × 128) into ``out``, one
    function ``slowed`` (:func:`tests.faults_support.start_cli`), sent ``signals``; its status
    and stderr lines, the elapsed seconds as N."""
    from tests.faults_support import signalled_cli

    status, err = signalled_cli("denoise", *tiny_run.sim.micrographs, "-o", out, "-m",
                                tiny_run.run, "--no-ensemble", *options, cwd=out.parent,
                                slowed=slowed, signals=signals)
    assert "Traceback" not in err, err
    return status, re.sub(r"after \d+ s", "after N s", err).splitlines()


def _each_whole_with_its_record(out: Path) -> list[str]:
    """The outputs in ``out``, each with its record; no partial file or lock left."""
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith((".partial", ".lock"))], names
    images = [n for n in names if n.endswith(".mrc")]
    assert all(n[:-4] + ".json" in names for n in images), names
    return images


def test_sigterm_after_ctrl_c_waits_for_the_output_being_written(tiny_run, tmp_path):
    """Ctrl-C, then SIGTERM while an output is being written (Slurm's `--signal=INT@300`, then
    its SIGTERM at the time limit, as the denoising guide advises): the second signal ended
    the process in the middle of the write, leaving `.NAME.json.partial`, `.NAME.mrc.lock` and
    an MRC file without its record. Now it waits for that output to be finished (none starts
    after) and then ends at once, with Ctrl-C's status and its line naming both signals; the
    line said 'what was in progress is not written' of the output it had just finished: now
    it says how many outputs are written whole, that those being written were finished first
    and that nothing half-written is left."""
    out = tmp_path / "out"
    status, lines = _denoised(tiny_run, out, "--workers", "2", slowed=SLOW_WRITE, signals=[
        (signal.SIGINT, lambda err: "[slowed] write_micrograph" in err),
        (signal.SIGTERM, lambda err: "Ctrl-C again to stop at once" in err)])
    assert status == 130, lines
    said = re.fullmatch(
        r"cryostream denoise: terminated at once \(SIGTERM after Ctrl-C\); (\d) outputs? of "
        r"this call (?:is|are) written whole \(the (one|\d) being written (?:was|were) finished "
        r"first\), and nothing half-written is left; the micrographs still in progress are not "
        r"written \(run the same command again to resume\)", lines[-1])
    assert said, lines
    images = _each_whole_with_its_record(out)  # the one being written at least
    assert int(said[1]) == len(images) >= 1, (said[1], images)
    assert 1 <= (1 if said[2] == "one" else int(said[2])) <= len(images)


def test_sigterm_as_the_last_output_is_written_ends_the_run_with_its_star_file(tiny_run,
                                                                              tmp_path):
    """SIGTERM while the last micrograph's output was being written: the command ended 143
    with no STAR file, saying those in progress were not written, though none was. Now the
    output is finished, the STAR file written as a complete run writes it, and the last line
    says every micrograph was finished; status 143 all the same (the signal came)."""
    import starfile

    out = tmp_path / "out"  # one at a time: the third's write is the last, and the one slowed
    status, lines = _denoised(tiny_run, out, "--workers", "1", slowed=(*SLOW_WRITE, 3), signals=[
        (signal.SIGTERM, lambda err: "[slowed] write_micrograph" in err)])
    assert status == 143, lines
    assert lines[-1] == ALL_FINISHED.format(out=out), lines
    assert len(_each_whole_with_its_record(out)) == 3
    listed = starfile.read(out / "denoised_micrographs.star", always_dict=True)["micrographs"]
    assert len(listed) == 3


def test_sigterm_as_the_star_file_is_written_still_writes_it(tiny_run, tmp_path):
    """SIGTERM once every micrograph was written, as the STAR file listing them was about to
    be written (a slow disk): the file was not written, and the last line said those in
    progress were not. Now the STAR file is written whole all the same, and the last line
    says every micrograph was finished; status 143. Its first note said the micrographs in
    progress were dropped (none was): now that it ends as the run ends."""
    out = tmp_path / "out"
    status, lines = _denoised(
        tiny_run, out, slowed=("cryostream.io.star.write_micrograph_star", 3, "before"),
        signals=[(signal.SIGTERM, lambda err: "[slowed] write_micrograph_star" in err)])
    assert status == 143, lines
    assert lines[-1] == ALL_FINISHED.format(out=out), lines
    assert ("cryostream denoise: terminated (SIGTERM): every micrograph is finished and written: "
            "ending as the run ends, with its STAR file") in lines, lines
    assert len(_each_whole_with_its_record(out)) == 3
    assert (out / "denoised_micrographs.star").is_file()


def test_sigterm_before_any_micrograph_is_finished_says_nothing_was_written(tiny_run, tmp_path):
    """SIGTERM before any micrograph was finished: the output folder this call made is removed
    (it holds nothing), and the last line said the finished micrographs were kept in it. Now
    it says that nothing was written."""
    out = tmp_path / "out"
    status, lines = _denoised(
        tiny_run, out, "--workers", "3",
        slowed=("cryostream.denoise.micrograph.read_micrograph", 3, "before"),
        signals=[(signal.SIGTERM, lambda err: "[slowed] read_micrograph" in err)])
    assert status == 143, lines
    assert lines[-1] == ("cryostream denoise: terminated (SIGTERM) after N s; no micrograph was "
                         "finished and nothing was written: run the same command again to "
                         "denoise them"), lines
    assert not out.exists()


#: The note of a first Ctrl-C before any micrograph has begun, which stops the command now.
BEFORE_ANY = ("cryostream denoise: stopping now: no micrograph has begun yet, and this call has "
              "written nothing")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_before_any_micrograph_began_says_nothing_was_written(signum, tiny_run, tmp_path):
    """Ctrl-C as `cryostream denoise` gets ready (its output folder made, no micrograph begun
    yet): the folder, which holds nothing, is removed, and the last line said the finished
    micrographs were kept in it (SIGTERM's, and a script's KeyboardInterrupt, said nothing was
    written). Now it says so too. Its first note spoke of the micrographs in progress, to be
    finished (there were none: it stops now); now it says that none has begun and it stops
    now. SIGTERM's first note had said the micrographs in progress were dropped: the same."""
    out = tmp_path / "out"
    status, lines = _denoised(
        tiny_run, out, slowed=("cryostream.denoise.workers.default_workers", 3, "before"),
        signals=[(signum, lambda err: "[slowed] default_workers" in err)])
    term = signum == signal.SIGTERM
    assert status == (143 if term else 130), lines
    first = BEFORE_ANY.replace("denoise: ", "denoise: terminated (SIGTERM): ") if term else \
        BEFORE_ANY
    assert lines[-2:] == [first, f"cryostream denoise: {'terminated (SIGTERM)' if term else 'interrupted'} "
                          "after N s; no micrograph was finished and nothing was written: run the "
                          "same command again to denoise them"], lines
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_before_any_micrograph_began_on_a_scheduler_stops_now(tiny_run, tmp_path):
    """The same with `--scheduler` (a LocalCluster this test starts): the note said it waited
    for the micrographs under way on the cluster's workers, and the last line that the
    finished ones and those were kept in the folder, which was gone (none had begun). Now they
    say that none has begun, it stops now, and nothing was written."""
    from distributed import LocalCluster

    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      host="127.0.0.1", protocol="tcp://") as cluster:
        status, lines = _denoised(
            tiny_run, out, "--scheduler", cluster.scheduler_address,
            slowed=("cryostream.denoise.api.note_assumed_optics", 3, "before"),
            signals=[(signal.SIGINT, lambda err: "[slowed] note_assumed_optics" in err)])
    assert status == 130, lines
    assert lines[-2:] == [BEFORE_ANY, "cryostream denoise: interrupted after N s; no micrograph "
                          "was finished and nothing was written: run the same command again to "
                          "denoise them"], lines
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_as_the_star_file_is_written_says_every_micrograph_is_finished(tiny_run,
                                                                              tmp_path):
    """Ctrl-C once every micrograph is finished, as the STAR file is written: the note spoke
    of the micrographs in progress, to be finished (there were none: it stops now, the STAR
    file unwritten). Now it says so."""
    out = tmp_path / "out"
    status, lines = _denoised(
        tiny_run, out, slowed=("cryostream.io.star.write_micrograph_star", 3, "before"),
        signals=[(signal.SIGINT, lambda err: "[slowed] write_micrograph_star" in err)])
    assert status == 130, lines
    assert lines[-2:] == [
        "cryostream denoise: stopping now: every micrograph is finished and written; "
        "denoised_micrographs.star, written last, may not be (the same command again writes it)",
        f"cryostream denoise: interrupted after N s; the finished micrographs are kept in {out}: "
        "run the same command again to denoise the rest (it skips the finished ones) and write "
        "denoised_micrographs.star"], lines
    assert len(_each_whole_with_its_record(out)) == 3
    assert not (out / "denoised_micrographs.star").exists()


@pytest.mark.parametrize("there", [False, True], ids=["made by the call", "there before"])
def test_a_second_ctrl_c_before_any_micrograph_is_finished_leaves_no_folder_it_made(
        tiny_run, tmp_path, there):
    """Ctrl-C, then Ctrl-C again (stop at once) while the first micrographs are being read: the
    output folder the command made was left behind, empty, though the guide says a stop before
    any micrograph is finished removes it (SIGTERM's and a first Ctrl-C's did). Now it is
    removed and the last line says nothing was written; a folder that was there before (the
    scientist's own, empty) is kept, the line saying no output was written."""
    out = tmp_path / "out"
    if there:
        out.mkdir()
    status, lines = _denoised(
        tiny_run, out, "--workers", "3",
        slowed=("cryostream.denoise.micrograph.read_micrograph", 3, "before"),
        signals=[(signal.SIGINT, lambda err: "[slowed] read_micrograph" in err),
                 (signal.SIGINT, lambda err: "Ctrl-C again to stop at once" in err)])
    assert status == 130, lines
    assert lines[-1] == "cryostream denoise: stopped at once (Ctrl-C again); " + (
        "no output of this call was written, and nothing half-written is left; the micrographs "
        "still in progress are not written (run the same command again to resume)" if there else
        "no micrograph was finished and nothing was written (the output folder it made, which "
        "held nothing, is removed): run the same command again to denoise them"), lines
    assert out.exists() == there and (not there or not any(out.iterdir()))


def test_a_ctrl_c_as_the_micrographs_are_handed_out_waits_with_the_gate_in_place():
    """A Ctrl-C that came while the micrographs were handed to the pool, the first already
    begun (a busy machine): the call left at once and waited for it outside its gate, so a
    second Ctrl-C then ended the process without closing the gate (an output under way could be
    cut) and its last line did not say what was written (the CI's flaky second-Ctrl-C test).
    Now the interrupt waits for the micrographs begun, the gate still in place."""
    from cryostream.denoise.pool import Closed, finish_here
    from cryostream.interrupts import close_before_the_end

    begun, raised, seen, finished = threading.Event(), threading.Event(), [], []

    class HandedOut(list):
        def __iter__(self):  # the first handed out and begun, then Ctrl-C
            yield self[0]
            assert begun.wait(10)
            raised.set()
            raise KeyboardInterrupt

    def job(item, gate):
        begun.set()
        assert raised.wait(10)
        time.sleep(0.3)  # (the interrupt under way in the calling thread)
        seen.extend(close_before_the_end())  # what a second Ctrl-C's ending would close
        finished.append(item)
        return item

    with pytest.raises(KeyboardInterrupt):
        finish_here(job, HandedOut(["a", "b", "c"]), 3, 2)
    assert finished == ["a"]
    assert seen == [Closed(0, 0, 0)], seen


@pytest.mark.parametrize("how", ["python -m cryostream", "the cryostream command"])
def test_ctrl_c_as_the_command_starts_is_one_line_not_a_traceback(tmp_path, how):
    """Ctrl-C within the first seconds of `cryostream denoise`, as `import cryostream` runs
    (xarray, dask: seconds on a busy machine): Python printed a traceback of the imports and the
    process died of the signal. Now one line, status 130, nothing written. The signal is sent
    once the child has loaded NumPy's extension, which the package imports after its first
    line; a machine quick enough to be past the imports by then says the command's own line."""
    micrograph = tmp_path / "a.mrc"
    with mrcfile.new(micrograph) as mrc:
        mrc.set_data(np.zeros((64, 64), np.float32))
    command = [sys.executable, "-m", "cryostream"] if how.startswith("python") else [
        str(Path(sys.executable).parent / "cryostream")]
    if not Path(command[0]).is_file():
        pytest.skip(f"{command[0]}: not installed here")
    proc = subprocess.Popen([*command, "denoise", str(micrograph), "-o", str(tmp_path / "out")],
                            cwd=tmp_path, env=child_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if "numpy" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and re.sub(r"after \d+ s;", "after N s;",
                                             err.strip().splitlines()[-1]) in (
        "cryostream: interrupted as it started; nothing was done",
        "cryostream denoise: interrupted after N s; no micrograph was finished and nothing was "
        "written: run the same command again to denoise them"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", [["-m", "cryostream"], ["-m", "cryostream.cli"]])
def test_a_script_given_dash_m_cryostream_as_its_own_arguments_keeps_keyboard_interrupt(
        tmp_path, given):
    """A script importing cryostream whose own arguments hold ``-m cryostream`` (an option
    ``-m`` of its own): it was taken for ``python -m cryostream``, so a Ctrl-C at any point of
    it ended the process at once with status 130 and 'interrupted as it started; nothing was
    done', its ``except KeyboardInterrupt`` and clean-up never run. Now it keeps Python's
    KeyboardInterrupt, as any script does."""
    script = tmp_path / "batch.py"
    script.write_text("import os, signal, time\nimport cryostream\ntry:\n"
                      "    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(30)\n"
                      "except KeyboardInterrupt:\n    print('caught')\n")
    done = subprocess.run([sys.executable, str(script), *given], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=child_environment())
    assert (done.returncode, done.stdout) == (0, "caught\n"), done.stderr


def test_a_given_up_micrograph_says_no_pass_note_after_the_command_ends(tiny_run, tmp_path,
                                                                       capsys, monkeypatch):
    """`cryostream denoise` run in this process (cli.main from Python) with the default recipe
    (the ensemble: many network passes a micrograph), stopped by SIGTERM: the threads of the
    micrographs given up went on noting their passes ('network pass 9 of 16 done ... left')
    for minutes after the command's last line. Now they say nothing once given up."""
    from cryostream.cli import main
    from cryostream.denoise import micrograph

    monkeypatch.setattr(micrograph, "NOTE_EVERY_S", 0.0)  # a note after every pass
    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(768, 768), seed=3)
    out, said = tmp_path / "out", []

    class Said(logging.Handler):  # the notes as the logger gives them, whatever else prints
        def emit(self, record):
            said.append(record.getMessage())

    logger, handler = logging.getLogger("cryostream"), Said()
    logger.addHandler(handler)
    before = set(threading.enumerate())

    def signal_once_a_pass_is_noted() -> None:
        while not any("network pass" in s for s in said):
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_once_a_pass_is_noted, daemon=True).start()
    try:
        status = main(["denoise", *map(str, sim.micrographs), "-o", str(out), "-m", str(tiny_run.run),
                       "--workers", "2"])
        ended, at_the_end = capsys.readouterr().err.splitlines(), len(said)
        left = [t for t in threading.enumerate()  # the pool's threads, still denoising
                if t not in before and t.name.startswith("ThreadPoolExecutor") and t.is_alive()]
        for thread in left:
            thread.join(timeout=300)
    finally:
        logger.removeHandler(handler)
    assert status == 143 and left, (status, left, ended)
    assert ended[-1].startswith("cryostream denoise: terminated (SIGTERM) after"), ended
    assert said[at_the_end:] == [] and capsys.readouterr().err == ""


@pytest.mark.parametrize("after", [pytest.param("SIGINT", marks=pytest.mark.slow), "SIGTERM"])
def test_denoise_started_with_ctrl_c_ignored_keeps_ignoring_it(after, tiny_run, tmp_path):
    """A process started with SIGINT ignored (a background job of a shell script, `cmd &`)
    keeps ignoring it in Python, and `evaluate` did; `denoise` made its own handler SIGINT's
    and stopped on it (status 130, no STAR file). Now it goes on to the end: status 0, every
    output and the STAR file. After a SIGTERM a SIGINT is still ignored, not taken as a second
    signal that ends the process at once: the command ends as SIGTERM ends it."""
    out = tmp_path / "out"
    if after == "SIGINT":
        signals = [(signal.SIGINT, lambda err: "[slowed] write_micrograph" in err)]
    else:  # SIGINT while the output being written at the SIGTERM is finished (4 s)
        signals = [(signal.SIGTERM, lambda err: "[slowed] write_micrograph" in err),
                   (signal.SIGINT, lambda err: "terminated (SIGTERM): stopping now" in err)]
    from tests.faults_support import signalled_cli

    status, err = signalled_cli("denoise", *tiny_run.sim.micrographs, "-o", out, "-m",
                                tiny_run.run, "--no-ensemble", "--workers", "1", cwd=tmp_path,
                                slowed=SLOW_WRITE, signals=signals, sigint_ignored=True)
    lines = re.sub(r"after \d+ s", "after N s", err).splitlines()
    assert "Traceback" not in err and "Ctrl-C" not in err, err
    if after == "SIGINT":
        assert status == 0 and lines[-1].startswith("cryostream: denoised 3/3 "), err
        assert len(_each_whole_with_its_record(out)) == 3
        assert (out / "denoised_micrographs.star").is_file()
    else:
        assert status == 143 and lines[-1] == TERMINATED.format(out=out), err
        assert len(_each_whole_with_its_record(out)) == 1  # the one being written, finished


#: The passes of a micrograph slowed by a second each, as on a slow CPU.
SLOW_PASSES = ("cryostream.denoise.micrograph.network_pass", 1, "after")


@pytest.mark.parametrize("known", [pytest.param(True, marks=pytest.mark.slow), False])
def test_the_first_ctrl_c_says_how_long_the_micrographs_in_progress_take(known, tiny_run,
                                                                         tmp_path):
    """The note of a first Ctrl-C in `denoise`, which finishes the micrographs in progress
    (minutes on a CPU), said neither how many nor how long. Now it says how many and, where
    their network passes give a pace, about how long they take at it (as the pass notes
    count the passes left); where no pass is done yet, nothing of the time."""
    from tests.faults_support import signalled_cli

    marks = "[slowed] network_pass"
    each: list[int] = []  # the passes of one micrograph, counted as the first is done

    def under_way(err: str) -> bool:  # a pass done of the second micrograph, or none at all
        if not known:
            return marks in err
        if not each and "cryostream: denoised 1/3 " in err:
            each.append(err.count(marks))
        return bool(each) and err.count(marks) >= each[0] + 2

    out = tmp_path / "out"  # no pace known: a micrograph of few passes is as good, and quicker
    fewer = [] if known else ["--no-ensemble"]
    status, err = signalled_cli("denoise", *tiny_run.sim.micrographs, "-o", out, "-m",
                                tiny_run.run, *fewer, "--workers", "1", cwd=tmp_path,
                                slowed=SLOW_PASSES, signals=[(signal.SIGINT, under_way)])
    assert status == 130 and "Traceback" not in err, err
    note = next(line for line in err.splitlines() if "stopping after" in line)
    said = re.fullmatch(r"cryostream denoise: stopping after the micrograph in progress "
                        r"\((?:about (\d+) s; )?it is written whole or not at all\); Ctrl-C "
                        r"again to stop at once", note)
    assert said and (said[1] is not None) == known, note
    if known:  # the second's passes left: the one under way and those after the note
        left = 1 + err.split(note)[1].count(marks)
        assert left == each[0] - 1 and 0.5 * left <= int(said[1]) <= 2 * left + 2, (left, note)
    assert len(_each_whole_with_its_record(out)) == (2 if known else 1)


def test_an_error_after_sigterm_is_said_and_the_status_stays_143(tiny_run, tmp_path):
    """SIGTERM as the STAR file was about to be written (every micrograph finished), and the
    STAR file could not be written then (here a folder in its place, as the call made it
    again after the signal): the command ended with the error's line and status 2, which a
    batch system takes for a failure of the command, not for its time limit. Now the error's
    line is said and the status is 143."""
    out = tmp_path / "out"

    def blocked(err: str) -> bool:  # the STAR file's path taken by a folder, then the signal
        if "[slowed] write_micrograph_star" not in err:
            return False
        (out / "denoised_micrographs.star").mkdir(exist_ok=True)
        return True

    status, lines = _denoised(
        tiny_run, out, slowed=("cryostream.io.star.write_micrograph_star", 3, "before"),
        signals=[(signal.SIGTERM, blocked)])
    assert status == 143, lines
    assert lines[-1].startswith("cryostream denoise: error: "), lines
    assert "denoised_micrographs.star" in lines[-1], lines
    assert len(_each_whole_with_its_record(out)) == 3


def test_a_star_file_another_call_wrote_meanwhile_is_no_sign_every_micrograph_was_finished(
        tiny_run, tmp_path):
    """SIGTERM before any micrograph of this call was finished, another call having written
    the STAR file into the same folder meanwhile: the last line said every micrograph was
    finished and listed (it was told from a change of the STAR file). Now it comes from the
    call's own record of its micrographs: the finished ones are kept, those in progress not
    written."""
    out = tmp_path / "out"
    star = out / "denoised_micrographs.star"

    def another_call_wrote_it(err: str) -> bool:
        if "[slowed] read_micrograph" not in err or not out.is_dir():
            return False
        star.write_text("# version 30001\n\ndata_micrographs\n\nloop_\n_rlnMicrographName #1\n"
                        "elsewhere.mrc\n")
        return True

    status, lines = _denoised(
        tiny_run, out, "--workers", "3",
        slowed=("cryostream.denoise.micrograph.read_micrograph", 3, "before"),
        signals=[(signal.SIGTERM, another_call_wrote_it)])
    assert status == 143, lines
    assert lines[-1] == TERMINATED.format(out=out), lines
    assert sorted(p.name for p in out.iterdir()) == ["denoised_micrographs.star"]


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
    from tests.faults_support import REPO

    return _terminated_at_a_checkpoint([sys.executable, "-c", _SCRIPT, what, str(run),
                                        *map(str, inputs)], run, REPO)


def _terminated_at_a_checkpoint(command: list, run: Path, cwd: Path) -> tuple[int, str]:
    """Run ``command`` in ``cwd`` and send it SIGTERM once ``run`` holds a checkpoint: its exit
    status and stderr."""
    from tests.faults_support import finished_steps, wait_until

    proc = subprocess.Popen(command, cwd=cwd, env=child_environment(), stdout=subprocess.DEVNULL,
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


def _job_script() -> str:
    """The job script of the training guide (docs/guide/training.md)."""
    from tests.faults_support import REPO

    text = (REPO / "docs" / "guide" / "training.md").read_text()
    after = text.split("can catch it and end as `cryostream train` does:", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_training_guide_s_job_script_ends_143_naming_the_checkpoint(tiny_run, tmp_path):
    """The training guide's job script caught `Terminated` imported from a submodule
    (`cryostream.interrupts`); it is `cryostream.Terminated` now, and the script runs as the
    guide says: SIGTERM once a checkpoint is written ends it with status 143, its last line
    naming the checkpoint kept and the call that continues from it."""
    from tests.faults_support import finished_steps

    code = _job_script()
    assert "except cryostream.Terminated" in code and "cryostream.interrupts" not in code
    script = tmp_path / "job.py"
    script.write_text("import dataclasses\nfrom tests.conftest import TINY_TRAIN\n"
                      "config = dataclasses.replace(TINY_TRAIN, steps=100_000, "
                      "eval_every=100_000)\n" + code.replace('"data.h5"', repr(str(tiny_run.store))))
    run = tmp_path / "run"
    status, err = _terminated_at_a_checkpoint([sys.executable, str(script)], run, tmp_path)
    kept = finished_steps(run)[-1]
    assert status == 143, err
    assert err.splitlines()[-1] == (
        f"terminated (SIGTERM): the checkpoint of step {kept} of 100000 is kept in "
        f"{run / 'checkpoints' / str(kept)}; train(..., resume=True) with the same store, run "
        "and config continues from it"), err
