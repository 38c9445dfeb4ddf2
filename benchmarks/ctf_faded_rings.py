"""A CTF-shaped Wiener gain on Thon rings that fade as the micrograph's own spectrum shows.

The shipped CTF-shaped gain (:func:`cryostream.ctf.ctf_wiener_gain`) takes each band's
signal as ``A·CTF²``: rings of full depth out to Nyquist (faded only by the fit's own defocus
error). On the real EPU micrograph the rings fade at 3–6 Å (modulation depth 0.5 → 0.05
from 0.12 to 0.20 cycles/px, ``ctf_check_bands.py``), the gain discards the signal between
them and the check keeps the radial gain. Here the signal is

    S(k, θ) = A_band · [E(k)·CTF²(k, θ) + (1 − E(k)) / 2]

with an envelope ``E(k) = exp(−(k / k0)^p)`` (``p = 4``: a Gaussian spread of the defocus,
``σ = 1 / (√2·π·λ·k0²)``; ``p = 2``: the fall-off of partial coherence far from focus)
fitted on the micrograph against the fitted CTF: per band ``power − N ≈ A·f_E`` (``N`` the
measured noise at the CTF's zeros, as the check draws it; least squares, ``A ≥ 0``), ``k0``
and ``p`` chosen for the least residual over all bands (each weighed by its mean power⁻²).
``E ≡ 1`` is a candidate, so rings that do not fade keep the shipped model. Per band ``A``
is fitted with the measured noise (not a free intercept: where ``E`` is small the rings
alone cannot place it), shrunk to ``A³ / (A² + se²)`` and kept at ``GAIN_FLOOR·N`` at least;
the gain is ``S / (S + N)``. With a wrong fit the rings explain little, ``E`` comes out
small and the signal flat: the gain falls back towards the radial one by itself. The
envelope is fitted on the spectrum the gain is for: each of the check's recorrupted draws
fits its own. Variants (:data:`VARIANTS`): ``faded`` as above, ``tolerant`` with the noise
taken ``--tolerance`` (3 %) higher in both fits (power off the rings within that of the noise
is not signal), ``free`` (the tolerant envelope read through the shipped free-intercept
regression, :func:`_free_intercept_gain`) and ``ringflat`` (:func:`_ring_flat_gain`, not run
by default: each ring's own flat part lost 0.07 dB at 50 e/Å²).

For each micrograph (prepared as ``denoise`` prepares it: divided by its 95th percentile;
the fit, its rings' score, its defocus error and the noise at its zeros as
:class:`~cryostream.denoise.steps.WienerGain` has them) it prints and writes the fitted
envelope and :func:`~cryostream.denoise.scores.ctf_gain_check` with the shipped gain and with
each variant (the check's own draws and recorruption; the prototype gain swapped in for
``ctf_wiener_gain`` while it runs); for a simulated one also the true error difference
against the radial gain above 20 Å (what the check estimates) and the PSNR and mean FRC
(0.05–0.45 cycles/px) against the truth of the Wiener filter as ``denoise`` applies it
(:func:`~cryostream.denoise.corrections.match_wiener_gain` with the fit). ``--off`` adds
fits made wrong on purpose (the mean defocus moved by that many Å).

Usage (2-core machine: 10–60 s a 2048² micrograph with two wrong fits)::

    python benchmarks/ctf_faded_rings.py --micrograph ../shared/data/real/epu2.9_example.mrc \\
        --crop 2048 --off 400 3000 --out docs/results/ctf_faded_rings/real_crop2048.json
    python benchmarks/ctf_faded_rings.py --simulate 2048 --dose 20 --off 400 3000 \\
        --out docs/results/ctf_faded_rings/simulated_2048_20e.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The envelopes tried: ``p`` and ``k0`` (in units of the Nyquist frequency).
POWERS = (2.0, 4.0)
K0_NYQUIST = tuple(np.geomspace(0.12, 4.0, 48))

#: The prototypes compared with the shipped gain: ``faded`` (the flat part fitted per band
#: with the measured noise), ``tolerant`` (the same, the noise taken :data:`TOLERANCE` higher
#: in the fit: power off the rings within that of the noise is not signal), ``free``
#: (:func:`_free_intercept_gain`) and, not by default, ``ringflat`` (:func:`_ring_flat_gain`).
VARIANTS = ("faded", "tolerant", "free")
TOLERANCE = 0.03

#: Set while the prototype gain is swapped in: the measured noise, the factor on it (1 on the
#: micrograph, 1 + β² on the check's recorrupted draws), the variant's settings and the
#: envelopes fitted.
_STATE: dict = {}


def envelope(k: np.ndarray, k0: float, p: float) -> np.ndarray:
    return np.exp(-np.power(k / k0, p)) if np.isfinite(k0) else np.ones_like(k)


def ring_moments(spectrum, shape, fit, noise, grid) -> dict:
    """Per integer ring above 20 Å (and its band of ``grid``): the coefficients, ``ΣCTF²``,
    ``Σ(CTF²)²``, ``ΣX``, ``ΣCTF²·X``, ``ΣX²`` and ``ΣP`` with ``X = P − N``, the mean ``k``
    (Å⁻¹) and the mean noise ``N``."""
    from cryostream.spectral import ring_index

    mask, c2, band, _ = grid
    ring = ring_index(shape, "rfft", dtype=np.float32).astype(np.int64)
    rings = int(ring.max()) + 1
    n_ring = noise.ring_power(shape, rings)
    k2 = _k2(shape, fit)
    m = mask.ravel()
    r = ring.ravel()[m]
    p = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2).ravel()[m]
    c = c2.ravel()[m].astype(np.float64)
    x = p - n_ring[r]

    def s(v):
        return np.bincount(r, v, minlength=rings)

    out = {"n": s(np.ones_like(c)), "c": s(c), "cc": s(c * c), "x": s(x), "cx": s(c * x),
           "xx": s(x * x), "p": s(p), "noise": n_ring}
    n = np.maximum(out["n"], 1)
    out["k"] = np.sqrt(s(k2.ravel()[m]) / n)
    out["band"] = np.rint(np.bincount(r, band[m], minlength=rings) / n).astype(np.int64)
    out["keep"] = out["n"] > 0
    return out


def band_fit(mom: dict, e: np.ndarray):
    """Per band: ``A`` (least squares of ``X ≈ A·f_E``, ≥ 0), the residual, its ``se²``,
    the coefficients and the mean power."""
    keep = mom["keep"]
    b = mom["band"][keep]
    e = e[keep]
    n, c, cc = mom["n"][keep], mom["c"][keep], mom["cc"][keep]
    sfx = np.bincount(b, 0.5 * (1 - e) * mom["x"][keep] + e * mom["cx"][keep])
    sff = np.bincount(b, 0.25 * (1 - e) ** 2 * n + (1 - e) * e * c + e * e * cc)
    xx, count = np.bincount(b, mom["xx"][keep]), np.bincount(b, n)
    mean_p = np.bincount(b, mom["p"][keep]) / np.maximum(count, 1)
    a = np.maximum(sfx, 0) / np.maximum(sff, 1e-300)
    resid = np.maximum(xx - a * np.maximum(sfx, 0), 0)
    se2 = resid / np.maximum(count - 1, 1) / np.maximum(sff, 1e-300)
    return a, resid, se2, count, mean_p


def fit_envelope(mom: dict, fit) -> dict:
    """The envelope of least weighted residual over :data:`POWERS` × :data:`K0_NYQUIST` and
    ``E ≡ 1``."""
    from cryostream.spectral.optics import electron_wavelength

    nyquist = 0.5 / fit.pixel_size_angstrom
    best = None
    for p in POWERS:
        for k0 in (*K0_NYQUIST, np.inf):
            k0a = k0 * nyquist
            _, resid, _, count, mean_p = band_fit(mom, envelope(mom["k"], k0a, p)
                                                  * _fade_ring(mom["k"], fit))
            used = count > 16
            score = float(np.sum(resid[used] / np.maximum(mean_p[used], 1e-30) ** 2))
            if best is None or score < best["score"] - 1e-12:
                best = {"score": score, "p": p, "k0_nyquist": float(k0),
                        "k0_per_angstrom": float(k0a)}
    lam = electron_wavelength(fit.voltage_kv)
    best["sigma_angstrom_if_p4"] = (float(1 / (np.sqrt(2) * np.pi * lam * best["k0_per_angstrom"] ** 2))
                                    if best["p"] == 4 and np.isfinite(best["k0_nyquist"]) else 0.0)
    return best


def coefficient_envelope(shape, fit, env: dict) -> np.ndarray:
    """The fitted envelope times the fade of the fit's own defocus error, per coefficient."""
    from cryostream.spectral.optics import electron_wavelength

    k2 = _k2(shape, fit)
    e = envelope(np.sqrt(k2), env["k0_per_angstrom"], env["p"])
    s = np.pi * electron_wavelength(fit.voltage_kv) * fit.defocus_error_angstrom * k2
    return (e * np.exp(-2 * s * s)).astype(np.float32)


def faded_wiener_gain(spectrum, shape, fit, *, low_angstrom: float = 20.0,
                      band_width: float = 1 / 64, grid=None):
    """The prototype: :func:`cryostream.ctf.ctf_wiener_gain`'s signature, the signal on
    faded rings (module docstring); the envelope and noise from :data:`_STATE`."""
    from cryostream.ctf import ctf_gain_grid
    from cryostream.spectral import GAIN_FLOOR

    grid = grid or ctf_gain_grid(shape, fit, low_angstrom=low_angstrom, band_width=band_width)
    mask, c2, band, bands = grid
    noise = _STATE["noise"].scaled(np.sqrt(_STATE["factor"]))
    # the noise the envelope and A are fitted with: the measured noise, or above it by the
    # tolerance (power off the rings within it is not taken for signal)
    mom = ring_moments(spectrum, shape, fit, noise.scaled(np.sqrt(1 + _STATE.get("tolerance", 0))),
                       grid)
    # fitted on this spectrum (each recorrupted draw its own), never on the micrograph the
    # check's targets come from: an envelope fitted there follows that micrograph's noise
    env = fit_envelope(mom, fit)
    _STATE.setdefault("envelopes", []).append(env)
    e_coeff = coefficient_envelope(shape, fit, env)
    if _STATE.get("free"):
        measured = coefficient_envelope(shape, dataclasses.replace(fit, defocus_error_angstrom=0.0),
                                        env)
        return _free_intercept_gain(spectrum, c2, measured, e_coeff, band, bands, mask)
    a, _, se2, count, _ = band_fit(mom, envelope(mom["k"], env["k0_per_angstrom"], env["p"])
                                   * _fade_ring(mom["k"], fit))
    a = a * (a * a / np.maximum(a * a + se2, 1e-300))
    n_coeff = mom["noise"][_rings(shape)] / (1 + _STATE.get("tolerance", 0))
    n_band = np.bincount(band, n_coeff.ravel(), minlength=bands) / np.maximum(
        np.bincount(band, minlength=bands), 1)
    a = np.pad(a, (0, max(0, bands - a.size)))[:bands]
    a = np.maximum(a, GAIN_FLOOR * n_band)
    if _STATE.get("flat") == "ring":
        return _ring_flat_gain(spectrum, shape, noise, c2, e_coeff, a[band.reshape(c2.shape)],
                               mask)
    f = 0.5 - (0.5 - c2) * e_coeff
    signal = a[band.reshape(c2.shape)] * f
    gain = signal / np.maximum(signal + n_coeff, 1e-30)
    return np.where(mask, gain, 0).astype(np.float32), mask


def _free_intercept_gain(spectrum, c2, e_coeff, faded, band, bands, mask):
    """The variant ``free``: the envelope as fitted, then per band the shipped regression
    ``power ≈ a·CTF² + b`` (free intercept, the same shrinkage and floor), read through the
    envelope: ``a = A·Ē`` and ``b = N + A·(1 − Ē)/2`` for the band's mean envelope ``Ē``
    (taken as :data:`LEAST_E` at least, so that a chance ``a`` is not blown up), so the signal
    is ``(a / Ē)·f_E`` and the noise ``b − (a / Ē)·⟨1 − E⟩/2``. With ``E ≡ 1`` it is the shipped
    gain bit for bit: the noise's absolute level only chooses the envelope. ``e_coeff``: the
    measured envelope; ``faded``: times the fade of the fit's own defocus error, which shapes
    the signal as the shipped gain has it (a ring it cannot place, not one that fades)."""
    from cryostream.spectral import GAIN_FLOOR

    power = (spectrum.real**2 + spectrum.imag**2).ravel()
    a, b, se2 = _regression(power, c2.ravel().astype(np.float64), band, bands)
    a = a * (a * a / np.maximum(a * a + se2, 1e-300))
    count = np.maximum(np.bincount(band, minlength=bands), 1)
    mean_e = np.maximum(np.bincount(band, e_coeff.ravel(), minlength=bands) / count, LEAST_E)
    # the floor after the division: 1 % of the noise at the peaks, not ten times that
    amplitude = np.maximum(a / mean_e, GAIN_FLOOR * np.maximum(b, 0))
    flat = amplitude * np.bincount(band, (1 - e_coeff.ravel()) / 2, minlength=bands) / count
    noise = np.maximum(b - flat, GAIN_FLOOR * np.maximum(b, 0))
    bb = band.reshape(c2.shape)
    signal = amplitude[bb] * (0.5 - (0.5 - c2) * faded)
    gain = signal / np.maximum(signal + noise[bb], 1e-30)
    return np.where(mask, gain, 0).astype(np.float32), mask


#: The least mean envelope of a band the variant ``free`` divides by.
LEAST_E = 0.1


def _ring_flat_gain(spectrum, shape, noise, c2, e_coeff, a, mask):
    """The variant whose flat part is each ring's own measured signal, ``P − N`` over the
    merged rings of the radial gain (the same sums, weights and floor), with the rings'
    modulation ``A·E·(CTF² − ⟨CTF²⟩_ring)`` on top: where ``E`` is 0 it is the radial gain
    bit for bit, so a fit whose rings the micrograph does not show cannot pass the check on
    a chance difference between two flat gains."""
    from cryostream.spectral import GAIN_FLOOR, merge_rings

    ring, merged, weight = merge_rings(shape, 128)
    bins = merged[ring]
    p = spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2
    power = np.bincount(bins.ravel(), (weight * p).ravel())
    ring_weight = np.bincount(ring.ravel(), weight.ravel(), minlength=merged.size)
    noise_sum = np.bincount(merged, ring_weight * noise.ring_power(shape, merged.size))
    total = np.bincount(bins.ravel(), weight.ravel())
    mean_c2 = np.bincount(bins.ravel(), (weight * c2).ravel()) / np.maximum(total, 1e-30)
    modulation = a * e_coeff * (c2 - mean_c2[bins])
    p_bin = (power / np.maximum(total, 1e-30))[bins]
    n_bin = (noise_sum / np.maximum(total, 1e-30))[bins]
    gain = 1 - n_bin / np.maximum(p_bin + modulation, 1e-30)
    gain = np.where(p_bin + modulation > 0, gain, 0)
    return np.where(mask, np.clip(gain, GAIN_FLOOR, 1), 0).astype(np.float32), mask


def _regression(power, c2, band, bands):
    """Per band ``a, b`` of ``power ≈ a·c2 + b`` (``a ≥ 0``) and ``a``'s squared standard
    error, as the shipped gain fits them (``cryostream.ctf``)."""
    count = np.maximum(np.bincount(band, minlength=bands), 1)
    mean_p = np.bincount(band, power, minlength=bands) / count
    var_p = np.bincount(band, power * power, minlength=bands) / count - mean_p**2
    mean_c = np.bincount(band, c2, minlength=bands) / count
    cov = np.bincount(band, c2 * power, minlength=bands) / count - mean_c * mean_p
    var_c = np.bincount(band, c2 * c2, minlength=bands) / count - mean_c**2
    a = np.maximum(cov, 0) / np.maximum(var_c, 1e-30)
    explained = np.maximum(cov, 0) ** 2 / np.maximum(var_c, 1e-30) * count
    se2 = np.maximum(var_p * count - explained, 0) / count / np.maximum(var_c * count, 1e-30)
    return a, mean_p - a * mean_c, se2


def _k2(shape, fit):
    """``k²`` (Å⁻²) of every ``rfft2`` coefficient of ``shape``."""
    from cryostream.spectral import frequencies

    ky, kx = frequencies(shape, "rfft", pixel_size_angstrom=fit.pixel_size_angstrom)
    return ky * ky + kx * kx


def _rings(shape):
    from cryostream.spectral import ring_index

    return ring_index(shape, "rfft", dtype=np.float32).astype(np.int64)


def _fade_ring(k, fit):
    from cryostream.spectral.optics import electron_wavelength

    s = np.pi * electron_wavelength(fit.voltage_kv) * fit.defocus_error_angstrom * k * k
    return np.exp(-2 * s * s)


class swapped:
    """Swap the prototype in for ``cryostream.ctf.ctf_wiener_gain`` (``wiener_gain_outputs``
    imports it at each call) with the noise times ``factor``."""

    def __init__(self, state: dict | None, factor: float = 1.0):
        self.state, self.factor = state, factor

    def __enter__(self):
        import cryostream.ctf as ctf

        self.kept = ctf.ctf_wiener_gain
        if self.state is not None:
            _STATE.clear()
            _STATE.update(self.state, factor=self.factor)
            ctf.ctf_wiener_gain = faded_wiener_gain

    def __exit__(self, *exc):
        import cryostream.ctf as ctf

        ctf.ctf_wiener_gain = self.kept


def prepared_fit(y, pixel, spectrum, noise, fit):
    """The fit as ``denoise`` uses it: its rings' score, its defocus error, the noise at its
    zeros (and whether ``denoise`` would check it at all)."""
    from cryostream.ctf import thon_ring_z
    from cryostream.denoise.fallback import fit_with_error, no_rings, zeros_noise

    rings = thon_ring_z(spectrum, y.shape, fit)
    fit = fit_with_error(fit, rings)
    scaled, zeros_scale, _ = zeros_noise(y, noise, fit, spectrum)
    return fit, scaled, {"rings_z": round(rings, 2), "checked": not no_rings(rings, fit),
                         "defocus_error_angstrom": round(fit.defocus_error_angstrom, 1),
                         "noise_scale_at_ctf_zeros": zeros_scale}


def truth_scores(out, truth, pixel) -> dict:
    from cryostream.metrics import frc, psnr

    freq, curve = frc(out, truth, pixel)
    cyc = freq * pixel
    band = (cyc >= 0.05) & (cyc <= 0.45)
    return {"psnr": psnr(out, truth), "frc_mean": float(curve[band].mean())}


def one_fit(y, truth, pixel, spectrum, noise, fit, label) -> dict:
    import scipy.fft  # noqa: F401

    from cryostream.ctf import ctf_gain_grid
    from cryostream.denoise.corrections import match_wiener_gain, wiener_gain_outputs
    from cryostream.denoise.scores import ctf_gain_check

    fit, scaled, row = prepared_fit(y, pixel, spectrum, noise, fit)
    grid = ctf_gain_grid(y.shape, fit)
    variants = {"faded": {"noise": scaled}, "tolerant": {"noise": scaled, "tolerance": TOLERANCE},
                "ringflat": {"noise": scaled, "flat": "ring"},
                "free": {"noise": scaled, "tolerance": TOLERANCE, "free": True}}
    k = np.array([0.10, 0.12, 0.15, 0.17, 0.20, 0.25, 0.35]) / pixel
    row.update(label=label, defocus_angstrom=[round(fit.defocus_u_angstrom),
                                              round(fit.defocus_v_angstrom)])
    for name in VARIANTS:  # the envelope fitted on the micrograph itself
        tol = variants[name].get("tolerance", 0)
        env = fit_envelope(ring_moments(spectrum, y.shape, fit,
                                        scaled.scaled(np.sqrt(1 + tol)), grid), fit)
        row["envelope_" + name] = env
        row["E_" + name] = {f"{c * pixel:.2f}": round(float(v), 3) for c, v in zip(
            k, envelope(k, env["k0_per_angstrom"], env["p"]), strict=True)}
    for name in ("shipped", *VARIANTS):
        st = variants.get(name)
        with swapped(st, 1.25):  # the check's draws: noise (1 + β²) times the micrograph's
            row[f"check_{name}"] = ctf_gain_check(y, scaled, fit, grid=grid)
            if st is not None:
                row[f"envelopes_in_check_{name}"] = [(e["p"], round(e["k0_nyquist"], 3))
                                             for e in _STATE["envelopes"]]
        if truth is not None:
            with swapped(st, 1.0):
                shaped, radial = wiener_gain_outputs(y, y, scaled, [(fit, grid), None],
                                                     sum_rings=False)
                row[f"true_{name}"] = float(np.mean((shaped - truth) ** 2)
                                            - np.mean((radial - truth) ** 2))
                row[f"truth_{name}"] = truth_scores(match_wiener_gain(y, y, scaled, ctf=fit),
                                                    truth, pixel)
    if truth is not None:
        row["truth_radial"] = truth_scores(match_wiener_gain(y, y, scaled), truth, pixel)
    return row


def main(argv=None) -> int:
    global TOLERANCE
    from ctf_check_bands import scaled_input

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--micrograph", type=Path)
    source.add_argument("--simulate", type=int, metavar="SIDE")
    ap.add_argument("--crop", type=int, default=0)
    ap.add_argument("--pixel-size", type=float, default=0.6666)
    ap.add_argument("--dose", type=float, default=50.0)
    ap.add_argument("--detector-nps", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--off", type=float, nargs="*", default=[])
    ap.add_argument("--tolerance", type=float, default=0.03, help="the noise's "
                    "tolerance of the variant 'tolerant' (default %(default)s)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    TOLERANCE = args.tolerance

    import scipy.fft

    from cryostream.denoise.fallback import fit_for_gain
    from cryostream.matched import estimate_noise, tile_for

    start = time.perf_counter()
    y, truth, pixel = scaled_input(args)
    noise = estimate_noise(y, pixel, tile=tile_for(y.shape))
    spectrum = scipy.fft.rfft2(y - y.mean(), workers=-1)
    fit = fit_for_gain(y, pixel, {})
    rows = [one_fit(y, truth, pixel, spectrum, noise, fit, "fit")]
    for off in args.off:
        wrong = dataclasses.replace(fit, defocus_u_angstrom=fit.defocus_u_angstrom + off,
                                    defocus_v_angstrom=fit.defocus_v_angstrom + off)
        rows.append(one_fit(y, truth, pixel, spectrum, noise, wrong, f"fit {off:+.0f} Å"))
    record = {"source": str(args.micrograph) if args.micrograph else
              {"simulate": args.simulate, "pixel_size_angstrom": pixel, "dose": args.dose,
               "detector_nps_nyquist": args.detector_nps, "seed": args.seed},
              "shape": list(y.shape), "tolerance": TOLERANCE, "rows": rows,
              "seconds": round(time.perf_counter() - start, 1), "machine": platform.platform()}
    for r in rows:
        print(f"{r['label']:>14}: z {r['rings_z']:6.2f}  check shipped {r['check_shipped']:+.2e}"
              + "".join(f"  {v} {r['check_' + v]:+.2e}" for v in VARIANTS))
        for v in VARIANTS:
            env, e = r["envelope_" + v], r["E_" + v]
            print(f"{'':16}{v}: E p={env['p']:.0f} k0={env['k0_nyquist']:.3f} Nyquist, at "
                  f"0.12/0.17/0.20 cycles/px {e['0.12']}/{e['0.17']}/{e['0.20']}")
        if truth is not None:
            names = ("shipped", *VARIANTS)
            print(f"{'':16}true " + " / ".join(f"{r['true_' + v]:+.2e}" for v in names)
                  + "  PSNR " + " / ".join(f"{r['truth_' + v]['psnr']:.4f}" for v in names)
                  + f" (radial {r['truth_radial']['psnr']:.4f})  FRC "
                  + " / ".join(f"{r['truth_' + v]['frc_mean']:.4f}" for v in names)
                  + f" (radial {r['truth_radial']['frc_mean']:.4f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
