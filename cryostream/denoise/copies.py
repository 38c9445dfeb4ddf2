"""Copies between micrographs and the batches of windows sent to the network: a pool of
threads for large copies, mirror-padded windows cut without padding the image, and batch
buffers reused within :func:`reused_windows`."""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from cryostream.denoise.workers import cpu_cores

__all__ = ["COPY_THREADS", "copy_rows", "mirrored", "cut_mirrored", "batch_buffer", "reused_windows"]

#: Threads that copy windows to and from the device's batches (NumPy copies release the GIL).
COPY_THREADS = min(8, cpu_cores())
#: Copies smaller than this many pixels are made on the calling thread.
_COPY_MIN = 2 * 1024 * 1024
_POOL_NAME = "cryostream-copy"
_pool_lock = threading.Lock()
_pool: list = []  # the copy pool, made on first use (and again in a forked child)
_reuse_lock = threading.Lock()
_reuse = {"depth": 0, "buffers": {}}  # (thread, parity) → the batch buffer it fills


def _copy_pool():
    import concurrent.futures

    with _pool_lock:
        if not _pool:
            _pool.append(concurrent.futures.ThreadPoolExecutor(COPY_THREADS,
                                                               thread_name_prefix=_POOL_NAME))
        return _pool[0]


def _after_fork() -> None:  # a forked child has none of the parent's threads or scopes
    global _reuse_lock
    _pool.clear()
    _reuse_lock = threading.Lock()
    _reuse.update(depth=0, buffers={})


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def copy_rows(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for 2-D arrays of one shape, in blocks of rows on
    :data:`COPY_THREADS` threads when large (a full-size micrograph's windows are hundreds of
    MB). On one thread when small, when called from a copy thread itself, or when the
    interpreter is shutting down (no new threads then)."""
    if dst.shape != src.shape:
        raise ValueError(f"copy of {src.shape} into {dst.shape}")
    rows = dst.shape[0]
    threads = min(COPY_THREADS, rows)
    if threads <= 1 or dst.size < _COPY_MIN \
            or threading.current_thread().name.startswith(_POOL_NAME):
        dst[...] = src
        return
    step = -(-rows // threads)

    def part(first):
        dst[first : first + step] = src[first : first + step]

    try:
        futures = [_copy_pool().submit(part, first) for first in range(0, rows, step)]
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
        dst[...] = src
        return
    for future in futures:
        future.result()


def mirrored(start: int, length: int, n: int) -> list[tuple[slice, slice]]:
    """Pieces of the index range ``[start, start + length)`` of an axis of ``n`` pixels
    mirror-padded as NumPy's ``"symmetric"`` (Dask's ``"reflect"``: ``-1 → 0``, ``n → n − 1``),
    as ``(destination, source)`` slices; a source piece outside ``[0, n)`` runs backwards.
    The padding must be at most ``n`` on each side."""
    stop = start + length
    if length <= 0:
        return []
    if start < -n or stop > 2 * n:
        raise ValueError(f"pixels {start}..{stop} of an axis of {n}: more than one reflection")
    pieces = []
    if start < 0:  # i → −i − 1
        end = min(stop, 0)
        low = -end - 1
        pieces.append((slice(0, end - start), slice(-start - 1, low if low >= 0 else None, -1)))
    if start < n and stop > 0:
        a, b = max(start, 0), min(stop, n)
        pieces.append((slice(a - start, b - start), slice(a, b)))
    if stop > n:  # i → 2n − 1 − i
        a = max(start, n)
        low = 2 * n - 1 - stop
        pieces.append((slice(a - start, length), slice(2 * n - 1 - a, low if low >= 0 else None,
                                                        -1)))
    return pieces


def cut_mirrored(image: np.ndarray, row: int, col: int, dst: np.ndarray) -> None:
    """Fill ``dst`` with ``image`` from ``(row, col)`` on, mirror-padded where it reaches past
    an edge (:func:`mirrored`): the window of a padded image, without padding the image."""
    for rows_to, rows_from in mirrored(row, dst.shape[0], image.shape[0]):
        for cols_to, cols_from in mirrored(col, dst.shape[1], image.shape[1]):
            copy_rows(dst[rows_to, cols_to], image[rows_from, cols_from])


def batch_buffer(shape: tuple, parity: int) -> np.ndarray:
    """A float32 host buffer for a batch of windows: fresh, or inside :func:`reused_windows`
    one of two kept per thread (``parity`` alternates between batches). Two suffice: the
    buffer of batch k is filled again for batch k + 2 only after batch k's result has come
    back, so its copy to the device is over."""
    with _reuse_lock:
        if not _reuse["depth"]:
            return np.empty(shape, dtype=np.float32)
        key = (threading.get_ident(), parity)
        buffer = _reuse["buffers"].get(key)
        if buffer is None or buffer.shape != shape:
            buffer = _reuse["buffers"][key] = np.empty(shape, dtype=np.float32)
        return buffer


@contextlib.contextmanager
def reused_windows():
    """Within it, the batches of windows sent to the device reuse two host buffers per thread
    instead of fresh ones (released when the outermost one ends). A fresh 150 MB buffer costs
    its page faults on every batch: a full-size micrograph's network pass took 0.196 s with
    fresh buffers and 0.187 s with reused ones on an H200. Outputs are the same bit for bit.
    The scope is the process's: while it lasts, every thread of this process that sends
    windows keeps its two buffers (a ``denoise`` call's pool threads; also any other thread
    denoising meanwhile). Dask workers in other processes allocate afresh."""
    with _reuse_lock:
        _reuse["depth"] += 1
    try:
        yield
    finally:
        with _reuse_lock:
            _reuse["depth"] -= 1
            if not _reuse["depth"]:
                _reuse["buffers"].clear()
