"""Looking at a store and handing it over: ``show`` (a figure) and ``export_bin`` (raw files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cryostream.errors import StoreError
from cryostream.store import open_dataset

__all__ = ["show", "export_bin"]


def show(store: str | os.PathLike, out: str | os.PathLike, *, count: int = 4, split: str = "train",
         seed: int = 0) -> Path:
    """Draw ``count`` input/target pairs of a store with their statistics into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open_dataset(store) as f:
        group = f[split]
        n = group["target"].shape[0]
        if n == 0:
            raise StoreError(f"{store}: the {split} split is empty; try split='test'")
        picks = sorted(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
        kinds = [k for k in ("input", "target") if k in group]
        fig, axes = plt.subplots(len(picks), len(kinds), figsize=(4 * len(kinds), 4 * len(picks)),
                                 squeeze=False)
        for row, i in enumerate(picks):
            m, y, x = group["index"][i]
            name = f["micrographs/name"][m].decode()
            for col, kind in enumerate(kinds):
                patch = group[kind][i].astype(np.float32)
                ax = axes[row, col]
                lo, hi = np.percentile(patch, [1, 99])
                ax.imshow(patch, cmap="gray", vmin=lo, vmax=hi)
                ax.set_title(f"{kind} · {name} y={y} x={x}\nmean {patch.mean():.3f} std "
                             f"{patch.std():.3f} min {patch.min():.2f} max {patch.max():.2f}",
                             fontsize=8)
                ax.axis("off")
        fig.tight_layout()
        fig.savefig(out, dpi=72)
        plt.close(fig)
    return Path(out)


def export_bin(store: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Write ``{train,test}_{input,target}.bin`` (C order, the store's dtype) and ``bin.json``.

    The files are byte-exact copies of the store's datasets, streamed one patch at a time.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written, sidecar = [], {"order": "C", "files": {}}
    with open_dataset(store) as f:
        for split in ("train", "test"):
            for kind in ("input", "target"):
                if kind not in f[split]:
                    continue
                dset = f[split][kind]
                path = outdir / f"{split}_{kind}.bin"
                tmp = path.with_name(path.name + ".partial")
                with open(tmp, "wb") as fh:
                    for i in range(dset.shape[0]):
                        fh.write(np.ascontiguousarray(dset[i]).tobytes())
                os.replace(tmp, path)
                written.append(path)
                sidecar["files"][path.name] = {"shape": list(dset.shape), "dtype": str(dset.dtype),
                                               "dataset": f"{split}/{kind}"}
            sidecar["files"][f"{split}_index"] = f[split]["index"][:].tolist()
        sidecar["config"] = json.loads(f.attrs["config"])
    (outdir / "bin.json").write_text(json.dumps(sidecar))
    return written
