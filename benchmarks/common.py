"""Helpers shared by the benchmarks: test data, cache dropping, child-process measurement,
progress logs and counting a jitted function's compilations.

The benchmark scripts put this folder on ``sys.path`` and ``import common``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FULL_SHAPE = (7676, 7420)

#: The event ``jax.monitoring`` records once per XLA compilation, with the function's name.
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def machine() -> str:
    """One line naming the machine a figure came from."""
    import psutil

    mem = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def make_full_size_set(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` full-size float32 micrographs: one simulated micrograph, rolled per file.

    Rolling keeps the content realistic and makes every file different while costing one
    simulation instead of ``count``. Existing files of the right size are reused.
    """
    from cryostream import SimulateConfig
    from cryostream.io.mrc import write_micrograph
    from cryostream.simulate.micrograph import simulate_micrograph

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"full_{i:03d}.mrc" for i in range(count)]
    expected = 1024 + FULL_SHAPE[0] * FULL_SHAPE[1] * 4
    missing = [p for p in paths if not (p.exists() and p.stat().st_size == expected)]
    if missing:
        base = simulate_micrograph(SimulateConfig(seed=seed), 0).noisy
        for p in missing:
            i = paths.index(p)
            write_micrograph(p, np.roll(base, (i * 997, i * 1499), (0, 1)), 0.6575, overwrite=True)
    return paths


def drop_cache(paths: list[Path]) -> None:
    """Evict the files from the page cache (fsync, then POSIX_FADV_DONTNEED)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def dd_read_bandwidth(paths: list[Path]) -> float:
    """Cold sequential read bandwidth of ``paths`` with dd (bytes/s), page cache dropped."""
    drop_cache(paths)
    total = sum(p.stat().st_size for p in paths)
    start = time.perf_counter()
    for p in paths:
        subprocess.run(["dd", f"if={p}", "of=/dev/null", "bs=16M", "status=none"], check=True)
    return total / (time.perf_counter() - start)


def run_child(script: str, *args: str) -> dict:
    """Run ``script --child ARGS`` in a fresh interpreter; it prints one JSON line.

    Adds the peak RSS of the whole child process tree, sampled every 20 ms.
    """
    import psutil  # not on the GPU machines; only the CPU benchmarks measure children

    proc = subprocess.Popen([sys.executable, script, "--child", *args], stdout=subprocess.PIPE,
                            text=True)
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{script} child failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_bytes"] = max(peak, result.get("peak_rss_bytes", 0))
    return result


def stamped_log():
    """A print that prefixes seconds since it was made (for the GPU benchmarks' progress)."""
    import time

    t0 = time.perf_counter()

    def log(*a):
        print(f"[{time.perf_counter() - t0:6.1f}s]", *a, flush=True)

    return log


def simulated_store(work: Path, micrographs: int, shape: int, patch: int, test_fraction: float,
                    log) -> Path:
    """A store of simulated square micrographs (stored noise, stride patch/2), made once."""
    import cryostream

    store = work / "data.h5"
    if not store.exists():
        sim = cryostream.simulate(work / "sim", micrographs, shape=(shape, shape), seed=0,
                                  overwrite=True)
        config = cryostream.PrepareConfig(patch_size=patch, stride=patch // 2,
                                          test_fraction=test_fraction)
        log("store:", cryostream.prepare(sim.micrographs, store, config, overwrite=True,
                                         log=lambda *_: None).summary())
    return store


@contextlib.contextmanager
def counting_compiles(fn):
    """Count the XLA compilations of the jitted ``fn`` while the block runs.

    Yields a list that gets one entry (the compile's duration in seconds) per compilation of
    ``fn``, from ``jax.monitoring``'s public listener: a jitted step called again on batches of
    the same shapes and shardings compiles once, so more than one entry means it recompiled.
    An ahead-of-time ``fn.lower(...).compile()`` inside the block counts, and the calls that
    reuse its executable add nothing.
    """
    import jax

    name = f"jit({fn.__name__})"
    seen: list[float] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT and kwargs.get("fun_name") == name:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def peak_memory() -> dict:
    """Peak device memory so far (GB; None where the backend does not say) and the process's
    peak resident memory (GB). Both are maxima over the process: for one measurement's own
    figure, make one measurement per process."""
    import resource

    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {"device_peak_gb": round(peak / 1e9, 2) if peak else None,
            "host_peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                                  / 1e9, 2)}  # the kernel counts KiB


def gpu_memory_bytes() -> float | None:
    """The first GPU's memory in bytes, as ``nvidia-smi`` says; None without one."""
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return float(smi.stdout.split()[0]) * 2**20 if smi.returncode == 0 else None


def capped_child(command: list[str], env: dict, failed: dict, log, keep_stderr: int = 1200) -> dict:
    """Run one capped benchmark process and return the row it prints (``ROW {json}``), or
    ``failed`` with its exit status and the end of its stderr; the row is logged."""
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    found = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    row = json.loads(found[0]) if found else {**failed, "ok": False,
                                              "error": f"exit {done.returncode}",
                                              "trace": done.stderr[-1500:]}
    row["stderr_tail"] = done.stderr[-keep_stderr:]
    log(json.dumps({k: v for k, v in row.items() if k not in ("trace", "stderr_tail")}))
    return row


def capped_parent(args, child) -> tuple | None:
    """The start of a capped-GPU benchmark (``--child``, ``--out``, ``--work``): as its child
    (``args.child``), print ``child(args)``'s row for :func:`capped_child` and return None;
    as the parent, leave the GPU to the children and return ``(log, out, work)``, the output
    folder made."""
    if args.child:
        print("ROW " + json.dumps(child(args)), flush=True)
        return None
    os.environ["JAX_PLATFORMS"] = "cpu"  # this process leaves the GPU to its children
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    return stamped_log(), out, work

