"""The H200 speed figure of docs/benchmarks.md: training throughput with peak device memory,
the first compile of the training step, and whole micrographs denoised end to end after each
change to ``denoise``'s copies, from ``docs/results/h200_speed/``.

Usage: python benchmarks/plot_gpu_speed.py [RESULTS_DIR] [OUT.png]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: The ``unet`` computed plainly, measured on an H200 at 8cc5d08 (before the pixel phases).
BEFORE = {"patches_per_s": 103.0, "compile_s": 134.0}

#: ``bench_denoise_gpu.py`` results after each change to denoise's copies, in order.
DENOISE = [("host side\n(12-01)", "denoise_gpu_call3.json"),
           ("explicit\ncopies", "denoise_gpu_explicit_copy.json"),
           ("pinned\ncopy back", "denoise_gpu_pinned.json"),
           ("windows cut\non 8 threads", "denoise_gpu_threaded_windows.json"),
           ("rows split\nevenly", "denoise_gpu_rows_split.json"),
           ("reused batch\nbuffers", "denoise_gpu_reused_buffers.json")]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    here = Path(__file__).resolve().parent.parent
    results = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "docs/results/h200_speed"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "docs/figures/h200_speed.png"
    train = json.loads((results / "train_gpu_call2.json").read_text())[0]
    cold = [json.loads((results / f).read_text())[0]
            for f in ("profile_cold_call1.json", "profile_cold_call2.json")]
    shipped = json.loads((results / "profile_shipped_autotune_call3.json").read_text())[0]
    warm = json.loads((results / "profile_warm_call1.json").read_text())[0]
    topaz = {f"Topaz {m.group(1).replace('channels_last', '')}\n"
             f"{'bf16' if m.group(2) == 'True' else 'fp32'}": float(m.group(3))
             for m in re.finditer(r"train UDenoiseNet (.*?) bs=8 \S+ bf16-autocast=(\w+): "
                                  r"[\d.]+ ms/step, ([\d.]+) patches/s",
                                  (results / "topaz_anchor_call2.log").read_text())}

    bars = [(k, v, None) for k, v in topaz.items()]
    bars += [("cryostream before\n(8cc5d08)", BEFORE["patches_per_s"], None),
             ("cryostream\nfixed batch", train["patches_per_s_fixed"], cold[1]["device_peak_gb"]),
             ("cryostream\nfrom the store", train["patches_per_s_loader"], None)]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.5),
                                  gridspec_kw={"width_ratios": [3, 2, 2]})
    colours = ["#999"] * len(topaz) + ["#c9a"] + ["#36c"] * 2
    a.bar(range(len(bars)), [v for _, v, _ in bars], color=colours)
    for i, (_, v, gb) in enumerate(bars):
        a.text(i, v + 3, f"{v:.0f}" + (f"\n(device peak {gb:.0f} GB)" if gb else ""), ha="center",
               fontsize=8)
    a.axhline(200, ls="--", c="k", lw=0.8)
    a.text(-0.4, 204, "target 200", ha="left", fontsize=8)
    a.set_ylim(0, 250)
    a.set_xticks(range(len(bars)), [n for n, _, _ in bars], fontsize=7)
    a.set_ylabel("patches / s (1024², batch 8)")
    a.set_title("training step, NVIDIA H200")
    steps = [("before\n(8cc5d08)", BEFORE["compile_s"]),
             ("empty cache\n(call 1)", cold[0]["train_compile_s"]),
             ("empty cache\n(call 2)", cold[1]["train_compile_s"]),
             ("shipped\nautotuning", shipped["train_compile_s"]),
             ("second run", warm["train_compile_s"])]
    b.bar(range(len(steps)), [v for _, v in steps], color=["#c9a", "#999", "#999", "#36c", "#36c"])
    for i, (_, v) in enumerate(steps):
        b.text(i, v + 2, f"{v:.1f} s", ha="center", fontsize=8)
    b.axhline(30, ls="--", c="k", lw=0.8)
    b.text(4.4, 32, "target 30 s", ha="right", fontsize=8)
    b.set_xticks(range(len(steps)), [n for n, _ in steps], fontsize=7)
    b.set_ylabel("seconds")
    b.set_title("first compile of the training step")
    ends = [(label, json.loads((results / f).read_text())[0]) for label, f in DENOISE]
    c.bar(range(len(ends)), [r["micrographs_per_second"] for _, r in ends],
          color=["#999"] * (len(ends) - 1) + ["#36c"])
    for i, (_, r) in enumerate(ends):
        passed = r.get("network_pass_seconds")
        c.text(i, r["micrographs_per_second"] + 0.05, f"{r['micrographs_per_second']:.2f}/s"
               + (f"\npass {passed:.3f} s" if passed else ""), ha="center", fontsize=7)
    c.axhline(2.5, ls="--", c="k", lw=0.8)
    c.text(-0.4, 2.55, "target 2.5/s", ha="left", fontsize=8)
    c.set_ylim(0, 3.6)
    c.set_xticks(range(len(ends)), [n for n, _ in ends], fontsize=7)
    c.set_ylabel("micrographs / s (7676 × 7420, 20)")
    c.set_title("denoise end to end, network alone")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
