"""How far a table of weights could take the default: mixes of its parts fitted ring by ring.

Reads ``frc_by_ring.py``'s ``frc_by_ring.json`` and ``ring_gram.npz`` (the parts' cross-powers
per ring of spatial frequency and per bin of the fitted ``CTF²``) and scores, by the FRC with
the truth per band, the least-squares mix of the parts against the truth

* ``noisy``, ``ensemble``, ``binned_ensemble`` (the micrograph, the 8-fold ensemble, the
  binned pass: the parts a table of learned weights weighs), with and without the default
  itself as a fourth, and with Topaz's output as a fifth (not a part cryostream has: it says
  whether Topaz's output holds what the parts lack);
* with its weights per band of the table (1/64 cycles/px, as ``cryostream.denoise.weights``;
  its rings pooled as they are, or each weighed alike), per band and bin of ``CTF²``, per
  ring, and per ring and bin of ``CTF²``;
* fitted on the held-out micrographs themselves (in-sample: an upper bound, which a ring's few
  thousand coefficients inflate where its correlation is near 0) and, for each micrograph,
  on the other micrographs of its condition (leave-one-out: what a table fitted elsewhere
  could keep).

Prints the tables and writes ``OUT/ring_table_bounds.json``::

    python benchmarks/ring_table_bounds.py --results DIR --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from quality_common import FRC_BANDS

TABLE_BANDS = 32  # cryostream.denoise.weights.BANDS: 1/64 cycles/px each
MIXES = {"X+E+B": ("noisy", "ensemble", "binned_ensemble"),
         "X+E+B+default": ("noisy", "ensemble", "binned_ensemble", "default_e8"),
         "X+E+B+default+Topaz": ("noisy", "ensemble", "binned_ensemble", "default_e8", "topaz")}
ALONE = ("noisy", "topaz", "ensemble", "binned_ensemble", "default_e8")


class Gram:
    """One micrograph's cross-powers: ``sums(a, b)`` is (rings, CTF² bins)."""

    def __init__(self, npz, name: str):
        self.npz, self.name = npz, name

    def sums(self, a: str, b: str) -> np.ndarray:
        key = f"{self.name}/{a}|{b}"
        return self.npz[key] if key in self.npz else self.npz[f"{self.name}/{b}|{a}"]

    def frc(self, weights: np.ndarray, parts) -> np.ndarray:
        """Per ring, the FRC with the truth of the mix ``Σ weights[..., i]·part_i``
        (``weights``: (rings, bins, parts))."""
        num = sum(weights[..., i] * self.sums(a, "truth") for i, a in enumerate(parts))
        den = sum(weights[..., i] * weights[..., j] * self.sums(a, b)
                  for i, a in enumerate(parts) for j, b in enumerate(parts))
        truth = self.sums("truth", "truth").sum(1)
        return num.sum(1) / np.sqrt(np.maximum(den.sum(1) * truth, 1e-30))


def fitted(grams: list[Gram], parts, group, spread, alike: bool = False) -> np.ndarray:
    """Least-squares weights of ``parts`` against the truth, their sums pooled over ``grams``
    and over each group of ``group`` (a map of (rings, bins) sums to groups), spread back to
    (rings, bins, parts) by ``spread``. ``alike``: each ring's sums divided by the truth's power
    in it first, so that every ring weighs alike in the fit, as in a band's mean FRC (pooled
    as they are, the rings of most power, a band's coarsest, rule it)."""
    def sums(g, p, q):
        v = g.sums(p, q)
        return v / np.maximum(g.sums("truth", "truth").sum(1, keepdims=True), 1e-30) if alike else v

    a = sum(np.stack([np.stack([group(sums(g, p, q)) for q in parts], -1) for p in parts], -2)
            for g in grams)
    y = sum(np.stack([group(sums(g, p, "truth")) for p in parts], -1) for g in grams)
    return spread((np.linalg.pinv(a, rcond=1e-10) @ y[..., None])[..., 0])


def groupings(freq: np.ndarray, bins: int) -> dict:
    """Each way of pooling: (group, spread) functions."""
    table = np.minimum((freq * 2 * TABLE_BANDS).astype(int), TABLE_BANDS - 1)
    by_band = lambda v: np.array([v[table == k].sum() for k in range(TABLE_BANDS)])  # noqa: E731
    by_band_bin = lambda v: np.array([v[table == k].sum(0) for k in range(TABLE_BANDS)])  # noqa: E731
    return {
        "table band": (by_band, lambda w: np.repeat(w[table][:, None], bins, 1)),
        "table band × CTF² bin": (by_band_bin, lambda w: w[table]),
        "ring": (lambda v: v.sum(1), lambda w: np.repeat(w[:, None], bins, 1)),
        "ring × CTF² bin": (lambda v: v, lambda w: w),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, type=Path, help="frc_by_ring.py's OUT")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    rings = json.loads((args.results / "frc_by_ring.json").read_text())
    npz = np.load(args.results / "ring_gram.npz")
    result = {"source": rings.get("device"), "bands": FRC_BANDS, "conditions": {}}
    for condition in dict.fromkeys(r["condition"] for r in rings["micrographs"]):
        mine = [r for r in rings["micrographs"] if r["condition"] == condition]
        grams = [Gram(npz, r["name"]) for r in mine]
        freq = np.asarray(mine[0]["freq"])
        bins = grams[0].sums("truth", "truth").shape[1]

        def bands(curve, freq=freq):
            return [float(curve[(freq >= a) & (freq < b)].mean()) for a, b in FRC_BANDS]

        rows = {m: np.mean([bands(g.frc(np.ones((freq.size, bins, 1)), (m,))) for g in grams], 0)
                for m in ALONE}
        for mix, parts in MIXES.items():
            for how, (group, spread) in groupings(freq, bins).items():
                for alike in (False, True) if how == "table band" else (False,):
                    label = f"{mix}, per {how}{', rings alike' if alike else ''}"
                    w = fitted(grams, parts, group, spread, alike)
                    rows[f"{label}, in-sample"] = np.mean([bands(g.frc(w, parts)) for g in grams], 0)
                    rows[f"{label}, leave-one-out"] = np.mean(
                        [bands(g.frc(fitted(grams[:k] + grams[k + 1:], parts, group, spread, alike),
                                     parts)) for k, g in enumerate(grams)], 0)
        result["conditions"][condition] = {k: np.round(v, 4).tolist() for k, v in rows.items()}
        print(f"\n{condition} ({len(grams)} micrographs)\n\n| mix | "
              + " | ".join(f"{a}–{b}" for a, b in FRC_BANDS) + " |")
        print("|---" * (len(FRC_BANDS) + 1) + "|")
        for k, v in rows.items():
            print(f"| {k} | " + " | ".join(f"{x:.4f}" for x in v) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ring_table_bounds.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
