"""Denoising whole micrographs: tiles of one shape over a lazy stack, batched on the device.

The stack is cut into bands of ``tile`` rows (the last band absorbs the remainder) and
``map_overlap`` gives each band a halo of ``halo`` pixels on every side (mirrored at the
micrograph's edges). Inside a band, windows of ``(tile + 2·halo)²`` start at multiples of
``tile``; the last window along an axis is shifted back inside the image, to a multiple of the
U-Net's pooling factor, and its core reaches the edge. The halo covers the receptive field
plus that shift, and every window starts at a multiple of the pooling factor, so each output
pixel is computed exactly as if the whole (mirror-padded) micrograph had gone through the
network at once. One window shape means one compiled program for every micrograph.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading

import numpy as np

from cryostream.denoise.network import backend, load_network, to_device, to_host
from cryostream.denoise.workers import cpu_cores
from cryostream.errors import ConfigError

__all__ = ["MAX_WINDOW", "MAX_BATCH_PIXELS", "receptive_radius", "default_halo", "tile_cores",
           "band_heights", "count_windows", "device_batch", "auto_tile", "backend",
           "check_tile", "window_layout", "denoise_array", "network_pass", "to_device", "to_host",
           "reused_windows"]

#: Largest window side (tile + 2·halo) and pixels per device call that ``tile=None`` chooses,
#: for a network computing in float32; in bfloat16 (half the bytes) a call takes twice the
#: pixels. 4352² windows, two per call in bfloat16 or one in float32 (about 12 GB of GPU
#: memory at the peak per micrograph in flight on an H200 either way), were measured on an
#: 80 GB H100 and an H200; CPUs keep windows small.
MAX_WINDOW = {"gpu": 4352, "cpu": 1536}
MAX_BATCH_PIXELS = {"gpu": 4352**2, "cpu": 8 * 1536**2}


def receptive_radius(config) -> int:
    """Pixels of context on each side that one output pixel of a U-Net can see (upper bound)."""
    levels = config.levels
    radius = (config.first_kernel - 1) // 2
    radius += sum(2**level for level in range(levels))  # max pools
    radius += sum(2**level for level in range(1, levels + 1))  # encoder 3x3
    radius += sum(3 * 2**level for level in range(1, levels))  # decoder 2 x 3x3 + upsampling
    return radius + 3 * 2  # the 5x5 head


def default_halo(config) -> int:
    """The smallest multiple of the pooling factor ≥ receptive radius + (pooling factor − 1)."""
    m = config.multiple
    return math.ceil((receptive_radius(config) + m - 1) / m) * m


def tile_cores(length: int, tile: int, multiple: int) -> list[tuple[int, int, int]]:
    """Windows along an axis: ``(window start, core start, core stop)`` in image pixels.

    Windows start at multiples of ``tile``; a last window, shifted back to a multiple of
    ``multiple``, covers what is left up to ``length``.
    """
    if length < tile:
        raise ConfigError(f"tile={tile}: larger than the {length}-pixel axis; use a smaller "
                          "--tile (Python: the DenoiseConfig's tile)")
    cores = [(p, p, p + tile) for p in range(0, length - tile + 1, tile)]
    end = cores[-1][2]
    if end < length:
        start = (length - tile) // multiple * multiple
        cores.append((start, end, length))
    return cores


def band_heights(ny: int, tile: int) -> tuple[int, ...]:
    """Rows of each band: ``tile`` each, the last one taking the remainder."""
    n_bands = ny // tile
    return (tile,) * (n_bands - 1) + (ny - tile * (n_bands - 1),)


def count_windows(shape: tuple[int, int], tile: int, multiple: int) -> int:
    """Windows over a micrograph of ``shape``, band by band."""
    across = len(tile_cores(shape[1], tile, multiple))
    return sum(len(tile_cores(h, tile, multiple)) for h in band_heights(shape[0], tile)) * across


def device_batch(batch_size: int, windows: int, side: int,
                 compute_dtype: str = "float32") -> int:
    """Windows per device call: at most ``batch_size``, ``windows`` (no empty padding windows)
    and the backend's pixel cap (:data:`MAX_BATCH_PIXELS`; twice it for a network computing
    in ``"bfloat16"``) for windows of ``side``²."""
    cap = MAX_BATCH_PIXELS[backend()] * (2 if compute_dtype == "bfloat16" else 1)
    return max(1, min(batch_size, windows, cap // side**2))


def auto_tile(shape: tuple[int, int], config, halo: int | None = None,
              max_window: int | None = None) -> int:
    """The tile that sends the fewest pixels through the network for micrographs of ``shape``.

    Every window is ``(tile + 2·halo)²`` and the halo is paid on every window, so few large
    windows are cheapest, up to ``max_window`` per side (default: :data:`MAX_WINDOW` for the
    JAX backend in use). For a 7676 × 7420 micrograph and the ``unet`` preset on a GPU that is
    tile 3840: four windows of 4352², 28 % fewer pixels than tile 2048's sixteen of 2560².
    """
    m = config.multiple
    halo = default_halo(config) if halo is None else halo
    if max_window is None:
        max_window = MAX_WINDOW[backend()]
    ny, nx = shape
    low = max(m, -(-halo // m) * m)  # a tile under the halo is refused (_check)
    top = min(ny, nx, max_window - 2 * halo) // m * m
    if top < low:
        raise ConfigError(f"micrographs of {ny} × {nx} with a {halo}-px halo leave no room for a "
                          f"window of at most {max_window}²; pass tile= (--tile)")
    return min(range(low, top + 1, m),
               key=lambda t: (count_windows(shape, t, m) * (t + 2 * halo) ** 2, -t))


def _denoise_band(block, block_info=None, *, run, tile, halo, batch_size, percentiles,
                  precision):
    m, _, _ = block_info[0]["chunk-location"]
    slab = block[0] * np.float32(1.0 / percentiles[m])
    side = tile + 2 * halo
    out = np.empty((slab.shape[0] - 2 * halo, slab.shape[1] - 2 * halo), dtype=np.float32)

    def cut(wy, wx, dst):  # the band comes with its halo (map_overlap)
        _copy(dst, slab[wy : wy + side, wx : wx + side])

    _through_network(load_network(run, precision), [(cut, out)], tile, halo, batch_size)
    return out[None]


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


def _copy(dst: np.ndarray, src: np.ndarray) -> None:
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


def _mirrored(start: int, length: int, n: int) -> list[tuple[slice, slice]]:
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


def _cut_mirrored(image: np.ndarray, row: int, col: int, dst: np.ndarray) -> None:
    """Fill ``dst`` with ``image`` from ``(row, col)`` on, mirror-padded where it reaches past
    an edge (:func:`_mirrored`): the window of a padded image, without padding the image."""
    for rows_to, rows_from in _mirrored(row, dst.shape[0], image.shape[0]):
        for cols_to, cols_from in _mirrored(col, dst.shape[1], image.shape[1]):
            _copy(dst[rows_to, cols_to], image[rows_from, cols_from])


def _through_network(network, slabs: list, tile: int, halo: int, batch_size: int) -> None:
    """The network's output over the core of each slab, into its output array. ``slabs`` are
    ``(cut, out)``: ``out`` the slab's core (a band of the micrograph), ``cut(wy, wx, dst)``
    fills ``dst`` with the window of ``(tile + 2·halo)²`` whose core starts at ``(wy, wx)`` in
    ``out`` (the slab with its ``halo`` on every side). Windows go to the device
    ``batch_size`` at a time within a slab. The next batch is sent while the device computes
    the last one (JAX dispatches asynchronously), so host-to-device copies, compute and
    copies back overlap. Only the part of each window that can hold its core,
    ``(tile + multiple)²`` from the halo on, comes back: a core is at most
    ``tile + multiple − 1`` wide (the last window along an axis starts at a multiple of the
    pooling factor, :func:`tile_cores`), and ``halo ≥ multiple``."""
    side = tile + 2 * halo
    multiple = network.config.multiple
    kept = slice(halo, halo + tile + multiple)
    batches = []
    for index, (_, out) in enumerate(slabs):
        height, width = out.shape
        jobs = [(ry, rx) for ry in tile_cores(height, tile, multiple)
                for rx in tile_cores(width, tile, multiple)]
        batches += [(index, jobs[first : first + batch_size])
                    for first in range(0, len(jobs), batch_size)]

    def send(index, chunk, parity):
        windows = _windows((batch_size, side, side, 1), parity)
        windows[len(chunk) :] = 0  # a short last batch keeps the compiled shape
        for i, ((wy, _, _), (wx, _, _)) in enumerate(chunk):
            slabs[index][0](wy, wx, windows[i, ..., 0])
        return network.apply(network.params, to_device(windows))[:, kept, kept, 0]

    pending = None
    for number, (index, chunk) in enumerate(batches):
        sent = (index, chunk, send(index, chunk, number % 2))  # dispatched before the last one is fetched
        if pending is not None:
            _place(slabs, *pending)
        pending = sent
    if pending is not None:
        _place(slabs, *pending)


def _windows(shape: tuple, parity: int) -> np.ndarray:
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


def _place(slabs: list, index: int, chunk: list, result) -> None:
    """Copy a batch's window cores (``result``: each window from its halo on) back into slab
    ``index``'s output."""
    result = to_host(result)
    out = slabs[index][1]
    for i, ((wy, y0, y1), (wx, x0, x1)) in enumerate(chunk):
        _copy(out[y0:y1, x0:x1], result[i, y0 - wy : y1 - wy, x0 - wx : x1 - wx])


def check_tile(run, tile: int | None, halo: int | None) -> None:
    """Refuse a ``tile`` or ``halo`` that no micrograph could take with the model of ``run``
    (None: the default), before any micrograph is read: what :func:`denoise_array` checks
    that does not depend on the micrograph's size."""
    config = load_network(str(run)).config
    _check(config, tile, default_halo(config) if halo is None else halo)


def _check(config, tile: int | None, halo: int) -> None:
    m = config.multiple  # a tile of None is chosen later, for the micrograph: nothing to check
    bad = [(f"{name}={v} (--{name})", v) for name, v in (("tile", tile), ("halo", halo))
           if v is not None and v % m]
    if bad:
        raise ConfigError(f"{', '.join(b for b, _ in bad)}: must be a multiple of {m} for this "
                          f"model; give one, e.g. {max(m, round(bad[0][1] / m) * m)} (or leave "
                          "it out: the default is chosen for the micrograph and the device)")
    if halo < receptive_radius(config):
        raise ConfigError(f"halo={halo}: smaller than the model's receptive radius "
                          f"{receptive_radius(config)}")
    if tile is not None and halo > tile:
        raise ConfigError(f"halo={halo} is larger than tile={tile}; use a larger --tile (Python: "
                          "the DenoiseConfig's tile)")


def window_layout(run: str, shape: tuple[int, int], tile, halo, batch_size: int,
                  precision: str):
    """``(tile, halo, batch_size, band heights)`` for micrographs of ``shape`` and the network
    computing in ``precision``: the defaults filled in and checked (:func:`denoise_array`)."""
    network = load_network(run, precision)
    config = network.config
    halo = default_halo(config) if halo is None else halo
    if tile is None:
        tile = auto_tile(shape, config, halo)
    _check(config, tile, halo)
    m = config.multiple
    ny, nx = shape
    if min(ny, nx) < tile:
        raise ConfigError(f"tile={tile}: larger than the micrographs ({ny} × {nx})")
    heights = band_heights(ny, tile)
    per_band = max(len(tile_cores(h, tile, m)) for h in heights) * len(tile_cores(nx, tile, m))
    return (tile, halo, device_batch(batch_size, per_band, tile + 2 * halo, network.compute_dtype),
            heights)


def denoise_array(stack, run, percentiles, *, tile: int | None = None, halo: int | None = None,
                  batch_size: int = 8, precision: str = "fp32"):
    """Lazy denoised stack (micrograph, y, x) in normalised units (divided by ``percentiles``).

    ``stack`` is a Dask array (micrograph, y, x); ``run`` a trained run folder. ``tile=None``
    picks the cheapest tile for the backend (:func:`auto_tile`). Windows per device call are
    at most ``batch_size``, the windows of one band and a memory cap for the backend. The
    network computes in ``precision`` (:func:`~cryostream.denoise.network.load_network`).
    """
    tile, halo, batch_size, heights = window_layout(str(run), stack.shape[1:], tile, halo,
                                                    batch_size, precision)
    banded = stack.rechunk({0: 1, 1: heights, 2: -1})
    return banded.map_overlap(
        _denoise_band, depth={0: 0, 1: halo, 2: halo}, boundary={0: "none", 1: "reflect",
                                                                 2: "reflect"},
        trim=False, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
        run=str(run), tile=tile, halo=halo, batch_size=batch_size,
        percentiles=np.asarray(percentiles, dtype=np.float64), precision=precision,
    )


def network_pass(run: str, image: np.ndarray, *, tile: int | None = None, halo: int | None = None,
                 batch_size: int = 8, precision: str = "fp32") -> np.ndarray:
    """The network's output for one normalised 2-D micrograph, computed here: the
    same bands, windows and batches as :func:`denoise_array`, without a task graph, every
    band's windows in one stream to the device. An image smaller than ``tile`` or the halo
    (the binned pass of a small micrograph) is mirrored out to that size and cut back. The
    network computes in ``precision`` (:func:`~cryostream.denoise.network.load_network`); the
    output is float32."""
    need = max(tile or 0, default_halo(load_network(run).config) if halo is None else halo)
    if min(image.shape) < need:
        out = network_pass(run, np.pad(np.asarray(image, np.float32), [(0, max(need - n, 0)) for n
                           in image.shape], mode="symmetric"), tile=tile, halo=halo,
                           batch_size=batch_size, precision=precision)
        return np.ascontiguousarray(out[: image.shape[0], : image.shape[1]])
    tile, halo, batch_size, heights = window_layout(run, image.shape, tile, halo, batch_size,
                                                    precision)
    image = np.asarray(image, dtype=np.float32)
    out = np.empty(image.shape, dtype=np.float32)
    slabs = []
    for start, height in zip(np.cumsum((0, *heights[:-1])).tolist(), heights, strict=True):
        def cut(wy, wx, dst, start=start):  # the image mirror-padded by the halo, not copied
            _cut_mirrored(image, start + wy - halo, wx - halo, dst)

        slabs.append((cut, out[start : start + height]))
    _through_network(load_network(run, precision), slabs, tile, halo, batch_size)
    return out
