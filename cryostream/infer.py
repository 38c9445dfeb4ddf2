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
import json
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["receptive_radius", "default_halo", "tile_cores", "auto_tile", "n2n_correct",
           "clamp_negative_rings", "match_wiener_gain", "dihedral_mean", "ctf_gain_check",
           "calibrate_rings",
           "recorruption_score", "denoise_array", "denoise", "rank_runs"]

# Largest window side (tile + 2·halo) and pixels per device call that ``tile=None`` chooses:
# 4352² windows, two per call, were measured on an 80 GB H100; CPUs keep windows small.
MAX_WINDOW = {"gpu": 4352, "cpu": 1536}
MAX_BATCH_PIXELS = {"gpu": 2 * 4352**2, "cpu": 8 * 1536**2}


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
        raise ConfigError(f"tile={tile}: larger than the {length}-pixel axis; use a smaller --tile")
    cores = [(p, p, p + tile) for p in range(0, length - tile + 1, tile)]
    end = cores[-1][2]
    if end < length:
        start = (length - tile) // multiple * multiple
        cores.append((start, end, length))
    return cores


def _band_heights(ny: int, tile: int) -> tuple[int, ...]:
    """Rows of each band: ``tile`` each, the last one taking the remainder."""
    n_bands = ny // tile
    return (tile,) * (n_bands - 1) + (ny - tile * (n_bands - 1),)


def _windows(shape: tuple[int, int], tile: int, multiple: int) -> int:
    """Windows over a micrograph, band by band."""
    across = len(tile_cores(shape[1], tile, multiple))
    return sum(len(tile_cores(h, tile, multiple)) for h in _band_heights(shape[0], tile)) * across


def _device_batch(batch_size: int, windows: int, side: int) -> int:
    """Windows per device call: at most ``batch_size``, ``windows`` (no empty padding windows)
    and the backend's pixel cap (:data:`MAX_BATCH_PIXELS`) for windows of ``side``²."""
    return max(1, min(batch_size, windows, MAX_BATCH_PIXELS[_backend()] // side**2))


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
        max_window = MAX_WINDOW[_backend()]
    ny, nx = shape
    top = min(ny, nx, max_window - 2 * halo) // m * m
    if top < m:
        raise ConfigError(f"micrographs of {ny} × {nx} with a {halo}-px halo leave no room for a "
                          f"window of at most {max_window}²; pass tile= (--tile)")
    return min(range(m, top + 1, m), key=lambda t: (_windows(shape, t, m) * (t + 2 * halo) ** 2, -t))


def _backend() -> str:
    import jax

    return "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm") else "cpu"


def n2n_correct(output: np.ndarray, noisy: np.ndarray, alpha2: float, *,
                ring_clamp: bool = False, keep_mean: bool = True, noise=None) -> np.ndarray:
    """Noisier2Noise: turn E[y | z] into an estimate of the clean signal.

    For a network trained to predict a noisy micrograph ``y`` from ``z = y + m``, where the
    added noise ``m`` has ``alpha2`` times the variance of the micrograph's own noise,
    ``x̂ = ((1 + α²)·f(z) − z) / α²`` (Moran et al., CVPR 2020). Applied to a micrograph
    itself (no added noise), ``noisy`` is the micrograph.

    ``ring_clamp`` (2-D images): the correction multiplies the network's error by
    ``(1 + α²) / α²``. Where the network's transfer falls below ``1 / (1 + α²)``, the corrected
    output is anti-correlated with the input. The truth never is (its covariance with the
    input is its power), so those rings of spatial frequency are set to zero
    (:func:`clamp_negative_rings`).

    ``keep_mean``: the noise has zero mean, so the clean image's mean is the input's (to within
    σ/√pixels); the correction would multiply the network's own offset by ``(1 + α²) / α²``
    (0.0015–0.0036 on simulated micrographs normalised to their 95th percentile, 0.03–0.18 dB
    of PSNR), so the corrected image is given the input's mean.

    ``noise`` (the micrograph's :class:`~cryostream.matched.NoiseEstimate`, in the units of
    ``noisy``): give the corrected image the Wiener filter's linear response
    (:func:`match_wiener_gain`), after the clamp.
    """
    if not alpha2 > 0:
        raise ConfigError(f"alpha2={alpha2}: the relative noise strength must be > 0")
    corrected = ((1 + alpha2) * np.asarray(output) - noisy) / alpha2
    if ring_clamp:
        corrected = clamp_negative_rings(corrected, noisy)
    if keep_mean:
        shift = np.mean(noisy, dtype=np.float64) - np.mean(corrected, dtype=np.float64)
        corrected = corrected + np.asarray(shift, dtype=corrected.dtype)
    if noise is not None:
        corrected = match_wiener_gain(corrected, noisy, noise)
    return corrected


def match_wiener_gain(estimate: np.ndarray, noisy: np.ndarray, noise, *,
                      min_coefficients: int = 128, ctf=None) -> np.ndarray:
    """Give a denoised image the Wiener filter's linear response; keep everything else.

    Per ring of spatial frequency (:func:`cryostream.metrics.merged_rings`), the estimate
    ``E`` splits into a part proportional to the micrograph ``Y`` and a part ``R``
    uncorrelated with it over the ring: ``E = g·Y + R`` with ``g = Re⟨E, Y⟩ / ⟨Y, Y⟩``. For any
    mix ``a·Y + R``, the error against the truth ``X`` is least at ``a = Re⟨X, Y⟩ / ⟨Y, Y⟩``,
    whatever ``R`` is (``R ⟂ Y``): the Wiener gain. It needs no truth: ``1 − N / P`` with
    ``P`` the micrograph's power over the ring and ``N`` the measured noise power (``noise``,
    a :class:`~cryostream.matched.NoiseEstimate` in the units of ``noisy``), clipped to
    [0, 1]. The result is ``w·Y + R``: the network keeps what it found beyond a linear filter
    (particle shapes), and its linear response, which a U-Net's receptive field cannot make
    follow the Thon rings, becomes the Wiener filter's. The mean is the micrograph's.

    ``ctf`` (a :class:`~cryostream.ctf.CTFFit` of the micrograph): above 20 Å the linear
    response is the CTF-shaped Wiener gain of each coefficient
    (:func:`~cryostream.ctf.ctf_wiener_gain`), which follows the Thon rings and their
    astigmatism instead of averaging over each ring.
    """
    import scipy.fft

    from cryostream.metrics import _merged_ring_map

    noisy = np.asarray(noisy, np.float32)
    estimate = np.asarray(estimate, np.float32)
    ny, nx = noisy.shape
    ring, merged, weight = _merged_ring_map((ny, nx), min_coefficients)
    bins = merged[ring]
    y = scipy.fft.rfft2(noisy - noisy.mean(), workers=-1)
    e = scipy.fft.rfft2(estimate - estimate.mean(), workers=-1)
    gain, power = _ring_gain(e, y, bins, weight)
    # the measured noise of each ring, summed per bin with the same coefficient weights
    ring_weight = np.bincount(ring.ravel(), weight.ravel(), minlength=merged.size)
    noise_power = np.bincount(merged, ring_weight * noise.ring_power((ny, nx), merged.size))
    change = np.clip(1 - noise_power / np.maximum(power, 1e-30), 0.0, 1.0) - gain
    change[0] = 0.0
    change = change.astype(np.float32)[bins]
    if ctf is not None:
        from cryostream.ctf import ctf_wiener_gain

        shaped, above = ctf_wiener_gain(y, (ny, nx), ctf)
        change = np.where(above, shaped - gain.astype(np.float32)[bins], change)
    e += change * y
    out = scipy.fft.irfft2(e, s=(ny, nx), workers=-1)
    return (out + np.float32(noisy.mean())).astype(np.float32)


def _ring_gain(estimate, image, bins, weight):
    """Per bin of ``bins``: the regression gain ``Re⟨E, Y⟩ / ⟨Y, Y⟩`` of the spectrum
    ``estimate`` on the spectrum ``image`` (``rfft2`` coefficients, ``weight`` for conjugate
    pairs), and ``⟨Y, Y⟩``."""
    flat = bins.ravel()
    power = np.bincount(flat, (weight * (image.real**2 + image.imag**2)).ravel())
    cross = np.bincount(flat, (weight * (estimate.real * image.real
                                         + estimate.imag * image.imag)).ravel())
    return cross / np.maximum(power, 1e-30), power


def calibrate_rings(pipeline, noisy: np.ndarray, noise, *, draws: int = 4, beta: float = 0.5,
                    seed: int = 0, min_coefficients: int = 4096, max_weight: float = 3.0):
    """Weigh, per ring, the part of a denoiser's output that no linear filter of the micrograph
    makes, with weights fitted by recorruption: no ground truth.

    ``pipeline`` maps a normalised 2-D micrograph to its estimate (the whole denoiser: network,
    correction, clamp, gain). Per ring of spatial frequency (:func:`cryostream.metrics
    .merged_rings`), its output is ``g·Y + R`` with ``R`` uncorrelated with the micrograph
    ``Y`` (:func:`match_wiener_gain`). ``R`` holds what the network found (particle shapes)
    and its error, amplified by the Noisier2Noise correction; the best weight ``b`` of ``R``
    is ``Re⟨X, R⟩ / ⟨R, R⟩``, which needs the truth ``X``.

    Recorrupted-to-recorrupted (Pang et al., CVPR 2021): with ``m`` drawn like the micrograph's
    own noise (:func:`cryostream.matched.matched_noise_image`), ``ŷ = y + β·m`` and
    ``ỹ = y − m / β`` carry independent noise (for Gaussian noise), so ``Re⟨ỹ, R(ŷ)⟩`` is an
    unbiased estimate of ``Re⟨X, R(ŷ)⟩``. Each of ``draws`` passes runs ``pipeline`` on one
    ``ŷ``; the sums over passes give ``b`` per ring, clipped to ``[0, max_weight]``, fitted
    at the noise level ``(1 + β²)`` times the micrograph's and applied to the micrograph's own
    output. ``noise`` is the micrograph's :class:`~cryostream.matched.NoiseEstimate` (in the
    units of ``noisy``).

    Returns ``(estimate, weights)``: the calibrated image (the pipeline's mean) and ``b`` per
    merged ring.
    """
    import scipy.fft

    from cryostream.matched import matched_noise_image
    from cryostream.metrics import merged_rings

    if draws < 1 or not beta > 0:
        raise ConfigError(f"draws={draws}, beta={beta}: need at least one draw and beta > 0")
    noisy = np.asarray(noisy, np.float32)
    ny, nx = noisy.shape
    bins, weight = merged_rings((ny, nx), min_coefficients)
    flat = bins.ravel()

    def spectrum(image):
        return scipy.fft.rfft2(image - np.float32(image.mean()), workers=-1)

    def ring_sum(values):
        return np.bincount(flat, (weight * values).ravel())

    def beyond_linear(estimate, image_spectrum):
        """The part of ``estimate``'s spectrum uncorrelated with the image, ring by ring."""
        gain = _ring_gain(estimate, image_spectrum, bins, weight)[0].astype(np.float32)
        return estimate - gain[bins] * image_spectrum

    base = np.asarray(pipeline(noisy), np.float32)
    base_spectrum = spectrum(base)
    found = beyond_linear(base_spectrum, spectrum(noisy))
    numerator = np.zeros(int(flat.max()) + 1)
    denominator = np.zeros_like(numerator)
    for k in range(draws):
        m = matched_noise_image(noisy, noise, seed=seed * 1000 + k)
        up = noisy + np.float32(beta) * m
        part = beyond_linear(spectrum(np.asarray(pipeline(up), np.float32)), spectrum(up))
        target = spectrum(noisy - m / np.float32(beta))
        numerator += ring_sum(target.real * part.real + target.imag * part.imag)
        denominator += ring_sum(part.real**2 + part.imag**2)
    weights = np.clip(numerator / np.maximum(denominator, 1e-30), 0.0, max_weight)
    weights[0] = 1.0
    base_spectrum += (weights - 1).astype(np.float32)[bins] * found
    out = scipy.fft.irfft2(base_spectrum, s=(ny, nx), workers=-1)
    return (out + np.float32(base.mean())).astype(np.float32), weights


def recorruption_score(pipeline, noisy: np.ndarray, noise, *, draws: int = 2, beta: float = 0.5,
                       seed: int = 0) -> float:
    """A truth-free score of a denoiser on one micrograph: lower is better.

    Recorrupted-to-recorrupted (Pang et al., CVPR 2021), as in :func:`calibrate_rings`: with
    ``m`` drawn like the micrograph's own noise, ``ŷ = y + β·m`` and ``ỹ = y − m / β`` carry
    independent noise, so the score ``mean((pipeline(ŷ) − ỹ)²)`` (averaged over ``draws``) is,
    in expectation, the pipeline's mean squared error against the truth at ``(1 + β²)`` times
    the micrograph's noise power, plus the variance of ``ỹ``'s noise. That variance is the same
    for every denoiser scored with the same ``seed`` on the same micrograph, so *differences*
    of scores estimate differences of error: rank seeds, checkpoints or settings with it on
    the data they will denoise. (The score itself is not an error: the variance it holds is
    ``(1 + 1/β²)`` times the noise variance, known only to the estimate's accuracy.)
    ``noise`` is the micrograph's :class:`~cryostream.matched.NoiseEstimate` in the units of
    ``noisy``.
    """
    return _recorruption_scores([pipeline], noisy, noise, draws=draws, beta=beta, seed=seed)[0]


def _recorruption_scores(pipelines, noisy: np.ndarray, noise, *, draws: int, beta: float,
                         seed: int) -> list[float]:
    """:func:`recorruption_score` of several pipelines on the same draws, each drawn once."""
    from cryostream.matched import matched_noise_image

    if draws < 1 or not beta > 0:
        raise ConfigError(f"draws={draws}, beta={beta}: need at least one draw and beta > 0")
    noisy = np.asarray(noisy, np.float32)
    totals = [0.0] * len(pipelines)
    for k in range(draws):
        m = matched_noise_image(noisy, noise, seed=seed * 1000 + k)
        up, down = noisy + np.float32(beta) * m, noisy - m / np.float32(beta)
        for i, pipeline in enumerate(pipelines):
            out = np.asarray(pipeline(up), np.float32)
            totals[i] += float(np.mean((out - down).astype(np.float64) ** 2))
    return [total / draws for total in totals]


def clamp_negative_rings(estimate: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """Zero the rings of spatial frequency where ``estimate`` is anti-correlated with ``noisy``.

    Per ring (radius rounded, in units of the shorter side), the regression coefficient of the
    estimate on the input is ``Re Σ E·conj(Y) / Σ |Y|²``. A denoiser's best linear gain
    ``S / (S + N)`` is never negative, so rings where it is negative carry only harm. The
    mean is kept.
    """
    import scipy.fft

    from cryostream.metrics import rfft_rings

    estimate = np.asarray(estimate, np.float32)
    noisy = np.asarray(noisy, np.float32)
    ny, nx = noisy.shape
    rings = np.minimum(rfft_rings((ny, nx)), min(ny, nx) // 2)
    mean = float(estimate.mean())
    e = scipy.fft.rfft2(estimate - mean, workers=-1)
    y = scipy.fft.rfft2(noisy - noisy.mean(), workers=-1)
    n = min(ny, nx) // 2 + 1
    cross = np.bincount(rings.ravel(), (e * np.conj(y)).real.ravel(), minlength=n)
    keep = (cross >= 0).astype(np.float32)
    keep[0] = 1.0
    e *= keep[rings]
    return scipy.fft.irfft2(e, s=(ny, nx), workers=-1).astype(np.float32) + np.float32(mean)


@functools.lru_cache(maxsize=4)
def _loaded(run: str):
    import jax
    from flax import nnx

    from cryostream.training import load_model

    model, record = load_model(run)
    graphdef, params = nnx.split(model)
    apply = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    return apply, params, model.config, record


def _denoise_band(block, block_info=None, *, run, tile, halo, batch_size, percentiles):
    apply, params, config, _ = _loaded(run)
    m, _, _ = block_info[0]["chunk-location"]
    image = block[0] * np.float32(1.0 / percentiles[m])
    height, width = image.shape[0] - 2 * halo, image.shape[1] - 2 * halo
    side = tile + 2 * halo
    jobs = [(ry, rx) for ry in tile_cores(height, tile, config.multiple)
            for rx in tile_cores(width, tile, config.multiple)]
    out = np.empty((height, width), dtype=np.float32)
    for first in range(0, len(jobs), batch_size):
        chunk = jobs[first : first + batch_size]
        windows = np.zeros((batch_size, side, side, 1), dtype=np.float32)
        for i, ((wy, _, _), (wx, _, _)) in enumerate(chunk):
            windows[i, ..., 0] = image[wy : wy + side, wx : wx + side]
        result = np.asarray(apply(params, windows))[..., 0]
        for i, ((wy, y0, y1), (wx, x0, x1)) in enumerate(chunk):
            out[y0:y1, x0:x1] = result[i, halo + y0 - wy : halo + y1 - wy,
                                       halo + x0 - wx : halo + x1 - wx]
    return out[None]


def denoise_array(stack, run, percentiles, *, tile: int | None = None, halo: int | None = None,
                  batch_size: int = 8):
    """Lazy denoised stack (micrograph, y, x) in normalised units (divided by ``percentiles``).

    ``stack`` is a Dask array (micrograph, y, x); ``run`` a trained run folder. ``tile=None``
    picks the cheapest tile for the backend (:func:`auto_tile`). Windows per device call are
    at most ``batch_size``, the windows of one band and a memory cap for the backend.
    """
    _, _, config, _ = _loaded(str(run))
    m = config.multiple
    halo = default_halo(config) if halo is None else halo
    if tile is None:
        tile = auto_tile(stack.shape[1:], config, halo)
    if tile % m or halo % m:
        raise ConfigError(f"tile={tile}, halo={halo}: both must be multiples of {m} for this model")
    if halo < receptive_radius(config):
        raise ConfigError(f"halo={halo}: smaller than the model's receptive radius "
                          f"{receptive_radius(config)}")
    ny, nx = stack.shape[1:]
    if min(ny, nx) < tile:
        raise ConfigError(f"tile={tile}: larger than the micrographs ({ny} × {nx})")
    if halo > tile:
        raise ConfigError(f"halo={halo} is larger than tile={tile}; use a larger --tile")
    heights = _band_heights(ny, tile)
    per_band = max(len(tile_cores(h, tile, m)) for h in heights) * len(tile_cores(nx, tile, m))
    batch_size = _device_batch(batch_size, per_band, tile + 2 * halo)
    banded = stack.rechunk({0: 1, 1: heights, 2: -1})
    return banded.map_overlap(
        _denoise_band, depth={0: 0, 1: halo, 2: halo}, boundary={0: "none", 1: "reflect",
                                                                 2: "reflect"},
        trim=False, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
        run=str(run), tile=tile, halo=halo, batch_size=batch_size,
        percentiles=np.asarray(percentiles, dtype=np.float64),
    )


def _check_correctable(record: dict) -> None:
    """A :class:`ConfigError` if the run's model estimates the clean image itself, so the
    Noisier2Noise correction does not apply (``record``: the run's ``config.json``)."""
    if record.get("train", {}).get("recorrupt"):
        raise ConfigError("this run was trained on recorrupted targets (--recorrupt): it "
                          "estimates the clean image directly; drop --n2n-correction")
    if record["prepare"]["noise"]["model"] == "none":
        raise ConfigError("this run was trained on separate targets (no added noise): it "
                          "estimates the target directly; drop --n2n-correction")


def _check_options(run, n2n_correction: bool, n2n_clamp: bool) -> None:
    """Check a run and the correction options before anything is read or written."""
    from cryostream.training import check_run

    if n2n_clamp and not n2n_correction:
        raise ConfigError("n2n_clamp (--n2n-clamp) refines the Noisier2Noise correction; "
                          "pass n2n_correction too (--n2n-correction)")
    run = check_run(run)
    if n2n_correction:
        _check_correctable(json.loads((run / "config.json").read_text()))


def _alpha2(record: dict, image_normalised: np.ndarray) -> float:
    """Variance of the training noise over the micrograph's own noise.

    Matched noise is ``α`` times the micrograph's own by construction; for the white models
    the micrograph's noise variance is read from pixel differences.
    """
    _check_correctable(record)
    noise = record["prepare"]["noise"]
    if noise["model"] == "matched":  # measured per micrograph and scaled by construction
        return float(noise.get("alpha", 1.0)) ** 2
    own = float(np.var(np.diff(image_normalised, axis=1)) / 2)
    added = 0.0
    if noise["model"] in ("poisson", "poisson-gaussian"):
        added += float(np.mean(np.maximum(image_normalised, 0))) / noise["dose"]
    if noise["model"] in ("gaussian", "poisson-gaussian"):
        added += noise["sigma"] ** 2
    return added / own


def _read(source: str):
    """A micrograph's header and its pixels (native float32), with one read."""
    from cryostream.io.mrc import read_header, read_rows

    header = read_header(source)
    return header, read_rows(header, 0, header.shape[0])


def _normalised(image: np.ndarray, run: str):
    """The pixels divided by the run's percentile (as in training), and the percentile."""
    percentile = float(np.percentile(image, _loaded(run)[3]["prepare"]["percentile"]))
    return image / np.float32(percentile), percentile


def ctf_gain_check(noisy: np.ndarray, noise, fit, *, draws: int = 2, beta: float = 0.5,
                   seed: int = 0) -> float:
    """Does the CTF-shaped Wiener gain beat the radial one on this micrograph? No truth needed.

    The recorruption score (:func:`recorruption_score`) of the CTF-shaped Wiener filter
    (:func:`match_wiener_gain` with ``ctf=fit``) minus that of the radial one, on the same
    draws: negative when the CTF model helps. A wrong fit (a wrong defocus, no Thon rings)
    makes it positive. On simulated 2048² micrographs (normalised to their 95th percentile) a
    fit 400 Å off scored +3e-6 to +6e-6 (true error difference +1e-5) and the fit itself
    −2e-6 to −5e-6 (true −5e-6). It leans towards the radial gain where the noise estimate
    is coarser: on 1024² ones it read 1e-5 to 3e-5 above the truth, so the fit (true −1.8e-5
    and −1.1e-5) still passed with −5e-6 and −4e-6. ``noise`` is the micrograph's
    :class:`~cryostream.matched.NoiseEstimate` in the units of ``noisy``.
    """
    recorrupted = noise.scaled(math.sqrt(1 + beta**2))  # the noise of y + β·m

    def shaped(image):
        return match_wiener_gain(image, image, recorrupted, ctf=fit)

    def radial(image):
        return match_wiener_gain(image, image, recorrupted)

    # the same draws: the difference of the scores is an error difference
    shaped_score, radial_score = _recorruption_scores([shaped, radial], noisy, noise,
                                                      draws=draws, beta=beta, seed=seed)
    return shaped_score - radial_score


def dihedral_mean(fn, image: np.ndarray) -> np.ndarray:
    """The mean of ``fn`` over the 8 rotations and flips of a 2-D ``image``, each undone:
    the 8-fold ensemble (float32)."""
    acc = np.zeros(image.shape, dtype=np.float64)
    for k in range(4):
        for flip in (False, True):
            t = np.rot90(image, k)
            t = t[:, ::-1] if flip else t
            out = np.asarray(fn(np.ascontiguousarray(t)))
            out = out[:, ::-1] if flip else out
            acc += np.rot90(out, -k)
    return (acc / 8).astype(np.float32)


def _pipeline(run: str, noisy: np.ndarray, pixel_size: float, *, tile: int | None,
              halo: int | None, batch_size: int, n2n_correction: bool, n2n_clamp: bool,
              wiener_gain: bool, ctf_gain: bool = False, ensemble: bool = False,
              ctf_optics: dict | None = None, source: str = "micrograph"):
    """The whole denoiser for one normalised micrograph, and a noise measurer.

    Returns ``(pipeline, measured)``: ``pipeline(image)`` runs the network, the correction,
    the clamp and the gain on ``noisy`` or on a recorrupted copy of it (the gain then measures
    that copy's noise); ``measured(image)`` is the image's noise estimate. With ``ctf_gain``
    the CTF is fitted once, on ``noisy`` (added noise does not change it), with ``ctf_optics``
    (:func:`~cryostream.ctf.fit_ctf` keywords), and kept only if :func:`ctf_gain_check` finds
    it lowers the error; otherwise a :class:`~cryostream.ctf.CTFFallbackWarning` names
    ``source`` and the radial gain is used.
    """
    import dask.array as da

    from cryostream.ctf import CTFFallbackWarning, fit_ctf
    from cryostream.matched import estimate_noise, tile_for

    record = _loaded(run)[3]
    alpha2 = _alpha2(record, noisy) if n2n_correction else None
    cache = {}

    def measured(normalised):
        if normalised is noisy and "noisy" in cache:
            return cache["noisy"]
        estimate = estimate_noise(normalised, pixel_size, tile=tile_for(normalised.shape))
        if normalised is noisy:
            cache["noisy"] = estimate
        return estimate

    def network(image):
        return denoise_array(da.from_array(image[None], chunks=(1, -1, -1)), run, [1.0],
                             tile=tile, halo=halo, batch_size=batch_size).compute(scheduler="sync")[0]

    fit = None
    if ctf_gain:
        fit = fit_ctf(noisy, pixel_size, **(ctf_optics or {}))
        if ctf_gain_check(noisy, measured(noisy), fit) >= 0:
            warnings.warn(f"{source}: the CTF fitted from its spectrum ({fit.defocus_u_angstrom:.0f}/"
                          f"{fit.defocus_v_angstrom:.0f} Å, score {fit.score:.4f}) does not lower "
                          "the error by recorruption (ctf_gain_check); its radial Wiener gain is "
                          "used. Its Thon rings may not follow the fitted form, or the optics "
                          "differ (--voltage, --cs, --amplitude-contrast)",
                          CTFFallbackWarning, stacklevel=2)
            fit = None

    def pipeline(normalised):
        out = dihedral_mean(network, normalised) if ensemble else network(normalised)
        if n2n_correction:
            out = n2n_correct(out, normalised, alpha2, ring_clamp=n2n_clamp)
        if wiener_gain or ctf_gain:
            out = match_wiener_gain(out, normalised, measured(normalised), ctf=fit)
        return out

    return pipeline, measured


def _denoise_one(source: str, name: str, run: str, *, tile: int | None, halo: int | None,
                 batch_size: int, n2n_correction: bool, output: str | None, overwrite: bool,
                 n2n_clamp: bool = False, wiener_gain: bool = False, calibrate: int = 0,
                 ctf_gain: bool = False, ensemble: bool = False, ctf_optics: dict | None = None):
    """One micrograph through the whole pipeline: percentile, bands, correction, MRC.

    The micrograph is read once; the percentile, the bands and the correction share it, and
    its noise is measured once.
    """
    from cryostream.io.mrc import write_micrograph

    header, image = _read(source)
    noisy, percentile = _normalised(image, run)
    pipeline, measured = _pipeline(run, noisy, header.pixel_size_angstrom, tile=tile, halo=halo,
                                   batch_size=batch_size, n2n_correction=n2n_correction,
                                   n2n_clamp=n2n_clamp, wiener_gain=wiener_gain,
                                   ctf_gain=ctf_gain, ensemble=ensemble, ctf_optics=ctf_optics,
                                   source=source)
    if calibrate:
        den = calibrate_rings(pipeline, noisy, measured(noisy), draws=calibrate)[0]
    else:
        den = pipeline(noisy)
    den *= np.float32(percentile)
    if output is None:
        return den
    label = f"cryostream denoise {Path(run).name}" + (" n2n" if n2n_correction else "")
    path = Path(output) / f"{name}.mrc"
    write_micrograph(path, den, header.pixel_size_angstrom, history=label,
                     overwrite=overwrite)
    return str(path)


def rank_runs(runs: Iterable, inputs, *, draws: int = 2, beta: float = 0.5, seed: int = 0,
              tile: int | None = None, halo: int | None = None, batch_size: int = 8,
              n2n_correction: bool = False, n2n_clamp: bool = False,
              wiener_gain: bool = False, ctf_gain: bool = False,
              ensemble: bool = False, ctf_optics: dict | None = None) -> list[dict]:
    """Rank trained runs by their denoising error on micrographs, without ground truth.

    Each run denoises recorrupted copies of each micrograph through the pipeline that
    :func:`denoise` would run with the same options, and gets :func:`recorruption_score` in
    the micrograph's own units, with the same noise draws for every run (a paired
    comparison). Seeds of one training set differ: on simulated micrographs two seeds in six
    lost 0.13–0.19 dB to the others, and the score put both behind the other four on every
    micrograph (docs/guide/noise.md). Costs ``draws`` network passes per run and micrograph.

    Returns one dict per run, best (lowest mean score) first: ``run``, ``score`` (mean over
    the micrographs) and ``scores`` (per micrograph name).
    """
    from cryostream.io.stack import open_micrographs

    runs = list(dict.fromkeys(str(Path(r).absolute()) for r in runs))  # each run once
    if not runs:
        raise ConfigError("rank_runs needs at least one run folder")
    for run in runs:
        _check_options(run, n2n_correction, n2n_clamp)
    stack = open_micrographs(inputs, chunks=-1)
    scores = {r: {} for r in runs}
    for source, name in zip(stack.attrs["sources"], stack.micrograph.values, strict=True):
        header, image = _read(source)  # once, for every run
        for run in runs:
            noisy, percentile = _normalised(image, run)
            pipeline, measured = _pipeline(run, noisy, header.pixel_size_angstrom, tile=tile,
                                           halo=halo, batch_size=batch_size,
                                           n2n_correction=n2n_correction, n2n_clamp=n2n_clamp,
                                           wiener_gain=wiener_gain, ctf_gain=ctf_gain,
                                           ensemble=ensemble, ctf_optics=ctf_optics,
                                           source=source)
            score = recorruption_score(pipeline, noisy, measured(noisy), draws=draws, beta=beta,
                                       seed=seed)
            scores[run][str(name)] = score * percentile**2  # in the micrograph's units
    ranked = [{"run": r, "score": float(np.mean(list(s.values()))), "scores": s}
              for r, s in scores.items()]
    return sorted(ranked, key=lambda row: row["score"])


def denoise(run, inputs: str | os.PathLike | Iterable, output: str | os.PathLike | None = None, *,
            tile: int | None = None, halo: int | None = None, batch_size: int = 8,
            n2n_correction: bool = False, overwrite: bool = False, workers: int = 2,
            scheduler: str | None = None, cluster_workers: int | None = None,
            n2n_clamp: bool = False, wiener_gain: bool = False, calibrate: int = 0,
            ctf_gain: bool = False, ensemble: bool = False, ctf_optics: dict | None = None):
    """Denoise micrographs with a trained run.

    Parameters
    ----------
    run : path-like
        A run folder written by :func:`cryostream.train`.
    inputs : paths, globs, folders or a STAR file
        Micrographs (any MRC mode); normalised as in training (the store's percentile) and
        restored to their own scale afterwards.
    output : path-like, optional
        Folder for float32 MRC files (same names, pixel size and a history line in the
        header). Required on a cluster.
    tile, halo, batch_size : int
        Window core (default: the cheapest for the backend, :func:`auto_tile`; 3840 for
        full-size micrographs on a GPU), context on each side (default: the receptive field,
        rounded up), and the most windows per device call.
    n2n_correction : bool
        Apply the Noisier2Noise correction (:func:`n2n_correct`), for models trained the
        seed's way: synthetic noise added to real micrographs.
    n2n_clamp : bool
        With the correction, zero the rings of spatial frequency where the corrected output
        is anti-correlated with the micrograph (:func:`clamp_negative_rings`).
    wiener_gain : bool
        Measure each micrograph's noise and give the output the Wiener filter's linear
        response, keeping the rest (:func:`match_wiener_gain`; after the correction).
    ctf_gain : bool
        The Wiener gain (implies ``wiener_gain``), shaped above 20 Å by the micrograph's CTF,
        fitted from its own power spectrum (:func:`cryostream.ctf.fit_ctf`; micrographs of
        512² pixels or more). Kept only where :func:`ctf_gain_check` finds it lowers the
        error; otherwise the radial gain, with a :class:`~cryostream.ctf.CTFFallbackWarning`.
    ctf_optics : dict, optional
        The microscope for the CTF fit: ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``
        (defaults 300 kV, 2.7 mm, 0.1).
    ensemble : bool
        Run the network on the 8 rotations and flips of each micrograph and average the
        results, undone (:func:`dihedral_mean`; 8 network passes). The quality benchmarks
        score this way.
    calibrate : int
        Recorrupted passes (each one more network pass) that fit, per ring, the weight of the
        output's part beyond a linear filter (:func:`calibrate_rings`); 0 (default) for none.
    workers : int
        Micrographs in flight at once in this process (their reading and writing overlap the
        device work).
    scheduler, cluster_workers : str, int, optional
        Run on an existing Dask scheduler, or on a LocalCluster of that many worker processes
        (as :func:`cryostream.prepare` does); each worker loads the model once.

    Returns
    -------
    xarray.DataArray (micrograph, y, x) float32
        The denoised stack: lazily over the written files when ``output`` is given, in memory
        otherwise. For a lazy result without files, use :func:`denoise_array`.
    """
    import concurrent.futures
    import functools

    from cryostream.cluster import compute_context
    from cryostream.io.stack import open_micrographs

    _check_options(run, n2n_correction, n2n_clamp)  # before any output folder is made
    stack = open_micrographs(inputs, chunks=-1)
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
    elif scheduler is not None or cluster_workers is not None:
        raise ConfigError("denoising on a cluster needs an output folder (-o)")
    job = functools.partial(_denoise_one, run=str(Path(run).absolute()), tile=tile, halo=halo,
                            batch_size=batch_size, n2n_correction=n2n_correction,
                            n2n_clamp=n2n_clamp, wiener_gain=wiener_gain,
                            calibrate=calibrate, ctf_gain=ctf_gain, ensemble=ensemble,
                            ctf_optics=ctf_optics,
                            output=None if output is None else str(Path(output).absolute()),
                            overwrite=overwrite)
    sources = list(stack.attrs["sources"])
    names = [str(n) for n in stack.micrograph.values]
    with compute_context(scheduler=scheduler, workers=cluster_workers) as client:
        if client is not None:
            results = client.gather(client.map(job, sources, names))
        else:
            with concurrent.futures.ThreadPoolExecutor(min(workers, len(sources))) as pool:
                results = list(pool.map(job, sources, names))
    if output is None:
        return stack.copy(data=np.stack(results))
    return open_micrographs(results, chunks=-1)
