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

import functools
import math
from typing import NamedTuple

import numpy as np

from cryostream.denoise import memory
from cryostream.denoise.binned import binned_shape
from cryostream.denoise.copies import batch_buffer, copy_rows, cut_mirrored, reused_windows
from cryostream.denoise.network import backend, load_network, to_device, to_host
from cryostream.errors import ConfigError

__all__ = ["MAX_WINDOW", "MAX_BATCH_PIXELS", "receptive_radius", "default_halo", "tile_cores",
           "band_heights", "count_windows", "device_batch", "auto_tile", "backend",
           "check_tile", "check_layouts", "Layout", "window_layout", "clear_layouts",
           "cpu_pass_seconds", "CPU_SECONDS_PER_PIXEL", "denoise_array", "network_pass",
           "to_device", "to_host", "reused_windows"]

#: Largest window side (tile + 2·halo) and pixels per device call that ``tile=None`` chooses,
#: for a network computing in float32; in bfloat16 (half the bytes) a call takes twice the
#: pixels. 4352² windows, two per call in bfloat16 or one in float32 (about 12 GB of GPU
#: memory at the peak per micrograph in flight on an H200 either way), were measured on an
#: 80 GB H100 and an H200. CPUs keep windows small and send one per call: on two cores a
#: 1088² window took 3.3 s alone and 3.8 s in a call of four, which took 3.7 GB against 1.3
#: (``docs/benchmarks.md``). A device with less memory gets smaller pieces
#: (:mod:`cryostream.denoise.memory`).
MAX_WINDOW = {"gpu": 4352, "cpu": 1536}
MAX_BATCH_PIXELS = {"gpu": 4352**2, "cpu": 1536**2}


def receptive_radius(config) -> int:
    """Pixels of context on each side that one output pixel of a U-Net can see (upper bound)."""
    levels = config.levels
    radius = (config.first_kernel - 1) // 2
    radius += sum(2**level for level in range(levels))  # max pools
    radius += config.encoder_convs * sum(2**level for level in range(1, levels + 1))  # encoder 3x3
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
        copy_rows(dst, slab[wy : wy + side, wx : wx + side])

    calls = (memory.call_bytes(run, precision, batch_size, side),  # this worker's own
             memory.network_memory()[0])
    _through_network(load_network(run, precision), [(cut, out)], tile, halo, batch_size, calls)
    return out[None]


def _through_network(network, slabs: list, tile: int, halo: int, batch_size: int,
                     calls: tuple | None = None) -> None:
    """The network's output over the core of each slab, into its output array. ``slabs`` are
    ``(cut, out)``: ``out`` the slab's core (a band of the micrograph), ``cut(wy, wx, dst)``
    fills ``dst`` with the window of ``(tile + 2·halo)²`` whose core starts at ``(wy, wx)`` in
    ``out`` (the slab with its ``halo`` on every side). Windows go to the device
    ``batch_size`` at a time within a slab. The next batch is sent while the device computes
    the last one (JAX dispatches asynchronously), so host-to-device copies, compute and
    copies back overlap; ``calls``, ``(bytes per call, limit)``, holds a call's bytes in
    :data:`~cryostream.denoise.memory.CALLS` from its sending to its result's return, so the
    calls of all threads fit in the limit (None: no limit). Only the part of each window
    that can hold its core, ``(tile + multiple)²`` from the halo on, comes back: a core is at most
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
        windows = batch_buffer((batch_size, side, side, 1), parity)
        windows[len(chunk) :] = 0  # a short last batch keeps the compiled shape
        for i, ((wy, _, _), (wx, _, _)) in enumerate(chunk):
            slabs[index][0](wy, wx, windows[i, ..., 0])
        return network.apply(network.params, to_device(windows))[:, kept, kept, 0]

    need, limit = calls if calls and None not in calls else (0, 0)
    held = []  # calls sent and not yet placed, oldest first
    before = memory.CALLS.holding()  # what this thread held already (none, unless nested)
    try:
        for number, (index, chunk) in enumerate(batches):
            # a thread waits for room only while it holds no call: no two wait on each other
            if not memory.CALLS.take(need, limit, wait=not held):
                _place(slabs, *held.pop(0), need)
                memory.CALLS.take(need, limit)
            held.append((index, chunk, send(index, chunk, number % 2)))
            if len(held) > 1:  # the next batch was sent before the last one is fetched
                _place(slabs, *held.pop(0), need)
        while held:
            _place(slabs, *held.pop(0), need)
    except RuntimeError as error:  # XLA's out of memory, said as what to change
        found = memory.out_of_memory(error, side, batch_size, need or None, limit or None)
        if found is None:
            raise
        raise found from error
    finally:  # an error or Ctrl-C with calls under way: their bytes go back
        memory.CALLS.give(memory.CALLS.holding() - before)


def _place(slabs: list, index: int, chunk: list, result, need: int = 0) -> None:
    """Copy a batch's window cores (``result``: each window from its halo on) back into slab
    ``index``'s output, giving back the call's ``need`` bytes once it is on the host."""
    try:
        result = to_host(result)
    finally:
        memory.CALLS.give(need)
    out = slabs[index][1]
    for i, ((wy, y0, y1), (wx, x0, x1)) in enumerate(chunk):
        copy_rows(out[y0:y1, x0:x1], result[i, y0 - wy : y1 - wy, x0 - wx : x1 - wx])


def check_tile(run, tile: int | None, halo: int | None) -> None:
    """Refuse a ``tile`` or ``halo`` that no micrograph could take with the model of ``run``
    (None: the default), before any micrograph is read: what :func:`denoise_array` checks
    that does not depend on the micrograph's size. Each message gives a value that works."""
    config = load_network(str(run)).config
    halo = default_halo(config) if halo is None else halo
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ConfigError(f"tile={tile!r} (--tile): must be a whole number of pixels, a multiple "
                          f"of {config.multiple} for this model and at least its {halo}-px halo; "
                          f"give one, e.g. {_least(config, halo)}{_OR_DEFAULT}")
    _check(config, tile, halo)


_OR_DEFAULT = " (or leave it out: the default is chosen for the micrograph and the device)"


def _least(config, halo: int) -> int:
    """The smallest tile that works with ``halo`` (a multiple of the pooling factor)."""
    m = config.multiple
    return max(m, -(-halo // m) * m)


def _check(config, tile: int | None, halo: int) -> None:
    m, radius = config.multiple, receptive_radius(config)
    least_halo = max(m, -(-radius // m) * m)
    good_halo = halo if halo % m == 0 and halo >= radius else max(least_halo, round(halo / m) * m)
    examples = {"tile": max(_least(config, good_halo), round((tile or 0) / m) * m),
                "halo": good_halo}
    # a tile of None is chosen later, for the micrograph: nothing to check
    bad = [name for name, v in (("tile", tile), ("halo", halo)) if v is not None and v % m]
    if bad:
        values = {"tile": tile, "halo": halo}
        raise ConfigError(f"{', '.join(f'{n}={values[n]} (--{n})' for n in bad)}: must be a "
                          f"multiple of {m} for this model; give one, e.g. {examples[bad[0]]}"
                          + _OR_DEFAULT)
    if halo < radius:
        raise ConfigError(f"halo={halo}: smaller than the model's receptive radius {radius}; "
                          f"give one of at least {least_halo}{_OR_DEFAULT}")
    if tile is not None and halo > tile:
        raise ConfigError(f"tile={tile} (--tile): smaller than the {halo}-px halo around it (the "
                          f"network's context on each side); give one of at least "
                          f"{_least(config, halo)}{_OR_DEFAULT}")


class Layout(NamedTuple):
    """How micrographs of one shape go through the network (:func:`window_layout`)."""

    tile: int
    halo: int
    batch: int
    heights: tuple
    need: int | None  # bytes one call takes (None: unknown)
    limit: int | None  # bytes the calls may take together (memory.network_memory)


def window_layout(run: str, shape: tuple[int, int], tile, halo, batch_size: int,
                  precision: str) -> Layout:
    """The :class:`Layout` for micrographs of ``shape`` and the network computing in
    ``precision``: the defaults filled in and checked (:func:`denoise_array`), and fitted to
    the memory the network's calls may take (:func:`~cryostream.denoise.memory.fit_layout`)."""
    return _layout(run, tuple(shape), tile, halo, batch_size, precision,
                   memory.network_memory())


def clear_layouts() -> None:
    """Forget the layouts :func:`window_layout` made (a model read again)."""
    _layout.cache_clear()


@functools.lru_cache(maxsize=64)
def _layout(run, shape, tile, halo, batch_size, precision, budget) -> Layout:
    network = load_network(run, precision)
    config = network.config
    halo = default_halo(config) if halo is None else halo
    given = tile is not None
    tile = tile if given else auto_tile(shape, config, halo)
    _check(config, tile, halo)
    m = config.multiple
    ny, nx = shape
    if min(ny, nx) < tile:
        most = min(ny, nx) // m * m
        raise ConfigError(f"tile={tile} (--tile): larger than the micrographs ({ny} × {nx}); "
                          + (f"give one of at most {most}{_OR_DEFAULT}" if most >= _least(config, halo)
                             else "leave it out: the default is chosen for the micrograph"))

    def batch_for(tile, wanted):
        per_band = max(len(tile_cores(h, tile, m)) for h in band_heights(ny, tile)) \
            * len(tile_cores(nx, tile, m))
        return device_batch(wanted, per_band, tile + 2 * halo, network.compute_dtype)

    tile, batch, need = memory.fit_layout(
        run, precision, tile, halo, batch_for(tile, batch_size), memory=budget,
        tile_given=given, batch_for=batch_for, multiple=m,
        choose_tile=lambda side: auto_tile(shape, config, halo, max_window=side))
    return Layout(tile, halo, batch, band_heights(ny, tile), need, budget[0])


#: Seconds per window pixel of one pass of the shipped model (float32) on two CPU cores: one
#: 1472² window took 6.38 s (``benchmarks/bench_network_calls.py``, docs/benchmarks.md).
CPU_SECONDS_PER_PIXEL = 6.38 / 1472**2


def cpu_pass_seconds(run: str, shape: tuple[int, int], tile: int | None = None,
                     halo: int | None = None, precision: str = "fp32",
                     batch_size: int = 8) -> float:
    """About how long one network pass over a micrograph of ``shape`` takes on two CPU cores
    (its windows' pixels at :data:`CPU_SECONDS_PER_PIXEL`; an image smaller than the tile or
    the halo is mirrored out first, as :func:`network_pass` does)."""
    shape = _mirrored_out(run, shape, tile, halo)
    layout = window_layout(run, shape, tile, halo, batch_size, precision)
    side = layout.tile + 2 * layout.halo
    return count_windows(shape, layout.tile, load_network(run).config.multiple) * side**2 \
        * CPU_SECONDS_PER_PIXEL


def _mirrored_out(run: str, shape: tuple[int, int], tile, halo) -> tuple[int, int]:
    """The shape :func:`network_pass` takes an image of ``shape`` to: mirrored out to the tile
    or the halo where smaller."""
    need = max(tile or 0, default_halo(load_network(run).config) if halo is None else halo)
    return tuple(max(n, need) for n in shape)


def check_layouts(run: str, config, shapes) -> None:
    """Fit the windows of the passes ``denoise`` runs over micrographs of ``shapes`` (each
    size and, with the binned pass, half of it) before anything is written: a tile or memory
    that cannot take them is refused up front, and notes on fitting come first. ``config``:
    the DenoiseConfig, decided for the run."""
    for shape in shapes:
        for size in (shape, *([binned_shape(shape)] if config.binned_pass else [])):
            window_layout(run, _mirrored_out(run, size, config.tile, config.halo), config.tile,
                          config.halo, config.batch_size, config.precision)


def denoise_array(stack, run, percentiles, *, tile: int | None = None, halo: int | None = None,
                  batch_size: int = 8, precision: str = "fp32"):
    """Lazy denoised stack (micrograph, y, x) in normalised units (divided by ``percentiles``).

    ``stack`` is a Dask array (micrograph, y, x), or one micrograph (y, x), whose result is
    (y, x) too (``percentiles``: its one value); ``run`` a trained run folder. ``tile=None``
    picks the cheapest tile for the backend (:func:`auto_tile`). Windows per device call are
    at most ``batch_size``, the windows of one band and a memory cap for the backend. The
    network computes in ``precision`` (:func:`~cryostream.denoise.network.load_network`).
    """
    if getattr(stack, "ndim", None) == 2:  # one micrograph: 2-D in, 2-D out (as denoise's)
        return denoise_array(stack[None], run, np.atleast_1d(percentiles)[:1], tile=tile,
                             halo=halo, batch_size=batch_size, precision=precision)[0]
    if getattr(stack, "ndim", None) != 3:
        raise ConfigError(f"stack: a {getattr(stack, 'ndim', '?')}-D array; give one "
                          "micrograph (y, x) or a stack (micrograph, y, x)")
    tile, halo, batch_size, heights, _, _ = window_layout(str(run), stack.shape[1:], tile, halo,
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
    tile, halo, batch_size, heights, need, limit = window_layout(run, image.shape, tile, halo,
                                                                batch_size, precision)
    image = np.asarray(image, dtype=np.float32)
    out = np.empty(image.shape, dtype=np.float32)
    slabs = []
    for start, height in zip(np.cumsum((0, *heights[:-1])).tolist(), heights, strict=True):
        def cut(wy, wx, dst, start=start):  # the image mirror-padded by the halo, not copied
            cut_mirrored(image, start + wy - halo, wx - halo, dst)

        slabs.append((cut, out[start : start + height]))
    _through_network(load_network(run, precision), slabs, tile, halo, batch_size, (need, limit))
    return out
