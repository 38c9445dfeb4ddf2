"""Faults and bad input, through the real command (issue 16): one line and exit status 2 for
every user mistake and damaged file, nothing written outside ``-o``, no earlier good output
lost or changed, no partial file that looks complete; SIGKILL, full disks and hangs in real
child processes.

Most cases call ``cryostream.cli.main`` in this process; a child ``python -m cryostream`` is
used where the case needs a process of its own (killed, limited in file size, or hanging).
The shared data (three 256 × 256 micrographs, a store, a run stopped at step 2 of 4) are built
once and never changed: a case that damages or resumes something works on its own copy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import warnings
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest

import cryostream
from cryostream.cli import main
from tests.conftest import write_mrc
from tests.faults_support import (
    assert_same_contents,
    assert_user_error,
    changed,
    cli,
    cli_process,
    copy_run,
    copy_store,
    corrupt_checkpoint,
    corrupt_chunks,
    finished_steps,
    leftovers,
    read_only_folder,
    run_parameters,
    snapshot,
    start_cli,
    store_contents,
    truncate,
    wait_until,
)

# The command's own behaviour is under test, warnings included: the project's
# warnings-as-errors filters would turn a warning the user merely sees into an exception here.
pytestmark = pytest.mark.filterwarnings("default")

PATCH = ("--patch", "64", "--stride", "64", "--test-fraction", "0.34")
# A run of 4 steps with a checkpoint every 2; the shared run stopped after step 2.
TRAIN = ("--model", "unet-small", "--precision", "fp32", "--steps", "4", "--batch-size", "4",
         "--eval-every", "4", "--checkpoint-every", "2", "--quiet")
TRAIN_CONFIG = dict(model="unet-small", precision="fp32", steps=4, batch_size=4, eval_every=4,
                    checkpoint_every=2)

#: The folders of the shared data made so far; no case may change them.
SHARED: list[Path] = []


def _shared(tmp_path_factory, name: str) -> Path:
    folder = tmp_path_factory.mktemp(name)
    SHARED.append(folder)
    return folder


@pytest.fixture(autouse=True)
def shared_data_unchanged():
    """Every case leaves the shared data as it found them."""
    roots = list(SHARED)
    before = snapshot(*roots)
    yield
    assert not changed(before, snapshot(*roots)), "a case changed the shared data"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return cryostream.simulate(_shared(tmp_path_factory, "sim"), 3, shape=(256, 256), seed=1)


@pytest.fixture(scope="module")
def other_sim(tmp_path_factory):
    return cryostream.simulate(_shared(tmp_path_factory, "sim2"), 3, shape=(256, 256), seed=2)


def _prepare(folder: Path, inputs, *options) -> Path:
    out = folder / "data.h5"
    assert main(["prepare", *map(str, inputs), "-o", str(out), *PATCH, *options, "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def store(sim, tmp_path_factory):
    return _prepare(_shared(tmp_path_factory, "store"), sim.micrographs)


@pytest.fixture(scope="module")
def other_store(other_sim, tmp_path_factory):
    return _prepare(_shared(tmp_path_factory, "store2"), other_sim.micrographs)


@pytest.fixture(scope="module")
def zstd_store(sim, tmp_path_factory):
    return _prepare(_shared(tmp_path_factory, "zstd"), sim.micrographs, "--compression", "zstd")


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    """A run of ``TRAIN`` stopped after its checkpoint at step 2 (as if interrupted)."""
    from cryostream.training import TrainConfig, train

    folder = _shared(tmp_path_factory, "run") / "run"
    train(store, folder, TrainConfig(**TRAIN_CONFIG), stop_at=2, log=lambda *_: None)
    assert finished_steps(folder) == [2]
    return folder


@pytest.fixture(scope="module")
def denoised(run, sim, tmp_path_factory):
    """``denoise`` of the first two micrographs with the shared run."""
    out = _shared(tmp_path_factory, "denoised") / "out"
    assert main(["denoise", str(run), *map(str, sim.micrographs[:2]), "-o", str(out)]) == 0
    return out


def _variant(source: Path, path: Path, kind: str) -> Path:
    """A copy of micrograph ``source`` at ``path``, damaged as ``kind`` says."""
    with mrcfile.open(source) as m:
        data = m.data.astype(np.float32)
        pixel = float(m.voxel_size.x)
    if kind == "nan":
        data[100, 100] = np.nan
    elif kind == "inf":
        data[100, 100] = np.inf
    elif kind == "zero":
        data[:] = 0
    elif kind == "constant":
        data[:] = 5.0
    elif kind == "negative":  # its 95th percentile under 0: nothing to normalise by
        data = -data
    elif kind == "small":
        data = np.ascontiguousarray(data[:4, :4])
    elif kind == "huge":  # finite, but its power spectrum overflows float32
        data = data * np.float32(1e30)
    elif kind != "copy":
        raise ValueError(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_mrc(path, data, pixel_size=pixel)


def _outside(before: dict, after: dict, *allowed: Path) -> set[str]:
    """Changed paths that lie outside every one of ``allowed`` (and its ``.shards`` folder)."""
    roots = [str(a) for a in allowed]
    return {p for p in changed(before, after)
            if not any(p == r or p.startswith(r + os.sep) or p.startswith(r + ".shards")
                       for r in roots)}


def _outputs(out: Path) -> list[Path]:
    return sorted(out.rglob("*.mrc")) if out.exists() else []


def _finite_outputs(out: Path) -> None:
    """Every MRC under ``out`` is complete (mrcfile reads it strictly) and finite."""
    for path in _outputs(out):
        with mrcfile.open(path, permissive=False) as m:
            assert np.isfinite(m.data).all(), f"{path} holds non-finite pixels"


# ---------------------------------------------------------------------------------- prepare


def test_prepare_refuses_a_nan_micrograph(sim, tmp_path, capsys):
    """prepare with a micrograph holding one NaN pixel: one line naming it, no store."""
    bad = _variant(sim.micrographs[0], tmp_path / "in" / "nan.mrc", "nan")
    out = tmp_path / "s.h5"
    before = snapshot(tmp_path)
    result = cli(capsys, "prepare", *sim.micrographs[1:], bad, "-o", out, *PATCH, "--quiet")
    assert_user_error(result, "nan.mrc")
    assert not out.exists()
    assert not _outside(before, snapshot(tmp_path), out)


def test_prepare_refuses_a_micrograph_too_large_to_measure_its_noise(sim, tmp_path, capsys):
    """prepare with a micrograph of values near 10³⁰ (finite, but its noise spectrum overflows
    float32): one line naming it, no store (with --noise matched the store had held NaN inputs
    for it, status 0, numpy's overflow warnings the only sign; fit then trained on them and
    reported a test PSNR of nan). --permissive skips it and the store is finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's header statistics overflow
        bad = _variant(sim.micrographs[0], tmp_path / "in" / "huge.mrc", "huge")
    for noise in ("poisson-gaussian", "matched"):
        out = tmp_path / f"{noise}.h5"
        result = cli(capsys, "prepare", *sim.micrographs[1:], bad, "-o", out, *PATCH,
                     "--noise", noise, "--quiet")
        line = assert_user_error(result, "huge.mrc")
        assert "too large" in line and "--permissive" in line, line
        assert not out.exists()
    out = tmp_path / "skipped.h5"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = cli(capsys, "prepare", *sim.micrographs[1:], bad, "-o", out, *PATCH,
                     "--noise", "matched", "--permissive", "--quiet")
    assert result.rc == 0, result.describe()
    assert [type(w.message).__name__ for w in seen] == ["MicrographSkippedWarning"], seen
    assert "huge.mrc: holds values up to" in str(seen[0].message)
    with h5py.File(out) as f:
        assert np.isfinite(f["train/input"][:]).all() and np.isfinite(f["test/input"][:]).all()


def test_prepare_measures_again_an_overflowed_noise_estimate_an_earlier_run_cached(sim, tmp_path,
                                                                                  capsys):
    """A shard folder an earlier version left (a run stopped before its master file) for a
    micrograph of values near 10³⁰: its statistics passed and its cached noise estimate
    overflowed. prepare run again measures it again and skips it (--permissive), never building
    the store from the cached NaN (its input patches all NaN)."""
    from cryostream.prepare_output import (
        load_estimate,
        noise_file,
        read_statistics,
        save_estimate,
        write_statistics,
    )
    from cryostream.store import shard_folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's header statistics overflow
        bad = _variant(sim.micrographs[0], tmp_path / "in" / "huge.mrc", "huge")
    out = tmp_path / "m.h5"
    args = (*sim.micrographs[1:], bad, "-o", out, *PATCH, "--noise", "matched", "--permissive",
            "--quiet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli(capsys, "prepare", *args).rc == 0
    out.unlink()  # stopped before its master file
    folder = shard_folder(out)
    statistics = read_statistics(folder)
    key, good = (next(k for k in statistics if k.endswith(name)) for name in ("huge.mrc", "_0001.mrc"))
    statistics[key][4] = None  # as the earlier version cached it, with an estimate that overflowed
    write_statistics(folder, statistics)
    estimate = load_estimate(noise_file(folder, good))
    save_estimate(noise_file(folder, key), dataclasses.replace(
        estimate, psd=estimate.psd * np.float32(np.nan), variance=math.inf))
    with pytest.warns(cryostream.MicrographSkippedWarning, match=r"huge\.mrc: holds values up to"):
        assert cli(capsys, "prepare", *args).rc == 0
    with h5py.File(out) as f:
        assert np.isfinite(f["train/input"][:]).all() and np.isfinite(f["test/input"][:]).all()


def test_prepare_into_an_existing_store_is_refused(store, sim, tmp_path, capsys):
    """prepare onto an existing store of other options without --overwrite: one line naming
    what differs and the fix, the store unchanged; the same command keeps it, unchanged."""
    copy = copy_store(store, tmp_path / "old")
    before = snapshot(tmp_path)
    result = cli(capsys, "prepare", *sim.micrographs, "-o", copy, *PATCH, "--seed", "9",
                 "--quiet")
    assert "seed 0 in the store, 9 now" in assert_user_error(result, copy.name, "--overwrite")
    assert not changed(before, snapshot(tmp_path))
    result = cli(capsys, "prepare", *sim.micrographs, "-o", copy, *PATCH, "--quiet")
    assert result.rc == 0 and "is already complete" in result.out, result.describe()
    assert not changed(before, snapshot(tmp_path))


def test_prepare_overwrite_with_a_bad_input_keeps_the_old_store(store, sim, tmp_path, capsys):
    """prepare --overwrite with a bad input: one line naming it, the old store intact."""
    copy = copy_store(store, tmp_path / "old")
    bad = _variant(sim.micrographs[0], tmp_path / "in" / "nan.mrc", "nan")
    before = snapshot(tmp_path)
    result = cli(capsys, "prepare", *sim.micrographs[1:], bad, "-o", copy, *PATCH, "--overwrite",
                 "--quiet")
    assert_user_error(result, "nan.mrc")
    assert not changed(before, snapshot(tmp_path))


def test_prepare_output_that_is_an_input_is_refused(sim, tmp_path, capsys):
    """prepare -o <an input .mrc> --overwrite: refused before any work, the micrograph intact."""
    mics = [_variant(m, tmp_path / "mics" / m.name, "copy") for m in sim.micrographs]
    before = snapshot(tmp_path)
    result = cli(capsys, "prepare", *mics, "-o", mics[0], *PATCH, "--overwrite", "--quiet")
    assert_user_error(result, mics[0].name, "-o", "output")
    assert not changed(before, snapshot(tmp_path))


def test_prepare_overwrite_never_replaces_a_file_that_is_not_a_store(sim, tmp_path, capsys):
    """prepare -o <a micrograph or another HDF5 file that is not an input> --overwrite: refused,
    the file intact; a store is still replaced."""
    precious = _variant(sim.micrographs[1], tmp_path / "precious.mrc", "copy")
    other = tmp_path / "mine.h5"
    with h5py.File(other, "w") as f:
        f["counts"] = np.arange(5)
    before = snapshot(tmp_path)
    for target in (precious, other):
        result = cli(capsys, "prepare", sim.micrographs[0], "-o", target, *PATCH, "--overwrite",
                     "--quiet")
        assert "not a cryostream store" in assert_user_error(result, target.name)
    assert not changed(before, snapshot(tmp_path))


def test_prepare_output_that_is_a_folder_is_refused(sim, tmp_path, capsys):
    """prepare -o <an existing folder> --overwrite: refused, the folder and its files intact."""
    folder = tmp_path / "results"
    (folder / "keep").mkdir(parents=True)
    (folder / "keep" / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    result = cli(capsys, "prepare", *sim.micrographs, "-o", folder, *PATCH, "--overwrite",
                 "--quiet")
    assert_user_error(result, folder.name, "folder", "directory")
    assert not changed(before, snapshot(tmp_path))


def test_prepare_resume_after_an_input_changed(sim, other_sim, tmp_path, capsys):
    """prepare interrupted after its shards, an input rewritten, the same command again: the
    changed input is refused (one line naming it) or re-prepared (the store then equals a
    fresh one of the new inputs); never a mix of old and new data."""
    mics = [_variant(m, tmp_path / "mics" / m.name, "copy") for m in sim.micrographs]
    out = tmp_path / "s.h5"
    assert cli(capsys, "prepare", *mics, "-o", out, *PATCH, "--quiet").rc == 0
    out.unlink()  # interrupted before the master file
    shutil.copyfile(other_sim.micrographs[1], mics[1])
    stamp = mics[1].stat().st_mtime + 10
    os.utime(mics[1], (stamp, stamp))
    result = cli(capsys, "prepare", *mics, "-o", out, *PATCH, "--quiet")
    if result.rc == 0:
        fresh = tmp_path / "fresh.h5"
        assert cli(capsys, "prepare", *mics, "-o", fresh, *PATCH, "--quiet").rc == 0
        assert_same_contents(store_contents(out), store_contents(fresh))
    else:
        assert_user_error(result, mics[1].name, "changed")
        assert not out.exists()


def test_prepare_resume_with_a_truncated_statistics_file(sim, tmp_path, capsys):
    """prepare interrupted after its shards, statistics.json truncated, the same command
    again: one line naming the file, or the store made again exactly as before."""
    mics = [_variant(m, tmp_path / "mics" / m.name, "copy") for m in sim.micrographs]
    out = tmp_path / "s.h5"
    assert cli(capsys, "prepare", *mics, "-o", out, *PATCH, "--quiet").rc == 0
    want = store_contents(out)
    out.unlink()
    truncate(tmp_path / "s.h5.shards" / "statistics.json")
    before = snapshot(tmp_path / "mics")
    result = cli(capsys, "prepare", *mics, "-o", out, *PATCH, "--quiet")
    if result.rc == 0:
        assert_same_contents(store_contents(out), want)
    else:
        assert_user_error(result, "statistics.json")
        assert not out.exists()
    assert not changed(before, snapshot(tmp_path / "mics"))


def test_prepare_refuses_a_patch_the_models_cannot_take(sim, tmp_path, capsys):
    """prepare --patch 127: refused at prepare (one line naming --patch), no store."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, "--patch", "127", "--stride",
                 "64", "--quiet")
    assert_user_error(result, "patch")
    assert not out.exists()


def test_prepare_symlink_loop_among_inputs(sim, tmp_path, capsys):
    """prepare with a symlink loop among the inputs: one line naming it, no store."""
    loop = tmp_path / "in" / "loop.mrc"
    loop.parent.mkdir()
    loop.symlink_to(loop)
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, loop, "-o", out, *PATCH, "--quiet")
    assert_user_error(result, "loop.mrc")
    assert not out.exists()


@pytest.mark.slow
def test_prepare_full_disk_with_overwrite_keeps_the_old_store(store, sim, tmp_path):
    """prepare --overwrite on a disk that fills up: one line, the old store intact."""
    copy = copy_store(store, tmp_path / "old")
    before = snapshot(tmp_path)
    result = cli_process("prepare", *sim.micrographs, "-o", copy, *PATCH, "--overwrite", "--quiet",
                         cwd=tmp_path, file_size_limit=20_000)
    assert_user_error(result, copy.name, ".h5", ".npz", "disk")
    assert not changed(before, snapshot(tmp_path))


@pytest.mark.slow
def test_prepare_sigkill_then_rerun_is_byte_identical(tmp_path, capsys):
    """prepare killed (SIGKILL) after its first shard, then run again: shards byte-identical
    to an uninterrupted run's, the master file the same dataset by dataset and attribute by
    attribute, no partial file left."""
    sim = cryostream.simulate(tmp_path / "sim", 4, shape=(512, 512), seed=3)
    options = ("--patch", "64", "--stride", "16", "--test-fraction", "0.25", "--quiet")
    killed = tmp_path / "killed" / "s.h5"
    killed.parent.mkdir()
    shards = killed.with_name("s.h5.shards")
    proc = start_cli("prepare", *sim.micrographs, "-o", killed, *options, cwd=tmp_path)
    try:
        assert wait_until(proc, lambda: shards.is_dir() and any(
            p.suffix == ".h5" for p in shards.iterdir())), proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    if killed.exists():
        pytest.fail("prepare finished before the kill: make the data larger")
    line = assert_user_error(cli(capsys, "show", killed, "-o", tmp_path / "s.png"), "s.h5")
    assert "not finished" in line and "run the same cryostream prepare command again" in line
    assert main(["prepare", *map(str, sim.micrographs), "-o", str(killed), *options]) == 0
    whole = tmp_path / "whole" / "s.h5"
    assert main(["prepare", *map(str, sim.micrographs), "-o", str(whole), *options]) == 0

    def shard_files(store: Path) -> dict[str, str]:
        found = snapshot(store.with_name(store.name + ".shards"))
        return {Path(p).name: h for p, h in found.items()}

    assert shard_files(killed) == shard_files(whole)  # every shard, the statistics and noise files
    # The master's virtual datasets carry HDF5's modification time, so its bytes follow the
    # clock (two uninterrupted runs differ too); its contents must be the same.
    assert_same_contents(store_contents(killed), store_contents(whole))
    assert not leftovers(killed.parent)


# ------------------------------------------------------------------------ cluster options


@pytest.mark.slow
def test_prepare_negative_workers_exits(sim, tmp_path):
    """prepare --workers -3: one line naming --workers within a minute, no store (no hang)."""
    out = tmp_path / "s.h5"
    result = cli_process("prepare", *sim.micrographs, "-o", out, *PATCH, "--workers", "-3",
                         "--quiet", cwd=tmp_path, timeout=90)
    assert_user_error(result, "workers")
    assert not out.exists()


def test_prepare_zero_workers(sim, tmp_path, capsys):
    """prepare --workers 0: one line naming --workers, no store."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--workers", "0",
                 "--quiet")
    assert_user_error(result, "workers")
    assert not out.exists()


def test_prepare_bad_memory_limit(sim, tmp_path, capsys):
    """prepare --workers 1 --memory-limit lots: one line naming --memory-limit, no store."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--workers", "1",
                 "--memory-limit", "lots", "--quiet")
    assert_user_error(result, "memory-limit", "memory_limit", "lots")
    assert not out.exists()


def test_prepare_refuses_options_it_would_not_use(sim, tmp_path, capsys):
    """--memory-limit without --workers, and a noise option the chosen noise does not use
    (--sigma with --noise none), had been ignored without a word: one line each, no store."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--memory-limit",
                 "4GiB", "--quiet")
    assert "prepare runs in threads without --workers: add --workers N" in assert_user_error(
        result, "--memory-limit 4GiB")
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--noise", "none",
                 "--targets", *sim.truths, "--sigma", "0.3", "--quiet")
    assert "with --noise none it is not used: leave it out" in assert_user_error(
        result, "--sigma 0.3 is for gaussian and poisson-gaussian noise")
    result = cli(capsys, "plan", *sim.micrographs, *PATCH, "--noise", "gaussian", "--alpha", "2")
    assert_user_error(result, "--alpha 2.0 is for matched noise")
    assert not out.exists()


def test_prepare_report_into_a_missing_folder_fails_before_the_work(sim, tmp_path, capsys):
    """--report is written after all the work: a path that cannot be written is one line at
    the start (it had failed at the end and left no store)."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--report",
                 tmp_path / "no" / "r.html", "--quiet")
    assert f"its folder {tmp_path / 'no'} does not exist" in assert_user_error(result, "--report")
    assert "pass 1" not in result.err and not out.exists()


def test_prepare_malformed_scheduler(sim, tmp_path, capsys):
    """prepare --scheduler 'notanaddress:::': one line naming --scheduler, no store."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--scheduler",
                 "notanaddress:::", "--quiet")
    assert_user_error(result, "scheduler", "notanaddress")
    assert not out.exists()


@pytest.mark.slow
def test_prepare_unreachable_scheduler_fails_fast(sim, tmp_path, capsys):
    """prepare --scheduler tcp://127.0.0.1:1 (nothing listens): one line naming the address
    within a short timeout (not distributed's 30 s), no store."""
    out = tmp_path / "s.h5"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--scheduler",
                 "tcp://127.0.0.1:1", "--quiet")
    assert_user_error(result, "scheduler", "127.0.0.1:1")
    assert result.seconds < 15, result.describe()
    assert not out.exists()


def test_prepare_report_without_workers(sim, tmp_path, capsys):
    """prepare --report r.html without --workers: the store and the report are written."""
    out, report = tmp_path / "s.h5", tmp_path / "r.html"
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--report", report,
                 "--quiet")
    assert result.rc == 0, result.describe()
    assert out.exists() and report.stat().st_size > 10_000


def test_denoise_zero_workers(run, sim, tmp_path, capsys):
    """denoise --workers 0: one line naming --workers, no output folder made."""
    out = tmp_path / "out"
    result = cli(capsys, "denoise", run, sim.micrographs[0], "-o", out, "--workers", "0")
    assert_user_error(result, "workers")
    assert not out.exists()


def test_denoise_with_a_bad_network_memory_setting(run, sim, tmp_path, capsys, monkeypatch):
    """CRYOSTREAM_NETWORK_MEMORY_GB that is no size: one line naming it, no output folder."""
    out = tmp_path / "out"
    monkeypatch.setenv("CRYOSTREAM_NETWORK_MEMORY_GB", "8GB")
    result = cli(capsys, "denoise", run, sim.micrographs[0], "-o", out)
    assert_user_error(result, "CRYOSTREAM_NETWORK_MEMORY_GB='8GB'")
    assert not out.exists()


# ------------------------------------------------------------------------------------ train


def _resume_refused(capsys, store, run, tmp_path, *options, names=()) -> None:
    """``train --resume`` of a copy of ``run`` with ``options`` after ``TRAIN``: one line
    naming one of ``names``, and nothing in the run changed."""
    copy = copy_run(run, tmp_path / "run")
    before = snapshot(tmp_path)
    result = cli(capsys, "train", store, "-o", copy, *TRAIN, *options, "--resume")
    assert_user_error(result, *names)
    assert not changed(before, snapshot(tmp_path))


def test_train_resume_from_a_corrupted_checkpoint_is_refused(store, run, tmp_path, capsys):
    """train --resume after 64 bytes of the checkpoint's data were flipped: one line naming
    the checkpoint, nothing in the run changed."""
    copy = copy_run(run, tmp_path / "run")
    corrupt_checkpoint(copy)
    before = snapshot(tmp_path)
    result = cli(capsys, "train", store, "-o", copy, *TRAIN, "--resume")
    assert_user_error(result, "checkpoint")
    assert not changed(before, snapshot(tmp_path))


def test_train_resume_with_another_model_is_refused(store, run, tmp_path, capsys):
    """train --resume --model unet on a unet-small run: one line naming the model, the run
    unchanged."""
    _resume_refused(capsys, store, run, tmp_path, "--model", "unet", names=("model",))


def test_train_resume_with_another_batch_size_is_refused(store, run, tmp_path, capsys):
    """train --resume --batch-size 8 on a run of batch 4: one line naming the batch size."""
    _resume_refused(capsys, store, run, tmp_path, "--batch-size", "8", names=("batch",))


def test_train_resume_with_another_learning_rate_is_refused(store, run, tmp_path, capsys):
    """train --resume --lr 0.01 on a run of the default rate: one line naming the rate."""
    _resume_refused(capsys, store, run, tmp_path, "--lr", "0.01", names=("lr", "learning"))


def test_train_resume_on_another_store_is_refused(other_store, run, tmp_path, capsys):
    """train --resume on a store other than the run's: one line naming the store."""
    _resume_refused(capsys, other_store, run, tmp_path, names=("store", other_store.name))


def test_train_resume_with_broken_checkpoint_metadata(store, run, tmp_path, capsys):
    """train --resume after the checkpoint's metadata (loader position, record) was cut in
    half: one line naming the checkpoint, nothing in the run changed."""
    copy = copy_run(run, tmp_path / "run")
    truncate(copy / "checkpoints" / "2" / "meta" / "metadata")
    before = snapshot(tmp_path)
    result = cli(capsys, "train", store, "-o", copy, *TRAIN, "--resume")
    assert_user_error(result, "checkpoint", "metadata")
    assert not changed(before, snapshot(tmp_path))


def test_train_into_a_read_only_folder(store, tmp_path, capsys):
    """train -o <inside a read-only folder>: one line naming the run folder."""
    with read_only_folder(tmp_path) as folder:
        result = cli(capsys, "train", store, "-o", folder / "run", *TRAIN)
        assert_user_error(result, folder.name, "run")


def test_train_on_a_store_with_truncated_shards(store, tmp_path, capsys):
    """train on a store whose shards were cut in half: one line naming the store or a shard,
    no checkpoint written."""
    copy = copy_store(store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        truncate(shard)
    result = cli(capsys, "train", copy, "-o", tmp_path / "run", *TRAIN)
    assert_user_error(result, ".h5", "shard")
    assert finished_steps(tmp_path / "run") == []


def test_a_store_holding_nan_patches_is_named_by_train_and_evaluate(store, run, tmp_path, capsys):
    """A store whose shards hold NaN patches (an earlier version stored a micrograph of values
    near 10³⁰ so, with matched noise): train reported a test PSNR of nan (noisy input nan) with
    status 0, or, in the train split, a divergence to fix by lowering --lr; evaluate wrote a
    report of nan. Each now says one line naming the shard and the fix; no checkpoint, no
    report."""
    copy = copy_store(store, tmp_path / "bad")
    for shard in sorted(copy.with_name(copy.name + ".shards").glob("*.h5")):
        with h5py.File(shard, "r+") as f:  # HDF5 writes the chunks' checksums anew
            f["input"][0, 3, 3] = np.nan
    for command in (["train", copy, "-o", tmp_path / "run", *TRAIN],
                    ["evaluate", run, copy, "-o", tmp_path / "report", "--quiet"]):
        line = assert_user_error(cli(capsys, *command), "shard")
        assert "NaN" in line and "prepare" in line, line
    assert finished_steps(tmp_path / "run") == []
    assert not (tmp_path / "report").exists()


def test_a_damaged_shard_of_a_store_named_from_another_folder_is_the_file_to_delete(
        store, tmp_path, capsys, monkeypatch):
    """A store given by a relative path (``train bad/data.h5``): the message names the shard
    where it is (not under the store's folder twice) and says to delete it with the store, so
    that the same prepare makes it again (deleting the store alone keeps the damaged shard)."""
    copy = copy_store(store, tmp_path / "bad")
    shard = sorted(copy.with_name(copy.name + ".shards").glob("*.h5"))[0]
    truncate(shard)
    monkeypatch.chdir(tmp_path)
    result = cli(capsys, "train", Path("bad") / copy.name, "-o", "run", *TRAIN)
    assert_user_error(result, "shard")
    named = result.err.split(": a damaged shard")[0].split("error: ")[-1]
    assert Path(named).resolve() == shard.resolve()
    assert f"delete {shard.name} and {copy.name}, then run the same" in result.err


def test_train_refuses_a_resume_with_no_run_and_a_folder_of_other_files(store, tmp_path, capsys):
    """``--resume`` into a mistyped folder had started a new training silently, and a folder
    of micrographs took checkpoints among them: one line each, nothing written."""
    result = cli(capsys, "train", store, "-o", tmp_path / "rnu", *TRAIN, "--resume")
    line = assert_user_error(result, "rnu")
    assert "--resume, but no run is there" in line and "leave out --resume" in line
    assert not (tmp_path / "rnu").exists()
    sim = tmp_path / "sim"
    (sim / "micrographs").mkdir(parents=True)
    (sim / "micrographs.star").write_text("data_\n")
    result = cli(capsys, "train", store, "-o", sim, *TRAIN)
    assert "holds other files (micrographs, micrographs.star), not a run" in assert_user_error(
        result, "sim")
    assert sorted(p.name for p in sim.iterdir()) == ["micrographs", "micrographs.star"]
    logged = tmp_path / "logged"  # a batch system's log in the run folder is no obstacle
    logged.mkdir()
    (logged / "slurm-1.out").write_text("started\n")
    result = cli(capsys, "train", store, "-o", logged, *TRAIN)
    assert result.rc == 0, result.describe()
    from cryostream.runs import check_run_folder

    fitted = tmp_path / "fitted"  # a fit's run with its outputs denoised into it: fit's to judge
    (fitted / "denoised").mkdir(parents=True)
    (fitted / "fit.json").write_text("{}")
    check_run_folder(fitted, resume=False)


def test_train_on_a_store_with_corrupt_compressed_chunks(zstd_store, tmp_path, capsys):
    """train on a zstd store with bytes flipped in every chunk: one line naming the store or
    a shard, no checkpoint written."""
    copy = copy_store(zstd_store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        corrupt_chunks(shard)
    result = cli(capsys, "train", copy, "-o", tmp_path / "run", *TRAIN)
    assert_user_error(result, ".h5", "shard")
    assert finished_steps(tmp_path / "run") == []


@pytest.mark.slow
def test_train_resume_with_the_same_options_continues(store, run, tmp_path, capsys):
    """train --resume with the run's own options: continues from step 2 to step 4."""
    copy = copy_run(run, tmp_path / "run")
    result = cli(capsys, "train", store, "-o", copy, *TRAIN, "--resume")
    assert result.rc == 0, result.describe()
    assert finished_steps(copy)[-1] == 4
    assert all(np.isfinite(p).all() for p in run_parameters(copy))


@pytest.mark.slow
def test_train_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(store, tmp_path, capsys):
    """train --lr 1e30 (the loss overflows): one line naming the loss, and the last checkpoint
    left holds finite parameters."""
    folder = tmp_path / "run"
    result = cli(capsys, "train", store, "-o", folder, "--model", "unet-small", "--precision",
                 "fp32", "--steps", "8", "--batch-size", "4", "--eval-every", "8",
                 "--checkpoint-every", "1", "--lr", "1e30", "--quiet")
    assert_user_error(result, "loss", "finite", "nan")
    if finished_steps(folder):
        assert all(np.isfinite(p).all() for p in run_parameters(folder))


@pytest.mark.slow
def test_train_full_disk_during_a_checkpoint_keeps_the_last_good_one(store, run, tmp_path):
    """train --resume on a disk that fills up at the step-4 checkpoint: one line, and the
    step-2 checkpoint untouched."""
    copy = copy_run(run, tmp_path / "run")
    before = snapshot(copy / "checkpoints" / "2")
    result = cli_process("train", store, "-o", copy, *TRAIN, "--resume", cwd=tmp_path,
                         file_size_limit=100_000)
    assert_user_error(result, "checkpoint", "disk", "write")
    assert finished_steps(copy) == [2]
    assert not changed(before, snapshot(copy / "checkpoints" / "2"))


@pytest.mark.slow
def test_train_sigkill_then_resume_is_bit_exact(store, tmp_path, capsys):
    """train killed (SIGKILL) after its first checkpoint, then --resume: the same parameters
    and losses as an uninterrupted run."""
    options = ("--model", "unet-small", "--precision", "fp32", "--steps", "40", "--batch-size",
               "4", "--eval-every", "40", "--checkpoint-every", "4", "--quiet")
    killed = tmp_path / "killed"
    proc = start_cli("train", store, "-o", killed, *options, cwd=tmp_path)
    try:
        assert wait_until(proc, lambda: bool(finished_steps(killed))), proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    steps = finished_steps(killed)
    if steps[-1] == 40:
        pytest.fail("training finished before the kill: give it more steps")
    assert cli(capsys, "train", store, "-o", killed, *options, "--resume").rc == 0
    whole = tmp_path / "whole"
    assert cli(capsys, "train", store, "-o", whole, *options).rc == 0
    for a, b in zip(run_parameters(killed), run_parameters(whole), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (killed / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()


# ---------------------------------------------------------------------------------- denoise


def test_denoise_writes_complete_finite_outputs(denoised):
    """denoise of good micrographs: complete, finite float32 MRC files in -o."""
    assert [p.name for p in _outputs(denoised)] == ["sim_0000.mrc", "sim_0001.mrc"]
    _finite_outputs(denoised)
    assert not leftovers(denoised)


def test_denoise_with_a_corrupted_checkpoint_is_refused(run, sim, tmp_path, capsys):
    """denoise with a run whose checkpoint had 64 bytes flipped: one line naming the
    checkpoint, no non-finite output."""
    copy = copy_run(run, tmp_path / "run")
    corrupt_checkpoint(copy)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", copy, sim.micrographs[0], "-o", out)
    assert_user_error(result, "checkpoint")
    assert not _outputs(out) and not leftovers(out)
    assert not _outside(before, snapshot(tmp_path), out)


def test_denoise_with_broken_checkpoint_metadata(run, sim, tmp_path, capsys):
    """denoise with a run whose parameters' metadata (_METADATA) was cut in half: one line
    naming the checkpoint, no output."""
    copy = copy_run(run, tmp_path / "run")
    for item in ("state", "params"):
        metadata = copy / "checkpoints" / "2" / item / "_METADATA"
        if metadata.exists():
            truncate(metadata)
    out = tmp_path / "out"
    result = cli(capsys, "denoise", copy, sim.micrographs[0], "-o", out)
    assert_user_error(result, "checkpoint", "_METADATA")
    assert not _outputs(out) and not leftovers(out)


def test_denoise_with_a_truncated_config_json(run, sim, tmp_path, capsys):
    """denoise with a run whose config.json was cut in half: one line naming it, no output."""
    copy = copy_run(run, tmp_path / "run")
    truncate(copy / "config.json")
    out = tmp_path / "out"
    result = cli(capsys, "denoise", copy, sim.micrographs[0], "-o", out)
    assert_user_error(result, "config.json")
    assert not _outputs(out)


def test_denoise_with_a_wrong_value_in_config_json(run, sim, tmp_path, capsys):
    """denoise with a run whose config.json says batch_size "four": one line naming the
    file, no output."""
    import json

    copy = copy_run(run, tmp_path / "run")
    record = json.loads((copy / "config.json").read_text())
    record["train"]["batch_size"] = "four"
    (copy / "config.json").write_text(json.dumps(record))
    out = tmp_path / "out"
    result = cli(capsys, "denoise", copy, sim.micrographs[0], "-o", out)
    assert_user_error(result, "config.json")
    assert not _outputs(out)


def _equal_stems(sim, tmp_path) -> tuple[Path, Path]:
    a = _variant(sim.micrographs[0], tmp_path / "a" / "x.mrc", "copy")
    b = _variant(sim.micrographs[1], tmp_path / "b" / "x.mrc", "copy")
    return a, b


def _check_equal_stems(result, out: Path) -> None:
    """Two distinct finite outputs inside ``out``, or one line naming the clash."""
    if result.rc == 0:
        outputs = _outputs(out)
        assert len(outputs) == 2, outputs
        _finite_outputs(out)
        assert outputs[0].read_bytes() != outputs[1].read_bytes()
    else:
        assert_user_error(result, "x.mrc", "name")


def test_denoise_equal_stems_stay_inside_the_output(run, sim, tmp_path, capsys):
    """denoise a/x.mrc b/x.mrc -o out: two distinct outputs in out (a deterministic unique
    name) or a refusal; nothing written outside out."""
    a, b = _equal_stems(sim, tmp_path)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, a, b, "-o", out)
    assert not _outside(before, snapshot(tmp_path), out)
    _check_equal_stems(result, out)


def test_denoise_equal_stems_with_overwrite_leave_other_files_alone(run, sim, tmp_path, capsys):
    """denoise a/x.mrc b/x.mrc -o out --overwrite where a/x.mrc.mrc and b/x.mrc.mrc exist:
    those files unchanged, nothing written outside out."""
    a, b = _equal_stems(sim, tmp_path)
    for mine in (a.with_name("x.mrc.mrc"), b.with_name("x.mrc.mrc")):
        mine.write_bytes(b"someone else's file\n")
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, a, b, "-o", out, "--overwrite")
    assert not _outside(before, snapshot(tmp_path), out)
    _check_equal_stems(result, out)


def _bad_input_refused(capsys, run, sim, tmp_path, kind: str, *, alone: bool = False) -> None:
    """denoise of a good micrograph and a ``kind`` one: one line naming the bad file, no
    output for it, no non-finite output, nothing outside -o."""
    bad = _variant(sim.micrographs[0], tmp_path / "in" / f"{kind}.mrc", kind)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    inputs = [bad] if alone else [sim.micrographs[1], bad]
    result = cli(capsys, "denoise", run, *inputs, "-o", out)
    line = assert_user_error(result, bad.name)
    assert not any(p.stem == kind for p in _outputs(out))
    _finite_outputs(out)
    assert not leftovers(out)
    assert not _outside(before, snapshot(tmp_path), out)
    return line


def test_denoise_refuses_a_nan_micrograph(run, sim, tmp_path, capsys):
    """denoise of a micrograph with one NaN pixel: one line naming it, no NaN output."""
    _bad_input_refused(capsys, run, sim, tmp_path, "nan")


def test_denoise_refuses_an_inf_micrograph(run, sim, tmp_path, capsys):
    """denoise of a micrograph with one Inf pixel: one line naming it, no non-finite output."""
    _bad_input_refused(capsys, run, sim, tmp_path, "inf")


def test_denoise_refuses_an_all_zero_micrograph(run, sim, tmp_path, capsys):
    """denoise of an all-zero micrograph: one line naming it, no NaN output."""
    _bad_input_refused(capsys, run, sim, tmp_path, "zero")


def test_denoise_refuses_a_constant_micrograph(run, sim, tmp_path, capsys):
    """denoise of a constant micrograph: one line naming it."""
    _bad_input_refused(capsys, run, sim, tmp_path, "constant")


def test_denoise_refuses_a_negative_micrograph_naming_what_it_needs(run, sim, tmp_path, capsys):
    """denoise of a micrograph of negated counts: one line naming it and what a micrograph
    needs (no --percentile: denoise has none)."""
    line = _bad_input_refused(capsys, run, sim, tmp_path, "negative", alone=True)
    assert "95th percentile" in line and "counts" in line and "--percentile" not in line


def test_denoise_refuses_a_micrograph_too_small(run, sim, tmp_path, capsys):
    """denoise of a 4 × 4 micrograph: one line naming it."""
    _bad_input_refused(capsys, run, sim, tmp_path, "small", alone=True)


def test_denoise_permissive_skips_a_bad_micrograph(run, sim, tmp_path, capsys):
    """denoise --permissive of a good and a NaN micrograph: the good one denoised, the bad one
    skipped, exit 0."""
    bad = _variant(sim.micrographs[0], tmp_path / "in" / "nan.mrc", "nan")
    out = tmp_path / "out"
    result = cli(capsys, "denoise", run, sim.micrographs[1], bad, "-o", out, "--permissive")
    assert result.rc == 0, result.describe()
    assert [p.stem for p in _outputs(out)] == [sim.micrographs[1].stem]
    _finite_outputs(out)


def test_a_skipped_micrograph_is_noted_as_skipped_with_why_not_as_denoised(run, sim, tmp_path,
                                                                           capsys):
    """denoise --permissive of a good and an Inf micrograph: the skipped one's progress note had
    read 'denoised 2/2 inf.mrc: skipped'; it says it was skipped and why, not denoised."""
    bad = _variant(sim.micrographs[0], tmp_path / "in" / "inf.mrc", "inf")
    out = tmp_path / "out"
    result = cli(capsys, "denoise", run, sim.micrographs[1], bad, "-o", out, "--permissive",
                 "--workers", "1")
    assert result.rc == 0, result.describe()
    notes = [line for line in result.err.splitlines() if "/2 " in line]
    assert len(notes) == 2, result.err
    assert notes[0].startswith(f"cryostream: denoised 1/2 {sim.micrographs[1].name}: ")
    assert notes[1] == "cryostream: 2/2 inf.mrc: skipped (holds NaN or Inf pixels)", notes
    assert [p.stem for p in _outputs(out)] == [sim.micrographs[1].stem]


def test_denoise_goes_on_past_bad_micrographs_and_names_them_all(run, sim, tmp_path, capsys):
    """denoise of a NaN, a good and an all-zero micrograph: the good one is denoised whole, then
    one line names both bad ones with their problems (status 2, no STAR file: the run is not
    complete); the rerun without them keeps the finished output and completes (it stopped at
    the first bad one and named only it)."""
    nan = _variant(sim.micrographs[0], tmp_path / "in" / "nan.mrc", "nan")
    zero = _variant(sim.micrographs[0], tmp_path / "in" / "zero.mrc", "zero")
    out = tmp_path / "out"
    result = cli(capsys, "denoise", run, nan, sim.micrographs[1], zero, "-o", out)
    line = assert_user_error(result, "nan.mrc")
    for said in ("2 of 3 micrographs", "nan.mrc: holds NaN", "zero.mrc: is constant", "rerun",
                 "--permissive"):
        assert said in line, line
    assert [p.stem for p in _outputs(out)] == [sim.micrographs[1].stem]
    _finite_outputs(out)
    assert not (out / "denoised_micrographs.star").exists()
    written = (out / f"{sim.micrographs[1].stem}.mrc").stat().st_mtime_ns
    again = cli(capsys, "denoise", run, sim.micrographs[1], "-o", out)
    assert again.rc == 0, again.describe()
    assert (out / f"{sim.micrographs[1].stem}.mrc").stat().st_mtime_ns == written  # kept
    assert (out / "denoised_micrographs.star").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "1e-6", "1e6"])
def test_denoise_with_an_impossible_pixel_size_is_one_line(run, sim, tmp_path, capsys, value):
    """--pixel-size inf, nan, 1e-6 or 1e6: one line naming the value and where it came from,
    nothing written (inf and 1e-6 were tracebacks from the CTF fit)."""
    out = tmp_path / "out"
    line = assert_user_error(cli(capsys, "denoise", run, sim.micrographs[0], "-o", out,
                                 "--pixel-size", value), "--pixel-size")
    assert ("must be a pixel size > 0 Å" if value == "nan" else "is outside 0.05–100 Å") in line
    assert not out.exists()


def test_a_binned_micrograph_gets_the_radial_gain_not_an_error():
    """Pixels of 8 Å or more leave no Thon ring finer than the fit's 20 Å: no CTF fit (the
    radial gain), where the fit refused the band with a message about Nyquist."""
    from cryostream.denoise.steps import fit_for_gain

    image = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    assert fit_for_gain(image, 12.0, {}) is None and fit_for_gain(image, 8.0, {}) is None


def test_show_on_a_folder_names_the_store_inside(store, tmp_path, capsys):
    """show on a run or fit folder: one line saying it is a folder and naming the store in it
    (it printed h5py's 'Is a directory' with a buffer address)."""
    folder = tmp_path / "run1"
    (folder / "work").mkdir(parents=True)
    shutil.copy(store, folder / "work" / "data.h5")
    line = assert_user_error(cli(capsys, "show", folder, "-o", tmp_path / "s.png"), "run1")
    assert "a folder, not a store" in line and str(folder / "work" / "data.h5") in line
    assert "errno" not in line and not (tmp_path / "s.png").exists()


def test_an_empty_star_file_is_named(run, tmp_path, capsys):
    """A STAR file with the micrographs column but no rows: one line naming it (it said
    'no readable micrograph among 0 inputs; see the warnings', and there were none)."""
    star = tmp_path / "empty.star"
    star.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\n")
    line = assert_user_error(cli(capsys, "denoise", run, star, "-o", tmp_path / "out"),
                             "empty.star")
    assert "lists no micrographs" in line and "warnings" not in line


def test_denoise_into_the_input_folder_is_refused(run, sim, tmp_path, capsys):
    """denoise mics -o mics --overwrite: refused before any work, the micrographs intact."""
    mics = tmp_path / "mics"
    for m in sim.micrographs[:2]:
        _variant(m, mics / m.name, "copy")
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, mics, "-o", mics, "--overwrite")
    assert_user_error(result, "mics", "-o", "output", "input")
    assert not changed(before, snapshot(tmp_path))


def test_denoise_into_an_input_file_is_refused(run, sim, tmp_path, capsys):
    """denoise m.mrc -o m.mrc: refused before any work, the micrograph intact."""
    mic = _variant(sim.micrographs[0], tmp_path / "mics" / "m.mrc", "copy")
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, mic, "-o", mic, "--overwrite")
    assert_user_error(result, "m.mrc", "-o", "output")
    assert not changed(before, snapshot(tmp_path))


def test_denoise_overwrite_with_a_bad_input_keeps_the_old_outputs(run, sim, denoised, tmp_path,
                                                                   capsys):
    """denoise --overwrite into a folder of earlier outputs, one input holding NaN: one line
    naming it, the earlier outputs unchanged."""
    out = tmp_path / "out"
    shutil.copytree(denoised, out)
    bad = _variant(sim.micrographs[1], tmp_path / "in" / "nan.mrc", "nan")
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, sim.micrographs[0], bad, "-o", out, "--overwrite")
    assert_user_error(result, "nan.mrc")
    assert not changed(before, snapshot(tmp_path))


def test_denoise_into_a_read_only_folder(run, sim, tmp_path, capsys):
    """denoise -o <inside a read-only folder>: one line naming the output folder."""
    with read_only_folder(tmp_path) as folder:
        result = cli(capsys, "denoise", run, sim.micrographs[0], "-o", folder / "out")
        assert_user_error(result, folder.name, "out")


def test_denoise_into_a_folder_holding_the_outputs(run, sim, denoised, tmp_path, capsys):
    """denoise again into a folder that holds the outputs: they are skipped (exit 0) or the
    run is refused with one line; either way they are unchanged."""
    out = tmp_path / "out"
    shutil.copytree(denoised, out)
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, *sim.micrographs[:2], "-o", out)
    if result.rc != 0:
        assert_user_error(result, "sim_0000", "exist", "overwrite", "skip")
    # denoised_micrographs.star, the listing, may be rewritten to name this folder's files
    assert not changed(before, snapshot(tmp_path)) - {str(out / "denoised_micrographs.star")}


def test_denoise_resumes_a_partly_filled_output_folder(run, sim, denoised, tmp_path, capsys):
    """denoise of three micrographs into a folder holding two of the outputs: the two kept as
    they are, the third written (by default, or with --skip-existing after a one-line
    refusal)."""
    out = tmp_path / "out"
    shutil.copytree(denoised, out)
    before = snapshot(out)
    result = cli(capsys, "denoise", run, *sim.micrographs, "-o", out)
    if result.rc != 0:
        assert_user_error(result, "sim_0000", "exist", "overwrite", "skip")
        assert not changed(before, snapshot(out))
        result = cli(capsys, "denoise", run, *sim.micrographs, "-o", out, "--skip-existing")
    assert result.rc == 0, result.describe()
    after = snapshot(out)
    assert all(after.get(p) == h for p, h in before.items()
               if p != str(out / "denoised_micrographs.star"))  # the listing gains the third
    assert [p.name for p in _outputs(out)] == ["sim_0000.mrc", "sim_0001.mrc", "sim_0002.mrc"]
    _finite_outputs(out)


def test_denoise_rerun_after_a_kill_between_image_and_record(run, sim, denoised, tmp_path,
                                                            capsys):
    """denoise run again where a kill fell between an output's image and its record (the
    NAME.json missing beside NAME.mrc): the output made again with its record, exit 0."""
    out = tmp_path / "out"
    shutil.copytree(denoised, out)
    (out / "sim_0001.json").unlink()
    kept = snapshot(out / "sim_0000.mrc", out / "sim_0000.json")
    before = snapshot(tmp_path)
    result = cli(capsys, "denoise", run, *sim.micrographs[:2], "-o", out)
    assert result.rc == 0, result.describe()
    assert (out / "sim_0001.json").exists()
    _finite_outputs(out)
    assert not changed(kept, snapshot(out / "sim_0000.mrc", out / "sim_0000.json"))
    assert not _outside(before, snapshot(tmp_path), out)


def test_denoise_refuses_a_stack_whose_header_says_one_section(sim, tmp_path, capsys):
    """denoise of a file of three micrographs whose header says one (nz=1): one line naming
    it and the sections it holds, nothing written (it denoised the first alone, status 0)."""
    stack = tmp_path / "in" / "stack.mrcs"
    stack.parent.mkdir()
    shutil.copy(sim.micrographs[0], stack)
    data = stack.read_bytes()
    stack.write_bytes(data + data[-256 * 256 * 4:] * 2)
    out = tmp_path / "out"
    line = assert_user_error(cli(capsys, "denoise", stack, "-o", out, "--raw"), "stack.mrcs")
    assert "room for 3 sections" in line and "nz=1" in line
    assert not out.exists()


def test_denoise_symlink_loop_among_inputs(run, sim, tmp_path, capsys):
    """denoise with a symlink loop among the inputs: one line naming it, no output."""
    loop = tmp_path / "in" / "loop.mrc"
    loop.parent.mkdir()
    loop.symlink_to(loop)
    out = tmp_path / "out"
    result = cli(capsys, "denoise", run, sim.micrographs[0], loop, "-o", out)
    assert_user_error(result, "loop.mrc")
    assert not _outputs(out)


@pytest.mark.slow
def test_denoise_full_disk_leaves_no_partial_file(run, sim, tmp_path):
    """denoise on a disk that fills up: one line, no partial file, no output that looks
    complete, nothing written outside -o."""
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    result = cli_process("denoise", run, sim.micrographs[0], "-o", out, cwd=tmp_path,
                         file_size_limit=100_000)
    assert_user_error(result, "sim_0000", "disk", "write", "out")
    assert not leftovers(out)
    assert not _outputs(out)
    assert not _outside(before, snapshot(tmp_path), out)


@pytest.mark.slow
def test_denoise_sigkill_then_rerun_completes(run, sim, tmp_path, capsys):
    """denoise killed (SIGKILL) after its first finished output, then run again: every output
    complete and finite, no partial file left."""
    mics = [_variant(sim.micrographs[i % 3], tmp_path / "mics" / f"m{i}.mrc", "copy")
            for i in range(6)]
    out = tmp_path / "out"
    proc = start_cli("denoise", run, *mics, "-o", out, "--workers", "1", cwd=tmp_path)
    try:  # killed once one output is finished (its image and its record), the next in flight
        wait_until(proc, lambda: any(p.with_suffix(".json").exists() for p in _outputs(out)))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    _finite_outputs(out)  # whatever the kill left looks complete only if it is
    result = cli(capsys, "denoise", run, *mics, "-o", out)
    if result.rc != 0:
        assert_user_error(result, "exist", "overwrite", "skip")
        result = cli(capsys, "denoise", run, *mics, "-o", out, "--skip-existing")
    assert result.rc == 0, result.describe()
    assert [p.stem for p in _outputs(out)] == [f"m{i}" for i in range(6)]
    _finite_outputs(out)
    assert not leftovers(out)


@pytest.mark.slow
def test_denoise_ctrl_c_finishes_the_micrograph_in_progress_then_rerun_writes_the_star(
        run, sim, tmp_path, capsys):
    """denoise interrupted (SIGINT) after its first finished output: a note at once, the
    micrograph in progress finished and kept, status 130 with how to resume; the same command
    again denoises the rest and writes the STAR file."""
    mics = [_variant(sim.micrographs[i % 3], tmp_path / "mics" / f"m{i}.mrc", "copy")
            for i in range(6)]
    out = tmp_path / "out"
    proc = start_cli("denoise", run, *mics, "-o", out, "--workers", "1", "--no-ensemble",
                     cwd=tmp_path)
    try:
        assert wait_until(proc, lambda: any(p.with_suffix(".json").exists()
                                            for p in _outputs(out)))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = err.splitlines()
    import re

    assert any(re.fullmatch(  # the one in progress, and about how long it takes, where known
        r"cryostream denoise: stopping after the micrograph in progress \((?:about \d+ s; |under "
        r"1 s; )?it is written whole or not at all\); Ctrl-C again to stop at once", line)
        for line in lines), err
    assert lines[-1].endswith(f"; the finished micrographs are kept in {out}: run the same "
                              "command again to denoise the rest (it skips the finished ones) "
                              "and write denoised_micrographs.star")
    assert "Traceback" not in err
    _finite_outputs(out)
    assert 0 < len(_outputs(out)) < 6
    assert not leftovers(out) and not (out / "denoised_micrographs.star").exists()
    result = cli(capsys, "denoise", run, *mics, "-o", out, "--no-ensemble")
    assert result.rc == 0, result.describe()
    assert [p.stem for p in _outputs(out)] == [f"m{i}" for i in range(6)]
    assert (out / "denoised_micrographs.star").is_file()


# ----------------------------------------------------------------------- show and export-bin


def test_show_into_a_read_only_folder(store, tmp_path, capsys):
    """show -o <inside a read-only folder>: one line naming the PNG's place."""
    with read_only_folder(tmp_path) as folder:
        result = cli(capsys, "show", store, "-o", folder / "s.png")
        assert_user_error(result, folder.name, "s.png")


def test_show_into_a_path_through_a_file_says_it_is_a_file(store, tmp_path, capsys):
    """show -o notes.txt/pairs.png, where notes.txt is a file: said to be a file, not (as it
    had been) 'the folder notes.txt does not exist; create it', which cannot be done."""
    (tmp_path / "notes.txt").write_text("mine")
    for out in (tmp_path / "notes.txt" / "pairs.png", tmp_path / "notes.txt" / "a" / "pairs.png"):
        line = assert_user_error(cli(capsys, "show", store, "-o", out), "notes.txt")
        assert "is a file, not a folder" in line and "does not exist" not in line, line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_show_asked_for_more_pairs_than_the_split_holds_says_it_draws_them_all(store, tmp_path):
    """show --count 1000 of a split of fewer patches: every patch is drawn, as before, and one
    warning says how many (it had drawn them without a word)."""
    import h5py

    from cryostream.inspect import show

    with h5py.File(store) as f:
        n = f["test"]["target"].shape[0]
    with pytest.warns(UserWarning, match=f"its test split holds {n} patches: all are drawn, "
                      "not 1000"):
        show(store, tmp_path / "all.png", count=1000, split="test")
    assert (tmp_path / "all.png").stat().st_size > 0


@pytest.mark.parametrize("args, names", [
    (["-o", "pairs.txt"], (".png",)),
    (["-o", "pairs.png", "--count", "0"], ("--count",)),
    (["-o", "pairs.png", "--count", "-1"], ("--count",)),
    (["-o", "nowhere/pairs.png"], ("nowhere",)),
    (["-o", "."], ("folder",)),
    (["--noise", "-o", "noise.jpg2"], (".png",)),
])
def test_show_with_a_wrong_figure_or_count(store, tmp_path, capsys, monkeypatch, args, names):
    """show with an unknown figure type, a count under 1, a missing folder or a folder for -o:
    one line naming the argument and the fix, nothing written."""
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = cli(capsys, "show", store, *args)
    assert_user_error(result, *names)
    assert not changed(before, snapshot(tmp_path))


def test_show_on_an_empty_split_suggests_the_split_with_patches(sim, tmp_path, capsys):
    """show --split test on a store without a test split suggested --split 'test', the option
    that had just failed; it suggests the train split, and that suggestion works."""
    out = tmp_path / "data.h5"
    assert main(["prepare", *map(str, sim.micrographs), "-o", str(out), "--patch", "64",
                 "--test-fraction", "0", "--quiet"]) == 0
    line = assert_user_error(cli(capsys, "show", out, "-o", tmp_path / "s.png", "--split",
                                 "test"), "--split")
    assert line.endswith("the test split is empty; draw from the train split: --split 'train'")
    assert not (tmp_path / "s.png").exists()
    assert main(["show", str(out), "-o", str(tmp_path / "s.png"), "--split", "train"]) == 0


def test_a_store_whose_prepare_stopped_says_to_run_it_again(sim, run, tmp_path, capsys):
    """A store whose prepare was interrupted before writing its master file (its folder of
    shards without it, the master half-written as .NAME.partial) was 'no such store; create it
    with cryostream prepare' for show, train, evaluate and export-bin: each says the store was
    not finished and to run the same prepare command again, which finishes it."""
    out = tmp_path / "data.h5"
    command = ["prepare", *map(str, sim.micrographs), "-o", str(out), *PATCH, "--quiet"]
    assert main(command) == 0
    out.rename(tmp_path / ".data.h5.partial")
    said = (f"{out}: the store was not finished (its cryostream prepare stopped before writing "
            "it: data.h5.shards is there without data.h5); run the same cryostream prepare "
            "command again: it goes on from the finished shards and writes the store")
    for command_line in (["show", out, "-o", tmp_path / "s.png"], ["train", out, "-o",
                         tmp_path / "run", *TRAIN], ["evaluate", run, out, "-o",
                         tmp_path / "rep", "--quiet"], ["export-bin", out, tmp_path / "bin"]):
        line = assert_user_error(cli(capsys, *command_line), "data.h5")
        assert line == f"cryostream {command_line[0]}: error: {said}"
    assert main(command) == 0
    assert main(["show", str(out), "-o", str(tmp_path / "s.png")]) == 0


def test_show_on_a_store_with_truncated_shards(store, tmp_path, capsys):
    """show on a store whose shards were cut in half: one line naming the store or a shard,
    no PNG."""
    copy = copy_store(store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        truncate(shard)
    result = cli(capsys, "show", copy, "-o", tmp_path / "s.png")
    assert_user_error(result, ".h5", "shard")
    assert not (tmp_path / "s.png").exists()


def test_show_on_a_store_with_corrupt_compressed_chunks(zstd_store, tmp_path, capsys):
    """show on a zstd store with bytes flipped in every chunk: one line, no PNG."""
    copy = copy_store(zstd_store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        corrupt_chunks(shard)
    result = cli(capsys, "show", copy, "-o", tmp_path / "s.png")
    assert_user_error(result, ".h5", "shard")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("stopped", ["old store aside", "new shards in", "new master in"])
def test_a_replacement_killed_while_moving_the_stores_is_settled_by_the_next_prepare(
        store, other_store, tmp_path, stopped):
    """prepare --overwrite killed between the moves that swap the new store in left no
    data.h5 (show: "no such store"), both stores in .data.h5.new/, and a rerun without
    --overwrite built a third beside them. The next prepare puts the old store back whole
    (the new one stays staged for --overwrite), or, where the new master had landed, clears
    the old one's copy; the store in place is then a whole one."""
    from cryostream.prepare_output import settle_replacement, staging_folder

    old = copy_store(store, tmp_path)  # tmp_path/data.h5: the store being replaced
    before = snapshot(old, old.with_name("data.h5.shards"))
    new = copy_store(other_store, tmp_path / "new")
    staging = staging_folder(old)
    (staging / "replaced").mkdir(parents=True)
    os.replace(new, staging / "data.h5")  # as Workspace.finish stages and moves them
    os.replace(new.with_name("data.h5.shards"), staging / "data.h5.shards")
    os.replace(old, staging / "replaced" / "data.h5")
    os.replace(old.with_name("data.h5.shards"), staging / "replaced" / "data.h5.shards")
    if stopped != "old store aside":
        os.replace(staging / "data.h5.shards", old.with_name("data.h5.shards"))
    if stopped == "new master in":
        os.replace(staging / "data.h5", old)
        after = snapshot(old, old.with_name("data.h5.shards"))
    settle_replacement(old)
    if stopped == "new master in":
        assert not staging.exists() and snapshot(old, old.with_name("data.h5.shards")) == after
    else:
        assert snapshot(old, old.with_name("data.h5.shards")) == before  # the old store, whole
        assert sorted(p.name for p in staging.iterdir()) == ["data.h5", "data.h5.shards"]
    assert store_contents(old)  # reads as a store


def test_export_bin_into_a_read_only_folder(store, tmp_path, capsys):
    """export-bin <inside a read-only folder>: one line naming the folder."""
    with read_only_folder(tmp_path) as folder:
        result = cli(capsys, "export-bin", store, folder / "bin")
        assert_user_error(result, folder.name, "bin")


def test_writers_into_a_read_only_folder_say_the_path_and_what_to_do(store, run, tmp_path,
                                                                      capsys):
    """export-bin, show, evaluate and rank --json into a folder that cannot be written printed
    the bare errno text (Read-only file system, Permission denied); each names the path and
    says to give one that can be written."""
    with read_only_folder(tmp_path) as folder:
        for args in (["export-bin", store, folder / "bin"], ["show", store, "-o", folder / "s.png"],
                     ["evaluate", run, store, "-o", folder / "rep", "--quiet"]):
            line = assert_user_error(cli(capsys, *args), folder.name)
            assert "you can write to" in line or "give another path" in line, line


def test_export_bin_checks_the_store_and_its_folder_before_making_anything(store, tmp_path,
                                                                           capsys, monkeypatch):
    """export-bin nonexist.h5 b3 made b3/ before saying there was no store; export-bin
    data.h5 samples.png (a file) said only 'File exists'. Nothing is made, the line says what
    to give, and the folder it suggests works."""
    monkeypatch.chdir(tmp_path)
    assert_user_error(cli(capsys, "export-bin", "nonexist.h5", "b3"), "nonexist.h5")
    assert not (tmp_path / "b3").exists()
    (tmp_path / "samples.png").write_bytes(b"a figure")
    line = assert_user_error(cli(capsys, "export-bin", store, "samples.png"), "samples.png")
    assert line.endswith("samples.png: a file, not a folder; give a folder for the .bin files "
                         "(made if needed), e.g. samples_bin")
    line = assert_user_error(cli(capsys, "export-bin", store, "samples.png/bin"), "samples.png")
    assert "a file stands in its path: give another folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]
    assert cli(capsys, "export-bin", store, "samples_bin").rc == 0
    assert (tmp_path / "samples_bin" / "bin.json").is_file()


def test_export_bin_on_a_store_with_truncated_shards(store, tmp_path, capsys):
    """export-bin on a store whose shards were cut in half: one line, no partial file and no
    bin.json (an export that looks complete)."""
    copy = copy_store(store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        truncate(shard)
    result = cli(capsys, "export-bin", copy, tmp_path / "bin")
    assert_user_error(result, ".h5", "shard")
    assert not leftovers(tmp_path / "bin")
    assert not (tmp_path / "bin" / "bin.json").exists()


def test_export_bin_on_a_damaged_shard_names_the_shard_not_the_output_folder(store, tmp_path,
                                                                              capsys):
    """A damaged shard is the store's fault: export-bin says to prepare it again, as train and
    show do; it had wrapped that in '.bin: could not be written (...); give another folder'."""
    copy = copy_store(store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        truncate(shard)
    line = assert_user_error(cli(capsys, "export-bin", copy, tmp_path / "bin"), "shard")
    assert "damaged shard" in line and "cryostream prepare" in line, line
    assert "could not be written" not in line and "give another folder" not in line, line


def test_export_bin_on_a_store_with_corrupt_compressed_chunks(zstd_store, tmp_path, capsys):
    """export-bin on a zstd store with bytes flipped in every chunk: one line, no partial
    file and no bin.json."""
    copy = copy_store(zstd_store, tmp_path / "bad")
    for shard in copy.with_name(copy.name + ".shards").glob("*.h5"):
        corrupt_chunks(shard)
    result = cli(capsys, "export-bin", copy, tmp_path / "bin")
    assert_user_error(result, ".h5", "shard")
    assert not leftovers(tmp_path / "bin")
    assert not (tmp_path / "bin" / "bin.json").exists()


def test_export_bin_of_a_good_store_is_byte_exact(store, tmp_path, capsys):
    """export-bin of a good store: exit 0, each .bin the bytes of its dataset, no partial."""
    result = cli(capsys, "export-bin", store, tmp_path / "bin")
    assert result.rc == 0, result.describe()
    with h5py.File(store) as f:
        for split in ("train", "test"):
            for kind in ("input", "target"):
                data = (tmp_path / "bin" / f"{split}_{kind}.bin").read_bytes()
                assert data == f[split][kind][...].tobytes()
    assert not leftovers(tmp_path / "bin")
    assert "note" not in result.err


def test_export_bin_stopped_while_moving_its_files_leaves_no_bin_json(store, tmp_path, capsys):
    """export-bin over an earlier export moved its files into place one by one, bin.json last:
    killed between, the earlier bin.json described a mix of both stores' files. It goes first
    now; here the last move fails (a folder stands where test_target.bin goes), which stops the
    export at the same point a kill would."""
    out = tmp_path / "bin"
    assert cli(capsys, "export-bin", store, out).rc == 0
    (out / "test_target.bin").unlink()
    (out / "test_target.bin").mkdir()  # the last .bin cannot be moved into place
    result = cli(capsys, "export-bin", store, out)
    assert result.rc == 2, result.describe()
    assert not (out / "bin.json").exists()  # no description of a mixed folder
    assert not leftovers(out)
    (out / "test_target.bin").rmdir()
    assert cli(capsys, "export-bin", store, out).rc == 0 and (out / "bin.json").is_file()


def test_export_bin_out_of_space_names_the_file_it_stopped_at(store, tmp_path):
    """export-bin on a full disk (a file-size limit in the child) said only "File too large";
    the line names the file and the fix, and nothing half-written is left."""
    result = cli_process("export-bin", store, tmp_path / "bin", cwd=tmp_path, file_size_limit=4096)
    line = assert_user_error(result, "train_input.bin")
    assert "could not be written (File too large); free some space" in line
    assert not leftovers(tmp_path / "bin") and not (tmp_path / "bin" / "bin.json").exists()


def test_export_bin_of_a_store_without_noisy_inputs_says_so(sim, tmp_path, capsys):
    """A store whose noise is drawn as it trains holds targets only: export-bin writes those
    and says why there are no input files (it had said nothing)."""
    store = _prepare(tmp_path, sim.micrographs, "--noise-mode", "on-device")
    result = cli(capsys, "export-bin", store, tmp_path / "bin")
    assert result.rc == 0, result.describe()
    assert sorted(p.name for p in (tmp_path / "bin").glob("*.bin")) == ["test_target.bin",
                                                                        "train_target.bin"]
    assert "holds no noisy inputs" in result.err and "--noise-mode stored" in result.err
    assert result.err.startswith("cryostream: ")  # a note as every command's, which --quiet silences
    quiet = cli(capsys, "export-bin", store, tmp_path / "bin_quiet", "--quiet")
    assert quiet.rc == 0 and "holds no noisy inputs" not in quiet.err, quiet.describe()



# ----------------------------------------------------------------------- evaluate and rank


def test_evaluate_with_no_patches_is_refused(run, store, tmp_path, capsys):
    """evaluate --patches 0: one line naming --patches, no report (it scored NaN with status 0)."""
    result = cli(capsys, "evaluate", run, store, "-o", tmp_path / "report", "--patches", "0")
    assert_user_error(result, "--patches")
    assert not (tmp_path / "report").exists()


def test_rank_with_json_into_a_missing_folder_fails_before_scoring(run, sim, tmp_path, capsys):
    """rank --json nowhere/r.json: one line naming the folder before any scoring (it failed
    after all of it)."""
    result = cli(capsys, "rank", run, "-i", sim.micrographs[0], "--json",
                 tmp_path / "nowhere" / "r.json")
    assert_user_error(result, "nowhere")
    assert "score" not in result.out


def test_rank_with_the_runs_after_the_micrographs_says_to_name_them_first(run, sim, capsys):
    """rank -i MICROGRAPH RUN: -i takes the run too; one line saying to name the runs first
    and which input looks like a run (argparse said only that RUN was required)."""
    line = assert_user_error(cli(capsys, "rank", "-i", sim.micrographs[0], run, "general"),
                             "name the runs first")
    assert f"{run} looks like a run" in line and "general looks like a run" in line
    assert str(sim.micrographs[0]) + " looks" not in line


def test_rank_on_micrographs_of_two_shapes_says_what_rank_can_do(run, sim, tmp_path, capsys):
    """rank -i on micrographs of two shapes (or with a missing one) suggested --permissive,
    which rank does not have; it says rank skips none and to leave the odd one out, which
    works. prepare, which has --permissive, still suggests it."""
    odd = write_mrc(tmp_path / "odd.mrc", np.ones((128, 128), np.float32))
    for bad in (odd, tmp_path / "missing.mrc"):
        line = assert_user_error(cli(capsys, "rank", run, "-i", *sim.micrographs[:2], bad),
                                 bad.name)
        assert "--permissive" not in line and "rank skips none" in line
    shape = assert_user_error(cli(capsys, "rank", run, "-i", *sim.micrographs[:2], odd), "odd")
    assert shape.endswith("; remove it from the inputs (rank skips none: every run is scored on "
                          "the same micrographs, all of one shape; rank those of another "
                          "shape apart)")
    nan = np.ones((256, 256), np.float32)
    nan[3, 3] = np.nan  # found as it is read, after the headers: said the same way
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's about the NaN
        bad = write_mrc(tmp_path / "nan.mrc", nan, pixel_size=float(
            mrcfile.open(sim.micrographs[0], header_only=True).voxel_size.x))
    line = assert_user_error(cli(capsys, "rank", run, "-i", sim.micrographs[0], bad), "nan.mrc")
    assert "--permissive" not in line and "rank skips none" in line
    assert cli(capsys, "rank", run, "-i", *sim.micrographs[:2], "--quiet").rc == 0
    line = assert_user_error(cli(capsys, "prepare", *sim.micrographs[:2], odd, "-o",
                                 tmp_path / "d.h5", "--quiet"), "odd")
    assert "--permissive to skip it" in line


def test_a_store_moved_without_its_shards_says_to_move_both(store, tmp_path, capsys):
    """show on a store file copied without its folder of shards: one line saying a store is
    the file and its folder (not to delete it and prepare again)."""
    moved = tmp_path / "moved" / store.name
    moved.parent.mkdir()
    shutil.copy(store, moved)
    line = assert_user_error(cli(capsys, "show", moved, "-o", tmp_path / "s.png"), store.name)
    assert "shards" in line and "together" in line and "delete" not in line


def test_a_store_renamed_with_its_shards_says_to_keep_the_names(store, tmp_path, capsys):
    """A store and its folder of shards both renamed (data.h5 → mine.h5, data.h5.shards →
    mine.h5.shards): it had said 'copy or move both together', which the user had done; it
    says to rename neither."""
    moved = tmp_path / "mine.h5"
    shutil.copy(store, moved)
    shutil.copytree(store.with_name(store.name + ".shards"), tmp_path / "mine.h5.shards")
    line = assert_user_error(cli(capsys, "show", moved, "-o", tmp_path / "s.png"), "mine.h5")
    assert f"{store.name}.shards/" in line and "renaming neither" in line, line


def test_prepare_overwrite_replaces_a_store_whose_master_is_damaged(sim, tmp_path, capsys):
    """A store whose master lost its first bytes (a crash leftover) beside its shards folder is
    still replaced by --overwrite; a FIFO at -o is refused without hanging."""
    out = tmp_path / "data.h5"
    assert cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--quiet").rc == 0
    with open(out, "r+b") as f:
        f.write(b"\0" * 64)
    result = cli(capsys, "prepare", *sim.micrographs, "-o", out, *PATCH, "--overwrite", "--quiet")
    assert result.rc == 0, result.describe()
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    result = cli(capsys, "prepare", *sim.micrographs, "-o", fifo, *PATCH, "--overwrite", "--quiet")
    assert "not a regular file" in assert_user_error(result, fifo.name)
