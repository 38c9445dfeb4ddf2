"""The spectral layer, each function against a computation written here by hand."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from cryostream.spectral import (
    astigmatic_defocus,
    contrast_transfer,
    electron_wavelength,
    frequencies,
    merge_rings,
    radial_average,
    radial_mean,
    rfft_weight,
    ring_frequencies,
    ring_index,
    ring_regression,
    welch_spectrum,
    wiener_gain,
)

SHAPES = [(6, 8), (7, 5), (9, 9), (8, 6), (10, 10), (16, 12)]


def _signed(i: int, n: int) -> int:
    """Frequency index of FFT bin ``i`` of ``n``: 0, 1, …, then the negative ones."""
    return i if i < (n + 1) // 2 else i - n


def _index_at(layout: str, ny: int, nx: int, i: int, j: int) -> tuple[int, int]:
    """Frequency indices ``(ky, kx)`` (cycles per image) of element ``[i, j]`` of a spectrum."""
    if layout == "centred":
        return i - ny // 2, j - nx // 2
    return _signed(i, ny), (j if layout == "rfft" else _signed(j, nx))


def _rounds_to(radius2: Fraction, ring: int) -> bool:
    """Whether the exact radius ``√radius2`` rounds to ``ring`` (either side of an exact tie)."""
    low, high = Fraction(2 * ring - 1, 2), Fraction(2 * ring + 1, 2)
    return (ring == 0 or low * low <= radius2) and radius2 <= high * high


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["rfft", "fft", "centred"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ring_index_is_the_rounded_radius_in_units_of_the_shorter_side(shape, layout, dtype):
    ny, nx = shape
    m = min(shape)
    ring = ring_index(shape, layout, dtype=dtype)
    assert ring.dtype == np.int64 and ring.shape == (ny, nx // 2 + 1 if layout == "rfft" else nx)
    for i in range(ring.shape[0]):
        for j in range(ring.shape[1]):
            ky, kx = _index_at(layout, ny, nx, i, j)
            radius2 = Fraction(ky * m, ny) ** 2 + Fraction(kx * m, nx) ** 2  # exact
            assert _rounds_to(radius2, int(ring[i, j])), (i, j, radius2, ring[i, j])


def test_ring_index_layouts_agree_and_ties_round_half_to_even():
    ring = ring_index((8, 8), "fft")
    np.testing.assert_array_equal(np.fft.fftshift(ring), ring_index((8, 8), "centred"))
    np.testing.assert_array_equal(ring[:, :5], ring_index((8, 8), "rfft"))
    # (64, 128): along x the radius is j / 2 exactly; 0.5 → 0, 1.5 → 2, 2.5 → 2 (half to even)
    assert list(ring_index((64, 128), "rfft")[0, :6]) == [0, 0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="layout='full'"):
        ring_index((8, 8), "full")


def test_frequencies_in_cycles_per_angstrom():
    fy, fx = frequencies((4, 6), "rfft", pixel_size_angstrom=2.0, dtype=np.float32)
    assert fy.dtype == np.float32 and fy.shape == (4, 1) and fx.shape == (1, 4)
    np.testing.assert_allclose(fy[:, 0], [0, 1 / 8, -1 / 4, -1 / 8])
    np.testing.assert_allclose(fx[0], [0, 1 / 12, 2 / 12, 3 / 12])
    fy, fx = frequencies((4, 5), "centred")
    np.testing.assert_allclose(fy[:, 0], [-2 / 4, -1 / 4, 0, 1 / 4])
    np.testing.assert_allclose(fx[0], [-2 / 5, -1 / 5, 0, 1 / 5, 2 / 5])
    np.testing.assert_allclose(ring_frequencies((100, 80), 3, 0.5), [0, 1 / 40, 2 / 40])


def test_radial_mean_against_a_loop():
    rng = np.random.default_rng(0)
    ring = rng.integers(0, 6, (12, 7))
    ring[ring == 3] = 4  # ring 3 empty
    values = rng.normal(size=(12, 7)).astype(np.float32)
    expected = [float(np.mean(values[ring == r], dtype=np.float64)) if (ring == r).any() else 0.0
                for r in range(6)]
    np.testing.assert_allclose(radial_mean(values, ring), expected, rtol=1e-12)
    np.testing.assert_allclose(radial_mean(values, ring, 3), expected[:3], rtol=1e-12)
    np.testing.assert_allclose(radial_mean(values, ring, 8), expected + [0.0, 0.0], rtol=1e-12)


def test_radial_average_of_a_centred_spectrum():
    n, pixel = 32, 0.5
    spectrum = np.random.default_rng(6).random((n, n))
    sums, counts = [0.0] * 16, [0] * 16
    for i in range(n):
        for j in range(n):
            r = round(math.hypot(i - n // 2, j - n // 2))  # zero frequency at [n/2, n/2]
            if r < 16:
                sums[r] += spectrum[i, j]
                counts[r] += 1
    f, mean = radial_average(spectrum, pixel)
    assert f.shape == mean.shape == (16,)
    np.testing.assert_allclose(f, np.arange(16) / (n * pixel))
    np.testing.assert_allclose(mean, np.array(sums) / np.array(counts), rtol=1e-12)


@pytest.mark.parametrize("shape", [(6, 8), (7, 9), (5, 4)])
def test_rfft_weights_sum_to_the_full_spectrum(shape):
    image = np.random.default_rng(1).normal(size=shape)
    half = np.abs(np.fft.rfft2(image)) ** 2
    full = np.abs(np.fft.fft2(image)) ** 2
    assert float((rfft_weight(shape) * half).sum()) == pytest.approx(full.sum(), rel=1e-12)
    nx = shape[1]
    for j in range(nx // 2 + 1):
        expected = 1.0 if j == 0 or 2 * j == nx else 2.0
        assert np.all(rfft_weight(shape)[:, j] == expected)


@pytest.mark.parametrize("shape, least", [((32, 32), 40), ((30, 44), 100), ((17, 23), 1)])
def test_merged_rings_hold_enough_coefficients_and_no_more(shape, least):
    merged = merge_rings(shape, least)
    ring = ring_index(shape, "rfft", dtype=np.float32)
    np.testing.assert_array_equal(merged.ring, ring)
    np.testing.assert_array_equal(merged.bins, merged.merged[ring])
    np.testing.assert_array_equal(merged.weight, rfft_weight(shape))
    ring_r, merged_r, weight_r = merged  # a tuple, for callers that unpack it
    assert ring_r is merged.ring and merged_r is merged.merged and weight_r is merged.weight
    assert merged.merged[0] == 0 and np.all(np.diff(merged.merged) >= 0)
    assert set(np.unique(merged.merged)) == set(range(merged.merged.max() + 1))
    sizes = np.bincount(ring.ravel())
    for b in range(1, merged.merged.max() + 1):
        rings = np.flatnonzero(merged.merged == b)
        if b < merged.merged.max():  # the last bin may fall short
            assert sizes[rings].sum() >= least
        assert sizes[rings[:-1]].sum() < least  # without its last ring it would


def _periodograms(image, tile, starts_y, starts_x, window):
    """Hand-written Welch: float64 periodograms of the mean-removed tiles, full fft2 layout."""
    w = np.outer(np.hanning(tile), np.hanning(tile)) if window else np.ones((tile, tile))
    out = []
    for y in starts_y:
        for x in starts_x:
            t = image[y : y + tile, x : x + tile].astype(np.float64)
            out.append((t.mean(), np.abs(np.fft.fft2((t - t.mean()) * w)) ** 2))
    return out, float((w**2).sum())


@pytest.mark.parametrize("window", [False, True])
def test_welch_is_the_mean_periodogram_of_the_tiles(window):
    rng = np.random.default_rng(2)
    image = (5 + rng.normal(size=(70, 130))).astype(np.float32)
    tiles, energy = _periodograms(image, 32, [0, 32], [0, 32, 64, 96], window)
    full = np.mean([p for _, p in tiles], axis=0)
    scale = full.max()
    for layout, expected in (("fft", full), ("centred", np.fft.fftshift(full)),
                             ("rfft", full[:, :17])):
        got = welch_spectrum(image, 32, window=window, layout=layout)
        assert got.dtype == np.float64 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5 * scale)
    got = welch_spectrum(image, 32, window=window, layout="fft", normalise=True)
    np.testing.assert_allclose(got, full / energy, atol=1e-5 * scale / energy)


def test_welch_spreads_at_most_most_tiles_and_reports_each():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(130, 130)).astype(np.float32) + np.arange(130, dtype=np.float32)
    tiles, _ = _periodograms(image, 32, [0, 96], [0, 96], True)  # starts 0..96: first and last
    spectrum, seen = welch_spectrum(image, 32, most=2, layout="fft",
                                    per_tile=lambda mean, p: (mean, p.sum()))
    expected = np.mean([p for _, p in tiles], axis=0)
    np.testing.assert_allclose(spectrum, expected, atol=1e-5 * expected.max())
    assert len(seen) == 4
    for (mean, total), (true_mean, p) in zip(seen, tiles, strict=True):
        assert mean == pytest.approx(true_mean, rel=1e-12)
        assert total == pytest.approx(p.sum(), rel=1e-5)
    with pytest.raises(ValueError, match="at least one 256 × 256 tile"):
        welch_spectrum(image, 256)


def test_welch_reads_the_variance_of_white_noise():
    image = np.random.default_rng(4).normal(0, 3, (512, 512)).astype(np.float32)
    spectrum = welch_spectrum(image, 64, normalise=True)
    assert spectrum.mean() == pytest.approx(9.0, rel=0.02)


def test_electron_wavelength_at_the_usual_voltages():
    # relativistic wavelengths (e.g. Williams & Carter, Transmission Electron Microscopy, table 1.1)
    for kv, angstrom in ((100, 0.03701), (200, 0.02508), (300, 0.01969)):
        assert electron_wavelength(kv) == pytest.approx(angstrom, rel=2e-4)


def test_ctf_zeros_where_the_phase_says():
    """Zeros at ``χ = nπ − atan(Q / √(1 − Q²))``: ``k²`` from the quadratic in ``k²``."""
    v = 300e3
    lam = 12.2643 / math.sqrt(v * (1 + 0.97845e-6 * v))  # written out, not imported
    cs, df = 2.7e7, 15000.0
    for q in (0.0, 0.1):
        offset = math.atan2(q, math.sqrt(1 - q * q))
        for n in range(1, 6):
            phase = n * math.pi - offset  # χ = π λ Δf k² − ½ π Cs λ³ k⁴ = phase
            a, b, c = 0.5 * math.pi * cs * lam**3, -math.pi * lam * df, phase
            k2 = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
            assert abs(contrast_transfer(k2, df, amplitude_contrast=q)) < 1e-9
            before = contrast_transfer(k2 * 0.99, df, amplitude_contrast=q)
            after = contrast_transfer(k2 * 1.01, df, amplitude_contrast=q)
            assert before * after < 0  # a sign change, not a touch
    assert float(contrast_transfer(0.0, df)) == pytest.approx(-0.1)  # −Q: underfocus is dark
    k2 = np.linspace(0, 0.25, 1000, dtype=np.float32)
    c = contrast_transfer(k2, df, voltage_kv=200, cs_mm=1.4, amplitude_contrast=0.07)
    assert c.dtype == np.float32 and np.all(np.abs(c) <= 1)


def test_astigmatic_defocus_along_and_across_the_angle():
    theta = np.deg2rad(np.array([30.0, 120.0, 75.0]))
    u, v = 16000.0, 15000.0
    got = astigmatic_defocus(theta, (u + v) / 2, u - v, 30.0)
    np.testing.assert_allclose(got, [u, v, (u + v) / 2], rtol=1e-12)
    around = astigmatic_defocus(np.linspace(0, np.pi, 360, endpoint=False), 15500.0, 1000.0, 10.0)
    assert around.mean() == pytest.approx(15500.0)


def test_wiener_gain_values():
    power = np.array([4.0, 4.0, 1.0, 2.0, 0.0, 5.0])
    noise = np.array([1.0, 0.0, 1.0, 3.0, 1.0, 1.0])
    np.testing.assert_allclose(wiener_gain(power, noise), [0.75, 1.0, 0.0, 0.0, 0.0, 0.8])
    assert wiener_gain(10.0, 2.5) == pytest.approx(0.75)


def test_ring_regression_against_sums_over_the_full_spectrum():
    rng = np.random.default_rng(5)
    shape = (24, 30)
    y, e = rng.normal(size=shape), rng.normal(size=shape)
    merged = merge_rings(shape, 60)
    gain, power = ring_regression(np.fft.rfft2(e), np.fft.rfft2(y), merged.bins, merged.weight)
    # the same sums over the full fft2: each coefficient's bin is that of its ring
    fy, fx = np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :]
    full_ring = np.rint(np.sqrt(fy**2 + fx**2) * min(shape)).astype(int)
    full_bins = merged.merged[full_ring]
    Y, E = np.fft.fft2(y), np.fft.fft2(e)
    for b in range(int(merged.merged.max()) + 1):
        inside = full_bins == b
        yy = float((np.abs(Y[inside]) ** 2).sum())
        assert power[b] == pytest.approx(yy, rel=1e-5)
        assert gain[b] == pytest.approx(float((E[inside] * np.conj(Y[inside])).real.sum()) / yy,
                                        rel=1e-4, abs=1e-6)
    third = ring_regression(0.3 * np.fft.rfft2(y), np.fft.rfft2(y), merged.bins, merged.weight)[0]
    np.testing.assert_allclose(third[1:], 0.3, rtol=1e-5)


def test_the_kept_grids_are_shared_read_only_and_can_be_let_go():
    """ring_index and merge_rings keep their grids (the denoising steps ask for one grid about
    ten times per micrograph): the same read-only arrays for the same grid, an error on a write
    instead of a grid changed under every later caller, and new ones after forget_grids."""
    from cryostream.spectral import forget_grids, merge_rings, ring_index

    ring = ring_index((64, 48), "rfft", dtype=np.float32)
    merged = merge_rings((64, 48))
    assert ring_index((64, 48), "rfft", dtype=np.float32) is ring and merged.ring is ring
    assert merge_rings((64, 48)) is merged
    for array in (ring, merged.merged, merged.weight):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    forget_grids()
    again = ring_index((64, 48), "rfft", dtype=np.float32)
    assert again is not ring and np.array_equal(again, ring)
