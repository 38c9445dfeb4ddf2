"""The general model on a real micrograph: the residual check of ``denoise``'s outputs.

There is no ground truth for a real micrograph; what a denoiser removed (``input − output``)
should be the micrograph's noise and nothing else (docs/guide/noise.md, "Checking the result").
This script denoises a centred crop of a real micrograph with the shipped general model as a
user would, through the command line (no options: the default recipe; ``--no-ctf-gain``;
``--raw``), then runs :func:`cryostream.evaluate.method_noise` on each output in the units
``evaluate --residual`` uses (the micrograph over the model's normalising percentile; the ratio
and the correlations do not depend on that scale) and draws each check with
:func:`cryostream.evaluate.plot_method_noise`.

Usage::

    python benchmarks/residual_real.py ../shared/data/real/epu2.9_example.mrc --crop 2048 \\
        --out docs/results/general_model --figures docs/figures

The crop and the denoised micrographs go to ``--work`` (git-ignored ``.dev/`` by default); a
variant whose output and timing are already there is not denoised again (delete the folder to
remeasure). Writes ``real_residual_cropN.json`` to ``--out`` and
``real_residual_general_cropN_VARIANT.png`` plus ``real_residual_general_cropN_ratio.png`` (the
spectrum ratios of all variants) to ``--figures``. ``--crop 0`` takes the whole micrograph.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import common  # noqa: E402

#: The command-line variants: name → options after ``cryostream denoise CROP -o OUT``.
VARIANTS = {"default": [], "no-ctf-gain": ["--no-ctf-gain"], "raw": ["--raw"],
            "no-learned-weights": ["--no-learned-weights"]}

#: Bands of the spectrum ratio reported besides the check's own 0.05–0.5 cycles/px, in
#: cycles/px. Below 0.05 cycles/px (13 Å at 0.667 Å/px) lie the particle scales; the measured
#: noise spectrum is extrapolated below its 20 Å cut (``cryostream.matched.estimate_noise``).
BANDS = {"0.01-0.05": (0.01, 0.05), "0.05-0.15": (0.05, 0.15), "0.15-0.5": (0.15, 0.5)}


def crop_micrograph(path: Path, size: int, work: Path) -> tuple[Path, list[int], float]:
    """Write the centred ``size`` × ``size`` crop of ``path`` (float32) to ``work``; 0 = all."""
    import mrcfile

    from cryostream.io.mrc import write_micrograph

    with mrcfile.open(path, permissive=True) as mrc:
        data, pixel = mrc.data, float(mrc.voxel_size.x)
        ny, nx = data.shape
        size = size or min(ny, nx)
        y0, x0 = (ny - size) // 2, (nx - size) // 2
        crop = np.asarray(data[y0:y0 + size, x0:x0 + size], np.float32)
    out = work / f"{path.stem}_crop{size}.mrc"
    if not out.is_file():
        write_micrograph(out, crop, pixel)
    return out, [y0, x0, size], pixel


def denoise_variant(crop: Path, name: str, work: Path, model: str = "general") -> dict:
    """``cryostream denoise CROP -o WORK/NAME [options]`` (with ``--model`` unless the shipped
    general model), timed once; its JSON record."""
    folder = work / name
    timing = folder / "timing.json"
    command = [sys.executable, "-m", "cryostream", "denoise", str(crop), "-o", str(folder),
               *VARIANTS[name], *(["--model", model] if model != "general" else [])]
    if not timing.is_file():
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        timing.write_text(json.dumps({"seconds": seconds, "load_before": load,
                                      "load_after": os.getloadavg()[0]}))
    record = json.loads((folder / f"{crop.stem}.json").read_text())
    return {"command": " ".join(["cryostream", *command[3:]]),
            "timing": json.loads(timing.read_text()), "record": record,
            "output": str(folder / crop.name)}


def band_ratios(check: dict, tile: int) -> dict:
    """The residual's power over the measured noise, mean and max |ratio − 1|, per band."""
    ratio = check["residual_radial"] / check["noise_radial"]
    rings = np.arange(len(ratio)) / tile
    out = {}
    for key, (lo, hi) in BANDS.items():
        band = (rings >= lo) & (rings < hi)
        out[key] = {"mean": float(ratio[band].mean()),
                    "max_deviation": float(np.abs(ratio[band] - 1).max())}
    return out


def chance_spread(image: np.ndarray, denoised: np.ndarray, pixel: float, count: int = 24,
                  lowpass_angstrom: float = 20.0) -> dict:
    """How far the residual's correlation with the particle-scale image moves by chance: its
    correlation with the low-passed micrograph shifted by ``count`` random offsets (≥ 200 px,
    so neither particles nor noise are shared; the expectation is 0). Its spread is the
    sampling error of ``correlation_with_lowpass``."""
    import scipy.ndimage

    lowpass = scipy.ndimage.gaussian_filter(image, lowpass_angstrom / pixel / 2.355)
    residual = (image - denoised).ravel()
    rng = np.random.default_rng(0)
    offsets = rng.integers(200, min(image.shape) - 200, size=(count, 2))
    values = [np.corrcoef(residual, np.roll(lowpass, tuple(o), (0, 1)).ravel())[0, 1]
              for o in offsets]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "count": count}


def plot_ratios(path: Path, checks: dict, tile: int, pixel: float) -> None:
    """The spectrum ratio of every variant against spatial frequency, one panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, check in checks.items():
        ratio = check["residual_radial"] / check["noise_radial"]
        ax.semilogy(check["frequency"][1:], ratio[1:], label=name)
    ax.axhline(1, color="k", lw=0.8)
    for lo in (0.05, 0.5):
        ax.axvline(lo / pixel, color="grey", ls=":", lw=0.8)
    ax.axvline(1 / 20, color="tab:red", ls="--", lw=0.8, label="20 Å (noise cut)")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("residual power / measured noise")
    ax.set_title(f"real micrograph, general model ({tile}² spectrum tiles)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mrc", type=Path, help="the real micrograph")
    p.add_argument("--crop", type=int, default=2048, help="centred crop side, px (0: all)")
    p.add_argument("--out", type=Path, default=Path("docs/results/general_model"),
                   help="folder of the JSON")
    p.add_argument("--figures", type=Path, default=Path("docs/figures"))
    p.add_argument("--work", type=Path, default=Path(".dev/residual_real"),
                   help="crop and denoised micrographs (not for the repository)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--model", default="general", help="the model denoise uses (default: the "
                   "shipped general model; an exported .npz or a run folder to compare another)")
    args = p.parse_args(argv)

    from cryostream.denoise.network import model_record
    from cryostream.evaluate import method_noise, plot_method_noise
    from cryostream.matched import estimate_noise, tile_for

    for folder in (args.out, args.figures, args.work):
        folder.mkdir(parents=True, exist_ok=True)
    crop, box, pixel = crop_micrograph(args.mrc, args.crop, args.work)
    size = box[2]
    import mrcfile

    with mrcfile.open(crop) as mrc:
        raw = np.asarray(mrc.data, np.float32)
    # evaluate --residual's units: the micrograph over the run's normalising percentile
    scale = np.float32(np.percentile(raw, model_record(args.model).prepare.percentile))
    image = raw / scale
    tile = tile_for(image.shape)
    noise = estimate_noise(image, pixel, tile=tile)

    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d"),
              "micrograph": str(args.mrc), "crop_y0_x0_size": box,
              "pixel_size_angstrom": pixel, "percentile_scale": float(scale),
              "spectrum_tile": tile, "variants": {}}
    checks = {}
    for name in args.variants:
        run = denoise_variant(crop, name, args.work, args.model)
        with mrcfile.open(run["output"]) as mrc:
            den = np.asarray(mrc.data, np.float32) / scale
        check = method_noise(image, den, pixel, noise=noise)
        checks[name] = check
        figure = args.figures / f"real_residual_general_crop{size}_{name}.png"
        plot_method_noise(figure, check, image, den,
                          title=f"general model, {name}: residual / noise "
                                f"{check['spectrum_ratio_mean']:.3f}, corr "
                                f"{check['correlation_with_lowpass']:.4f} (noise "
                                f"{check['correlation_if_pure_noise']:.4f})")
        scalars = {k: v for k, v in check.items() if not isinstance(v, np.ndarray)}
        result["variants"][name] = {
            **{k: v for k, v in run.items() if k != "output"}, **scalars,
            "spectrum_ratio_bands": band_ratios(check, tile),
            "correlation_by_chance": chance_spread(image, den, pixel),
            "frequency_per_angstrom": check["frequency"].tolist(),
            "spectrum_ratio": (check["residual_radial"] / check["noise_radial"]).tolist(),
            "figure": str(figure)}
        print(f"{name}: {run['timing']['seconds']:.0f} s, spectrum ratio "
              f"{check['spectrum_ratio_mean']:.3f} (max dev "
              f"{check['spectrum_ratio_max_deviation']:.3f}), correlation "
              f"{check['correlation_with_lowpass']:.4f} (pure noise "
              f"{check['correlation_if_pure_noise']:.4f}, whole "
              f"{check['correlation_if_everything']:.4f})", flush=True)
    plot_ratios(args.figures / f"real_residual_general_crop{size}_ratio.png", checks, tile, pixel)
    path = args.out / f"real_residual_crop{size}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
