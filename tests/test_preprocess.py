"""Lazy preprocessing kernels against their NumPy oracle, on awkward chunkings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryostream import NoiseConfig, PrepareConfig, open_micrographs
from cryostream.io.stack import micrograph_uid
from cryostream.noise import add_noise, noise_cell_rng
from cryostream.patches import patch_origins
from cryostream.preprocess import band_layout, extract_patches, percentile
from tests.conftest import write_mrc


@settings(max_examples=200, deadline=None)
@given(
    ny=st.integers(16, 400),
    patch=st.integers(4, 128),
    stride=st.integers(1, 140),
    edge=st.sampled_from(["cover", "drop"]),
)
def test_every_patch_is_owned_once_and_visible(ny, patch, stride, edge):
    if ny < patch:
        return
    layout = band_layout((ny, ny), patch, stride, edge)
    owned = [o for rows in layout.row_origins for o in rows]
    assert owned == [int(o) for o in patch_origins(ny, patch, stride, edge)]
    assert sum(layout.heights) == ny
    # dask never rechunks: every chunk is at least as deep as the overlap
    assert min(layout.heights) >= max(layout.before, layout.after)
    n = len(layout.heights)
    for band, rows in enumerate(layout.row_origins):
        top = layout.top(band)
        bottom = layout.starts[band] + layout.heights[band] + (layout.after if band < n - 1 else 0)
        for o in rows:
            assert top <= o and o + patch <= min(bottom, ny)


def _oracle(images, config, uids):
    """Normalise each micrograph, noise it once per cell of `stride` rows, then cut patches."""
    p, s = config.patch_size, config.stride
    out = []
    for m, image in enumerate(images):
        target = image * np.float32(1 / np.percentile(image, config.percentile))
        noisy = np.concatenate([
            add_noise(target[y : y + s], config.noise, noise_cell_rng(config.seed, uids[m], y // s, 0))
            for y in range(0, image.shape[0], s)
        ])
        rows = patch_origins(image.shape[0], p, s, config.edge)
        cols = patch_origins(image.shape[1], p, s, config.edge)
        mic = np.empty((len(rows), len(cols), 2, p, p), np.float32)
        for r, y in enumerate(rows):
            for c, x in enumerate(cols):
                mic[r, c, 0] = noisy[y : y + p, x : x + p]
                mic[r, c, 1] = target[y : y + p, x : x + p]
        out.append(mic)
    return np.stack(out)


@pytest.mark.parametrize("chunks", [7, 64, 101, -1])
@pytest.mark.parametrize("edge", ["cover", "drop"])
def test_extract_patches_matches_numpy(tmp_path, rng, chunks, edge):
    images = [rng.gamma(5, 2, size=(150, 133)).astype(np.float32) for _ in range(2)]
    paths = [write_mrc(tmp_path / f"m{i}.mrc", im) for i, im in enumerate(images)]
    stack = open_micrographs(paths, chunks=chunks)
    config = PrepareConfig(patch_size=48, stride=20, edge=edge,
                           noise=NoiseConfig(model="poisson-gaussian", dose=7, sigma=0.1))
    uids = tuple(micrograph_uid(n) for n in stack.micrograph.values)
    p95 = stack.quantile(0.95, dim=("y", "x")).values
    lazy = extract_patches(stack.data, config, p95, uids)
    np.testing.assert_array_equal(lazy.compute(), _oracle(images, config, uids))


@pytest.mark.parametrize("model", ["gaussian", "poisson", "poisson-gaussian"])
def test_noise_models_have_the_stated_statistics(model):
    target = np.full((256, 256), 2.0, np.float32)
    noise = NoiseConfig(model=model, sigma=0.3, dose=5)
    noisy = add_noise(target, noise, np.random.default_rng(0))
    var = {"gaussian": 0.09, "poisson": 2 / 5, "poisson-gaussian": 2 / 5 + 0.09}[model]
    assert noisy.dtype == np.float32
    assert noisy.mean() == pytest.approx(2.0, abs=0.02)
    assert noisy.var() == pytest.approx(var, rel=0.05)


def _percentile_cases(rng):
    n = 300_001
    yield "gamma", rng.gamma(5, 2, n).astype(np.float32)
    yield "counts (ties)", rng.poisson(20, n).astype(np.float32)  # EPU-like integer pixels
    yield "few values", rng.integers(0, 3, n).astype(np.float32)
    yield "sorted", np.sort(rng.normal(size=n).astype(np.float32))
    yield "reverse sorted", np.sort(rng.normal(size=n).astype(np.float32))[::-1]
    # every 64th pixel (the sample) is large: the bracket misses and np.percentile decides
    periodic = rng.normal(size=n).astype(np.float32)
    periodic[::64] += 100
    yield "periodic", periodic
    yield "image", rng.gamma(5, 2, (601, 733)).astype(np.float32)
    yield "small", rng.normal(size=1000).astype(np.float32)
    yield "float64", rng.normal(size=n)


@pytest.mark.parametrize("q", [0.0, 0.01, 5.0, 50.0, 95.0, 99.9, 100.0])
def test_percentile_is_numpys_bit_for_bit(q):
    for name, image in _percentile_cases(np.random.default_rng(20)):
        expected = float(np.percentile(image, q))
        assert percentile(image, q) == expected, name
        assert np.float32(percentile(image, q)) == np.float32(expected), name


def test_percentile_of_a_full_size_micrograph_shape_is_numpys():
    image = np.random.default_rng(21).gamma(5, 2, (7676, 741)).astype(np.float32)
    for q in (95.0, 95, 37.5):
        assert percentile(image, q) == float(np.percentile(image, float(q)))
