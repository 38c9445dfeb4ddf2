"""Set trainings of the general model side by side from their results files.

Each ``train_general_model.py`` call writes a results JSON (``docs/results/general_model/``
keeps them); all score the same held-out micrographs, so their figures compare directly. This
prints, for each run, its training (steps, patches/s, the worst loss spike and where the loss
ended: :func:`cryostream.progress.loss_spike`, from ``train.loss_spike`` or the run's
``*_metrics.jsonl`` beside the JSON), then one output's PSNR per held-out condition and its
FRC with the truth by band averaged over the conditions, each against the first run.

Usage: python benchmarks/compare_general_runs.py LABEL=RESULTS.json [...] [--output raw]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from quality_common import FRC_BANDS

from cryostream.progress import loss_spike
from cryostream.runs import logged_rows


def load(spec: str) -> tuple[str, dict, dict | None]:
    """``LABEL=PATH`` → (label, results, the training's worst loss spike or None)."""
    label, _, path = spec.partition("=")
    path = Path(path)
    results = json.loads(path.read_text())
    train = results.get("train", {})
    spike = train.get("loss_spike")
    metrics = path.with_name(f"{path.stem}_metrics.jsonl")
    if spike is None and metrics.exists():
        spike = loss_spike(logged_rows(metrics))
    return label, results, spike


def spike_text(spike: dict | None) -> str:
    if spike is None:
        return "none"
    return (f"{spike['loss']:.3g} at step {spike['step']} ({spike['loss'] / spike['level']:,.0f}× its "
            f"level), ended {spike['final']:.2g}")


def table(runs: list[tuple[str, dict, dict | None]], output: str) -> str:
    labels = [label for label, _, _ in runs]
    lines = ["| run | steps | patches/s | worst loss spike |", "|---|---|---|---|"]
    for label, results, spike in runs:
        train = results.get("train", {})
        lines.append(f"| {label} | {train.get('steps', '—')} | {train.get('patches_per_second', '—')} | "
                     f"{spike_text(spike) if train else '—'} |")
    conditions = list(runs[0][1]["score"]["conditions"])
    psnr = np.array([[r["score"]["conditions"][c]["psnr"][output] for c in conditions]
                     for _, r, _ in runs])
    lines += ["", f"PSNR of `{output}` (dB; after the first run, the difference from it)", "",
              "| condition | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for j, condition in enumerate(conditions):
        cells = [f"{psnr[0, j]:.2f}"] + [f"{psnr[i, j] - psnr[0, j]:+.2f}" for i in range(1, len(runs))]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    frc = np.array([np.mean([r["score"]["conditions"][c]["frc_bands"][output] for c in conditions], axis=0)
                    for _, r, _ in runs])
    bands = [f"{lo:g}–{hi:g}" for lo, hi in FRC_BANDS]
    lines += ["", f"FRC of `{output}` with the truth by band (cycles/px), mean over the "
              f"{len(conditions)} conditions (after the first run, the difference)", "",
              "| run | " + " | ".join(bands) + " |", "|---" * (len(bands) + 1) + "|"]
    for i, label in enumerate(labels):
        cells = [f"{v:.3f}" if i == 0 else f"{v - frc[0, k]:+.3f}" for k, v in enumerate(frc[i])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RESULTS.json, the first the baseline")
    ap.add_argument("--output", default="raw", help="raw, ensemble or default (raw)")
    args = ap.parse_args(argv)
    print(table([load(spec) for spec in args.runs], args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
