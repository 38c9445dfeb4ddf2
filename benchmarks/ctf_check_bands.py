"""Where the CTF check's score comes from, band by band, on a real micrograph and on its
simulated twin.

``denoise`` keeps the CTF-shaped Wiener gain only where
:func:`~cryostream.denoise.scores.ctf_gain_check` (the recorruption error of the CTF-shaped
gain minus the radial one's, above 20 Å) is negative. The check is a sum over the spectrum
(Parseval), so it splits into bands of frequency exactly. For one micrograph, prepared as
``denoise`` prepares it (its defects mended, divided by its 95th percentile; the fit, the
Thon rings' score, the fit's defocus error and the noise at its zeros as
:class:`~cryostream.denoise.steps.WienerGain` has them), this script prints and writes:

* the check as ``denoise`` reads it, and its share in each band (the same draws, summed
  over the band's coefficients; the shares add up to the check);
* per band, the power of the micrograph at the fitted CTF's zeros (``CTF² < 0.05``), at its
  peaks (``CTF² > 0.9``) and over all coefficients, each over the measured noise, and the
  band's least-squares ``power ≈ A·CTF² + B`` (over the noise): where the signal follows the
  fitted CTF, the power at the zeros is the noise (1) and ``B`` is 1;
* the matched noise's power over the noise it was drawn for (the noise at the CTF's zeros):
  does the recorrupting noise have the spectrum the check asks of it?
* for a simulated micrograph, each band's share of the true error difference (against the
  truth, on the same recorrupted draws) and the true noise over the measured.

With ``--tiles N`` the defocus is also fitted on each of N × N tiles (at least 1024 px).

Usage (2-core machine: about 15 s for a 4096² micrograph, 5 s for a 2048² one)::

    python benchmarks/ctf_check_bands.py --micrograph ../shared/data/real/epu2.9_example.mrc \\
        --tiles 4 --out docs/results/ctf_check_bands/real_4096.json
    python benchmarks/ctf_check_bands.py --simulate 2048 --pixel-size 0.6666 \\
        --out docs/results/ctf_check_bands/simulated_2048.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

#: The bands the check is split into (cycles/px); the last holds the corners past Nyquist.
EDGES = (0.0, 0.03, 0.06, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20, 0.22, 0.25, 0.30, 0.40, 0.5, 0.71)


def read(path: Path, crop: int) -> tuple[np.ndarray, float]:
    """The micrograph's pixels (its defects mended, the centred ``crop``² if given) and its
    pixel size (Å) from the header."""
    from cryostream.denoise.defects import find_defects, mend
    from cryostream.denoise.micrograph import read_micrograph

    header, image = read_micrograph(str(path))
    image = np.asarray(image, np.float32)
    defects = find_defects(image)
    if defects:
        image = mend(image, defects)
    if crop:
        y0, x0 = ((s - crop) // 2 for s in image.shape)
        image = np.ascontiguousarray(image[y0:y0 + crop, x0:x0 + crop])
    return image, header.pixel_size_angstrom


def simulated(side: int, pixel: float, dose: float, nps: float, seed: int):
    """A simulated ``side``² micrograph like the real one (about 2.7 µm underfocus, a detector
    whose noise power at Nyquist is ``nps`` of its power at 0) and its truth."""
    from cryostream import SimulateConfig
    from cryostream.simulate import simulate_micrograph

    config = SimulateConfig(shape=(side, side), pixel_size_angstrom=pixel, seed=seed,
                            dose_e_per_angstrom2=dose, defocus_um=(2.6, 2.8),
                            detector_nps_nyquist=nps)
    sim = simulate_micrograph(config, 0)
    return sim.noisy, sim.truth


def scaled_input(args) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The micrograph the options name (``--micrograph`` cropped, else one simulated), and its
    truth where simulated, both divided by the micrograph's 95th percentile, as denoise does;
    with the pixel size."""
    truth = None
    if args.micrograph:
        image, pixel = read(args.micrograph, args.crop)
    else:
        pixel = args.pixel_size
        image, truth = simulated(args.simulate, pixel, args.dose, args.detector_nps, args.seed)
    scale = np.float32(np.percentile(image, 95))
    return image / scale, None if truth is None else truth / scale, pixel


def the_check(y: np.ndarray, pixel: float) -> dict:
    """The fit, its rings' score and the noise the check draws with, as ``denoise`` has them."""
    import scipy.fft

    from cryostream.ctf import thon_ring_z
    from cryostream.denoise.fallback import fit_for_gain, fit_with_error, zeros_noise
    from cryostream.matched import estimate_noise, tile_for

    noise = estimate_noise(y, pixel, tile=tile_for(y.shape))
    spectrum = scipy.fft.rfft2(y - y.mean(), workers=-1)
    fit = fit_for_gain(y, pixel, {})
    rings = thon_ring_z(spectrum, y.shape, fit)
    fit = fit_with_error(fit, rings)
    scaled, zeros_scale, _ = zeros_noise(y, noise, fit, spectrum)
    return {"noise": noise, "scaled": scaled, "spectrum": spectrum, "fit": fit, "rings_z": rings,
            "zeros_scale": zeros_scale}


def bands_of(y: np.ndarray, found: dict, truth=None, beta: float = 0.5, seed: int = 0) -> list:
    """Per band of :data:`EDGES`: the check's share, the power at the fit's zeros and peaks,
    the band's ``A`` and ``B``, the matched noise's power (and with ``truth``, the true error
    difference's share and the true noise), each power over the measured noise."""
    import scipy.fft

    from cryostream.ctf import ctf_gain_grid, ctf_squared
    from cryostream.denoise.corrections import wiener_gain_outputs
    from cryostream.denoise.scores import check_draws
    from cryostream.matched import matched_noise_image
    from cryostream.spectral import ring_index

    fit, scaled, spectrum = found["fit"], found["scaled"], found["spectrum"]
    ny, nx = y.shape
    freq = ring_index(y.shape, "rfft") / min(y.shape)
    band = (np.digitize(freq, EDGES) - 1).ravel()
    bands = len(EDGES) - 1
    weight = np.full(freq.shape, 2.0)  # each rfft2 column stands for two coefficients ...
    weight[:, 0] = 1.0  # ... but those of the first column (and of the last, for even nx)
    if nx % 2 == 0:
        weight[:, -1] = 1.0
    weight = weight.ravel()

    def band_sum(values):
        return np.bincount(band, weight * np.asarray(values, np.float64).ravel(), bands)

    def transform(image):
        return scipy.fft.rfft2(image - image.mean(), workers=-1)

    count = band_sum(np.ones(freq.shape))
    rings = np.arange(scaled.radial.size) / (2 * scaled.radial.size)  # cycles/px
    noise = np.interp(freq, rings, found["noise"].radial) * (ny * nx)
    noise_mean = band_sum(noise) / count
    drawn_mean = band_sum(np.interp(freq, rings, scaled.radial) * (ny * nx)) / count
    grid = ctf_gain_grid(y.shape, fit)
    recorrupted = scaled.scaled(np.sqrt(1 + beta**2))
    share, true_share, matched = np.zeros(bands), np.zeros(bands), np.zeros(bands)
    draws = check_draws(y.shape)
    for k in range(draws):  # the check's own draws (ctf_gain_check's seeds)
        m = matched_noise_image(y, scaled, seed=seed * 1000 + k)
        up, down = y + np.float32(beta) * m, y - m / np.float32(beta)
        shaped, radial = (transform(out) for out in wiener_gain_outputs(
            up, up, recorrupted, [(fit, grid), None], sum_rings=False))
        target = transform(down)
        share += band_sum(np.abs(shaped - target) ** 2 - np.abs(radial - target) ** 2)
        if truth is not None:
            target = transform(truth)
            true_share += band_sum(np.abs(shaped - target) ** 2 - np.abs(radial - target) ** 2)
        matched += band_sum(np.abs(transform(m)) ** 2)
    per_pixel = draws * float(ny * nx) ** 2  # Parseval: the mean over pixels of the squares
    relative = (spectrum.real.astype(np.float64) ** 2 + spectrum.imag ** 2) / noise
    c2 = ctf_squared(y.shape, fit)
    if truth is not None:
        true_noise = band_sum(np.abs(transform(y - truth)) ** 2) / count / noise_mean
    rows = []
    for b in range(bands):
        inside = (band == b).reshape(freq.shape)
        zeros, peaks = inside & (c2 < 0.05), inside & (c2 > 0.9)
        a, intercept = (np.polyfit(c2[inside], relative[inside], 1) if inside.sum() > 2
                        else (np.nan, np.nan))
        row = {"cycles_per_px": [EDGES[b], EDGES[b + 1]],
               "check_share": share[b] / per_pixel,
               "power_at_zeros": round(float(relative[zeros].mean()), 4) if zeros.any() else None,
               "power_at_peaks": round(float(relative[peaks].mean()), 4) if peaks.any() else None,
               "power": round(float(relative[inside].mean()), 4),
               "A": round(float(a), 4), "B": round(float(intercept), 4),
               "matched_noise": round(float(matched[b] / draws / count[b] / drawn_mean[b]), 4)}
        if truth is not None:
            row["true_share"] = true_share[b] / per_pixel
            row["true_noise"] = round(float(true_noise[b]), 4)
        rows.append(row)
    return rows


def tile_defocus(y: np.ndarray, pixel: float, tiles: int) -> list:
    """The mean defocus (Å) fitted on each of ``tiles`` × ``tiles`` tiles, row by row."""
    from cryostream.denoise.fallback import fit_for_gain

    side = min(y.shape) // tiles
    out = []
    for i in range(tiles):
        row = []
        for j in range(tiles):
            fit = fit_for_gain(np.ascontiguousarray(y[i * side:(i + 1) * side,
                                                      j * side:(j + 1) * side]), pixel, {})
            row.append(None if fit is None else round((fit.defocus_u_angstrom
                                                       + fit.defocus_v_angstrom) / 2))
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--micrograph", type=Path, help="an MRC micrograph (pixel size from "
                        "its header)")
    source.add_argument("--simulate", type=int, metavar="SIDE", help="a simulated SIDE² "
                        "micrograph like the real one, with its truth")
    ap.add_argument("--crop", type=int, default=0, help="the centred CROP² of the micrograph")
    ap.add_argument("--pixel-size", type=float, default=0.6666)
    ap.add_argument("--dose", type=float, default=50.0)
    ap.add_argument("--detector-nps", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tiles", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from cryostream.denoise.scores import ctf_gain_check

    start = time.perf_counter()
    y, truth, pixel = scaled_input(args)
    found = the_check(y, pixel)
    check = ctf_gain_check(y, found["scaled"], found["fit"])
    rows = bands_of(y, found, truth)
    fit = found["fit"]
    record = {"source": str(args.micrograph) if args.micrograph else
              {"simulate": args.simulate, "pixel_size_angstrom": pixel, "dose": args.dose,
               "detector_nps_nyquist": args.detector_nps, "seed": args.seed},
              "shape": list(y.shape), "pixel_size_angstrom": pixel,
              "defocus_angstrom": [round(fit.defocus_u_angstrom), round(fit.defocus_v_angstrom)],
              "rings_z": round(found["rings_z"], 2),
              "defocus_error_angstrom": round(fit.defocus_error_angstrom, 1),
              "noise_scale_at_ctf_zeros": found["zeros_scale"], "ctf_check": check,
              "check_shares_summed": float(sum(r["check_share"] for r in rows)), "bands": rows}
    if args.tiles:
        record["tile_defocus_angstrom"] = tile_defocus(y, pixel, args.tiles)
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["machine"] = platform.platform()
    print(f"{record['shape']}: defocus {record['defocus_angstrom']} Å, rings z "
          f"{record['rings_z']}, check {check:+.3g} (bands summed "
          f"{record['check_shares_summed']:+.3g})")
    print("cycles/px     check share  at zeros  at peaks  power    A       B     matched"
          + ("  true share  true noise" if truth is not None else ""))
    for r in rows:
        lo, hi = r["cycles_per_px"]
        print(f"{lo:.2f}-{hi:.2f}   {r['check_share']:+.2e}   {r['power_at_zeros'] or 0:.3f}"
              f"     {r['power_at_peaks'] or 0:.3f}     {r['power']:.3f}  {r['A']:+.3f}  "
              f"{r['B']:.3f}  {r['matched_noise']:.3f}"
              + (f"  {r['true_share']:+.2e}   {r['true_noise']:.3f}" if truth is not None else ""))
    for row in record.get("tile_defocus_angstrom", []):
        print("tile defocus (Å):", *row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
