"""The EMPIAR-10025-like simulator: determinism, physics, files."""

from __future__ import annotations

import hashlib
import json
import re

import mrcfile
import numpy as np
import pytest
import starfile

import cryostream
from cryostream import SimulateConfig
from cryostream.simulate.micrograph import place_centres, simulate_micrograph
from cryostream.simulate.t20s import load_t20s
from cryostream.spectral import contrast_transfer, radial_average, welch_spectrum


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


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


#: Per case, the bytes on the two x86-64 machines that recorded them (NumPy 2.4): NumPy picks
#: its float sin, cos and exp by the processor, and the last bits of the truth differed
#: between the first machine and an AMD EPYC with AVX2 only. Any change of the simulator's
#: arithmetic gives bytes outside both.
BYTES = {
    (1.0, False): {"first": ("6162628dd8121ea25fd59d1dd2b429cb57fb4ace42b42536962b6d7e12fab267",
                             "3acdaa63aa00223e0d7b648801f500b5bd0a7f7411c1d4986a0f4ad7b85178a7"),
                   "epyc": ("6162628dd8121ea25fd59d1dd2b429cb57fb4ace42b42536962b6d7e12fab267",
                            "690356ff2678f27ef085bd020a630022c321990aaf6bebe160bc0c4fc505f536")},
    (0.2, True): {"first": ("748a6e0843688ed8a58392cb1bf050c526e717760a0525c3c5b809c52a288b98",
                            "3acdaa63aa00223e0d7b648801f500b5bd0a7f7411c1d4986a0f4ad7b85178a7",
                            "4a80c45fe51a1416446e3d764a036990e1ebd63a812b93a57433caa686f5e2ee"),
                  "epyc": ("e7aa8c16009518a4d34a935978381622ab797fd2a981163e2db867f03bf139e8",
                           "690356ff2678f27ef085bd020a630022c321990aaf6bebe160bc0c4fc505f536",
                           "7b636bcb1c6bb4962f8719b06d93083516bf50caecc2546a5efca84ce5272bfa")},
}


@pytest.mark.parametrize("detector, components", list(BYTES))
def test_micrographs_keep_their_bytes(detector, components):
    """The bytes recorded before the spectral layer moved out of the simulator (issue 15):
    noisy, truth (and the ice texture), astigmatic; the same on every machine of one kind of
    vector unit (a change of the simulator's arithmetic shows here)."""
    cfg = SimulateConfig(shape=(192, 160), seed=11, particles_per_micrograph=2000,
                         detector_nps_nyquist=detector)
    sim = simulate_micrograph(cfg, 3, components=components)
    assert (sim.defocus_u_angstrom, sim.defocus_v_angstrom, sim.astigmatism_angle_deg) == (
        19842.941048430897, 19588.24427036938, 0.26501260411191163)
    arrays = (sim.noisy, sim.truth) + ((sim.ice,) if components else ())
    assert tuple(_sha256(a) for a in arrays) in BYTES[detector, components].values()


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
    centres = place_centres(rng, (7676, 7420), 50, 280.0)
    assert len(centres) == 50
    pts = np.array(centres)
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(50, 1)].min() >= 280


@pytest.mark.slow
def test_thon_rings_follow_the_ctf():
    cfg = SimulateConfig(shape=(2048, 2048), seed=1)
    sim = simulate_micrograph(cfg, 0)
    defocus = (sim.defocus_u_angstrom + sim.defocus_v_angstrom) / 2

    def ring_correlation(image, df):
        f, p = radial_average(welch_spectrum(image), cfg.pixel_size_angstrom)
        band = (f > 0.04) & (f < 0.3)
        trend = np.exp(np.polyval(np.polyfit(f[band], np.log(p[band]), 3), f[band]))
        return np.corrcoef(p[band] / trend, contrast_transfer(f[band] ** 2, df) ** 2)[0, 1]

    assert ring_correlation(sim.truth, defocus) > 0.5
    assert ring_correlation(sim.noisy, defocus) > 0.2
    assert abs(ring_correlation(sim.noisy, defocus + 2500)) < ring_correlation(sim.noisy, defocus)


@pytest.mark.slow
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
        cryostream.simulate(tmp_path, 1, shape=(128, 128), seed=1)
    cryostream.simulate(tmp_path, 1, shape=(128, 128), seed=1, overwrite=True)


def test_the_same_simulation_again_is_kept_and_another_is_refused_saying_what_differs(
        tmp_path, capsys):
    """A notebook cell that simulates, run again: it was refused ("already holds a simulated
    set; pass overwrite=True"), though prepare and denoise keep finished work. The same count
    and config (the same seed: the same bytes) into a folder holding that finished set gives
    it back at once, nothing written; other arguments are refused naming what differs; a file
    of the set gone is named; --overwrite simulates again."""
    from tests.faults_support import assert_user_error, cli

    config = SimulateConfig(shape=(64, 96), even_odd=True, seed=3)
    first = cryostream.simulate(tmp_path / "sim", 2, config=config)
    before = _tree(first.root)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "sim").rglob("*")}
    again = cryostream.simulate(tmp_path / "sim", 2, config=config)
    assert again.kept and not first.kept and again.seconds == 0.0
    assert (again.micrographs, again.truths, again.evens, again.odds) == (
        first.micrographs, first.truths, first.evens, first.odds)
    assert again.micrographs_star == first.micrographs_star
    assert _tree(first.root) == before
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sim").rglob("*")} == stamps
    with pytest.raises(cryostream.StoreError) as info:
        cryostream.simulate(tmp_path / "sim", 3, config=SimulateConfig(shape=(64, 64),
                                                                       even_odd=True, seed=3))
    assert str(info.value) == (
        f"{tmp_path / 'sim'} already holds a simulated set of other arguments (count 2 there, "
        "3 asked for; shape 64 96 there, 64 64 asked for); pass overwrite=True (--overwrite) "
        "to replace it, or choose another folder")
    assert _tree(first.root) == before
    # the command line: the same command kept (status 0, said so), another refused
    sim = tmp_path / "cli"
    command = ["simulate", sim, "--count", "1", "--shape", "64", "64", "--quiet"]
    assert cli(capsys, *command).rc == 0
    made = _tree(sim)
    kept = cli(capsys, *command)
    assert kept.rc == 0 and kept.out.strip() == (
        f"{sim} already holds this simulation: 1 micrograph of 64 × 64 px with these options "
        "and seed; kept as it is (--overwrite simulates it again)")
    line = assert_user_error(cli(capsys, *command, "--dose", "20"), str(sim))
    assert line.endswith("(dose_e_per_angstrom2 50.0 there, 20.0 asked for); pass --overwrite "
                         "to replace it, or choose another folder"), line
    assert _tree(sim) == made
    (sim / "truth" / "sim_0000.mrc").unlink()
    line = assert_user_error(cli(capsys, *command), "sim_0000.mrc")
    assert line == (f"cryostream simulate: error: {sim} holds this simulation, but "
                    f"{sim}/truth/sim_0000.mrc is gone; pass --overwrite to simulate the set "
                    "again, or choose another folder")
    assert cli(capsys, *command, "--overwrite").rc == 0
    assert _tree(sim, star_time=False) == _tree_of(made)  # the same bytes again


def test_the_same_simulation_again_is_not_kept_where_a_file_of_it_was_changed(tmp_path, capsys):
    """A micrograph of a finished set written over afterwards (another tool's output, an
    edit): the same call said "already holds this simulation ... kept as it is" and gave the
    changed file back as the simulation's. A file newer than simulate.json is named instead;
    nothing is written; --overwrite makes the set again."""
    import os

    from tests.faults_support import assert_user_error, cli

    sim = tmp_path / "sim"
    command = ["simulate", sim, "--count", "2", "--shape", "64", "64", "--quiet"]
    assert cli(capsys, *command).rc == 0
    changed = sim / "micrographs" / "sim_0001.mrc"
    with mrcfile.open(changed, "r+") as mrc:
        mrc.data[:] = 0
    finished = (sim / "simulate.json").stat().st_mtime_ns
    os.utime(changed, ns=(finished + 10**9, finished + 10**9))  # a coarse clock: a later second
    made = _tree(sim)
    line = assert_user_error(cli(capsys, *command), "sim_0001.mrc")
    assert line == (f"cryostream simulate: error: {sim} holds this simulation, but {changed} was "
                    "changed after it was finished (or the set was copied without its times); "
                    "pass --overwrite to simulate the set again, or choose another folder")
    assert _tree(sim) == made
    assert cli(capsys, *command, "--overwrite").rc == 0
    assert cli(capsys, *command).rc == 0  # made again: kept
    with mrcfile.open(changed) as mrc:
        assert mrc.data.std() > 0


def test_a_set_another_cryostream_version_made_is_not_kept_as_this_one_s(tmp_path, capsys):
    """The same command again into a set that another cryostream version simulated (its
    simulate.json says so; another simulator may make other images from the same arguments)
    kept it and called it this simulation. It is refused, naming the folder, both versions and
    the fix, nothing written; a simulate.json that records no version counts as another
    version's; --overwrite makes the set with this version, which the same command keeps."""
    from tests.faults_support import assert_user_error, cli

    sim = tmp_path / "sim"
    command = ["simulate", sim, "--count", "1", "--shape", "64", "64", "--quiet"]
    assert cli(capsys, *command).rc == 0
    record = json.loads((sim / "simulate.json").read_text())
    assert record["cryostream_version"] == cryostream.__version__
    (sim / "simulate.json").write_text(json.dumps({**record, "cryostream_version": "0.0.1"}))
    made = _tree(sim)
    with pytest.raises(cryostream.StoreError) as info:
        cryostream.simulate(sim, 1, shape=(64, 64))
    assert str(info.value) == (
        f"{sim} holds a simulated set of these arguments made by cryostream 0.0.1, not by this "
        f"version ({cryostream.__version__}), whose simulator may make other images; pass "
        "overwrite=True (--overwrite) to simulate it again with this version, or choose "
        "another folder")
    with pytest.raises(cryostream.StoreError) as info:  # other arguments: the version too
        cryostream.simulate(sim, 2, shape=(64, 64))
    assert str(info.value).endswith(
        f"(count 1 there, 2 asked for; cryostream version 0.0.1 there, "
        f"{cryostream.__version__} here); pass overwrite=True (--overwrite) to replace it, or "
        "choose another folder")
    assert _tree(sim) == made
    del record["cryostream_version"]  # not recorded: not known to be this version's
    (sim / "simulate.json").write_text(json.dumps(record))
    made = _tree(sim)
    line = assert_user_error(cli(capsys, *command), str(sim))
    assert line == (
        f"cryostream simulate: error: {sim} holds a simulated set of these arguments made by a "
        f"cryostream version its simulate.json does not record, not by this version "
        f"({cryostream.__version__}), whose simulator may make other images; pass --overwrite "
        "to simulate it again with this version, or choose another folder")
    assert _tree(sim) == made
    assert cli(capsys, *command, "--overwrite").rc == 0
    assert json.loads((sim / "simulate.json").read_text())["cryostream_version"] == (
        cryostream.__version__)
    assert cryostream.simulate(sim, 1, shape=(64, 64)).kept


def test_a_simulation_again_leaves_none_of_the_earlier_files_and_never_mixes_in_others(tmp_path):
    """--overwrite with fewer micrographs keeps none of the earlier ones, which ``prepare
    folder/micrographs`` would take; a folder holding micrographs of the user's own, or a set's
    files without its simulate.json, is refused, untouched."""
    from cryostream.config import SimulateConfig

    cryostream.simulate(tmp_path / "s", 3, config=SimulateConfig(shape=(64, 64), even_odd=True))
    made = cryostream.simulate(tmp_path / "s", 2, shape=(96, 96), overwrite=True)
    for folder in ("micrographs", "truth"):
        assert sorted(p.name for p in (tmp_path / "s" / folder).iterdir()) == [
            "sim_0000.mrc", "sim_0001.mrc"]
    assert not (tmp_path / "s" / "even").exists()  # this set has no halves: the folder gone
    assert len(made.micrographs) == 2
    # no note says simulate made these: refused (its micrographs are labelled by simulate, but
    # the STAR file beside them is no file of a stopped set: simulate writes it last)
    (tmp_path / "s" / "simulate.json").unlink()
    with pytest.raises(cryostream.StoreError, match=r"/micrographs.star: already there"):
        cryostream.simulate(tmp_path / "s", 1, shape=(96, 96), overwrite=True)
    own = tmp_path / "own" / "micrographs"
    own.mkdir(parents=True)
    (own / "my_real.mrc").write_bytes(b"mine")
    with pytest.raises(cryostream.StoreError, match=r"holds files simulate did not make "
                       r"\(micrographs/my_real.mrc\); simulate into another folder"):
        cryostream.simulate(tmp_path / "own", 1, shape=(64, 64), overwrite=True)
    assert [p.name for p in own.iterdir()] == ["my_real.mrc"]
    assert not (tmp_path / "own" / "truth").exists()


def test_bad_count():
    with pytest.raises(cryostream.ConfigError, match="count=0"):
        cryostream.simulate("/nonexistent", 0)


# -- other particle shapes and ice thickness (issue 17: the general model's spread) -----------

#: The shapes' radii (Å, centre to the farthest atom) and masses (kDa) as designed.
SHAPES = {"t20s": (92, 690), "globular": (44, 138), "filament": (231, 864), "shell": (138, 3480)}


def _projection_config(particle: str, **kw) -> SimulateConfig:
    """Micrographs whose truth is the particles' projection itself: nearly pure amplitude
    contrast, almost no defocus and no spherical aberration, no ice."""
    return SimulateConfig(shape=(512, 512), pixel_size_angstrom=2.0, particle=particle,
                          particles_per_micrograph=1000, defocus_um=(0.01, 0.01),
                          astigmatism_angstrom=0.0, cs_mm=0.0, amplitude_contrast=0.99,
                          ice_contrast=0.0, ice_thickness_relative=0.0, seed=4, **kw)


def test_the_shapes_are_their_size_and_mass():
    from cryostream.config.simulate import PARTICLE_SHAPES, PARTICLES
    from cryostream.simulate.particles import particle_model

    assert PARTICLE_SHAPES == tuple(SHAPES) and PARTICLES == (*SHAPES, "mixed")
    xyz_t20s, z_t20s = load_t20s()
    for name, (radius, kda) in SHAPES.items():
        model = particle_model(name)
        r = np.sqrt((model.xyz_angstrom.astype(np.float64) ** 2).sum(1))
        assert r.max() == pytest.approx(radius, rel=0.02), name
        assert model.dalton / 1e3 == pytest.approx(kda, rel=0.02), name
        # protein-like: the T20S model's mean atomic number, 15 Da per (pseudo-)atom
        assert model.weight.mean() == pytest.approx(z_t20s.mean(), rel=0.01)
        assert model.dalton / len(model.weight) == pytest.approx(15.0, rel=0.01)
        assert not model.xyz_angstrom.flags.writeable
    extent = np.ptp(particle_model("filament").xyz_angstrom, axis=0)
    assert sorted(extent) == pytest.approx([89, 89, 461], abs=3)  # long and thin
    shell = np.sqrt((particle_model("shell").xyz_angstrom.astype(np.float64) ** 2).sum(1))
    assert shell.min() > 95  # hollow: subunits of 18 Å radius on a sphere of 120 Å
    with pytest.raises(ValueError, match="particle shape 'virus'"):
        particle_model("virus")


@pytest.mark.parametrize("particle", [*SHAPES, "mixed"])
def test_each_shape_appears_at_its_size(particle):
    sim = simulate_micrograph(_projection_config(particle), 0)
    kinds = {p.shape for p in sim.particles}
    assert len(kinds) >= 3 if particle == "mixed" else kinds == {particle}
    assert len(sim.particles) >= 4
    deviation = np.abs(sim.truth / np.median(sim.truth) - 1)
    support = deviation > 0.05 * deviation.max()
    yy, xx = np.mgrid[:512, :512]
    covered = np.zeros_like(support)
    for p in sim.particles:
        radius_px = SHAPES[p.shape][0] / 2.0
        d = np.hypot(xx - p.x, yy - p.y)
        own = support & (d <= radius_px + 3)
        assert own.sum() > 50  # it appears
        # as large as designed: some of it reaches out to its radius (a filament seen along
        # its axis would not, hence the filament's lower bound)
        assert d[own].max() > (0.7 if p.shape == "filament" else 0.8) * radius_px
        covered |= d <= radius_px + 3
    # and no larger: nothing outside the particles' discs (the FFT wraps a few edge pixels)
    assert (support & ~covered).sum() < 0.005 * support.sum()


def test_new_shapes_same_seed_same_bytes():
    def digest(**kw):
        sim = simulate_micrograph(SimulateConfig(shape=(256, 320), pixel_size_angstrom=2.0,
                                                 particles_per_micrograph=3000, **kw), 2)
        return _sha256(sim.noisy), _sha256(sim.truth), tuple(p.shape for p in sim.particles)

    mixed = digest(particle="mixed", seed=9)
    assert digest(particle="mixed", seed=9) == mixed
    assert digest(particle="mixed", seed=10)[:2] != mixed[:2]
    assert digest(particle="shell", seed=9)[:2] != mixed[:2]
    assert len(set(mixed[2])) >= 2


def test_thicker_ice_has_a_stronger_texture_and_the_same_rest():
    base = dict(shape=(256, 256), seed=3, particles_per_micrograph=400)
    thin = simulate_micrograph(SimulateConfig(**base), 1, components=True)
    thick = simulate_micrograph(SimulateConfig(**base, ice_thickness_relative=4.0), 1,
                                components=True)
    # the texture's draws are the same numbers scaled by √4; nothing else changes
    np.testing.assert_allclose(thick.ice, 2 * thin.ice, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(thick.truth - thick.ice, thin.truth - thin.ice, atol=1e-3)
    assert thick.particles == thin.particles


def test_particle_and_ice_thickness_are_validated():
    with pytest.raises(cryostream.ConfigError,
                       match="particle='virus': must be one of t20s, globular, filament, shell, "
                             "mixed"):
        SimulateConfig(particle="virus")
    with pytest.raises(cryostream.ConfigError, match="ice_thickness_relative=-1"):
        SimulateConfig(ice_thickness_relative=-1)
    assert SimulateConfig(ice_thickness_relative=2).ice_thickness_relative == 2.0
    assert isinstance(SimulateConfig(ice_thickness_relative=2).ice_thickness_relative, float)


def test_place_particles_keeps_sizes_apart_largest_first():
    from cryostream.simulate.particles import place_particles

    radii = [10.0, 50.0, 20.0, 30.0]
    placed = place_particles(np.random.default_rng(0), (400, 400), radii)
    assert [i for _, _, i in placed] == [1, 3, 2, 0]
    for a, (xa, ya, ia) in enumerate(placed):
        assert radii[ia] / 2 <= xa <= 400 - radii[ia] / 2
        for xb, yb, ib in placed[a + 1:]:
            assert np.hypot(xa - xb, ya - yb) >= radii[ia] + radii[ib]
    assert place_particles(np.random.default_rng(0), (400, 400), [1000.0]) == []


def test_star_records_each_particles_shape(tmp_path):
    mixed = SimulateConfig(shape=(512, 512), particle="mixed", particles_per_micrograph=2000,
                           pixel_size_angstrom=2.0, seed=1)
    sim = cryostream.simulate(tmp_path / "mixed", 1, config=mixed)
    parts = starfile.read(sim.particles_star)
    expected = [1 + ("t20s", "globular", "filament", "shell").index(p.shape)
                for p in simulate_micrograph(mixed, 0).particles]
    assert list(parts["rlnClassNumber"]) == expected and len(set(expected)) >= 2
    default = cryostream.simulate(tmp_path / "default", 1, shape=(256, 256))
    assert "rlnClassNumber" not in starfile.read(default.particles_star).columns


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_simulation_stopped_short_is_refused_by_prepare_until_simulate_finishes_it(tmp_path,
                                                                                    capsys):
    """simulate stopped by Ctrl-C left a folder of the micrographs made so far, which `prepare`
    (and `fit`) took, as a folder, a glob or the micrographs' names, for a set of that many: a
    store of part of the set, without a word. Its simulate.unfinished (written first, removed
    once simulate.json is written last) now makes them refuse it in one line naming the set and
    how much of it was written, and saying to run the same simulate command again; that command
    makes the set whole (without --overwrite), and prepare takes it."""
    from tests.faults_support import assert_user_error, cli, simulate_stopped

    sim = tmp_path / "sim"
    command = simulate_stopped(sim)
    assert (sim / "simulate.unfinished").is_file() and not (sim / "simulate.json").exists()
    written = sorted((sim / "micrographs").glob("sim_*.mrc"))
    store = tmp_path / "data.h5"
    for given in ([sim / "micrographs"], [sim / "micrographs" / "*.mrc"], written[:2]):
        line = assert_user_error(cli(capsys, "prepare", *given, "-o", store, "--patch", "32"))
        assert line == (
            f"cryostream prepare: error: {sim}: cryostream simulate did not finish this set "
            f"({len(written)} of 500 micrographs written, no simulate.json; simulate.unfinished "
            "says so), so it is only part of the set; run the same cryostream simulate command "
            "again, which simulates the whole set into it (the same micrographs again for the "
            "same seed), then give it again")
        assert not store.exists() and not list(tmp_path.glob("*.h5*"))
    fit = cli(capsys, "fit", sim / "micrographs", "-o", tmp_path / "run", "--budget", "2steps")
    assert assert_user_error(fit).endswith(line.split(": error: ", 1)[1])  # before any note
    assert not (tmp_path / "run").exists()
    assert cli(capsys, *command).rc == 0  # the same command again: whole, no --overwrite
    assert not (sim / "simulate.unfinished").exists() and (sim / "simulate.json").is_file()
    assert len(list((sim / "micrographs").glob("sim_*.mrc"))) == 500
    result = cli(capsys, "prepare", sim / "micrographs", "-o", store, "--patch", "32", "--quiet")
    assert result.rc == 0, result.describe()


def test_sets_without_the_note_are_taken_as_they_are(tmp_path, capsys):
    """Only a set simulate marked unfinished is refused: one an earlier version wrote (its
    simulate.json, no simulate.unfinished), its micrographs copied without simulate.json, and
    a folder of one's own named like a set's are prepared as before."""
    import shutil

    from tests.faults_support import cli

    made = cryostream.simulate(tmp_path / "old", 2, shape=(64, 64))
    assert not (made.root / "simulate.unfinished").exists()
    shutil.copytree(made.root / "micrographs", tmp_path / "copied" / "micrographs")
    own = tmp_path / "own" / "micrographs"
    own.mkdir(parents=True)
    for path in made.micrographs:
        shutil.copy(path, own / f"mine_{path.name}")
    for i, given in enumerate((made.root / "micrographs", tmp_path / "copied" / "micrographs", own)):
        result = cli(capsys, "prepare", given, "-o", tmp_path / f"s{i}.h5", "--patch", "32",
                     "--quiet")
        assert result.rc == 0, result.describe()


def _tree_of(tree: dict) -> dict:
    """``tree`` (:func:`_tree`'s) with its STAR files' first line (their time) left out."""
    return {k: v.split(b"\n", 1)[1] if k.endswith(".star") else v for k, v in tree.items()}


def _tree(root, *, star_time: bool = True) -> dict:
    """Every file under ``root`` (hidden ones too) with its bytes; without ``star_time``, a
    STAR file's first line (starfile's note of the time it was written) left out."""
    from pathlib import Path

    def content(path: Path) -> bytes:
        data = path.read_bytes()
        return data if star_time or path.suffix != ".star" else data.split(b"\n", 1)[1]

    return {str(p.relative_to(root)): content(p) for p in sorted(Path(root).rglob("*"))
            if p.is_file()}


def test_a_folder_of_ones_own_star_file_and_micrograph_is_refused_unchanged(tmp_path, capsys):
    """`simulate proj --count 1 --shape 512 512` into a folder holding a scientist's own
    micrographs.star and micrographs/sim_0000.mrc (a real micrograph, no simulate.json) replaced
    both, status 0. Now it stops before writing anything, in one line naming the first file it
    would replace and the fix, status 2, with --overwrite too; the folder byte for byte as it
    was. Each other file simulate writes is refused alike."""
    from tests.faults_support import assert_user_error, cli

    proj = tmp_path / "proj"
    (proj / "micrographs").mkdir(parents=True)
    with mrcfile.new(proj / "micrographs" / "sim_0000.mrc") as mrc:
        mrc.set_data(np.random.default_rng(0).normal(size=(96, 80)).astype(np.float32))
        mrc.voxel_size = 1.06
    starfile.write({"micrographs": __import__("pandas").DataFrame(
        {"rlnMicrographName": ["micrographs/sim_0000.mrc"], "rlnDefocusU": [12000.0]})},
        proj / "micrographs.star")
    before = _tree(proj)
    for extra in ([], ["--overwrite"]):
        line = assert_user_error(cli(capsys, "simulate", proj, "--count", "1", "--shape", "512",
                                     "512", "--quiet", *extra))
        assert line == (
            f"cryostream simulate: error: {proj}/micrographs/sim_0000.mrc: already there, and "
            "not written by a cryostream simulate that this one could finish (no "
            f"simulate.unfinished or simulate.json in {proj}); simulate into another folder, or "
            "move the files simulate writes (micrographs/, truth/, even/, odd/, "
            f"micrographs.star, particles.star, simulate.json) out of {proj} first")
        assert _tree(proj) == before
        assert sorted(p.name for p in proj.iterdir()) == ["micrographs", "micrographs.star"]
    (proj / "micrographs" / "sim_0000.mrc").unlink()
    (proj / "micrographs").rmdir()
    for name in ("micrographs.star", "particles.star", "simulate.unfinished",
                 "truth/sim_0000.mrc", "even/sim_0000_EVN.mrc"):
        folder = tmp_path / name.replace("/", "_")
        (folder / name).parent.mkdir(parents=True)
        (folder / name).write_text("mine\n")
        line = assert_user_error(cli(capsys, "simulate", folder, "--count", "1", "--shape", "64",
                                     "64", "--even-odd", "--quiet"))
        # (a simulate.unfinished that is no note of simulate's is one cut short: named so)
        assert f"error: {folder}/{name}: " + ("the note of a cryostream simulate that did not "
                                              "finish this set, damaged" if name ==
                                              "simulate.unfinished" else "already there") in line
        assert _tree(folder) == {name: b"mine\n"}
        assert not any(p.is_dir() for p in folder.iterdir() if p.name != name.split("/")[0])
    assert cli(capsys, "simulate", tmp_path / "new", "--count", "1", "--shape", "64", "64",
               "--quiet").rc == 0


def test_a_stopped_simulation_is_made_whole_only_by_the_same_request(tmp_path, capsys):
    """A set simulate left unfinished is made whole by the same command again (no
    --overwrite); another count or config (another set, whose micrographs would be mixed in or
    removed) is refused before anything is written, naming its simulate.unfinished and the fix,
    unless --overwrite."""
    from tests.faults_support import assert_user_error, cli, simulate_stopped

    sim = tmp_path / "sim"
    command = simulate_stopped(sim, count=40)
    before = _tree(sim)
    assert "simulate.unfinished" in before and "simulate.json" not in before
    assert command == ["simulate", str(sim), "--count", "40", "--shape", "64", "64", "--quiet"]
    # --count 3 removes those of its micrographs stopped beyond the third (if any was written)
    beyond = [n for n in before if n.endswith(".mrc") and int(n[-8:-4]) >= 3]
    removing = f" and remove its file this set does not have ({beyond[0]})" if beyond else ""
    for other, fix in ((["--count", "3", "--shape", "64", "64"], removing),
                       (["--count", "40", "--shape", "64", "64", "--seed", "1"], ""),
                       (["--count", "40", "--shape", "64", "96"], "")):
        line = assert_user_error(cli(capsys, "simulate", sim, *other), "simulate.unfinished")
        assert line == (
            f"cryostream simulate: error: {sim}/simulate.unfinished: a cryostream simulate of "
            "other arguments (40 micrographs or another config) started this set and did not "
            "finish it; run that command again to make it whole, pass --overwrite "
            f"(overwrite=True) to replace it{fix}, or simulate into another folder")
        assert _tree(sim) == before
    assert cli(capsys, *command).rc == 0  # the same command: whole, without --overwrite
    made = _tree(sim, star_time=False)
    assert "simulate.json" in made and "simulate.unfinished" not in made
    assert len([n for n in made if n.startswith("micrographs/")]) == 40
    fresh = cryostream.simulate(tmp_path / "fresh", 40, shape=(64, 64))
    assert made == _tree(fresh.root, star_time=False)  # byte for byte the set an uninterrupted run makes
    stopped = tmp_path / "stopped"
    command = simulate_stopped(stopped, count=40)
    assert cli(capsys, "simulate", stopped, "--count", "5", "--shape", "64", "64", "--quiet",
               "--overwrite").rc == 0
    assert len(list((stopped / "micrographs").iterdir())) == 5
    # a note cut short as it was written (a power cut: nothing fsynced) is named as damaged,
    # not as missing; --overwrite makes the set again
    damaged = tmp_path / "damaged"
    command = simulate_stopped(damaged, count=40)
    (damaged / "simulate.unfinished").write_bytes(b"")
    before = _tree(damaged)
    for extra in ([], ["--count", "3", "--shape", "64", "64"]):
        line = assert_user_error(cli(capsys, *(command[:2] + extra if extra else command)),
                                 "simulate.unfinished")
        assert line.startswith(f"cryostream simulate: error: {damaged}/simulate.unfinished: the "
                               "note of a cryostream simulate that did not finish this set, "
                               "damaged (it cannot be read)"), line
        assert _tree(damaged) == before
    assert cli(capsys, *command, "--overwrite").rc == 0
    assert len(list((damaged / "micrographs").iterdir())) == 40


def test_a_set_an_earlier_version_stopped_is_made_again_with_overwrite(tmp_path, capsys):
    """A set stopped by a version that wrote no simulate.unfinished (its micrographs alone,
    labelled by cryostream simulate) was refused with --overwrite too, as if the files were
    the scientist's own. Without --overwrite the refusal now says they are simulate's and that
    --overwrite makes the set again; with it, the set is made; a file of one's own among them
    is still refused."""
    from tests.faults_support import assert_user_error, cli, simulate_stopped

    old = tmp_path / "old"
    command = simulate_stopped(old, count=40)
    (old / "simulate.unfinished").unlink()  # as a version before the note left it
    before = _tree(old)
    first = next(iter(sorted((old / "micrographs").iterdir())))
    line = assert_user_error(cli(capsys, *command))
    assert line == (
        f"cryostream simulate: error: {first}: written by a cryostream simulate that did not "
        "finish its set and left no note of its arguments (an earlier version's: no "
        f"simulate.unfinished or simulate.json in {old}); pass --overwrite (overwrite=True) to "
        "make the set again from the start, or simulate into another folder")
    assert _tree(old) == before
    mine = old / "micrographs" / "sim_0039.mrc"  # the next file simulate would write: one's own
    with mrcfile.new(mine) as mrc:
        mrc.set_data(np.zeros((64, 64), np.float32))
    line = assert_user_error(cli(capsys, *command, "--overwrite"))
    assert f"{mine}: already there, and not written by a cryostream simulate" in line
    mine.unlink()
    assert cli(capsys, *command, "--overwrite").rc == 0
    made = _tree(old, star_time=False)
    assert "simulate.json" in made and len([n for n in made if n.startswith("micrographs/")]) == 40


def test_a_set_without_its_note_is_told_overwrite_only_where_overwrite_makes_it(tmp_path):
    """A finished set whose simulate.json was removed (its micrographs labelled by simulate,
    its micrographs.star beside them) was refused, without --overwrite, as one an earlier
    version stopped, "pass --overwrite"; --overwrite was then refused too, naming its
    micrographs.star. The refusal without --overwrite now names that file, as --overwrite's
    does, and says what to do."""
    cryostream.simulate(tmp_path / "s", 2, shape=(96, 96))
    (tmp_path / "s" / "simulate.json").unlink()
    before = _tree(tmp_path / "s")
    for overwrite in (False, True):
        with pytest.raises(cryostream.StoreError) as info:
            cryostream.simulate(tmp_path / "s", 2, shape=(96, 96), overwrite=overwrite)
        assert str(info.value).startswith(
            f"{tmp_path / 's' / 'micrographs.star'}: already there, and not written by a "
            "cryostream simulate that this one could finish"), (overwrite, str(info.value))
        assert "pass --overwrite" not in str(info.value)
    assert _tree(tmp_path / "s") == before


def test_a_file_of_ones_own_that_is_no_mrc_is_refused_in_one_line(tmp_path):
    """A ``micrographs/sim_0000.mrc`` there that is no MRC file (bytes of one's own): reading
    its labels (is it simulate's?) printed mrcfile's warnings ("Map ID string not found",
    "Unrecognised machine stamp", an extended header of a billion bytes sought) above the
    refusal. Now the refusal is the one line, with --overwrite or without; the file is kept."""
    from tests.faults_support import assert_user_error, cli_process

    junk = tmp_path / "set" / "micrographs" / "sim_0000.mrc"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    before = junk.read_bytes()
    for overwrite in ([], ["--overwrite"]):
        line = assert_user_error(cli_process("simulate", tmp_path / "set", "--count", "1",
                                             "--shape", "64", "64", *overwrite, cwd=tmp_path))
        assert line.startswith(f"cryostream simulate: error: {junk}: already there, and not "
                               "written by a cryostream simulate"), line
    assert junk.read_bytes() == before and not (tmp_path / "set" / "truth").exists()


def test_overwrite_refuses_files_of_the_earlier_set_made_read_only(tmp_path, capsys):
    """``simulate --overwrite`` replaced (or, with fewer micrographs, removed) files of the
    earlier set the user had made read-only (``chmod a-w``). Now they are named before anything
    is written, with the fix, each as what the call would do to it (one it would remove was
    said to be replaced); the set is left as it was, and once writable it is replaced."""
    from cryostream.cli import main

    root = tmp_path / "s"
    cryostream.simulate(root, 2, shape=(64, 64))
    kept = root / "truth" / "sim_0001.mrc"  # one a set of one micrograph would remove
    kept.chmod(0o444)

    def files():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
                if p.is_file()}

    before = files()
    argv = ["simulate", str(root), "--count", "1", "--shape", "64", "64", "--seed", "1",
            "--overwrite", "--quiet"]
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cryostream simulate: error: {kept}: read-only, and this call would remove it; make "
        f"it writable (chmod u+w {kept}) to remove it, or simulate into another folder")
    assert files() == before
    (root / "truth" / "sim_0000.mrc").chmod(0o444)  # one it would replace, one it would remove
    with pytest.raises(cryostream.StoreError) as info:
        cryostream.simulate(root, 1, shape=(64, 64), seed=1, overwrite=True)
    assert str(info.value) == (
        f"2 read-only files: this call would replace 1 ({root}/truth/sim_0000.mrc) and remove 1 "
        f"({kept}); make them writable (chmod u+w FILE) to replace and remove them, or "
        "simulate into another folder")
    for path in before:
        path.chmod(0o444)  # every one: the first three of each named, and the counts
    with pytest.raises(cryostream.StoreError, match=r"^7 read-only files: this call would "
                       r"replace 5 \(.*/micrographs/sim_0000\.mrc, .*/truth/sim_0000\.mrc, "
                       r".*/micrographs\.star and 2 more\) and remove 2 \(.*/micrographs/"
                       r"sim_0001\.mrc, .*/truth/sim_0001\.mrc\); make them writable \(chmod "
                       r"u\+w FILE\) to replace and remove them, or simulate into another "
                       r"folder$"):
        cryostream.simulate(root, 1, shape=(64, 64), seed=1, overwrite=True)
    assert files() == before
    for path in before:
        path.chmod(0o644)
    assert main(argv) == 0
    assert not kept.exists() and files()[root / "truth" / "sim_0000.mrc"] != before[
        root / "truth" / "sim_0000.mrc"]


def test_the_files_overwrite_removes_are_named_as_removed(tmp_path, capsys):
    """A set of 3 micrographs with their halves, asked for again as 2 without halves: the
    refusal said --overwrite would replace the set, and the command with it said only what it
    simulated, though it removed the earlier set's third micrograph and truth and every half.
    Now the refusal's fix names those as removed, the command says what it removed, and
    ``SimulatedSet.removed`` lists them (none for a set that removed nothing); the half
    folders it emptied go too (they were left empty)."""
    from tests.faults_support import assert_user_error, cli

    sim = tmp_path / "sim"
    assert cryostream.simulate(sim, 3, config=SimulateConfig(shape=(64, 64), even_odd=True)
                               ).removed == ()
    before = _tree(sim)
    command = ["simulate", sim, "--count", "2", "--shape", "64", "64", "--quiet"]
    line = assert_user_error(cli(capsys, *command), str(sim))
    assert line.endswith(
        "(count 3 there, 2 asked for; even_odd True there, False asked for); pass --overwrite to "
        "replace it and remove its 8 files this set does not have "
        "(1 in micrographs/: sim_0002.mrc; 1 in truth/: sim_0002.mrc; 3 in even/: "
        "sim_0000_EVN.mrc … sim_0002_EVN.mrc; 3 in odd/: sim_0000_ODD.mrc … sim_0002_ODD.mrc), "
        "or choose another folder"), line
    assert _tree(sim) == before
    done = cli(capsys, *command, "--overwrite")
    assert done.rc == 0, done.describe()
    assert done.out.splitlines()[-1] == (
        "removed 8 files of the earlier set that this one does not have "
        "(1 in micrographs/: sim_0002.mrc; 1 in truth/: sim_0002.mrc; 3 in even/: "
        "sim_0000_EVN.mrc … sim_0002_EVN.mrc; 3 in odd/: sim_0000_ODD.mrc … sim_0002_ODD.mrc)")
    gone = set(before) - set(_tree(sim))
    assert gone == {"micrographs/sim_0002.mrc", "truth/sim_0002.mrc",
                    *(f"{half}/sim_000{i}_{tag}.mrc" for half, tag in (("even", "EVN"),
                                                                       ("odd", "ODD"))
                      for i in range(3))}
    assert not (sim / "even").exists() and not (sim / "odd").exists()  # emptied: gone too
    again = cryostream.simulate(sim, 1, shape=(64, 64), overwrite=True)
    assert again.removed == (sim / "micrographs/sim_0001.mrc", sim / "truth/sim_0001.mrc")
    assert not any(p.exists() for p in again.removed)


def test_removed_files_are_counted_in_each_folder(tmp_path, capsys):
    """A set of 6 micrographs with halves asked for again as 2 without: the refusal's fix and
    the note after --overwrite named only the first three of the 20 files removed, all
    micrographs (``micrographs/sim_0002.mrc, …/sim_0003.mrc, …/sim_0004.mrc …``), so that the
    truths and every half, those of the micrographs kept too, went unsaid. Now each folder's
    files removed are counted, its first and last named."""
    from tests.faults_support import assert_user_error, cli

    sim = tmp_path / "sim"
    cryostream.simulate(sim, 6, config=SimulateConfig(shape=(64, 64), even_odd=True))
    shown = ("(4 in micrographs/: sim_0002.mrc … sim_0005.mrc; "
             "4 in truth/: sim_0002.mrc … sim_0005.mrc; 6 in even/: sim_0000_EVN.mrc … "
             "sim_0005_EVN.mrc; 6 in odd/: sim_0000_ODD.mrc … sim_0005_ODD.mrc)")
    command = ["simulate", sim, "--count", "2", "--shape", "64", "64", "--quiet"]
    line = assert_user_error(cli(capsys, *command), str(sim))
    assert line.endswith(f"pass --overwrite to replace it and remove its 20 files this set does "
                         f"not have {shown}, or choose another folder"), line
    done = cli(capsys, *command, "--overwrite")
    assert done.rc == 0, done.describe()
    assert done.out.splitlines()[-1] == (
        f"removed 20 files of the earlier set that this one does not have {shown}")
    assert not (sim / "even").exists() and not (sim / "odd").exists()


def test_a_stopped_overwrite_keeps_the_earlier_files_it_would_remove_and_says_so(tmp_path,
                                                                               capsys):
    """``simulate --overwrite`` with fewer micrographs and no halves, over a set of more with
    halves, removed the earlier set's files the new one does not have before writing any, and
    said so only in its last line: stopped by Ctrl-C partway, they were gone without a word.
    Now they are removed only once the new set is whole: the stopped command leaves them as
    they were (its simulate.unfinished refused by prepare, counting only the new set's
    micrographs) and its last line names them as still there; the same command again makes
    the set whole, removes them and says so."""
    from tests.faults_support import assert_user_error, cli, simulate_stopped

    sim = tmp_path / "sim"
    cryostream.simulate(sim, 42, config=SimulateConfig(shape=(64, 64), seed=1, even_odd=True))
    earlier = _tree(sim)
    extra = {n: v for n, v in earlier.items() if n.endswith("_EVN.mrc") or n.endswith("_ODD.mrc")
             or n in ("micrographs/sim_0040.mrc", "micrographs/sim_0041.mrc",
                      "truth/sim_0040.mrc", "truth/sim_0041.mrc")}
    assert len(extra) == 88
    capsys.readouterr()
    command = simulate_stopped(sim, 40, "--overwrite")
    said = capsys.readouterr().err.splitlines()[-1]
    shown = ("2 in micrographs/: sim_0040.mrc, sim_0041.mrc; 2 in truth/: sim_0040.mrc, "
             "sim_0041.mrc; 42 in even/: sim_0000_EVN.mrc … sim_0041_EVN.mrc; 42 in odd/: "
             "sim_0000_ODD.mrc … sim_0041_ODD.mrc")
    assert re.sub(r"after \d+ s", "after N s", said) == (
        f"cryostream simulate: interrupted after N s; {sim} holds the micrographs made so far "
        "and no simulate.json: the set is not finished (prepare, fit, denoise and evaluate "
        "--truth refuse it); run the same command again to make it whole; the earlier set's 88 files "
        f"that this one does not have ({shown}) are still there, removed only once the set is "
        "whole")
    stopped = _tree(sim)
    assert {n: stopped.get(n) for n in extra} == extra  # as they were
    assert "simulate.unfinished" in stopped and "simulate.json" not in stopped
    new = [n for n in stopped if n.startswith("micrographs/") and int(n[-8:-4]) < 40]
    line = assert_user_error(cli(capsys, "prepare", sim / "micrographs", "-o",
                                 tmp_path / "data.h5", "--patch", "32"))
    assert f"({len(new)} of 40 micrographs written, no simulate.json" in line, line
    done = cli(capsys, *command)
    assert done.rc == 0, done.describe()
    assert done.out.splitlines()[-1] == (
        f"removed 88 files of the earlier set that this one does not have ({shown})")
    assert not (sim / "even").exists() and not (sim / "odd").exists()
    fresh = cryostream.simulate(tmp_path / "fresh", 40, shape=(64, 64))
    assert _tree(sim, star_time=False) == _tree(fresh.root, star_time=False)
