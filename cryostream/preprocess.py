"""The lazy kernels of preprocessing: exact percentiles, the band layout, patches with noise.

Patches come from ``map_overlap`` over a stack chunked in bands of full rows. Band ``j``
starts at ``starts[j]``; with one-sided depth ``(before, after)`` and ``boundary="none"`` it
sees rows ``[starts[j] - before, starts[j] + height + after)`` (no ``before`` for the first
band, no ``after`` for the last) and emits every patch row whose origin it owns. Bands are
``k · stride`` rows high with ``k · stride ≥ patch - stride``, the last band absorbs the
remainder, and the edge-flush patch row of ``edge="cover"`` belongs to the last band, so every
patch is cut from one block and no chunk is smaller than the depth (dask never rechunks).
"""

from __future__ import annotations

import dataclasses
import math

import dask.array as da
import numpy as np

from cryostream.config import PrepareConfig
from cryostream.errors import InvalidMicrographError
from cryostream.io.mrc import MicrographHeader, read_rows
from cryostream.noise import add_noise, patch_rng
from cryostream.patches import patch_origins

__all__ = [
    "BandLayout",
    "band_layout",
    "micrograph_statistics",
    "check_statistics",
    "band_patches",
    "extract_patches",
]


@dataclasses.dataclass(frozen=True)
class BandLayout:
    """How the y axis is cut into bands and which patch rows each band emits."""

    heights: tuple[int, ...]
    before: int
    after: int
    row_origins: tuple[tuple[int, ...], ...]
    col_origins: tuple[int, ...]

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(sum(self.heights[:j]) for j in range(len(self.heights)))

    def top(self, band: int) -> int:
        """First image row of band ``band``'s overlapped block."""
        return self.starts[band] - (self.before if band > 0 else 0)


def band_layout(shape: tuple[int, int], patch_size: int, stride: int, edge: str) -> BandLayout:
    """The band layout of an image of ``shape`` = (ny, nx) (see the module docstring)."""
    ny, nx = shape
    origins = [int(o) for o in patch_origins(ny, patch_size, stride, edge)]
    cols = tuple(int(o) for o in patch_origins(nx, patch_size, stride, edge))
    k = max(1, math.ceil((patch_size - stride) / stride))
    height = k * stride
    n_bands = max(1, ny // height)
    heights = [height] * (n_bands - 1) + [ny - height * (n_bands - 1)]
    last_start = height * (n_bands - 1)
    rows: list[list[int]] = [[] for _ in range(n_bands)]
    for o in origins:
        band = min(o // height, n_bands - 1)
        if edge == "cover" and o == ny - patch_size and o % stride:
            band = n_bands - 1  # the edge-flush row
        rows[band].append(o)
    after = max(0, patch_size - stride) if n_bands > 1 else 0
    before = max(0, last_start - min(rows[-1])) if n_bands > 1 and rows[-1] else 0
    return BandLayout(tuple(heights), before, after, tuple(tuple(r) for r in rows), cols)


def micrograph_statistics(header: MicrographHeader, percentile: float) -> tuple[float, bool, float, float]:
    """Exact percentile, whether every pixel is finite, min and max of one whole micrograph."""
    image = read_rows(header, 0, header.shape[0])
    finite = bool(np.isfinite(image).all())
    if not finite:
        return float("nan"), False, float("nan"), float("nan")
    return (
        float(np.percentile(image, percentile)),
        True,
        float(image.min()),
        float(image.max()),
    )


def check_statistics(header: MicrographHeader, stats: tuple[float, bool, float, float],
                     percentile: float) -> None:
    """Raise :class:`InvalidMicrographError` for NaN/Inf pixels or a blank micrograph."""
    value, finite, lo, hi = stats
    if not finite:
        raise InvalidMicrographError(
            header.path, "holds NaN or Inf pixels", "repair or exclude it (--permissive skips it)"
        )
    if hi == lo:
        raise InvalidMicrographError(
            header.path, f"is constant ({lo:g} everywhere)", "exclude it (--permissive skips it)"
        )
    if not value > 0:
        raise InvalidMicrographError(
            header.path,
            f"its {percentile:g}th percentile is {value:g}, so it cannot be normalised",
            "exclude it (--permissive skips it) or choose another --percentile",
        )


def noise_rows(target: np.ndarray, row_start: int, uid: int, config: PrepareConfig) -> np.ndarray:
    """Noisy copy of rows ``[row_start, row_start + len(target))`` of a normalised micrograph.

    Noise is drawn once per *noise cell* of ``stride`` full rows, seeded by
    ``(seed, uid, cell, 0)``; ``row_start`` must be a multiple of the stride, so any banding
    into multiples of the stride gives the same bytes.
    """
    s = config.stride
    if row_start % s:
        raise ValueError(f"row_start={row_start} is not a multiple of the stride {s}")
    out = np.empty_like(target)
    for r in range(0, target.shape[0], s):
        cell = (row_start + r) // s
        out[r : r + s] = add_noise(target[r : r + s], config.noise, patch_rng(config.seed, uid, cell, 0))
    return out


def _normalise_and_noise(block, block_info=None, *, layout, config, percentiles, uids):
    m, band, _ = block_info[0]["chunk-location"]
    stored = config.noise.mode == "stored"
    out = np.empty((1, 2 if stored else 1, *block.shape[1:]), dtype=np.float32)
    np.multiply(block[0], np.float32(1.0 / percentiles[m]), out=out[0, -1])
    if stored:
        out[0, 0] = noise_rows(out[0, -1], layout.starts[band], uids[m], config)
    return out


def band_patch_views(block: np.ndarray, band: int, layout: BandLayout, patch_size: int) -> list[np.ndarray]:
    """Views (no copies) of one band's patches, row by row: each (kinds, P, P)."""
    p, top = patch_size, layout.top(band)
    return [
        block[0, :, y - top : y - top + p, x : x + p]
        for y in layout.row_origins[band]
        for x in layout.col_origins
    ]


def band_patches(block: np.ndarray, band: int, *, layout: BandLayout, patch_size: int) -> np.ndarray:
    """Patches of one band of a (1, kinds, rows, x) block: (rows, cols, kinds, P, P) float32."""
    views = band_patch_views(block, band, layout, patch_size)
    rows, cols = len(layout.row_origins[band]), len(layout.col_origins)
    out = np.empty((rows * cols, block.shape[1], patch_size, patch_size), dtype=np.float32)
    for i, view in enumerate(views):
        out[i] = view
    return out.reshape(rows, cols, *out.shape[1:])


def _band_patches_block(block, block_info=None, *, layout, patch_size):
    _, _, band, _ = block_info[0]["chunk-location"]
    return band_patches(block, band, layout=layout, patch_size=patch_size)[None]


def normalised_and_noisy(
    stack: da.Array, config: PrepareConfig, percentiles: np.ndarray, uids: tuple[int, ...]
) -> tuple[da.Array, BandLayout]:
    """Lazy (micrograph, kind, y, x) float32: kind = (input, target), or (target,) on-device.

    Targets are each micrograph divided by its percentile; inputs add noise once per pixel
    (:func:`noise_rows`). Chunked in the bands of :func:`band_layout`.
    """
    layout = band_layout(stack.shape[1:], config.patch_size, config.stride, config.edge)
    banded = stack.rechunk({0: 1, 1: layout.heights, 2: -1})
    kinds = 2 if config.noise.mode == "stored" else 1
    out = banded.map_blocks(
        _normalise_and_noise,
        new_axis=[1],
        chunks=(banded.chunks[0], (kinds,), banded.chunks[1], banded.chunks[2]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        layout=layout,
        config=config,
        percentiles=np.asarray(percentiles, dtype=np.float64),
        uids=tuple(int(u) for u in uids),
    )
    return out, layout


def overlap_bands(prepared: da.Array, layout: BandLayout, func, **kwargs) -> da.Array:
    """``map_overlap`` of ``func`` over the bands of a (micrograph, kind, y, x) array."""
    return prepared.map_overlap(
        func,
        depth={0: 0, 1: 0, 2: (layout.before, layout.after), 3: 0},
        boundary="none",
        trim=False,
        layout=layout,
        **kwargs,
    )


def extract_patches(
    stack: da.Array,
    config: PrepareConfig,
    percentiles: np.ndarray,
    uids: tuple[int, ...],
) -> da.Array:
    """Lazy patches of a stack: (micrograph, patch_row, patch_col, kind, P, P) float32.

    ``stack`` is (micrograph, y, x) with any chunking (it is re-banded here); ``percentiles``
    holds the normalising value of each micrograph; ``uids`` their stable ids. kind is
    (input, target), or (target,) with on-device noise.
    """
    prepared, layout = normalised_and_noisy(stack, config, percentiles, uids)
    p = config.patch_size
    chunks = (
        prepared.chunks[0],
        tuple(len(r) for r in layout.row_origins),
        (len(layout.col_origins),),
        prepared.chunks[1],
        (p,),
        (p,),
    )
    # (m, kind, y, x) -> (m, rows, cols, kind, P, P): drop kind and x, add four new axes
    return overlap_bands(
        prepared, layout, _band_patches_block,
        chunks=chunks, drop_axis=[1], new_axis=[3, 4, 5],
        dtype=np.float32, meta=np.empty((0,) * 6, dtype=np.float32), patch_size=p,
    )
