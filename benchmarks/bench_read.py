"""Reading full-size micrographs through the lazy Dask stack: throughput and peak memory.

For 4, 8 and 16 micrographs of 7676 × 7420 float32 (227 MB each), with the page cache
dropped before each run (five alternating runs; medians, and the
median of the per-pair ratio), compare cryostream's read (``open_micrographs(...).data`` reduced
blockwise, threaded scheduler) against the disk's own cold sequential bandwidth measured by
dd on the same files in the same run. Peak memory is the child process's peak RSS.

Usage: python benchmarks/bench_read.py --out bench-output [--sizes 4 8 16] [--threads 4]
Writes bench-output/read.json and bench-output/read.png, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dd_read_bandwidth, drop_cache, machine, make_full_size_set, run_child  # noqa: E402


def child(paths: list[str], threads: int, band_rows: int) -> None:
    import dask
    import numpy as np

    import cryostream

    start = time.perf_counter()
    stack = cryostream.open_micrographs(paths, chunks=band_rows)
    # Touch every block, keep one number per block: the cost measured is the read itself.
    total = stack.data.map_blocks(
        lambda block: np.full((1, 1, 1), float(block[:, -1, -1].sum())),
        chunks=(1, 1, 1), dtype="float64",
    ).sum()
    with dask.config.set(scheduler="threads", num_workers=threads):
        total.compute()
    seconds = time.perf_counter() - start
    nbytes = stack.size * 4
    print(json.dumps({"seconds": seconds, "bytes": int(nbytes)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-output")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--band-rows", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    if args.child:
        child(args.paths, args.threads, args.band_rows)
        return
    out = Path(args.out)
    paths = make_full_size_set(out / "full", max(args.sizes))
    rows = []
    for n in args.sizes:
        subset = paths[:n]
        # The virtual disk's speed drifts: alternate dd and cryostream, keep the medians.
        disks, rates, peaks = [], [], []
        for _ in range(args.repeats):
            disks.append(dd_read_bandwidth(subset))
            drop_cache(subset)
            r = run_child(__file__, "--threads", str(args.threads), "--band-rows",
                          str(args.band_rows), *map(str, subset))
            rates.append(r["bytes"] / r["seconds"])
            peaks.append(r["peak_rss_bytes"])
        disk, rate = statistics.median(disks), statistics.median(rates)
        ratio = statistics.median(r / d for r, d in zip(rates, disks, strict=True))
        r["peak_rss_bytes"] = max(peaks)
        rows.append({"micrographs": n, "bytes": r["bytes"], "seconds": r["seconds"],
                     "read_bytes_per_s": rate, "dd_bytes_per_s": disk,
                     "fraction_of_dd": ratio,
                     "dd_runs": disks, "read_runs": rates, "peak_rss_bytes": r["peak_rss_bytes"]})
        print(f"{n:>3} micrographs: {rate / 1e9:.2f} GB/s ({ratio:.0%} of dd "
              f"{disk / 1e9:.2f} GB/s), peak RSS {r['peak_rss_bytes'] / 1e6:.0f} MB", flush=True)
    result = {"machine": machine(), "threads": args.threads, "band_rows": args.band_rows,
              "rows": rows}
    (out / "read.json").write_text(json.dumps(result, indent=2))
    _plot(rows, out / "read.png")
    print("\n| micrographs | GB read | dd cold (GB/s) | cryostream (GB/s) | of dd | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['micrographs']} | {r['bytes'] / 1e9:.2f} | {r['dd_bytes_per_s'] / 1e9:.2f} | "
              f"{r['read_bytes_per_s'] / 1e9:.2f} | {r['fraction_of_dd']:.0%} | "
              f"{r['peak_rss_bytes'] / 1e6:.0f} |")
    print(f"\nmachine: {result['machine']}")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["micrographs"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["read_bytes_per_s"] / 1e9 for r in rows], "o-", label="cryostream (Dask stack)")
    a.plot(n, [r["dd_bytes_per_s"] / 1e9 for r in rows], "s--", label="dd, cold (disk limit)")
    a.set_xlabel("micrographs (7676 × 7420 float32)")
    a.set_ylabel("GB/s")
    a.set_ylim(bottom=0)
    a.legend()
    b.plot(n, [r["peak_rss_bytes"] / 1e6 for r in rows], "o-")
    b.set_xlabel("micrographs")
    b.set_ylabel("peak RSS (MB)")
    b.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
