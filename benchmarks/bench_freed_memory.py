"""The default steps with glibc's allocator as it is, and set to keep the memory of freed arrays
in the process for the next ones (one arena for every thread, no block mapped on its own, the
heap never trimmed: ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2⁴⁰``).

glibc maps each block over 32 MB on its own and unmaps it when it is freed, so every
whole-micrograph temporary of the default steps (230 MB at full size; dozens a micrograph) is
asked of the system afresh and its pages faulted in again. Each run is its own process, started
with its settings in the environment (glibc reads them only as a process starts): ``--threads``
threads run the default steps (as ``profile_default_steps.py``: the shipped model's, the
network's outputs stood in) on ``--count`` full-size micrographs each, one after another, as
``denoise`` keeps micrographs in flight. Runs alternate between the two ways ``--rounds`` times.
Prints and writes ``freed_memory.json``: wall time, CPU time in user and kernel mode, the
process's peak resident memory, each micrograph's steps and a digest of its output (the same
numbers either way).

Usage: python benchmarks/bench_freed_memory.py --out OUT [--threads 2] [--count 3] [--rounds 1]
(2-core machine: about two minutes a run.)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


#: The settings of a run that keeps freed memory.
KEPT = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def one_run(kept: bool, threads: int, count: int) -> dict:
    """This process's run: the steps of ``threads × count`` micrographs."""
    import bench_steps_processes as steps
    from common import make_full_size_set

    paths = [str(p) for p in make_full_size_set(Path("/tmp/full"), 2)]
    steps.setup()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(steps.task, [paths[i % 2] for i in range(threads * count)]))
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"kept": kept, "threads": threads, "micrographs": threads * count,
            "wall_s": round(time.perf_counter() - start, 1),
            "cpu_user_s": round(after.ru_utime - before.ru_utime, 1),
            "cpu_sys_s": round(after.ru_stime - before.ru_stime, 1),
            "peak_resident_gb": round(after.ru_maxrss / 1e6, 2),
            "steps_s_each": [round(r["steps_s"], 1) for r in results],
            "digests": [round(r["digest"], 4) for r in results]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--one", choices=("kept", "as-is"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.one == "kept", args.threads, args.count)))
        return 0
    rows = []
    for r in range(args.rounds):
        for way in ("as-is", "kept")[::-1 if r % 2 else 1]:
            env = {**os.environ, **(KEPT if way == "kept" else {})}
            done = subprocess.run([sys.executable, __file__, "--one", way, "--threads",
                                   str(args.threads), "--count", str(args.count)],
                                  capture_output=True, text=True, check=True, env=env)
            rows.append(json.loads(done.stdout.splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "freed_memory.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
