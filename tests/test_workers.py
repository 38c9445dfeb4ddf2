"""How many micrographs ``denoise`` keeps in flight when ``workers`` is not given."""

from __future__ import annotations

import logging

import pytest

import cryostream
from cryostream.denoise.workers import (
    BYTES_PER_PIXEL,
    MAX_IN_FLIGHT,
    cgroup_headroom,
    cgroup_memory,
    default_workers,
)

FULL = 7676 * 7420  # an EMPIAR-10025 micrograph
PLENTY = 10**12


@pytest.mark.parametrize(("cores", "backend", "expected"), [
    (16, "gpu", 8), (64, "gpu", MAX_IN_FLIGHT), (6, "gpu", 3), (2, "gpu", 2), (1, "gpu", 2),
    (16, "cpu", 2), (2, "cpu", 2)])
def test_half_the_cores_on_a_gpu_and_two_on_a_cpu(cores, backend, expected):
    assert default_workers(FULL, backend, available_bytes=PLENTY, cores=cores) == expected


def test_no_more_than_half_the_available_memory_holds(caplog):
    each = FULL * BYTES_PER_PIXEL  # 6.3 GB
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert default_workers(FULL, "gpu", available_bytes=int(6.5 * each), cores=16) == 3
    assert "3 micrographs in flight, not 8" in caplog.text and "--workers" in caplog.text
    assert default_workers(FULL, "cpu", available_bytes=int(2.5 * each), cores=2) == 1
    assert default_workers(FULL, "gpu", available_bytes=0, cores=16) == 1  # never none
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert default_workers(4096 * 4096, "gpu", available_bytes=int(20 * each), cores=16) == 8
    assert "in flight, not" not in caplog.text  # the cores set it: no note
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):  # two micrographs: two, no note
        assert default_workers(FULL, "gpu", count=2, available_bytes=int(4.5 * each), cores=16) == 2
    assert "in flight, not" not in caplog.text


def _cgroup(root, lines: str, files: dict):
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(lines)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_container_or_batch_job_memory_limit_caps_the_memory_counted(tmp_path):
    """cgroup v2 (``0::/path``) and v1 (a ``memory`` controller line): the limit less what is
    used; no limit ("max", or v1's huge number) or no memory controller: None."""
    v2 = _cgroup(tmp_path / "v2", "0::/slurm/job_7\n", {
        "sys/fs/cgroup/slurm/job_7/memory.max": "34359738368\n",
        "sys/fs/cgroup/slurm/job_7/memory.current": "4294967296\n"})
    assert cgroup_headroom(v2) == 32 * 2**30 - 4 * 2**30
    v1 = _cgroup(tmp_path / "v1", "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", {
        "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "8589934592\n",
        "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": "9000000000\n"})
    assert cgroup_headroom(v1) == 0  # over its limit already: nothing left
    free = _cgroup(tmp_path / "free", "0::/\n", {"sys/fs/cgroup/memory.max": "max\n",
                                                  "sys/fs/cgroup/memory.current": "1\n"})
    assert cgroup_headroom(free) is None
    unlimited = _cgroup(tmp_path / "huge", "3:memory:/\n", {
        "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/memory.usage_in_bytes": "1\n"})
    assert cgroup_headroom(unlimited) is None
    slurm = _cgroup(tmp_path / "slurm", "0::/system.slice/slurmstepd.scope/job_9/step_0/task_1\n",
                    {"sys/fs/cgroup/system.slice/slurmstepd.scope/job_9/memory.max": "8000\n",
                     "sys/fs/cgroup/system.slice/slurmstepd.scope/job_9/memory.current": "3000\n",
                     "sys/fs/cgroup/system.slice/slurmstepd.scope/job_9/step_0/task_1/"
                     "memory.max": "max\n",
                     "sys/fs/cgroup/system.slice/slurmstepd.scope/job_9/step_0/task_1/"
                     "memory.current": "1000\n"})
    assert cgroup_memory(slurm) == (8000, 3000)  # the job's limit, above the task's cgroup
    assert cgroup_headroom(slurm) == 5000
    assert cgroup_headroom(tmp_path / "nothing") is None  # no /proc: not Linux
    assert cgroup_headroom(_cgroup(tmp_path / "cpu", "5:cpu:/x\n", {})) is None


def test_the_largest_micrograph_counts(tiny_run, tmp_path, notes, monkeypatch):
    """Two micrographs, one small and one of 1024²: the memory short for two of the large one
    (as psutil reports it, faked) keeps one in flight, whichever comes first."""
    import collections

    import numpy as np
    import psutil
    from conftest import write_mrc

    rng = np.random.default_rng(0)
    small = write_mrc(tmp_path / "a.mrc", rng.poisson(4.0, (160, 128)).astype(np.float32))
    large = write_mrc(tmp_path / "b.mrc", rng.poisson(4.0, (1024, 1024)).astype(np.float32))
    each = 1024 * 1024 * BYTES_PER_PIXEL
    memory = collections.namedtuple("Memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(3 * each))
    cryostream.denoise(tiny_run.run, [small, large], tmp_path / "out",
                       config=cryostream.DenoiseConfig.raw())
    assert any(n.startswith("1 micrograph in flight, not 2") for n in notes)


def test_denoise_says_how_many_are_in_flight_and_a_given_number_is_kept(tiny_run, tmp_path, notes):
    paths = tiny_run.sim.micrographs
    cryostream.denoise(tiny_run.run, paths, tmp_path / "auto",
                       config=cryostream.DenoiseConfig.raw())
    said = next(n for n in notes if n.startswith("denoising 3 micrographs"))
    assert ", 2 in flight;" in said  # JAX on the CPU here: two
    notes.clear()
    cryostream.denoise(tiny_run.run, paths, tmp_path / "one", config=cryostream.DenoiseConfig.raw(),
                       workers=1)
    assert ", 1 in flight;" in next(n for n in notes if n.startswith("denoising 3 micrographs"))


def test_denoise_keeps_fewer_in_flight_when_memory_is_short(tiny_run, tmp_path, notes,
                                                           monkeypatch):
    """The host's memory as psutil reports it (faked short here: a host of 2 kB free)."""
    import collections

    import psutil

    memory = collections.namedtuple("Memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(2048))
    cryostream.denoise(tiny_run.run, tiny_run.sim.micrographs, tmp_path / "short",
                       config=cryostream.DenoiseConfig.raw())
    assert any(n.startswith("1 micrograph in flight, not 2") for n in notes)
    assert ", 1 in flight;" in next(n for n in notes if n.startswith("denoising 3 micrographs"))
