"""prepare() on full-size micrographs: throughput (MB/s in and out), peak memory, and a profile.

For 4, 8 and 16 micrographs of 7676 × 7420 float32, run ``cryostream prepare`` (stored
noise, float32, threaded scheduler) in a child process and sample the peak RSS of the whole
process tree; run the reference plan done plainly (``naive_prepare.py``) in the same run as the
peer. With ``--baseline-src DIR`` (a folder holding an older ``cryostream`` package, e.g.
``git archive REV cryostream | tar -x -C DIR``) that version runs too, through ``PYTHONPATH``;
at each size the runs go back to back: plain, baseline, this version. Page cache dropped before
each run. Also lists bytes written per micrograph for each storage choice (from the planner,
exact for uncompressed stores).

``--profile`` times each stage of prepare on one full-size micrograph, one thread, with the
library's public functions (read, statistics, percentile with NumPy's and cryostream's, noise
estimate, normalise, Poisson and Gaussian with NumPy's samplers and with cryostream's, patch
copy, Fletcher-32, HDF5 shard write).

Usage: python benchmarks/bench_prepare.py --out bench-output [--sizes 4 8 16] [--naive-sizes 4]
       [--baseline-src DIR] [--profile] [--result prepare.json] [--wait-load 1.5 --wait-max 600]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    if kind == "profile":
        print(json.dumps(profile_stages(Path(paths[0]), Path(out))))
        return
    import cryostream
    from cryostream import PrepareConfig
    from cryostream.prepare import prepare

    start = time.perf_counter()
    r = prepare(paths, Path(out) / "data.h5", PrepareConfig(), overwrite=True, log=lambda *_: None)
    total_in = sum(Path(p).stat().st_size for p in paths)
    print(json.dumps({"seconds": time.perf_counter() - start, "bytes_in": total_in,
                      "bytes_out": r.bytes_written, "source": str(Path(cryostream.__file__).parent)}))


def profile_stages(path: Path, work: Path) -> dict[str, float]:
    """Wall and CPU seconds of each stage of prepare for the micrograph at ``path``, one thread.

    The stages run one after the other on the whole micrograph, as prepare's tasks do band by
    band: noise once per cell of ``stride`` rows, the shards of every band of patches.
    """
    import time

    import numpy as np

    from cryostream import PrepareConfig
    from cryostream.io.mrc import read_rows
    from cryostream.io.stack import read_headers
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.noise import noise_cell_rng, poisson, standard_normal
    from cryostream.preprocess import band_layout, band_patch_views, noise_rows, percentile
    from cryostream.store import fletcher32, write_shard

    config = PrepareConfig()
    (header,), _ = read_headers([str(path)])
    seconds: dict[str, list[float]] = {}  # stage: [wall seconds, CPU seconds of this thread]

    def timed(name, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        result = fn(*args, **kwargs)
        total = seconds.setdefault(name, [0.0, 0.0])
        total[0] += time.perf_counter() - wall
        total[1] += time.thread_time() - cpu
        return result

    drop_cache([path])
    image = timed("read (cold)", read_rows, header, 0, header.shape[0])
    timed("min, max (NaN/Inf check)", lambda im: (im.min(), im.max()), image)
    timed("percentile (np.percentile)", np.percentile, image, config.percentile)
    p = timed("percentile (preprocess.percentile)", percentile, image, config.percentile)
    timed("noise estimate", estimate_noise, image, header.pixel_size_angstrom or 1.0,
          tile=tile_for(image.shape))
    target = timed("normalise", np.multiply, image, np.float32(1 / p))
    del image
    s, noise = config.stride, config.noise
    for name, draw_counts, draw_normal in (
        ("NumPy", lambda lam, rng: rng.poisson(lam),
         lambda n, rng: rng.standard_normal(n, dtype=np.float32)),
        ("cryostream", poisson, standard_normal),
    ):
        for top in range(0, target.shape[0], s):
            rng = noise_cell_rng(config.seed, 1, top // s, 0)
            cell = target[top : top + s]
            lam = np.maximum(cell, 0) * np.float32(noise.dose)
            timed(f"Poisson ({name})", draw_counts, lam, rng)
            timed(f"Gaussian ({name})", draw_normal, cell.size, rng)
    noisy = timed("noise_rows (Poisson + Gaussian, as prepare)", noise_rows, target, 0, 1, config)
    layout = band_layout(target.shape, config.patch_size, config.stride, config.edge)
    both = np.stack([noisy, target])[None]
    del noisy, target
    n_chunks = 0
    buf = np.empty((config.patch_size, config.patch_size), dtype=np.float32)
    work.mkdir(parents=True, exist_ok=True)
    for band, rows in enumerate(layout.row_origins):
        if not rows:
            continue
        top = layout.top(band)
        block = both[:, :, top : top + layout.heights[band] + layout.before + layout.after]
        views = band_patch_views(block, band, layout, config.patch_size)
        for view in views:
            for kind in view:
                timed("patch copy (one chunk buffer)", np.copyto, buf, kind)
                timed("Fletcher-32 (store.fletcher32)", fletcher32, buf.view(np.uint8))
                n_chunks += 1
        timed("write_shard (copy + Fletcher-32 + HDF5 write)", write_shard, work / f"b{band}.h5",
              views, dtype=config.dtype, compression=config.compression, attrs={})
    shutil.rmtree(work, ignore_errors=True)
    return {"chunks_written": n_chunks, "wall_and_cpu_seconds": seconds}


def wait_for_quiet(load: float | None, patience: float) -> float:
    """Wait until the 1-minute load average is at most ``load`` (or ``patience`` seconds pass);
    returns the seconds waited. The machine is shared: this keeps runs out of busy spells."""
    import time

    start = time.perf_counter()
    while load is not None and os.getloadavg()[0] > load and time.perf_counter() - start < patience:
        time.sleep(10)
    return time.perf_counter() - start


def measure(kind: str, out: Path, subset: list[Path], source: str | None = None) -> dict:
    """One child run of ``kind`` on ``subset``; ``source`` goes first on its PYTHONPATH."""
    target = out / f"prepare-{kind}-{len(subset)}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    drop_cache(subset)
    load_before = os.getloadavg()[0]
    used_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    saved = os.environ.get("PYTHONPATH")
    if source is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), saved]))
    try:
        r = run_child(__file__, "naive" if kind == "naive" else "cryostream", str(target),
                      *map(str, subset))
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        shutil.rmtree(target, ignore_errors=True)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (used.ru_utime - used_before.ru_utime) + (used.ru_stime - used_before.ru_stime)
    n = len(subset)
    # CPU seconds of the child's process tree, and the 1-minute load average before and after:
    # the machine is shared, so wall times depend on what else ran
    return {"kind": kind, "micrographs": n, **r, "cpu_seconds": cpu,
            "cpu_seconds_per_micrograph": cpu / n, "load_average": [load_before, os.getloadavg()[0]],
            "mb_s_in": r["bytes_in"] / r["seconds"] / 1e6,
            "mb_s_out": r["bytes_out"] / r["seconds"] / 1e6,
            "seconds_per_micrograph": r["seconds"] / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-output")
    ap.add_argument("--sizes", type=int, nargs="*", default=[4, 8, 16])
    ap.add_argument("--naive-sizes", type=int, nargs="*", default=[4])
    ap.add_argument("--baseline-src", type=Path, help="folder holding an older cryostream package")
    ap.add_argument("--profile", action="store_true", help="time each stage on one micrograph")
    ap.add_argument("--result", default="prepare.json", help="file name of the JSON, under --out")
    ap.add_argument("--wait-load", type=float, help="before each run, wait for a 1-minute load "
                    "average at most this (the machine is shared)")
    ap.add_argument("--wait-max", type=float, default=600, help="seconds to wait at most, per run")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "OUT"))
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.paths)
        return
    out = Path(args.out)
    paths = make_full_size_set(out / "full", max(args.sizes + args.naive_sizes + [1]))
    result: dict = {"machine": machine()}
    if args.profile:
        result["profile_one_micrograph"] = run_child(
            __file__, "profile", str(out / "profile-shards"), str(paths[0]))
        print(json.dumps(result["profile_one_micrograph"], indent=1), flush=True)
    rows = []
    for n in sorted(set(args.sizes + args.naive_sizes)):
        runs = [("naive", None)] if n in args.naive_sizes else []
        if n in args.sizes:
            runs += [("baseline", args.baseline_src)] if args.baseline_src else []
            runs += [("cryostream", None)]
        for kind, source in runs:
            waited = wait_for_quiet(args.wait_load, args.wait_max)
            row = {**measure(kind, out, paths[:n], source), "waited_for_quiet_seconds": waited}
            naive = [r for r in rows if r["kind"] == "naive" and r["micrographs"] == n]
            if naive and kind != "naive":
                row["x_naive"] = row["mb_s_in"] / naive[0]["mb_s_in"]
                row["x_naive_cpu"] = (naive[0]["cpu_seconds_per_micrograph"]
                                      / row["cpu_seconds_per_micrograph"])
            rows.append(row)
            print(f"{kind:>10} {n:>3}: {row['seconds_per_micrograph']:.1f} s/micrograph, "
                  f"{row['mb_s_in']:.1f} MB/s in, {row['mb_s_out']:.0f} MB/s out, "
                  f"{row['bytes_out'] / 1e9:.1f} GB written, peak {row['peak_rss_bytes'] / 1e6:.0f} MB"
                  f", {row['cpu_seconds_per_micrograph']:.1f} CPU s/micrograph"
                  + (f", {row['x_naive']:.2f}× plain ({row['x_naive_cpu']:.2f}× in CPU time)"
                     if "x_naive" in row else ""), flush=True)
    from cryostream import NoiseConfig, PrepareConfig, plan

    per_mic = {}
    for dtype in ("float32", "float16"):
        for mode in ("stored", "on-device"):
            p = plan(shape=(7676, 7420), count=1,
                     config=PrepareConfig(dtype=dtype, noise=NoiseConfig(mode=mode), test_fraction=0))
            per_mic[f"{dtype}/{mode}"] = p.store_bytes()
    per_mic["the reference plan (float32 .bin, 169 patches)"] = 169 * 2 * 4 * 1024**2
    result.update({"rows": rows, "bytes_per_micrograph": per_mic})
    (out / args.result).write_text(json.dumps(result, indent=2))
    print(json.dumps(per_mic, indent=1))
    print("machine:", result["machine"])


if __name__ == "__main__":
    main()
