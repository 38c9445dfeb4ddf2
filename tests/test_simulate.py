"""The EMPIAR-10025-like simulator: determinism, physics, files."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import starfile

import cryostream
from cryostream import SimulateConfig
from cryostream.simulate.micrograph import _place_centres, simulate_micrograph
from cryostream.simulate.spectrum import ctf_1d, power_spectrum, radial_average
from cryostream.simulate.t20s import load_t20s


def test_t20s_model_is_the_whole_complex():
    xyz, z = load_t20s()
    assert xyz.shape == (45892, 3) and z.shape == (45892,)
    extent = xyz.max(0) - xyz.min(0)
    # the barrel is ≈150 Å long and ≈110–130 Å wide
    assert 140 < extent.max() < 180 and extent.min() > 100
    assert set(np.unique(z)) == {6, 7, 8, 16}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = cryostream.simulate(tmp_path / "a", 2, shape=(256, 320), seed=5)
    b = cryostream.simulate(tmp_path / "b", 2, shape=(256, 320), seed=5)
    c = cryostream.simulate(tmp_path / "c", 2, shape=(256, 320), seed=6)
    for x, y, z in zip(a.micrographs + a.truths, b.micrographs + b.truths,
                       c.micrographs + c.truths, strict=True):
        assert x.read_bytes() == y.read_bytes()
        assert x.read_bytes() != z.read_bytes()


def test_dose_and_shot_noise():
    cfg = SimulateConfig(shape=(1024, 1024), seed=2)
    sim = simulate_micrograph(cfg, 0)
    dose_px = 50 * 0.6575**2  # ≈ 21.6 e⁻ per pixel
    assert sim.truth.mean() == pytest.approx(dose_px, rel=0.01)
    assert sim.noisy.mean() == pytest.approx(dose_px, rel=0.01)
    residual = sim.noisy - sim.truth
    assert residual.var() == pytest.approx(sim.truth.mean(), rel=0.02)  # Poisson
    assert np.array_equal(sim.noisy, np.round(sim.noisy))  # whole electrons
    # faint particles: per-pixel signal variance well below the shot noise
    assert sim.truth.var() / residual.var() < 0.2


def test_ice_component_is_the_gaussian_texture_and_changes_nothing_else():
    cfg = SimulateConfig(shape=(512, 512), seed=3, particles_per_micrograph=0)
    plain = simulate_micrograph(cfg, 1)
    parts = simulate_micrograph(cfg, 1, components=True)
    assert plain.ice is None
    assert np.array_equal(plain.noisy, parts.noisy) and np.array_equal(plain.truth, parts.truth)
    # without particles the truth is the background plus the texture: what is left is smooth
    rest = parts.truth - parts.ice
    assert np.abs(np.diff(rest, axis=1)).max() < 0.05 * np.abs(np.diff(parts.ice, axis=1)).max()
    k = parts.ice / parts.ice.std()
    assert abs(float(np.mean(k**4)) - 3) < 0.2  # Gaussian: excess kurtosis ≈ 0
    with_particles = simulate_micrograph(SimulateConfig(shape=(512, 512), seed=3), 1,
                                         components=True)
    assert np.var(with_particles.truth - with_particles.ice) > np.var(rest)


def test_about_fifty_non_overlapping_particles_at_full_size():
    rng = np.random.default_rng(0)
    _, _ = load_t20s()
    centres = _place_centres(rng, (7676, 7420), 50, 280.0)
    assert len(centres) == 50
    pts = np.array(centres)
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(50, 1)].min() >= 280


def test_thon_rings_follow_the_ctf():
    cfg = SimulateConfig(shape=(2048, 2048), seed=1)
    sim = simulate_micrograph(cfg, 0)
    defocus = (sim.defocus_u_angstrom + sim.defocus_v_angstrom) / 2

    def ring_correlation(image, df):
        f, p = radial_average(power_spectrum(image), cfg.pixel_size_angstrom)
        band = (f > 0.04) & (f < 0.3)
        trend = np.exp(np.polyval(np.polyfit(f[band], np.log(p[band]), 3), f[band]))
        return np.corrcoef(p[band] / trend, ctf_1d(f[band], df) ** 2)[0, 1]

    assert ring_correlation(sim.truth, defocus) > 0.5
    assert ring_correlation(sim.noisy, defocus) > 0.2
    assert abs(ring_correlation(sim.noisy, defocus + 2500)) < ring_correlation(sim.noisy, defocus)


def test_files_headers_and_star(tmp_path):
    sim = cryostream.simulate(tmp_path, 2, shape=(2048, 2048), seed=0)
    assert [p.name for p in sim.micrographs] == ["sim_0000.mrc", "sim_0001.mrc"]
    for path in sim.micrographs + sim.truths:
        with mrcfile.open(path) as m:
            assert m.data.shape == (2048, 2048) and m.data.dtype == np.float32
            assert float(m.voxel_size.x) == pytest.approx(0.6575)
    mics = starfile.read(sim.micrographs_star)
    assert list(mics["rlnMicrographName"]) == ["micrographs/sim_0000.mrc", "micrographs/sim_0001.mrc"]
    assert mics["rlnDefocusU"].between(14700 - 150, 19900 + 150).all()
    assert (mics["rlnDefocusU"] >= mics["rlnDefocusV"]).all()
    parts = starfile.read(sim.particles_star)
    assert len(parts) == 2 * 4  # 50 per full-size micrograph, scaled to the area
    assert parts["rlnCoordinateX"].between(0, 2048).all()
    meta = json.loads((tmp_path / "simulate.json").read_text())
    assert meta["kind"] == "SimulateConfig" and meta["config"]["shape"] == [2048, 2048]


def test_refuses_to_overwrite(tmp_path):
    cryostream.simulate(tmp_path, 1, shape=(128, 128))
    with pytest.raises(cryostream.StoreError, match="pass overwrite=True"):
        cryostream.simulate(tmp_path, 1, shape=(128, 128))
    cryostream.simulate(tmp_path, 1, shape=(128, 128), overwrite=True)


def test_bad_count():
    with pytest.raises(cryostream.ConfigError, match="count=0"):
        cryostream.simulate("/nonexistent", 0)
