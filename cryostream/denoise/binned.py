"""The binned pass: the network's output on the micrograph binned by 2, brought back to full
size.

A U-Net sees a window of fixed size in pixels. On the micrograph binned by 2 it sees twice the
context, at a quarter of the noise power per pixel, and its output holds more of the structure
larger than about 30 Å (particles' outlines, the ice) than the full-size pass: on the general
model's held-out simulated micrographs, a truth-fitted mix with it raised the FRC at 0–0.03
cycles/px from 0.61 to 0.69 (T20S, 10 e/Å²; docs/research.md). A model's table of learned
weights (:mod:`cryostream.denoise.weights`) weighs it per band of frequency beside the gain's
linear response and the network's rest; the pass costs a quarter of a full one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["bin2", "upsample2", "binned_estimate"]


def bin2(image: np.ndarray) -> np.ndarray:
    """The mean of each 2×2 block of a 2-D ``image`` (float32); an odd last row or column is
    repeated first."""
    image = np.asarray(image, np.float32)
    ny, nx = image.shape
    if ny % 2 or nx % 2:
        image = np.pad(image, ((0, ny % 2), (0, nx % 2)), mode="edge")
    out = image[0::2, 0::2] + image[1::2, 0::2]
    out += image[0::2, 1::2]
    out += image[1::2, 1::2]
    out *= np.float32(0.25)
    return out


def upsample2(binned: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A :func:`bin2` image back at full size ``shape`` (float32): interpolated in Fourier
    space (its spectrum zero-padded, its Nyquist row and column dropped), each value at the
    centre of the 2×2 block it came from (a shift of half a full-size pixel)."""
    import scipy.fft

    binned = np.asarray(binned, np.float32)
    by, bx = binned.shape
    if shape[0] > 2 * by or shape[1] > 2 * bx:
        raise ValueError(f"upsample2: shape {shape} is larger than twice {binned.shape}")
    spectrum = scipy.fft.rfft2(binned - binned.mean(), workers=-1)
    ny, nx = 2 * by, 2 * bx
    pos, neg, cols = (by - 1) // 2 + 1, (by - 1) // 2, (bx - 1) // 2 + 1
    rows = np.r_[0:pos, by - neg:by]  # the binned spectrum's rows, its Nyquist row left out
    # block centres: half a full-size pixel on, a phase of −π·f along each axis (separable)
    phase_y = np.exp(-1j * np.pi * np.r_[0:pos, -neg:0] / ny).astype(np.complex64)
    phase_x = np.exp(-1j * np.pi * np.arange(cols) / nx).astype(np.complex64)
    full = np.zeros((ny, nx // 2 + 1), np.complex64)
    kept = spectrum[rows, :cols] * phase_y[:, None] * phase_x[None, :]
    full[:pos, :cols] = kept[:pos]
    full[ny - neg:, :cols] = kept[pos:]
    out = scipy.fft.irfft2(full, s=(ny, nx), workers=-1, overwrite_x=True)
    out *= np.float32(4)
    out += np.float32(binned.mean())
    return np.ascontiguousarray(out[: shape[0], : shape[1]], dtype=np.float32)


def binned_estimate(network: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                    ensemble: bool = False, percentile: float = 95.0) -> np.ndarray:
    """The ``network``'s output on ``image`` binned by 2 (:func:`bin2`), as one pass or the
    8-fold ensemble, at ``image``'s size (:func:`upsample2`), in its units. The binned image
    goes in over its own ``percentile`` (the run's normalising one), as a micrograph of that
    pixel size would."""
    from cryostream.denoise.corrections import dihedral_mean
    from cryostream.preprocess import percentile as sampled_percentile

    small = bin2(image)
    scale = np.float32(sampled_percentile(small, percentile))  # NumPy's, from a sample
    if not (np.isfinite(scale) and scale > 0):
        scale = np.float32(1)
    small = small / scale
    out = dihedral_mean(network, small) if ensemble else np.asarray(network(small), np.float32)
    return upsample2(out * scale, image.shape)
