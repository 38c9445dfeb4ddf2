"""Shared fixtures: tiny micrographs the tests make themselves."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest


def write_mrc(path: Path, data: np.ndarray, pixel_size: float = 0.66) -> Path:
    """Write ``data`` with mrcfile (its dtype picks the mode) and return the path."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = pixel_size
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def small_mrcs(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Three float32 micrographs of 96 × 80 px with distinct contents."""
    folder = tmp_path / "mics"
    folder.mkdir()
    return [
        write_mrc(folder / f"m{i}.mrc", rng.normal(i, 1, size=(96, 80)).astype(np.float32))
        for i in range(3)
    ]
