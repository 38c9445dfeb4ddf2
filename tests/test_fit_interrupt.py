"""`fit` and `train` stopped before their first training step, in real processes: a fit stopped
by Ctrl-C or SIGTERM while it prepares its store (the command line, and `cryostream.fit` in a
script) says what it kept and how to go on, leaves no store that looks finished, and the same
command or call goes on; `train` stopped as its first step compiles writes no checkpoint and
says so."""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import cryostream
from tests.conftest import TINY_TRAIN
from tests.faults_support import (
    REPO,
    child_environment,
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
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
