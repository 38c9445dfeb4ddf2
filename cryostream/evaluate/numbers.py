"""The numbers of an evaluation: a store's test split, whole simulated micrographs against
their ground truth, and the residual check for micrographs without truth."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from cryostream.config import DenoiseConfig
from cryostream.errors import ConfigError
from cryostream.evaluate.verdict import (
    SPECIMEN,
    VERDICT_SD,
    pure_noise_correlation,
    pure_noise_spread,
    verdict_of,
)
from cryostream.metrics import best_gaussian, frc, psnr, ssim, wiener_oracle

__all__ = ["compare_on_store", "simulated_pairs", "read_micrograph", "network_output",
           "TruthMethods", "truth_methods", "score_methods", "method_noise", "read_residual",
           "RESIDUAL_BAND", "residual_band",
           "TRUTH_PIPELINES", "GAUSSIAN", "ORACLE_WIENER", "DEFAULT_RECIPE", "written_method"]

#: The post-processing the truth section scores for runs trained on noisy micrographs, by name.
TRUTH_PIPELINES = {
    "model + N2N correction": DenoiseConfig.raw(n2n_correction=True),
    "model + N2N, ring clamp": DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True),
    "model + N2N, clamp, Wiener gain": DenoiseConfig.raw(n2n_correction=True, n2n_clamp=True,
                                                         wiener_gain=True),
}


def compare_on_store(run, store, *, patches: int = 64, batch_size: int = 8,
                     topaz: bool = False) -> dict[str, float]:
    """PSNR (dB, peak 1.0) on up to ``patches`` test patches: noisy input, best Gaussian, model.

    With ``topaz=True`` and Topaz-Denoise installed, its pretrained U-Net too (``topaz_psnr``).

    Inputs of on-device-noise stores are synthesised with the store's noise model (seeded), as
    training synthesises them (:func:`~cryostream.loader.model_input`: matched noise from
    each micrograph's own measured statistics).
    """
    import jax

    from cryostream.denoise.network import load_model_file
    from cryostream.loader import PatchLoader, model_input

    log = logging.getLogger("cryostream")
    log.info("test split of %s: up to %d patches", Path(store).name, patches)
    start = time.perf_counter()
    model, _ = load_model_file(str(run))  # a run folder, an exported .npz or a shipped model
    apply = jax.jit(lambda x: model(x))
    loader = PatchLoader(store, "test", batch_size, shuffle=False, repeat=False,
                         drop_remainder=False)
    noisy, clean, denoised = [], [], []
    for number, batch in enumerate(loader):
        target = batch["target"].astype(np.float32)
        model_in, _ = model_input(batch, loader.noise, 12345, number, loader.noise_table)
        inp = np.asarray(model_in)[..., 0]
        out = np.asarray(apply(model_in))[..., 0]
        noisy.append(inp)
        clean.append(target)
        denoised.append(out)
        if sum(len(c) for c in clean) >= patches:
            break
    loader.close()
    noisy, clean, denoised = (np.concatenate(a)[:patches] for a in (noisy, clean, denoised))
    log.info("test split: %d patches through the model in %.1f s", len(clean),
             time.perf_counter() - start)
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


def simulated_pairs(truth_root: Path, limit: int | None = None) -> list[tuple[Path, Path]]:
    """Up to ``limit`` (all with ``None``) ``(micrographs/NAME.mrc, truth/NAME.mrc)`` pairs of
    a simulated set, sorted by name; a set that ``simulate`` did not finish is refused
    (:func:`~cryostream.io.simulated.check_sets_finished`): it would be scored as a whole, and a
    ``truth_root`` that is no folder is named so (a mistyped name)."""
    from cryostream.io.simulated import check_sets_finished

    if not Path(truth_root).is_dir():  # a mistyped name: said so, not that it lacks micrographs
        what = "is a file, not a folder" if Path(truth_root).exists() else "no such folder"
        raise ConfigError(f"truth={truth_root}: {what}; give the folder cryostream simulate "
                          "wrote (its OUT: micrographs/ and truth/ are in it)")
    check_sets_finished([truth_root], "truth=")
    pairs = []
    for noisy in sorted((Path(truth_root) / "micrographs").glob("*.mrc")):
        truth = Path(truth_root) / "truth" / noisy.name
        if truth.exists():
            pairs.append((noisy, truth))
    if not pairs:
        raise ConfigError(f"truth={truth_root}: no micrographs/NAME.mrc with truth/NAME.mrc "
                          "(a folder written by cryostream simulate)")
    return pairs[:limit]


def read_micrograph(path, *, residual: bool = False) -> tuple[np.ndarray, float | None]:
    """A micrograph's pixels (float32) and pixel size in Å (1.0 where the header has none; with
    ``residual``, the residual check's own reading with no other pixel size given, None there,
    and a :class:`~cryostream.io.pixel_sizes.PixelSizeWarning` names the file and what it
    gives)."""
    import warnings

    from cryostream.io.mrc import read_header, read_rows
    from cryostream.io.pixel_sizes import PixelSizeWarning, unset_pixel_size

    header = read_header(path)
    if residual and header.pixel_size_angstrom <= 0:
        warnings.warn(f"{header.path}: {unset_pixel_size(header)}; its residual is checked at 1 Å "
                      "per pixel and reported in pixels (its 20 Å low-pass is 20 pixels, its CTF "
                      "fit at that scale): pass --pixel-size Å (Python: pixel_size_angstrom=), "
                      "write the pixel size into its header (e.g. IMOD's alterheader), or give a "
                      "STAR file whose optics table has it", PixelSizeWarning, stacklevel=3)
    pixels = read_rows(header, 0, header.shape[0])
    return pixels, header.pixel_size_angstrom or (None if residual else 1.0)


def network_output(run, image: np.ndarray, percentile: float, tile: int | None) -> np.ndarray:
    """The run's network on a whole micrograph, in units of ``percentile`` (as in training)."""
    import dask.array as da

    from cryostream.denoise.tiling import denoise_array

    return denoise_array(da.from_array(image[None], chunks=(1, -1, -1)), run, [percentile],
                         tile=tile).compute()[0]


#: The truth section's names of the best Gaussian, the oracle Wiener filter and what
#: ``denoise`` gives by default.
GAUSSIAN, ORACLE_WIENER, DEFAULT_RECIPE = "Gaussian (best σ)", "oracle Wiener", "model, default recipe"


def written_method(options: str) -> str:
    """The truth section's name of an output ``denoise`` wrote with other ``options`` than the
    default (:func:`~cryostream.evaluate.denoised.made_otherwise`'s), scored as it is:
    ``"model, as written (ensemble off, not on)"``."""
    return f"model, as written ({options})"


@dataclasses.dataclass(frozen=True)
class TruthMethods:
    """What :func:`truth_methods` gives for one micrograph.

    Attributes
    ----------
    images : dict of str to numpy.ndarray (y, x) float32
        Each method's output in normalised units, by name.
    gaussian_sigma_px : float
        The σ (pixels) of the best Gaussian (:data:`GAUSSIAN`; 0: no filter).
    found : dict
        What the default recipe's steps found on the micrograph (the fitted defocus, whether
        the CTF check passed: :meth:`~cryostream.denoise.steps.BoundPipeline.describe`).
    """

    images: dict
    gaussian_sigma_px: float
    found: dict


def recipe_output(run, recipe, micrograph, own: np.ndarray, tile: int | None, passes=None):
    """``recipe`` (a resolved :class:`~cryostream.config.DenoiseConfig`, or its
    :class:`~cryostream.denoise.steps.Pipeline` for one micrograph: a STAR row's defocus) run
    on ``micrograph`` (a :class:`~cryostream.denoise.steps.Micrograph`) as ``denoise`` runs it:
    ``(output, found)``. The network's pass on the micrograph itself is ``own``, done already; the others
    (the ensemble's, the binned pass's) are made here, by ``passes`` where given (a network
    pass with notes: :func:`~cryostream.denoise.micrograph.network_fn`), else at ``tile``."""
    from cryostream.denoise.tiling import network_pass

    image = micrograph.image

    def network(x):  # the ensemble's first view is the micrograph itself (a view of it)
        same = x is image or (x.shape == image.shape and np.shares_memory(x, image)
                              and np.array_equal(x, image))
        return own if same else passes(x) if passes else network_pass(str(run), x, tile=tile)

    return (recipe.pipeline() if hasattr(recipe, "pipeline") else recipe).run(micrograph, network)


def truth_methods(run, record, noisy_n: np.ndarray, clean_n: np.ndarray, den: np.ndarray,
                  pixel_size_angstrom: float, source: str, tile: int | None = None,
                  written: np.ndarray | None = None, written_found: dict | None = None,
                  written_as: str = DEFAULT_RECIPE) -> TruthMethods:
    """Every method the truth section scores on one normalised micrograph, by name: noisy,
    the best Gaussian, the oracle and measured-noise Wiener filters, the model, its
    post-processed outputs (:data:`TRUTH_PIPELINES`), what ``denoise`` gives by default
    (:data:`DEFAULT_RECIPE`: :meth:`DenoiseConfig.for_run`) and Topaz-Denoise when
    installed. ``den`` is the network's output on ``noisy_n``; ``written`` (normalised like
    ``noisy_n``) is what ``denoise`` wrote, scored as ``written_as`` instead of computing the
    default recipe (:data:`DEFAULT_RECIPE` where made by default, else named with its options:
    :func:`written_method`), and ``written_found`` what its record says the steps found."""
    import scipy.ndimage

    from cryostream.baselines import topaz_available, topaz_denoise, wiener_measured
    from cryostream.denoise.steps import Micrograph

    _, sigma = best_gaussian(noisy_n, clean_n)
    micrograph = Micrograph(noisy_n, pixel_size_angstrom, record, source=source)
    methods = {"noisy": noisy_n,
               GAUSSIAN: scipy.ndimage.gaussian_filter(noisy_n, sigma) if sigma else noisy_n,
               ORACLE_WIENER: wiener_oracle(noisy_n, clean_n),
               "Wiener, measured noise": wiener_measured(noisy_n, micrograph.noise()),
               "model": den}
    if not record.estimates_clean:  # the others need no Noisier2Noise correction
        for name, config in TRUTH_PIPELINES.items():
            methods[name] = config.pipeline().run(micrograph, lambda image: den)[0]

    if written is not None:
        methods[written_as], found = written, dict(written_found or {})
    else:
        methods[DEFAULT_RECIPE], found = recipe_output(run, DenoiseConfig(tile=tile).for_run(
            record), micrograph, den, tile)
    if topaz_available():
        methods["Topaz-Denoise"] = topaz_denoise(noisy_n)
    return TruthMethods(methods, float(sigma), found)


def score_methods(methods: dict[str, np.ndarray], clean_n: np.ndarray,
                  pixel_size_angstrom: float) -> tuple[dict, dict]:
    """PSNR and SSIM of each method against the truth, and its FRC curve:
    ``({name: {"psnr", "ssim"}}, {name: (frequency, frc)})``."""
    scores, curves = {}, {}
    for name, image in methods.items():
        scores[name] = {"psnr": psnr(image, clean_n), "ssim": ssim(image, clean_n)}
        curves[name] = frc(image, clean_n, pixel_size_angstrom)
    return scores, curves


#: The residual check's band of spatial frequency, cycles/px: from a period of 20 pixels out to
#: Nyquist (13.2–1.32 Å at 0.66 Å/px).
RESIDUAL_BAND = (0.05, 0.5)


def method_noise(micrograph: np.ndarray, denoised: np.ndarray, pixel_size_angstrom: float | None,
                 *, noise=None, lowpass_angstrom: float = 20.0) -> dict:
    """Is what a denoiser removed only noise? The residual check for micrographs without truth.

    The residual ``micrograph − denoised`` of a good denoiser is the micrograph's noise: its
    radial power spectrum matches the measured noise spectrum, and it carries no particles.
    ``pixel_size_angstrom`` None: not known, the micrograph is checked at 1 Å per pixel (its
    low-pass is ``lowpass_angstrom`` pixels) and its band and frequencies are in cycles/px.
    Returns, over :data:`RESIDUAL_BAND` (``band_angstrom``: that band as resolutions in Å,
    coarse to fine; ``band_cycles_per_px`` instead where no pixel size is known):

    - ``spectrum_ratio_mean`` and ``spectrum_ratio_max_deviation``: the residual's radial
      power over the measured noise spectrum (``noise``, a :class:`~cryostream.matched.NoiseEstimate`
      of the micrograph in the same units; measured here when ``None``);
    - ``correlation_with_lowpass``: the residual's correlation with the micrograph low-passed at
      ``lowpass_angstrom`` (Gaussian, that FWHM), the particle-scale image;
    - ``correlation_if_pure_noise``: what that correlation is when the residual is exactly
      noise with the measured spectrum (noise is part of the low-passed image too), and
      ``correlation_if_everything``: when the residual is the whole micrograph;
    - ``correlation_sd_if_pure_noise``: how far pure noise's correlation strays by chance, one
      standard deviation (``correlation_sd_parts``: its ``sampling`` and ``noise_estimate``
      parts, :func:`~cryostream.evaluate.verdict.pure_noise_spread`), ``sd_above_pure_noise``
      the residual's correlation less pure noise's in it, and ``verdict``: ``"specimen in the
      residual"`` where that is more than :data:`~cryostream.evaluate.verdict.VERDICT_SD`,
      else ``"noise-like"``.

    Also ``pixel_size_angstrom`` (None: not known), ``lowpass_angstrom`` (``lowpass_px``
    where no pixel size is known), and ``residual_radial``, ``noise_radial`` and ``frequency``
    (1/Å; cycles/px where no pixel size is known) for a figure.
    """
    import scipy.ndimage

    from cryostream.matched import estimate_noise, tile_for

    known = pixel_size_angstrom
    pixel_size_angstrom = known or 1.0
    image = np.asarray(micrograph, np.float32)
    residual = image - np.asarray(denoised, np.float32)
    noise = noise if noise is not None else estimate_noise(image, pixel_size_angstrom,
                                                           tile=tile_for(image.shape))
    tile = noise.psd.shape[0]
    radial = estimate_noise(residual, pixel_size_angstrom, tile=tile).total_radial
    ratio = radial / noise.radial
    rings = np.arange(len(ratio)) / tile
    band = (rings >= RESIDUAL_BAND[0]) & (rings < RESIDUAL_BAND[1])
    sigma = lowpass_angstrom / pixel_size_angstrom / 2.355
    lowpass = scipy.ndimage.gaussian_filter(image, sigma)
    # pure noise with the measured spectrum (the low-passed micrograph's spread measured
    # directly), and how far it strays by chance
    pure = pure_noise_correlation(noise.psd, sigma, float(lowpass.std()))
    spread = pure_noise_spread(image, lowpass, noise, sigma, pixel_size_angstrom)
    got = float(np.corrcoef(residual.ravel(), lowpass.ravel())[0, 1])
    check = {
        "spectrum_ratio_mean": float(ratio[band].mean()),
        "spectrum_ratio_max_deviation": float(np.abs(ratio[band] - 1).max()),
        "correlation_with_lowpass": got,
        "correlation_if_pure_noise": pure,
        "correlation_sd_if_pure_noise": spread["sd"],
        "correlation_sd_parts": {"sampling": spread["sampling"],
                                 "noise_estimate": spread["noise_estimate"]},
        "sd_above_pure_noise": (got - pure) / spread["sd"],
        "correlation_if_everything": float(np.corrcoef(image.ravel(), lowpass.ravel())[0, 1]),
        "pixel_size_angstrom": known,
        **({"band_angstrom": [round(known / f, 3) for f in RESIDUAL_BAND],
            "lowpass_angstrom": lowpass_angstrom} if known else
           {"band_cycles_per_px": list(RESIDUAL_BAND), "lowpass_px": lowpass_angstrom}),
        "residual_radial": radial, "noise_radial": noise.radial,
        "frequency": rings / pixel_size_angstrom,
    }
    return {**check, "verdict": verdict_of(check)}


def residual_band(check: dict) -> str:
    """The band :func:`method_noise` compared the spectra over, as a scientist reads it: in Å
    (``13.2–1.32 Å``), in cycles/px where no pixel size is known."""
    if "band_angstrom" in check:
        coarse, fine = check["band_angstrom"]
        return f"{coarse:.3g}–{fine:.3g} Å"
    low, high = check["band_cycles_per_px"]
    return f"{low:g}–{high:g} cycles/px"


def read_residual(check: dict) -> str:
    """What :func:`method_noise`'s numbers mean, in one sentence for the report: its verdict
    first, then how far the residual's correlation with the particle-scale image is from pure
    noise's (nothing of the specimen removed), in the standard deviations chance gives it and
    toward the whole micrograph's (all of it), and how much of the noise over
    its band (:func:`residual_band`, in Å) the output keeps, or how much more than noise it
    took out there."""
    got, noise = check["correlation_with_lowpass"], check["correlation_if_pure_noise"]
    way = 100 * (got - noise) / (check["correlation_if_everything"] - noise)
    ratio = check["spectrum_ratio_mean"]
    kept = (f"about {100 * (1 - ratio):.0f} % of the noise there left in the output" if ratio < 1
            else f"{100 * (ratio - 1):.0f} % more than the noise taken out there, part of it signal")
    whole, z = check["correlation_if_everything"], check["sd_above_pure_noise"]
    chance = (f"sd {check['correlation_sd_if_pure_noise']:.2g} by chance; "
              + (f"more than {VERDICT_SD:g} sd above it reads as specimen"
                 if check["verdict"] == SPECIMEN else f"up to {VERDICT_SD:g} sd above it reads as noise"))
    where = (f"{z:.1f} sd above pure noise's {noise:.3f} ({chance}) and {way:.1f} % of the way "
             f"from pure noise's (nothing of the specimen removed) to the whole micrograph's "
             f"{whole:.3f} (all of it removed)") if way > 0 else (
        f"at or under pure noise's {noise:.3f} ({-z:.1f} sd under; {chance}): nothing of the "
        f"specimen removed (the whole micrograph's {whole:.3f} would be all of it)")
    lowpass = (f"{check['lowpass_angstrom']:g} Å" if "lowpass_angstrom" in check
               else f"{check['lowpass_px']:g}-pixel")
    return (f"{check['verdict']}: the residual's correlation with the {lowpass} low-pass "
            f"micrograph, {got:.3f}, is {where}; its spectrum is {ratio:.3f} of the noise's at "
            f"{residual_band(check)} (1 is right): {kept}")
