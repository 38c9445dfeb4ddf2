"""`fit` and `train` stopped before their first training step, in real processes: a fit stopped
by Ctrl-C or SIGTERM while it prepares its store (the command line, and `cryostream.fit` in a
script) says what it kept and how to go on, leaves no store that looks finished, and the same
command or call goes on; what a fit stopped before its first shard (noise estimates) or after
its last (the shards, the store without its record) leaves, and how the next call takes it;
`train` stopped as its first step compiles writes no checkpoint and says so."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mrcfile
import pytest

import cryostream
from cryostream.store import store_facts
from tests.conftest import TINY_TRAIN, write_mrc
from tests.faults_support import (
    REPO,
    child_environment,
    cli,
    cli_process,
    finished_steps,
    leftovers,
    signalled_cli,
    wait_until,
)

#: One shard write slowed in the child (its patches written whole, then 3 s more), so that the
#: signal comes while the store is being prepared, some of its shards finished.
SLOW_SHARD = ("cryostream.prepare.write_shard", 3, "after")

#: A fit of the shared run's micrographs as a script runs it, with ``write_shard`` slowed as
#: :data:`SLOW_SHARD` slows it in a command.
_FIT_SCRIPT = """
import dataclasses, importlib, sys, time
import cryostream
from cryostream.store import store_facts
from tests.conftest import TINY_TRAIN

module = importlib.import_module("cryostream.prepare")
plain = module.write_shard

def slowed(*args, **kwargs):
    plain(*args, **kwargs)
    sys.stderr.write("[slowed] write_shard\\n")
    sys.stderr.flush()
    time.sleep(3)

module.write_shard = slowed
run, *inputs = sys.argv[1:]
cryostream.fit(inputs, run, start="scratch", patch_size=32, budget="2steps",
               train=dataclasses.replace(TINY_TRAIN, steps=2, eval_every=2))
"""

#: The keywords of the script's fit, for the call that continues it.
FIT_CALL = {"start": "scratch", "patch_size": 32, "budget": "2steps",
            "train": dataclasses.replace(TINY_TRAIN, steps=2, eval_every=2)}


def _shards(work: Path) -> dict[str, tuple[int, int]]:
    """The finished shards of the store in ``work``, by name, with their inode and
    modification time: one written again differs."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in (work / "data.h5.shards").glob("*.h5")}


def _nothing_looks_finished(work: Path) -> dict[str, tuple[int, int]]:
    """Check what a fit stopped while preparing left in ``work``: finished shards, no master
    file and no record of a complete store (``store.json``), nothing half-written; returns
    the shards (:func:`_shards`)."""
    assert not (work / "store.json").exists() and not (work / "data.h5").exists()
    assert leftovers(work) == []
    shards = _shards(work)
    assert shards, sorted(p.name for p in work.rglob("*"))
    return shards


@pytest.mark.slow  # (a guard of what the command line did already: 37 s on two cores)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_fit_stopped_while_it_prepares_its_store_says_what_is_kept(tiny_run, tmp_path, signum):
    """`cryostream fit` stopped by Ctrl-C or SIGTERM once it prepares its store (its progress
    note said, a shard finished): status 130 or 143, no traceback, the last line saying no
    checkpoint was written, that the store's finished shards are kept, and to run the same
    command again; no master file or store.json that a next call would take for a finished
    store. The same command then goes on from those shards (not written again) and trains."""
    run = tmp_path / "run"
    command = ["fit", *tiny_run.sim.micrographs, "-o", run, "--model", "unet-small", "--from",
               "scratch", "--patch", "32", "--budget", "2steps"]
    status, err = signalled_cli(*command, cwd=tmp_path, slowed=SLOW_SHARD, signals=[
        (signum, lambda err: "[slowed] write_shard" in err)])
    assert "cryostream: preparing the store: 0/3 micrographs" in err, err
    assert status == (143 if signum == signal.SIGTERM else 130) and "Traceback" not in err, err
    how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    work = run / "work"
    assert re.sub(r"after \d+ s", "after N s", err.splitlines()[-1]) == (
        f"cryostream fit: {how} after N s; no checkpoint was written; the store's finished "
        f"shards in {work} are kept: run the same command again to go on from them"), err
    shards = _nothing_looks_finished(work)

    again = cli_process(*command, cwd=tmp_path, timeout=300)
    assert again.rc == 0, again.describe()
    assert (work / "store.json").is_file() and finished_steps(run) == [2]
    kept = _shards(work)
    assert {name: kept[name] for name in shards} == shards  # gone on from, not written again


def _stopped_script(script: str, args: list, signum: int, ready: str) -> tuple[int, str]:
    """Run ``script`` with ``args`` in a child Python, send it ``signum`` once its stderr
    shows ``ready``: its status and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO,
                            env=child_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: proc.stderr.read(1), "")))
    reader.start()
    try:
        assert wait_until(proc, lambda: ready in "".join(err), timeout=120), "".join(err)
        proc.send_signal(signum)
        proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
        reader.join(timeout=10)
    return proc.returncode, "".join(err)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_script_s_fit_stopped_while_it_prepares_says_what_is_kept(tiny_run, tmp_path, signum):
    """`cryostream.fit` in a script, stopped while it prepares its store: Ctrl-C ended it with
    a bare `KeyboardInterrupt` (no word of what was kept), SIGTERM killed it outright (fit turned
    SIGTERM into `Terminated` only in its training). Now both raise with the fit's words, as in
    the training: no checkpoint, the store's finished shards kept, call fit again with the same
    arguments; that call goes on from them."""
    run = tmp_path / "run"
    status, err = _stopped_script(_FIT_SCRIPT, [run, *tiny_run.sim.micrographs], signum,
                                  "[slowed] write_shard")
    work = run / "work"
    said = (f"no checkpoint was written; the store's finished shards in {work} are kept; call "
            "fit again with the same arguments to go on from them")
    # not caught: Python's own ending (KeyboardInterrupt's is by SIGINT: 130 in a shell)
    assert status == (1 if signum == signal.SIGTERM else -signal.SIGINT), err
    assert err.splitlines()[-1] == (
        f"cryostream.interrupts.Terminated: terminated (SIGTERM): {said}"
        if signum == signal.SIGTERM else f"KeyboardInterrupt: interrupted: {said}"), err
    shards = _nothing_looks_finished(work)

    result = cryostream.fit(tiny_run.sim.micrographs, run, **FIT_CALL)
    assert result.steps == 2 and (work / "store.json").is_file()
    kept = _shards(work)
    assert {name: kept[name] for name in shards} == shards


@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                    signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_train_stopped_as_its_first_step_compiles_writes_no_checkpoint(tiny_run, tmp_path,
                                                                       signum):
    """`cryostream train` stopped while its first step compiled (minutes for a large network)
    held the signal through the compilation and that step's run too, then saved it (step 1),
    long after the signal (a batch system's SIGKILL comes 30 s after its SIGTERM). Nothing is
    trained yet there: it now stops once the step is compiled, before it trains, saying so
    (SIGTERM in its words); the last line says no checkpoint was written and to run the same
    command again, which trains."""
    run = tmp_path / "run"
    command = ["train", tiny_run.store, "-o", run, "--model", "unet-small", "--precision", "fp32",
               "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1", "--eval-every",
               "2"]
    status, err = signalled_cli(
        *command, cwd=tmp_path, slowed=("cryostream.training.fitted_step", 3, "after"),
        signals=[(signum, lambda err: "[slowed] fitted_step" in err)])
    term = signum == signal.SIGTERM
    assert status == (143 if term else 130) and "Traceback" not in err, err
    again = "SIGTERM again" if term else "Ctrl-C again"
    how = "terminated (SIGTERM)" if term else "interrupted"
    assert (f"cryostream: {how}: stopping once the step is compiled, before it trains ({again} "
            "stops at once)") in err, err
    lines = err.splitlines()
    assert lines[-2] == f"cryostream: {how}: no checkpoint was written", err
    assert re.sub(r"after \d+ s", "after N s", lines[-1]) == (
        f"cryostream train: {how} after N s; no checkpoint was written: run the same command "
        "again to start"), err
    assert finished_steps(run) == []

    result = cli_process(*command, "--quiet", cwd=tmp_path, timeout=300)
    assert result.rc == 0, result.describe()
    assert finished_steps(run) == [1, 2]


def _preparing_fit(mics, run: Path, patch: int = 32) -> list:
    """The command of a fit that only prepares its store: its time budget runs out before the
    training begins."""
    return ["fit", *mics, "-o", run, "--from", "scratch", "--patch", str(patch), "--budget",
            "0.000001m"]


def _stat(path: Path) -> tuple[int, int]:
    """A file's inode and modification time: a file written again differs."""
    return path.stat().st_ino, path.stat().st_mtime_ns


@pytest.mark.slow  # (a real process: the state it leaves is the fast test's "store" below)
def test_a_fit_stopped_before_it_recorded_its_finished_store_keeps_the_store(small_mrcs, tmp_path,
                                                                            capsys):
    """A fit stopped (SIGTERM, in a real process) with its store made and the store's record
    (store.json) not yet written: the next call had prepared the whole store again (noise
    measured, every micrograph read, noised and written anew), saying the store was made from
    other micrographs or options. Now it keeps the store as it is and records it."""
    run = tmp_path / "run"
    work = run / "work"
    command = _preparing_fit(small_mrcs, run)
    status, err = signalled_cli(*command, cwd=tmp_path,
                                slowed=("cryostream.fit_run.write_json", 3, "before"),
                                signals=[(signal.SIGTERM, lambda err: "[slowed]" in err)])
    assert status == 143 and "Traceback" not in err, err
    assert (work / "data.h5").is_file() and not (work / "store.json").exists()
    assert leftovers(work) == []
    shards, master = _shards(work), _stat(work / "data.h5")

    again = cli(capsys, *command)
    assert again.rc == 0, again.describe()
    assert (work / "store.json").is_file(), again.err
    assert _shards(work) == shards and _stat(work / "data.h5") == master, again.err
    assert "measuring the noise" not in again.err and "preparing" not in again.err, again.err


@pytest.mark.parametrize("left", ["store", "shards", "store less a shard",
                                  "store of other options"])
def test_a_store_without_its_record_is_kept_only_when_whole_and_of_these_inputs(
        small_mrcs, tmp_path, capsys, left):
    """What a fit stopped after its store's last shard leaves (a finished fit's work folder
    less its store.json, and its run folder less fit.json: the very files, as a stop there
    leaves them), and the next call: ``store``, the store whole (a stop before its record) —
    kept as it is, and recorded (it had been prepared all again); ``shards``, every shard
    finished and no master file (a stop before it) — the master is written from them, no
    micrograph read, noised or written again (pass 2 had read and noised them all again); a
    store one of whose shards is gone, or one of another --patch, is never kept for a complete
    store of this fit: it is prepared again."""
    run = tmp_path / "run"
    work = run / "work"
    command = _preparing_fit(small_mrcs, run)
    assert cli(capsys, *command).rc == 0
    (run / "fit.json").unlink()
    (work / "store.json").unlink()
    shards = _shards(work)
    gone = sorted(shards)[0]
    master = _stat(work / "data.h5")
    if left == "shards":
        (work / "data.h5").unlink()
    elif left == "store less a shard":
        (work / "data.h5.shards" / gone).unlink()
    elif left != "store":
        command = _preparing_fit(small_mrcs, run, patch=64)

    again = cli(capsys, *command)
    assert again.rc == 0, again.describe()
    assert (work / "store.json").is_file() and leftovers(work) == []
    prepared, _ = store_facts(work / "data.h5")  # whole: each shard there
    assert prepared.patch_size == (64 if "other" in left else 32)
    now = _shards(work)
    if left in ("store", "shards"):
        assert now == shards and "preparing" not in again.err, again.err
        assert left == "shards" or _stat(work / "data.h5") == master
    else:  # prepared again: a new shard for the missing one, all new for another patch
        assert "preparing it again" in again.err and now[gone] != shards.get(gone), again.err


def test_a_fit_stopped_as_it_writes_a_noise_estimate_leaves_no_part_of_it(small_mrcs, tmp_path,
                                                                           capsys, monkeypatch):
    """A fit (the command, in this process) stopped by Ctrl-C, a real SIGINT, as it wrote a
    micrograph's noise estimate (its first cache, before any shard): no part of that file is
    left (``noise-….npz.partial`` had been, until a next call removed it); what is left is the
    fingerprint of its inputs and options (prepare.json), and the same command goes on."""
    import numpy

    run = tmp_path / "run"
    folder = run / "work" / "data.h5.shards"
    command = _preparing_fit(small_mrcs, run)
    write = numpy.savez

    def stopped(*args, **kwargs):  # Ctrl-C as the file is being written
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # (the interrupt comes here)
        write(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(numpy, "savez", stopped)
        stop = cli(capsys, *command)
    assert stop.rc == 130 and "no checkpoint or shard of the store was written" in stop.err, \
        stop.describe()
    assert leftovers(run) == [] and {p.name for p in folder.iterdir()} == {"prepare.json"}

    again = cli(capsys, *command)
    assert again.rc == 0 and (run / "work" / "store.json").is_file(), again.describe()


@pytest.mark.parametrize("call", ["same", "other patch", "micrograph changed"])
def test_the_noise_estimates_of_a_fit_stopped_before_any_shard_are_kept_only_for_its_inputs(
        small_mrcs, tmp_path, capsys, call):
    """What a fit stopped after it measured the noise and before any shard leaves (a finished
    fit's work folder less its store: the statistics, the noise estimates and the fingerprint
    of the inputs and options they were measured for, each written whole; its run folder less
    fit.json): the same call again keeps each estimate (not measured again); a call with
    another --patch (the fingerprint of other options), or with a micrograph changed since
    (its size or time), measures them again: a changed micrograph's estimate is its own."""
    from cryostream.prepare_output import load_estimate, noise_file

    run = tmp_path / "run"
    work = run / "work"
    command = _preparing_fit(small_mrcs, run)
    assert cli(capsys, *command).rc == 0
    for path in [run / "fit.json", work / "store.json", work / "data.h5",
                 *(work / "data.h5.shards").glob("*.h5")]:
        path.unlink()
    estimate = noise_file(work / "data.h5.shards", str(small_mrcs[0]))
    before, variance = _stat(estimate), load_estimate(estimate).variance
    if call == "other patch":
        command = _preparing_fit(small_mrcs, run, patch=64)
    elif call == "micrograph changed":
        with mrcfile.open(small_mrcs[0]) as mrc:
            write_mrc(small_mrcs[0], 3 * mrc.data)  # (its noise: 9 times the variance)

    again = cli(capsys, *command)
    assert again.rc == 0 and (work / "store.json").is_file(), again.describe()
    assert ("measuring the noise" in again.err) == (call != "same"), again.err
    assert (_stat(estimate) == before) == (call == "same")
    assert load_estimate(estimate).variance == pytest.approx(
        9 * variance if call == "micrograph changed" else variance, rel=1e-3)
