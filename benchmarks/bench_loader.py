"""PatchLoader read speed from a store on disk, cold, beside dd and a plain h5py loop.

Prepares a store from full-size micrographs (stored noise, float32, uncompressed: 8 MiB per
sample pair), then, with the page cache dropped before each run: dd over the shard files (the
disk's sequential limit), PatchLoader reading shuffled batches with its threads, and a plain
h5py loop reading the same shuffled patches from the master file. Peak RSS of each run in a
fresh child process.

Usage: python benchmarks/bench_loader.py --out bench-output [--micrographs 4] [--batches 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import drop_cache, machine, make_full_size_set, run_child  # noqa: E402


def child(kind: str, store: str, batches: int, threads: int, prefetch: int) -> None:
    import numpy as np

    from cryostream.loader import PatchLoader

    loader = PatchLoader(store, "train", 8, seed=0, threads=threads, prefetch=prefetch)
    start = time.perf_counter()
    nbytes = 0
    if kind == "loader":
        for i, batch in enumerate(loader):
            nbytes += batch["input"].nbytes + batch["target"].nbytes
            if i + 1 == batches:
                break
        loader.close()
    else:
        import h5py

        order = loader.order(0)[: batches * 8]
        with h5py.File(store, "r") as f:
            inp, tgt = f["train/input"], f["train/target"]
            for i in order:
                nbytes += np.asarray(inp[i]).nbytes + np.asarray(tgt[i]).nbytes
    print(json.dumps({"seconds": time.perf_counter() - start, "bytes": nbytes}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-output")
    ap.add_argument("--micrographs", type=int, default=4)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batches, args.threads, args.prefetch)
        return
    from cryostream import PrepareConfig
    from cryostream.prepare import prepare
    from cryostream.store import shard_folder

    out = Path(args.out)
    store = out / "loader-store" / "data.h5"
    if not store.exists():
        paths = make_full_size_set(out / "full", args.micrographs)
        prepare(paths, store, PrepareConfig(test_fraction=0.25), overwrite=True, log=lambda *_: None)
    shards = sorted(shard_folder(store).glob("*.h5"))
    from common import dd_read_bandwidth

    runs = {"dd": [], "loader": [], "h5py": []}
    peaks = {"loader": 0, "h5py": 0}
    for _ in range(args.repeats):
        runs["dd"].append(dd_read_bandwidth(shards))
        for kind in ("loader", "h5py"):
            drop_cache(shards + [store])
            r = run_child(__file__, kind, str(store), "--threads", str(args.threads),
                          "--prefetch", str(args.prefetch), "--batches", str(args.batches))
            runs[kind].append(r["bytes"] / r["seconds"])
            peaks[kind] = max(peaks[kind], r["peak_rss_bytes"])
            print(f"{kind}: {runs[kind][-1] / 1e9:.2f} GB/s, peak {r['peak_rss_bytes'] / 1e6:.0f} MB",
                  flush=True)
        print(f"dd: {runs['dd'][-1] / 1e9:.2f} GB/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = statistics.median(a / b for a, b in zip(runs["loader"], runs["dd"], strict=True))
    result = {"machine": machine(), "runs": runs, "median": med, "loader_over_dd": ratio,
              "loader_over_h5py": med["loader"] / med["h5py"], "peak_rss": peaks,
              "batch_bytes": 8 * 2 * 4 * 1024**2, "prefetch": args.prefetch,
              "threads": args.threads}
    (out / "loader.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
