"""The prepare figure: throughput (MB/s of micrographs in) and peak memory over the number of
micrographs, cryostream beside the plain pipeline, from ``bench_prepare.py``'s JSON.

Usage: python benchmarks/plot_prepare.py RESULT.json FIGURE.png
"""

from __future__ import annotations

import json
import sys


def main(argv=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result, figure = argv or sys.argv[1:]
    rows = json.load(open(result))["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for kind, label in (("naive", "the reference plan, plain NumPy"), ("cryostream", "cryostream")):
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["micrographs"])
        n = [r["micrographs"] for r in mine]
        left.plot(n, [r["mb_s_in"] for r in mine], "o-", label=label)
        right.plot(n, [r["peak_rss_bytes"] / 1e9 for r in mine], "o-", label=label)
    left.set(xlabel="full-size micrographs", ylabel="MB/s of micrographs in", ylim=(0, None),
             title="throughput (2 cores)")
    right.set(xlabel="full-size micrographs", ylabel="peak memory, process tree (GB)",
              ylim=(0, 2), title="memory")
    right.axhline(1.5, color="gray", lw=0.5)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figure, dpi=90)


if __name__ == "__main__":
    main()
