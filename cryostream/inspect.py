"""Looking at a store and handing it over: ``show`` (a figure), ``show_noise`` (the measured
noise of every micrograph) and ``export_bin`` (raw files)."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from cryostream.config.checks import check_seed
from cryostream.errors import ConfigError, StoreError
from cryostream.io.paths import os_fix, output_file
from cryostream.script_guard import refuse_script_rerun
from cryostream.store import open_dataset, read_patch

__all__ = ["show", "show_noise", "export_bin"]

def _figure(out: str | os.PathLike) -> Path:
    """``out`` as a figure's path, or an error naming it, before a store is read."""
    from matplotlib.backend_bases import FigureCanvasBase

    out = output_file(out, "-o", "pairs.png")
    kinds = FigureCanvasBase.get_supported_filetypes()
    if out.suffix.lower().lstrip(".") not in kinds:
        raise ConfigError(f"{out}: not a figure type that can be written ({', '.join(kinds)}); "
                          f"give a name such as -o {out.with_suffix('.png').name}")
    return out


def show(store: str | os.PathLike, out: str | os.PathLike, *, count: int = 4, split: str = "train",
         seed: int = 0) -> Path:
    """Draw ``count`` input/target pairs of a store with their statistics into a PNG."""
    out = _figure(out)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"count={count!r} (--count): the pairs drawn must be a whole number "
                          "≥ 1")
    if split not in ("train", "test"):
        raise ConfigError(f"split={split!r} (--split): must be 'train' or 'test'")
    check_seed("seed", seed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open_dataset(store) as f:
        group = f[split]
        n = group["target"].shape[0]
        if n == 0:
            other = "test" if split == "train" else "train"
            if f[other]["target"].shape[0]:
                raise StoreError(f"{store}: the {split} split is empty; draw from the "
                                 f"{other} split: split={other!r} (--split)")
            raise StoreError(f"{store}: both splits are empty (no patches); prepare the store "
                             "again from micrographs at least one patch in size")
        if count > n:  # all of them, said: the figure has fewer pairs than asked for
            warnings.warn(f"{store}: its {split} split holds {n} patch{'es' * (n != 1)}: all "
                          f"are drawn, not {count}", UserWarning, stacklevel=2)
        picks = sorted(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
        kinds = [k for k in ("input", "target") if k in group]
        fig, axes = plt.subplots(len(picks), len(kinds), figsize=(4 * len(kinds), 4 * len(picks)),
                                 squeeze=False)
        for row, i in enumerate(picks):
            m, y, x = group["index"][i]
            name = f["micrographs/name"][m].decode()
            for col, kind in enumerate(kinds):
                patch = read_patch(store, group[kind], int(i)).astype(np.float32)
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
    return out


def show_noise(store: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Draw the noise a store measured on its micrographs into a PNG (one figure per data set).

    Panels: the radial noise spectrum of every micrograph (thin) with the micrographs' own
    power (signal and noise) for the first; the first micrograph's 2-D noise spectrum; the
    shot-noise share and the equivalent dose per micrograph. Units are the store's normalised
    intensities (percentile = 1).
    """
    out = _figure(out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open_dataset(store) as f:
        table = f["micrographs"]
        if "noise_radial" not in table:
            raise StoreError(f"{store}: holds no noise estimates (micrographs under 32 px, or "
                             "made by an older cryostream); prepare it again")
        radial, total = table["noise_radial"][:], table["noise_total_radial"][:]
        psd = table["noise_psd"][0]
        shot, dose = table["noise_shot_fraction"][:], table["noise_equivalent_dose"][:]
        fitted = table["noise_shot_fitted"][:].astype(bool)
        names = [n.decode() for n in table["name"][:]]
        pixel = float(f.attrs.get("pixel_size_angstrom", 0) or 0)
    # no pixel size in the headers: frequencies in cycles/px, not Å⁻¹ of a made-up 1 Å pixel
    unit = "1/Å" if pixel > 0 else "cycles/px; the headers give no pixel size"
    freq = np.arange(radial.shape[1]) / (2 * radial.shape[1]) / (pixel if pixel > 0 else 1.0)
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.5))
    ax[0].semilogy(freq, total[0], color="C1", label=f"{names[0]}: micrograph (signal + noise)")
    for r in radial:
        ax[0].semilogy(freq, r, "--", color="C0", lw=0.8, alpha=0.7)
    ax[0].semilogy([], [], "--", color="C0", label=f"noise, {len(radial)} micrograph(s)")
    ax[0].set_xlabel(f"spatial frequency ({unit})")
    ax[0].set_ylabel("power (variance per frequency bin)")
    ax[0].legend(fontsize=8)
    at = min(int(np.searchsorted(freq, 0.2)), len(freq) - 1)  # 0.2 Å⁻¹, where signal fades
    fall = np.median(radial[:, at] / np.maximum(radial[:, -1], 1e-30))
    ax[0].set_title(f"noise power at {freq[at]:.2f} {'/ Å' if pixel > 0 else 'cycles/px'} over "
                    f"Nyquist: {fall:.0f}× (median)")
    im = ax[1].imshow(np.log10(psd), cmap="viridis")
    fig.colorbar(im, ax=ax[1], label="log10 power")
    ax[1].set_title(f"2-D noise spectrum, {names[0]}")
    ax[1].axis("off")
    idx = np.arange(len(shot))
    ax[2].bar(idx, shot, color=np.where(fitted, "C0", "C7"))
    ax[2].set_ylim(0, 1.05)
    ax[2].set_xlabel("micrograph")
    ax[2].set_ylabel("shot-noise share (grey: not fitted, default 1)")
    twin = ax[2].twinx()
    twin.plot(idx, dose, "o", color="C3", ms=3)
    twin.set_ylabel("equivalent dose (counts / px)", color="C3")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return Path(out)


def export_bin(store: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Write ``{train,test}_{input,target}.bin`` (C order, the store's dtype) and ``bin.json``.

    The files are byte-exact copies of the store's datasets, streamed one patch at a time.
    Every file is written under a temporary name (``*.partial``) and moved into place once
    all are complete, ``bin.json`` last; on any failure (a damaged shard, a full disk) the
    temporaries are removed, the folders this call made go and an earlier export in ``outdir``
    is left as it was. An earlier ``bin.json`` goes before the first file is moved, so a folder
    with a ``bin.json`` holds one export whole. The store is checked before anything is made.

    Raises
    ------
    StoreError
        If the store is incomplete or one of its shards cannot be read (naming the shard).
    """
    refuse_script_rerun("export_bin")  # before anything is read or written
    outdir = Path(outdir)
    open_dataset(store).close()  # a store that is not there, or unfinished: nothing made
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"{outdir}: a file, not a folder; give a folder for the .bin files "
                          f"(made if needed), e.g. {outdir.with_suffix('')}_bin")
    made = [p for p in [outdir, *outdir.absolute().parents] if not p.exists()]
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / ".write-probe").write_bytes(b"")
        (outdir / ".write-probe").unlink()
    except OSError as exc:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        in_the_way = isinstance(exc, NotADirectoryError | FileExistsError)
        raise StoreError(f"{outdir}: cannot be written ({exc.strerror or exc}); "
                         + ("a file stands in its path: give another folder" if in_the_way
                            else "give a folder you can write to (not on a read-only disk)")) from None
    sidecar: dict = {"order": "C", "files": {}}
    done: list[tuple[Path, Path]] = []  # (temporary, final) of each finished file
    tmp = None
    try:
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
                            fh.write(np.ascontiguousarray(read_patch(store, dset, i)).tobytes())
                    done.append((tmp, path))
                    tmp = None
                    sidecar["files"][path.name] = {"shape": list(dset.shape),
                                                   "dtype": str(dset.dtype),
                                                   "dataset": f"{split}/{kind}"}
                sidecar["files"][f"{split}_index"] = f[split]["index"][:].tolist()
            sidecar["config"] = json.loads(f.attrs["config"])
            sidecar["micrographs"] = _micrograph_rows(f)  # what an index's first column means
        tmp = outdir / "bin.json.partial"
        tmp.write_text(json.dumps(sidecar))
        done.append((tmp, outdir / "bin.json"))
        tmp = None
        # an earlier export's bin.json goes first and the new one lands last: stopped between
        # (a kill), the folder holds no bin.json, never one describing files of two stores
        (outdir / "bin.json").unlink(missing_ok=True)
        for partial, path in done:
            os.replace(partial, path)
        written = {path.name for _, path in done}
        for split in ("train", "test"):  # an earlier export's files this one does not replace
            for kind in ("input", "target"):
                if f"{split}_{kind}.bin" not in written:
                    (outdir / f"{split}_{kind}.bin").unlink(missing_ok=True)
        made = []  # written: the folders stay
    except StoreError:  # the store's fault (a damaged shard, named with its fix), not the folder's
        raise
    except OSError as exc:  # a full disk, a file-size limit: the file it stopped at, named
        where = tmp.with_name(tmp.name.removesuffix(".partial")) if tmp is not None else \
            Path(exc.filename2 or exc.filename or outdir)  # a move: where it went
        raise StoreError(f"{where}: could not be written ({exc.strerror or exc}); "
                         + os_fix(exc, "give another folder, then run the same command again")
                         + " (an export there is whole only with its bin.json)") from None
    finally:
        for partial in [tmp, *(t for t, _ in done)]:
            if partial is not None:
                partial.unlink(missing_ok=True)
        for folder in made:  # a failure: the folders this call made go, while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
    return [path for _, path in done if path.suffix == ".bin"]


def _micrograph_rows(f) -> list[dict]:
    """The store's micrographs in row order (the first column of ``{split}_index``, beside each
    patch's top-left corner): name, source file, split and normalising percentile."""
    group = f["micrographs"]
    names, sources, splits = ([v.decode() for v in group[k][:]] for k in ("name", "source", "split"))
    return [{"row": i, "name": n, "source": s, "split": t, "percentile": float(p)}
            for i, (n, s, t, p) in enumerate(zip(names, sources, splits, group["percentile"][:],
                                                 strict=True))]
