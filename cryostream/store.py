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
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from cryostream.config import PrepareConfig, from_dict
from cryostream.errors import ConfigError, StoreError

__all__ = [
    "STORE_FORMAT",
    "shard_folder",
    "shard_name",
    "compression_options",
    "fletcher32",
    "write_shard",
    "write_master",
    "open_dataset",
    "remove_store",
    "repair_hint",
    "damaged_shard",
    "shard_of",
    "read_patch",
    "store_facts",
    "recorrupt_alpha2",
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
    and :class:`StoreError` names ``path`` and ``fix``. For small files (the master).
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


@contextlib.contextmanager
def _atomic_hdf5_file(path: Path, tmp: Path, fix: str) -> Iterator[h5py.File]:
    """Yield an HDF5 file open for writing at ``tmp``; once closed, rename it to ``path``.

    For large files written with direct chunk writes (uncompressed shards): the data go
    straight to the file, with no image in memory to copy out, and nothing is at ``path``
    until the rename. A full disk or a file-size limit fails a chunk write (``OSError``) or
    the metadata flush of the close (``RuntimeError`` from HDF5); either way ``tmp`` is closed
    and removed and :class:`StoreError` names ``path`` and ``fix``. Other errors of the body
    remove ``tmp`` and propagate as they are.
    """
    f = None
    try:
        f = h5py.File(tmp, "w")
        yield f
        try:
            f.close()
        except RuntimeError as exc:  # HDF5 could not flush its metadata (full disk)
            raise OSError(str(exc)) from None
        os.replace(tmp, path)
    except BaseException as exc:
        if f is not None:
            with contextlib.suppress(Exception):  # already closed, or the close fails again
                f.close()
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise StoreError(f"{path}: could not write it ({_os_reason(exc)}); {fix}") from None
        raise


def _os_reason(exc: OSError) -> str:
    """The system's words for a failed write (``[Errno 28] No space left on device``) rather
    than HDF5's whole error stack; HDF5's text where it names no error number."""
    if exc.errno:
        return f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
    found = re.search(r"errno = (\d+)", str(exc))
    return f"[Errno {found[1]}] {os.strerror(int(found[1]))}" if found else str(exc)


def fletcher32(chunk: bytes | memoryview) -> int:
    """HDF5's Fletcher-32 checksum of a chunk (an even number of bytes), computed with NumPy.

    HDF5 sums big-endian 16-bit words with end-around carries; this is the same value:
    each sum taken modulo 65535, with a non-zero multiple of 65535 written as 65535. The
    words are summed as they lie in memory (little-endian): a big-endian word is 256 times
    the little-endian one modulo 65535 (256² = 65536 ≡ 1), so both sums are 256 times the
    little-endian ones, and no byte is swapped.
    """
    words = np.frombuffer(chunk, dtype="<u2")
    n = words.size
    block = 4096
    head = n - n % block
    rows = words[:head].reshape(-1, block)
    # sum of (n - i)·w_i = Σ_b (n - b·block)·rowsum_b - Σ_j j·colsum_j (+ the tail), with
    # uint32 reductions (a row, or a column of fewer than 65536 rows, cannot overflow them)
    # and small int64 dot products.
    column_dtype = np.uint32 if rows.shape[0] < 1 << 16 else np.uint64
    row_sums = rows.sum(axis=1, dtype=np.uint32).astype(np.int64)
    col_sums = rows.sum(axis=0, dtype=column_dtype).astype(np.int64)
    tail = words[head:].astype(np.int64)
    weights = n - block * np.arange(row_sums.size, dtype=np.int64)
    s1 = int(row_sums.sum()) + int(tail.sum())
    s2 = int(row_sums @ weights) - int(col_sums @ np.arange(block, dtype=np.int64))
    s2 += int(tail @ (n - np.arange(head, n, dtype=np.int64)))

    def fold(total: int) -> int:  # the big-endian sum (256 × total), modulo 65535
        return 0 if total == 0 else (256 * total - 1) % 65535 + 1

    return (fold(s2) << 16) | fold(s1)


def write_shard(path: Path, patches: Sequence[np.ndarray], *, dtype: str, compression: str,
                attrs: dict) -> None:
    """Write one band's patches, each (kinds, P, P), as ``input``/``target`` datasets, atomically.

    ``kinds`` is 2 (input, target) or 1 (target); the patches may be views into a larger
    block. Uncompressed chunks are written directly with their Fletcher-32 checksum computed
    here (HDF5's own chunk path is several times slower and holds h5py's global lock),
    straight into ``NAME.partial``; compressed ones go through HDF5's filters into an image
    in memory, written out whole. Either file is renamed to ``path`` once complete. A failure
    (disk full, file size limit) removes the partial file and raises :class:`StoreError`.
    """
    n = len(patches)
    kinds, p, _ = patches[0].shape
    options = compression_options(compression)
    names = ("input", "target") if kinds == 2 else ("target",)
    fix = "free disk space (or raise the file size limit) and run the same command again"
    # uncompressed: straight to the file; compressed (small, through HDF5's chunk cache,
    # which would flush at object teardown): an image in memory written out whole
    atomic = _atomic_hdf5_file if compression == "none" else _atomic_hdf5
    with atomic(path, path.with_name(path.name + ".partial"), fix) as f:
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


def _virtual_dataset(group, name: str, shards: list[tuple[str, int]], shape: tuple,
                     dtype: str) -> None:
    """``group[name]``: the shards' ``name`` datasets end to end as one virtual dataset (NaN
    where a shard is missing), as ``h5py.VirtualLayout`` makes it but without the creation
    time HDF5 stamps into a virtual dataset by default: a store written again from the same
    inputs is the same bytes."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.array([np.nan], dtype))
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(shape)
    offset = 0
    for rel, n in shards:
        space.select_hyperslab((offset, 0, 0), (n, *shape[1:]))
        dcpl.set_virtual(space, rel.encode(), name.encode(),
                         h5py.h5s.create_simple((n, *shape[1:])))
        offset += n
    h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype), logical=1),
                    h5py.h5s.create_simple(shape), dcpl=dcpl)


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
                _virtual_dataset(group, name, shards, (total, p, p), dtype)
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
        left = [p for p in (shard_folder(path), path.with_name(f".{path.name}.partial")) if p.exists()]
        if left:  # what a prepare that stopped before writing the master leaves
            raise StoreError(f"{path}: the store was not finished (its cryostream prepare stopped "
                             f"before writing it: {left[0].name} is there without {path.name}); "
                             "run the same cryostream prepare command again: it goes on from the "
                             "finished shards and writes the store")
        raise StoreError(f"{path}: no such store; create it with cryostream prepare")
    if path.is_dir():  # a run or fit folder given for its store
        stores = sorted(str(p) for p in path.glob("*.h5")) + sorted(
            str(p) for p in path.glob("work/*.h5"))
        raise StoreError(f"{path}: a folder, not a store; pass the .h5 file cryostream prepare "
                         "(or fit, in its work folder) wrote"
                         + (f": {', '.join(stores[:3])}" if stores else ""))
    try:
        import hdf5plugin  # noqa: F401  (registers the decompression filters)
    except ImportError:  # uncompressed stores read without it
        pass
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 store ({exc}); give a store that "
                         "cryostream prepare (or fit, in its work folder) wrote (.h5)") from None
    if f.attrs.get("format") != STORE_FORMAT:
        f.close()
        raise StoreError(f"{path}: not a cryostream store (format {f.attrs.get('format')!r})")
    for split in ("train", "test"):
        for kind in ("input", "target"):
            dset = f[split].get(kind)
            if dset is None or not dset.is_virtual:
                continue
            for source in dset.virtual_sources():
                shard = path.parent / source.file_name
                if not shard.exists():
                    f.close()
                    if not shard.parent.is_dir():  # moved or copied without its folder, or renamed
                        raise StoreError(
                            f"{path}: its folder of shards {shard.parent.name}/ is not beside it; a "
                            "store is the file and that folder, by the names prepare gave them: copy "
                            "or move both together, renaming neither (or prepare the store again here)")
                    raise StoreError(f"{path}: its shard {source.file_name} is missing; "
                                     f"{repair_hint(path, shard)}")
    return f


def remove_store(output: Path) -> None:
    """Delete a store and its shards (for ``overwrite``)."""
    output.unlink(missing_ok=True)
    shutil.rmtree(shard_folder(output), ignore_errors=True)


def repair_hint(store: str | os.PathLike, shard: str | os.PathLike) -> str:
    """What to do about a missing or damaged shard of ``store``: make it again by re-running
    ``prepare`` (finished shards are reused), or prepare the whole store again."""
    store, shard = Path(store), Path(shard)
    delete, which = (f"delete {shard.name} and {store.name}", "this one") if shard.exists() \
        else (f"delete {store.name}", "the missing one")
    return (f"{delete}, then run the same `cryostream prepare` command again (the finished "
            f"shards are reused and {which} is made again), or prepare the store again with "
            "--overwrite")


def _reason(exc: BaseException | str) -> str:
    """HDF5's complaint about a shard in plain words (a string is taken as it is)."""
    if isinstance(exc, str):
        return exc
    text = str(exc)
    if "truncated file" in text or "cut short" in text:
        return "the file is cut short"
    if "filter returned failure" in text:
        return "a chunk fails its checksum or cannot be decompressed (corrupted on disk)"
    return text or type(exc).__name__


def _micrograph_of(store: Path, shard: Path) -> str | None:
    """The name of the micrograph whose shard ``shard`` is (its name starts with the uid)."""
    try:
        uid = np.uint64(int(shard.name.split("-")[0], 16)).astype(np.int64)
        with h5py.File(store, "r") as f:
            rows = np.flatnonzero(f["micrographs/uid"][:] == uid)
            if rows.size:
                name = f["micrographs/name"][int(rows[0])]
                return name.decode() if isinstance(name, bytes) else str(name)
    except (OSError, ValueError, KeyError):  # a best effort: the error stands without it
        pass
    return None


def damaged_shard(store: str | os.PathLike, shard: str | os.PathLike,
                  exc: BaseException | str, *, where: str = "") -> StoreError:
    """The :class:`StoreError` for a shard of ``store`` that cannot be read: it names the shard
    file, its micrograph, ``where`` (the dataset and patch, if known), what is wrong and the fix.

    Parameters
    ----------
    store : path-like
        The store's master file.
    shard : path-like
        The shard file (absolute, or relative to the master's folder).
    exc : BaseException or str
        What reading it raised (HDF5's ``OSError``), or what is wrong in words.
    where : str
        The dataset and patch read, e.g. ``"train/input patch 12"``.
    """
    store = Path(store)
    shard = store.parent / shard
    micrograph = _micrograph_of(store, shard)
    parts = [p for p in (f"micrograph {micrograph}" if micrograph else "", where) if p]
    detail = f" ({', '.join(parts)})" if parts else ""
    return StoreError(f"{shard}: a damaged shard of the store {store.name}{detail}: {_reason(exc)}; "
                      f"{repair_hint(store, shard)}")


def shard_of(dset: h5py.Dataset, patch: int) -> tuple[str, int] | None:
    """The shard file (relative to the master) holding patch ``patch`` of a store's virtual
    dataset, and the patch's number inside it; ``None`` for a dataset that is not virtual."""
    if not dset.is_virtual:
        return None
    for source in dset.virtual_sources():
        (start, *_), (stop, *_) = source.vspace.get_select_bounds()
        if start <= patch <= stop:
            return source.file_name, int(patch - start)
    return None


def read_patch(store: str | os.PathLike, dset: h5py.Dataset, patch: int) -> np.ndarray:
    """Patch ``patch`` of a store's dataset (``train/input`` …) as read by ``dset[patch]``;
    a shard that cannot be read is a :class:`StoreError` naming it (:func:`damaged_shard`)."""
    try:
        return dset[patch]
    except OSError as exc:
        where = f"{dset.name.lstrip('/')} patch {patch}"
        found = shard_of(dset, patch)
        if found is None:
            raise StoreError(f"{store}: {where} cannot be read ({exc}); the store is damaged: "
                             "prepare it again with --overwrite") from None
        shard, local = found
        raise damaged_shard(store, shard, exc, where=f"{where}, patch {local} of the shard") \
            from None


def store_facts(store) -> tuple[PrepareConfig, int]:
    """The store's config and the patches of its test split."""
    with open_dataset(store) as f:
        return (from_dict(PrepareConfig, json.loads(f.attrs["config"])["config"]),
                int(f["test"]["target"].shape[0]))


def recorrupt_alpha2(store, prepared: PrepareConfig) -> float:
    """The store's ``α²`` for recorrupted targets, or a :class:`ConfigError` if its noise is
    not the micrographs' own (only matched noise makes ``y − m / α`` independent of the input)."""
    if prepared.noise.model != "matched":
        raise ConfigError(f"recorrupt=True (--recorrupt) needs noise drawn like the micrographs' "
                          f"own; {store} was prepared with noise={prepared.noise.model!r}: "
                          "prepare it with noise='matched' (--noise matched)")
    return float(prepared.noise.alpha) ** 2
