"""What the CTF-shaped Wiener gain (:class:`~cryostream.denoise.steps.WienerGain`) falls back
to when a micrograph's CTF cannot be trusted: the fit it uses, the check that keeps it or not,
the noise that check draws with, and the warning that names the micrograph and the fallback."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from cryostream.denoise.scores import ctf_gain_check

__all__ = ["CTF_FIT_SIDE", "FIT_ADVICE", "GIVEN_ADVICE", "CLEAR_RINGS_Z", "DEFOCUS_ERROR_SCALE",
           "fit_for_gain", "fit_high_angstrom", "fallback_words", "zeros_noise", "noise_below",
           "fit_with_error", "no_rings", "unsettled", "clear_rings_kept", "checked_gain",
           "warn_fallback"]

#: The smallest side (pixels) whose CTF :class:`~cryostream.denoise.steps.WienerGain` fits:
#: twice ``fit_ctf``'s Welch tile, so that its search runs again on finer tiles and judges every
#: peak there. On one tile alone false peaks pass the ring score and the error check (simulated
#: 512² micrographs at 20 e/Å²: the 3 fits of 40 that passed were 15 000–38 000 Å off, each
#: stated at ±137–158 Å); at 1024² none that passed was more than 403 Å off (of 300 at 10–80 e/Å²,
#: none used is more than 568 Å off since the ring score leaves out rings the grid aliases).
CTF_FIT_SIDE = 1024


def fit_for_gain(image: np.ndarray, pixel_size_angstrom: float, optics: dict):
    """The CTF fit the CTF-shaped gain uses (:func:`cryostream.ctf.fit_ctf`, the Thon rings out
    to 3 Å or just inside Nyquist for coarser pixels), or None for a micrograph too small to
    fit (under ``CTF_FIT_SIDE`` px a side) or binned so far (pixels of 8 Å or more) that no
    Thon ring finer than the fit's 20 Å is left: the gain is then the radial one."""
    from cryostream.ctf import fit_ctf

    high = fit_high_angstrom(image.shape, pixel_size_angstrom)
    return None if high is None else fit_ctf(image, pixel_size_angstrom, high_angstrom=high,
                                             **optics)


def fit_high_angstrom(shape: tuple[int, int], pixel_size_angstrom: float) -> float | None:
    """The finest resolution (Å) :func:`fit_for_gain` fits the Thon rings to (3 Å, or just
    inside Nyquist for coarser pixels), or None where it makes no fit (see there)."""
    high = max(3.0, 2.5 * pixel_size_angstrom)
    return None if min(shape) < CTF_FIT_SIDE or high >= 20.0 else high


def fallback_words(keep_network: bool) -> str:
    """What a micrograph whose CTF is not used gets, in words."""
    return ("the radial Wiener gain below 20 Å and the network's own response above (for a "
            "model that estimates the clean image, the radial gain in any ring where that "
            "response runs against the micrograph)"
            if keep_network else "the radial Wiener gain")


#: What a fallback warning advises for a fitted CTF, and for a defocus given with the inputs.
FIT_ADVICE = ("Common for small or low-dose micrographs; if most full-size micrographs say "
              "this, check the pixel size (--pixel-size Å; Python: pixel_size_angstrom=), "
              "--voltage, --cs and --amplitude-contrast (Python: DenoiseConfig voltage_kv, "
              "cs_mm, amplitude_contrast)")
GIVEN_ADVICE = ("Common for small or low-dose micrographs; if most full-size micrographs say "
                "this, check the defocus, the pixel size and the optics: --voltage, --cs, "
                "--amplitude-contrast (Python: DenoiseConfig voltage_kv, cs_mm, "
                "amplitude_contrast)")

#: A Thon-ring score this high (about 3 times :data:`~cryostream.ctf.THON_RING_Z`; simulated
#: micrographs at 50 e/Å² and up score 10–80) says the fit found the rings beyond doubt, so a
#: check that keeps the radial gain there found it does as well: nothing is wrong with the
#: output, and no warning is given (:func:`clear_rings_kept`). Clear rings do not prove the
#: pixel size or the optics: at a wrong pixel size they are as clear, at a defocus scaled by the
#: square of its error.
CLEAR_RINGS_Z = 10.0


def zeros_noise(image: np.ndarray, noise, fit, spectrum=None) -> tuple:
    """The noise the CTF-shaped gain's check draws and scores with: ``noise`` (the measured
    :class:`~cryostream.matched.NoiseEstimate` of ``image``) brought down to the power where
    ``fit``'s CTF is zero (:func:`cryostream.ctf_zeros.noise_at_zeros`); the mean factor it was
    scaled by above 20 Å, for the record; and the factor just above 20 Å (its mean over
    1/32 cycles/px), which the radial gain below 20 Å takes (:func:`noise_below`).
    ``spectrum``: the image's mean-removed ``rfft2``, if made already."""
    import scipy.fft

    from cryostream.ctf_zeros import noise_at_zeros

    if spectrum is None:
        spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)
    scaled, ratio = noise_at_zeros(spectrum, image.shape, fit, noise)
    above = np.arange(ratio.size) / min(image.shape) >= fit.pixel_size_angstrom / 20.0
    if not above.any():
        return scaled, 1.0, 1.0
    first = int(np.argmax(above))
    low = float(ratio[first:first + max(1, round(min(image.shape) / 32))].mean())
    return scaled, round(float(ratio[above].mean()), 3), low


def noise_below(noise, factor: float):
    """``noise`` (a :class:`~cryostream.matched.NoiseEstimate`) with its power times
    ``factor``: the measured noise as the CTF's zeros show it just above 20 Å, for the radial
    gain below 20 Å (where no zero is counted).

    :func:`cryostream.matched.estimate_noise` takes a micrograph's finest scales to be noise
    and counts in a specimen's signal there; it overstates the noise by about the same factor
    at every scale (on a simulated filament at 1 Å/px and 40 e/Å²: 1.32, 1.27, 1.25 times the
    true noise at 0.01–0.03, 0.03–0.06 and 0.06–0.125 cycles/px; on a shell at 1.5 Å/px, the
    factor at the zeros 0.69–0.77). The radial gain below 20 Å built on it smoothed too much:
    on two such filaments the default's linear part kept 0.440 of the truth's FRC at 0.03–0.06
    cycles/px, the micrograph 0.440, and with the factor 0.453 (the oracle Wiener filter 0.454)."""
    if factor >= 1.0:
        return noise
    return dataclasses.replace(noise, psd=noise.psd * np.float32(factor),
                               radial=noise.radial * np.float32(factor),
                               variance=noise.variance * factor)


#: A fit whose rings score ``z`` (:func:`~cryostream.ctf.thon_ring_z`) is taken to be this
#: over ``z^1.5`` Å off in its defocus (:func:`fit_with_error`).
DEFOCUS_ERROR_SCALE = 1200.0


def fit_with_error(fit, rings_z):
    """``fit`` with the defocus error its Thon-ring score says it may have: σ =
    :data:`DEFOCUS_ERROR_SCALE` / z^1.5 Å (183 Å at the 3.5 needed to use it, 38 Å at 10,
    13 at 20), so that the CTF-shaped gain fades the rings it cannot place: its signal is the
    mean ``CTF²`` over the defocus the fit may have. The fit's error (rms over directions) on
    53 simulated calibration micrographs goes as z^-1.5 (error·z^1.5: median 592 Å, rms
    1012 Å, spread a factor of 2); the scale was chosen by the error of the linear part on
    the 34 of 40 whose rings are found (benchmarks page, "The CTF fit's error"): 600, 1200,
    1800 and 2400 gained 0.0016, 0.0019, 0.0019 and 0.0016 dB on average and lost at most
    0.0000, 0.0003, 0.0034 and 0.0071 on one micrograph. Calibrated on 2048² micrographs: on
    larger ones z grows with the coefficients it reads faster than the fit's error falls, so
    σ errs small (towards the sharp rings of a fit taken as exact)."""
    if rings_z is None or not rings_z > 0:
        return fit
    return dataclasses.replace(fit, defocus_error_angstrom=DEFOCUS_ERROR_SCALE / rings_z ** 1.5)


def no_rings(rings_z, fit=None) -> bool:
    """Whether a fit's Thon-ring score (:func:`~cryostream.ctf.thon_ring_z`; None: not
    measured) says its rings are not in the micrograph, or, for a ``fit`` whose spectra
    disagree on the defocus (:attr:`~cryostream.ctf.CTFFit.rival_defocus_angstrom`), not
    clearly enough to say which defocus they are (under :data:`~cryostream.ctf.SETTLED_Z`)."""
    from cryostream.ctf import SETTLED_Z, THON_RING_Z

    if rings_z is None:
        return False
    return rings_z < (SETTLED_Z if unsettled(fit) else THON_RING_Z)


def unsettled(fit) -> bool:
    """Whether ``fit`` (a :class:`~cryostream.ctf.CTFFit`, or its record's dict) has a rival
    defocus, so that its rings must score :data:`~cryostream.ctf.SETTLED_Z`."""
    rival = fit.get("rival_defocus_angstrom") if isinstance(fit, dict) else getattr(
        fit, "rival_defocus_angstrom", None)
    return rival is not None


def clear_rings_kept(rings_z, check) -> bool:
    """Whether a fit whose rings score ``rings_z`` (None: not measured) and whose check scored
    ``check`` (None or NaN: not made) found its rings clearly (:data:`CLEAR_RINGS_Z`) and the
    radial gain doing as well (a check of 0 or more), so that the radial gain is kept without
    a warning: the output is sound. (Its progress note says so; the first such micrograph of a
    call is noted once, :class:`~cryostream.denoise.verbose.MicrographNotes`.)"""
    return (rings_z is not None and rings_z >= CLEAR_RINGS_Z and check is not None
            and math.isfinite(check) and check >= 0)


def checked_gain(image, noise, fit, what: str, rings_z=None, *,
                 advice: str = GIVEN_ADVICE, quiet: bool = False, grid=None) -> float:
    """:func:`~cryostream.denoise.scores.ctf_gain_check` of ``fit`` on ``image``, with a
    :class:`~cryostream.ctf.CTFFallbackWarning` naming ``what`` and the fallback when it does
    not help (:func:`warn_fallback`; none if ``quiet``, or where the rings are clear and the
    radial gain does as well: :func:`clear_rings_kept`); NaN, unchecked, when ``rings_z`` (the
    fit's :func:`~cryostream.ctf.thon_ring_z`) says the rings are not there (:func:`no_rings`).
    ``grid``: the fit's :func:`~cryostream.ctf.ctf_gain_grid` for ``image``, if made already."""
    check = math.nan if no_rings(rings_z, fit) else ctf_gain_check(image, noise, fit, grid=grid)
    if not check < 0 and not quiet and not clear_rings_kept(rings_z, check):  # NaN: not made
        warn_fallback(what, rings_z, advice, stacklevel=4, fit=fit, check=check)
    return check


def warn_fallback(what: str, rings_z, advice: str, *, stacklevel: int = 2, fit=None,
                  check: float | None = None) -> None:
    """The :class:`~cryostream.ctf.CTFFallbackWarning` of a CTF fit, or a known defocus,
    named by ``what``, that :func:`checked_gain` did not keep (``check``: its score, as
    NAME.json's ``ctf_check`` records it); :func:`checked_gain` gives none where the rings are
    clear and the radial gain does as well (:func:`clear_rings_kept`)."""
    from cryostream.ctf import SETTLED_Z, THON_RING_Z, CTFFallbackWarning

    if no_rings(rings_z):
        # as the record rounds it (2 decimals), with more only where that reads as the bar
        shown = next((f"{rings_z:.{d}f}" for d in (2, 3, 4) if round(rings_z, d) < THON_RING_Z),
                     f"{rings_z:.6f}")
        why = f"has no Thon rings in the spectrum (their score z is {shown}, under the " \
              f"{THON_RING_Z} needed)"
    elif no_rings(rings_z, fit):
        why = (f"is not settled: its 1024-px spectrum puts the defocus at "
               f"{fit.rival_defocus_angstrom / 1e4:.2f} µm instead, and its rings score z "
               f"{rings_z:.2f}, under the {SETTLED_Z} needed to choose")
    else:
        checked = check is not None and math.isfinite(check)
        why = "does not lower the error by recorruption" + (
            f" (its check scored {check:+.2g}, recorded as ctf_check in NAME.json; the CTF-shaped "
            "gain is kept only where the check scores below 0)" if checked else "")
    warnings.warn(f"{what} {why}; it is denoised with {fallback_words(no_rings(rings_z, fit))} "
                  f"(a denoise output's NAME.json records ctf_used false). {advice}", CTFFallbackWarning,
                  stacklevel=stacklevel)
