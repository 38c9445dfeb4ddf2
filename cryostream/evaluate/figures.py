"""The figures of an evaluation report, each from numbers already computed."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_method_noise", "plot_crops", "plot_spectra", "plot_frc", "mean_frc",
           "resolution_axis"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Resolutions (Å) that may label a frequency axis, finest first.
_RESOLUTIONS = (0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2, 2.2, 2.5, 3, 3.5, 4, 5, 6, 8, 10,
                12, 15, 20, 30, 50, 100, 200)


def resolution_axis(ax, frequency: np.ndarray, known: bool = True) -> None:
    """The x axis of a plot against ``frequency`` (1/Å) labelled as resolution in Å, as
    cryo-EM reads it; ``known`` False: ``frequency`` is in cycles/px (no pixel size known) and
    labelled so."""
    if not known:
        ax.set_xlabel("spatial frequency (cycles/px; no pixel size known)")
        return
    top = float(np.max(frequency))
    shown: list[float] = []
    for r in _RESOLUTIONS:  # from the finest inside the axis, about a ninth of it apart
        if 1 / r <= top and (not shown or shown[-1] - 1 / r >= top / 9):
            shown.append(1 / r)
    ax.set_xticks(shown, [f"{1 / f:g}" for f in shown])
    ax.set_xlim(0, top)
    ax.set_xlabel("resolution (Å)")


def plot_method_noise(path, check: dict, image: np.ndarray, denoised: np.ndarray, title: str = ""):
    """The residual check as a figure: spectra (against resolution in Å, cycles/px where no
    pixel size is known), then micrograph, output and residual crops."""
    import scipy.ndimage

    plt = _pyplot()
    fig, ax = plt.subplots(1, 4, figsize=(18, 4.5))
    f = check["frequency"]
    ax[0].semilogy(f, check["noise_radial"], label="measured noise of the micrograph")
    ax[0].semilogy(f, check["residual_radial"], "--", label="residual: micrograph − output")
    resolution_axis(ax[0], f, check.get("pixel_size_angstrom", 1.0) is not None)
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


def plot_crops(path, methods: dict[str, np.ndarray], clean: np.ndarray) -> None:
    """The top-left 512² of every method and the truth, on the truth's grey scale."""
    plt = _pyplot()
    c = min(512, *clean.shape)
    shown = [*methods.items(), ("truth", clean)]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4.4))
    lo, hi = np.percentile(clean[:c, :c], [1, 99])
    for ax, (name, image) in zip(axes, shown, strict=True):
        ax.imshow(image[:c, :c], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(name)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def plot_spectra(path, methods: dict[str, np.ndarray], clean: np.ndarray,
                 pixel_size_angstrom: float | None) -> None:
    """Radially averaged Welch power spectra of every method and the truth, against resolution
    in Å (cycles/px where ``pixel_size_angstrom`` is None: not known)."""
    from cryostream.spectral import radial_average, welch_spectrum

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, image in [*methods.items(), ("truth", clean)]:
        side = min(512, 2 ** int(np.log2(min(image.shape))))
        f, pw = radial_average(welch_spectrum(image, side), pixel_size_angstrom or 1.0)
        ax.semilogy(f[2:], pw[2:], lw=0.8, label=name)
    resolution_axis(ax, f, pixel_size_angstrom is not None)
    ax.set_ylabel("power")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def mean_frc(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean of several micrographs' FRC curves, each ``(frequency, frc)`` (1/Å, or cycles/px
    where no pixel size is known), on one frequency axis: their own where they all share it;
    else from the highest of their lowest frequencies to the lowest of their highest (every
    curve has a value there: up to the coarsest pixel size's Nyquist), at the finest ring
    spacing among them, each curve interpolated onto it linearly. Micrographs of other pixel
    sizes (or shapes) have their rings at other frequencies: ring by ring, a 1 Å micrograph's
    ring at 0.25/Å would be averaged with a 2 Å one's at 0.125/Å.

    Returns
    -------
    frequency, frc : numpy.ndarray (ring,), float64
    """
    freqs = [np.asarray(f, np.float64) for f, _ in pairs]
    if all(f.shape == freqs[0].shape and np.array_equal(f, freqs[0]) for f in freqs):
        return freqs[0], np.mean([np.asarray(c, np.float64) for _, c in pairs], axis=0)
    lo, hi = max(f[0] for f in freqs), min(f[-1] for f in freqs)
    count = max(int(np.count_nonzero((f >= lo) & (f <= hi))) for f in freqs)
    axis = np.linspace(lo, hi, max(count, 2))
    return axis, np.mean([np.interp(axis, f, c) for f, (_, c) in zip(freqs, pairs, strict=True)],
                         axis=0)


def plot_frc(path, curves: dict[str, list[tuple[np.ndarray, np.ndarray]]],
             known: bool = True) -> None:
    """Each method's FRC with the truth, averaged over micrographs on one frequency axis
    (:func:`mean_frc`: micrographs of several pixel sizes by their frequency in 1/Å, not ring
    by ring), against resolution in Å (``known`` False: the frequencies are in cycles/px, no
    pixel size known)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    top = []
    for name, pairs in curves.items():
        frequency, mean = mean_frc(pairs)
        ax.plot(frequency, mean, lw=0.8, label=name)
        top.append(frequency[-1])
    resolution_axis(ax, np.array(top), known)
    ax.set_ylabel("FRC with the ground truth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
