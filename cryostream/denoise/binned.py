"""The binned pass: the network's output on the micrograph binned by 2, brought back to full
size.

A U-Net sees a window of fixed size in pixels. On the micrograph binned by 2 it sees twice the
context, at a quarter of the noise power per pixel, and its output holds more of the structure
larger than about 30 Å (particles' outlines, the ice) than the full-size pass: on the general
model's held-out simulated micrographs, a truth-fitted mix with it raised the FRC at 0–0.03
cycles/px from 0.61 to 0.69 (T20S, 10 e/Å²; docs/research.md). A model's table of learned
weights (:mod:`cryostream.denoise.weights`) weighs it per band of frequency beside the gain's
linear response and the network's rest; the binned image has a quarter of the pixels (its
windows, with their halos, about a third of a full pass's).

The 2×2 blocks can start on any of four pixels (:data:`OFFSETS`). Each start sums the noise
into other blocks, so the network's errors on the four binned images differ while the
specimen they show is the same, half a full-size pixel apart: their mean, each brought back
to its own place, holds more of the specimen than one of them (on a held-out T20S micrograph
at 10 e/Å², with the 8-fold ensemble, a truth-fitted mix's FRC at 0.03–0.06 cycles/px rose
from 0.199 to 0.208). Held out with a table fitted for it, the default gained far less (0.002
there, PSNR −0.014 to +0.006 dB) for about 1.7 times the network's work (2.5 times its time
on an H200), so the shipped table uses one start; a table says which it was fitted with
(:attr:`~cryostream.denoise.weights.LearnedWeights.binned_offsets`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["OFFSETS", "bin2", "binned_shape", "upsample2", "binned_estimate"]

#: Where the 2×2 blocks start (row, column): the binned pass at 1 offset uses the first, at
#: 4 all of them.
OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))


def binned_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The shape :func:`bin2` gives an image of ``shape``: ``⌈n / 2⌉`` along each axis."""
    return tuple((n + 1) // 2 for n in shape)


def bin2(image: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The mean of each 2×2 block of a 2-D ``image`` (float32), the blocks starting at
    ``offset`` (row, column: 0 or 1 each), ``⌈n / 2⌉`` of them along each axis: past the
    image's end the first rows and columns come again (wrapped around: for an even size as
    :func:`upsample2`'s Fourier interpolation takes the image to be; an odd size's period
    there is one pixel longer)."""
    if tuple(offset) not in OFFSETS:
        raise ValueError(f"bin2: offset {offset!r} must be one of {OFFSETS}")
    image = np.asarray(image, np.float32)
    ny, nx = image.shape
    if offset != (0, 0) or ny % 2 or nx % 2:
        rows = (offset[0] + np.arange(2 * ((ny + 1) // 2))) % ny
        cols = (offset[1] + np.arange(2 * ((nx + 1) // 2))) % nx
        image = image[np.ix_(rows, cols)]
    out = image[0::2, 0::2] + image[1::2, 0::2]
    out += image[0::2, 1::2]
    out += image[1::2, 1::2]
    out *= np.float32(0.25)
    return out


def upsample2(binned, shape: tuple[int, int], offsets=None) -> np.ndarray:
    """A :func:`bin2` image back at full size ``shape`` (float32): interpolated in Fourier
    space (its spectrum zero-padded, its Nyquist row and column dropped), each value at the
    centre of the 2×2 block it came from (half a full-size pixel on from the block's first
    pixel). With ``offsets``, ``binned`` is a sequence of images, each binned from the start
    of the same place in ``offsets``: the result is their mean, each at its own blocks'
    centres (one inverse transform for all)."""
    import scipy.fft

    if offsets is None:
        images, offsets = [np.asarray(binned, np.float32)], [(0, 0)]
    else:
        images, offsets = [np.asarray(b, np.float32) for b in binned], list(offsets)
    by, bx = images[0].shape
    if shape[0] > 2 * by or shape[1] > 2 * bx:
        raise ValueError(f"upsample2: shape {shape} is larger than twice {images[0].shape}")
    if len(offsets) != len(images) or any(b.shape != (by, bx) for b in images):
        raise ValueError("upsample2: one offset per binned image, all of one shape")
    ny, nx = 2 * by, 2 * bx
    pos, neg, cols = (by - 1) // 2 + 1, (by - 1) // 2, (bx - 1) // 2 + 1
    rows = np.r_[0:pos, by - neg:by]  # the binned spectrum's rows, its Nyquist row left out
    ky, kx = np.r_[0:pos, -neg:0], np.arange(cols)
    full = np.zeros((ny, nx // 2 + 1), np.complex64)
    for image, (dy, dx) in zip(images, offsets, strict=True):
        spectrum = scipy.fft.rfft2(image - image.mean(), workers=-1)
        # block centres: 0.5 + offset full-size pixels on, a phase along each axis (separable)
        phase_y = np.exp(-2j * np.pi * (0.5 + dy) * ky / ny).astype(np.complex64)
        phase_x = np.exp(-2j * np.pi * (0.5 + dx) * kx / nx).astype(np.complex64)
        kept = spectrum[rows, :cols] * phase_y[:, None] * phase_x[None, :]
        full[:pos, :cols] += kept[:pos]
        full[ny - neg:, :cols] += kept[pos:]
    out = scipy.fft.irfft2(full, s=(ny, nx), workers=-1, overwrite_x=True)
    out *= np.float32(4 / len(images))
    out += np.float32(np.mean([image.mean() for image in images]))
    return np.ascontiguousarray(out[: shape[0], : shape[1]], dtype=np.float32)


def binned_estimate(network: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                    ensemble: bool = False, percentile: float = 95.0,
                    offsets: int = 1) -> np.ndarray:
    """The ``network``'s output on ``image`` binned by 2 (:func:`bin2`), as one pass or the
    8-fold ensemble, at ``image``'s size (:func:`upsample2`), in its units; ``offsets``: 1,
    or 4 for the mean over the blocks' four starts (:data:`OFFSETS`; each as one pass or the
    ensemble). The binned image goes in over its own ``percentile`` (the run's normalising
    one; the first offset's for all), as a micrograph of that pixel size would."""
    from cryostream.denoise.corrections import dihedral_mean
    from cryostream.preprocess import percentile as sampled_percentile

    if offsets not in (1, len(OFFSETS)):
        raise ValueError(f"binned_estimate: offsets={offsets!r} must be 1 or {len(OFFSETS)}")
    starts = OFFSETS[:offsets]
    outs, scale = [], None
    for offset in starts:
        small = bin2(image, offset)
        if scale is None:
            scale = np.float32(sampled_percentile(small, percentile))  # NumPy's, from a sample
            if not (np.isfinite(scale) and scale > 0):
                scale = np.float32(1)
        small = small / scale
        out = dihedral_mean(network, small) if ensemble else np.asarray(network(small), np.float32)
        outs.append(out * scale)
    return upsample2(outs, image.shape, starts)
