"""The evaluation report: numbers (:mod:`~cryostream.evaluate.numbers`) and figures
(:mod:`~cryostream.evaluate.figures`) written as ``report.md``, ``report.json`` and PNGs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from cryostream.evaluate.figures import plot_crops, plot_frc, plot_method_noise, plot_spectra
from cryostream.evaluate.numbers import (
    compare_on_store,
    method_noise,
    network_output,
    read_micrograph,
    score_methods,
    simulated_pairs,
    truth_methods,
)

__all__ = ["evaluate", "test_split_section", "truth_section", "residual_section"]


def test_split_section(a: dict) -> list[str]:
    """Markdown for the store's test split (:func:`compare_on_store`'s numbers)."""
    lines = ["## Test split, the reference plan's noise", "",
             f"{a['patches']} held-out patches; PSNR with the normalising percentile as 1.0.", "",
             "| method | PSNR (dB) |", "|---|---|",
             f"| noisy input | {a['noisy_psnr']:.2f} |",
             f"| best Gaussian low-pass (σ {a['gaussian_sigma']} px) | {a['gaussian_psnr']:.2f} |",
             f"| cryostream model | {a['model_psnr']:.2f} |"]
    if "topaz_psnr" in a:
        lines.append(f"| Topaz-Denoise pretrained U-Net | {a['topaz_psnr']:.2f} |")
    return lines + [""]


def truth_section(run, record, truth, out: Path, micrographs: int, tile: int,
                  report: dict, denoised=None) -> list[str]:
    """Score whole simulated micrographs against their ground truth; figures and markdown.
    ``denoised``: a folder where ``denoise`` wrote this model's default outputs (NAME.mrc with
    its NAME.json), scored as the default recipe instead of denoising again."""
    rows, curves = [], {}
    pairs = simulated_pairs(Path(truth), micrographs)
    for number, (noisy_path, truth_path) in enumerate(pairs, 1):
        logging.getLogger("cryostream").info("ground truth %d/%d: %s", number, len(pairs),
                                             noisy_path.name)
        noisy, pixel = read_micrograph(noisy_path)
        clean, _ = read_micrograph(truth_path)
        scale = np.float32(np.percentile(noisy, record.prepare.percentile))
        noisy_n, clean_n = noisy / scale, clean / scale
        den = network_output(run, noisy, scale, tile)
        methods = truth_methods(run, record, noisy_n, clean_n, den, pixel, str(noisy_path),
                                tile=tile, default_output=_written_default(
                                    denoised, noisy_path, run, record, scale))
        scores, frcs = score_methods(methods, clean_n, pixel)
        rows.append({"micrograph": noisy_path.name, **scores})
        for name, pair in frcs.items():
            curves.setdefault(name, []).append(pair)
        if len(rows) == 1:
            plot_crops(out / "crops.png", methods, clean_n)
            plot_spectra(out / "spectra.png", methods, clean_n, pixel)
    plot_frc(out / "frc.png", curves)
    report["simulated"] = rows
    names = [k for k in rows[0] if k != "micrograph"]
    lines = ["## Simulated micrographs against their ground truth", "",
             "PSNR (dB) and SSIM of whole micrographs, the noisy micrograph's percentile as 1.0.",
             "", "| micrograph | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in rows:
        lines.append(f"| {row['micrograph']} | " + " | ".join(
            f"{row[n]['psnr']:.2f} / {row[n]['ssim']:.3f}" for n in names) + " |")
    return lines + ["", "![crops](crops.png)", "", "![FRC](frc.png)", "",
                    "![power spectra](spectra.png)", ""]


def _written_default(denoised, noisy_path: Path, run: str, record, scale) -> np.ndarray | None:
    """What ``denoise`` wrote in ``denoised`` for ``noisy_path`` with ``run``'s default recipe
    (checked through its NAME.json), normalised by ``scale``; None when there is none."""
    if denoised is None:
        return None
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.outputs import output_identity, same_record

    path = Path(denoised) / noisy_path.name
    identity = output_identity(run, DenoiseConfig().for_run(record), str(noisy_path.resolve()))
    if not (path.is_file() and same_record(path.with_suffix(".json"), identity)):
        return None
    return read_micrograph(path)[0] / scale


def residual_section(run, record, paths, out: Path, report: dict, tile: int) -> list[str]:
    """The residual of each micrograph in ``paths`` (Noisier2Noise-corrected for runs trained
    on noisy micrographs): numbers, figures and markdown."""
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.steps import Micrograph
    from cryostream.io.stack import expand_inputs

    noisy_trained = record.noise.model != "none" and not record.recorrupt
    correction = DenoiseConfig.raw(n2n_correction=noisy_trained).pipeline()
    lines = ["## Residual of the denoised micrographs (no ground truth needed)", "",
             "Micrograph − output" + (" (Noisier2Noise-corrected)" if noisy_trained else "") +
             ": its spectrum over the measured noise spectrum (0.05–0.5 cycles/px; 1 is "
             "right) and its correlation with the 20 Å low-pass micrograph (pure noise "
             "gives the value in brackets; the whole micrograph the last column).", "",
             "| micrograph | spectrum ratio | max deviation | correlation (pure noise) | "
             "whole micrograph |", "|---|---|---|---|---|"]
    rows = []
    paths = expand_inputs(paths)
    for i, path in enumerate(paths):
        logging.getLogger("cryostream").info("residual check %d/%d: %s", i + 1, len(paths),
                                             Path(path).name)
        raw, pixel = read_micrograph(path)
        scale = np.float32(np.percentile(raw, record.prepare.percentile))
        image = raw / scale
        raw_output = network_output(run, raw, scale, tile)
        den = correction.run(Micrograph(image, pixel, record, str(path)),
                             lambda _, out=raw_output: out)[0]
        check = method_noise(image, den, pixel)
        plot_method_noise(out / f"residual_{i}.png", check, image, den, title=Path(path).name)
        rows.append({"micrograph": Path(path).name,
                     **{k: v for k, v in check.items() if not isinstance(v, np.ndarray)}})
        lines.append(f"| {Path(path).name} | {check['spectrum_ratio_mean']:.3f} | "
                     f"{check['spectrum_ratio_max_deviation']:.3f} | "
                     f"{check['correlation_with_lowpass']:.3f} "
                     f"({check['correlation_if_pure_noise']:.3f}) | "
                     f"{check['correlation_if_everything']:.3f} |")
    report["residual"] = rows
    return lines + [""] + [f"![residual {i}](residual_{i}.png)" for i in range(len(rows))] + [""]


def evaluate(run, store, output, *, truth=None, patches: int = 64, micrographs: int = 2,
             tile: int = 512, residual=None, denoised=None) -> dict:
    """Write an evaluation report (``report.md``, ``report.json``, figures) to ``output``.

    ``run`` is a run folder, an exported ``.npz`` or a shipped model's name (``"general"``).
    (a) With a ``store``: its test split under the reference plan's noise: PSNR of the noisy
    input, the best Gaussian low-pass and the model. (b) With ``truth`` (a folder written by
    :func:`cryostream.simulate`): whole simulated micrographs against their ground truth, with
    the 95th percentile of the noisy micrograph as 1.0: noisy, best Gaussian, the oracle Wiener
    filter (:func:`cryostream.metrics.wiener_oracle`), the Wiener filter from the measured noise
    (:func:`cryostream.baselines.wiener_measured`), the model and the model post-processed
    (:data:`~cryostream.evaluate.numbers.TRUTH_PIPELINES`); PSNR, SSIM, FRC curves, power
    spectra and crops. Topaz-Denoise's pretrained U-Net joins both when ``topaz-em`` is
    installed. (c) With ``residual`` (MRC paths, e.g. real micrographs): each is denoised
    (Noisier2Noise-corrected for runs trained on noisy micrographs) and the residual checked
    with :func:`~cryostream.evaluate.numbers.method_noise`. ``denoised``: a folder of this
    model's default outputs from :func:`cryostream.denoise` (with their records), scored as
    the default recipe instead of denoising the truth section's micrographs again.
    """
    from cryostream.baselines import topaz_available
    from cryostream.denoise.network import model_path, model_record

    run = model_path(run)
    record = model_record(run)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"run": str(run), "store": None if store is None else str(store)}
    lines = [f"# Evaluation of `{run}`", ""]
    if store is not None:
        a = compare_on_store(run, store, patches=patches, topaz=topaz_available())
        report["test_split"] = a
        lines += test_split_section(a)
    if (Path(run) / "loss.png").exists():
        shutil.copy(Path(run) / "loss.png", out / "training.png")
        lines += ["![training curve](training.png)", ""]
    if truth is not None:
        lines += truth_section(run, record, truth, out, micrographs, tile, report, denoised)
    if residual:
        lines += residual_section(run, record, residual, out, report, tile)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
