"""The user's training recipe at two peak learning rates: how often a training spikes, and what
the lower rate costs.

On the general model's recipe (paired store, 4000–18000 steps) five trainings of ten at the
default peak ``--lr`` of 1e-3 spiked and came back worse, and none of five at 5e-4 did. Whether
the default itself should be lower depends on the recipe a user trains from scratch: a
matched-noise store of their own micrographs and 3000 steps (the matched-noise page's recipe).
This runs it, as a user types it, at each rate and seed:

1. ``cryostream simulate WORK/sim --count N --shape S S --dose D`` (once; the store too);
2. ``cryostream prepare WORK/sim/micrographs --noise matched --alpha 1 --noise-mode on-device
   --patch P --stride P/2 --test-fraction F``;
3. ``cryostream train --model unet --residual --steps 3000 --batch-size 16 --lr RATE --seed SEED``;
4. ``cryostream evaluate RUN --truth WORK/sim``: the default recipe's PSNR on the held-out
   micrographs against their ground truth, beside the oracle Wiener filter's,

and writes one ``OUT/rate_RATE_seed_SEED.json`` per training (so a call cut short keeps what
finished): the largest spike of its logged losses (:func:`cryostream.progress.loss_spike`, what
``train`` warns of), its final loss, its last test-split evaluation, the held-out PSNRs and the
wall time (the first training of a shape includes its compile). ``--summarise`` gathers them
into one JSON and a Markdown table.

Usage (one GPU; about 70 s a training on an H100 once compiled)::

    python benchmarks/train_rate_gpu.py OUT --work W --rates 1e-3 5e-4 --seeds 0 1 2
    python benchmarks/train_rate_gpu.py --summarise OUT --json F.json --md F.md

CPU smoke (a minute): ``OUT --work W --size 512 --count 4 --patch 128 --model unet-small
--steps 20 --batch 4 --test-fraction 0.25 --rates 1e-3 --seeds 0``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from cryostream.progress import loss_spike
from cryostream.runs import last_evaluation, logged_rows

#: The rows of ``evaluate``'s report compared, by their names there.
SCORED = ("noisy", "oracle Wiener", "model, default recipe")


def cryostream(*args) -> float:
    """Run ``cryostream ARGS`` as a user would; its wall time in seconds. A failure stops here."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cryostream", *map(str, args)], check=True)
    return time.perf_counter() - start


def data(work: Path, a) -> None:
    """The simulated micrographs and their matched-noise store, once."""
    if (work / "store.h5").is_file():
        return
    cryostream("simulate", work / "sim", "--count", a.count, "--shape", a.size, a.size,
               "--dose", a.dose, "--quiet")
    cryostream("prepare", work / "sim" / "micrographs", "-o", work / "store.h5", "--noise",
               "matched", "--alpha", 1, "--noise-mode", "on-device", "--patch", a.patch,
               "--stride", a.patch // 2, "--test-fraction", a.test_fraction, "--quiet")


def one_training(work: Path, out: Path, rate: str, seed: int, a) -> dict:
    """Train and score one (rate, seed); its record (kept in WORK too, so that a second call
    on the same machine goes on where the first stopped)."""
    run, kept = work / f"run_{rate}_{seed}", work / f"rate_{rate}_seed_{seed}.json"
    if kept.is_file():
        (out / kept.name).write_text(kept.read_text())
        return json.loads(kept.read_text())
    resumed = run.is_dir()  # trained by an earlier call that stopped before its record
    seconds = cryostream("train", work / "store.h5", "-o", run, "--model", a.model, "--residual",
                         "--steps", a.steps, "--batch-size", a.batch, "--lr", rate,
                         "--seed", seed, "--quiet", *(["--resume"] if run.is_dir() else []))
    cryostream("evaluate", run, "--truth", work / "sim", "-o", work / f"eval_{rate}_{seed}",
               "--micrographs", a.held_out, "--quiet")
    report = json.loads((work / f"eval_{rate}_{seed}" / "report.json").read_text())
    rows = logged_rows(run / "metrics.jsonl")
    record = {
        "rate": float(rate), "seed": seed, "steps": a.steps, "batch": a.batch, "model": a.model,
        "train_seconds": seconds, "resumed": resumed, "spike": loss_spike(rows),
        "final_loss": rows[-1]["loss"], "test": last_evaluation(run),
        "held_out": {name: report["truth_mean"][name]["psnr"] for name in SCORED},
        "held_out_micrographs": [m["micrograph"] for m in report["simulated"]],
    }
    for folder in (out, work):
        (folder / kept.name).write_text(json.dumps(record, indent=2))
    return record


def summarise(outs: list[Path], json_path: str, md_path: str) -> None:
    """One JSON of every training's record, and the table."""
    records = sorted((json.loads(p.read_text()) for o in outs for p in sorted(o.glob("rate_*.json"))),
                     key=lambda r: (-r["rate"], r["seed"]))
    lines = ["| peak rate | seed | largest spike (step: loss, × level) | final loss | test PSNR, "
             "network (dB) | held-out PSNR, default (dB) | over the oracle Wiener (dB) | "
             "training (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        s = r["spike"]
        spike = "none" if s is None else f"{s['step']}: {s['loss']:.3g}, {s['loss'] / s['level']:,.0f}×"
        held = r["held_out"]
        lines.append(f"| {r['rate']:g} | {r['seed']} | {spike} | {r['final_loss']:.5f} | "
                     f"{r['test'].get('psnr', float('nan')):.2f} | "
                     f"{held['model, default recipe']:.2f} | "
                     f"{held['model, default recipe'] - held['oracle Wiener']:+.2f} | "
                     + ("trained in an earlier call |" if r.get("resumed")
                        else f"{r['train_seconds']:.0f} |"))
    Path(json_path).write_text(json.dumps(records, indent=2))
    Path(md_path).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--work", default="/tmp/train_rate")
    ap.add_argument("--rates", nargs="+", default=["1e-3", "5e-4"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--count", type=int, default=16, help="simulated micrographs")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--dose", type=float, default=20.0)
    ap.add_argument("--patch", type=int, default=512)
    ap.add_argument("--test-fraction", type=float, default=0.125)
    ap.add_argument("--model", default="unet")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--held-out", type=int, default=2, help="held-out micrographs scored")
    ap.add_argument("--summarise", nargs="+", metavar="OUT")
    ap.add_argument("--json")
    ap.add_argument("--md")
    a = ap.parse_args()
    if a.summarise:
        summarise([Path(o) for o in a.summarise], a.json, a.md)
        return
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data(work, a)
    for rate in a.rates:
        for seed in a.seeds:
            r = one_training(work, out, rate, seed, a)
            print(f"rate {rate} seed {seed}: spike {r['spike']}, final {r['final_loss']:.5f}, "
                  f"held-out {r['held_out']}, {r['train_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
