"""Noise models: one definition, used by preprocessing (NumPy) and, later, on the device.

``gaussian``: ``x + N(0, σ²)``; ``poisson``: ``Poisson(dose · max(x, 0)) / dose``;
``poisson-gaussian``: the Poisson draw, then the Gaussian; ``matched``: the micrograph's own
noise statistics (:mod:`cryostream.matched`; per band in ``preprocess``, per patch here).
Noise is seeded from what it belongs to, never from scheduling:
``default_rng([seed, micrograph_uid, cell, stream])`` (:func:`noise_cell_rng`).

Stored noise is drawn with two samplers of this module, each several times faster than
NumPy's for these sizes and exact in distribution (tested against NumPy's in
``tests/test_noise.py``):

- :func:`poisson` for the counts. The means here are small (dose 10 × normalised intensity:
  about 0–30). A mean ``λ`` is split into ``λ₀ + δ``, ``λ₀`` on a grid of step 1/8 and
  ``0 ≤ δ < 1/8``; independent Poisson variables add, so ``Poisson(λ) = Poisson(λ₀) +
  Poisson(δ)``. ``Poisson(λ₀)`` is drawn by inversion of its distribution function,
  tabulated once in float64 for every grid mean below :data:`TABLE_MAX_MEAN`, through a guide
  table (Chen & Asau, 1974) that answers most uniforms with one lookup; ``Poisson(δ)`` by
  inversion with a second uniform (zero for at least 88 % of the pixels, after one
  comparison with ``e^{-δ}``). Means of :data:`TABLE_MAX_MEAN` or more go to NumPy's
  sampler. What is not exact is float64 rounding: of the tabulated distribution (set to
  exactly 1 where less than 1e-17 of the mass is left) and of the 53-bit uniforms, as in any
  inversion.
- :func:`standard_normal` for the Gaussian: Box–Muller, the radius in float64, the angle in
  float32 (the output's resolution).

Both draw from the generator in blocks of :data:`BLOCK` values in a fixed order, so a result
depends only on the generator's state and the means: a noise cell gives the same bytes however
the micrograph is chunked, threaded or scheduled. They are not the bytes NumPy's samplers give
for the same seed: stores prepared before these samplers (cryostream up to commit 72186bc)
hold other draws from the same distribution, and a store resumed across that change mixes the
two (its shards stay valid).
"""

from __future__ import annotations

import functools

import numpy as np

from cryostream.config import NoiseConfig

__all__ = ["BLOCK", "TABLE_MAX_MEAN", "noise_cell_rng", "poisson", "standard_normal", "add_noise"]

#: Means at or above this go to NumPy's ``Generator.poisson``; smaller ones use the tables.
TABLE_MAX_MEAN = 64.0
#: Values drawn per block (the sampler's working set stays in the CPU's L2 cache).
BLOCK = 1 << 15

_GRID = 8  # table means every 1/8 (a power of two: λ·8 and its fractional part are exact)
_GUIDE_BITS = 10
_GUIDE = 1 << _GUIDE_BITS  # guide cells per table row (a power of two: ⌊u·G⌋ is exact)
_TAIL = 1e-17  # each row goes on until the probability left beyond it is below this
_IMPURE = np.int16(-0x8000)
_DELTA_MAX = 40  # Poisson(δ < 1/8) exceeds this with probability below 1e-80


@functools.lru_cache(maxsize=1)
def _poisson_tables() -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative distributions of Poisson(r / 8) (rows, K) float64 and their guide table.

    ``guide[r, j]`` is the smallest ``k`` with ``cdf[r, k] > j / G`` (the answer for every
    uniform in cell ``[j / G, (j + 1) / G)`` when no ``cdf[r, k]`` falls inside the cell), with
    the sign bit set when one does (then search on from it).
    """
    from scipy.special import pdtr, pdtrc

    rows = int(TABLE_MAX_MEAN * _GRID)
    means = np.arange(rows, dtype=np.float64) / _GRID
    k = np.arange(4 * int(TABLE_MAX_MEAN) + 64)
    width = int(np.argmax(pdtrc(k, means[-1]) < _TAIL)) + 2
    cdf = pdtr(k[None, :width], means[:, None])
    cdf = np.minimum(np.maximum.accumulate(cdf, axis=1), 1.0)
    cdf[:, -1] = 1.0
    lo = np.arange(_GUIDE, dtype=np.float64) / _GUIDE
    hi = np.arange(1, _GUIDE + 1, dtype=np.float64) / _GUIDE
    guide = np.empty((rows, _GUIDE), dtype=np.int16)
    for r in range(rows):
        first = np.searchsorted(cdf[r], lo, side="right")  # #{k: F(k) ≤ j/G}
        last = np.searchsorted(cdf[r], hi, side="left")  # #{k: F(k) < (j+1)/G}
        guide[r] = first.astype(np.int16)
        guide[r][last != first] |= _IMPURE
    cdf.setflags(write=False)
    guide.setflags(write=False)
    return cdf.ravel(), guide.ravel(), width


def _poisson_block(scaled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts of one block of means given as ``8 λ`` (1-D float, overwritten).

    Returns int16 counts, int64 when a mean reaches :data:`TABLE_MAX_MEAN`.
    """
    cdf, guide, width = _poisson_tables()
    n = scaled.size
    big = None
    limit = TABLE_MAX_MEAN * _GRID
    if n and not scaled.max() < limit:  # large means (or NaN): NumPy's sampler decides
        big = np.flatnonzero(~(scaled < limit))
        big_means = scaled[big].astype(np.float64) / _GRID
        scaled[big] = 0
    row = scaled.astype(np.intp)  # ⌊8 λ⌋, the table row of λ₀
    frac = scaled - row  # 8 δ, exact, float64
    u = rng.random(n)
    cell = row
    cell <<= _GUIDE_BITS
    cell |= (u * _GUIDE).astype(np.intp)  # row · G + ⌊u · G⌋
    counts = guide[cell]
    impure = np.flatnonzero(counts < 0)
    counts &= 0x7FFF
    if impure.size:  # a distribution value inside the guide cell: search on from its start
        uu = u[impure]
        pos = (cell[impure] >> _GUIDE_BITS) * width + counts[impure]
        ahead = np.flatnonzero(cdf[pos] <= uu)
        while ahead.size:
            impure, uu, pos = impure[ahead], uu[ahead], pos[ahead] + 1
            counts[impure] += 1
            ahead = np.flatnonzero(cdf[pos] <= uu)
    # Poisson(δ) by inversion: at least one event when v ≥ F(0) = e^{-δ}
    v = rng.random(n)
    pmf = frac
    pmf *= -1.0 / _GRID
    np.exp(pmf, out=pmf)
    hit = np.flatnonzero(v >= pmf)
    if hit.size:
        s = scaled[hit].astype(np.float64)
        delta = (s - np.floor(s)) / _GRID
        v, pmf = v[hit], pmf[hit]
        cum, k = pmf.copy(), 0
        while hit.size and k < _DELTA_MAX:
            k += 1
            counts[hit] += 1
            pmf *= delta / k
            cum += pmf
            more = np.flatnonzero(v >= cum)
            hit, v, delta, pmf, cum = hit[more], v[more], delta[more], pmf[more], cum[more]
    if big is not None:
        counts = counts.astype(np.int64)
        counts[big] = rng.poisson(big_means)
    return counts


def poisson(mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts of ``mean``: exact, and faster than ``rng.poisson`` for means below 64.

    Parameters
    ----------
    mean : array_like of float
        Non-negative, finite means (any shape); float32 means are used as they are (no
        rounding), others as float64.
    rng : numpy.random.Generator
        Drawn from in blocks of :data:`BLOCK` values (see the module docstring): the same
        state and means give the same counts.

    Returns
    -------
    numpy.ndarray of int64, the shape of ``mean``

    Examples
    --------
    >>> import numpy as np
    >>> counts = poisson(np.full(100_000, 5.0), np.random.default_rng(0))
    >>> counts.dtype, counts.shape
    (dtype('int64'), (100000,))
    >>> bool(abs(counts.mean() - 5) < 0.05 and abs(counts.var() - 5) < 0.2)
    True
    """
    mean = np.asarray(mean)
    if mean.dtype != np.float32:
        mean = mean.astype(np.float64)
    flat = mean.reshape(-1)
    if flat.size and not (np.isfinite(flat).all() and flat.min() >= 0):
        raise ValueError("poisson: every mean must be finite and non-negative")
    out = np.empty(flat.size, dtype=np.int64)
    grid = flat.dtype.type(_GRID)
    for start in range(0, flat.size, BLOCK):
        out[start : start + BLOCK] = _poisson_block(flat[start : start + BLOCK] * grid, rng)
    return out.reshape(mean.shape)


def standard_normal(size: int, rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    """``size`` standard normal float32 values by the Box–Muller transform, twice NumPy's speed.

    For each pair, the radius ``√(−2 ln(1 − u))`` is computed in float64 from a 53-bit
    uniform (tails reach 8.57 σ, beyond which lies 1e-17 of the mass) and rounded to float32;
    the angle ``2π v`` comes from a 24-bit float32 uniform and its cosine and sine are taken
    in float32, which is the output's own resolution. The first half of the result holds the
    cosines, the second the sines; each call draws ``⌈size / 2⌉`` float64 uniforms, then as
    many float32 ones.

    Parameters
    ----------
    size : int
        How many values.
    rng : numpy.random.Generator
    out : numpy.ndarray of float32, shape (size,), optional
        Receives the values.

    Returns
    -------
    numpy.ndarray of float32, shape (size,)
    """
    if out is None:
        out = np.empty(size, dtype=np.float32)
    half = (size + 1) // 2
    radius = rng.random(half)
    np.subtract(1.0, radius, out=radius)  # (0, 1]: no log(0)
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    r32 = radius.astype(np.float32)
    angle = rng.random(half, dtype=np.float32)
    angle *= np.float32(2 * np.pi)
    np.cos(angle, out=out[:half])
    out[:half] *= r32
    rest = size - half
    np.sin(angle[:rest], out=out[half:])
    out[half:] *= r32[:rest]
    return out


def noise_cell_rng(seed: int, micrograph_uid: int, cell: int, stream: int = 0) -> np.random.Generator:
    """The generator of one noise cell, from its meaning: the random ``seed``, the micrograph,
    the cell (``stride`` full rows, numbered from the top) and a ``stream`` (0 for the stored
    noise), so any chunking, thread or cluster draws the same numbers."""
    return np.random.default_rng([seed, micrograph_uid, cell, stream])


def add_noise(target: np.ndarray, noise: NoiseConfig, rng: np.random.Generator,
              out: np.ndarray | None = None) -> np.ndarray:
    """A noisy float32 copy of ``target`` (normalised intensities) under ``noise``.

    Poisson counts come from :func:`poisson`'s sampler and the Gaussian from
    :func:`standard_normal`, block by block of :data:`BLOCK` pixels in C order: the counts
    of a block, then its Gaussian. ``out`` (float32, C-contiguous, the shape of
    ``target``) receives the result if given; it may be ``target`` itself.
    """
    target = np.asarray(target, dtype=np.float32)
    if out is None:
        out = np.empty(target.shape, dtype=np.float32)
    elif out.shape != target.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float32 array of the target's shape")
    src, dst = target.reshape(-1), out.reshape(-1)
    shot = noise.model in ("poisson", "poisson-gaussian")
    gauss = noise.model in ("gaussian", "poisson-gaussian") and noise.sigma > 0
    # 8 λ = max(x, 0) · (dose · 8), exactly 8 × (max(x, 0) · dose) in float32
    dose8 = np.float32(noise.dose) * np.float32(_GRID)
    inv_dose, sigma = np.float32(1 / noise.dose), np.float32(noise.sigma)
    buf = np.empty(min(BLOCK, src.size), dtype=np.float32)
    for start in range(0, src.size, BLOCK):
        x, y = src[start : start + BLOCK], dst[start : start + BLOCK]
        if shot:
            scaled = np.maximum(x, 0, out=buf[: x.size])
            scaled *= dose8
            np.multiply(_poisson_block(scaled, rng), inv_dose, out=y, dtype=np.float32)
        else:
            np.copyto(y, x)
        if gauss:
            z = standard_normal(y.size, rng, out=buf[: y.size])
            z *= sigma
            y += z
    return out


def add_noise_jax(target, noise: NoiseConfig, key, matched: dict | None = None):
    """The same noise models as :func:`add_noise`, on the device with a JAX key.

    ``target`` is a float array (any shape; (B, P, P) for matched noise); the result is
    float32. Used by the training loader for stores prepared with ``noise_mode="on-device"``:
    fresh noise every step. Matched noise needs ``matched``: per-patch ``kernel`` (B, K, K),
    ``shot_fraction`` and ``mean`` (B,) of each patch's micrograph
    (:func:`cryostream.matched.matched_noise_jax`).
    """
    import jax
    import jax.numpy as jnp

    target = jnp.asarray(target, dtype=jnp.float32)
    if noise.model == "matched":
        from cryostream.matched import matched_noise_jax

        return target + matched_noise_jax(target, matched["kernel"], matched["shot_fraction"],
                                          matched["mean"], noise.alpha, key)
    k_poisson, k_gauss = jax.random.split(key)
    if noise.model in ("poisson", "poisson-gaussian"):
        lam = jnp.maximum(target, 0) * noise.dose
        out = jax.random.poisson(k_poisson, lam).astype(jnp.float32) * (1 / noise.dose)
    else:
        out = target
    if noise.model in ("gaussian", "poisson-gaussian") and noise.sigma > 0:
        out = out + noise.sigma * jax.random.normal(k_gauss, target.shape, dtype=jnp.float32)
    return out
