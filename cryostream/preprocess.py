"""The lazy kernels of preprocessing: exact percentiles, the band layout, patches with noise.

Patches come from ``map_overlap`` over a stack chunked in bands of full rows. Band ``j``
starts at ``starts[j]``; with one-sided depth ``(before, after)`` and ``boundary="none"`` it
sees rows ``[starts[j] - before, starts[j] + height + after)`` (no ``before`` for the first
band, no ``after`` for the last) and emits every patch row whose origin it owns. Bands are
``k · stride`` rows high with ``k · stride ≥ 2 (patch - stride)``, the last band absorbs the
remainder, and the edge-flush patch row of ``edge="cover"`` belongs to the last band, so every
patch is cut from one block and no chunk is smaller than the depth (dask never rechunks). The
rows a block borrows from the next band (``after``) are copied into it, so they are kept to at
most half of the band: the reference plan (1024² patches, stride 512) has bands of 1024 rows
and blocks of 1536, not bands of 512 and blocks of 1024 (every row copied twice).
"""

from __future__ import annotations

import dataclasses
import math

import dask.array as da
import numpy as np

from cryostream.config import PrepareConfig
from cryostream.errors import ConfigError, InvalidMicrographError, unnormalisable_fix
from cryostream.io.mrc import MicrographHeader, read_rows
from cryostream.matched import estimate_noise, matched_noise, tile_for
from cryostream.noise import add_noise, noise_cell_rng
from cryostream.patches import patch_origins

_PERCENTILE_STEP = 64  # every 64th pixel brackets the percentile
_SAMPLED_PERCENTILE_MIN = 1 << 16  # np.percentile itself below this many pixels

__all__ = [
    "BandLayout",
    "band_layout",
    "percentile",
    "image_statistics",
    "micrograph_statistics",
    "statistics_and_noise",
    "noise_measurable",
    "check_statistics",
    "HOT_CLIP",
    "mend_hot",
    "noise_rows",
    "matched_noise_rows",
    "band_patch_views",
    "band_patches",
    "normalised_and_noisy",
    "overlap_bands",
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
    k = max(1, math.ceil(2 * (patch_size - stride) / stride))  # the overlap ≤ half a band
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


def percentile(image: np.ndarray, q: float) -> float:
    """``np.percentile(image, q)`` (linear method), bit for bit, of a finite float32 image.

    NumPy partitions a copy of all pixels; here a sample of every 64th pixel brackets the two
    order statistics the percentile interpolates between, one pass counts the pixels below the
    bracket and another gathers those inside it (a few hundred thousand for a 57 Mpixel
    micrograph), and only those are partitioned. The interpolation is NumPy's (in float32,
    the fraction as a Python float). Small images, other dtypes and a bracket that missed go to
    ``np.percentile``.
    """
    flat = np.asarray(image).reshape(-1)
    n = flat.size
    q = float(q)
    virtual = float((n - 1) * np.true_divide(q, 100))
    k = math.floor(virtual)
    if flat.dtype != np.float32 or n < _SAMPLED_PERCENTILE_MIN or not 0 < virtual < n - 1:
        return float(np.percentile(flat, q))
    sample = flat[::_PERCENTILE_STEP].copy()
    centre = k * sample.size / n
    margin = 8 * math.sqrt(sample.size * (q / 100) * (1 - q / 100)) + 16
    first, last = max(0, int(centre - margin)), min(sample.size - 1, int(centre + margin) + 1)
    sample.partition([first, last])
    inside = np.ones(n, dtype=bool)
    below = 0
    if first > 0:  # bracket from below: pixels under sample[first] are counted, not kept
        np.greater_equal(flat, sample[first], out=inside)
        below = n - int(np.count_nonzero(inside))
    if last < sample.size - 1:
        inside &= flat <= sample[last]
    inside = flat[inside]
    if not below <= k < k + 1 < below + inside.size:  # the sample misled: sort them all
        return float(np.percentile(flat, q))
    inside.partition([k - below, k + 1 - below])
    a, b = inside[k - below], inside[k + 1 - below]
    gamma = virtual - k
    diff = b - a
    if gamma >= 0.5:
        return float(b - diff * (1 - gamma))
    return float(a + diff * gamma)


def image_statistics(image: np.ndarray, q: float) -> tuple[float, bool, float, float]:
    """Exact percentile (:func:`percentile`), whether every pixel is finite, min and max of
    one micrograph in memory: two passes for min and max, the percentile's few more."""
    lo, hi = float(image.min()), float(image.max())  # NaN and ±Inf show in one of them
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return float("nan"), False, float("nan"), float("nan")
    return percentile(image, q), True, lo, hi


def micrograph_statistics(header: MicrographHeader, percentile: float) -> tuple[float, bool, float, float]:
    """Exact percentile, whether every pixel is finite, min and max of one whole micrograph."""
    return image_statistics(read_rows(header, 0, header.shape[0]), percentile)


def statistics_and_noise(header: MicrographHeader, percentile: float):
    """:func:`micrograph_statistics` with what is blank where most of the micrograph is, or its
    values too large to measure its noise (refused by :func:`check_statistics`; else None), its
    cold pixels (:func:`~cryostream.prepare_checks.cold_statistics`), the noise estimate (raw
    units; ``None`` if not finite, constant, blank, too large or under 32 px) and the defects
    found (:class:`~cryostream.denoise.defects.Defects`' record, or ``None``) from one read.

    The noise is measured as ``denoise`` measures it: with hot and cold pixels at the median and
    blank rows and columns (a border left by motion correction, a dead line) filled with noise
    of the rest's spread (:func:`~cryostream.denoise.defects.mend`), so that neither counts as
    noise (a blank border over two fifths of a micrograph took 43 % off the estimate). The
    estimate uses ``TILE``-pixel tiles, or the largest power of two that fits a smaller
    micrograph.
    """
    from cryostream.denoise.defects import find_defects, mend, mostly_blank
    from cryostream.prepare_checks import cold_statistics

    image = read_rows(header, 0, header.shape[0])
    stats = image_statistics(image, percentile)
    cold = cold_statistics(image, stats)
    if not noise_measurable(header, stats):
        return (*stats, None, *cold), None, None
    defects = find_defects(image)
    blank = mostly_blank(image, defects)  # nothing to measure or train on: refused after
    if blank:
        return (*stats, blank, *cold), None, None
    with np.errstate(over="ignore", invalid="ignore"):  # told as one problem below, not numpy's
        estimate = estimate_noise(mend(image, defects) if defects else image,
                                  header.pixel_size_angstrom or 1.0, tile=tile_for(image.shape))
    if not estimate.finite:  # values near 10¹⁸ and up: its power spectrum overflows float32
        return (*stats, f"holds values up to {max(map(abs, stats[2:4])):.3g}, too large to measure "
                "its noise (its power spectrum overflows float32): not electron counts as motion "
                "correction writes them", *cold), None, None
    return (*stats, None, *cold), estimate, defects.record() if defects else None


def noise_measurable(header: MicrographHeader, stats) -> bool:
    """Whether :func:`statistics_and_noise` measures the noise of a micrograph with ``stats``."""
    return bool(stats[1]) and stats[2] != stats[3] and tile_for(header.shape) >= 32


def check_statistics(header: MicrographHeader, stats: tuple[float, bool, float, float],
                     percentile: float, fix: str = "choose another --percentile") -> None:
    """Raise :class:`InvalidMicrographError` for NaN/Inf pixels, a blank micrograph, one
    mostly blank (``stats[4]``, where given) or one whose ``percentile`` cannot normalise it
    (``fix``: what else to do then)."""
    value, finite, lo, hi = stats[:4]
    if not finite:
        raise InvalidMicrographError(
            header.path, "holds NaN or Inf pixels", "repair or exclude it (--permissive skips it)"
        )
    if hi == lo:
        raise InvalidMicrographError(
            header.path, f"is constant ({lo:g} everywhere)", "exclude it (--permissive skips it)"
        )
    if len(stats) > 4 and stats[4]:  # what is blank, where most of it is (prepare's pass 1)
        raise InvalidMicrographError(header.path, stats[4], "exclude it (--permissive skips it)")
    if not value > 0:
        raise InvalidMicrographError(
            header.path,
            f"its {percentile:g}th percentile is {value:g}, so it cannot be normalised (a "
            "micrograph in electron counts is positive: is it inverted, or offset?)",
            unnormalisable_fix(fix),
        )


def noise_rows(target: np.ndarray, row_start: int, uid: int, config: PrepareConfig,
               out: np.ndarray | None = None) -> np.ndarray:
    """Noisy copy of rows ``[row_start, row_start + len(target))`` of a normalised micrograph.

    Noise is drawn once per *noise cell* of ``stride`` full rows, seeded by
    ``(seed, uid, cell, 0)``; ``row_start`` must be a multiple of the stride, so any banding
    into multiples of the stride gives the same bytes. ``out`` (float32, C-contiguous, the
    shape of ``target``) receives the result if given.
    """
    s = config.stride
    if row_start % s:
        raise ValueError(f"row_start={row_start} is not a multiple of the stride {s}")
    if out is None:
        out = np.empty(target.shape, dtype=np.float32)
    for r in range(0, target.shape[0], s):
        cell = (row_start + r) // s
        add_noise(target[r : r + s], config.noise, noise_cell_rng(config.seed, uid, cell, 0),
                  out=out[r : r + s])
    return out


def matched_noise_rows(padded: np.ndarray, row_start: int, uid: int, config: PrepareConfig,
                       kernel: np.ndarray, shot_fraction: float, mean: float) -> np.ndarray:
    """Matched noise of rows ``[row_start, row_start + n)`` of a normalised micrograph.

    ``padded`` holds those rows with ``R`` = ``config.noise.radius`` rows and columns more on
    every side (reflected at the image edges). The white driving noise of image row ``q``
    (``-R ≤ q < ny + R``, ``nx + 2R`` values) is seeded by ``(seed, uid, q + R, 1)`` and each
    cell of ``stride`` rows is filtered on its own, so any banding gives the same bytes.
    """
    r, s = config.noise.radius, config.stride
    rows, width = padded.shape[0] - 2 * r, padded.shape[1]
    if row_start % s:
        raise ValueError(f"row_start={row_start} is not a multiple of the stride {s}")
    out = np.empty((rows, width - 2 * r), dtype=np.float32)
    for top in range(0, rows, s):
        n = min(s, rows - top)
        first = row_start + top - r  # image row of the cell's first driving row
        driver = np.stack([
            np.random.default_rng([config.seed, uid, q + r, 1]).standard_normal(width, dtype=np.float32)
            for q in range(first, first + n + 2 * r)])
        out[top : top + n] = matched_noise(
            padded[top : top + n + 2 * r], driver, kernel, alpha=config.noise.alpha,
            shot_fraction=shot_fraction, mean=mean)
    return out


#: A pixel brighter than this many times its micrograph's percentile is a detector defect (a
#: hot pixel; shot noise stays under ten times the 95th percentile down to 0.1 electrons a
#: pixel), and so is one darker than minus this many times (a cold pixel: a dead pixel written
#: far below zero by a gain correction): the store holds the percentile in its place, and the
#: noise is estimated without it.
HOT_CLIP = 20.0


def mend_hot(normalised: np.ndarray) -> np.ndarray:
    """``normalised`` (a micrograph divided by its percentile) with its pixels over
    :data:`HOT_CLIP` or under −:data:`HOT_CLIP` set to 1, the percentile; in place, and
    returned."""
    hot = normalised > HOT_CLIP
    hot |= normalised < -HOT_CLIP
    if hot.any():
        normalised[hot] = 1.0
    return normalised


def _normalise_and_noise(block, target_block=None, block_info=None, *, layout, config, percentiles,
                         uids, matched=None):
    m, band, _ = block_info[0]["chunk-location"]
    stored = config.noise.mode == "stored"
    height = layout.heights[band]
    extra = block.shape[1] - height  # halo rows, matched noise only: R above (not band 0), R below
    above = min(extra, config.noise.radius) if band > 0 else 0
    out = np.empty((1, 2 if stored else 1, height, block.shape[2]), dtype=np.float32)
    scale = np.float32(1.0 / percentiles[m])
    mend_hot(np.multiply(block[0, above : above + height], scale, out=out[0, -1]))
    if stored and matched is not None:
        r = config.noise.radius
        below = block.shape[1] - height - above
        padded = np.pad(mend_hot(block[0] * scale), ((r - above, r - below), (r, r)),
                        mode="reflect")
        out[0, 0] = out[0, -1] + matched_noise_rows(
            padded, layout.starts[band], uids[m], config, matched["kernel"][m],
            float(matched["shot_fraction"][m]), float(matched["mean"][m]))
    elif target_block is not None:  # paired: the micrograph is the input, the target its own file
        out[0, 0] = out[0, -1]
        np.multiply(target_block[0], scale, out=out[0, -1])
    elif stored:
        noise_rows(out[0, -1], layout.starts[band], uids[m], config, out=out[0, 0])
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
    stack: da.Array, config: PrepareConfig, percentiles: np.ndarray, uids: tuple[int, ...],
    matched: dict | None = None, targets: da.Array | None = None,
) -> tuple[da.Array, BandLayout]:
    """Lazy (micrograph, kind, y, x) float32: kind = (input, target), or (target,) on-device.

    Targets are each micrograph divided by its percentile; inputs add noise once per pixel
    (:func:`noise_rows`, or :func:`matched_noise_rows` for matched noise, which needs
    ``matched``: per-micrograph ``kernel``, ``shot_fraction`` and ``mean`` in normalised
    units). With ``targets`` (a stack like ``stack``, noise model ``none``) the inputs are the
    micrographs themselves and the targets those images, both divided by the micrograph's
    percentile. Chunked in the bands of :func:`band_layout`.
    """
    layout = band_layout(stack.shape[1:], config.patch_size, config.stride, config.edge)
    banded = stack.rechunk({0: 1, 1: layout.heights, 2: -1})
    kinds = 2 if config.noise.mode == "stored" else 1
    kwargs = dict(
        new_axis=[1],
        chunks=(banded.chunks[0], (kinds,), banded.chunks[1], banded.chunks[2]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        layout=layout,
        config=config,
        percentiles=np.asarray(percentiles, dtype=np.float64),
        uids=tuple(int(u) for u in uids),
    )
    if config.noise.model == "matched" and config.noise.mode == "stored":
        if matched is None:
            raise ValueError("matched noise needs the per-micrograph noise estimates")
        r = config.noise.radius
        if len(layout.heights) > 1 and min(layout.heights) < r:
            raise ConfigError(f"radius={r}: larger than the bands ({min(layout.heights)} rows); "
                              "use a smaller --noise-radius or a larger --stride")
        out = banded.map_overlap(_normalise_and_noise, depth={0: 0, 1: r, 2: 0}, boundary="none",
                                 trim=False, matched=matched, **kwargs)
    elif targets is not None:
        if config.noise.model != "none" or targets.shape != stack.shape:
            raise ConfigError("separate targets need noise='none' and one target per micrograph, "
                              "of the same shape")
        paired = targets.rechunk({0: 1, 1: layout.heights, 2: -1})
        out = da.map_blocks(_normalise_and_noise, banded, paired, **kwargs)
    else:
        if config.noise.model == "none":
            raise ConfigError("noise=none adds no noise: give the targets (--targets) or "
                              "choose a noise model")
        out = banded.map_blocks(_normalise_and_noise, **kwargs)
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
