"""One simulated EMPIAR-10025-like micrograph and its noise-free ground truth.

Image formation (weak-phase approximation, one Fourier pass):

1. Particles: the T20S atoms (or the points of another shape, ``config.particle``,
   :mod:`cryostream.simulate.particles`) are rotated to a uniformly random orientation,
   projected along the beam and splatted bilinearly onto the pixel grid, weighted by atomic
   number. The scale makes the integrated phase of one T20S complex ``σ_e · ΔV · V``
   (interaction constant at the voltage, protein-minus-ice mean inner potential ΔV ≈ 2 V,
   particle volume from 1.21 Å³/Da); the other shapes have the same phase per unit mass.
2. Amorphous ice: a small white phase texture, which is what draws Thon rings in real data;
   its standard deviation grows with the square root of ``config.ice_thickness_relative``.
3. Contrast transfer: ``2·CTF·exp(-B k²/4)`` with ``CTF = -[√(1-Q²)·sin χ + Q·cos χ]`` at the
   astigmatic defocus of the micrograph (:mod:`cryostream.spectral.optics`); underfocus
   positive, so particles are dark.
4. A slowly varying ice-thickness background multiplies the intensity.
5. Shot noise: the ground truth is the expected electron count per pixel; the micrograph is
   a Poisson draw of it, whose noise (draw minus expectation) is shaped by the detector's
   noise power spectrum when ``detector_nps_nyquist < 1`` (:func:`detector_nps`).
6. Even/odd halves (``config.even_odd``): the counts of each pixel are split between two
   halves by a fair coin per electron (a binomial draw), which makes each half an independent
   Poisson draw of half the expectation whose sum is the full micrograph exactly, as the sums
   of a movie's even and odd frames are; each half's noise is then shaped by the detector as
   the full sum's is, and the full sum becomes ``even + odd``.

Everything random comes from ``numpy.random.default_rng([seed, index])``, the halves' split
from ``default_rng([seed, index, 1])``: the full sum does not depend on ``even_odd`` (with
``detector_nps_nyquist < 1``, up to float32 rounding of ``even + odd``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.fft

from cryostream.config import SimulateConfig
from cryostream.config.simulate import PARTICLE_SHAPES
from cryostream.errors import ConfigError
from cryostream.host import available_memory
from cryostream.simulate.particles import (
    ANGSTROM3_PER_DALTON,
    T20S_DALTON,
    particle_model,
    place_particles,
)
from cryostream.simulate.t20s import load_t20s
from cryostream.spectral import astigmatic_defocus, contrast_transfer, frequencies
from cryostream.units import format_bytes

__all__ = ["Particle", "SimulatedMicrograph", "simulate_micrograph", "place_centres", "detector_nps",
           "BYTES_PER_PIXEL", "check_memory"]

#: Memory one micrograph takes while it is simulated, per pixel: its arrays peaked at 28
#: bytes a pixel (1024² to 4096²), 38 with the even/odd halves and the detector's response;
#: with room to spare.
BYTES_PER_PIXEL = 48


def detector_nps(freq, nyquist_ratio: float):
    """Relative noise power of the simulated detector at radial frequency ``freq`` (cycles/px).

    ``r + (1 - r) · cos²(π f)``, 1 at zero frequency, ``r`` at Nyquist and beyond. The
    noise spectrum of a simulated micrograph is its mean count times this.
    """
    f = np.minimum(np.abs(freq), 0.5)
    return nyquist_ratio + (1 - nyquist_ratio) * np.cos(np.pi * f) ** 2

_FULL_AREA = 7676 * 7420
_SIGMA_E_300KV = 6.526e-4  # interaction constant, rad / (V·Å), at 300 kV
_PROTEIN_MINUS_ICE_VOLTS = 2.0
_ICE_TEXTURE_RAD = 0.07  # per-pixel standard deviation of the amorphous-ice phase


@dataclasses.dataclass(frozen=True)
class Particle:
    """A placed particle: centre in pixels (x, y), ZYZ Euler angles in degrees, its shape."""

    x: float
    y: float
    rot: float
    tilt: float
    psi: float
    shape: str = "t20s"


@dataclasses.dataclass(frozen=True)
class SimulatedMicrograph:
    """A simulated micrograph with its ground truth.

    Attributes
    ----------
    noisy, truth : numpy.ndarray of float32, shape (ny, nx)
        The shot-noise micrograph and its expectation (electrons per pixel).
    particles : tuple of Particle
    defocus_u_angstrom, defocus_v_angstrom, astigmatism_angle_deg : float
        CTF parameters in RELION's convention.
    ice : numpy.ndarray of float32, optional
        With ``components=True``: the part of ``truth`` drawn by the amorphous-ice texture
        (``truth − ice`` is the particles and the background); the texture is a Gaussian field.
    even, odd : numpy.ndarray of float32, shape (ny, nx), optional
        With ``config.even_odd``: the two half-dose sums, each with its own shot noise around
        ``truth / 2``; ``noisy`` is exactly ``even + odd``.
    """

    noisy: np.ndarray
    truth: np.ndarray
    particles: tuple[Particle, ...]
    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    ice: np.ndarray | None = None
    even: np.ndarray | None = None
    odd: np.ndarray | None = None


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _zyz_euler_deg(r: np.ndarray) -> tuple[float, float, float]:
    tilt = math.degrees(math.acos(max(-1.0, min(1.0, r[2, 2]))))
    if abs(r[2, 2]) < 1 - 1e-9:
        rot = math.degrees(math.atan2(r[2, 1], r[2, 0]))
        psi = math.degrees(math.atan2(r[1, 2], -r[0, 2]))
    else:
        rot, psi = 0.0, math.degrees(math.atan2(-r[1, 0], r[0, 0]))
    return rot, tilt, psi


def place_centres(
    rng: np.random.Generator, shape: tuple[int, int], count: int, diameter_px: float
) -> list[tuple[float, float]]:
    """Up to ``count`` non-overlapping centres, at least half a radius inside the edges."""
    ny, nx = shape
    margin = diameter_px / 4
    centres: list[tuple[float, float]] = []
    if nx <= 2 * margin or ny <= 2 * margin:
        return centres
    for _ in range(count * 200):
        if len(centres) == count:
            break
        x = rng.uniform(margin, nx - margin)
        y = rng.uniform(margin, ny - margin)
        if all((x - cx) ** 2 + (y - cy) ** 2 >= diameter_px**2 for cx, cy in centres):
            centres.append((x, y))
    return centres


def _splat(image: np.ndarray, xy_px: np.ndarray, weights: np.ndarray) -> None:
    """Bilinear splat of weighted points into ``image`` (in place), through a local box."""
    ny, nx = image.shape
    x0 = int(math.floor(xy_px[:, 0].min()))
    y0 = int(math.floor(xy_px[:, 1].min()))
    bw = int(math.ceil(xy_px[:, 0].max())) - x0 + 2
    bh = int(math.ceil(xy_px[:, 1].max())) - y0 + 2
    fx = xy_px[:, 0] - x0
    fy = xy_px[:, 1] - y0
    ix = np.floor(fx).astype(np.int64)
    iy = np.floor(fy).astype(np.int64)
    ax = fx - ix
    ay = fy - iy
    box = np.zeros(bh * bw, dtype=np.float64)
    for dy, dx, w in (
        (0, 0, (1 - ay) * (1 - ax)),
        (0, 1, (1 - ay) * ax),
        (1, 0, ay * (1 - ax)),
        (1, 1, ay * ax),
    ):
        box += np.bincount((iy + dy) * bw + ix + dx, weights=weights * w, minlength=bh * bw)
    box = box.reshape(bh, bw)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + bh, ny), min(x0 + bw, nx)
    if ye > ys and xe > xs:
        image[ys:ye, xs:xe] += box[ys - y0 : ye - y0, xs - x0 : xe - x0]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], waves: int = 12) -> np.ndarray:
    """A zero-mean, unit-std field of a few plane waves of 0.3–3 cycles per image (ice thickness).

    Built from outer products (``cos(a + b) = cos a cos b - sin a sin b``), so it costs two
    rank-one updates per wave, not a transcendental per pixel.
    """
    ny, nx = shape
    y = np.arange(ny, dtype=np.float64)[:, None] / ny
    x = np.arange(nx, dtype=np.float64)[None, :] / nx
    field = np.zeros(shape, dtype=np.float64)
    for _ in range(waves):
        cycles = rng.uniform(0.3, 3.0)
        angle = rng.uniform(0, 2 * np.pi)
        a = 2 * np.pi * cycles * np.sin(angle) * y + rng.uniform(0, 2 * np.pi)
        b = 2 * np.pi * cycles * np.cos(angle) * x
        field += (np.cos(a) * np.cos(b) - np.sin(a) * np.sin(b)) / cycles
    field -= field.mean()
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def _shaped_particles(rng: np.random.Generator, config: SimulateConfig, count: int,
                      phase: np.ndarray, phase_per_z: float) -> list[Particle]:
    """Place ``count`` particles of ``config.particle`` (each its own shape when ``"mixed"``)
    and splat their projected phase into ``phase`` (in place)."""
    ps = config.pixel_size_angstrom
    if config.particle == "mixed":
        names = [PARTICLE_SHAPES[k] for k in rng.integers(len(PARTICLE_SHAPES), size=count)]
    else:
        names = [config.particle] * count
    models = {name: particle_model(name) for name in sorted(set(names))}
    radius_px = {name: model.radius_angstrom / ps for name, model in models.items()}
    weights = {name: model.weight.astype(np.float64) * phase_per_z
               for name, model in models.items()}
    particles = []
    for cx, cy, i in place_particles(rng, phase.shape, [radius_px[name] for name in names]):
        model = models[names[i]]
        rot = _random_rotation(rng)
        moved = model.xyz_angstrom @ rot.T.astype(np.float32)
        pts = np.stack([moved[:, 0] / ps + cx, moved[:, 1] / ps + cy], axis=1)
        _splat(phase, pts, weights[model.name])
        particles.append(Particle(cx, cy, *_zyz_euler_deg(rot), shape=model.name))
    return particles


def check_memory(config: SimulateConfig, available: int | None = None) -> None:
    """Check that one micrograph of ``config.shape`` can be simulated in the memory this
    process may take (``available`` bytes, else :func:`~cryostream.host.available_memory`),
    at :data:`BYTES_PER_PIXEL`.

    Raises
    ------
    ConfigError
        Naming the shape, the memory it needs and the memory available.
    """
    rows, cols = config.shape
    need = rows * cols * BYTES_PER_PIXEL
    available = available_memory() if available is None else available
    if need > available:
        raise ConfigError(f"shape={config.shape}: one micrograph of {rows} × {cols} px takes about "
                          f"{format_bytes(need)} of memory as it is simulated ({BYTES_PER_PIXEL} "
                          f"bytes a pixel), and {format_bytes(available)} is available; give a "
                          "smaller shape (--shape), or simulate on a machine with more memory")


def simulate_micrograph(config: SimulateConfig, index: int, *,
                        components: bool = False) -> SimulatedMicrograph:
    """Simulate micrograph ``index`` of a run with ``config``.

    The result depends only on ``(config, index)``. ``components`` also returns the ice
    texture's share of the truth (one more FFT pair), for bounds on what a denoiser can gain.
    """
    rng = np.random.default_rng([config.seed, index])
    ny, nx = config.shape
    ps = config.pixel_size_angstrom
    xyz, z = load_t20s()
    radius_px = float(np.sqrt((xyz.astype(np.float64) ** 2).sum(1)).max()) / ps
    # Phase per unit atomic number per pixel, from σ_e·ΔV·V spread over the summed Z.
    volume = T20S_DALTON * ANGSTROM3_PER_DALTON
    phase_per_z = _SIGMA_E_300KV * _PROTEIN_MINUS_ICE_VOLTS * volume / float(z.sum()) / ps**2

    # CTF parameters (RELION convention: U ≥ V, angle of U from x).
    mean_df = rng.uniform(*config.defocus_um) * 1e4
    astig = rng.uniform(0, config.astigmatism_angstrom)
    angle = rng.uniform(0, 180)
    df_u, df_v = mean_df + astig / 2, mean_df - astig / 2

    count = round(config.particles_per_micrograph * ny * nx / _FULL_AREA)
    if config.particles_per_micrograph > 0:
        count = max(count, 1)
    phase = np.zeros((ny, nx), dtype=np.float64)
    if config.particle == "t20s":
        centres = place_centres(rng, (ny, nx), count, 2 * radius_px)
        particles = []
        for cx, cy in centres:
            rot = _random_rotation(rng)
            moved = xyz @ rot.T.astype(np.float32)
            pts = np.stack([moved[:, 0] / ps + cx, moved[:, 1] / ps + cy], axis=1)
            _splat(phase, pts, z.astype(np.float64) * phase_per_z)
            particles.append(Particle(cx, cy, *_zyz_euler_deg(rot)))
    else:
        particles = _shaped_particles(rng, config, count, phase, phase_per_z)
    phase = phase.astype(np.float32)
    ice_rad = _ICE_TEXTURE_RAD * math.sqrt(config.ice_thickness_relative)
    ice_phase = rng.normal(0, ice_rad, size=(ny, nx)).astype(np.float32)
    phase += ice_phase
    if not components:
        del ice_phase

    # Contrast transfer in one rfft pass: 2·CTF (the weak-phase image) times the envelope.
    ky, kx = frequencies((ny, nx), "rfft", pixel_size_angstrom=ps, dtype=np.float32)
    k2 = ky * ky + kx * kx
    defocus = astigmatic_defocus(np.arctan2(ky, kx), mean_df, astig, angle)
    transfer = 2 * contrast_transfer(k2, defocus, voltage_kv=config.voltage_kv, cs_mm=config.cs_mm,
                                     amplitude_contrast=config.amplitude_contrast)
    transfer *= np.exp(np.float32(-config.b_factor_angstrom2 / 4) * k2)
    transfer[0, 0] = 0.0
    del defocus
    spectrum = scipy.fft.rfft2(phase, workers=-1)
    del phase
    spectrum *= transfer
    ice_contrast = None
    if components:
        ice_contrast = scipy.fft.irfft2(scipy.fft.rfft2(ice_phase, workers=-1) * transfer,
                                        s=(ny, nx), workers=-1).astype(np.float32)
    del transfer, k2
    contrast = scipy.fft.irfft2(spectrum, s=(ny, nx), workers=-1).astype(np.float32)
    del spectrum

    dose_px = config.dose_e_per_angstrom2 * ps * ps
    background = 1 + config.ice_contrast * _smooth_field(rng, (ny, nx))
    truth = contrast
    truth += 1
    truth *= background
    truth *= np.float32(dose_px)
    np.maximum(truth, 0, out=truth)
    if ice_contrast is not None:
        ice_contrast *= background
        ice_contrast *= np.float32(dose_px)
    counts = rng.poisson(truth)
    noisy = counts.astype(np.float32)
    even = odd = None
    if config.even_odd:
        # Each electron to either half with probability 1/2: independent Poisson(truth / 2).
        even_counts = np.random.default_rng([config.seed, index, 1]).binomial(counts, 0.5)
        counts -= even_counts
        even, odd = even_counts.astype(np.float32), counts.astype(np.float32)
        del even_counts
    del counts
    if config.detector_nps_nyquist < 1:
        if even is None:
            noisy = _detector_response(noisy, truth, config.detector_nps_nyquist)
        else:
            half = truth * np.float32(0.5)
            even = _detector_response(even, half, config.detector_nps_nyquist)
            odd = _detector_response(odd, half, config.detector_nps_nyquist)
            noisy = even + odd
    return SimulatedMicrograph(
        noisy=noisy,
        truth=truth,
        particles=tuple(particles),
        defocus_u_angstrom=float(df_u),
        defocus_v_angstrom=float(df_v),
        astigmatism_angle_deg=float(angle),
        ice=ice_contrast,
        even=even,
        odd=odd,
    )


def _detector_response(noisy: np.ndarray, expected: np.ndarray, nyquist_ratio: float) -> np.ndarray:
    """``noisy`` with its shot noise (``noisy − expected``) shaped by :func:`detector_nps`."""
    ny, nx = noisy.shape
    fy, fx = frequencies((ny, nx), "rfft", dtype=np.float32)
    response = np.sqrt(detector_nps(np.hypot(fy, fx), nyquist_ratio))
    noise = scipy.fft.rfft2(noisy - expected, workers=-1)
    noise *= response.astype(np.float32)
    return (expected + scipy.fft.irfft2(noise, s=(ny, nx), workers=-1)).astype(np.float32)
