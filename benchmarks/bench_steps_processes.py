"""The default steps of N full-size micrographs at once: threads of one process, as ``denoise``
runs them, against processes: does Python's lock, or the threads' shared memory map, hold the
steps back on a many-core GPU machine?

Each micrograph's steps run as ``profile_default_steps.py`` runs them (the shipped model's
default, the network's outputs stood in by a smoothed copy), in ``N`` threads and then in ``N``
spawned processes (started and warmed first). Prints and writes ``procs.json``: the wall time,
the CPU time in user and kernel mode, the minor page faults and each micrograph's steps.

Usage: JAX_PLATFORMS=cpu python benchmarks/bench_steps_processes.py N OUT threads,processes
(the processes need no device; on a GPU machine each would take its own share of the card.)
"""
import concurrent.futures
import dataclasses
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

_P = {}


def setup(_=None) -> int:
    """The shipped model's default pipeline (the ensemble left out: its outputs stand in),
    made once per process."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.network import model_path, model_record

    if "pipeline" not in _P:
        record = model_record(model_path("general"))
        _P["record"] = record
        _P["pipeline"] = dataclasses.replace(DenoiseConfig().for_run(record).pipeline(),
                                             ensemble=False)
    return os.getpid()


def task(path: str) -> dict:
    """The steps of one micrograph, with the CPU time and page faults of its process."""
    import mrcfile
    from quality_common import known_output
    from scipy.ndimage import gaussian_filter

    from cryostream.denoise import Micrograph

    setup()
    image = mrcfile.read(path).astype(np.float32)
    image /= np.percentile(image, 95)
    stand_in = gaussian_filter(image, 2).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    out, _ = _P["pipeline"].run(Micrograph(image, 0.6575, _P["record"], source=Path(path).stem),
                                known_output(image, stand_in), stand_in)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"steps_s": time.perf_counter() - start, "user": after.ru_utime - before.ru_utime,
            "sys": after.ru_stime - before.ru_stime,
            "minflt": after.ru_minflt - before.ru_minflt,
            "digest": float(np.float64(out[::97, ::89]).sum())}


def run(mode: str, paths: list[str]) -> dict:
    n = len(paths)
    if mode == "threads":
        setup()
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            results = list(pool.map(task, paths))
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        user, kernel = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        faults = after.ru_minflt - before.ru_minflt
    else:
        with concurrent.futures.ProcessPoolExecutor(
                n, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(setup, range(n)))
            start = time.perf_counter()
            results = list(pool.map(task, paths))
            wall = time.perf_counter() - start
        user, kernel, faults = (sum(r[k] for r in results) for k in ("user", "sys", "minflt"))
    row = {"mode": mode, "n": n, "wall_s": round(wall, 1), "per_micrograph_s": round(wall / n, 2),
           "cpu_user_s": round(user, 1), "cpu_sys_s": round(kernel, 1), "minor_faults": faults,
           "steps_s_each": [round(r["steps_s"], 1) for r in results],
           "digest": results[0]["digest"]}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    from common import make_full_size_set

    n, out, order = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
    start = time.perf_counter()
    paths = [str(p) for p in make_full_size_set(Path("/tmp/full"), n)]
    print(f"set made in {time.perf_counter() - start:.0f} s; cores {os.cpu_count()}", flush=True)
    rows = [run(mode, paths) for mode in order]
    out.mkdir(parents=True, exist_ok=True)
    (out / "procs.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
