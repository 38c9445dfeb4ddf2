"""The array maths of post-processing: each function maps a network's output (and the
micrograph it came from) to a better estimate. :mod:`cryostream.denoise.steps` wraps them as
composable steps."""

from __future__ import annotations

import dataclasses

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["n2n_alpha2", "check_correctable", "n2n_correct", "keep_input_mean",
           "clamp_negative_rings", "match_wiener_gain", "wiener_gain_outputs", "dihedral_mean",
           "NetworkAbove", "ring_sums", "SMOOTH_RINGS"]


@dataclasses.dataclass(frozen=True)
class NetworkAbove:
    """A ``ctf`` for :func:`match_wiener_gain` when a micrograph's Thon rings are not found
    (:func:`~cryostream.ctf.thon_ring_z`): the radial Wiener gain below ``low_angstrom``, and
    above it the estimate's own linear response, kept as it is. There the signal is a few %
    of the noise in every ring, and the radial gain from the measured noise (``1 − N/P``) is
    swamped by the noise estimate's own error: at 10 e/Å² on simulated 2048² micrographs it
    cost 0.5 dB against the network's own response for a Noisier2Noise run (H200), and
    0.1–0.15 dB for the general model (two cores), while discarding the structure the
    network had kept in those rings (the FRC). A ring within Nyquist where that response is
    negative (the estimate runs against the micrograph: the general model below the doses it
    was trained on, at 5 e/Å²) takes the radial gain instead: a ring's best weight of the
    micrograph alone is never under 0, and the inverted ring would turn the contrast of that
    detail over; the radial gain, unreliable as it is there, keeps the ring's correlation.
    Only for a model whose output estimates the clean image (``mend_inverted``; ``denoise`` passes
    :attr:`~cryostream.runs.RunRecord.estimates_clean`): after the Noisier2Noise correction a
    ring's response sits at 0 give or take the correction's error where the noise dominates,
    and the measurement above (0.5 dB for the network's own response) was of that case."""

    pixel_size_angstrom: float
    low_angstrom: float = 20.0
    mend_inverted: bool = True


def check_correctable(record) -> None:
    """A :class:`ConfigError` if a run's model estimates the clean image itself, so the
    Noisier2Noise correction does not apply (``record``: its :class:`~cryostream.runs.RunRecord`)."""
    if record.recorrupt:
        raise ConfigError("this run was trained on recorrupted targets (--recorrupt): it "
                          "estimates the clean image directly; drop --n2n-correction (Python: "
                          "n2n_correction=False)")
    if record.noise.model == "none":
        raise ConfigError("this run was trained on separate targets (no added noise): it "
                          "estimates the target directly; drop --n2n-correction (Python: "
                          "n2n_correction=False)")


def n2n_alpha2(record, image_normalised: np.ndarray) -> float:
    """Variance of the training noise over the micrograph's own noise (Noisier2Noise's ``α²``).

    Matched noise is ``α`` times the micrograph's own by construction; for the white models
    the micrograph's noise variance is read from pixel differences. ``record`` is the run's
    :class:`~cryostream.runs.RunRecord`; ``image_normalised`` the micrograph divided by its
    percentile, as in training.
    """
    check_correctable(record)
    noise = record.noise
    if noise.model == "matched":  # measured per micrograph and scaled by construction
        return float(noise.alpha) ** 2
    own = float(np.var(np.diff(image_normalised, axis=1)) / 2)
    added = 0.0
    if noise.model in ("poisson", "poisson-gaussian"):
        added += float(np.mean(np.maximum(image_normalised, 0))) / noise.dose
    if noise.model in ("gaussian", "poisson-gaussian"):
        added += noise.sigma**2
    return added / own


def n2n_correct(output: np.ndarray, noisy: np.ndarray, alpha2: float) -> np.ndarray:
    """Noisier2Noise: turn E[y | z] into an estimate of the clean signal.

    For a network trained to predict a noisy micrograph ``y`` from ``z = y + m``, where the
    added noise ``m`` has ``alpha2`` times the variance of the micrograph's own noise,
    ``x̂ = ((1 + α²)·f(z) − z) / α²`` (Moran et al., CVPR 2020). Applied to a micrograph
    itself (no added noise), ``noisy`` is the micrograph.
    """
    if not alpha2 > 0:
        raise ConfigError(f"alpha2={alpha2}: the relative noise strength must be > 0")
    return ((1 + alpha2) * np.asarray(output) - noisy) / alpha2


def keep_input_mean(estimate: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """``estimate`` shifted to the mean of ``noisy``.

    The noise has zero mean, so the clean image's mean is the input's (to within σ/√pixels);
    the Noisier2Noise correction would multiply the network's own offset by
    ``(1 + α²) / α²`` (0.0015–0.0036 on simulated micrographs normalised to their 95th
    percentile, 0.03–0.18 dB of PSNR).
    """
    shift = np.mean(noisy, dtype=np.float64) - np.mean(estimate, dtype=np.float64)
    return estimate + np.asarray(shift, dtype=estimate.dtype)


def clamp_negative_rings(estimate: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """Zero the rings of spatial frequency where ``estimate`` is anti-correlated with ``noisy``.

    The Noisier2Noise correction multiplies the network's error by ``(1 + α²) / α²``. Where
    the network's transfer falls below ``1 / (1 + α²)``, the corrected output is
    anti-correlated with the input; the truth never is (its covariance with the input is its
    power). Per ring (:func:`cryostream.spectral.ring_index`), the regression coefficient of the
    estimate on the input is ``Re Σ E·conj(Y) / Σ |Y|²``; a denoiser's best linear gain
    ``S / (S + N)`` is never negative, so rings where it is negative carry only harm. The mean
    is kept.
    """
    import scipy.fft

    from cryostream.spectral import ring_index

    estimate = np.asarray(estimate, np.float32)
    noisy = np.asarray(noisy, np.float32)
    ny, nx = noisy.shape
    rings = np.minimum(ring_index((ny, nx), dtype=np.float32), min(ny, nx) // 2)
    mean = float(estimate.mean())
    e = scipy.fft.rfft2(estimate - mean, workers=-1)
    y = scipy.fft.rfft2(noisy - noisy.mean(), workers=-1)
    n = min(ny, nx) // 2 + 1
    cross = np.bincount(rings.ravel(), (e * np.conj(y)).real.ravel(), minlength=n)
    keep = (cross >= 0).astype(np.float32)
    keep[0] = 1.0
    e *= keep[rings]
    return scipy.fft.irfft2(e, s=(ny, nx), workers=-1).astype(np.float32) + np.float32(mean)


def match_wiener_gain(estimate: np.ndarray, noisy: np.ndarray, noise, *,
                      min_coefficients: int = 128, ctf=None, weights=None,
                      snr: float | None = None, binned: np.ndarray | None = None,
                      found: dict | None = None) -> np.ndarray:
    """Give a denoised image the Wiener filter's linear response; keep everything else.

    Per ring of spatial frequency (merged rings, :func:`cryostream.spectral.merge_rings`), the
    estimate ``E`` splits into a part proportional to the micrograph ``Y`` and a part ``R``
    uncorrelated with it over the ring: ``E = g·Y + R`` with ``g = Re⟨E, Y⟩ / ⟨Y, Y⟩``. For any
    mix ``a·Y + R``, the error against the truth ``X`` is least at ``a = Re⟨X, Y⟩ / ⟨Y, Y⟩``,
    whatever ``R`` is (``R ⟂ Y``): the Wiener gain. It needs no truth: ``1 − N / P`` with
    ``P`` the micrograph's power over the ring and ``N`` the measured noise power (``noise``,
    a :class:`~cryostream.matched.NoiseEstimate` in the units of ``noisy``), clipped to
    [:data:`~cryostream.spectral.GAIN_FLOOR`, 1]. The result is ``w·Y + R``: the network
    keeps what it found beyond a linear filter (particle shapes), and its linear response,
    which a U-Net's receptive field cannot make follow the Thon rings, becomes the Wiener
    filter's. The mean is the micrograph's.

    ``ctf`` (a :class:`~cryostream.ctf.CTFFit` of the micrograph): above 20 Å the linear
    response is the CTF-shaped Wiener gain of each coefficient
    (:func:`~cryostream.ctf.ctf_wiener_gain`), which follows the Thon rings and their
    astigmatism instead of averaging over each ring. A :class:`NetworkAbove` keeps the
    estimate's own response above 20 Å instead (the fallback when no fit can be trusted; its
    rings of negative response excepted).

    ``weights`` (a :class:`~cryostream.denoise.weights.LearnedWeights`): per band of
    frequency, the result is ``a·L + b·R`` instead, ``L`` the linear response just described
    (``w·Y``; with a :class:`NetworkAbove`, the estimate's own ``g·Y`` above 20 Å) and
    ``(a, b)`` the table's weights for the signal-to-noise ratio ``snr`` (None: measured on
    ``noisy``; a pipeline passes the micrograph's, so that its recorrupted copies take the
    same row). A table that weighs the binned pass gives ``a·L + b·R + c·B``, ``B`` its output
    (``binned``, :func:`~cryostream.denoise.binned.binned_estimate`); one that weighs what the
    gain dropped adds ``d·(Y − L)``.

    ``found`` (a dict): with a :class:`NetworkAbove` that mended rings of negative response,
    ``found["inverted_rings"]`` says how many (merged rings) and their span in Å.
    """
    return wiener_gain_outputs(estimate, noisy, noise, [ctf], min_coefficients=min_coefficients,
                               weights=weights, snr=snr, binned=binned, found=found)[0]


def wiener_gain_outputs(estimate: np.ndarray, noisy: np.ndarray, noise, ctfs: list, *,
                        min_coefficients: int = 128, weights=None,
                        snr: float | None = None,
                        binned: np.ndarray | None = None,
                        found: dict | None = None,
                        sum_rings: bool = True) -> list[np.ndarray]:
    """:func:`match_wiener_gain` of one estimate with each of ``ctfs`` (``None``: the radial
    gain; a :class:`~cryostream.ctf.CTFFit`; or ``(fit, grid)`` with
    :func:`~cryostream.ctf.ctf_gain_grid` made once;
    or a :class:`NetworkAbove`), from one set of Fourier transforms: each output is bit for
    bit what :func:`match_wiener_gain` gives. An ``estimate`` that is
    ``noisy`` itself (the Wiener filter of the micrograph) is transformed once. ``weights``,
    ``snr``, ``binned``, ``found``: as :func:`match_wiener_gain`'s, for every output.
    ``sum_rings=False``: below 20 Å each ring's own radial gain, as the radial output has it
    (:func:`~cryostream.denoise.scores.ctf_gain_check` compares the two gains above 20 Å
    only)."""
    import scipy.fft

    from cryostream.spectral import GAIN_FLOOR, merge_rings, ring_regression, wiener_gain

    same = estimate is noisy
    noisy = np.asarray(noisy, np.float32)
    estimate = noisy if same else np.asarray(estimate, np.float32)
    ny, nx = noisy.shape
    ring, merged, weight = merge_rings((ny, nx), min_coefficients)
    bins = merged[ring]
    y = scipy.fft.rfft2(noisy - noisy.mean(), workers=-1)
    e = y if same else scipy.fft.rfft2(estimate - estimate.mean(), workers=-1)
    gain, power = ring_regression(e, y, bins, weight)
    # the measured noise of each ring, summed per bin with the same coefficient weights
    ring_weight = np.bincount(ring.ravel(), weight.ravel(), minlength=merged.size)
    noise_power = np.bincount(merged, ring_weight * noise.ring_power((ny, nx), merged.size))
    radial = np.maximum(wiener_gain(power, noise_power), GAIN_FLOOR) - gain
    radial[0] = 0.0
    radial = radial.astype(np.float32)[bins]
    smooth = radial
    if sum_rings and any(c is not None for c in ctfs):  # the radial gain below 20 Å: summed
        smooth = np.maximum(wiener_gain(*ring_sums((power, noise_power))), GAIN_FLOOR) - gain
        smooth[0] = 0.0
        smooth = smooth.astype(np.float32)[bins]
    shaped_gain = any(c is not None and not isinstance(c, NetworkAbove) for c in ctfs)
    # the estimate's own linear response per coefficient, where a CTF or the weights need it
    own = gain.astype(np.float32)[bins] if weights is not None or shaped_gain else None
    if weights is not None:  # a·(the gain's linear response) + b·(the estimate's rest)
        from cryostream.denoise.weights import band_weights

        a, b, *c = band_weights(weights, y, (ny, nx), noise, ring, weight, snr)
        d = c[1] if len(c) > 1 else None  # what the gain dropped: d·(Y − L)
        rest = e - own * y
        if c and binned is None:
            raise ValueError("these learned weights weigh the binned pass: pass its output")
        # the binned pass's share, the same for every output
        shared = c[0] * scipy.fft.rfft2(np.asarray(binned, np.float32) - np.float32(
            np.mean(binned)), workers=-1) if c else np.float32(0)
        if d is not None:  # a·L + d·(Y − L) = (a − d)·L + d·Y
            shared = shared + d * y
            a = a - d
    outs = []
    for ctf in ctfs:
        change = radial
        if isinstance(ctf, NetworkAbove):
            from cryostream.spectral import frequencies

            ky, kx = frequencies((ny, nx), "rfft", pixel_size_angstrom=ctf.pixel_size_angstrom,
                                 dtype=np.float32)
            k2 = ky * ky + kx * kx
            above = k2 >= (1 / ctf.low_angstrom) ** 2
            keep = above.copy()  # the network's, above
            # a response under 0 is never right: a ring's best weight of Y, <X, Y> / <Y, Y>,
            # is >= 0 (the noise is independent of the specimen); there the radial gain. Not
            # in the corners past Nyquist, where nothing is left to invert and a gain a hair
            # under 0 is chance (seen on micrographs at 10 e/Å²)
            if ctf.mend_inverted:
                inverted = keep & (gain < 0)[bins] & (ring <= min(ny, nx) // 2)
                keep &= ~inverted
                if found is not None and inverted.any():
                    k2 = k2[inverted]
                    found["inverted_rings"] = {
                        "count": int(np.unique(bins[inverted]).size),
                        "angstrom": [round(float(k2.max() ** -0.5), 2),
                                     round(float(k2.min() ** -0.5), 2)]}
            # below 20 Å the smoothed radial gain; above it, in rings of inverted response, the
            # ring's own (as measured on the micrographs at 5 e/Å² it was chosen on)
            change = np.where(keep, np.float32(0), np.where(above, radial, smooth))
        elif ctf is not None:
            from cryostream.ctf import ctf_wiener_gain

            fit, grid = ctf if isinstance(ctf, tuple) else (ctf, None)
            shaped, above = ctf_wiener_gain(y, (ny, nx), fit, grid=grid)
            change = np.where(above, shaped - own, smooth)
        spectrum = change * y  # in place from here: each whole-image temporary is 230 MB
        spectrum += e
        if weights is not None:
            spectrum = a * (spectrum - rest) + b * rest + shared
        out = scipy.fft.irfft2(spectrum, s=(ny, nx), workers=-1, overwrite_x=True)
        out += np.float32(noisy.mean())
        outs.append(out.astype(np.float32, copy=False))
    return outs


#: Below 20 Å, where a micrograph's gain follows its CTF above, each merged ring's power and
#: noise in the radial Wiener gain are summed over this many rings on either side
#: (:func:`ring_sums`).
SMOOTH_RINGS = 4
#: ... and over no more than a ring's index divided by this near the centre (summed over ±4
#: rings from the first, the gain lost 0.19 dB on a 1024² micrograph at 0.66 Å/px).
SMOOTH_FROM = 8


def ring_sums(sums: tuple[np.ndarray, ...], rings: int | None = None) -> tuple[np.ndarray, ...]:
    """Each of ``sums`` (per merged ring, bin 0 the mean) summed over ``rings`` bins on either
    side (default :data:`SMOOTH_RINGS`; fewer at the ends, and no more than a bin's index over
    :data:`SMOOTH_FROM` near the centre, where the spectrum falls steeply and each bin holds
    many coefficients already), bin 0 left alone.

    The gain ``1 − N / P`` of one ring is noisy where the signal is a few % of the noise: a
    ring of ``n`` coefficients measures its power to about ``1/√n`` (7 % at 20 Å on a 2048²
    micrograph of 0.66 Å/px), more than a low-dose micrograph's signal there, so the gain
    jumps between its floor and a few % from ring to ring, and through the FRC's edge taper
    each ring then holds more of its neighbours' noise. Summed over 9 rings it follows the
    spectrum instead. On simulated 2048² micrographs (eight of the general model's held-out
    conditions, two micrographs each) the default's linear part (the CTF-shaped gain above
    20 Å, this one below) rose 0.000–0.018 dB, and its FRC at 0.01–0.03 cycles/px at T20S
    10 e/Å² from 0.378 to 0.399 (the micrograph's own 0.399, the oracle Wiener filter's
    0.401). Not used where the radial gain is the whole gain: there it also spans the fine
    Thon rings of a micrograph far from focus, which 9 rings blur (−0.2 dB on a filament at
    3 µm and 40 e/Å²)."""
    n = len(sums[0])
    index = np.arange(n)
    half = np.minimum(SMOOTH_RINGS if rings is None else rings, index // SMOOTH_FROM)
    lo, hi = np.maximum(index - half, 1), np.minimum(index + half, n - 1)
    out = []
    for s in sums:
        s = np.asarray(s, np.float64)
        c = np.concatenate([[0.0], np.cumsum(s)])
        summed = c[hi + 1] - c[lo]
        summed[0] = s[0]
        out.append(summed)
    return tuple(out)


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
