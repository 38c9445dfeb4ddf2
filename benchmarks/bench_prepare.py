"""prepare() on full-size micrographs: throughput (MB/s in and out) and peak memory.

For 4, 8 and 16 micrographs of 7676 × 7420 float32, run ``cryostream prepare`` (stored
noise, float32, threaded scheduler) in a child process and sample the peak RSS of the whole
process tree; run the reference plan done plainly (``naive_prepare.py``) in the same run as the
peer. Page cache dropped before each run. Also lists bytes written per micrograph for each
storage choice (from the planner, exact for uncompressed stores).

Usage: python benchmarks/bench_prepare.py --out bench-output [--sizes 4 8 16] [--naive-sizes 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import drop_cache, machine, make_full_size_set, run_child  # noqa: E402

HERE = Path(__file__).resolve().parent


def child(kind: str, out: str, paths: list[str]) -> None:
    import subprocess
    import time

    if kind == "naive":
        subprocess.run([sys.executable, str(HERE / "naive_prepare.py"), out, *paths], check=True)
        return
    from cryostream import PrepareConfig
    from cryostream.prepare import prepare

    start = time.perf_counter()
    r = prepare(paths, Path(out) / "data.h5", PrepareConfig(), overwrite=True, log=lambda *_: None)
    total_in = sum(Path(p).stat().st_size for p in paths)
    print(json.dumps({"seconds": time.perf_counter() - start, "bytes_in": total_in,
                      "bytes_out": r.bytes_written}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-output")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--naive-sizes", type=int, nargs="+", default=[4])
    ap.add_argument("--child", nargs=2, metavar=("KIND", "OUT"))
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.paths)
        return
    out = Path(args.out)
    paths = make_full_size_set(out / "full", max(args.sizes))
    rows = []
    for kind, sizes in (("naive", args.naive_sizes), ("cryostream", args.sizes)):
        for n in sizes:
            subset = paths[:n]
            target = out / f"prepare-{kind}-{n}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            drop_cache(subset)
            r = run_child(__file__, kind, str(target), *map(str, subset))
            row = {"kind": kind, "micrographs": n, **r,
                   "mb_s_in": r["bytes_in"] / r["seconds"] / 1e6,
                   "mb_s_out": r["bytes_out"] / r["seconds"] / 1e6,
                   "seconds_per_micrograph": r["seconds"] / n}
            rows.append(row)
            print(f"{kind:>10} {n:>3}: {row['seconds_per_micrograph']:.1f} s/micrograph, "
                  f"{row['mb_s_in']:.1f} MB/s in, {row['mb_s_out']:.0f} MB/s out, "
                  f"{r['bytes_out'] / 1e9:.1f} GB written, peak {r['peak_rss_bytes'] / 1e6:.0f} MB",
                  flush=True)
            shutil.rmtree(target, ignore_errors=True)
    from cryostream import NoiseConfig, PrepareConfig, plan

    per_mic = {}
    for dtype in ("float32", "float16"):
        for mode in ("stored", "on-device"):
            p = plan(shape=(7676, 7420), count=1,
                     config=PrepareConfig(dtype=dtype, noise=NoiseConfig(mode=mode), test_fraction=0))
            per_mic[f"{dtype}/{mode}"] = p.store_bytes()
    per_mic["seed plan (float32 .bin, 169 patches)"] = 169 * 2 * 4 * 1024**2
    result = {"machine": machine(), "rows": rows, "bytes_per_micrograph": per_mic}
    (out / "prepare.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(per_mic, indent=1))
    print("machine:", result["machine"])


if __name__ == "__main__":
    main()
