"""Would the binned pass hold more of the specimen averaged over the four starts of its 2×2
blocks? A genie's answer on held-out micrographs of the general model.

The binned pass (:mod:`cryostream.denoise.binned`) bins the micrograph in 2×2 blocks that start
on pixel (0, 0). Blocks starting on (0, 1), (1, 0) or (1, 1) sum the noise differently while the
specimen is the same, half a full-size pixel apart, so the network's errors on the four binned
images differ and their mean (each brought back to its own blocks' centres) may hold more of
the specimen than one of them. For one held-out micrograph of a condition
(``train_general_model.py``'s, seed and index as there) this runs the shipped general model
as the 8-fold ensemble at full size (``E``) and on the micrograph binned from each of the four
starts, each pass of each start kept apart, then scores, for several ways of averaging them
(one start × 8 symmetries as shipped; 4 × 8; 4 × 2; 4 × 4; 2 × 4; 4 × 1), the FRC by band of
the binned output alone and of a truth-fitted mix per band of 1/128 cycles/px of the input,
``E`` and it (a genie: the most any table of weights could make of these parts).

CPU only (2 cores: about 10 minutes per micrograph of 2048², most of it the 40 network passes).
Usage::

    python benchmarks/binned_offsets_genie.py --conditions t20s-10e-white \\
        filament-40e-1.0A-far-focus --out docs/results/general_model/binned_offsets_genie_2core.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from general_model_spread import CONDITIONS, held_out_condition  # noqa: E402
from quality_common import summarise_frc  # noqa: E402

#: The 8 symmetries of the square: (quarter turns, flipped).
SYMMETRIES = [(k, flip) for k in range(4) for flip in (False, True)]


def symmetric_pass(network, image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``network`` on ``image`` turned ``k`` quarter turns (and flipped), the output turned back."""
    t = np.rot90(image, k)
    t = t[:, ::-1] if flip else t
    out = network(np.ascontiguousarray(t))
    out = out[:, ::-1] if flip else out
    return np.rot90(out, -k)


def bands(estimate: np.ndarray, truth: np.ndarray) -> list[float]:
    """The FRC with the truth averaged over the six bands (as the held-out scores)."""
    from cryostream.metrics import frc

    f, c = frc(estimate, truth)
    return summarise_frc(f, c)["bands"]


def genie_mix(parts: list[np.ndarray], truth: np.ndarray, bands_per_half: int = 64) -> np.ndarray:
    """The least-squares mix of ``parts`` against ``truth`` in each band of 1/(2·64) cycles/px."""
    spectra = [np.fft.rfft2(p - p.mean()) for p in parts]
    target = np.fft.rfft2(truth - truth.mean())
    fy = np.fft.fftfreq(truth.shape[0])[:, None]
    fx = np.fft.rfftfreq(truth.shape[1])[None, :]
    band = np.minimum((np.hypot(fy, fx) * 2 * bands_per_half).astype(int), bands_per_half)
    out = np.zeros_like(target)
    for b in range(bands_per_half + 1):
        m = band == b
        a = np.stack([s[m] for s in spectra], 1)
        w = np.linalg.lstsq(np.concatenate([a.real, a.imag]),
                            np.concatenate([target[m].real, target[m].imag]), rcond=None)[0]
        out[m] = a @ w
    return np.fft.irfft2(out, s=truth.shape) + truth.mean()


def one_condition(name: str, seed: int, shape, index: int) -> dict:
    from cryostream import SimulateConfig
    from cryostream.denoise.binned import OFFSETS, bin2, upsample2
    from cryostream.denoise.network import model_path
    from cryostream.denoise.tiling import network_pass
    from cryostream.preprocess import percentile
    from cryostream.simulate import simulate_micrograph

    run = str(model_path("general"))

    def network(image):
        return np.asarray(network_pass(run, image), np.float32)

    start = time.perf_counter()
    sim = simulate_micrograph(SimulateConfig(**held_out_condition(name, seed, shape)),
                              1000 * list(CONDITIONS).index(name) + index)
    p = np.float32(np.percentile(sim.noisy, 95))
    y, x = sim.noisy / p, sim.truth / p
    full = np.mean([symmetric_pass(network, y, k, f) for k, f in SYMMETRIES], 0)
    binned = {}  # per start, its 8 symmetric passes, each at full size
    for offset in OFFSETS:
        small = bin2(y, offset)
        scale = np.float32(percentile(small, 95.0))
        binned[offset] = [upsample2([symmetric_pass(network, small / scale, k, f) * scale],
                                    y.shape, [offset]) for k, f in SYMMETRIES]
    ways = {"1 start x 8 (shipped)": [(OFFSETS[0], s) for s in range(8)],
            "4 starts x 8": [(o, s) for o in OFFSETS for s in range(8)],
            "4 starts x 2 (turned half)": [(o, s) for o in OFFSETS for s in (0, 4)],
            "4 starts x 2 (flipped)": [(o, s) for o in OFFSETS for s in (0, 1)],
            "4 starts x 4 (turns)": [(o, s) for o in OFFSETS for s in (0, 2, 4, 6)],
            "2 starts x 4 (turns)": [(o, s) for o in (OFFSETS[0], OFFSETS[3]) for s in (0, 2, 4, 6)],
            "4 starts x 1": [(o, 0) for o in OFFSETS]}
    row = {"input": bands(y, x), "ensemble": bands(full, x), "binned": {}, "genie": {}}
    for label, members in ways.items():
        b = np.mean([binned[o][s] for o, s in members], 0)
        row["binned"][label] = bands(b, x)
        row["genie"][label] = bands(genie_mix([y, full, b], x), x)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=["t20s-10e-white"])
    ap.add_argument("--index", type=int, default=0, help="the held-out micrograph (0 … 3)")
    ap.add_argument("--shape", type=int, nargs=2, default=(2048, 2048))
    ap.add_argument("--seed", type=int, default=0, help="the general model's data seed")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    results = {"machine": platform.platform(), "index": args.index, "conditions": {}}
    for name in args.conditions:
        row = one_condition(name, args.seed, args.shape, args.index)
        results["conditions"][name] = row
        print(name, f"{row['seconds']} s", "input", row["input"], "ensemble", row["ensemble"])
        for label in row["binned"]:
            print(f"  {label:28s} binned {row['binned'][label]}  genie {row['genie'][label]}",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
