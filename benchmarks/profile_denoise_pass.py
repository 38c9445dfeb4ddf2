"""Where one micrograph's time goes in ``denoise``'s network pass, with the shipped model.

Times, medians of ``--repeats`` after a warm-up: the whole pass over a micrograph in memory
(:func:`cryostream.denoise.tiling.network_pass`), then its parts for one batch of windows of
the shape the pass uses: the copy to the device, the network on windows already there, the
copy back of the cropped cores (through pinned host memory on a GPU) against a plain copy back,
and two host-side copies of that size (filling a batch, padding the micrograph).

Usage: python benchmarks/profile_denoise_pass.py [--shape N] [--repeats 5]
(full size 7676 × 7420 by default; ``--shape 640 --repeats 1`` is a CPU smoke run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, help="a SHAPE² micrograph instead of full size")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import jax

    from cryostream.denoise.network import load_network, model_path
    from cryostream.denoise.tiling import (
        auto_tile,
        count_windows,
        default_halo,
        device_batch,
        network_pass,
        reused_windows,
        to_device,
        to_host,
    )

    run = model_path("general")
    shape = (args.shape, args.shape) if args.shape else (7676, 7420)
    image = np.random.default_rng(0).normal(1, 0.3, size=shape).astype(np.float32)

    def median(f):
        f()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return round(float(np.median(times)), 4)

    print(jax.devices()[0].device_kind, shape, flush=True)
    print("network_pass, whole micrograph", median(lambda: network_pass(run, image)), "s")
    with reused_windows():  # as denoise runs it
        print("  with reused batch buffers", median(lambda: network_pass(run, image)), "s")
    net = load_network(run)
    m, halo = net.config.multiple, default_halo(net.config)
    tile = auto_tile(shape, net.config, halo)
    side = tile + 2 * halo
    batch = device_batch(8, count_windows(shape, tile, m), side, net.compute_dtype)
    windows = np.random.default_rng(1).normal(size=(batch, side, side, 1)).astype(np.float32)
    on_device = to_device(windows)
    print(f"tile {tile}, batch {batch} windows of {side}²")
    print("copy to the device, one batch", median(lambda: jax.block_until_ready(
        to_device(windows))))
    print("network, one batch", median(lambda: jax.block_until_ready(
        net.apply(net.params, on_device))))
    cores = jax.block_until_ready(
        net.apply(net.params, on_device)[:, halo : halo + tile + m, halo : halo + tile + m, 0])
    print("copy back, one batch of cores (to_host)", median(lambda: to_host(cores)))
    print("copy back, plain", median(lambda: np.asarray(cores + 0)))
    print("host: fill one batch on one thread", median(
        lambda: np.empty_like(windows).__setitem__(slice(None), windows)))
    print("host: pad the micrograph", median(lambda: np.pad(image, halo, mode="symmetric")))


if __name__ == "__main__":
    main()
