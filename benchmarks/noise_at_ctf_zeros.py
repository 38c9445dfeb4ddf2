"""The noise a micrograph's own spectrum shows where its fitted CTF is zero, against the noise
cryostream measures (:func:`cryostream.matched.estimate_noise`) and the true noise.

:func:`~cryostream.matched.estimate_noise` takes the finest scales of a micrograph to be noise.
Where a simulated particle keeps signal out to Nyquist (the general model's held-out shell) it
counts that signal in, and every gain built on it smooths too much. Where the CTF is zero the
micrograph holds no signal whatever the particle, so the power there is the noise. For the
first held-out micrograph of each named condition (simulated as ``train_general_model.py``
does): the CTF fitted from the micrograph (:func:`cryostream.ctf.fit_ctf`), per band of
frequency the true noise power (``noisy − truth``), the power at the coefficients where the
fitted ``CTF² < 0.02``, and the measured noise; then the radial Wiener filter of the
micrograph from the measured noise and from the measured noise scaled down by the ratio of the
power at the CTF's zeros to it (the ratio pooled over :data:`POOL` rings, 1 where fewer than
200 coefficients are zeros, never above 1), in PSNR against the truth beside the oracle Wiener
filter.

With ``--network``, also the shipped general model's single pass with the CTF-shaped Wiener
gain from the measured noise and from the noise at the zeros, and the CTF check
(``ctf_gain_check``) with each (no ensemble, no learned weights).

Usage (2-core machine, about 40 s per condition; 2–3 minutes with ``--network``)::

    python benchmarks/noise_at_ctf_zeros.py --network \\
        --out docs/results/general_model/noise_at_ctf_zeros_2core.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from general_model_spread import CONDITIONS, held_out_condition
from scipy.ndimage import uniform_filter1d

BANDS = ((0.03, 0.06), (0.06, 0.125), (0.125, 0.25), (0.25, 0.5))
#: Rings the ratio of the power at the CTF's zeros to the measured noise is pooled over.
POOL = 65


def one(name: str, seed: int, shape, network: bool = False) -> dict:
    from cryostream import SimulateConfig
    from cryostream.ctf import ctf_squared, fit_ctf
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.metrics import psnr, wiener_oracle
    from cryostream.simulate import simulate_micrograph

    config = SimulateConfig(**held_out_condition(name, seed, shape))
    sim = simulate_micrograph(config, 1000 * list(CONDITIONS).index(name))
    p = np.float32(np.percentile(sim.noisy, 95))
    y, x, pixel = sim.noisy / p, sim.truth / p, config.pixel_size_angstrom
    n = y.shape[0]
    fit = fit_ctf(y, pixel, high_angstrom=max(3.0, 2.2 * pixel))
    zero = ctf_squared(y.shape, fit) < 0.02
    spectrum = np.fft.rfft2(y - y.mean())
    noise = np.fft.rfft2((y - x) - (y - x).mean())
    freq = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :])
    ring = np.minimum(np.rint(freq * n).astype(int), n // 2)
    power = np.abs(spectrum) ** 2
    measured = estimate_noise(y, pixel, tile=tile_for(y.shape)).ring_power((n, n), n // 2 + 1)
    bands = {}
    for a, b in BANDS:
        m = (freq >= a) & (freq < b)
        true = float(np.mean(np.abs(noise[m]) ** 2))
        at_zeros = float(np.mean(power[m & zero])) if (m & zero).any() else None
        rr = np.arange(n // 2 + 1) / n
        bands[f"{a}-{b}"] = {"true": true, "at_ctf_zeros_ratio": None if at_zeros is None
                             else round(at_zeros / true, 3),
                             "measured_ratio": round(float(measured[(rr >= a) & (rr < b)].mean())
                                                     / true, 3)}
    rings = n // 2 + 1
    count = np.bincount(ring.ravel(), minlength=rings)
    ring_power = np.bincount(ring.ravel(), power.ravel(), rings) / np.maximum(count, 1)
    # the measured noise, scaled by how far the power at the zeros sits under it (pooled over
    # POOL rings: the ratio is smooth, the power at a few zeros is not)
    relative = np.where(zero, power / np.maximum(measured[ring], 1e-30), 0.0)
    pooled = uniform_filter1d(np.bincount(ring[zero], relative[zero], rings), POOL) * POOL
    pooled_count = uniform_filter1d(np.bincount(ring[zero], minlength=rings).astype(float),
                                    POOL) * POOL
    ratio = np.where(pooled_count >= 200, pooled / np.maximum(pooled_count, 1), 1.0)
    from_zeros = measured * np.clip(ratio, 0.0, 1.0)
    scores = {}
    for label, estimate in (("measured noise", measured), ("noise at the CTF zeros", from_zeros)):
        gain = np.clip(1 - estimate / np.maximum(ring_power, 1e-30), 0, 1)
        gain[0] = 1
        filtered = np.fft.irfft2(spectrum * gain[ring], s=y.shape) + y.mean()
        scores[label] = round(psnr(x, filtered), 2)
    scores["oracle Wiener"] = round(psnr(x, wiener_oracle(y, x)), 2)
    row = {}
    if network:
        row["network"] = _network_gains(y, x, fit, estimate_noise(y, pixel, tile=tile_for(
            y.shape)), np.clip(ratio, 0.0, 1.0), n)
    true_defocus = (sim.defocus_u_angstrom + sim.defocus_v_angstrom) / 2e4
    return {"condition": name, "defocus_um": {"true": round(true_defocus, 3), "fitted": round(
        (fit.defocus_u_angstrom + fit.defocus_v_angstrom) / 2e4, 3)}, "bands": bands,
        "radial_wiener_psnr": scores, **row}


def _network_gains(y, x, fit, noise, ratio, n) -> dict:
    """The shipped model's single pass with the CTF-shaped gain, from the measured noise and
    from the noise at the zeros (its radial profile and 2-D spectrum scaled by ``ratio``), and
    the CTF check (:func:`~cryostream.denoise.scores.ctf_gain_check`, negative: it passes)
    with each. No ensemble, no learned weights."""
    import dataclasses

    from cryostream.denoise.corrections import match_wiener_gain
    from cryostream.denoise.network import model_path
    from cryostream.denoise.scores import ctf_gain_check
    from cryostream.denoise.tiling import network_pass
    from cryostream.metrics import psnr

    tile = 2 * noise.radial.size
    grid = np.arange(ratio.size) / n
    centred = np.fft.fftshift(np.fft.fftfreq(tile))
    at_zeros = dataclasses.replace(
        noise, radial=(noise.radial * np.interp(np.arange(noise.radial.size) / tile, grid, ratio)
                       ).astype(np.float32),
        psd=(noise.psd * np.interp(np.hypot(centred[:, None], centred[None, :]), grid, ratio)
             ).astype(np.float32))
    raw = network_pass(model_path("general"), y)
    out = {"raw": round(psnr(x, raw), 2)}
    for label, estimate in (("measured noise", noise), ("noise at the CTF zeros", at_zeros)):
        out[label] = {"ctf_check": float(ctf_gain_check(y, estimate, fit)),
                      "ctf_gain_psnr": round(psnr(x, match_wiener_gain(raw, y, estimate,
                                                                       ctf=fit)), 2),
                      "radial_gain_psnr": round(psnr(x, match_wiener_gain(raw, y, estimate)), 2)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--conditions", nargs="+", default=["shell-80e-1.5A-nps0.1",
                    "filament-40e-1.0A-far-focus", "t20s-50e-white", "t20s-10e-white"])
    ap.add_argument("--shape", type=int, nargs=2, default=(2048, 2048))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--network", action="store_true", help="also the shipped model's single "
                    "pass with the CTF-shaped gain from either noise, and the CTF check with each "
                    "(about 2 minutes a condition on 2 cores)")
    args = ap.parse_args(argv)
    rows = []
    for name in args.conditions:
        rows.append(one(name, args.seed, tuple(args.shape), args.network))
        r = rows[-1]
        print(f"{name}: defocus {r['defocus_um']['fitted']} µm fitted, {r['defocus_um']['true']} "
              f"true; noise power over the true, at the CTF zeros / measured: "
              + "; ".join(f"{k} {v['at_ctf_zeros_ratio']} / {v['measured_ratio']}"
                          for k, v in r["bands"].items())
              + "; radial Wiener PSNR: " + ", ".join(f"{k} {v}" for k, v in
                                                    r["radial_wiener_psnr"].items())
              + (f"; network: {r['network']}" if "network" in r else ""), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
