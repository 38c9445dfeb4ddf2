"""One command at a time in a run folder or a store: a second ``train`` or ``prepare`` on what
a running one writes is refused, naming it, and a lock left by a killed one is taken over."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

import cryostream
from cryostream import PrepareConfig, TrainConfig
from cryostream.errors import ConfigError, StoreError
from cryostream.locks import LOCK_NAME, folder_lock, store_lock
from cryostream.prepare import prepare
from cryostream.runs import checkpoint_steps
from cryostream.training import train

SMALL = TrainConfig(model="unet-small", precision="fp32", steps=4, batch_size=4, eval_every=2,
                    eval_batches=1, checkpoint_every=2, warmup_steps=1, threads=1)
STORE = PrepareConfig(patch_size=32, stride=32, test_fraction=0.34)


def _wait_for_lock(path: Path, process: subprocess.Popen) -> dict:
    """What the lock file ``path`` says once ``process`` has written it."""
    for _ in range(6000):
        if path.is_file() and path.stat().st_size:
            return json.loads(path.read_text())
        assert process.poll() is None, "the command ended before the test could meet it"
        time.sleep(0.005)
    raise AssertionError(f"{path} was not written")


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_second_training_into_a_run_in_use_is_refused_and_a_killed_ones_lock_taken_over(
        tiny_run, tmp_path, capsys, notes):
    """Two trainings into one run folder would interleave their checkpoints and metrics: while
    a real ``cryostream train`` runs there, a second (here or on the command line) is refused
    with one line naming it, and so is a fit into that folder. Killed outright, it leaves only
    the lock file, which the next training takes over with a warning, and trains."""
    from tests.faults_support import cli

    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "cryostream", "train", str(tiny_run.store),
                              "-o", str(run), "--model", "unet-small", "--precision", "fp32",
                              "--steps", "100000", "--batch-size", "4", "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        held = _wait_for_lock(run / LOCK_NAME, first)
        os.kill(first.pid, signal.SIGSTOP)  # frozen as it trains: the lock held, no core taken
        assert held["command"] == "train" and held["pid"] == first.pid
        with pytest.raises(StoreError) as info:
            train(tiny_run.store, run, SMALL, log=lambda *_: None)
        assert str(info.value).startswith(f"{run.resolve()}: in use by cryostream train: "
                                          f"process {first.pid} on ")
        assert str(info.value).endswith("wait for it to finish or stop it, or give this "
                                        "training another run folder (-o)")
        with pytest.raises(StoreError, match="in use by cryostream train: process"):
            cryostream.fit(tiny_run.sim.micrographs, run, train=SMALL)
        refused = cli(capsys, "train", tiny_run.store, "-o", run, "--resume")
        assert refused.rc == 2, refused.describe()
        assert f"in use by cryostream train: process {first.pid} on " in refused.err
        assert len(refused.err.strip().splitlines()) == 1, refused.err
    finally:
        first.kill()
        first.wait(timeout=60)
    assert (run / LOCK_NAME).is_file()  # killed: the file stays, nobody holds it
    result = train(tiny_run.store, run, SMALL, log=lambda *_: None)  # (the command line's
    # notes go to its own handler, not to caplog's: ``notes`` has them whatever it set up)
    assert any(f"taking over the lock of cryostream train: process {first.pid} on " in n
               for n in notes), notes
    assert result.steps == SMALL.steps and checkpoint_steps(run)[-1] == SMALL.steps
    assert not (run / LOCK_NAME).exists()


def test_a_second_prepare_of_a_store_being_written_is_refused(tmp_path):
    """A real ``cryostream prepare``, frozen while it writes its store: a second prepare of the
    same store is refused naming it and changes nothing; another store in the same folder is
    free. Let go, the first finishes its store and leaves no lock file."""
    sim = cryostream.simulate(tmp_path / "sim", 3, shape=(256, 256), seed=4)
    out = tmp_path / "stores" / "data.h5"
    first = subprocess.Popen([sys.executable, "-m", "cryostream", "prepare",
                              *map(str, sim.micrographs), "-o", str(out), "--patch", "32",
                              "--stride", "32"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    lock = out.parent / ".data.h5.lock"
    try:
        held = _wait_for_lock(lock, first)
        os.kill(first.pid, signal.SIGSTOP)
        assert held["command"] == "prepare" and lock.is_file(), "prepare ended too soon"
        before = _tree(tmp_path / "stores")
        with pytest.raises(StoreError) as info:
            prepare(sim.micrographs, out, STORE, overwrite=True)
        assert str(info.value).startswith(f"{out.resolve()}: in use by cryostream prepare: "
                                          f"process {first.pid} on ")
        assert str(info.value).endswith("or give this store another file name (-o)")
        assert _tree(tmp_path / "stores") == before
        other = prepare(sim.micrographs, out.with_name("other.h5"), STORE)
        assert other.output.is_file() and not out.with_name(".other.h5.lock").exists()
    finally:
        os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=300) == 0
    assert not lock.exists()
    with h5py.File(out) as store:
        assert store["train/input"].shape[0] > 0


def test_a_command_holds_a_place_once_and_leaves_no_folders_when_refused(tiny_run, tmp_path):
    """``fit`` trains in the run folder it holds: a process's own lock is held again, not
    refused, and released only by its first holder. A training refused before it writes (a
    network its store's patches do not fit) leaves none of the folders it would have made."""
    run = tmp_path / "a" / "run"
    with folder_lock(run, command="fit", fix="", what=""):
        with folder_lock(run, command="train", fix="", what=""), store_lock(run / "s.h5", fix=""):
            assert json.loads((run / LOCK_NAME).read_text())["command"] == "fit"
        assert (run / LOCK_NAME).is_file() and not (run / ".s.h5.lock").exists()
    assert _tree(tmp_path) == []  # released, and the folders it made removed again
    with pytest.raises(ConfigError, match="needs patch sides that are multiples of"):
        train(tiny_run.store, run, dataclasses.replace(SMALL, model="unet-deep"))
    assert _tree(tmp_path) == []
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="file: is a file; give a folder for the run"):
        train(tiny_run.store, tmp_path / "file", SMALL)


def test_another_thread_is_refused_as_another_process_is(tmp_path):
    """Two trainings in threads of one process (a notebook, a thread pool): the second is
    refused, not taken for the first's own nested call, and the first's release is whole."""
    import threading

    run = tmp_path / "run"
    seen = []

    def second():
        try:
            with folder_lock(run, command="train", fix="give another", what="the run"):
                seen.append("entered")
        except StoreError as exc:
            seen.append(str(exc))

    with folder_lock(run, command="train", fix="give another", what="the run"):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert len(seen) == 1 and seen[0].startswith(
        f"{run.resolve()}: in use by cryostream train: process {os.getpid()} on ")
    assert seen[0].endswith("wait for it to finish or stop it, or give another")
    assert not (run / LOCK_NAME).exists()


def test_a_place_under_a_file_or_one_that_cannot_be_locked(tmp_path, monkeypatch, caplog):
    """A run folder under a file is named as such; a lock file the system will not let us make
    (a finished store read again from a read-only folder) is said in a warning, and the
    command goes on: the store is kept as it is."""
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match=r"sub: not writable \(.*/file is a file, not a folder\); "
                       "give another"):
        with folder_lock(tmp_path / "file" / "sub", command="fit", fix="give another",
                         what="the run"):
            pass
    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(128, 128), seed=4)
    store = prepare(sim.micrographs, tmp_path / "data.h5", STORE).output
    before = store.read_bytes()
    import cryostream.locks as locks

    real = os.open

    def refused(path, *args, **kwargs):  # as a read-only folder refuses a new file
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(locks.os, "open", refused)
    with caplog.at_level("WARNING", logger="cryostream"):
        again = prepare(sim.micrographs, store, STORE)
    assert again.output == store and store.read_bytes() == before
    assert "data.h5: cannot be locked here (Permission denied)" in caplog.text


_NO_SPACE = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # as a full disk: no byte can be written
from cryostream.cli import main
sys.exit(main(["prepare", sys.argv[2], "-o", sys.argv[1], "--patch", "32", "--stride", "32"]))
"""


def test_a_lock_that_cannot_be_written_says_the_disk_is_full_and_leaves_no_lock_file(tmp_path):
    """A full disk met when the lock file is written (the first byte a command writes; the
    last one of denoise, for its STAR file) is said as one: no ``filename: None``, no advice
    meant for a folder in use, and no empty lock file left behind."""
    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(128, 128), seed=4)
    out = tmp_path / "store" / "data.h5"
    out.parent.mkdir()
    result = subprocess.run([sys.executable, "-c", _NO_SPACE, str(out), str(sim.micrographs[0])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "data.h5: not writable (File too large); free some space, then run the same " \
        "command again" in error, error
    assert "None" not in error and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == []
