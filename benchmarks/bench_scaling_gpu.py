"""Data-parallel scaling: the ``unet`` preset fed by PatchLoader on 1, 2, … GPUs of one host.

One process, one store on local disk (simulated micrographs, stored noise). For each device
count N (a mesh over the first N devices, the batch sharded with ``NamedSharding``, the state
replicated) and each global batch: a fresh model from the same seed, trained from the same
loader position, so runs with the same global batch see the same batches in the same order.

* throughput with the per-device batch fixed: patches/s streamed by PatchLoader, scaling
  efficiency = patches/s on N ÷ (N × patches/s on 1), and the loader's overhead against one
  fixed batch already on the devices;
* the same global batch on one device and on N: the loss after the same steps must agree.

Each row records whether its step compiled more than once (``recompiled``,
``common.counting_compiles``).

Usage: python benchmarks/bench_scaling_gpu.py --out DIR [--devices 1 2] [--per-device 16]
(A CPU smoke run on two host devices: XLA_FLAGS=--xla_force_host_platform_device_count=2 …
--devices 1 2 --per-device 2 --patch 128 --shape 512 --micrographs 2 --model unet-small
--precision fp32 --loss-steps 2 --time-steps 2 --threads 2.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import counting_compiles, simulated_store, stamped_log  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/cryostream-scaling")
    ap.add_argument("--devices", type=int, nargs="+", default=None)
    ap.add_argument("--per-device", type=int, default=16)
    ap.add_argument("--patch", type=int, default=512)
    ap.add_argument("--shape", type=int, default=2048)
    ap.add_argument("--micrographs", type=int, default=4)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--loss-steps", type=int, default=30)
    ap.add_argument("--time-steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from cryostream.loader import PatchLoader
    from cryostream.training import (
        TrainConfig,
        create_model,
        create_train_state,
        make_optimizer,
        make_train_step,
    )

    log = stamped_log()

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    devices = jax.devices()
    counts = args.devices or [n for n in (1, 2, 4, 8) if n <= len(devices)]
    log("devices", len(devices), devices[0].device_kind, jax.__version__)
    store = simulated_store(work, args.micrographs, args.shape, args.patch, 0.0, log)

    # (devices, global batch): per-device batch fixed, plus the largest global batch on one device
    biggest = max(counts) * args.per_device
    plan = [(n, n * args.per_device) for n in counts]
    if max(counts) > 1:
        plan.insert(1, (1, biggest))
    rows = []
    for n, batch in plan:
        mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                             devices=devices[:n])
        shard, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
        cfg = TrainConfig(model=args.model, precision=args.precision, batch_size=batch, steps=10_000,
                          warmup_steps=10, seed=0)
        graphdef, state = create_train_state(create_model(cfg.model_config(), 0), make_optimizer(cfg))
        state = jax.device_put(state, replicated)
        step = make_train_step(graphdef, make_optimizer(cfg))
        loader = PatchLoader(store, "train", batch, seed=0, threads=args.threads, prefetch=4)
        batches = loader.device_batches(shard)
        with counting_compiles(step) as compiles:  # one compilation per row
            losses = []
            t = time.perf_counter()
            for i in range(args.loss_steps):
                state, m = step(state, next(batches))
                losses.append(m["loss"])
                if i == 0:
                    jax.block_until_ready(m)
                    compile_s = time.perf_counter() - t
            losses = [float(v) for v in losses]
            jax.block_until_ready(state)
            t = time.perf_counter()
            for _ in range(args.time_steps):
                state, m = step(state, next(batches))
            jax.block_until_ready(m)
            loader_s = (time.perf_counter() - t) / args.time_steps
            fixed = next(batches)
            loader.close()
            for _ in range(3):
                state, m = step(state, fixed)
            jax.block_until_ready(m)
            t = time.perf_counter()
            for _ in range(args.time_steps):
                state, m = step(state, fixed)
            jax.block_until_ready(m)
            fixed_s = (time.perf_counter() - t) / args.time_steps
        row = {"device": devices[0].device_kind, "devices": n, "global_batch": batch,
               "per_device_batch": batch // n, "patch": args.patch, "model": args.model,
               "precision": args.precision, "compile_s": round(compile_s, 1),
               "step_ms_loader": loader_s * 1e3, "step_ms_fixed": fixed_s * 1e3,
               "patches_per_s": batch / loader_s, "loader_overhead": loader_s / fixed_s - 1,
               "losses": losses, "recompiled": len(compiles) != 1}
        rows.append(row)
        log(json.dumps({k: v for k, v in row.items() if k != "losses"}),
            f"loss after {args.loss_steps}: {losses[-1]:.6f}")
    base = next(r for r in rows if r["devices"] == 1 and r["per_device_batch"] == args.per_device)
    summary = []
    for r in rows:
        if r["per_device_batch"] == args.per_device:
            eff = r["patches_per_s"] / (r["devices"] * base["patches_per_s"])
            summary.append({"devices": r["devices"], "patches_per_s": r["patches_per_s"],
                            "efficiency": eff, "loader_overhead": r["loader_overhead"]})
    same = [r for r in rows if r["global_batch"] == biggest]
    agreement = None
    if len(same) > 1:
        a, b = np.array(same[0]["losses"]), np.array(same[-1]["losses"])
        agreement = {"global_batch": biggest, "devices": [same[0]["devices"], same[-1]["devices"]],
                     "final_loss": [float(a[-1]), float(b[-1])],
                     "max_relative_difference": float(np.max(np.abs(a - b) / np.abs(a)))}
    result = {"rows": rows, "scaling": summary, "same_global_batch": agreement}
    (out / "scaling_gpu.json").write_text(json.dumps(result, indent=2))
    for s in summary:
        print(f"{s['devices']} device(s): {s['patches_per_s']:.1f} patches/s, efficiency "
              f"{s['efficiency']:.1%}, loader overhead {s['loader_overhead']:+.1%}")
    if agreement:
        print("same global batch:", json.dumps(agreement))


if __name__ == "__main__":
    main()
