"""Training on GPUs of less memory: ``fit``'s training, as a user runs it, on a GPU whose memory is
capped to that of a smaller card.

``fit`` trains the ``unet`` on batches of 8 patches of 1024² (bfloat16), one step of which XLA
plans at about 8.9 GB on an H100 (15.7 GB as the CPU's compiler plans it), and JAX takes 75 % of
a card by default: 8.25 GB of an 11 GB card. Each card is one process with
``XLA_PYTHON_CLIENT_MEM_FRACTION`` set so that JAX's allocator holds what it holds on that card
by default, 75 % of the card's memory, and no more (the CUDA context and libraries sit outside
it, as on a smaller card), and its own compile cache. Each trains fit's default (the shipped
general model fine-tuned on recorrupted targets, ``cryostream.fit_recipe.FINETUNE_TRAIN``) for
``--steps`` steps on the same store (fit's recipe on simulated 2048² micrographs), and records
whether it finished, what it raised, the micro-batches it took, the step's planned memory, the
patches per second after the first step, the final loss, and the peak device and host memory.
``--tree DIR`` runs the children on another checkout's ``cryostream`` (the code before a change)
as well.

Usage: python benchmarks/bench_train_memory.py --out DIR [--cards-gb 12 11 8] [--steps 60]
[--tree OLD_CHECKOUT [--tree-cards 11]] (a CPU smoke run: --shape 512 --steps 4 --cards-gb 0.05
--model unet-small)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def child(args) -> dict:
    """One capped (or uncapped) process: fit's training on the store."""
    import jax
    from common import peak_memory

    from cryostream.fit_recipe import FINETUNE_TRAIN
    from cryostream.training import train

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    logger = logging.getLogger("cryostream")
    logger.addHandler(Keep(logging.INFO))
    logger.setLevel(logging.INFO)
    config = dataclasses.replace(FINETUNE_TRAIN, steps=args.steps, eval_every=args.steps,
                                 checkpoint_every=args.steps, model=args.model,
                                 init="general" if args.model == "unet" else None)
    stats = jax.devices()[0].memory_stats() or {}
    row = {"card_gb": args.cap_gb, "tree": args.label, "device": jax.devices()[0].device_kind,
           "bytes_limit_gb": stats.get("bytes_limit", 0) / 1e9, "batch": config.batch_size,
           "steps": config.steps}
    run = Path(args.work) / f"run-{args.cap_gb}-{args.label}"
    shutil.rmtree(run, ignore_errors=True)  # trained afresh every time
    t = time.perf_counter()
    try:
        result = train(args.store, run, config, log=lambda *_: None)
        row.update(ok=True, seconds=time.perf_counter() - t, final_loss=result.final_loss,
                   patches_per_second=result.patches_per_second)
    except BaseException as e:  # noqa: BLE001 - what a user would see is the measurement
        row.update(ok=False, seconds=time.perf_counter() - t,
                   error=f"{type(e).__module__}.{type(e).__name__}", message=str(e)[:700],
                   trace=traceback.format_exc()[-1500:])
    row["notes"] = [n for n in said if "micro-batch" in n or "memory" in n][:4]
    row.update(peak_memory())
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/cryostream-train-memory")
    ap.add_argument("--count", type=int, default=4, help="simulated micrographs (4)")
    ap.add_argument("--shape", type=int, default=2048, help="their side (2048)")
    ap.add_argument("--cards-gb", type=float, nargs="+", default=[12, 11, 8],
                    help="the GPUs to emulate, by their memory (GB; JAX holds 75 %% of it); an "
                    "uncapped run comes first")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--no-uncapped", action="store_true", help="the capped cards only")
    ap.add_argument("--model", default="unet")
    ap.add_argument("--tree", help="another checkout whose cryostream the children also run")
    ap.add_argument("--tree-cards", type=float, nargs="*",
                    help="the cards on which --tree runs (default: every one, and uncapped)")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--cap-gb", type=float)
    ap.add_argument("--store")
    ap.add_argument("--label", default="this")
    args = ap.parse_args()
    from common import capped_child, capped_parent, gpu_memory_bytes

    started = capped_parent(args, child)
    if started is None:
        return
    log, out, work = started
    import cryostream
    from cryostream.fit_recipe import recipe

    store = work / "data.h5"
    if not store.exists():
        sim = cryostream.simulate(work / "sim", args.count, shape=(args.shape, args.shape),
                                  seed=0, overwrite=True)
        config = recipe((args.shape, args.shape))
        log("store:", cryostream.prepare(sim.micrographs, store, config, overwrite=True,
                                         log=lambda *_: None).summary())
    total = gpu_memory_bytes() if args.shape >= 2048 else None
    trees = [("this", None), *([("before", args.tree)] if args.tree else [])]
    rows = []
    for cap in (*([] if args.no_uncapped else [None]), *args.cards_gb):
        for label, tree in trees:
            if tree and args.tree_cards is not None and (cap or 0) not in args.tree_cards:
                continue
            env = dict(os.environ, CRYOSTREAM_COMPILE_CACHE=str(work / f"cache-{cap}-{label}"))
            env.pop("JAX_PLATFORMS")
            env.pop("CRYOSTREAM_NETWORK_MEMORY_GB", None)
            if tree:
                env["PYTHONPATH"] = str(Path(tree).resolve())
            if cap is not None and total:
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.75 * cap * 1e9 / total:.4f}"
            elif cap is not None:  # a CPU smoke run: the setting stands in for the card
                env["CRYOSTREAM_NETWORK_MEMORY_GB"] = str(0.6 * cap)
            command = [sys.executable, __file__, "--child", "--cap-gb", str(cap or 0),
                       "--store", str(store), "--work", str(work), "--steps", str(args.steps),
                       "--model", args.model, "--label", label, "--out", str(out)]
            rows.append(capped_child(command, env, {"card_gb": cap, "tree": label}, log, 800))
            (out / "train_memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
