"""The HDF5 store: one shard file per (micrograph, band), and a master file of virtual datasets.

Layout of ``DATA.h5`` (the master) — see docs/guide/store.md::

    train/input   (n, P, P)  virtual, absent with on-device noise
    train/target  (n, P, P)  virtual
    train/index   (n, 3) int64: micrograph row, y, x of each patch (pixels)
    test/...      the same for the held-out micrographs
    micrographs/name, uid, source, split, percentile
    attrs: format, cryostream_version, config (JSON), noise (JSON), sources, skipped

Shards live in ``DATA.h5.shards/``; every dataset in them is chunked one patch per chunk with
a Fletcher-32 checksum, so a corrupted chunk fails to read instead of feeding training. Each
shard and the master are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from cryostream.errors import StoreError

__all__ = [
    "STORE_FORMAT",
    "shard_folder",
    "shard_name",
    "compression_options",
    "write_shard",
    "write_master",
    "open_dataset",
    "remove_store",
]

STORE_FORMAT = "cryostream-store/1"


def shard_folder(output: Path) -> Path:
    """Where the shards of the store ``output`` live."""
    return output.with_name(output.name + ".shards")


def shard_name(uid: int, band: int) -> str:
    """File name of the shard of micrograph ``uid``, band ``band``."""
    return f"{uid:016x}-{band:03d}.h5"


def compression_options(compression: str) -> dict:
    """h5py ``create_dataset`` keywords for a compression choice (always with checksums)."""
    options: dict = {"fletcher32": True}
    if compression == "lz4":
        options.update(hdf5plugin.Bitshuffle(cname="lz4"))
    elif compression == "zstd":
        options.update(hdf5plugin.Zstd(clevel=3))
    return options


def write_shard(path: Path, patches: np.ndarray, *, dtype: str, compression: str,
                attrs: dict) -> None:
    """Write one band's patches (n, kinds, P, P) as ``input``/``target`` datasets, atomically.

    ``kinds`` is 2 (input, target) or 1 (target). A failure (disk full, file size limit)
    removes the partial file and raises :class:`StoreError`.
    """
    tmp = path.with_name(path.name + ".partial")
    n, kinds, p, _ = patches.shape
    options = compression_options(compression)
    names = ("input", "target") if kinds == 2 else ("target",)
    # Built in memory, then written with plain file I/O: a full disk then raises a clean
    # OSError here instead of failing inside HDF5's close.
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        for k, name in enumerate(names):
            f.create_dataset(name, data=patches[:, k].astype(dtype), chunks=(1, p, p), **options)
        for key, value in attrs.items():
            f.attrs[key] = value
    try:
        with open(tmp, "wb") as fh:
            fh.write(image.getbuffer())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(
            f"{path}: could not write the shard ({exc}); free disk space (or raise the file size "
            "limit) and run the same command again: finished work is kept"
        ) from None


def write_master(output: Path, *, splits: dict[str, list[tuple[str, int]]],
                 index: dict[str, np.ndarray], micrographs: dict[str, np.ndarray],
                 patch_size: int, dtype: str, kinds: tuple[str, ...], attrs: dict) -> None:
    """Write the master file of virtual datasets over the shards, atomically.

    ``splits`` maps ``"train"``/``"test"`` to ``(shard path relative to the master, patches)``
    in order; ``index`` to the (n, 3) patch index of each split.
    """
    tmp = output.with_name("." + output.name + ".partial")
    p = patch_size
    try:
        with h5py.File(tmp, "w") as f:
            for split, shards in splits.items():
                group = f.create_group(split)
                total = sum(n for _, n in shards)
                for name in kinds:
                    if total == 0:
                        group.create_dataset(name, shape=(0, p, p), dtype=dtype)
                        continue
                    layout = h5py.VirtualLayout(shape=(total, p, p), dtype=dtype)
                    offset = 0
                    for rel, n in shards:
                        layout[offset : offset + n] = h5py.VirtualSource(rel, name, shape=(n, p, p))
                        offset += n
                    group.create_virtual_dataset(name, layout, fillvalue=np.nan)
                group.create_dataset("index", data=index[split].astype(np.int64).reshape(-1, 3))
            table = f.create_group("micrographs")
            for key, values in micrographs.items():
                if values.dtype.kind in "UO":
                    table.create_dataset(key, data=values.astype(object),
                                         dtype=h5py.string_dtype())
                else:
                    table.create_dataset(key, data=values)
            f.attrs["format"] = STORE_FORMAT
            for key, value in attrs.items():
                f.attrs[key] = value
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(
            f"{output}: could not write the store ({exc}); free disk space and run the same "
            "command again: the finished shards are kept"
        ) from None


def open_dataset(path: str | os.PathLike) -> h5py.File:
    """Open a store read-only after checking it is complete (format and every shard present).

    Returns the open ``h5py.File``; use it as a context manager.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store; create it with cryostream prepare")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 store ({exc})") from None
    if f.attrs.get("format") != STORE_FORMAT:
        f.close()
        raise StoreError(f"{path}: not a cryostream store (format {f.attrs.get('format')!r})")
    for split in ("train", "test"):
        dset = f[split]["target"]
        if dset.is_virtual:
            for source in dset.virtual_sources():
                if not (path.parent / source.file_name).exists():
                    f.close()
                    raise StoreError(
                        f"{path}: its shard {source.file_name} is missing; re-run prepare"
                    )
    return f


def remove_store(output: Path) -> None:
    """Delete a store and its shards (for ``overwrite``)."""
    output.unlink(missing_ok=True)
    shutil.rmtree(shard_folder(output), ignore_errors=True)


def read_json_attr(f: h5py.File, key: str) -> dict:
    """A JSON attribute of a store as a dict."""
    return json.loads(f.attrs[key])
