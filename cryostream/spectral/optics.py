"""Electron optics: the electron wavelength, the astigmatic defocus and the contrast transfer
function, written once for the simulator and for the analysis.

Conventions are RELION's: defocus in Å, underfocus positive, ``U ≥ V`` the defocus along the
two axes of the ellipse and the astigmatism angle that of ``U`` from the x axis. The phase
shift of a spatial frequency ``k`` (1/Å) is ``χ = π λ Δf k² − ½ π Cs λ³ k⁴`` and the contrast
transfer ``CTF = −(√(1 − Q²) · sin χ + Q · cos χ)`` with ``Q`` the amplitude contrast: at
small ``k`` an underfocused weak-phase object shows dark, and ``CTF² = Q²`` at ``k = 0``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["electron_wavelength", "astigmatic_defocus", "contrast_transfer", "ring_spacing",
           "ctf_squared_grid", "faded_ctf_squared", "CTF_ROWS_PER_BLOCK"]

#: Rows of an ``rfft2`` grid :func:`ctf_squared_grid` computes at a time: its float64 work
#: arrays stay tens of MB (a whole 7676 × 7420 micrograph's took 2.3 GB at once).
CTF_ROWS_PER_BLOCK = 256


def electron_wavelength(voltage_kv: float) -> float:
    """The relativistic wavelength of an electron accelerated through ``voltage_kv`` kV, in Å.

    Examples
    --------
    >>> round(electron_wavelength(300.0), 5)
    0.01969
    """
    v = voltage_kv * 1e3
    return 12.2643 / math.sqrt(v * (1 + 0.97845e-6 * v))


def astigmatic_defocus(theta, mean_angstrom: float, astigmatism_angstrom: float,
                       angle_deg: float):
    """The defocus along direction ``theta`` of an astigmatic lens, in Å.

    ``mean + (astigmatism / 2) · cos 2(θ − angle)``: ``U = mean + astigmatism / 2`` along
    ``angle`` and ``V = mean − astigmatism / 2`` across it.

    Parameters
    ----------
    theta : float or ndarray
        Direction of the spatial frequency in radians from the x axis (``arctan2(ky, kx)``).
    mean_angstrom : float
        Mean defocus ``(U + V) / 2`` in Å.
    astigmatism_angstrom : float
        ``U − V`` in Å.
    angle_deg : float
        Angle of ``U`` from the x axis, in degrees.

    Returns
    -------
    float or ndarray
        The defocus in Å, shaped like ``theta``.
    """
    return mean_angstrom + (astigmatism_angstrom / 2) * np.cos(2 * (theta - np.deg2rad(angle_deg)))


def contrast_transfer(k2, defocus_angstrom, *, voltage_kv: float = 300.0, cs_mm: float = 2.7,
                      amplitude_contrast: float = 0.1):
    """The contrast transfer function at squared spatial frequency ``k2``.

    ``−(√(1 − Q²) · sin χ + Q · cos χ)`` with ``χ = π λ Δf k² − ½ π Cs λ³ k⁴`` (no envelope).
    The constants are cast to ``k2``'s float type, so float32 frequencies give float32
    arithmetic wherever the defocus is float32 too.

    Parameters
    ----------
    k2 : float or ndarray
        ``k²`` in Å⁻² (``k`` the spatial frequency in 1/Å).
    defocus_angstrom : float or ndarray
        Defocus ``Δf`` in Å (underfocus positive), a number or an array broadcasting with
        ``k2`` (:func:`astigmatic_defocus`).
    voltage_kv, cs_mm, amplitude_contrast : float
        Accelerating voltage (kV), spherical aberration ``Cs`` (mm) and amplitude contrast
        ``Q`` (0–1).

    Returns
    -------
    float or ndarray
        The CTF, between −1 and 1, shaped like ``k2`` broadcast with the defocus.

    Examples
    --------
    >>> float(contrast_transfer(0.0, 15000.0))  # −Q at zero frequency
    -0.1
    """
    k2 = np.asarray(k2)
    real = k2.dtype.type if k2.dtype.kind == "f" else np.float64
    wavelength = electron_wavelength(voltage_kv)
    cs_angstrom = cs_mm * 1e7
    chi = (real(np.pi * wavelength) * defocus_angstrom * k2
           - real(0.5 * np.pi * cs_angstrom * wavelength**3) * k2 * k2)
    q = amplitude_contrast
    return -(real(math.sqrt(1 - q * q)) * np.sin(chi) + real(q) * np.cos(chi))


def ring_spacing(k2, defocus_angstrom, *, voltage_kv: float = 300.0, cs_mm: float = 2.7):
    """How far apart the CTF's zeros (the Thon rings) are at squared spatial frequency ``k2``
    (Å⁻²): ``1 / (2λ|Δf·k − Cs·λ²·k³|)`` cycles/Å, where ``χ`` moves by π (inf where it stands).

    Examples
    --------
    >>> round(float(ring_spacing(0.01, 20000.0)), 5)  # at 10 Å, 2 µm underfocus
    0.01277
    """
    k = np.sqrt(np.asarray(k2, np.float64))
    wavelength = electron_wavelength(voltage_kv)
    slope = 2 * wavelength * np.abs(defocus_angstrom * k - cs_mm * 1e7 * wavelength**2 * k**3)
    with np.errstate(divide="ignore"):
        return 1 / slope


def ctf_squared_grid(shape: tuple[int, int], pixel_size_angstrom: float,
                     defocus_u_angstrom: float, defocus_v_angstrom: float, angle_deg: float, *,
                     voltage_kv: float = 300.0, cs_mm: float = 2.7,
                     amplitude_contrast: float = 0.1, row_step: int = 1) -> np.ndarray:
    """``CTF²`` of an astigmatic defocus on the ``rfft2`` grid of an image of ``shape``
    (``(ny, nx // 2 + 1)``; with ``row_step``, of every ``row_step``-th row), float32.

    Computed :data:`CTF_ROWS_PER_BLOCK` rows at a time in float64, each value as it would be
    computed whole (:func:`astigmatic_defocus`, :func:`contrast_transfer`).
    """
    from cryostream.spectral.rings import frequencies

    ky, kx = frequencies(shape, "rfft", pixel_size_angstrom=pixel_size_angstrom)
    ky = ky[::row_step]
    out = np.empty((ky.shape[0], kx.shape[1]), np.float32)
    mean = (defocus_u_angstrom + defocus_v_angstrom) / 2
    for start in range(0, ky.shape[0], CTF_ROWS_PER_BLOCK):
        rows = ky[start : start + CTF_ROWS_PER_BLOCK]
        defocus = astigmatic_defocus(np.arctan2(rows, kx), mean,
                                     defocus_u_angstrom - defocus_v_angstrom, angle_deg)
        c = contrast_transfer(rows * rows + kx * kx, defocus, voltage_kv=voltage_kv, cs_mm=cs_mm,
                              amplitude_contrast=amplitude_contrast)
        out[start : start + CTF_ROWS_PER_BLOCK] = c * c
    return out


def faded_ctf_squared(c2, k2, defocus_error_angstrom: float, voltage_kv: float = 300.0):
    """The mean of ``CTF²`` over a Gaussian error of ``defocus_error_angstrom`` (σ) in the
    defocus: ``½ − (½ − CTF²)·exp(−2(πλσk²)²)``, exact for ``CTF = sin(χ + φ)`` (the
    amplitude contrast is the phase ``φ``; the defocus error moves ``χ`` by ``πλk²·δ``). The
    rings fade to ½ where the error reaches a quarter period of the phase. ``c2``: ``CTF²`` at
    spatial frequencies ``k2`` (Å⁻², broadcastable); float32 out."""
    s = np.pi * electron_wavelength(voltage_kv) * defocus_error_angstrom * k2
    return (0.5 - (0.5 - c2) * np.exp(-2 * s * s)).astype(np.float32)
