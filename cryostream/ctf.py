"""The contrast transfer function of a micrograph, fitted from its own power spectrum.

Above 20 Å the signal of a micrograph is its object (particles, amorphous ice) seen through the
CTF of its defocus: Thon rings, zero wherever the phase ``χ`` makes ``√(1−Q²)·sin χ + Q·cos χ``
vanish, and elliptical when the defocus is astigmatic. A radial filter averages each ring of
spatial frequency over those zeros and ellipses; knowing the CTF, the linear part of a denoiser
can follow them coefficient by coefficient (:func:`ctf_wiener_gain`).

:func:`fit_ctf` finds the defocus (mean, astigmatism, angle; RELION's convention, the formula of
:func:`cryostream.spectral.contrast_transfer` as in the simulator) that best explains the
micrograph's power: in each band of a few rings the power is modelled as ``A·CTF² + B``, so neither
the envelope nor the noise level need be known, and the parameters maximise the power the bands'
``CTF²`` terms explain: a coarse search over the mean defocus on an unwindowed Welch spectrum,
refined by Nelder–Mead over the mean and the astigmatism's two components.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cryostream.errors import ConfigError
from cryostream.spectral import (
    CTF_ROWS_PER_BLOCK,
    GAIN_FLOOR,
    astigmatic_defocus,
    contrast_transfer,
    ctf_squared_grid,
    faded_ctf_squared,
    frequencies,
    ring_index,
    ring_spacing,
    welch_spectrum,
)

__all__ = ["CTFFit", "CTFFallbackWarning", "fit_ctf", "ctf_squared", "ctf_wiener_gain",
           "ctf_gain_grid", "thon_ring_z", "search_defocus", "refine_defocus",
           "explained_power", "THON_RING_Z", "SETTLED_Z", "RIVAL_APART", "THON_RING_COEFFICIENTS"]

#: The Thon rings of a fit are found in a micrograph when, in at least one band above 20 Å, its power
#: follows the fit's ``CTF²`` this many standard errors above chance (:func:`thon_ring_z`). Of ~44
#: bands of noise, one passes 3.5 about 1 % of the time (one-sided: 2.3e-4 a band).
THON_RING_Z = 3.5

#: A fit whose finest spectrum and whose 1024² one (tiles twice the search's) peak more than
#: :data:`RIVAL_APART` Å of mean defocus apart (:attr:`CTFFit.rival_defocus_angstrom`) is used
#: only if its rings score at least this. On 800 simulated 2048² micrographs (4–80 e/Å²), where
#: the finest spectrum is a single 2048² tile, 7 fits used were 8 460–24 560 Å off, all with
#: ``z`` 3.5–4.3; the spectra disagreed on 6 of them and on 10 of the 621 right fits used, 6
#: of those 10 under 4.3 (benchmarks page, "When the CTF fit's spectra disagree").
SETTLED_Z = 4.3
RIVAL_APART = 1000.0


class CTFFallbackWarning(UserWarning):
    """A micrograph's fitted CTF was not used (no Thon rings, or no lower error); its gain fell back."""


@dataclasses.dataclass(frozen=True)
class CTFFit:
    """A micrograph's fitted CTF.

    Attributes
    ----------
    defocus_u_angstrom, defocus_v_angstrom, astigmatism_angle_deg : float
        Defocus along the two axes of the ellipse (U ≥ V, underfocus positive) and the angle
        of U from x, RELION's convention.
    score : float
        Share of the band-detrended power of the 512² Welch spectrum that the fitted ``CTF²``
        explains, 0–1. Noise alone scores about 0.002 (the best of the search); simulated
        1024² micrographs 0.007, 2048² ones 0.015–0.018, a real 4096² micrograph 0.09.
    pixel_size_angstrom, voltage_kv, cs_mm, amplitude_contrast : float
        The optics the fit assumed.
    defocus_error_angstrom : float
        How far off the defocus may be (σ, Å; 0: exact): the gain's rings fade where it blurs them.
    rival_defocus_angstrom : float or None
        Where the fit's spectra disagree: the mean defocus the 1024² spectrum explains best, more
        than :data:`RIVAL_APART` Å from the fit's (None where they agree, or where the finest
        spectrum is the 1024² one).
    """

    defocus_u_angstrom: float
    defocus_v_angstrom: float
    astigmatism_angle_deg: float
    score: float
    pixel_size_angstrom: float
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    defocus_error_angstrom: float = 0.0
    rival_defocus_angstrom: float | None = None

    def in_words(self) -> str:
        """The defocus in words that do not hang on which axis is U: the mean, the
        astigmatism and the angle of the larger defocus, e.g. for a warning."""
        u, v = self.defocus_u_angstrom, self.defocus_v_angstrom
        return (f"mean {(u + v) / 2:.0f} Å, astigmatism {abs(u - v):.0f} Å, the larger at "
                f"{(self.astigmatism_angle_deg + (0 if u >= v else 90)) % 180:.0f}°")


def _grid(shape: tuple[int, int], pixel_size: float, row_step: int = 1, angles: bool = True):
    """``k²`` (Å⁻²) and (with ``angles``; else None) the angle of every ``rfft2`` coefficient
    of ``shape`` (of every ``row_step``-th row)."""
    ky, kx = frequencies(shape, "rfft", pixel_size_angstrom=pixel_size)
    ky = ky[::row_step]
    return ky * ky + kx * kx, np.arctan2(ky, kx) if angles else None


def _ctf2(k2, theta, mean, ax, ay, optics):
    """``CTF²`` for mean defocus ``mean`` and astigmatism components ``(ax, ay)`` (Å): the
    fit's coordinates, ``U − V = 2·|(ax, ay)|`` at the angle ``atan2(ay, ax) / 2``."""
    # without astigmatism the defocus is ``mean`` everywhere (as astigmatic_defocus gives it,
    # ``mean + 0·cos``, bit for bit): the search over the mean defocus skips the cosines
    defocus = mean if ax == 0 and ay == 0 else astigmatic_defocus(
        theta, mean, 2 * math.hypot(ax, ay), math.degrees(math.atan2(ay, ax)) / 2)
    c = contrast_transfer(k2, defocus, **optics)
    return c * c


def _band_power(power, band, bands):
    """Per band: the number of coefficients (at least 1), the mean power and its variance: what
    :func:`_band_regression` needs of ``power`` alone, made once for every ``c2`` tried."""
    count = np.maximum(np.bincount(band, minlength=bands), 1)
    mean_p = np.bincount(band, power, minlength=bands) / count
    return count, mean_p, np.bincount(band, power * power, minlength=bands) / count - mean_p**2


def _band_explained(power, c2, band, bands, counted):
    """Per band: ``A``, ``c2``'s mean, the covariance and ``c2``'s variance of
    :func:`_band_regression`, and the power the ``c2`` term explains; ``counted``:
    :func:`_band_power` of ``power``."""
    count, mean_p, _ = counted
    mean_c = np.bincount(band, c2, minlength=bands) / count
    cov = np.bincount(band, c2 * power, minlength=bands) / count - mean_c * mean_p
    var_c = np.bincount(band, c2 * c2, minlength=bands) / count - mean_c**2
    a = np.maximum(cov, 0) / np.maximum(var_c, 1e-30)
    return a, mean_c, var_c, np.maximum(cov, 0) ** 2 / np.maximum(var_c, 1e-30) * count


def _band_regression(power, c2, band, bands, counted=None):
    """Per band: ``A, B`` of ``power ≈ A·c2 + B`` (A ≥ 0), the power the ``c2`` term explains,
    the band's detrended power and ``A``'s squared standard error (residual over spread);
    ``counted``: :func:`_band_power` of ``power``, if made already."""
    counted = counted or _band_power(power, band, bands)
    count, mean_p, var_p = counted
    a, mean_c, var_c, explained = _band_explained(power, c2, band, bands, counted)
    se2 = np.maximum(var_p * count - explained, 0) / count / np.maximum(var_c * count, 1e-30)
    return a, mean_p - a * mean_c, explained, var_p * count, se2


def ctf_squared(shape: tuple[int, int], fit: CTFFit, *, row_step: int = 1) -> np.ndarray:
    """``CTF² = (√(1−Q²)·sin χ + Q·cos χ)²`` of ``fit`` on the ``rfft2`` grid of ``shape``,
    ``(ny, nx // 2 + 1)`` float32, or of every ``row_step``-th row of it
    (:func:`cryostream.spectral.ctf_squared_grid`, a few rows at a time)."""
    return ctf_squared_grid(shape, fit.pixel_size_angstrom, fit.defocus_u_angstrom,
                            fit.defocus_v_angstrom, fit.astigmatism_angle_deg,
                            voltage_kv=fit.voltage_kv, cs_mm=fit.cs_mm,
                            amplitude_contrast=fit.amplitude_contrast, row_step=row_step)


def explained_power(image, tile, pixel_size, low_angstrom, high_angstrom, band_width, optics):
    """``explained(mean, ax, ay)``: the share of the band-detrended Welch power of ``image``
    (``tile``² tiles) that ``CTF²`` explains, between ``low_angstrom`` and ``high_angstrom``."""
    power = welch_spectrum(image, tile, window=False, layout="rfft")
    k2, theta = _grid((tile, tile), pixel_size)
    k = np.sqrt(k2)
    fy, fx = frequencies((tile, tile), "rfft")
    ky, kx = np.abs(fy) * tile, fx * tile
    # the tiles' edges put a cross of leaked power on the axes: leave the axes out
    use = (k >= 1 / low_angstrom) & (k <= 1 / high_angstrom) & (ky >= 2) & (kx >= 2)
    band = np.floor(k[use] * pixel_size / band_width).astype(np.int64)
    band -= band.min()
    bands = int(band.max()) + 1
    k2u, thetau, pu = k2[use], theta[use], power[use]
    counted = _band_power(pu, band, bands)  # the power's own sums, once for every defocus
    total = (counted[2] * counted[0]).sum()

    def explained(mean, ax=0.0, ay=0.0):  # 0 where there is no power to explain (flat)
        c2 = _ctf2(k2u, thetau, mean, ax, ay, optics)
        return _band_explained(pu, c2, band, bands, counted)[3].sum() / total if total > 0 else 0.0

    return explained


#: How many of a defocus search's highest peaks :func:`fit_ctf` judges on its finest spectrum.
SEARCH_PEAKS = 5


def _peaks(values, grid) -> list[float]:
    """The :data:`SEARCH_PEAKS` highest local maxima of ``values`` over ``grid``, highest
    first."""
    v = np.asarray(values)
    if v.size < 2:
        return [float(g) for g in grid]
    peak = np.r_[v[0] >= v[1], (v[1:-1] >= v[:-2]) & (v[1:-1] >= v[2:]), v[-1] >= v[-2]]
    index = np.flatnonzero(peak)
    return [float(grid[i]) for i in index[np.argsort(v[index])[::-1][:SEARCH_PEAKS]]]


def fit_ctf(image: np.ndarray, pixel_size_angstrom: float, *, voltage_kv: float = 300.0,
            cs_mm: float = 2.7, amplitude_contrast: float = 0.1,
            defocus_um: tuple[float, float] = (0.3, 6.0), low_angstrom: float = 20.0,
            high_angstrom: float = 3.0, tile: int = 512, refine_tile: int | None = 2048,
            band_width: float = 1 / 256) -> CTFFit:
    """Fit the defocus of a micrograph from its power spectrum (no noise model needed).

    The power of ``tile``² tiles (Welch) between ``low_angstrom`` and ``high_angstrom`` is cut
    into bands ``band_width`` cycles per pixel wide; in each, ``power ≈ A·CTF² + B``. The mean
    defocus is searched over ``defocus_um`` in steps of 200 Å without astigmatism, then the
    mean and the astigmatism are refined together, and refined again on the finer spectrum of
    ``refine_tile``² tiles (the largest power of two that fits if the micrograph is smaller;
    ``None`` to skip), whose rings resolve the fast Thon rings at high resolution. When that
    finer spectrum's tiles are larger than ``tile``, the search is made again on tiles twice
    ``tile``'s side (or the finer spectrum's, if smaller), and of the
    :data:`SEARCH_PEAKS` highest peaks of either search the one the finest spectrum explains
    best starts the refinement: at low dose the coarse tiles blur the fast rings of a large
    defocus into false peaks (research notes: 1.3–3.2 µm off at 10–20 e/Å² without it). Where
    the 1024² search's best peak lies over :data:`RIVAL_APART` Å from the fit, the fit records
    it (``rival_defocus_angstrom``): ``denoise`` then needs :data:`SETTLED_Z` of its rings.
    ``voltage_kv``, ``cs_mm`` and ``amplitude_contrast`` are the microscope's (defaults: 300 kV,
    2.7 mm, 0.1).
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or min(image.shape) < tile:
        raise ConfigError(f"fit_ctf needs a 2-D image of at least {tile}² pixels; got shape "
                          f"{image.shape}: pass a smaller tile")
    if not 2 * pixel_size_angstrom < high_angstrom < low_angstrom:
        raise ConfigError(f"high_angstrom={high_angstrom}, low_angstrom={low_angstrom}: need "
                          f"Nyquist ({2 * pixel_size_angstrom:.2f} Å) < high < low")
    if not (voltage_kv > 0 and cs_mm >= 0 and 0 <= amplitude_contrast < 1):
        raise ConfigError(f"voltage_kv={voltage_kv}, cs_mm={cs_mm}, amplitude_contrast="
                          f"{amplitude_contrast}: need a voltage > 0 kV, Cs ≥ 0 mm and an "
                          "amplitude contrast in [0, 1) (--voltage, --cs, --amplitude-contrast)")
    optics = dict(voltage_kv=voltage_kv, cs_mm=cs_mm, amplitude_contrast=amplitude_contrast)
    candidates, stages, rival = search_defocus(image, pixel_size_angstrom, defocus_um, low_angstrom,
                                        high_angstrom, tile, refine_tile, band_width, optics)
    fit = refine_defocus(float(candidates[0]), stages, pixel_size_angstrom, optics)
    mean = (fit.defocus_u_angstrom + fit.defocus_v_angstrom) / 2
    if rival is not None and abs(rival - mean) > RIVAL_APART:
        fit = dataclasses.replace(fit, rival_defocus_angstrom=rival)
    return fit


def search_defocus(image, pixel_size, defocus_um, low_angstrom, high_angstrom, tile, refine_tile,
                   band_width, optics) -> tuple[list[float], list, float | None]:
    """:func:`fit_ctf`'s search: the candidate mean defoci (Å), the one the finest spectrum
    explains best first; the refinement's stages, ``(objective, simplex step)`` each, the
    first the ``tile``² spectrum's; and the defocus the search on tiles twice ``tile``'s side
    found best, where that spectrum is not the finest (else None)."""
    explained = explained_power(image, tile, pixel_size, low_angstrom, high_angstrom, band_width,
                           optics)
    grid = np.arange(defocus_um[0] * 1e4, defocus_um[1] * 1e4 + 1, 200.0)
    candidates = _peaks([explained(d) for d in grid], grid)
    stages, rival = [(explained, 150.0)], None
    if refine_tile is not None:
        fine = min(refine_tile, 2 ** int(math.log2(min(image.shape))))
        finer = explained_power(image, fine, pixel_size, low_angstrom, high_angstrom, band_width,
                           optics)
        stages.append((finer, 40.0))
        if fine > tile:  # the search again on tiles twice as fine, every peak judged finest
            middle = 2 * tile
            between = finer if middle >= fine else explained_power(
                image, middle, pixel_size, low_angstrom, high_angstrom, band_width, optics)
            peaks = _peaks([between(d) for d in grid], grid)
            rival = peaks[0] if middle < fine else None
            candidates = sorted({*candidates, *peaks}, key=finer, reverse=True)
    return candidates, stages, rival


def refine_defocus(start: float, stages: list, pixel_size: float, optics: dict) -> CTFFit:
    """The fit refined from the mean defocus ``start`` (Å, no astigmatism) by Nelder–Mead on
    each of :func:`search_defocus`'s ``stages`` in turn, scored on the first."""
    from scipy.optimize import minimize

    x0 = [start, 0.0, 0.0]
    for objective, step in stages:
        simplex = [x0] + [list(np.add(x0, np.eye(3)[i] * step)) for i in range(3)]
        best = minimize(lambda p, f=objective: -f(*p), x0=x0, method="Nelder-Mead",
                        options={"initial_simplex": simplex, "xatol": 2.0, "fatol": 1e-8,
                                 "maxiter": 400})
        x0 = [float(v) for v in best.x]
    mean, ax, ay = x0
    half, angle = math.hypot(ax, ay), math.degrees(0.5 * math.atan2(ay, ax)) % 180.0
    return CTFFit(defocus_u_angstrom=mean + half, defocus_v_angstrom=mean - half,
                  astigmatism_angle_deg=angle, score=float(stages[0][0](mean, ax, ay)),
                  pixel_size_angstrom=float(pixel_size), **optics)


def ctf_wiener_gain(spectrum: np.ndarray, shape: tuple[int, int], fit: CTFFit, *,
                    low_angstrom: float = 20.0, band_width: float = 1 / 64, grid=None):
    """The Wiener gain ``S / (S + B)`` of every ``rfft2`` coefficient above ``low_angstrom``,
    with the signal power following the fitted CTF.

    ``spectrum`` is the ``rfft2`` of the (mean-subtracted) micrograph of ``shape``. In each
    band ``band_width`` cycles per pixel wide its power is ``A·CTF² + B`` (least squares,
    ``A ≥ 0``): the signal is ``A·CTF²``, and ``B`` holds the noise and whatever does not
    follow the CTF. (Narrower bands follow the envelope closer but fit ``A`` and ``B`` on
    fewer coefficients: on simulated 2048² micrographs 1/64 beat 1/128 and 1/256.) ``A`` is
    shrunk to ``A³ / (A² + se²)``, so that a chance ``A`` passes little noise, but kept at
    ``GAIN_FLOOR·B`` at least (:data:`~cryostream.spectral.GAIN_FLOOR`: 1 % at the CTF's peaks).
    The signal takes the mean ``CTF²`` over the fit's ``defocus_error_angstrom``.
    ``grid``: :func:`ctf_gain_grid` of the same ``shape``, ``fit`` and bands, made once for
    several spectra. Returns ``(gain, mask)``: float32 gains on the ``rfft2`` grid and the
    boolean mask of the coefficients they hold for (the rest: below ``low_angstrom``).
    """
    mask, c2, band, bands = grid or ctf_gain_grid(shape, fit, low_angstrom=low_angstrom,
                                                  band_width=band_width)
    power = (spectrum.real**2 + spectrum.imag**2).ravel()
    c2f = c2.ravel().astype(np.float64)
    a, b, _, _, se2 = _band_regression(power, c2f, band, bands)
    a = np.maximum(a * (a * a / np.maximum(a * a + se2, 1e-300)), GAIN_FLOOR * np.maximum(b, 0))
    gain, band = np.empty(c2.shape, np.float32), band.reshape(c2.shape)
    ky, kx = frequencies(shape, "rfft", pixel_size_angstrom=fit.pixel_size_angstrom)
    for start in range(0, c2.shape[0], CTF_ROWS_PER_BLOCK):  # float64 work arrays of a few rows
        rows = slice(start, start + CTF_ROWS_PER_BLOCK)
        signal = a[band[rows]] * (c2[rows] if not fit.defocus_error_angstrom else
                                  faded_ctf_squared(c2[rows], ky[rows] ** 2 + kx ** 2,
                                                    fit.defocus_error_angstrom, fit.voltage_kv))
        shaped = signal / np.maximum(signal + np.maximum(b[band[rows]], 0), 1e-30)
        gain[rows] = np.where(mask[rows], shaped, 0)
    return gain, mask


#: :func:`thon_ring_z` reads at most about this many coefficients (every few rows of a large
#: spectrum): a 2048² micrograph's whole ``rfft2`` grid is 2.1 million.
THON_RING_COEFFICIENTS = 4_000_000


def thon_ring_z(spectrum: np.ndarray, shape: tuple[int, int], fit: CTFFit, *,
                low_angstrom: float = 20.0, band_width: float = 1 / 64) -> float:
    """How clearly the micrograph's power follows the Thon rings of ``fit``: the largest, over
    bands ``band_width`` cycles/px wide above ``low_angstrom``, of the partial correlation of
    each coefficient's power with ``CTF²`` (both detrended by a quadratic in the frequency within the
    band, so that a spectrum's fall-off and the envelope do not count), times ``√(n − 3)`` for the
    band's ``n`` coefficients: a z-score, ``max(N(0, 1), 0)`` per band where the rings are not there.
    ``spectrum`` is the ``rfft2`` of the mean-subtracted micrograph of ``shape``; of a large one, every
    few rows are read (at most about :data:`THON_RING_COEFFICIENTS` coefficients): still a z-score.

    At low dose a fit can land far from the true defocus and still pass a check of the error
    (wrong rings cost little error where the gain is small, but discard the structure between
    the true rings). On simulated 2048² micrographs right fits score 3.3–4.8 at 10 e/Å², 9.6–12.5
    at 50, fits 10 000–40 000 Å off 2.1–2.5; the real 4096² micrograph in the test data 18.
    Bands where the fit's rings (of its larger defocus) are under 2 px apart count 0: the grid aliases
    them, and a wrong fit's ``CTF²`` can follow the power there by chance (simulated 1024²: the 2 fits
    used 43 900 and 6 900 Å off scored 3.88 and 3.69 there, 1.63 and 2.58 without); so do bands where
    ``CTF²`` is all trend (no astigmatism, slow rings: a fit with none once scored 10¹⁴⁶ there).
    """
    step = max(1, math.ceil(spectrum.size / THON_RING_COEFFICIENTS))
    k2, _ = _grid(shape, fit.pixel_size_angstrom, step, angles=False)
    side = fit.pixel_size_angstrom * min(shape)  # k·side: the radius in px of the shorter side
    use = k2 >= (1 / low_angstrom) ** 2
    if not use.any():  # pixels so coarse that nothing is finer than low_angstrom
        return 0.0
    rows = spectrum[::step][use]
    power = rows.real.astype(np.float64) ** 2 + rows.imag.astype(np.float64) ** 2
    radius = np.sqrt(k2[use]) * side
    band = (radius // max(1, round(band_width * min(shape)))).astype(np.int64)
    band -= band.min()
    bands = int(band.max()) + 1
    count = np.bincount(band, minlength=bands)
    n = np.maximum(count, 1)
    middle = np.bincount(band, radius, minlength=bands) / n  # each band's mean radius (px)
    centre = radius - middle[band]
    spread = np.maximum(np.bincount(band, centre * centre, minlength=bands) / n, 1e-12)
    t = centre / np.sqrt(spread)[band]  # the frequency within its band, standardised
    variables = [power, ctf_squared(shape, fit, row_step=step)[use].astype(np.float64), t, t * t]
    means = [np.bincount(band, v, minlength=bands) / n for v in variables]
    cov = np.empty((bands, 4, 4))
    for i, j in zip(*np.triu_indices(4), strict=True):
        products = np.bincount(band, variables[i] * variables[j], minlength=bands) / n
        cov[:, i, j] = cov[:, j, i] = products - means[i] * means[j]
    explained = cov[:, :2, 2:] @ np.linalg.solve(cov[:, 2:, 2:] + 1e-12 * np.eye(2), cov[:, 2:, :2])
    partial = cov[:, :2, :2] - explained  # of (power, CTF²) with the trend taken out
    rings = (partial[:, 1, 1] > 1e-6 * cov[:, 1, 1]) & (partial[:, 0, 0] > 0)  # else r = 0
    r = np.where(rings, partial[:, 0, 1] / np.sqrt(np.abs(partial[:, 0, 0] * partial[:, 1, 1]) + 1e-300), 0)
    gap = side * ring_spacing((middle / side) ** 2, max(fit.defocus_u_angstrom, fit.defocus_v_angstrom),
                              voltage_kv=fit.voltage_kv, cs_mm=fit.cs_mm)  # between the fit's rings, px
    z = np.maximum(r, 0) * np.sqrt(np.maximum(count - 3, 0)) * (gap >= 2)  # 0 where they alias
    return float(z[count > 16].max()) if (count > 16).any() else 0.0


def ctf_gain_grid(shape: tuple[int, int], fit: CTFFit, *, low_angstrom: float = 20.0,
                  band_width: float = 1 / 64) -> tuple:
    """What :func:`ctf_wiener_gain` needs that no spectrum changes: the mask of coefficients
    above ``low_angstrom``, ``CTF²``, each coefficient's band and the number of bands.

    The bands are fitted on the coefficients the gain is used on: in the band that holds
    ``low_angstrom`` only those above it, which join the next band if under half a band wide
    (fitted with those below, under another envelope, the gain at 16–20 Å was a quarter of the
    right one on simulated 0.5 Å/px micrographs close to focus: 0.03–0.04 dB lost). Those
    below ``low_angstrom`` form the last band, whose gain is not used."""
    ring = ring_index(shape, "rfft", dtype=np.float32)
    k2, _ = _grid(shape, fit.pixel_size_angstrom, angles=False)
    mask = k2 >= (1 / low_angstrom) ** 2
    mask[0, 0] = False
    c2 = ctf_squared(shape, fit)
    width = max(1, round(band_width * min(shape)))
    edge = min(shape) * fit.pixel_size_angstrom / low_angstrom  # low_angstrom's ring
    first = int(edge // width)
    if (first + 1) * width - edge < width / 2:
        first += 1
    band = np.maximum(ring // width, first).astype(np.int64)
    below = int(band.max()) + 1
    return mask, c2, np.where(mask, band, below).ravel(), below + 1
