"""Where ``denoise``'s default recipe spends a full-size micrograph's time on a GPU machine.

Two measurements with the shipped general model (its 8-fold ensemble, its binned pass, the
CTF fit and check, the gains), after one micrograph has compiled the network:

1. one micrograph alone through :func:`cryostream.denoise.micrograph.denoise_image` under
   ``cProfile`` (the main thread, so the network's passes and the steps after them are both
   seen): wall time, the process's CPU time, and the functions by cumulative and own time
   (``network_pass``'s cumulative time is the network's share);
2. ``--in-flight`` micrographs through :func:`cryostream.denoise.denoise` as a user runs it
   (several numbers in flight: one measurement each, in this process; ``--micrographs`` more
   than in flight shows the steady state of a data set, where one micrograph's steps on the
   CPU overlap another's passes on the GPU): wall time per
   micrograph, the CPU time the process used per micrograph (how many cores the steps keep
   busy, against the machine's) and how busy the GPU was (``nvidia-smi``'s utilisation,
   sampled every 0.2 s, where there is one). A row's peak memory is the process's so far:
   its own where it is above the rows before it (list the numbers in flight smallest first).

Usage: python benchmarks/profile_default_gpu.py --out OUT [--in-flight 8 [12 …]] [--work /tmp/full]
[--micrographs 24] [--in-flight-only] [--copy-back plain pinned] [--trace 8]
(with ``PYTHONPATH`` naming another checkout, the same for its code)
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import json
import os
import pstats
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def cpu_seconds() -> float:
    """User and system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/full"))
    ap.add_argument("--in-flight", type=int, nargs="+", default=[8])
    ap.add_argument("--micrographs", type=int, help="micrographs per measurement (default: as "
                    "many as in flight)")
    ap.add_argument("--copy-back", nargs="+", choices=("pinned", "plain"), default=["pinned"],
                    help="how the network's outputs come back from the GPU, one row each in this "
                    "order: through pinned host memory (as denoise does) or the plain copy")
    ap.add_argument("--trace", type=int, default=0, metavar="N",
                    help="then N micrographs at the first number in flight under jax.profiler, "
                    "its device timeline summed by benchmarks/device_timeline.py into "
                    "OUT/device_timeline.json (the trace itself in WORK/trace)")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--in-flight-only", action="store_true",
                    help="the second measurement alone (to set one version beside another)")
    args = ap.parse_args(argv)

    import jax
    import mrcfile
    from common import make_full_size_set

    dm = importlib.import_module("cryostream.denoise.micrograph")  # the module, not the function
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.network import model_path, model_record

    args.out.mkdir(parents=True, exist_ok=True)
    run = str(model_path("general"))
    paths = make_full_size_set(args.work, max(2, args.micrographs or 0, *args.in_flight))
    config = DenoiseConfig().for_run(model_record(run))  # as denoise decides it for the run
    images = [np.asarray(mrcfile.read(p), np.float32) for p in paths[:2]]
    result = {"device": jax.devices()[0].device_kind, "cores": os.cpu_count(),
              "shape": list(images[0].shape)}

    start = time.perf_counter()
    dm.denoise_image(images[0], 0.6575, str(paths[0]), run, config)
    result["first_micrograph_s"] = round(time.perf_counter() - start, 2)  # compiles included
    print("first micrograph (compiling):", result["first_micrograph_s"], "s", flush=True)
    if args.in_flight_only:
        return in_flight(args, paths, run, result)

    profile = cProfile.Profile()
    start, cpu = time.perf_counter(), cpu_seconds()
    profile.enable()
    dm.denoise_image(images[1], 0.6575, str(paths[1]), run, config)
    profile.disable()
    result["profiled_s"] = round(time.perf_counter() - start, 2)
    result["profiled_cpu_s"] = round(cpu_seconds() - cpu, 2)
    text = io.StringIO()
    for key in ("cumulative", "tottime"):
        pstats.Stats(profile, stream=text).sort_stats(key).print_stats(args.top)
    (args.out / "profile_default_gpu.txt").write_text(text.getvalue())
    print(f"one micrograph under cProfile: {result['profiled_s']} s wall, "
          f"{result['profiled_cpu_s']} s CPU", flush=True)

    return in_flight(args, paths, run, result)


class GpuBusy:
    """``nvidia-smi``'s GPU utilisation (%), sampled every 0.2 s while in a ``with`` block:
    ``mean`` after it (None without ``nvidia-smi``)."""

    def __enter__(self):
        import subprocess

        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "200"], stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc):
        self.mean = None
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate()
            values = [float(v) for v in out.split() if v.strip().replace(".", "").isdigit()]
            self.mean = round(sum(values) / len(values), 1) if values else None


def in_flight(args, paths, run, result) -> int:
    """The second measurement, for each number in flight, written with the others to
    ``OUT/profile_default_gpu.json``."""
    from common import peak_memory

    from cryostream.denoise import denoise

    network = importlib.import_module("cryostream.denoise.network")  # the module itself
    result["in_flight"] = []
    for workers, copy_back in [(w, c) for w in args.in_flight for c in args.copy_back]:
        network._no_pinned[:] = ["plain copies asked for"] if copy_back == "plain" else []
        some = paths[: args.micrographs or workers]
        shutil.rmtree(args.work / "out", ignore_errors=True)  # or the last row's are kept
        start, cpu = time.perf_counter(), cpu_seconds()
        with GpuBusy() as gpu:
            denoise(run, some, args.work / "out", workers=workers)
        wall = time.perf_counter() - start
        used = cpu_seconds() - cpu
        row = {"micrographs": len(some), "workers": workers, "copy_back": copy_back,
               "wall_s": round(wall, 1),
               "per_micrograph_s": round(wall / len(some), 2),
               "cpu_s_per_micrograph": round(used / len(some), 1),
               "mean_busy_cores": round(used / wall, 1), "gpu_busy_percent": gpu.mean,
               **peak_memory()}
        result["in_flight"].append(row)
        print("in flight:", row, flush=True)
    name = "in_flight" if args.in_flight_only else "profile_default_gpu"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    if args.trace:
        traced(args, paths, run, denoise)
    return 0


def traced(args, paths, run, denoise) -> None:
    """``--trace N`` micrographs under ``jax.profiler.trace``, summed by
    :mod:`device_timeline` into ``OUT/device_timeline.json``."""
    import jax
    from device_timeline import device_events, summarise

    network = importlib.import_module("cryostream.denoise.network")
    network._no_pinned[:] = []
    shutil.rmtree(args.work / "out", ignore_errors=True)
    start = time.perf_counter()
    with jax.profiler.trace(str(args.work / "trace")):
        denoise(run, paths[: args.trace], args.work / "out", workers=args.in_flight[0])
    summary = {"micrographs": args.trace, "workers": args.in_flight[0],
               "wall_s": round(time.perf_counter() - start, 1),
               **summarise(device_events(args.work / "trace"), args.top)}
    (args.out / "device_timeline.json").write_text(json.dumps(summary, indent=1))
    print("device timeline:", json.dumps({k: summary[k] for k in
                                          ("wall_s", "span_s", "busy_s", "by_kind")}), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
