"""Denoising on GPUs of less memory: the default recipe with the shipped model, as a user runs
it, on a GPU whose memory is capped to that of a smaller card.

Each cap is one process with ``XLA_PYTHON_CLIENT_MEM_FRACTION`` set (JAX's allocator then
holds that fraction of the GPU's memory and no more; the CUDA context and libraries sit
outside it, as on a smaller card) and its own compile cache (the programs are compiled and
their convolution algorithms chosen under the cap). Each denoises the same full-size 7676 ×
7420 micrographs with ``cryostream.denoise("general", ...)`` and nothing else given, and
records whether it finished, what it raised, its time, the number in flight, the window
layout chosen, and the peak device and host memory. One process without a cap also records
the device memory that XLA's compiled network asks for per call (``memory_analysis``) for
windows of several sides, which is what a window choice under a cap must fit.

Usage: python benchmarks/bench_device_memory.py --out DIR [--count 4] [--caps-gb 11 24 48]
[--unbounded] (on an H200: --count 8 --unbounded --caps-gb 24 times the default with and
without its calls held in the memory, then a 24 GB card's run, in about ten minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def analyse(sides: list[int], batches: list[int]) -> list[dict]:
    """The compiled network's own account of its device memory per call, for windows of each
    side and batch (fp32, the default)."""
    import jax
    import jax.numpy as jnp

    from cryostream.denoise.network import load_network, model_path

    network = load_network(model_path("general"))
    rows = []
    for side in sides:
        for batch in batches:
            t = time.perf_counter()
            shape = jax.ShapeDtypeStruct((batch, side, side, 1), jnp.float32)
            memory = network.apply.lower(network.params, shape).compile().memory_analysis()
            rows.append({"side": side, "batch": batch, "compile_s": time.perf_counter() - t,
                         "temp_gb": memory.temp_size_in_bytes / 1e9,
                         "argument_gb": memory.argument_size_in_bytes / 1e9,
                         "output_gb": memory.output_size_in_bytes / 1e9,
                         "temp_bytes_per_pixel": memory.temp_size_in_bytes / (batch * side**2)})
    return rows


def child(args) -> dict:
    """One capped (or uncapped) process: denoise the set as a user would."""
    import jax
    from common import peak_memory

    import cryostream
    from cryostream.denoise.network import model_path
    from cryostream.denoise.tiling import window_layout
    from cryostream.denoise.workers import default_workers

    paths = sorted(Path(args.inputs).glob("*.mrc"))[: args.count]
    held = "unbounded" if os.environ.get("CRYOSTREAM_NETWORK_MEMORY_GB") else "held"
    out = Path(args.work) / f"out-{args.cap_gb}-{held}"  # one per run, made afresh
    shutil.rmtree(out, ignore_errors=True)
    stats = jax.devices()[0].memory_stats() or {}
    row = {"cap_gb": args.cap_gb, "device": jax.devices()[0].device_kind,
           "bytes_limit_gb": stats.get("bytes_limit", 0) / 1e9, "micrographs": len(paths),
           "workers": default_workers(7676 * 7420, jax.default_backend(), count=len(paths))}
    try:
        for name, shape in (("full", (7676, 7420)), ("binned", (3838, 3710))):
            layout = window_layout(model_path("general"), shape, None, None, 8, "fp32")
            row[f"layout_{name}"] = {"tile": layout.tile, "halo": layout.halo,
                                     "batch": layout.batch, "side": layout.tile + 2 * layout.halo,
                                     "call_gb": (layout.need or 0) / 1e9,
                                     "limit_gb": (layout.limit or 0) / 1e9}
        t = time.perf_counter()
        cryostream.denoise("general", paths, out)  # a fresh folder: every micrograph made
        row.update(ok=True, seconds=time.perf_counter() - t)
    except BaseException as e:  # noqa: BLE001 - what a user would see is the measurement
        row.update(ok=False, seconds=time.perf_counter() - t if "t" in locals() else None,
                   error=f"{type(e).__module__}.{type(e).__name__}",
                   message=str(e)[:600], trace=traceback.format_exc()[-1500:])
    row["outputs_written"] = len(list(out.glob("*.mrc"))) if out.exists() else 0
    row.update(peak_memory())
    if args.analyse:
        row["analysis"] = analyse(args.analyse, [1, 2])
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/cryostream-device-memory")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--caps-gb", type=float, nargs="+", default=[11, 24, 48],
                    help="device memory caps to emulate (GB); an uncapped run comes first")
    ap.add_argument("--analyse", type=int, nargs="*",
                    help="window sides whose compiled memory the uncapped run reports "
                         "(default: 1024 2048 2432 3072 4352)")
    ap.add_argument("--unbounded", action="store_true",
                    help="also an uncapped run with the calls at once not held within the "
                         "memory (CRYOSTREAM_NETWORK_MEMORY_GB=1000000): the same call's "
                         "throughput without the budget")
    ap.add_argument("--shape", type=int, help="a CPU smoke run: simulated SHAPE² micrographs")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--cap-gb", type=float)
    ap.add_argument("--inputs")
    args = ap.parse_args()
    from common import capped_child, capped_parent, gpu_memory_bytes, make_full_size_set

    started = capped_parent(args, child)
    if started is None:
        return
    log, out, work = started
    if args.shape:
        import cryostream

        cryostream.simulate(work / "full", args.count, shape=(args.shape, args.shape),
                            overwrite=True)
        inputs = work / "full" / "micrographs"
    else:
        make_full_size_set(work / "full", args.count)
        inputs = work / "full"
    log(f"{args.count} micrographs ready")
    total = None if args.shape else gpu_memory_bytes()
    rows = []
    runs = [(None, False), *([(None, True)] if args.unbounded else []),
            *((cap, False) for cap in args.caps_gb)]
    for cap, unbounded in runs:
        env = dict(os.environ, CRYOSTREAM_COMPILE_CACHE=str(work / f"cache-{cap}-{unbounded}"))
        env.pop("JAX_PLATFORMS")
        env.pop("CRYOSTREAM_NETWORK_MEMORY_GB", None)
        if unbounded:  # the calls at once not held in: as before the memory was fitted
            env["CRYOSTREAM_NETWORK_MEMORY_GB"] = "1000000"
        if cap is not None and total:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{cap * 1e9 / total:.4f}"
        command = [sys.executable, __file__, "--child", "--out", str(out), "--cap-gb",
                   str(cap or 0), "--count", str(args.count), "--inputs", str(inputs), "--work",
                   str(work)]
        if cap is None and not unbounded:
            sides = [1024, 2048, 2432, 3072, 4352] if args.analyse is None else args.analyse
            command += ["--analyse", *map(str, sides)] if sides else []
        row = capped_child(command, env, {"cap_gb": cap, "unbounded": unbounded}, log)
        row["unbounded"] = unbounded
        rows.append(row)
        (out / "device_memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
