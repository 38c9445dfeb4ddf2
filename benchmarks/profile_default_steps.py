"""Where the default recipe's steps after the network spend their time, on one full-size micrograph.

The steps (the CTF fit, its Thon-ring score and recorruption check, the CTF-shaped Wiener gain
with the learned weights and the binned pass's share) run on the CPU; on a GPU machine they
take most of ``denoise``'s time per micrograph. The network's outputs are stood in by a
smoothed copy of the micrograph (the steps' cost does not depend on their values), so this
runs without a GPU or a network pass. Prints the wall time and the ``cProfile`` functions by
cumulative time.

Usage: python benchmarks/profile_default_steps.py [--work /tmp/full] [--top 35] [--time-only]
(2 cores: about a minute, the full-size micrograph simulated once into ``--work``.)
``--time-only`` leaves the profiler out and prints the time, the check's reading and a digest
of the output, to set one checkout beside another (``PYTHONPATH=OTHER``).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/full"))
    ap.add_argument("--top", type=int, default=35, help="functions to list")
    ap.add_argument("--time-only", action="store_true", help="no profiler: the time alone")
    args = ap.parse_args(argv)

    import mrcfile
    from common import make_full_size_set
    from quality_common import known_output
    from scipy.ndimage import gaussian_filter

    from cryostream.config import DenoiseConfig
    from cryostream.denoise import Micrograph
    from cryostream.denoise.network import model_path, model_record

    run = model_path("general")
    record = model_record(run)
    image = mrcfile.read(make_full_size_set(args.work, 1)[0]).astype(np.float32)
    image /= np.percentile(image, 95)
    stand_in = gaussian_filter(image, 2).astype(np.float32)  # the network's output, as it were
    pipeline = dataclasses.replace(DenoiseConfig().for_run(record).pipeline(), ensemble=False)
    print(pipeline)
    start = time.perf_counter()
    profile = cProfile.Profile()
    if not args.time_only:
        profile.enable()
    out, found = pipeline.run(Micrograph(image, 0.6575, record, source="full"),
                              known_output(image, stand_in), stand_in)
    profile.disable()
    if args.time_only:
        import hashlib

        print(f"{time.perf_counter() - start:.1f} s, ctf_check {found.get('ctf_check')}, output "
              f"sha256 {hashlib.sha256(out.tobytes()).hexdigest()[:16]}")
        return
    import resource

    print(f"the default steps on one {image.shape[0]} × {image.shape[1]} micrograph: "
          f"{time.perf_counter() - start:.1f} s (CTF used: {found.get('ctf_used')}); "
          f"peak resident memory of the process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB, of which the "
          f"micrograph and the two stand-in outputs {3 * image.nbytes / 1e9:.2f} GB")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
