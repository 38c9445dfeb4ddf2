"""Quality of a trained run beside the baselines: a store's test split, simulated ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def evaluate(run, store, output, *, truth=None, patches: int = 64, micrographs: int = 2,
             tile: int = 512) -> dict:
    """Write an evaluation report (``report.md``, ``report.json``, figures) to ``output``.

    (a) The store's test split under the seed's protocol: PSNR and SSIM of the noisy input,
    the best Gaussian low-pass and the model. (b) With ``truth`` (a folder written by
    :func:`cryostream.simulate`): whole simulated micrographs against their ground truth, with
    the 95th percentile of the noisy micrograph as 1.0: noisy, best Gaussian, the oracle Wiener
    filter (:func:`cryostream.metrics.wiener_oracle`), the model and the model with the
    Noisier2Noise correction; PSNR, SSIM, FRC curves, power spectra and crops.
    Topaz-Denoise's pretrained U-Net joins both when ``topaz-em`` is installed.
    """
    import shutil

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mrcfile
    import scipy.ndimage

    from cryostream.infer import _alpha2, _loaded, denoise_array, n2n_correct
    from cryostream.io.stack import open_micrographs
    from cryostream.metrics import frc, ssim, wiener_oracle
    from cryostream.simulate.spectrum import power_spectrum, radial_average

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"run": str(run), "store": str(store)}
    lines = [f"# Evaluation of `{run}`", ""]
    from cryostream.baselines import topaz_available, topaz_denoise

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
            stack = open_micrographs([noisy_path])
            den = denoise_array(stack.data, run, [scale], tile=tile).compute()[0]
            gauss_db, sigma = best_gaussian(noisy_n, clean_n)
            gauss = scipy.ndimage.gaussian_filter(noisy_n, sigma) if sigma else noisy_n
            methods = {"noisy": noisy_n, f"Gaussian σ {sigma}": gauss,
                       "oracle Wiener": wiener_oracle(noisy_n, clean_n), "model": den}
            if record["prepare"]["noise"]["model"] != "none":  # paired runs estimate the truth
                a2 = _alpha2(record, noisy_n)
                methods["model + N2N correction"] = n2n_correct(den, noisy_n, a2)
                methods["model + N2N, ring clamp"] = n2n_correct(den, noisy_n, a2, ring_clamp=True)
            if with_topaz:
                methods["Topaz-Denoise"] = topaz_denoise(noisy_n)
            row = {"micrograph": noisy_path.name}
            for name, image in methods.items():
                row[name] = {"psnr": psnr(image, clean_n), "ssim": ssim(image, clean_n)}
                freq, curve = frc(image, clean_n, 0.6575)
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
                    f, pw = radial_average(power_spectrum(image, side), 0.6575)
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
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(__import__("json").dumps(report, indent=2))
    return report
