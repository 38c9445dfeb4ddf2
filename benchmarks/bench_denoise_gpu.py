"""Whole-micrograph denoising speed on the GPU with the ``unet`` preset.

Writes a run folder with an initialised ``unet`` (speed does not depend on the weights), makes
full-size 7676 × 7420 micrographs (one simulated micrograph, rolled per file), then measures
(a) device time for one micrograph: every window through the compiled model, host→device
included, after a warm-up, and denoise's own pass over a micrograph in memory (windows cut from
it and their cores placed back, :func:`cryostream.denoise.tiling.network_pass`);
(b) end to end over the stack: read MRC → denoise → write MRC, the
network once per micrograph (``DenoiseConfig.raw``: no ensemble, no post-processing) and,
with ``--recipes raw default``, with denoise's default steps (8-fold ensemble, CTF-shaped gain;
with ``--model-file`` a model's own table of learned weights and its binned pass as well).

Usage: python benchmarks/bench_denoise_gpu.py --out DIR [--count 20] [--tiles auto 2048]
[--compute fp32|bf16] (what the network computes in; one process per precision, as the peak
device memory it records is the process's: after the single-micrograph passes, and after the
end-to-end runs, which keep several micrographs in flight)
(On a CPU: --shape 2048 --count 2 --tiles 1024 --precision fp32 --batch 1; a smoke run:
--shape 512 --count 2 --tiles 256 --precision fp32 --batch 1 --model unet-small --workers 1.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_run(run: Path, model: str, precision: str) -> None:
    """A run folder holding an initialised network: its record and one checkpoint (step 0)."""
    from cryostream.config import PrepareConfig
    from cryostream.runs import RunRecord, checkpoint_manager, save_checkpoint, save_record
    from cryostream.training import TrainConfig, create_model, create_train_state, make_optimizer

    config = TrainConfig(model=model, precision=precision)
    graphdef, state = create_train_state(create_model(config.model_config()), make_optimizer(config))
    record = RunRecord(path=run, train=config, prepare=PrepareConfig(), store="(none: untrained)")
    save_record(run, record)
    manager = checkpoint_manager(run, 1, create=True)
    save_checkpoint(manager, 0, state, {"loader": {}, "config": record.to_dict()})
    manager.wait_until_finished()
    manager.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/cryostream-denoise-bench")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--tiles", nargs="+", default=["auto"],
                    help="window cores to time; 'auto' is what cryostream.denoise picks")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--precision", default="bf16", help="the run's training precision")
    ap.add_argument("--compute", default="fp32", choices=("fp32", "bf16"),
                    help="what the network computes in (DenoiseConfig.precision)")
    ap.add_argument("--model", default="unet", help="the preset (unet-small for a CPU smoke run)")
    ap.add_argument("--model-file", type=Path, help="an exported model instead (e.g. "
                    "cryostream/data/general_model.npz): its table of learned weights, and so "
                    "its binned pass, go into the default recipe, which an initialised run has "
                    "not")
    ap.add_argument("--workers", type=int, help="micrographs in flight (default: denoise's own "
                    "choice, cryostream.denoise.workers.default_workers)")
    ap.add_argument("--shape", type=int, help="simulate micrographs of SHAPE² instead of full size")
    ap.add_argument("--recipes", nargs="+", default=["raw"], choices=("raw", "default"),
                    help="end to end with the network alone (raw) and/or with denoise's "
                         "default steps (the 8-fold ensemble and the CTF-shaped gain)")
    ap.add_argument("--default-count", type=int,
                    help="micrographs for the default recipe (default: --count)")
    args = ap.parse_args()

    import jax
    import numpy as np
    from common import make_full_size_set, peak_memory, stamped_log

    from cryostream.config import DenoiseConfig
    from cryostream.denoise import auto_tile, default_halo, denoise, load_network, tile_cores
    from cryostream.denoise.tiling import (
        device_batch,
        network_pass,
        reused_windows,
        to_device,
        to_host,
    )
    from cryostream.denoise.workers import default_workers

    log = stamped_log()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    run = args.model_file.absolute() if args.model_file else work / "run"
    if not run.exists():
        make_run(run, args.model, args.precision)
    if args.shape:
        import cryostream

        paths = list(cryostream.simulate(work / f"sim{args.shape}", args.count,
                                         shape=(args.shape, args.shape), overwrite=True).micrographs)
    else:
        paths = make_full_size_set(work / "full", args.count)
    log("device", jax.devices()[0].device_kind, f"{len(paths)} micrographs ready")
    network = load_network(str(run), args.compute)
    apply, params, model_config = network.apply, network.params, network.config
    halo = default_halo(model_config)
    import mrcfile

    image = np.asarray(mrcfile.read(paths[0]), np.float32)
    image /= np.percentile(image, 95)
    rows = []
    for choice in args.tiles:
        tile = auto_tile(image.shape, model_config) if choice == "auto" else int(choice)
        side = tile + 2 * halo
        padded = np.pad(image, halo, mode="symmetric")
        windows = [padded[wy : wy + side, wx : wx + side]
                   for wy, _, _ in tile_cores(image.shape[0], tile, model_config.multiple)
                   for wx, _, _ in tile_cores(image.shape[1], tile, model_config.multiple)]
        n = len(windows)
        batch = device_batch(args.batch, n, side, network.compute_dtype)  # as denoise
        batches = [np.stack(windows[i : i + batch] + [windows[0]] * max(0, i + batch - n))
                   [..., None] for i in range(0, n, batch)]
        t = time.perf_counter()
        jax.block_until_ready(apply(params, to_device(batches[0])))
        compile_s = time.perf_counter() - t
        times = []
        for _ in range(5):
            t = time.perf_counter()
            outs = [apply(params, to_device(b)) for b in batches]
            outs = [to_host(o) for o in outs]
            times.append(time.perf_counter() - t)
        device_s = float(np.median(times[1:]))
        log(f"tile {tile} (+{halo} halo): {n} windows of {side}², compile {compile_s:.0f} s, "
            f"one micrograph {device_s:.3f} s")
        passes = {}  # denoise's own pass: windows cut from the micrograph, cores placed back
        for buffers, scope in (("fresh", contextlib.nullcontext), ("reused", reused_windows)):
            times = []
            with scope():  # denoise reuses its batch buffers (reused_windows)
                for _ in range(5):
                    t = time.perf_counter()
                    network_pass(str(run), image, tile=None if choice == "auto" else tile,
                                 batch_size=args.batch, precision=args.compute)
                    times.append(time.perf_counter() - t)
            passes[buffers] = float(np.median(times[1:]))
        pass_s = passes["reused"]
        pass_peak = peak_memory()["device_peak_gb"]  # one micrograph at a time, before the workers
        log(f"tile {tile}: denoise's network pass over one micrograph in memory {pass_s:.3f} s "
            f"({passes['fresh']:.3f} s with fresh batch buffers)")
        ends = {}
        for recipe in args.recipes:
            options = {"tile": None if choice == "auto" else tile, "batch_size": args.batch,
                       "precision": args.compute}
            config = (DenoiseConfig.raw(**options) if recipe == "raw"
                      else DenoiseConfig(n2n_correction=False, **options))
            some = paths[: args.default_count] if recipe == "default" else paths
            t = time.perf_counter()
            denoise(run, some, work / f"out-{tile}-{recipe}", config=config, overwrite=True,
                    workers=args.workers)
            ends[recipe] = (time.perf_counter() - t, len(some))
            log(f"tile {tile}, {recipe}: end to end {len(some)} micrographs in "
                f"{ends[recipe][0]:.1f} s = {len(some) / ends[recipe][0]:.2f} micrographs/s")
        e2e = ends[args.recipes[0]][0]
        rows.append({"device": jax.devices()[0].device_kind, "shape": list(image.shape),
                     "tile": tile, "tile_choice": choice, "halo": halo,
                     "windows": n, "window_side": side, "batch": batch, "compile_s": compile_s,
                     "device_seconds_per_micrograph": device_s, "network_pass_seconds": pass_s,
                     "network_pass_fresh_buffers_seconds": passes["fresh"],
                     "end_to_end_seconds": e2e,
                     "micrographs": len(paths), "micrographs_per_second": len(paths) / e2e,
                     "end_to_end_by_recipe": {r: {"seconds": v, "micrographs": k,
                                                  "micrographs_per_second": k / v}
                                              for r, (v, k) in ends.items()},
                     "precision": args.precision, "compute": args.compute,
                     "model": str(args.model_file) if args.model_file else args.model,
                     "peak_device_gb_one_micrograph": pass_peak,
                     "workers": args.workers if args.workers is not None else default_workers(
                         image.size, jax.default_backend(),
                         count=len(paths[: args.default_count or None])),
                     "workers_given": args.workers is not None,
                     "peak_device_gb": peak_memory()["device_peak_gb"],
                     "peak_host_gb": peak_memory()["host_peak_gb"]})
    (out / "denoise_gpu.json").write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
