"""The residual check's verdict (``evaluate --residual``): does the residual correlate with the
particle-scale image more than chance lets pure noise?

Pure noise's correlation is a prediction from the micrograph's measured noise spectrum
(:func:`pure_noise_correlation`), and by chance a residual that is only noise strays from it
two ways (:func:`pure_noise_spread`): the noise is one draw (the spread of a sample covariance
over the micrograph's pixels, Bartlett's formula, from the noise spectrum and the low-passed
micrograph's own spectrum), and the noise spectrum is itself an estimate (its spread over
separate estimates on a grid of blocks of the micrograph). A correlation more than
:data:`VERDICT_SD` of that spread above pure noise's is specimen in the residual
(:data:`SPECIMEN`); within it, :data:`NOISE_LIKE`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VERDICT_SD", "NOISE_LIKE", "SPECIMEN", "lowpass_gain", "pure_noise_correlation",
           "pure_noise_spread", "verdict_of"]

#: How many standard deviations of pure noise's correlation a residual's may stand above it
#: and still be read as noise: chance puts pure noise beyond it about once in 740 micrographs.
VERDICT_SD = 3.0
NOISE_LIKE = "noise-like"
SPECIMEN = "specimen in the residual"

#: Blocks per side (at most) of the grid whose separate noise estimates give the estimate's spread.
BLOCKS = 4


def lowpass_gain(tile: int, sigma: float) -> np.ndarray:
    """The Gaussian low-pass of ``sigma`` pixels on a centred ``tile`` × ``tile`` spectrum."""
    from cryostream.spectral import frequencies

    freq = np.hypot(*frequencies((tile, tile), "centred"))
    return np.exp(-2 * np.pi**2 * sigma**2 * freq**2)


def pure_noise_correlation(psd: np.ndarray, sigma: float, lowpass_std: float) -> float:
    """The correlation of noise of the centred spectrum ``psd`` (variance per bin) with the
    micrograph low-passed by a Gaussian of ``sigma`` pixels, whose spread is ``lowpass_std``:
    the noise is part of the low-passed micrograph too, so ``cov(n, G∗n)`` is the mean of
    ``G·psd`` over the spectrum."""
    gain = lowpass_gain(psd.shape[0], sigma)
    return float((gain * psd).mean() / np.sqrt(psd.mean()) / lowpass_std)


def pure_noise_spread(image: np.ndarray, lowpass: np.ndarray, noise, sigma: float,
                      pixel_size_angstrom: float) -> dict:
    """How far pure noise's correlation with ``lowpass`` (``image`` low-passed by a Gaussian of
    ``sigma`` pixels) strays by chance, one standard deviation each way:

    - ``sampling``: the residual's noise is one draw of the spectrum of ``noise`` (a
      :class:`~cryostream.matched.NoiseEstimate` of ``image``). Its sample covariance with the
      low-passed micrograph varies by ``(mean(Pn · PL) + mean(G² · Pn²)) / N`` over ``N``
      pixels (Bartlett), ``PL`` the low-passed micrograph's periodogram, ``Pn`` the noise
      spectrum, the second term the noise's share of the low-passed micrograph.
    - ``noise_estimate``: the spread of pure noise's correlation over separate noise estimates
      on a grid of up to :data:`BLOCKS` × :data:`BLOCKS` blocks, each holding a whole tile,
      scaled to the number of tiles the whole micrograph's estimate reads; 0 where no two
      blocks hold a tile (that estimate reads every tile of the micrograph).

    ``sd`` is the two together (added in quadrature). Checked against simulated micrographs
    whose noise is known: the noise's own correlation less the prediction, in these ``sd``,
    spread by 1.0 (1024² and 2048², ten and eight micrographs)."""
    import scipy.fft

    from cryostream.matched import WELCH_TILES, estimate_noise
    from cryostream.spectral import frequencies, rfft_weight, tile_starts

    psd, (ny, nx) = noise.psd, image.shape
    tile, size = psd.shape[0], image.size
    centred = lowpass - lowpass.mean(dtype=np.float64)
    periodogram = np.abs(scipy.fft.rfft2(centred.astype(np.float32), workers=-1)) ** 2 / size
    fy, fx = frequencies((ny, nx), "rfft")
    rows = (np.rint(fy * tile).astype(int) + tile // 2) % tile  # each frequency's nearest bin
    cols = (np.rint(fx * tile).astype(int) + tile // 2) % tile
    paired = float((rfft_weight((ny, nx)) * psd[rows, cols] * periodogram).sum(dtype=np.float64))
    own = float((lowpass_gain(tile, sigma) ** 2 * psd.astype(np.float64) ** 2).mean())
    spread_of = np.sqrt(psd.mean(dtype=np.float64)) * centred.std(dtype=np.float64)
    sampling = float(np.sqrt((paired / size + own) / size) / spread_of)

    k = min(BLOCKS, ny // tile, nx // tile)
    estimate = 0.0
    if k >= 2:
        by, bx = ny // k, nx // k
        pures = [pure_noise_correlation(estimate_noise(image[i * by:(i + 1) * by,
                                                             j * bx:(j + 1) * bx],
                                                       pixel_size_angstrom, tile=tile).psd,
                                        sigma, float(lowpass.std()))
                 for i in range(k) for j in range(k)]

        def tiles(h, w):
            return len(tile_starts(h, tile, WELCH_TILES)) * len(tile_starts(w, tile, WELCH_TILES))

        estimate = float(np.std(pures, ddof=1) * np.sqrt(tiles(by, bx) / tiles(ny, nx)))
    return {"sampling": sampling, "noise_estimate": estimate, "sd": float(np.hypot(sampling, estimate))}


def verdict_of(check: dict) -> str:
    """:data:`SPECIMEN` where the residual's correlation (``check`` as
    :func:`~cryostream.evaluate.numbers.method_noise` gives it) stands more than
    :data:`VERDICT_SD` standard deviations of pure noise's above it, else :data:`NOISE_LIKE`."""
    return SPECIMEN if check["sd_above_pure_noise"] > VERDICT_SD else NOISE_LIKE
