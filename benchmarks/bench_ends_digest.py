"""What a denoise output's record costs to identify its input by content: the digest of the
input's size and first and last MiB (``cryostream.denoise.moved.ends_digest``, kept in each
``NAME.json`` as ``input_ends_sha256``), against reading the whole micrograph, the physical
limit of any digest of all of it, over growing micrograph sizes, warm (in the page cache) and
cold (evicted first with ``posix_fadvise(DONTNEED)``), with the peak memory each takes
(tracemalloc: Python's and NumPy's allocations).

The digest is read once as an output is written, and again only where the size and time of an
input do not decide (paths that differ, times that are whole seconds).

Usage: python benchmarks/bench_ends_digest.py --out OUT [--repeats 7]
(2-core machine: under a minute; writes 1.4 GB of float32 MRC files into OUT.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import mrcfile
import numpy as np

from cryostream.denoise import moved

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import drop_cache  # noqa: E402

SIZES = [(1024, 1024), (4096, 4096), (7420, 7676)]

#: Times of modification never used twice in a process.
STAMPS = itertools.count(1)


def timed(work, path: Path, cold: bool, repeats: int) -> tuple[float, float]:
    """Median seconds of ``work(path)`` and its peak traced memory (MB)."""
    seconds, peak = [], 0
    for _ in range(repeats):
        stamp = next(STAMPS) * 10**9 + 1  # (a new time each run: the digest not cached)
        os.utime(path, ns=(stamp, stamp))
        if cold:
            drop_cache([path])
        tracemalloc.start()
        start = time.perf_counter()
        work(path)
        seconds.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(seconds), peak / 1e6


def whole(path: Path) -> None:
    """Read the whole micrograph, as a digest of all of it would have to."""
    with mrcfile.open(path, permissive=True) as mrc:
        np.asarray(mrc.data).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    for shape in SIZES:
        path = args.out / f"m_{shape[0]}x{shape[1]}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(rng.normal(100, 10, shape).astype(np.float32))
        row = {"shape": list(shape), "megabytes": round(path.stat().st_size / 1e6, 1)}
        for cold in (False, True):
            for name, work in (("ends_digest", moved.ends_digest), ("whole_read", whole)):
                s, peak = timed(work, path, cold, args.repeats)
                key = f"{name}_{'cold' if cold else 'warm'}"
                row[f"{key}_ms"], row[f"{key}_peak_mb"] = round(s * 1e3, 2), round(peak, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        path.unlink()
    (args.out / "ends_digest.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
