"""Quality of a trained run beside the baselines: a store's test split, simulated ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryostream.config import SimulateConfig
from cryostream.metrics import best_gaussian, psnr

__all__ = ["compare_on_store", "evaluate"]


def compare_on_store(run, store, *, patches: int = 64, batch_size: int = 8,
                     topaz: bool = False) -> dict[str, float]:
    """PSNR (dB, peak 1.0) on up to ``patches`` test patches: noisy input, best Gaussian, model.

    With ``topaz=True`` and Topaz-Denoise installed, its pretrained U-Net too (``topaz_psnr``).

    Inputs of on-device-noise stores are synthesised with the store's noise model (seeded).
    """
    import jax
    import jax.numpy as jnp

    from cryostream.loader import PatchLoader
    from cryostream.noise import add_noise_jax
    from cryostream.training import load_model

    model, _ = load_model(run)
    apply = jax.jit(lambda x: model(x))
    loader = PatchLoader(store, "test", batch_size, shuffle=False, repeat=False,
                         drop_remainder=False)
    noisy, clean, denoised = [], [], []
    for number, batch in enumerate(loader):
        target = batch["target"].astype(np.float32)
        if "input" in batch:
            inp = batch["input"].astype(np.float32)
        else:
            key = jax.random.fold_in(jax.random.key(12345), number)
            inp = np.asarray(add_noise_jax(target, loader.noise, key))
        out = np.asarray(apply(jnp.asarray(inp)[..., None]))[..., 0]
        noisy.append(inp)
        clean.append(target)
        denoised.append(out)
        if sum(len(c) for c in clean) >= patches:
            break
    loader.close()
    noisy, clean, denoised = (np.concatenate(a)[:patches] for a in (noisy, clean, denoised))
    gauss_db, sigma = best_gaussian(noisy, clean)
    scores = {"patches": int(len(clean)), "noisy_psnr": float(psnr(noisy, clean)),
              "gaussian_psnr": float(gauss_db), "gaussian_sigma": sigma,
              "model_psnr": float(psnr(denoised, clean))}
    if topaz:
        from cryostream.baselines import topaz_available, topaz_denoise

        if topaz_available():
            peer = np.stack([topaz_denoise(patch) for patch in noisy])
            scores["topaz_psnr"] = float(psnr(peer, clean))
    return scores


def _residual_section(run, paths, out: Path, report: dict, tile: int) -> list[str]:
    """Report section (c): the residual of each micrograph in ``paths``."""
    import dask.array as da
    import mrcfile

    from cryostream.infer import _alpha2, _loaded, denoise_array, n2n_correct
    from cryostream.io.stack import expand_inputs, open_micrographs

    _, _, _, record = _loaded(str(run))
    seed_way = record["prepare"]["noise"]["model"] != "none"
    lines = ["## Residual of the denoised micrographs (no ground truth needed)", "",
             "Micrograph − output" + (" (Noisier2Noise-corrected)" if seed_way else "") +
             ": its spectrum over the measured noise spectrum (0.05–0.5 cycles/px; 1 is "
             "right) and its correlation with the 20 Å low-pass micrograph (pure noise "
             "gives the value in brackets; the whole micrograph the last column).", "",
             "| micrograph | spectrum ratio | max deviation | correlation (pure noise) | "
             "whole micrograph |", "|---|---|---|---|---|"]
    rows = []
    for i, path in enumerate(expand_inputs(paths)):
        path = Path(path)
        with mrcfile.open(path, permissive=True) as m:
            pixel = float(m.voxel_size.x) or 1.0
        raw = open_micrographs([path]).data[0].compute()  # read once, used twice
        scale = np.float32(np.percentile(raw, record["prepare"]["percentile"]))
        image = raw / scale
        den = denoise_array(da.from_array(raw[None], chunks=(1, -1, -1)), run, [scale],
                            tile=tile).compute()[0]
        if seed_way:
            den = n2n_correct(den, image, _alpha2(record, image))
        check = method_noise(image, den, pixel)
        plot_method_noise(out / f"residual_{i}.png", check, image, den, title=path.name)
        rows.append({"micrograph": path.name, **{k: v for k, v in check.items()
                                                  if not isinstance(v, np.ndarray)}})
        lines.append(f"| {path.name} | {check['spectrum_ratio_mean']:.3f} | "
                     f"{check['spectrum_ratio_max_deviation']:.3f} | "
                     f"{check['correlation_with_lowpass']:.3f} "
                     f"({check['correlation_if_pure_noise']:.3f}) | "
                     f"{check['correlation_if_everything']:.3f} |")
    report["residual"] = rows
    lines += [""] + [f"![residual {i}](residual_{i}.png)" for i in range(len(rows))] + [""]
    return lines


#: Pixel size (Å) of the simulated micrographs the truth section scores (the simulator's default).
_SIM_PIXEL = SimulateConfig.pixel_size_angstrom


def _simulated_pairs(truth_root: Path, limit: int) -> list[tuple[Path, Path]]:
    pairs = []
    for noisy in sorted((truth_root / "micrographs").glob("*.mrc"))[:limit]:
        truth = truth_root / "truth" / noisy.name
        if truth.exists():
            pairs.append((noisy, truth))
    if not pairs:
        from cryostream.errors import ConfigError

        raise ConfigError(f"truth={truth_root}: no micrographs/NAME.mrc with truth/NAME.mrc "
                          "(a folder written by cryostream simulate)")
    return pairs


def method_noise(micrograph: np.ndarray, denoised: np.ndarray, pixel_size_angstrom: float, *,
                 noise=None, lowpass_angstrom: float = 20.0) -> dict:
    """Is what a denoiser removed only noise? The residual check for micrographs without truth.

    The residual ``micrograph − denoised`` of a good denoiser is the micrograph's noise: its
    radial power spectrum matches the measured noise spectrum, and it carries no particles.
    Returns, over 0.05–0.5 cycles/px:

    - ``spectrum_ratio_mean`` and ``spectrum_ratio_max_deviation``: the residual's radial
      power over the measured noise spectrum (``noise``, a :class:`~cryostream.matched.NoiseEstimate`
      of the micrograph in the same units; measured here when ``None``);
    - ``correlation_with_lowpass``: the residual's correlation with the micrograph low-passed at
      ``lowpass_angstrom`` (Gaussian, that FWHM), the particle-scale image;
    - ``correlation_if_pure_noise``: what that correlation is when the residual is exactly
      noise with the measured spectrum (noise is part of the low-passed image too), and
      ``correlation_if_everything``: when the residual is the whole micrograph.

    Also ``residual_radial``, ``noise_radial`` and ``frequency`` (1/Å) for a figure.
    """
    import scipy.ndimage

    from cryostream.matched import estimate_noise, tile_for

    image = np.asarray(micrograph, np.float32)
    residual = image - np.asarray(denoised, np.float32)
    noise = noise if noise is not None else estimate_noise(image, pixel_size_angstrom,
                                                           tile=tile_for(image.shape))
    tile = noise.psd.shape[0]
    got = estimate_noise(residual, pixel_size_angstrom, tile=tile).total_radial
    ratio = got / noise.radial
    rings = np.arange(len(ratio)) / tile
    band = (rings >= 0.05) & (rings < 0.5)
    sigma = lowpass_angstrom / pixel_size_angstrom / 2.355
    lowpass = scipy.ndimage.gaussian_filter(image, sigma)
    # pure noise n with the measured spectrum: cov(n, lowpass) = cov(n, G∗n) = mean(G·N) over
    # the spectrum's grid; the low-passed micrograph's spread is measured directly
    freq = np.hypot(*(np.indices((tile, tile)) - tile // 2)) / tile
    gain = np.exp(-2 * np.pi**2 * sigma**2 * freq**2)
    pure = float((gain * noise.psd).mean() / np.sqrt(noise.psd.mean()) / lowpass.std())
    return {
        "spectrum_ratio_mean": float(ratio[band].mean()),
        "spectrum_ratio_max_deviation": float(np.abs(ratio[band] - 1).max()),
        "correlation_with_lowpass": float(np.corrcoef(residual.ravel(), lowpass.ravel())[0, 1]),
        "correlation_if_pure_noise": pure,
        "correlation_if_everything": float(np.corrcoef(image.ravel(), lowpass.ravel())[0, 1]),
        "residual_radial": got, "noise_radial": noise.radial,
        "frequency": rings / pixel_size_angstrom,
    }


def plot_method_noise(path, check: dict, image: np.ndarray, denoised: np.ndarray, title: str = ""):
    """The residual check as a figure: spectra, then micrograph, output and residual crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.ndimage

    fig, ax = plt.subplots(1, 4, figsize=(18, 4.5))
    f = check["frequency"]
    ax[0].semilogy(f, check["noise_radial"], label="measured noise of the micrograph")
    ax[0].semilogy(f, check["residual_radial"], "--", label="residual: micrograph − output")
    ax[0].set_xlabel("spatial frequency (1/Å)")
    ax[0].set_ylabel("power (variance per bin)")
    ax[0].set_title(title or f"residual / noise {check['spectrum_ratio_mean']:.3f}, "
                    f"corr {check['correlation_with_lowpass']:.3f}", fontsize=9)
    ax[0].legend(fontsize=8)
    c = min(512, *image.shape)
    residual = image - denoised
    for a, img, name in zip(ax[1:], (image, denoised, residual), ("micrograph", "output", "residual"),
                            strict=True):
        crop = scipy.ndimage.gaussian_filter(img[:c, :c], 1)
        lo, hi = np.percentile(crop, [1, 99])
        a.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
        a.set_title(name)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate(run, store, output, *, truth=None, patches: int = 64, micrographs: int = 2,
             tile: int = 512, residual=None) -> dict:
    """Write an evaluation report (``report.md``, ``report.json``, figures) to ``output``.

    (a) The store's test split under the seed's protocol: PSNR and SSIM of the noisy input,
    the best Gaussian low-pass and the model. (b) With ``truth`` (a folder written by
    :func:`cryostream.simulate`): whole simulated micrographs against their ground truth, with
    the 95th percentile of the noisy micrograph as 1.0: noisy, best Gaussian, the oracle Wiener
    filter (:func:`cryostream.metrics.wiener_oracle`), the Wiener filter from the measured noise
    (:func:`cryostream.baselines.wiener_measured`), the model and the model with the
    Noisier2Noise correction (also with the ring clamp, and with the clamp and the Wiener
    filter's linear response, :func:`cryostream.infer.match_wiener_gain`); PSNR, SSIM, FRC
    curves, power spectra and crops.
    Topaz-Denoise's pretrained U-Net joins both when ``topaz-em`` is installed. (c) With
    ``residual`` (MRC paths, e.g. real micrographs): each is denoised (Noisier2Noise-corrected
    for runs trained the seed's way) and the residual checked with :func:`method_noise`.
    """
    import shutil

    import dask.array as da
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mrcfile
    import scipy.ndimage

    from cryostream.infer import _alpha2, _loaded, denoise_array, n2n_correct
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.metrics import frc, ssim, wiener_oracle
    from cryostream.simulate.spectrum import power_spectrum, radial_average

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"run": str(run), "store": str(store)}
    lines = [f"# Evaluation of `{run}`", ""]
    from cryostream.baselines import topaz_available, topaz_denoise, wiener_measured

    with_topaz = topaz_available()
    a = compare_on_store(run, store, patches=patches, topaz=with_topaz)
    report["test_split"] = a
    lines += ["## Test split, seed's protocol", "",
              f"{a['patches']} held-out patches; PSNR with the normalising percentile as 1.0.", "",
              "| method | PSNR (dB) |", "|---|---|",
              f"| noisy input | {a['noisy_psnr']:.2f} |",
              f"| best Gaussian low-pass (σ {a['gaussian_sigma']} px) | {a['gaussian_psnr']:.2f} |",
              f"| cryostream model | {a['model_psnr']:.2f} |"]
    if "topaz_psnr" in a:
        lines.append(f"| Topaz-Denoise pretrained U-Net | {a['topaz_psnr']:.2f} |")
    lines.append("")
    if (Path(run) / "loss.png").exists():
        shutil.copy(Path(run) / "loss.png", out / "training.png")
        lines += ["![training curve](training.png)", ""]
    if truth is not None:
        _, _, _, record = _loaded(str(run))
        rows, curves = [], {}
        for noisy_path, truth_path in _simulated_pairs(Path(truth), micrographs):
            noisy = mrcfile.read(noisy_path).astype(np.float32)
            clean = mrcfile.read(truth_path).astype(np.float32)
            scale = np.float32(np.percentile(noisy, record["prepare"]["percentile"]))
            noisy_n, clean_n = noisy / scale, clean / scale
            den = denoise_array(da.from_array(noisy[None], chunks=(1, -1, -1)), run, [scale],
                                tile=tile).compute()[0]
            gauss_db, sigma = best_gaussian(noisy_n, clean_n)
            gauss = scipy.ndimage.gaussian_filter(noisy_n, sigma) if sigma else noisy_n
            noise = estimate_noise(noisy_n, _SIM_PIXEL, tile=tile_for(noisy_n.shape))
            methods = {"noisy": noisy_n, f"Gaussian σ {sigma}": gauss,
                       "oracle Wiener": wiener_oracle(noisy_n, clean_n),
                       "Wiener, measured noise": wiener_measured(noisy_n, noise),
                       "model": den}
            if record["prepare"]["noise"]["model"] != "none":  # paired runs estimate the truth
                a2 = _alpha2(record, noisy_n)
                methods["model + N2N correction"] = n2n_correct(den, noisy_n, a2)
                methods["model + N2N, ring clamp"] = n2n_correct(den, noisy_n, a2, ring_clamp=True)
                methods["model + N2N, clamp, Wiener gain"] = n2n_correct(
                    den, noisy_n, a2, ring_clamp=True, noise=noise)
            if with_topaz:
                methods["Topaz-Denoise"] = topaz_denoise(noisy_n)
            row = {"micrograph": noisy_path.name}
            for name, image in methods.items():
                row[name] = {"psnr": psnr(image, clean_n), "ssim": ssim(image, clean_n)}
                freq, curve = frc(image, clean_n, _SIM_PIXEL)
                curves.setdefault(name, []).append(curve)
            rows.append(row)
            if len(rows) == 1:
                c = min(512, noisy.shape[0], noisy.shape[1])
                fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4 * len(methods) + 4, 4.4))
                for ax, (name, image) in zip(axes, [*methods.items(), ("truth", clean_n)],
                                             strict=True):
                    crop = image[:c, :c]
                    lo, hi = np.percentile(clean_n[:c, :c], [1, 99])
                    ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi)
                    ax.set_title(name)
                    ax.axis("off")
                fig.tight_layout()
                fig.savefig(out / "crops.png", dpi=70)
                plt.close(fig)
                fig, ax = plt.subplots(figsize=(6, 4))
                for name, image in [*methods.items(), ("truth", clean_n)]:
                    side = min(512, 2 ** int(np.log2(min(image.shape))))
                    f, pw = radial_average(power_spectrum(image, side), _SIM_PIXEL)
                    ax.semilogy(f[2:], pw[2:], lw=0.8, label=name)
                ax.set_xlabel("spatial frequency (1/Å)")
                ax.set_ylabel("power")
                ax.legend(fontsize=7)
                fig.tight_layout()
                fig.savefig(out / "spectra.png", dpi=80)
                plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, cs in curves.items():
            ax.plot(freq, np.mean(cs, axis=0), lw=0.8, label=name)
        ax.set_xlabel("spatial frequency (1/Å)")
        ax.set_ylabel("FRC with the ground truth")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "frc.png", dpi=80)
        plt.close(fig)
        report["simulated"] = rows
        names = [k for k in rows[0] if k != "micrograph"]
        lines += ["## Simulated micrographs against their ground truth", "",
                  "PSNR (dB) and SSIM of whole micrographs, the noisy micrograph's percentile as 1.0.",
                  "", "| micrograph | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        for row in rows:
            lines.append(f"| {row['micrograph']} | " + " | ".join(
                f"{row[n]['psnr']:.2f} / {row[n]['ssim']:.3f}" for n in names) + " |")
        lines += ["", "![crops](crops.png)", "", "![FRC](frc.png)", "",
                  "![power spectra](spectra.png)", ""]
    if residual:
        lines += _residual_section(run, residual, out, report, tile)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(__import__("json").dumps(report, indent=2))
    return report
