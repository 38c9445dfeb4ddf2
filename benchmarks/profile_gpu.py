"""Where the GPU time of the ``unet`` goes: per-op profile, and the network's ways of computing.

For each way of computing the network (``plain``: every layer as written; ``head``: the
full-resolution head on pixel phases; ``phases``: stem and head on pixel phases, the default —
:mod:`cryostream.models.phases`; all three the same function of the same parameters), measures
on one fixed batch already on the device:

- the training step (``unet`` bf16, residual, batch × patch², AdamW): cold compile time and
  time per step;
- the forward pass on whole-micrograph windows (denoise's default: four 4352² windows of a
  7676 × 7420 micrograph, in batches): compile time and device time per micrograph;
- with ``--profile``, a trace of a few training steps through ``jax.profiler``, summed per
  XLA op and written with each op's HLO line, so the table says which layer each op is.

Each row also gives the peak device memory and the process's peak resident memory so far
(maxima over the process: run one way per process for one way's own figure).

The persistent compilation cache is what ``cryostream`` uses (``compile_cache``); run the
script twice with one ``JAX_COMPILATION_CACHE_DIR`` to time a warm start, and with
``XLA_FLAGS`` to try compiler settings.

Usage: python benchmarks/profile_gpu.py --out DIR [--ways plain phases] [--profile phases]
(A CPU smoke run: --batch 1 --patch 128 --window 256 --windows 1 --steps 2 --model unet-small.)
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_memory, stamped_log  # noqa: E402

WAYS = {"plain": (False, False), "head": (False, True), "phases": (True, True)}


def profile_ops(trace_dir: Path, hlo_text: str, steps: int) -> list[dict]:
    """Device time per XLA op per step from a ``jax.profiler`` trace, largest first."""
    from jax.profiler import ProfileData

    lines_of = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)", line)
        if m:
            lines_of[m.group(1)] = m.group(2)[:220]
    total = collections.defaultdict(float)
    count = collections.Counter()
    path = sorted(trace_dir.rglob("*.xplane.pb"))[-1]
    for plane in ProfileData.from_file(str(path)).planes:
        if not plane.name.startswith("/device:GPU"):
            continue
        lines = list(plane.lines)
        names = [line.name for line in lines]
        # The derived "XLA Ops" line where the profiler writes one; else the CUDA streams'
        # kernels, each keyed by the HLO op it belongs to (its ``hlo_op`` stat).
        chosen = [ln for ln in lines if ln.name == "XLA Ops"] or [
            ln for ln in lines if ln.name.startswith("Stream")]
        print("  profile lines:", names, flush=True)
        for line in chosen:
            for ev in line.events:
                stats = dict(ev.stats)
                key = str(stats.get("hlo_op") or ev.name)
                total[key] += ev.duration_ns
                count[key] += 1
    rows = [{"op": name, "ms_per_step": ns / 1e6 / steps, "calls_per_step": count[name] / steps,
             "hlo": lines_of.get(name, "")} for name, ns in total.items()]
    return sorted(rows, key=lambda r: -r["ms_per_step"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ways", nargs="+", default=["plain", "phases"], choices=sorted(WAYS))
    ap.add_argument("--profile", nargs="*", default=[], choices=sorted(WAYS))
    ap.add_argument("--model", default="unet")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--window", type=int, default=4352, help="side of a denoise window")
    ap.add_argument("--windows", type=int, default=4, help="windows per micrograph")
    ap.add_argument("--window-batch", type=int, default=4)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from cryostream.compile_cache import enable_compile_cache
    from cryostream.models.unet import UNet, macs_per_pixel
    from cryostream.training import TrainConfig, create_train_state, make_optimizer, make_train_step

    log = stamped_log()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = enable_compile_cache()
    device = jax.devices()[0]
    log("device", device.device_kind, jax.__version__, "cache", cache, "tag", args.tag)
    cfg = TrainConfig(model=args.model, precision=args.precision, residual=True,
                      batch_size=args.batch,
                      steps=10_000)
    mc = cfg.model_config()
    rng = np.random.default_rng(0)
    p = args.patch
    batch = {"input": jnp.asarray(rng.normal(size=(args.batch, p, p)), jnp.float32),
             "target": jnp.asarray(rng.normal(size=(args.batch, p, p)), jnp.float32)}
    windows = jnp.asarray(rng.normal(size=(args.window_batch, args.window, args.window, 1)),
                          jnp.float32)
    rows = []
    for way in args.ways:
        stem, head = WAYS[way]
        model = UNet(mc, rngs=nnx.Rngs(0), phase_stem=stem, phase_head=head)
        tx = make_optimizer(cfg)
        graphdef, state = create_train_state(model, tx)
        row = {"device": device.device_kind, "way": way, "tag": args.tag, "model": args.model,
               "precision": args.precision,
               "batch": args.batch, "patch": p}
        if not args.skip_train:
            step = make_train_step(graphdef, tx)
            t = time.perf_counter()
            compiled = step.lower(state, batch).compile()
            row["train_compile_s"] = time.perf_counter() - t
            log(way, f"train step compiled in {row['train_compile_s']:.1f} s")
            for _ in range(3):
                state, m = compiled(state, batch)
            jax.block_until_ready(m)
            t = time.perf_counter()
            for _ in range(args.steps):
                state, m = compiled(state, batch)
            jax.block_until_ready(m)
            s = (time.perf_counter() - t) / args.steps
            flops = 3 * 2 * macs_per_pixel(mc) * p * p * args.batch
            row.update(train_ms=s * 1e3, patches_per_s=args.batch / s,
                       model_tflops=flops / s / 1e12, loss=float(m["loss"]))
            log(way, json.dumps(row))
            if way in args.profile:
                trace = out / f"trace_{way}{args.tag}"
                n = 5
                with jax.profiler.trace(str(trace)):
                    for _ in range(n):
                        state, m = compiled(state, batch)
                    jax.block_until_ready(m)
                ops = profile_ops(trace, compiled.as_text(), n)
                (out / f"ops_{way}{args.tag}.json").write_text(json.dumps(ops, indent=1))
                total = sum(r["ms_per_step"] for r in ops)
                log(way, f"profile: {total:.1f} ms of ops per step; top 30:")
                for r in ops[:30]:
                    print(f"  {r['ms_per_step']:7.2f} ms ×{r['calls_per_step']:.0f} "
                          f"{r['op'][:40]:40s} {r['hlo'][:150]}", flush=True)
                row["profiled_ms"] = total
            del compiled
        params = state["params"]
        forward = jax.jit(lambda prm, x, g=graphdef: nnx.merge(g, prm)(x))
        t = time.perf_counter()
        fwd = forward.lower(params, windows).compile()
        row["forward_compile_s"] = time.perf_counter() - t
        jax.block_until_ready(fwd(params, windows))
        reps = 5
        t = time.perf_counter()
        for _ in range(reps):
            y = fwd(params, windows)
        jax.block_until_ready(y)
        per_batch = (time.perf_counter() - t) / reps
        row["forward_s_per_micrograph"] = per_batch * args.windows / args.window_batch
        log(way, f"forward: {row['forward_s_per_micrograph']:.3f} s per micrograph "
                 f"({args.windows} windows of {args.window}²), compiled in "
                 f"{row['forward_compile_s']:.1f} s")
        row.update(peak_memory())
        log(way, f"peak device memory {row['device_peak_gb']} GB, process {row['host_peak_gb']} GB")
        rows.append(row)
        (out / f"profile_gpu{args.tag}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
