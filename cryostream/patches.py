"""Patch-grid arithmetic: where square patches start along an axis, for both edge policies.

A grid of ``patch_size`` patches at ``stride`` along an axis of ``length`` pixels starts at
``0, stride, 2·stride, …`` while a whole patch fits (``edge="drop"``). With ``edge="cover"``
one more patch is added, shifted back so it ends exactly at the image edge, whenever the last
regular patch leaves pixels unseen. For 7676 × 7420 pixels, patch 1024, stride 512 this gives
13 × 13 = 169 patches with ``drop`` and 14 × 14 = 196 with ``cover``.
"""

from __future__ import annotations

import numpy as np

from cryostream.errors import ConfigError

__all__ = ["EDGE_POLICIES", "patch_origins", "patch_grid_shape", "uncovered_pixels", "patch_to_fit",
           "dihedral"]

EDGE_POLICIES = ("cover", "drop")


def _check(length: int, patch_size: int, stride: int, edge: str) -> None:
    if patch_size < 1:
        raise ConfigError(f"patch_size={patch_size}: must be a positive number of pixels")
    if stride < 1:
        raise ConfigError(f"stride={stride}: must be a positive number of pixels")
    if edge not in EDGE_POLICIES:
        raise ConfigError(f"edge={edge!r}: must be one of {', '.join(EDGE_POLICIES)}")
    if length < patch_size:
        raise ConfigError(
            f"an axis of {length} px is smaller than patch_size={patch_size}; "
            "use a smaller --patch or larger micrographs"
        )


def patch_origins(length: int, patch_size: int, stride: int, edge: str = "cover") -> np.ndarray:
    """First pixel of every patch along one axis.

    Parameters
    ----------
    length : int
        Axis length in pixels.
    patch_size, stride : int
        Patch edge and step in pixels.
    edge : {"cover", "drop"}
        ``"drop"`` keeps only regular steps; ``"cover"`` adds a last patch flush with the edge
        when the regular steps leave pixels unseen.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Increasing origins; every origin + patch_size <= length.
    """
    _check(length, patch_size, stride, edge)
    origins = np.arange(0, length - patch_size + 1, stride, dtype=np.int64)
    if edge == "cover" and origins[-1] + patch_size < length:
        origins = np.append(origins, length - patch_size)
    return origins


def patch_grid_shape(
    shape: tuple[int, int], patch_size: int, stride: int, edge: str = "cover"
) -> tuple[int, int]:
    """Number of patch rows and columns for an image of ``shape`` = (ny, nx)."""
    ny, nx = shape
    return (
        len(patch_origins(ny, patch_size, stride, edge)),
        len(patch_origins(nx, patch_size, stride, edge)),
    )


def uncovered_pixels(length: int, patch_size: int, stride: int, edge: str = "cover") -> int:
    """Pixels at the end of an axis that no patch sees (0 for ``cover``)."""
    origins = patch_origins(length, patch_size, stride, edge)
    return int(length - (origins[-1] + patch_size))


def patch_to_fit(shape: tuple[int, int], patch_size: int, multiple: int) -> int:
    """The patch side ``fit`` trains on for micrographs of ``shape`` (rows, columns):
    ``patch_size`` on micrographs at least twice as large, halved until two fit along the
    shorter side on smaller ones, never under ``multiple`` (what the networks need).

    Raises
    ------
    ConfigError
        If the micrographs are smaller than one patch of ``multiple`` px.

    Examples
    --------
    >>> patch_to_fit((7676, 7420), 1024, 32), patch_to_fit((512, 512), 1024, 32)
    (1024, 256)
    """
    patch, side = patch_size, min(shape)
    while patch > multiple and 2 * patch > side:
        patch = max(multiple, patch // 2 // multiple * multiple)  # a side the networks take
    if patch > side:
        raise ConfigError(f"micrographs of {shape[0]} × {shape[1]} px: too small to train on "
                          f"(at least {multiple} px a side); give larger micrographs")
    return patch


def _square_symmetry(a, k: int, axes: tuple[int, int]):
    """``a`` turned a quarter ``k % 4`` times in the plane of ``axes``, then mirrored if ``k >= 4``."""
    import jax.numpy as jnp

    turned = jnp.rot90(a, k % 4, axes=axes)
    return jnp.flip(turned, axis=axes[1]) if k >= 4 else turned


def dihedral(key, *batches):
    """The batches (B, P, P, ...) under one random symmetry of the square, the same for all.

    ``key`` draws one of the eight: a quarter turn ``k = 0…3`` times, mirrored or not. JAX
    arrays in and out (it runs inside a jit-compiled step); the patches must be square.
    """
    import jax

    def view(k: int):
        return lambda arrays: tuple(_square_symmetry(a, k, (1, 2)) for a in arrays)

    if any(b.shape[1] != b.shape[2] for b in batches):
        raise ConfigError(f"augment: patches of {[b.shape[1:3] for b in batches]} px are not "
                          "square; the symmetries of the square need square patches")
    index = jax.random.randint(key, (), 0, 8)
    return jax.lax.switch(index, [view(k) for k in range(8)], tuple(batches))


def moved_noise(key, inp, target):
    """``target`` plus the noise of ``inp`` (``inp − target``), moved in each patch by its own
    random circular shift and symmetry of the square (:class:`TrainConfig` ``fresh_noise``).

    JAX arrays (B, P, P, ...) in and out, inside a jit-compiled step; the patches must be
    square. Each patch's noise keeps its values (so its histogram) and, for noise that looks
    the same in every direction, its spectrum; its place against the structure is new.
    """
    import jax
    import jax.numpy as jnp

    if inp.shape[1] != inp.shape[2]:
        raise ConfigError(f"fresh_noise: patches of {inp.shape[1:3]} px are not square; moving "
                          "the noise by the symmetries of the square needs square patches")
    shift_key, view_key = jax.random.split(key)
    shifts = jax.random.randint(shift_key, (inp.shape[0], 2), 0, inp.shape[1])
    views = jax.random.randint(view_key, (inp.shape[0],), 0, 8)

    symmetries = [lambda a, k=k: _square_symmetry(a, k, (0, 1)) for k in range(8)]

    def one(noise, shift, index):
        rolled = jnp.roll(noise, (shift[0], shift[1]), axis=(0, 1))
        return jax.lax.switch(index, symmetries, rolled)

    return target + jax.vmap(one)(inp - target, shifts, views)
