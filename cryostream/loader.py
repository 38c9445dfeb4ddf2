"""``PatchLoader``: batches of patches streamed from a store at disk speed.

An offset index is built once (``chunk_iter`` over every shard: one pass, no data read), then
background threads read whole patches with positioned reads straight into the batch buffer,
bypassing HDF5 and its global lock. Each chunk's Fletcher-32 checksum is checked as it is
read. Batches are assembled in a fixed order whatever the threads do, go through a bounded
queue (memory = queue depth × batch), and are moved to the devices one batch ahead of use.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from cryostream.config import NoiseConfig, from_dict
from cryostream.errors import ConfigError, StoreError
from cryostream.store import damaged_shard, fletcher32, open_dataset

__all__ = ["PatchLoader", "LoaderState", "model_input"]


@dataclasses.dataclass(frozen=True)
class LoaderState:
    """Where a loader is: the next batch it hands out is batch ``batch`` of epoch ``epoch``."""

    epoch: int = 0
    batch: int = 0


@dataclasses.dataclass
class _Index:
    files: list[str]
    starts: list[int]  # first patch number of each file
    file_of: np.ndarray  # (n,) int32
    offset: np.ndarray  # (n,) int64 byte offsets


def _build_index(path: Path, group: h5py.Group, kind: str) -> _Index:
    dset = group[kind]
    n = dset.shape[0]
    files: list[str] = []
    starts: list[int] = []
    file_of = np.full(n, -1, dtype=np.int32)
    offset = np.full(n, -1, dtype=np.int64)
    for source in dset.virtual_sources():
        start = source.vspace.get_select_bounds()[0][0]
        shard = path.absolute().parent / source.file_name  # named whatever the working folder
        fid = len(files)
        files.append(str(shard))
        starts.append(int(start))

        def visit(info, start=start, fid=fid):
            i = start + info.chunk_offset[0]
            file_of[i] = fid
            offset[i] = info.byte_offset

        try:
            with h5py.File(shard, "r") as f:
                f[source.dset_name].id.chunk_iter(visit)
        except (OSError, KeyError) as exc:  # truncated, not HDF5, or without the dataset
            raise damaged_shard(path, shard, exc, where=f"{group.name.lstrip('/')}/{kind}") \
                from None
    if (offset < 0).any():
        raise StoreError(f"{path}: {int((offset < 0).sum())} {kind} patches have no chunk on disk; "
                         "prepare the store again")
    return _Index(files, starts, file_of, offset)


class PatchLoader:
    """Iterate batches of a store's split, forever (epochs) or once.

    Parameters
    ----------
    store : path-like
        A store made by :func:`cryostream.prepare`.
    split : {"train", "test"}
    batch_size : int
        Patches per batch; must be divisible by the number of devices when ``sharding`` is used.
    seed : int
        Seed of the shuffling: epoch ``e`` uses permutation ``default_rng([seed, e])``.
    shuffle : bool
        Shuffle every epoch (else store order).
    repeat : bool
        Run epochs forever (training) or stop after one (evaluation).
    threads : int
        Reader threads.
    prefetch : int
        Batches held ready in the queue.
    verify : bool
        Check each chunk's Fletcher-32 checksum.
    drop_remainder : bool
        Serve only full batches (the default, as a jit-compiled step needs one shape): the
        last ``n % batch_size`` patches of an epoch are left out. ``False`` serves them as a
        last, smaller batch (to go over a split once, every patch: ``repeat=False``).

    Yields
    ------
    dict
        ``{"input": (B, P, P), "target": (B, P, P)}`` NumPy arrays of the store's dtype
        (``input`` absent for on-device-noise stores), plus ``"index"`` (B,) patch numbers
        and, for matched on-device noise, ``"micrograph"`` (B,) rows of ``noise_table``.
    """

    def __init__(self, store, split: str = "train", batch_size: int = 8, *, seed: int = 0,
                 shuffle: bool = True, repeat: bool = True, threads: int = 4, prefetch: int = 4,
                 verify: bool = True, drop_remainder: bool = True):
        if split not in ("train", "test"):
            raise ConfigError(f"split={split!r}: must be 'train' or 'test'")
        if batch_size < 1 or threads < 1 or prefetch < 1:
            raise ConfigError("batch_size, threads and prefetch must be ≥ 1")
        self.path = Path(store)
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.shuffle, self.repeat, self.verify = shuffle, repeat, verify
        self.threads, self.prefetch, self.drop_remainder = threads, prefetch, drop_remainder
        with open_dataset(self.path) as f:
            meta = json.loads(f.attrs["config"])["config"]
            self.noise = from_dict(NoiseConfig, meta["noise"])
            self.compression = meta["compression"]
            group = f[split]
            self.kinds = tuple(k for k in ("input", "target") if k in group)
            self.n, self.patch_size, _ = group["target"].shape
            self.dtype = np.dtype(group["target"].dtype)
            if self.n == 0:
                raise StoreError(f"{self.path}: the {split} split is empty")
            self._index = {k: _build_index(self.path, group, k) for k in self.kinds}
            # matched on-device noise needs each patch's micrograph and its noise statistics
            self.noise_table = None
            if self.noise.model == "matched" and "input" not in self.kinds:
                self._micrograph = group["index"][:, 0].astype(np.int32)
                table = f["micrographs"]
                self.noise_table = {k: table[f"noise_{k}"][:].astype(np.float32)
                                    for k in ("kernel", "shot_fraction", "mean")}
        if self.n < batch_size and drop_remainder:
            raise ConfigError(f"batch_size={batch_size}: larger than the {self.n} {split} patches")
        self._chunk_bytes = self.patch_size**2 * self.dtype.itemsize
        self.position = LoaderState()  # of the next batch handed out; saved in checkpoints
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        left = self.n % self.batch_size if self.drop_remainder else 0
        return (f"PatchLoader({str(self.path)!r}, {self.split!r}: {self.n} patches of "
                f"{self.patch_size}², {self.batches_per_epoch} batches of {self.batch_size} an "
                f"epoch{f' ({left} left out)' if left else ''}, "
                f"{'shuffled' if self.shuffle else 'in order'}, "
                f"{'repeating' if self.repeat else 'once'})")

    # -- order ------------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full if self.drop_remainder or not rest else full + 1

    def order(self, epoch: int) -> np.ndarray:
        """Patch numbers of epoch ``epoch`` in the order they are served."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batch_indices(self, state: LoaderState) -> np.ndarray:
        order = self.order(state.epoch)
        return order[state.batch * self.batch_size : (state.batch + 1) * self.batch_size]

    # -- reading ----------------------------------------------------------------------------
    def _read_into(self, kind: str, patch: int, out: np.ndarray) -> None:
        index = self._index[kind]
        shard = index.files[index.file_of[patch]]
        if self.compression != "none":
            try:
                with h5py.File(shard, "r") as f:  # decoded by HDF5 in this thread
                    f[kind].read_direct(out, np.s_[patch - index.starts[index.file_of[patch]]])
            except OSError as exc:  # truncated, or a chunk that fails its checksum or filter
                raise self._damaged(kind, patch, exc) from None
            return
        tail = bytearray(4)
        fd = os.open(shard, os.O_RDONLY)
        try:
            want = self._chunk_bytes + 4
            got = os.preadv(fd, [memoryview(out).cast("B"), tail], int(index.offset[patch]))
        finally:
            os.close(fd)
        if got != want:
            raise self._damaged(kind, patch, f"the patch is cut short ({got} of {want} bytes)")
        if self.verify and fletcher32(memoryview(out).cast("B")).to_bytes(4, "little") != tail:
            raise self._damaged(kind, patch, "the patch fails its checksum (corrupted on disk)")

    def _damaged(self, kind: str, patch: int, problem) -> StoreError:
        """The error naming the shard of ``patch`` (:func:`~cryostream.store.damaged_shard`)."""
        index = self._index[kind]
        fid = index.file_of[patch]
        return damaged_shard(self.path, index.files[fid], problem,
                             where=f"{self.split}/{kind} patch {patch}, patch "
                             f"{patch - index.starts[fid]} of the shard")

    def read_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Read the patches ``indices`` (a NumPy array of patch numbers) now, with the threads."""
        p = self.patch_size
        out = {k: np.empty((len(indices), p, p), dtype=self.dtype) for k in self.kinds}
        pool = self._pool or concurrent.futures.ThreadPoolExecutor(self.threads)
        try:
            jobs = [pool.submit(self._read_into, k, int(i), out[k][j])
                    for k in self.kinds for j, i in enumerate(indices)]
            for job in jobs:
                job.result()
        finally:
            if pool is not self._pool:
                pool.shutdown()
        for k in self.kinds:  # one pass; NaN and ±Inf carry into a float64 sum, finite ones not
            bad = np.flatnonzero(~np.isfinite(out[k].sum(axis=(1, 2), dtype=np.float64)))
            if bad.size:
                raise self._damaged(k, int(indices[bad[0]]), "the patch holds NaN or Inf values")
        out["index"] = np.asarray(indices, dtype=np.int64)
        if self.noise_table is not None:
            out["micrograph"] = self._micrograph[out["index"]]
        return out

    # -- iteration --------------------------------------------------------------------------
    def _advance(self, state: LoaderState) -> LoaderState | None:
        if state.batch + 1 < self.batches_per_epoch:
            return LoaderState(state.epoch, state.batch + 1)
        return LoaderState(state.epoch + 1, 0) if self.repeat else None

    def _put(self, item) -> bool:
        """Put into the queue unless stopped; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, start: LoaderState) -> None:
        state: LoaderState | None = start
        try:
            while state is not None and not self._stop.is_set():
                if not self._put((state, self.read_batch(self.batch_indices(state)))):
                    return
                state = self._advance(state)
            self._put((None, None))
        except BaseException as exc:  # handed to the consumer
            self._put((None, exc))

    def _start(self) -> None:
        self.close()
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads)
        self._thread = threading.Thread(target=self._produce, args=(self.position,), daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self._start()
        try:
            while True:
                state, batch = self._queue.get()
                if state is None:
                    if isinstance(batch, BaseException):
                        raise batch
                    return
                nxt = self._advance(state)
                self.position = nxt if nxt is not None else LoaderState(state.epoch + 1, 0)
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background threads (iteration restarts from ``position``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def restore(self, state: LoaderState | dict) -> None:
        """Continue from a saved position (``LoaderState`` or its dict)."""
        self.position = state if isinstance(state, LoaderState) else LoaderState(**state)

    # -- devices ----------------------------------------------------------------------------
    def device_batches(self, sharding=None) -> Iterator[dict]:
        """Like iterating, but each batch is already on the devices, one batch ahead of use.

        ``sharding`` (a ``jax.sharding.NamedSharding`` over the batch axis) spreads each batch
        over the devices; the batch size must divide evenly among them.
        """
        import jax

        if sharding is not None:
            devices = len(sharding.mesh.devices.flat)
            if self.batch_size % devices:
                raise ConfigError(f"batch_size={self.batch_size} is not divisible by the "
                                  f"{devices} devices; use a multiple of {devices}")

        def put(batch):
            arrays = {k: v for k, v in batch.items() if k != "index"}
            return jax.device_put(arrays, sharding) if sharding is not None else jax.device_put(arrays)

        ahead = None  # (batch on the device, position after it)
        for batch in self:
            current = (put(batch), self.position)
            if ahead is not None:
                self.position = ahead[1]
                yield ahead[0]
            ahead = current
        if ahead is not None:
            self.position = ahead[1]
            yield ahead[0]


def model_input(batch, noise: NoiseConfig | None, seed: int, counter, table=None,
                recorrupt_alpha2: float | None = None):
    """The network's input and target for a batch, noise synthesised on the device if needed.

    Parameters
    ----------
    batch : dict of arrays
        ``"target"`` (B, P, P), and ``"input"`` (B, P, P) for stores with stored noise, or
        ``"micrograph"`` (B,) indices for matched on-device noise.
    noise : NoiseConfig or None
        The store's noise model, for stores without ``"input"``.
    seed : int
        Random seed of the on-device noise; the key is ``fold_in(key(seed), counter)``.
    counter : int or jax.Array
        The step (training) or batch number (evaluation).
    table : dict of arrays, optional
        The store's per-micrograph matched-noise statistics (``PatchLoader.noise_table``).
    recorrupt_alpha2 : float, optional
        The store's ``α²``: the target ``y`` becomes ``y − (z − y) / α²`` (``z − y = α·m``,
        so ``y − m / α``), recorrupted with the same draw as the input.

    Returns
    -------
    (input, target)
        float32 (B, P, P, 1) each.
    """
    import jax
    import jax.numpy as jnp

    from cryostream.noise import add_noise_jax

    target = batch["target"].astype(jnp.float32)
    if "input" in batch:
        inp = batch["input"].astype(jnp.float32)
    else:
        matched = None
        if table is not None:
            matched = {k: jnp.asarray(v)[batch["micrograph"]] for k, v in table.items()}
        inp = add_noise_jax(target, noise, jax.random.fold_in(jax.random.key(seed), counter),
                            matched)
    if recorrupt_alpha2 is not None:
        target = target - (inp - target) * (1 / recorrupt_alpha2)
    return inp[..., None], target[..., None]
