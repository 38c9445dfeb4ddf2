"""The peer: the reference plan done plainly (one micrograph at a time in NumPy, float32 .bin).

For each micrograph: read it whole, normalise (95th percentile -> 1.0), cut 1024² patches at
stride 512, add Poisson(10)/10 + Gaussian(0.05) noise, append float32 patches to
train_input.bin / train_target.bin. Prints one JSON line: seconds, bytes read and written.
Usage: python naive_prepare.py OUTDIR MRC...
"""

import argparse
import json
import os
import time

import mrcfile
import numpy as np

P, S = 1024, 512


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("paths", nargs="+", metavar="MRC")
    args = ap.parse_args(argv)
    out, paths = args.out, args.paths
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    nread = nwritten = 0
    with open(f"{out}/train_input.bin", "wb") as fin, open(f"{out}/train_target.bin", "wb") as ftg:
        for k, p in enumerate(paths):
            img = mrcfile.read(p).astype(np.float32)
            nread += os.path.getsize(p)
            img /= np.percentile(img, 95)
            rng = np.random.default_rng(k)
            for y in range(0, img.shape[0] - P + 1, S):
                for x in range(0, img.shape[1] - P + 1, S):
                    tgt = np.ascontiguousarray(img[y : y + P, x : x + P])
                    noisy = rng.poisson(np.clip(tgt, 0, None) * 10).astype(np.float32) / 10
                    noisy += rng.normal(0, 0.05, tgt.shape).astype(np.float32)
                    fin.write(noisy.tobytes())
                    ftg.write(tgt.tobytes())
                    nwritten += 2 * tgt.nbytes
    print(json.dumps({"seconds": time.perf_counter() - t0, "bytes_in": nread,
                      "bytes_out": nwritten}))


if __name__ == "__main__":
    main()
