"""Time and memory of one network call by window side and windows per call, with the memory
XLA plans for the call beside the process's peak.

Each (side, batch) runs in its own process (the peak resident memory is the process's):
the shipped general model in float32, a warm-up call (compiling), then ``--rounds`` rounds of
calls over four windows, ``batch`` at a time; seconds per window (median over rounds), the
process's peak resident memory, and XLA's plan for one call (temporary buffers, inputs and
outputs: :func:`cryostream.denoise.memory.call_bytes`). On a CPU this is what chose one window
per call; on a GPU it shows the plan against the device's peak.

Usage: python benchmarks/bench_network_calls.py --out DIR [--sides 1088 1472]
[--batches 1 2 4] [--rounds 2]; --plans for XLA's plans alone
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def one(side: int, batch: int, rounds: int) -> dict:
    import jax
    import numpy as np
    from common import peak_memory

    from cryostream.denoise.memory import call_bytes
    from cryostream.denoise.network import load_network, model_path, to_device, to_host

    run = model_path("general")
    network = load_network(run)
    windows = np.random.default_rng(0).normal(size=(4, side, side, 1)).astype(np.float32)
    t = time.perf_counter()
    jax.block_until_ready(network.apply(network.params, to_device(windows[:batch])))
    first = time.perf_counter() - t
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(0, 4, batch):
            to_host(network.apply(network.params, to_device(windows[i : i + batch])))
        times.append((time.perf_counter() - t) / 4)
    return {"device": jax.devices()[0].device_kind, "side": side, "batch": batch,
            "first_call_s": first, "seconds_per_window": float(np.median(times)),
            "rounds": times, "planned_gb": call_bytes(run, "fp32", batch, side) / 1e9,
            **peak_memory()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sides", type=int, nargs="+", default=[1088, 1472])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", type=int, nargs=2, metavar=("SIDE", "BATCH"))
    ap.add_argument("--plans", action="store_true",
                    help="only XLA's plan per call for windows of 256² to 4352² (batch 1, and "
                         "eight 1472²), into plans.json: no timing")
    args = ap.parse_args()
    if args.plans:
        import jax

        from cryostream.denoise.memory import call_bytes
        from cryostream.denoise.network import model_path

        rows = [{"device": jax.devices()[0].device_kind, "side": side, "batch": batch,
                 "planned_bytes": (b := call_bytes(model_path("general"), "fp32", batch, side)),
                 "bytes_per_pixel": b / (batch * side**2)}
                for side, batch in [(s, 1) for s in (256, 512, 768, 1024, 1472, 2432, 3072,
                                                     4352)] + [(1472, 8)]]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "plans.json").write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows, indent=1))
        return
    if args.one:
        print("ROW " + json.dumps(one(*args.one, args.rounds)), flush=True)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for side in args.sides:
        for batch in args.batches:
            done = subprocess.run([sys.executable, __file__, "--out", str(out), "--rounds",
                                   str(args.rounds), "--one", str(side), str(batch)],
                                  capture_output=True, text=True)
            found = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
            row = json.loads(found[0]) if found else {"side": side, "batch": batch,
                                                      "error": done.stderr[-1500:]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / "network_calls.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
