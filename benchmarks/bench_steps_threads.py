"""The default steps of several micrographs at once, as ``denoise`` runs them on a GPU machine:
do the FFT threads of micrographs in flight get in each other's way?

``denoise`` keeps half the cores' worth of micrographs in flight (threads of one process);
the steps after the network (the CTF fit, its check, the gains) run on the CPU, and each of
their FFTs asks scipy for every core (``workers=-1``), so eight micrographs on 16 cores start
up to 128 FFT threads. This times ``--in-flight`` threads each running the shipped model's
default steps on its own full-size micrograph (the network's outputs stood in by a smoothed
copy, as ``profile_default_steps.py``), with scipy's FFTs given all cores as shipped, and
given the cores divided among the micrographs in flight (scipy's functions wrapped for the
run). Prints seconds per micrograph for each, and the outputs' largest difference (the FFT's
threads split the work; the numbers should agree to rounding or exactly).

Usage: python benchmarks/bench_steps_threads.py --in-flight 8 --out OUT [--work /tmp/full]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

FFT_FUNCTIONS = ("rfft2", "irfft2", "fft2", "ifft2", "rfftn", "irfftn", "fftn", "ifftn")


@contextlib.contextmanager
def fft_workers(count: int | None):
    """scipy.fft's functions with ``workers`` set to ``count`` in every call (None: as called)."""
    import scipy.fft

    if count is None:
        yield
        return
    kept = {name: getattr(scipy.fft, name) for name in FFT_FUNCTIONS}

    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            kwargs["workers"] = count
            return fn(*args, **kwargs)
        return call

    for name, fn in kept.items():
        setattr(scipy.fft, name, wrap(fn))
    try:
        yield
    finally:
        for name, fn in kept.items():
            setattr(scipy.fft, name, fn)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in-flight", type=int, nargs="+", default=[8])
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of both ways, alternating which goes first")
    ap.add_argument("--work", type=Path, default=Path("/tmp/full"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import mrcfile
    from common import make_full_size_set
    from quality_common import known_output
    from scipy.ndimage import gaussian_filter

    from cryostream.config import DenoiseConfig
    from cryostream.denoise import Micrograph
    from cryostream.denoise.network import model_path, model_record

    record = model_record(model_path("general"))
    pipeline = dataclasses.replace(DenoiseConfig().for_run(record).pipeline(), ensemble=False)
    paths = make_full_size_set(args.work, max(args.in_flight))
    images = []
    for p in paths:
        image = mrcfile.read(p).astype(np.float32)
        image /= np.percentile(image, 95)
        images.append((image, gaussian_filter(image, 2).astype(np.float32)))

    def one(i):
        image, stand_in = images[i]
        out, found = pipeline.run(Micrograph(image, 0.6575, record, source=f"full_{i}"),
                                  known_output(image, stand_in), stand_in)
        return out, found.get("ctf_used")

    cores = os.cpu_count()
    rows, outputs = [], {}
    for n, round_ in ((n, r) for n in args.in_flight for r in range(args.repeats)):
        ways = [("all cores per FFT (shipped)", None),
                (f"cores / in flight ({max(1, cores // n)})", max(1, cores // n))]
        for label, workers in ways[::-1] if round_ % 2 else ways:
            with fft_workers(workers), concurrent.futures.ThreadPoolExecutor(n) as pool:
                start = time.perf_counter()
                results = list(pool.map(one, range(n)))
                seconds = time.perf_counter() - start
            outputs[(n, label)] = results[0][0]
            rows.append({"in_flight": n, "round": round_, "fft_workers": label,
                         "seconds": round(seconds, 1),
                         "seconds_per_micrograph": round(seconds / n, 2),
                         "ctf_used": [r[1] for r in results]})
            print(f"{n} in flight, {label}: {seconds:.1f} s, {seconds / n:.2f} s per micrograph",
                  flush=True)
        a, b = (outputs[(n, label)] for label, _ in ways)
        rows[-1]["largest_difference_between_the_two"] = float(np.abs(a - b).max())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "steps_threads.json").write_text(json.dumps(
        {"cores": cores, "shape": list(images[0][0].shape), "rows": rows}, indent=1))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
