"""Two independently trained networks averaged: does a second training's view lift the FRC where
the default trails Topaz?

The 8-fold ensemble averages one network's views of a micrograph under the symmetries of the
square; a second network trained from another seed errs differently again. This takes a
``train_general_model.py`` work folder whose shipped model has been scored there
(``--stages score --model-file cryostream/data/general_model.npz``, which leaves its network's
outputs in ``WORK/outputs/general_model_fp32``) and a second run trained in the same folder
(``--stages train --train-seed N``), and writes

- ``WORK/outputs/NAME_fp32``: the second network's outputs (once, the ensemble, and the binned
  pass once and as the ensemble), and
- ``WORK/outputs/NAME_mean_fp32``: the mean of each with the shipped network's,

with Topaz's outputs beside them; then scores both with ``train_general_model.py --stages score``
and the shipped model's record (its table of learned weights; the network files are read, not
computed). So the second network and the mean go through what ``cryostream denoise`` does with
no option, with the shipped table.

Usage (one GPU; the second network's passes take about a second per 2048² micrograph on an
H100)::

    python benchmarks/train_general_model.py --out OUT/shipped --work W --stages data score \\
        --model-file cryostream/data/general_model.npz --topaz TOPAZ --conditions C...
    python benchmarks/train_general_model.py --out OUT/train --work W --stages train \\
        --train-seed 1 --lr 5e-4
    python benchmarks/two_networks.py --work W --second W/run --name seed1 --out OUT \\
        --topaz TOPAZ --conditions C...
    python benchmarks/two_networks.py --summarise OUT/shipped OUT/seed1 OUT/seed1_mean \\
        --train seed1=OUT/train/general_model.json --json docs/results/general_model/RESULTS.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

KINDS = ("raw", "ensemble", "binned_raw", "binned_ensemble")
SHIPPED = Path(__file__).resolve().parent.parent / "cryostream" / "data" / "general_model.npz"


def second_outputs(work: Path, second: str, name: str, conditions: list[str], test_count: int) -> None:
    """The second network's outputs, and their means with the shipped network's."""
    import mrcfile

    from cryostream.denoise import dihedral_mean
    from cryostream.denoise.binned import binned_estimate
    from cryostream.denoise.tiling import network_pass

    shipped = work / "outputs" / "general_model_fp32"
    alone, mean = (work / "outputs" / f"{n}_fp32" for n in (name, f"{name}_mean"))
    for folder in (alone, mean):
        folder.mkdir(parents=True, exist_ok=True)
    net = lambda image: network_pass(second, image, precision="fp32")  # noqa: E731
    for condition in conditions:
        for j in range(test_count):
            stem = f"{condition}_{j}"
            if not (shipped / f"{stem}_raw.npy").exists():
                raise SystemExit(f"{shipped / f'{stem}_raw.npy'} is missing: score the shipped "
                                 f"model in {work} first (train_general_model.py --stages score)")
            noisy = mrcfile.read(work / "test" / condition / f"noisy_{j}.mrc")
            y = noisy / np.float32(np.percentile(noisy, 95))
            start = time.perf_counter()
            outputs = {"raw": net(y), "ensemble": dihedral_mean(net, y),
                       "binned_raw": binned_estimate(net, y, offsets=1),
                       "binned_ensemble": binned_estimate(net, y, ensemble=True, offsets=1)}
            for kind, image in outputs.items():
                np.save(alone / f"{stem}_{kind}.npy", image)
                first = np.load(shipped / f"{stem}_{kind}.npy").astype(np.float64)
                np.save(mean / f"{stem}_{kind}.npy", ((first + image) / 2).astype(np.float32))
            topaz = shipped / f"{stem}_topaz.npy"
            for folder in (alone, mean) if topaz.exists() else ():
                shutil.copy(topaz, folder / topaz.name)
            print(f"{stem}: {time.perf_counter() - start:.1f} s", flush=True)


def score(args) -> None:
    """Both output folders through the score stage, with the shipped model's record."""
    import train_general_model

    for label in (args.name, f"{args.name}_mean"):
        model = args.work / f"{label}.npz"  # named so the score stage reads outputs/LABEL_fp32
        shutil.copy(SHIPPED, model)
        argv = ["--out", str(args.out / label), "--work", str(args.work), "--stages", "score",
                "--model-file", str(model), "--conditions", *args.conditions]
        if args.topaz:
            argv += ["--topaz", args.topaz]
        if args.smoke:
            argv.append("--smoke")
        train_general_model.main(argv)


def summarise(folders: list[Path], path: Path, trainings: list[str] = ()) -> None:
    """The score stage's results of each folder (a ``general_model.json``) in one file, with
    the trainings' records (``LABEL=RESULTS.json`` of each ``--stages train`` call: a scoring
    call's own ``train`` entry is the work folder's last training, not its model's), and the
    default's PSNR and FRC by band per condition as a table."""
    runs = {f.name: json.loads((f / "general_model.json").read_text()) for f in folders}
    first = next(iter(runs.values()))["score"]["conditions"]
    trained = {}
    for spec in trainings:
        label, _, source = spec.partition("=")
        record = json.loads(Path(source).read_text())
        trained[label] = {"arguments": record["arguments"], "train": record["train"],
                          "stage_seconds": {k: v for k, v in (record.get("stage_seconds") or {})
                                            .items() if k in record["arguments"]["stages"]}}
    summary = {"machine": next(iter(runs.values()))["machine"],
               "device": next(iter(runs.values()))["score"]["device"], "trainings": trained,
               "runs": {k: {"arguments": v["arguments"], "conditions": v["score"]["conditions"]}
                        for k, v in runs.items()}}
    path.write_text(json.dumps(summary, indent=1))
    lines = ["| condition | output | PSNR (dB) | " + " | ".join(
        ["0–0.01", "0.01–0.03", "0.03–0.06", "0.06–0.125", "0.125–0.25", "0.25–0.5"]) + " |",
        "|---|---|---|" + "---|" * 6]
    for condition, scores in first.items():
        rows = [(m, scores) for m in ("noisy", "topaz", "wiener") if m in scores["psnr"]]
        rows += [(f"{k}: {m}", v["score"]["conditions"][condition]) for k, v in runs.items()
                 for m in ("ensemble", "default")]
        for label, s in rows:
            method = label.split(": ")[-1]
            bands = " | ".join(f"{b:.4f}" for b in s["frc_bands"][method])
            lines.append(f"| {condition} | {label} | {s['psnr'][method]:.3f} | {bands} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="train_general_model.py's work folder")
    ap.add_argument("--second", help="the second network: a run folder or an exported .npz")
    ap.add_argument("--name", default="second", help="its outputs' name (default second)")
    ap.add_argument("--out", type=Path, help="results folder (one per scored output)")
    ap.add_argument("--topaz", help="the folder Topaz-Denoise imports from (its outputs are read)")
    ap.add_argument("--conditions", nargs="+", default=[])
    ap.add_argument("--test-count", type=int, help="held-out micrographs per condition (4; 1 "
                    "with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="WORK is a --smoke work folder (a CPU check)")
    ap.add_argument("--summarise", nargs="+", type=Path, metavar="FOLDER",
                    help="results folders to set side by side (no network): with --json")
    ap.add_argument("--json", type=Path, help="the summary file (a .md table beside it)")
    ap.add_argument("--train", nargs="*", default=[], metavar="LABEL=RESULTS",
                    help="with --summarise: the second networks' training records")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.summarise:
        summarise(args.summarise, args.json or Path("two_networks.json"), args.train)
        return 0
    if not (args.work and args.second and args.out and args.conditions):
        ap.error("--work, --second, --out and --conditions are needed (or --summarise)")
    args.test_count = args.test_count or (1 if args.smoke else 4)
    second_outputs(args.work, args.second, args.name, args.conditions, args.test_count)
    score(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
