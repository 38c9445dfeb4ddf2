"""prepare(): the store, determinism, clusters, interruption, faults, monitoring, hand-over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import warnings
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for reading)
import numpy as np
import pytest

import cryostream
from cryostream import NoiseConfig, PrepareConfig, StoreError
from cryostream.cli import main
from cryostream.inspect import export_bin
from cryostream.noise import add_noise, noise_cell_rng
from cryostream.prepare import prepare
from cryostream.store import open_dataset, shard_folder
from tests.conftest import write_mrc

CONFIG = PrepareConfig(patch_size=64, stride=32, test_fraction=0.34,
                       noise=NoiseConfig(model="poisson-gaussian", dose=10, sigma=0.05))


@pytest.fixture(scope="module")
def micrographs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    return cryostream.simulate(root, 3, shape=(200, 170), seed=3).micrographs


def _datasets(path) -> dict[str, bytes]:
    with open_dataset(path) as f:
        out = {}
        for split in ("train", "test"):
            for name in ("input", "target", "index"):
                if name in f[split]:
                    out[f"{split}/{name}"] = f[split][name][...].tobytes()
        out["percentile"] = f["micrographs/percentile"][...].tobytes()
        return out


def test_store_matches_the_numpy_oracle(micrographs, tmp_path):
    out = tmp_path / "data.h5"
    result = prepare(micrographs, out, CONFIG)
    assert result.train_patches + result.test_patches == 3 * 6 * 5  # 6 patch rows × 5 columns (cover)
    import mrcfile

    images = [mrcfile.read(p).astype(np.float32) for p in micrographs]
    with h5py.File(out, "r") as f:  # plain h5py reads it
        names = [n.decode() for n in f["micrographs/name"]]
        uids = [int(u) for u in f["micrographs/uid"]]
        splits = [s.decode() for s in f["micrographs/split"]]
        assert splits.count("test") == 1
        assert json.loads(f.attrs["config"])["config"]["patch_size"] == 64
        assert json.loads(f.attrs["noise"])["model"] == "poisson-gaussian"
        assert f.attrs["cryostream_version"] == cryostream.__version__
        for split in ("train", "test"):
            g = f[split]
            assert g["target"].chunks is None or True  # virtual; shards hold the chunking
            for i, (m, y, x) in enumerate(g["index"][...]):
                assert splits[m] == split
                p95 = np.float32(np.percentile(images[m], 95))
                target = images[m][y : y + 64, x : x + 64] * np.float32(1 / p95)
                np.testing.assert_array_equal(g["target"][i], target)
                noisy = np.concatenate([  # noise drawn once per cell of `stride` rows
                    add_noise(images[m][r : r + 32] * np.float32(1 / p95), CONFIG.noise,
                              noise_cell_rng(0, uids[m], r // 32, 0))
                    for r in range(0, 200, 32)
                ])
                np.testing.assert_array_equal(g["input"][i], noisy[y : y + 64, x : x + 64])
        assert names == [p.stem for p in micrographs]
    shard = next(shard_folder(out).glob("*.h5"))
    with h5py.File(shard, "r") as f:
        assert f["target"].chunks == (1, 64, 64) and f["target"].fletcher32


@pytest.mark.slow
def test_threads_cluster_and_worker_counts_agree(micrographs, tmp_path):
    threads = _datasets(prepare(micrographs, tmp_path / "a.h5", CONFIG).output)
    one = _datasets(prepare(micrographs, tmp_path / "b.h5", CONFIG, workers=1).output)
    two = _datasets(prepare(micrographs, tmp_path / "c.h5", CONFIG, workers=2).output)
    assert threads == one == two


@pytest.mark.slow
def test_matched_noise_agrees_on_threads_and_a_cluster(micrographs, tmp_path):
    cfg = PrepareConfig(patch_size=64, stride=32, test_fraction=0.34,
                        noise=NoiseConfig(model="matched", radius=8))
    threads = _datasets(prepare(micrographs, tmp_path / "a.h5", cfg).output)
    two = _datasets(prepare(micrographs, tmp_path / "c.h5", cfg, workers=2).output)
    assert threads == two
    assert threads["train/input"] != threads["train/target"]


def test_on_device_float16_and_compression(micrographs, tmp_path):
    base = _datasets(prepare(micrographs, tmp_path / "f32.h5", CONFIG).output)
    for compression in ("none", "lz4", "zstd"):
        cfg = PrepareConfig(**{**CONFIG.__dict__, "dtype": "float16", "compression": compression,
                               "noise": NoiseConfig(mode="on-device")})
        out = prepare(micrographs, tmp_path / f"{compression}.h5", cfg).output
        with h5py.File(out, "r") as f:
            assert "input" not in f["train"] and f["train/target"].dtype == np.float16
            got = f["train/target"][...]
        ref = np.frombuffer(base["train/target"], np.float32).reshape(got.shape)
        np.testing.assert_array_equal(got, ref.astype(np.float16))
    # exported over a stored-noise export: the earlier inputs do not stay beside the targets
    export_bin(tmp_path / "f32.h5", tmp_path / "bin")
    assert (tmp_path / "bin" / "train_input.bin").exists()
    written = export_bin(out, tmp_path / "bin")
    assert sorted(p.name for p in (tmp_path / "bin").glob("*.bin")) == sorted(
        p.name for p in written) == ["test_target.bin", "train_target.bin"]


def test_corruption_is_detected(micrographs, tmp_path):
    out = prepare(micrographs, tmp_path / "data.h5", CONFIG).output
    shard = sorted(shard_folder(out).glob("*.h5"))[0]
    with h5py.File(shard, "r") as f:
        offset = f["target"].id.get_chunk_info(0).byte_offset
    raw = bytearray(shard.read_bytes())
    raw[offset + 100] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with h5py.File(shard, "r") as f, pytest.raises(OSError):
        f["target"][0]


def test_existing_output_is_not_overwritten(micrographs, tmp_path):
    out = prepare(micrographs, tmp_path / "d.h5", CONFIG).output
    other = PrepareConfig(**{**CONFIG.__dict__, "seed": 9})
    with pytest.raises(StoreError, match="exists and was prepared from other inputs or options: "
                       r"options differ: seed 0 in the store, 9 now; pass overwrite=True"):
        prepare(micrographs, out, other)
    assert prepare(micrographs, out, CONFIG).kept
    prepare(micrographs, out, CONFIG, overwrite=True)
    out.unlink()
    with pytest.raises(StoreError, match="holds shards of a run with other inputs or options: "
                       "options differ: seed 0 in the store, 9 now; pass overwrite=True"):
        prepare(micrographs, out, other)


_KILLABLE = textwrap.dedent("""
    import sys, time
    import cryostream.prepare
    p = sys.modules["cryostream.prepare"]
    from cryostream import PrepareConfig
    original = p.write_shard
    def slow(*a, **k):
        original(*a, **k)
        time.sleep(0.3)
    p.write_shard = slow
    p.prepare(sys.argv[2:], sys.argv[1], PrepareConfig(patch_size=64, stride=32, test_fraction=0.34))
""")


@pytest.mark.slow
def test_sigkill_leaves_nothing_complete_and_resumes_identically(micrographs, tmp_path):
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(out), *map(str, micrographs)])
    folder = shard_folder(out)
    deadline = time.time() + 120
    while len(list(folder.glob("*.h5"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(folder.glob("*.h5")))
    assert 3 <= finished < 3 * 6  # 6 bands per micrograph
    assert not out.exists()
    with pytest.raises(StoreError, match=r"the store was not finished \(its cryostream prepare "
                       r"stopped before writing it: killed\.h5\.shards is there without "
                       r"killed\.h5\); run the same cryostream prepare command again"):
        open_dataset(out)  # says what happened and what to do, not only that it is missing
    prepare(micrographs, out, CONFIG)
    reference = prepare(micrographs, tmp_path / "whole.h5", CONFIG).output
    assert _datasets(out) == _datasets(reference)


_ON_TWO_WORKERS = textwrap.dedent("""
    import sys
    import cryostream
    if __name__ == "__main__":
        cryostream.prepare(sys.argv[1], sys.argv[2], cryostream.PrepareConfig(patch_size=64,
                           stride=16), workers=2)
""")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "command"])
def test_ctrl_c_in_prepare_on_a_local_cluster_says_what_is_kept_and_nothing_else(tmp_path, how):
    """A terminal's Ctrl-C (SIGINT to the whole process group, the workers' processes too)
    while ``prepare(workers=2)`` writes its shards: a script's ends in one traceback, the
    KeyboardInterrupt's, whose words say what is kept and how to go on (it had been bare,
    among 30 and more tracebacks of distributed's: each worker's KeyboardInterrupt, 'Task
    exception was never retrieved ... AllExit'); `cryostream prepare --workers 2` says its
    own line alone, on a line of its own after its progress bar, status 130. No process of the
    call is left running."""
    import contextlib
    import re

    from tests.faults_support import child_environment, wait_until

    cryostream.simulate(tmp_path / "sim", 4, shape=(1024, 1024), seed=0)
    out, folder = tmp_path / "data.h5", str(tmp_path / "sim" / "micrographs")
    command = [sys.executable, "-c", _ON_TWO_WORKERS, folder, str(out)] if how == "script" else [
        sys.executable, "-m", "cryostream", "prepare", folder, "-o", str(out), "--patch", "64",
        "--stride", "16", "--workers", "2"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=child_environment(), text=True,
                            stderr=subprocess.PIPE, start_new_session=True)  # (as a terminal's)
    try:
        assert wait_until(proc, lambda: any(shard_folder(out).glob("*.h5")), timeout=120)
        os.killpg(proc.pid, signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the workers' processes, closed by the call
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail("processes of the call still run after it ended")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert not out.exists() and any(shard_folder(out).glob("*.h5"))
    lines = _shown(err)
    if how == "script":
        assert proc.returncode == -signal.SIGINT, err
        assert lines[-1] == (f"KeyboardInterrupt: interrupted: the finished shards and statistics "
                             f"are kept in {shard_folder(out)}; call prepare again with the same "
                             "arguments to go on from them"), err
        assert [line for line in lines[:-1] if not line.startswith("  ")] == [
            "Traceback (most recent call last):"], err
    else:
        assert proc.returncode == 130, err
        assert re.fullmatch(r"cryostream prepare: interrupted after \d+ s; the finished shards "
                            r"are kept: run the same command again to go on from them",
                            lines[-1]), err
        assert [line for line in lines[:-1] if not line.startswith("cryostream: ") and not
                re.fullmatch(r"\[[# ]{40}\] \| +\d+% Completed \| +[\d.]+\w+", line)] == [], err


@pytest.mark.parametrize("kind", ["nan", "inf", "constant", "zero"])
def test_bad_pixels_are_named(micrographs, tmp_path, kind):
    image = np.ones((200, 170), np.float32) * (0 if kind == "zero" else 3)
    if kind in ("nan", "inf"):
        image = np.random.default_rng(0).normal(5, 1, (200, 170)).astype(np.float32)
        image[10, 10] = np.nan if kind == "nan" else np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about NaN/Inf
        bad = write_mrc(tmp_path / "bad.mrc", image, pixel_size=0.6575)
    message = {"nan": "NaN or Inf", "inf": "NaN or Inf", "constant": "is constant",
               "zero": "is constant"}[kind]
    with pytest.raises(cryostream.InvalidMicrographError, match=message) as info:
        prepare([*micrographs, bad], tmp_path / "x.h5", CONFIG)
    assert str(bad.resolve()) in str(info.value)
    assert not (tmp_path / "x.h5").exists()
    with pytest.warns(cryostream.MicrographSkippedWarning) as record:
        result = prepare([*micrographs, bad], tmp_path / "y.h5", CONFIG, permissive=True)
    assert result.micrographs == 3
    assert [w.filename for w in record] == [__file__]  # the warning points at the caller
    with h5py.File(result.output) as f:
        assert "bad.mrc" in f.attrs["skipped"]


def test_targets_a_float16_store_cannot_hold_or_with_nan_are_refused_before_any_shard(tmp_path):
    """A ``--targets`` image in other units than its micrograph's (here 10⁵ times) is divided by
    the micrograph's percentile like it, and a float16 store had held it as inf (numpy's
    overflow warning the only sign; a training on it diverges); a target with a NaN pixel went
    into any store as NaN. Both are refused naming the target and the fix, before any shard is
    written; float32 takes the large one, into the same store the refused run was to write (its
    shard folder, caches only, had refused other options: --overwrite). Half-sums (``odd``): a
    hot pixel in a half, stored unmended as the other half's target, is refused from pass 1's
    statistics."""
    import mrcfile

    sim = cryostream.simulate(tmp_path / "sim", 2, config=cryostream.SimulateConfig(
        shape=(96, 96), seed=6, even_odd=True))
    truths = [mrcfile.read(p).astype(np.float32) for p in sim.truths]
    (tmp_path / "big").mkdir()
    big = [write_mrc(tmp_path / "big" / p.name, t * 1e5)
           for p, t in zip(sim.truths, truths, strict=True)]
    (tmp_path / "nan").mkdir()
    truths[1][5, 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about NaN
        nan = [write_mrc(tmp_path / "nan" / p.name, t)
               for p, t in zip(sim.truths, truths, strict=True)]
    half = PrepareConfig(patch_size=32, stride=32, test_fraction=0.0, dtype="float16",
                         noise=NoiseConfig(model="none"))
    with pytest.raises(cryostream.InvalidMicrographError, match=r"big/sim_0000\.mrc: holds pixels "
                       r"of \d.* times its micrograph's 95th percentile .*sim_0000\.mrc; .*float16 "
                       r"store holds .*on its micrograph's scale .*--dtype float32\)$"):
        prepare(sim.micrographs, tmp_path / "a.h5", half, targets=big)
    full = PrepareConfig(**{**half.__dict__, "dtype": "float32"})
    for config, name in ((half, "b.h5"), (full, "c.h5")):
        with pytest.raises(cryostream.InvalidMicrographError, match=r"nan/sim_0001\.mrc: holds NaN "
                           r"or Inf pixels \(the target of .*sim_0001\.mrc\); repair or replace"):
            prepare(sim.micrographs, tmp_path / name, config, targets=nan)
    for out in (tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"):
        assert not out.exists() and not list(shard_folder(out).glob("*.h5"))
    with h5py.File(prepare(sim.micrographs, tmp_path / "a.h5", full, targets=big).output) as f:
        assert np.isfinite(f["train/target"][:]).all() and f["train/target"].dtype == np.float32
    hot = mrcfile.read(sim.odds[1]).astype(np.float32)
    hot[7, 7] = 1e9
    (tmp_path / "hot").mkdir()
    odd = [sim.odds[0], write_mrc(tmp_path / "hot" / sim.odds[1].name, hot, 0.6575)]
    with pytest.raises(cryostream.InvalidMicrographError, match=r"hot/sim_0001_ODD\.mrc: holds "
                       r"pixels of .* times its micrograph's .*sim_0001_EVN\.mrc"):
        prepare(sim.evens, tmp_path / "e.h5", half, odd=odd)


def test_micrographs_smaller_than_a_patch(micrographs, tmp_path):
    with pytest.raises(cryostream.ConfigError, match=r"patch_size=512: larger than the "
                       r"micrographs \(200 × 170, .*\); use a smaller --patch \(e.g. --patch 64, "
                       r"as cryostream fit would; Python: PrepareConfig\(patch_size=64, "
                       r"stride=32\)\)"):
        prepare(micrographs, tmp_path / "x.h5", PrepareConfig(patch_size=512, stride=256))


def test_unwritable_output(micrographs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a file as a folder
            target = tmp_path / "file" / "x.h5"
            (tmp_path / "file").write_text("")
        else:
            target = locked / "x.h5"
        with pytest.raises(StoreError, match="not writable"):
            prepare(micrographs, target, CONFIG)
    finally:
        locked.chmod(0o700)


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    from cryostream.cli import main
    sys.exit(main(["prepare", *sys.argv[2:], "-o", sys.argv[1], "--patch", "64", "--stride", "32",
                   "--quiet"]))
""")


@pytest.mark.slow
def test_full_disk_gives_a_clear_error_and_no_store(micrographs, tmp_path):
    out = tmp_path / "full.h5"
    result = subprocess.run([sys.executable, "-c", _FULL_DISK, str(out), *map(str, micrographs)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "could not write it" in result.stderr and ".h5" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(shard_folder(out).glob("*.partial"))


@pytest.mark.slow
def test_dashboard_is_real_and_local(micrographs, tmp_path):
    from cryostream.cluster import compute_context

    links = []
    with compute_context(workers=1, log=links.append, call="prepare") as client:
        link = client.dashboard_link
        assert link.startswith("http://127.0.0.1:")
        body = urllib.request.urlopen(link, timeout=30).read().decode()
        assert "Dask needs bokeh" not in body and "bokeh" in body.lower()
        assert urllib.request.urlopen(link.replace("/status", "/health"), timeout=30).read() == b"ok"
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
    assert links == [f"Dask dashboard: {link}"]


@pytest.mark.slow
def test_cli_prepare_report_show_export(micrographs, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    report = tmp_path / "report.html"
    assert main(["prepare", *map(str, micrographs), "-o", str(out), "--patch", "64", "--stride",
                 "32", "--workers", "1", "--report", str(report)]) == 0
    said = capsys.readouterr()
    lines = said.out.strip().splitlines()  # the summary alone: notes and bars are on stderr
    assert len(lines) == 1 and not any("Completed" in line for line in lines)
    assert "cryostream: Dask dashboard: http://127.0.0.1:" in said.err
    assert lines[-1].startswith("prepared 3 micrographs into") and "peak memory" in lines[-1]
    assert report.stat().st_size > 10_000
    assert main(["show", str(out), "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    files = export_bin(out, tmp_path / "bin")
    assert sorted(p.name for p in files) == ["test_input.bin", "test_target.bin",
                                            "train_input.bin", "train_target.bin"]
    sidecar = json.loads((tmp_path / "bin" / "bin.json").read_text())
    with h5py.File(out) as f:
        for p in files:
            meta = sidecar["files"][p.name]
            assert p.read_bytes() == f[meta["dataset"]][...].tobytes()
            assert meta["dtype"] == "float32" and meta["shape"] == list(f[meta["dataset"]].shape)


@pytest.mark.slow
def test_existing_scheduler_by_address(micrographs, tmp_path):
    from distributed import LocalCluster

    reference = _datasets(prepare(micrographs, tmp_path / "threads.h5", CONFIG).output)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        out = prepare(micrographs, tmp_path / "remote.h5", CONFIG,
                      scheduler=cluster.scheduler_address).output
        assert _datasets(out) == reference
    other = PrepareConfig(**{**CONFIG.__dict__, "seed": 9})
    with pytest.raises(StoreError, match="exists"):  # checked before any connection is made
        prepare(micrographs, out, other, scheduler="tcp://127.0.0.1:1")
    assert prepare(micrographs, out, CONFIG, scheduler="tcp://127.0.0.1:1").kept  # nothing to run


def _shown(stderr: str) -> list[str]:
    """The lines of ``stderr`` as a terminal shows them: of each, what follows its last carriage
    return (a progress bar redrawn, or erased by its end: ``ESC[2K``), empty ones left out."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", stderr)
    return [shown for line in plain.split("\n") if (shown := line.rsplit("\r", 1)[-1])]


class _CloseOnceConnected:
    """A handler of the ``cryostream`` logger that closes ``cluster`` half a second after the
    note of its dashboard: the call is connected to it then, and its work waiting there (a
    cluster of no workers runs none)."""

    def __init__(self, cluster):
        import logging
        import threading

        self.handler = logging.Handler()
        self.handler.emit = lambda record: "dashboard" in record.getMessage() and \
            threading.Timer(0.5, cluster.close).start()

    def __enter__(self):
        import logging

        logger = logging.getLogger("cryostream")
        self.level = logger.level
        logger.addHandler(self.handler)
        logger.setLevel(logging.INFO)

    def __exit__(self, *exc):
        import logging

        logging.getLogger("cryostream").removeHandler(self.handler)
        logging.getLogger("cryostream").setLevel(self.level)


def test_a_scheduler_lost_during_prepare_is_named_in_the_words_of_the_call(micrographs, tmp_path,
                                                                          capsys):
    """The scheduler of ``prepare(scheduler=...)`` goes away while prepare runs on it: one
    ClusterError that names prepare, its shards and, in a script, the ``scheduler=`` keyword;
    on the command line (``--scheduler``) the same command and the flag. It had spoken of
    denoise and its micrographs, and of --scheduler in a script."""
    from distributed import LocalCluster

    for how in ("script", "command"):
        cluster = LocalCluster(n_workers=0, dashboard_address=None, host="127.0.0.1")
        address = cluster.scheduler_address
        with _CloseOnceConnected(cluster):
            if how == "script":
                with pytest.raises(cryostream.ClusterError) as info:
                    prepare(micrographs, tmp_path / "s.h5", CONFIG, scheduler=address)
                said = str(info.value)
            else:
                assert main(["prepare", *map(str, micrographs), "-o", str(tmp_path / "c.h5"),
                             "--patch", "64", "--scheduler", address]) == 2
                said = "\n".join(_shown(capsys.readouterr().err))
        lost = (f"the Dask cluster at {address} went away during prepare "
                "(scheduler-connection-lost): ")
        if how == "script":
            assert said == lost + ("call prepare again with the same arguments once the "
                                   "scheduler is back (or without scheduler=, to run on this "
                                   "machine); prepare keeps the shards it wrote and makes only "
                                   "the rest")
        else:
            assert said.splitlines()[-1] == (  # a line of its own, after the progress bar
                "cryostream prepare: error: " + lost + "run the same command again once the "
                "scheduler is back (or without --scheduler); prepare keeps the shards it wrote "
                "and makes only the rest"), said
            assert "denoise" not in said and "Traceback" not in said, said


@pytest.mark.slow
def test_warnings_raised_in_a_clusters_tasks_are_shown_here_once_each(micrographs, tmp_path):
    """The warnings raised inside pass 1's and pass 2's tasks on worker processes (NumPy's here:
    a micrograph of 1e17 counts overflows the noise estimate's spectrum, noise of σ 1e5 added
    overflows a float16 store) are shown by this process, once each, as on threads, not left
    in the workers' stderr."""
    import mrcfile

    images = [mrcfile.read(p).astype(np.float32) for p in micrographs]
    images[0] *= np.float32(1e17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's header statistics overflow
        images = [write_mrc(tmp_path / f"m{i}.mrc", image) for i, image in enumerate(images)]
    cfg = PrepareConfig(patch_size=64, stride=32, dtype="float16",
                        noise=NoiseConfig(model="gaussian", sigma=1e5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each warning once per place, as the command shows it
        prepare(images, tmp_path / "w.h5", cfg, workers=2)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert said.count("overflow encountered in square") == 1  # pass 1: the noise estimate
    assert said.count("overflow encountered in cast") == 1  # pass 2: the float16 shard


def test_patch_multiple_is_the_pooling_of_the_five_level_presets():
    from cryostream.models.unet import PRESETS
    from cryostream.prepare import MODEL_MULTIPLE

    assert MODEL_MULTIPLE == max(c.multiple for name, c in PRESETS.items() if name != "unet-deep")
    assert PRESETS["unet-deep"].multiple == 2 * MODEL_MULTIPLE  # train checks it (test_train.py)


@pytest.mark.parametrize("patch, fix", [(127, 96), (100, 96), (40, 32), (8, 32)])  # down: fits
def test_a_patch_the_networks_cannot_take_is_refused_with_the_fix(micrographs, tmp_path, patch, fix):
    cfg = PrepareConfig(patch_size=patch, stride=min(32, patch))
    with pytest.raises(cryostream.ConfigError, match=rf"patch_size={patch} .*use --patch {fix}$"):
        prepare(micrographs, tmp_path / "x.h5", cfg)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, flag", [
    ({"workers": 0}, "--workers"), ({"workers": -3}, "--workers"), ({"workers": True}, "--workers"),
    ({"workers": 1, "memory_limit": "lots"}, "--memory-limit"),
    ({"workers": 1, "memory_limit": "-1GB"}, "--memory-limit"),
    ({"scheduler": "notanaddress:::"}, "--scheduler"), ({"scheduler": "tcp://host"}, "--scheduler"),
    ({"scheduler": "foo://host:1"}, "--scheduler"), ({"scheduler": ""}, "--scheduler"),
])
def test_cluster_options_are_checked_before_anything_is_written(micrographs, tmp_path, options,
                                                                flag):
    with pytest.raises(cryostream.ConfigError, match=flag):
        prepare(micrographs, tmp_path / "x.h5", CONFIG, **options)
    assert list(tmp_path.iterdir()) == []


def test_good_cluster_options_pass_the_checks():
    from cryostream.cluster import check_cluster_options

    for memory in ("4GiB", "500MB", "auto", 0.5, 4e9, "0", None):
        check_cluster_options(workers=2, memory_limit=memory)
    for address in ("tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://[::1]:8786", "inproc://x"):
        check_cluster_options(scheduler=address)


def test_overwrite_replaces_the_store_whole(micrographs, tmp_path):
    out = prepare(micrographs, tmp_path / "d.h5", CONFIG).output
    other = PrepareConfig(**{**CONFIG.__dict__, "seed": 9})
    prepare(micrographs, out, other, overwrite=True)
    fresh = prepare(micrographs, tmp_path / "fresh.h5", other).output
    assert _datasets(out) == _datasets(fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "d.h5.shards", "fresh.h5",
                                                          "fresh.h5.shards"]
    assert {p.name: p.read_bytes() for p in shard_folder(out).iterdir()} == {
        p.name: p.read_bytes() for p in shard_folder(fresh).iterdir()}


def test_overwrite_with_a_bad_input_keeps_the_old_store(micrographs, tmp_path):
    out = prepare(micrographs, tmp_path / "d.h5", CONFIG).output
    before = {p: p.read_bytes() for p in [out, *shard_folder(out).iterdir()]}
    image = np.random.default_rng(0).normal(5, 1, (200, 170)).astype(np.float32)
    image[10, 10] = np.nan
    (tmp_path / "in").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns about NaN
        bad = write_mrc(tmp_path / "in" / "bad.mrc", image, pixel_size=0.6575)
    with pytest.raises(cryostream.InvalidMicrographError, match="bad.mrc"):
        prepare([*micrographs, bad], out, CONFIG, overwrite=True)
    assert {p: p.read_bytes() for p in [out, *shard_folder(out).iterdir()]} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "d.h5.shards", "in"]


def test_damaged_caches_are_measured_again(micrographs, tmp_path):
    out = prepare(micrographs, tmp_path / "d.h5", CONFIG).output
    folder = shard_folder(out)
    want = {p.name: p.read_bytes() for p in folder.iterdir()}
    out.unlink()  # interrupted before the master file
    noise = sorted(folder.glob("noise-*.npz"))[0]
    noise.write_bytes(noise.read_bytes()[:100])
    prepare(micrographs, out, CONFIG)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == want
    out.unlink()
    (folder / "statistics.json").write_text('{"a": [1.0, true')
    prepare(micrographs, out, CONFIG)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == want


def test_resume_prepares_a_changed_input_again(micrographs, tmp_path):
    mics = [tmp_path / "in" / p.name for p in micrographs]
    (tmp_path / "in").mkdir()
    for source, copy in zip(micrographs, mics, strict=True):
        copy.write_bytes(source.read_bytes())
    out = prepare(mics, tmp_path / "d.h5", CONFIG).output
    out.unlink()  # interrupted before the master file
    import mrcfile

    with mrcfile.open(mics[1]) as m:
        image, pixel = m.data.astype(np.float32), float(m.voxel_size.x)
    write_mrc(mics[1], np.ascontiguousarray(image[::-1]), pixel_size=pixel)  # same size
    prepare(mics, out, CONFIG)
    fresh = prepare(mics, tmp_path / "fresh.h5", CONFIG).output
    assert _datasets(out) == _datasets(fresh)


def test_progress_bars_go_to_stderr(micrographs, tmp_path, capsys):
    """With progress on, Dask's bars are on stderr and stdout holds none of them (they went
    to stdout, mixed with what a command prints as its result)."""
    prepare(micrographs, tmp_path / "bars.h5", CONFIG, progress=True, log=lambda *_: None)
    captured = capsys.readouterr()
    assert "% Completed" in captured.err and "Completed" not in captured.out


def test_denoised_micrographs_given_to_prepare_or_plan_are_named(micrographs, tmp_path):
    """Micrographs whose MRC labels say ``cryostream denoise`` wrote them are used (the user
    may mean it) with one warning that names them; plain micrographs get none."""
    import mrcfile

    from cryostream.io.mrc import write_micrograph
    from cryostream.io.stack import DenoisedInputWarning

    denoised = [tmp_path / Path(m).name for m in micrographs[:2]]
    for m, out in zip(micrographs, denoised, strict=False):
        write_micrograph(out, mrcfile.read(m), 0.6575,
                         history="cryostream denoise general: ensemble, wiener_gain")
    mixed = [*denoised, micrographs[2]]
    with pytest.warns(DenoisedInputWarning, match=r"^2 of the 3 inputs were written by "
                      r"cryostream denoise \(sim_0000.mrc, sim_0001.mrc; their MRC labels say "
                      r"so: 'cryostream denoise general: ensemble, wiener_gain'\)") as caught:
        cryostream.plan(mixed, config=CONFIG)
        prepare(mixed, tmp_path / "data.h5", CONFIG)
    assert len(caught) == 2
    cryostream.plan(micrographs, config=CONFIG)  # an error if it warned


def test_headers_of_two_pixel_sizes_are_said_once_and_their_warning_is_denoises(micrographs,
                                                                               tmp_path):
    """Micrographs whose MRC headers give x and y pixel sizes apart (0.6575 and 1.2 Å): prepare
    uses x's, as denoise does, with one warning for all of them that names the first, counts
    the rest and says to correct the headers (it used x's without a word); the warning is the
    one class denoise and fit use, so one filter silences it everywhere."""
    import mrcfile

    from cryostream.denoise.pixels import PixelSizeWarning
    from cryostream.io.mrc import write_micrograph
    from cryostream.io.pixel_sizes import PixelSizeWarning as io_warning

    wide = [tmp_path / Path(m).name for m in micrographs]
    for m, out in zip(micrographs, wide, strict=True):
        write_micrograph(out, mrcfile.read(m), 0.6575)
        with mrcfile.open(out, "r+") as f:
            f.voxel_size = (0.6575, 1.2, 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare(wide, tmp_path / "data.h5", CONFIG)
    said = [str(w.message) for w in caught if issubclass(w.category, PixelSizeWarning)]
    assert said == [f"{wide[0]} and {len(wide) - 1} more: the MRC header gives two pixel sizes, "
                    "0.6575 Å along x and 1.2 Å along y; x's, 0.6575 Å, is used (pixels are "
                    "taken as square): correct the header (e.g. IMOD's alterheader) if it is "
                    "not right"]
    assert PixelSizeWarning is io_warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelSizeWarning)
        prepare(micrographs, tmp_path / "square.h5", CONFIG)  # square pixels: nothing to say


def test_a_folder_with_other_files_is_prepared_with_one_note_naming_them(micrographs, tmp_path,
                                                                         capsys):
    """prepare FOLDER where the folder holds notes and pictures beside the micrographs: the
    store of its micrographs, and one note on stderr counting and naming what was left out
    (it was left out without a word)."""
    folder = tmp_path / "mics"
    folder.mkdir()
    for m in micrographs:
        (folder / Path(m).name).write_bytes(Path(m).read_bytes())
    (folder / "notes.txt").write_text("session 1\n")
    (folder / "img.jpg").write_bytes(b"\xff\xd8\xff")
    assert main(["prepare", str(folder), "-o", str(tmp_path / "d.h5"), "--patch", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("prepared 3 micrographs into")
    notes = [line for line in captured.err.splitlines() if "left out" in line]
    assert notes == [f"cryostream: {folder}: left out 2 files that are not MRC micrographs "
                     "(.mrc): img.jpg, notes.txt"]


def test_micrographs_of_several_pixel_sizes_are_prepared_with_a_warning(tmp_path):
    """prepare had said nothing of micrographs 0.66 Å and 1.3 Å a pixel in one store (fit
    warns); it warns as fit does, once, and prepares them. One at exactly 1 Å among others is
    named (denoise's words too): most likely a placeholder, with the fix."""
    from cryostream.io.pixel_sizes import PixelSizeWarning
    from tests.conftest import write_mrc

    rng = np.random.default_rng(0)
    paths = [write_mrc(tmp_path / f"m{i}.mrc", rng.poisson(20, (128, 128)).astype(np.float32),
                       pixel) for i, pixel in enumerate((0.66, 1.3))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cryostream.prepare(paths, tmp_path / "data.h5", PrepareConfig(patch_size=64))
    said = [str(w.message) for w in caught if issubclass(w.category, PixelSizeWarning)]
    assert len(said) == 1 and "2 pixel sizes (0.66 Å (m0.mrc), 1.3 Å (m1.mrc))" in said[0], said
    assert "prepare each magnification on its own" in said[0]
    assert (tmp_path / "data.h5").is_file()
    # two at 0.66 Å and one at exactly 1 Å: that one named, as most likely a placeholder
    paths[1] = write_mrc(tmp_path / "m1.mrc", rng.poisson(20, (128, 128)).astype(np.float32), 1.0)
    paths.append(write_mrc(tmp_path / "m2.mrc", rng.poisson(20, (128, 128)).astype(np.float32),
                           0.66))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cryostream.prepare(paths, tmp_path / "more.h5", PrepareConfig(patch_size=64))
    said = [str(w.message) for w in caught if issubclass(w.category, PixelSizeWarning)]
    assert len(said) == 1 and said[0].endswith(
        "one store holds them all. m1.mrc gives 1 Å, the other 2 micrographs 0.66 Å; exactly 1 Å "
        "is most likely a placeholder (a header whose pixel size was never set), not a measured "
        "size. Correct m1.mrc's header (e.g. IMOD's alterheader); if 1 Å is its true size, "
        "prepare each magnification on its own"), said


def _epu_copy(path: Path, pixel_size: float, epu_pixel_size: float) -> Path:
    """A micrograph whose MRC header gives ``pixel_size`` (0: unset) and whose FEI1 extended
    header, as EPU writes it, gives ``epu_pixel_size`` Å (in metres, its bitmask marking it)."""
    import mrcfile
    from mrcfile.dtypes import get_ext_header_dtype

    from tests.conftest import write_mrc

    write_mrc(path, np.random.default_rng(0).poisson(20, (128, 128)).astype(np.float32), pixel_size)
    record = np.zeros(1, get_ext_header_dtype(b"FEI1"))
    record["Metadata size"], record["Bitmask 1"] = record.dtype.itemsize, (1 << 14) | (1 << 15)
    record["Pixel size X"] = record["Pixel size Y"] = epu_pixel_size * 1e-10
    with mrcfile.open(path, "r+") as mrc:
        mrc.set_extended_header(record)
        mrc.header.exttyp = b"FEI1"
    return path


def test_an_epu_headers_pixel_size_is_the_stores_where_the_mrc_header_has_none(tmp_path, notes):
    """prepare of EPU micrographs whose MRC header leaves the pixel size unset stored 0 Å; it
    now stores their FEI extended header's, with a note naming where it came from. Where the
    MRC header gives another, the MRC header's is stored, with one warning naming both."""
    from cryostream.io.pixel_sizes import PixelSizeWarning

    unset = [_epu_copy(tmp_path / f"u{i}.mrc", 0.0, 0.83) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelSizeWarning)
        cryostream.prepare(unset, tmp_path / "unset.h5", PrepareConfig(patch_size=64))
    with h5py.File(tmp_path / "unset.h5") as f:
        assert f.attrs["pixel_size_angstrom"] == 0.83
    assert [n for n in notes if "pixel size" in n] == [
        f"{unset[0]} and 1 more: the pixel size (0.83 Å for the first) comes from the "
        "micrographs' EPU headers (the first's MRC header leaves it unset); correct the header "
        "(e.g. IMOD's alterheader) if it is not right"]
    apart = _epu_copy(tmp_path / "apart.mrc", 0.66, 0.83)
    with pytest.warns(PixelSizeWarning) as caught:
        cryostream.prepare([apart], tmp_path / "apart.h5", PrepareConfig(patch_size=64))
    assert [str(w.message) for w in caught] == [
        f"{apart}: the MRC header gives a pixel size of 0.66 Å, the EPU (FEI) extended header "
        "0.83 Å; the MRC header's, 0.66 Å, is used: correct the header (e.g. IMOD's alterheader) "
        "if it is not right"]
    with h5py.File(tmp_path / "apart.h5") as f:
        assert f.attrs["pixel_size_angstrom"] == 0.66


def test_a_prepare_from_python_is_noted_on_the_cryostream_logger(micrographs, tmp_path, notes):
    """The quickstart's logging lines, then ``cryostream.prepare(...)``: nothing was said while
    it ran (notes came only from fit's own). Now its two passes are noted in micrographs, as
    fit notes them; ``progress=False`` says nothing, ``progress=True`` draws bars instead."""
    config = PrepareConfig(patch_size=64, stride=32)
    cryostream.prepare(micrographs, tmp_path / "a.h5", config)
    assert [n for n in notes if n.startswith(("measuring", "preparing"))] == [
        "measuring the noise: 0/3 micrographs", "measuring the noise: 3/3 micrographs",
        "preparing the store: 0/3 micrographs", "preparing the store: 3/3 micrographs"]
    notes.clear()
    cryostream.prepare(micrographs, tmp_path / "b.h5", config, progress=False)
    cryostream.prepare(micrographs, tmp_path / "c.h5", config, progress=True)
    assert not [n for n in notes if n.startswith(("measuring", "preparing"))], notes


def test_overwrite_refuses_a_store_made_read_only(micrographs, tmp_path, capsys):
    """``prepare --overwrite`` replaced a store the user had made read-only (``chmod a-w``),
    its master file or its shards. Now they are named before anything is read or written, with
    the fix; the store is left as it was, and once writable it is replaced."""
    out = prepare(micrographs, tmp_path / "d.h5", CONFIG).output
    shards = sorted(shard_folder(out).glob("*.h5"))
    assert len(shards) > 1

    def files():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(tmp_path.rglob("*"))
                if p.is_file()}

    out.chmod(0o444)
    before = files()
    argv = ["prepare", *map(str, micrographs), "-o", str(out), "--patch", "64", "--overwrite"]
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream prepare: error: {out}: read-only, and this call would replace it; make it "
        f"writable (chmod u+w {out}) to replace it, or choose another name for the store (-o)")
    assert files() == before
    out.chmod(0o644)
    for shard in shards:
        shard.chmod(0o444)
    with pytest.raises(StoreError, match=rf"^{len(shards)} read-only files \({shards[0]}, "):
        prepare(micrographs, out, CONFIG, overwrite=True)
    assert files() == before
    for shard in shards:
        shard.chmod(0o644)
    assert prepare(micrographs, out, PrepareConfig(**{**CONFIG.__dict__, "seed": 9}),
                   overwrite=True).output.read_bytes() != before[out][0]
