"""Training throughput on the GPU: the ``unet`` preset on 1024² patches fed by PatchLoader.

Builds a store on local disk (simulated 4096² micrographs, patch 1024, stride 512, stored
float32 noise), then for each batch size: compiles the jit step once, times it on one fixed
batch already on the device (the compute limit), and times it fed by
``PatchLoader.device_batches`` from the store (the real pipeline). Reports patches/s, the
loader's overhead, and model FLOP utilisation from FLOPs counted from the layer shapes (and
XLA's own cost analysis, which under-counts convolutions on the GPU).

The step must compile once for all its calls (``common.counting_compiles``: XLA compilations
counted through ``jax.monitoring``), or the benchmark stops.

Usage: python benchmarks/bench_train_gpu.py --out DIR [--batches 8 16] [--steps 40]
(A CPU smoke run: --batches 2 --steps 2 --micrographs 2 --shape 512 --patch 128
--model unet-small --threads 2.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import counting_compiles, simulated_store, stamped_log  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, dense bf16 tensor-core peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/cryostream-gpu-bench")
    ap.add_argument("--batches", type=int, nargs="+", default=[8])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--micrographs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--shape", type=int, default=4096, help="side of the simulated micrographs")
    ap.add_argument("--patch", type=int, default=1024)
    ap.add_argument("--model", default="unet")
    args = ap.parse_args()

    import jax

    from cryostream.loader import PatchLoader
    from cryostream.models.unet import macs_per_pixel
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
    device = jax.devices()[0]
    log("device", device.device_kind, jax.__version__)
    store = simulated_store(work, args.micrographs, args.shape, args.patch, 0.25, log)
    results = []
    for batch_size in args.batches:
        cfg = TrainConfig(model=args.model, precision="bf16", batch_size=batch_size, steps=10_000)
        model = create_model(cfg.model_config())
        tx = make_optimizer(cfg)
        graphdef, state = create_train_state(model, tx)
        step = make_train_step(graphdef, tx)
        loader = PatchLoader(store, "train", batch_size, seed=0, threads=args.threads, prefetch=4)
        batches = loader.device_batches()
        first = next(batches)
        with counting_compiles(step) as compiles:  # the step must compile once
            t = time.perf_counter()
            compiled = step.lower(state, first).compile()
            compile_s = time.perf_counter() - t
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0
            log(f"batch {batch_size}: compiled in {compile_s:.0f} s")
            state, m = step(state, first)
            jax.block_until_ready(m)

            fixed = first
            for _ in range(3):
                state, m = step(state, fixed)
            jax.block_until_ready(m)
            t = time.perf_counter()
            for _ in range(args.steps):
                state, m = step(state, fixed)
            jax.block_until_ready(m)
            fixed_s = (time.perf_counter() - t) / args.steps

            for _ in range(3):
                state, m = step(state, next(batches))
            jax.block_until_ready(m)
            t = time.perf_counter()
            for _ in range(args.steps):
                state, m = step(state, next(batches))
            jax.block_until_ready(m)
            loader_s = (time.perf_counter() - t) / args.steps
            loader.close()
        if len(compiles) != 1:
            raise RuntimeError(f"the step compiled {len(compiles)} times: it recompiled")

        p = args.patch
        flops = 3 * 2 * macs_per_pixel(cfg.model_config()) * p * p * batch_size
        row = {
            "device": device.device_kind, "model": args.model, "patch": p, "batch": batch_size,
            "compile_s": compile_s,
            "fixed_batch_ms": fixed_s * 1e3, "loader_ms": loader_s * 1e3,
            "patches_per_s_fixed": batch_size / fixed_s, "patches_per_s_loader": batch_size / loader_s,
            "loader_overhead": loader_s / fixed_s - 1,
            "model_tflop_per_step": flops / 1e12, "xla_tflop_per_step": xla_flops / 1e12,
            "achieved_tflops": flops / loader_s / 1e12,
            "mfu": flops / loader_s / 1e12 / H100_BF16_DENSE_TFLOPS,
            "loss": float(m["loss"]),
        }
        results.append(row)
        log(json.dumps(row))
    (out / "train_gpu.json").write_text(json.dumps(results, indent=2))
    for r in results:
        print(f"{r['model']} bf16 {r['patch']}² batch {r['batch']}: "
              f"{r['patches_per_s_loader']:.1f} patches/s from the store "
              f"({r['loader_ms']:.1f} ms/step), {r['patches_per_s_fixed']:.1f} on a fixed batch "
              f"({r['fixed_batch_ms']:.1f} ms), loader overhead {r['loader_overhead']:+.1%}, "
              f"{r['achieved_tflops']:.0f} TFLOP/s = {r['mfu']:.1%} MFU (XLA counts "
              f"{r['xla_tflop_per_step']:.2f} of {r['model_tflop_per_step']:.2f} TFLOP/step)")


if __name__ == "__main__":
    main()
