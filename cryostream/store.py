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

import contextlib
import io
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
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
    if compression != "none":
        import hdf5plugin  # only compressed stores need the filter plugins
    if compression == "lz4":
        options.update(hdf5plugin.Bitshuffle(cname="lz4"))
    elif compression == "zstd":
        options.update(hdf5plugin.Zstd(clevel=3))
    return options


@contextlib.contextmanager
def _atomic_hdf5(path: Path, tmp: Path, fix: str) -> Iterator[h5py.File]:
    """Yield an in-memory HDF5 file; on exit write it to ``tmp`` and rename it to ``path``.

    Writing the finished image with plain file I/O makes a full disk or a file-size limit a
    clean ``OSError`` here (never a failure inside HDF5's close); the partial file is removed
    and :class:`StoreError` names ``path`` and ``fix``.
    """
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        yield f
    try:
        with open(tmp, "wb") as fh:
            fh.write(image.getbuffer())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: could not write it ({exc}); {fix}") from None


def fletcher32(chunk: bytes | memoryview) -> int:
    """HDF5's Fletcher-32 checksum of a chunk (an even number of bytes), computed with NumPy.

    HDF5 sums big-endian 16-bit words with end-around carries; this is the same value:
    each sum taken modulo 65535, with a non-zero multiple of 65535 written as 65535.
    """
    words = np.frombuffer(chunk, dtype=">u2")
    n = words.size
    block = 4096
    head = n - n % block
    rows = words[:head].reshape(-1, block)
    # sum of (n - i)·w_i = Σ_b (n - b·block)·rowsum_b - Σ_j j·colsum_j (+ the tail),
    # with uint32 reductions (no large temporaries) and small int64 dot products.
    row_sums = rows.sum(axis=1, dtype=np.uint32).astype(np.int64)
    col_sums = rows.sum(axis=0, dtype=np.uint64).astype(np.int64)
    tail = words[head:].astype(np.int64)
    weights = n - block * np.arange(row_sums.size, dtype=np.int64)
    s1 = int(row_sums.sum()) + int(tail.sum())
    s2 = int(row_sums @ weights) - int(col_sums @ np.arange(block, dtype=np.int64))
    s2 += int(tail @ (n - np.arange(head, n, dtype=np.int64)))

    def fold(total: int) -> int:
        return 0 if total == 0 else (total - 1) % 65535 + 1

    return (fold(s2) << 16) | fold(s1)


def write_shard(path: Path, patches: Sequence[np.ndarray], *, dtype: str, compression: str,
                attrs: dict) -> None:
    """Write one band's patches, each (kinds, P, P), as ``input``/``target`` datasets, atomically.

    ``kinds`` is 2 (input, target) or 1 (target); the patches may be views into a larger
    block. Uncompressed chunks are written directly with their Fletcher-32 checksum computed
    here (HDF5's own chunk path is several times slower and holds h5py's global lock);
    compressed ones go through HDF5's filters. A failure (disk full, file size limit)
    removes the partial file and raises :class:`StoreError`.
    """
    n = len(patches)
    kinds, p, _ = patches[0].shape
    options = compression_options(compression)
    names = ("input", "target") if kinds == 2 else ("target",)
    fix = "free disk space (or raise the file size limit) and run the same command again"
    with _atomic_hdf5(path, path.with_name(path.name + ".partial"), fix) as f:
        for k, name in enumerate(names):
            if compression == "none":
                dset = f.create_dataset(name, shape=(n, p, p), dtype=dtype, chunks=(1, p, p),
                                        **options)
                nbytes = p * p * np.dtype(dtype).itemsize
                buf = np.empty(nbytes + 4, dtype=np.uint8)  # one chunk + its checksum, reused
                for i, patch in enumerate(patches):
                    buf[:nbytes].view(dtype).reshape(p, p)[...] = patch[k]
                    buf[nbytes:] = np.frombuffer(
                        fletcher32(buf[:nbytes]).to_bytes(4, "little"), dtype=np.uint8
                    )
                    dset.id.write_direct_chunk((i, 0, 0), buf, filter_mask=0)
            else:
                data = np.stack([patch[k] for patch in patches]).astype(dtype, copy=False)
                f.create_dataset(name, data=data, chunks=(1, p, p), **options)
        for key, value in attrs.items():
            f.attrs[key] = value


def write_master(output: Path, *, splits: dict[str, list[tuple[str, int]]],
                 index: dict[str, np.ndarray], micrographs: dict[str, np.ndarray],
                 patch_size: int, dtype: str, kinds: tuple[str, ...], attrs: dict) -> None:
    """Write the master file of virtual datasets over the shards, atomically.

    ``splits`` maps ``"train"``/``"test"`` to ``(shard path relative to the master, patches)``
    in order; ``index`` to the (n, 3) patch index of each split.
    """
    p = patch_size
    fix = "free disk space and run the same command again: the finished shards are kept"
    with _atomic_hdf5(output, output.with_name("." + output.name + ".partial"), fix) as f:
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
                table.create_dataset(key, data=values.astype(object), dtype=h5py.string_dtype())
            else:
                table.create_dataset(key, data=values)
        f.attrs["format"] = STORE_FORMAT
        for key, value in attrs.items():
            f.attrs[key] = value


def open_dataset(path: str | os.PathLike) -> h5py.File:
    """Open a store read-only after checking it is complete (format and every shard present).

    Returns the open ``h5py.File``; use it as a context manager.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store; create it with cryostream prepare")
    try:
        import hdf5plugin  # noqa: F401  (registers the decompression filters)
    except ImportError:  # uncompressed stores read without it
        pass
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
