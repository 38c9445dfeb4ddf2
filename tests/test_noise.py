"""The noise samplers against NumPy's and against the exact distributions (scipy.stats)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cryostream import NoiseConfig
from cryostream.noise import BLOCK, TABLE_MAX_MEAN, add_noise, poisson, standard_normal

N = 200_000


def _binned(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin of ``edges`` (the last bin open-ended)."""
    return np.bincount(np.searchsorted(edges, counts, side="right") - 1, minlength=len(edges))


def _bins(lam: float, n: int) -> np.ndarray:
    """Bin edges over the values 0, 1, 2, … with at least 20 expected draws per bin."""
    pmf = stats.poisson.pmf(np.arange(int(lam + 20 * np.sqrt(lam) + 30)), lam)
    edges, mass = [0], 0.0
    for k, p in enumerate(pmf):
        mass += p
        if mass * n >= 20 and k + 1 < len(pmf):
            edges.append(k + 1)
            mass = 0.0
    if len(edges) > 1 and (1 - stats.poisson.cdf(edges[-1] - 1, lam)) * n < 20:
        edges.pop()  # fold a thin last bin into the one before
    return np.array(edges)


def _expected(lam: float, edges: np.ndarray, n: int) -> np.ndarray:
    cdf = np.append(stats.poisson.cdf(edges[1:] - 1, lam), 1.0)
    return np.diff(np.concatenate([[0.0], cdf])) * n


# 0: a point mass; 0.3 and 0.124: Poisson(δ) alone; 0.125, 2.875, 5: grid means; 9.99, 30.06:
# off the grid; 63.9: the last table row; 64, 100, 1000: NumPy's sampler.
MEANS = [0.0, 0.124, 0.125, 0.3, 1.0, 2.875, 5.0, 9.99, 30.06, 63.9, 64.0, 100.0, 1000.0]


@pytest.mark.parametrize("lam", MEANS)
def test_poisson_matches_the_exact_distribution_and_numpy(lam):
    ours = poisson(np.full(N, lam), np.random.default_rng(1))
    theirs = np.random.default_rng(2).poisson(lam, N)
    assert ours.dtype == np.int64 and ours.shape == (N,)
    if lam == 0:
        assert not ours.any()
        return
    edges = _bins(lam, N)
    observed = _binned(ours, edges)
    # goodness of fit against scipy's pmf, and homogeneity with NumPy's draws
    assert stats.chisquare(observed, _expected(lam, edges, N)).pvalue > 1e-3
    table = np.stack([observed, _binned(theirs, edges)])
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # mean and variance within 4 standard errors of λ
    assert abs(ours.mean() - lam) < 4 * np.sqrt(lam / N)
    assert abs(ours.var() - lam) < 4 * np.sqrt((lam + 2 * lam**2) / N)


def test_poisson_of_many_draws_fits_at_small_means():
    """2 M draws each at the means of the reference plan: a sharper test of the tables."""
    n = 2_000_000
    for lam in (0.3, 5.0, 30.0):
        ours = poisson(np.full(n, lam, np.float32), np.random.default_rng(3))
        edges = _bins(lam, n)
        assert stats.chisquare(_binned(ours, edges), _expected(lam, edges, n)).pvalue > 1e-3


def test_poisson_of_mixed_means_matches_numpy():
    """Each pixel its own mean (float32, as preprocessing gives them): the counts per range of
    means have the same distribution as NumPy's on the same means."""
    means = np.random.default_rng(4).uniform(0, 70, 1_000_000).astype(np.float32)
    ours = poisson(means, np.random.default_rng(5))
    theirs = np.random.default_rng(6).poisson(means)
    for lo, hi in [(0, 0.5), (0.5, 3), (3, 10), (10, 30), (30, 64), (64, 70)]:
        inside = (means >= lo) & (means < hi)
        a, b = ours[inside], theirs[inside]
        edges = np.unique(np.append(0, np.quantile(b, np.linspace(0, 1, 16)).astype(np.int64)))
        table = np.stack([_binned(a, edges), _binned(b, edges)])
        assert stats.chi2_contingency(table[:, table.min(axis=0) > 0]).pvalue > 1e-3, (lo, hi)
        # E[X] = E[λ] and Var[X] = E[λ] + Var[λ] over the range
        mu = float(means[inside].astype(np.float64).mean())
        var = mu + float(means[inside].astype(np.float64).var())
        assert abs(a.mean() - mu) < 4 * np.sqrt(var / a.size)
        assert a.var() == pytest.approx(var, rel=0.02)


def test_poisson_is_exact_at_the_grid_edges():
    """Means just below and at multiples of 1/8 (where the table row changes)."""
    for lam in (np.nextafter(np.float32(3.0), np.float32(0)), np.float32(3.0),
                np.nextafter(np.float32(TABLE_MAX_MEAN), np.float32(0))):
        lam = float(lam)
        ours = poisson(np.full(N, lam, np.float32), np.random.default_rng(7))
        edges = _bins(lam, N)
        assert stats.chisquare(_binned(ours, edges), _expected(lam, edges, N)).pvalue > 1e-3


def test_poisson_is_deterministic_and_shape_free():
    means = np.random.default_rng(8).uniform(0, 30, (300, 257)).astype(np.float32)
    a = poisson(means, np.random.default_rng(9))
    b = poisson(means, np.random.default_rng(9))
    c = poisson(means.ravel(), np.random.default_rng(9)).reshape(means.shape)
    f = poisson(np.asfortranarray(means), np.random.default_rng(9))  # C order, whatever the layout
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, f)
    assert a.shape == means.shape
    assert poisson(np.zeros((0, 3)), np.random.default_rng(0)).shape == (0, 3)


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf])
def test_poisson_refuses_bad_means(bad):
    with pytest.raises(ValueError, match="finite and non-negative"):
        poisson(np.array([1.0, bad]), np.random.default_rng(0))


def test_standard_normal_matches_the_normal_distribution_and_numpy():
    n = 1_000_000
    ours = standard_normal(n, np.random.default_rng(10))
    theirs = np.random.default_rng(11).standard_normal(n, dtype=np.float32)
    assert ours.dtype == np.float32 and ours.shape == (n,)
    assert stats.kstest(ours, "norm").pvalue > 1e-3
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert abs(ours.mean()) < 4 / np.sqrt(n)
    assert abs(ours.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(stats.kurtosis(ours)) < 4 * np.sqrt(24 / n)
    for k in (2.0, 3.0, 4.0):  # two-sided tail frequencies
        p = 2 * stats.norm.sf(k)
        assert abs(np.mean(np.abs(ours) > k) - p) < 5 * np.sqrt(p / n)
    # the cosine and sine halves are independent normals
    half = n // 2
    assert abs(np.corrcoef(ours[:half], ours[half:])[0, 1]) < 4 / np.sqrt(half)
    assert abs(np.corrcoef(ours[:half] ** 2, ours[half:] ** 2)[0, 1]) < 4 / np.sqrt(half)


@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_standard_normal_sizes_and_determinism(size):
    a = standard_normal(size, np.random.default_rng(12))
    out = np.full(size, np.nan, np.float32)
    b = standard_normal(size, np.random.default_rng(12), out=out)
    assert a.shape == (size,) and b is out
    np.testing.assert_array_equal(a, b)
    # every element drawn (out= began as NaN, which fails any comparison), none beyond 6σ
    assert np.all(np.abs(a) < 6)
    if size >= 1000:
        assert abs(a.mean()) < 4 / np.sqrt(size) and abs(a.var() - 1) < 4 * np.sqrt(2 / size)


@pytest.mark.parametrize("model", ["gaussian", "poisson", "poisson-gaussian"])
def test_add_noise_is_deterministic_and_writes_into_out(model):
    """A noise cell's bytes depend on the generator's state and the target only: the same for
    a copy or an ``out`` array, for a target larger than one block, and in place."""
    noise = NoiseConfig(model=model, dose=10, sigma=0.05)
    target = np.random.default_rng(13).gamma(4, 0.25, (40, 2 * BLOCK // 40 + 3)).astype(np.float32)
    a = add_noise(target, noise, np.random.default_rng(14))
    out = np.empty_like(target)
    b = add_noise(target, noise, np.random.default_rng(14), out=out)
    inplace = target.copy()
    c = add_noise(inplace, noise, np.random.default_rng(14), out=inplace)
    assert b is out and c is inplace and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        add_noise(target, noise, np.random.default_rng(14), out=np.empty(target.shape))


def test_add_noise_poisson_gaussian_has_the_stated_distribution():
    """Poisson(dose · x) / dose + N(0, σ²), per pixel: the Poisson part is recovered exactly
    from a noise-free run and fits scipy's pmf; the Gaussian residual fits N(0, σ²)."""
    x = np.float32(0.83)
    target = np.full(N, x, np.float32)
    shot = add_noise(target, NoiseConfig(model="poisson", dose=10), np.random.default_rng(15))
    counts = np.rint(shot * 10).astype(np.int64)
    np.testing.assert_allclose(counts / np.float32(10), shot, rtol=0, atol=1e-6)
    lam = float(x * np.float32(10))
    edges = _bins(lam, N)
    assert stats.chisquare(_binned(counts, edges), _expected(lam, edges, N)).pvalue > 1e-3
    gauss = add_noise(target, NoiseConfig(model="gaussian", sigma=0.05), np.random.default_rng(16))
    assert stats.kstest((gauss - x) / 0.05, "norm").pvalue > 1e-3
