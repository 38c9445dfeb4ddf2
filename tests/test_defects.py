"""Detector defects mended before the network (cryostream.denoise.defects): a hot pixel or a
blank border does not spoil the rest of the micrograph, a micrograph without them is left as it
is, and the output says what was mended."""

from __future__ import annotations

import dataclasses
import json
import warnings

import mrcfile
import numpy as np
import pytest
from conftest import write_mrc

import cryostream
from cryostream.config import DenoiseConfig, SimulateConfig
from cryostream.denoise.defects import DefectWarning, find_defects, mend, restore


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_shot_noise_micrograph_has_no_defects(tmp_path):
    """Shot noise of a full-size micrograph at 0.4, 4.4 and 22 electrons a pixel (1, 10 and 50
    e/Å² at 0.66 Å), and a simulated micrograph: no pixel is taken for hot, no line for
    blank."""
    rng = np.random.default_rng(0)
    for electrons in (0.4, 4.4, 22.0):
        assert not find_defects(rng.poisson(electrons, (7676, 7420)).astype(np.float32))
    sim = cryostream.simulate(tmp_path / "sim", 1, config=SimulateConfig(
        shape=(512, 512), seed=3, dose_e_per_angstrom2=10.0))
    assert not find_defects(mrcfile.read(sim.micrographs[0]).astype(np.float32))


def test_hot_pixels_and_blank_lines_are_found_and_mended():
    rng = np.random.default_rng(0)
    image = rng.poisson(20, (300, 400)).astype(np.float32)
    image[0:8, :] = 0  # a border
    image[:, 100:104] = 7  # a dead stripe
    image[150, 200], image[40, 300] = 1e6, 250  # hot pixels
    found = find_defects(image)
    assert found.rows.tolist() == list(range(8))
    assert found.columns.tolist() == [100, 101, 102, 103]
    assert sorted(found.hot.tolist()) == [40 * 400 + 300, 150 * 400 + 200]
    assert found.record() == {"hot_pixels": 2, "threshold": found.threshold,
                              "blank_rows": ["0-7"], "blank_columns": ["100-103"]}
    mended = mend(image, found)
    assert mended[150, 200] == mended[40, 300] == found.median
    assert abs(mended[:8].mean() - 20) < 0.5 and abs(mended[:8].std() - np.sqrt(20)) < 0.3
    np.testing.assert_array_equal(mended, mend(image, found))  # the same fill every time
    assert not find_defects(mended)
    cold = image.copy()
    cold[10, 10], cold[200, 300] = -1e6, -3e38  # dead pixels far below zero
    found_cold = find_defects(cold)
    assert sorted(found_cold.cold.tolist()) == [10 * 400 + 10, 200 * 400 + 300]
    assert found_cold.record()["cold_pixels"] == 2 and "cold_pixels" not in found.record()
    assert mend(cold, found_cold)[10, 10] == found_cold.median
    out = restore(mended.copy(), image, found)
    np.testing.assert_array_equal(out[:8], image[:8])
    np.testing.assert_array_equal(out[:, 100:104], image[:, 100:104])
    assert (out[8:, :100] == mended[8:, :100]).all()


def _clean_and_mended(tiny_run, tmp_path, path, config, warned: str):
    """The shared run's first micrograph denoised (into ``a``) and ``path``, a copy of it with
    defects, denoised with the warning ``warned`` (into ``b``): both outputs, the second finite."""
    want = cryostream.denoise(tiny_run.run, [tiny_run.sim.micrographs[0]], tmp_path / "a",
                              config=config, workers=1).values[0]
    with pytest.warns(DefectWarning, match=warned):
        got = cryostream.denoise(tiny_run.run, [path], tmp_path / "b", config=config,
                                 workers=1).values[0]
    assert np.isfinite(got).all()
    return want, got


def test_denoise_mends_a_hot_pixel_and_a_blank_border_and_says_so(tiny_run, tmp_path):
    """A micrograph with a hot pixel a million times its mean and a border of zeros: outside
    the border the output is the clean micrograph's (but near the hot pixel, as mended), the
    border stays zero, a warning names the file, and NAME.json records what was mended."""
    clean = mrcfile.read(tiny_run.sim.micrographs[0]).astype(np.float32)
    bad = clean.copy()
    bad[60, 70] = 1e6 * clean.mean()
    bad[:, :12] = 0
    path = tmp_path / "bad.mrc"
    with mrcfile.new(path) as f:
        f.set_data(bad)
        f.voxel_size = 0.66
    want, got = _clean_and_mended(tiny_run, tmp_path, path, DenoiseConfig.raw(tile=64),
                                  r"bad\.mrc: 1 hot pixel .* set to the median; 12 "
                                  r"blank columns \(0-11\) filled with noise")
    assert (got[:, :12] == 0).all()
    far = np.ones(got.shape, bool)
    far[:, :40] = False  # the filled border's reach
    far[30:90, 40:100] = False  # the mended pixel's
    scale = np.abs(want).max()
    assert np.abs(got - want)[far].max() < 0.05 * scale
    assert np.corrcoef(got[:, 12:].ravel(), want[:, 12:].ravel())[0, 1] > 0.9
    record = json.loads((tmp_path / "b" / "bad.json").read_text())
    assert record["found"]["defects"]["hot_pixels"] == 1
    assert record["found"]["defects"]["blank_columns"] == ["0-11"]
    clean_record = json.loads((tmp_path / "a" / "sim_0000.json").read_text())
    assert "defects" not in clean_record["found"]


def test_denoise_mends_cold_pixels_and_says_so(tiny_run, tmp_path):
    """A micrograph with dead pixels written far below zero (-1e6 times its mean, as a bad
    gain correction leaves; one at -3e38): they are set to the median as hot pixels are, so
    that the Wiener gain does not spread them over the whole output (or overflow into NaN and
    a traceback), a warning names the file and NAME.json records them."""
    clean = mrcfile.read(tiny_run.sim.micrographs[0]).astype(np.float32)
    bad = clean.copy()
    bad[60, 70] = -1e6 * clean.mean()
    bad[100, 20] = -3e38
    with np.errstate(over="ignore"):  # mrcfile's header statistics
        path = write_mrc(tmp_path / "cold.mrc", bad)
    want, got = _clean_and_mended(
        tiny_run, tmp_path, path, DenoiseConfig.raw(tile=64, n2n_correction=True, wiener_gain=True),
        r"cold\.mrc: 2 cold pixels \(under -?\d.*\) set to the median")
    far = np.ones(got.shape, bool)
    far[30:90, 40:100] = False  # the mended pixels' reach
    far[70:130, 0:50] = False
    assert np.abs(got - want)[far].max() < 0.05 * np.abs(want).max()
    found = json.loads((tmp_path / "b" / "cold.json").read_text())["found"]["defects"]
    assert found["cold_pixels"] == 2 and found["hot_pixels"] == 0


def test_a_micrograph_with_too_many_huge_pixels_to_mend_is_refused_naming_it(tiny_run,
                                                                           tmp_path):
    """One pixel in a hundred at 1e20 (more than the 0.1 % mended as hot pixels): the Wiener
    gain's spectra overflowed into NaN and the command ended in a ValueError traceback. Refused
    with one error naming the file; skipped under permissive."""
    clean = mrcfile.read(tiny_run.sim.micrographs[0]).astype(np.float32)
    bad = clean.copy()
    bad[np.random.default_rng(0).random(bad.shape) < 0.01] = 1e20
    with np.errstate(over="ignore"):  # mrcfile's header statistics
        path = write_mrc(tmp_path / "huge.mrc", bad)
    config = DenoiseConfig.raw(tile=64, n2n_correction=True, wiener_gain=True)
    with pytest.raises(cryostream.InvalidMicrographError, match=r"huge\.mrc: holds pixels of "
                       r"1e\+20 in size, .* times its 95th percentile: too many to be hot or "
                       r"cold pixels"):
        cryostream.denoise(tiny_run.run, [path], tmp_path / "a", config=config, workers=1)
    with pytest.warns(cryostream.MicrographSkippedWarning, match="huge.mrc"):
        got = cryostream.denoise(tiny_run.run, [path, tiny_run.sim.micrographs[0]],
                                 tmp_path / "b", config=config, workers=1, permissive=True)
    assert got.sizes["micrograph"] == 1


def test_a_mostly_blank_micrograph_is_refused_naming_it(tiny_run, tmp_path):
    """Flat but for a band of rows (every row one value), or blank in most columns: refused
    with one error naming the file (it crashed in the percentile of no pixels); skipped under
    permissive."""
    flat = np.full((256, 256), 100, np.float32)
    flat[100:110] = 101
    ok = mrcfile.read(tiny_run.sim.micrographs[0]).astype(np.float32)
    sparse = ok.copy()
    sparse[:, : int(0.8 * ok.shape[1])] = ok.mean()
    raw = DenoiseConfig.raw(tile=64)
    for name, image, what in (("flat.mrc", flat, "256 of its 256 rows are blank"),
                              ("sparse.mrc", sparse, "102 of its 128 columns are blank")):
        path = tmp_path / name
        with mrcfile.new(path) as f:
            f.set_data(image)
            f.voxel_size = 0.66
        with pytest.raises(cryostream.InvalidMicrographError, match=f"{name}: {what}"):
            cryostream.denoise(tiny_run.run, [path], tmp_path / name.replace(".", "_"),
                               config=raw, workers=1)
    with pytest.warns(cryostream.MicrographSkippedWarning, match="sparse.mrc"):
        got = cryostream.denoise(tiny_run.run, [tmp_path / "sparse.mrc",
                                                tiny_run.sim.micrographs[0]],
                                 tmp_path / "both", config=raw, workers=1, permissive=True)
    assert got.sizes["micrograph"] == 1


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_a_pairs_halves_are_mended_before_their_ctf_is_fitted(tiny_run, tmp_path):
    """An even/odd pair with a hot pixel in its even half: the defocus fitted on the halves'
    sum is the clean pair's (the hot pixel had taken the fit elsewhere), and the record says
    what was mended in that half."""
    sim = cryostream.simulate(tmp_path / "sim", 1, config=SimulateConfig(
        shape=(1024, 1024), seed=5, even_odd=True))
    even, odd = sim.evens[0], sim.odds[0]
    hot = tmp_path / "hot" / even.name
    hot.parent.mkdir()
    image = mrcfile.read(even).astype(np.float32)
    image[300, 400] = 1e6 * image.mean()
    with mrcfile.new(hot) as f:
        f.set_data(image)
        f.voxel_size = 0.6575
    config = DenoiseConfig(ensemble=False, ctf_gain=True, learned_weights=False, tile=256,
                           binned_pass=False)
    found = []
    for name, first in (("clean", even), ("hot", hot)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DefectWarning)  # said; the record is checked
            cryostream.denoise(tiny_run.run, [first], tmp_path / f"out_{name}", config=config,
                               odd=[odd], workers=1)
        record = next((tmp_path / f"out_{name}").glob("*.json"))
        found.append(json.loads(record.read_text())["found"])
    clean, mended = found
    assert mended["defects"]["hot_pixels"] == 1 and "defects" not in clean
    assert mended["ctf"]["defocus_u_angstrom"] == pytest.approx(
        clean["ctf"]["defocus_u_angstrom"], rel=0.01)


def test_rank_scores_a_micrograph_as_denoise_mends_it(tiny_run, tmp_path):
    """rank_runs on a micrograph with a hot pixel scores it about as the clean one (the pixel
    mended as denoise mends it), not by the pixel."""
    clean = tiny_run.sim.micrographs[0]
    image = mrcfile.read(clean).astype(np.float32)
    image[60, 70] = 1e6 * image.mean()
    hot = tmp_path / "hot" / clean.name
    hot.parent.mkdir()
    with mrcfile.new(hot) as f:
        f.set_data(image)
        f.voxel_size = 0.6575
    config = DenoiseConfig.raw(tile=64, n2n_correction=True, wiener_gain=True)
    want, got = (cryostream.rank_runs([tiny_run.run], [p], config=config)[0]["score"]
                 for p in (clean, hot))
    assert got == pytest.approx(want, rel=0.1)


def test_prepare_holds_a_hot_pixel_at_the_percentile_and_says_so(tmp_path):
    """A training micrograph with one pixel a million times its mean: the store holds no pixel
    over HOT_CLIP times the percentile (the one had ruled training: loss 1773, under the noisy
    input), its matched-noise estimate is the clean micrograph's, and a warning names it."""
    import h5py

    from cryostream import NoiseConfig, PrepareConfig
    from cryostream.preprocess import HOT_CLIP

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(512, 512), seed=6)
    hot = tmp_path / "hot"
    hot.mkdir()
    for i, path in enumerate(sim.micrographs):
        image = mrcfile.read(path).astype(np.float32)
        if i == 0:
            image[200, 300] = 1e6 * image.mean()
        write_mrc(hot / path.name, image, pixel_size=0.6575)
    config = PrepareConfig(patch_size=128, stride=128, test_fraction=0.0,
                           noise=NoiseConfig(model="matched"))
    clean = cryostream.prepare(sim.micrographs, tmp_path / "clean.h5", config).output
    with pytest.warns(DefectWarning, match=r"1 micrograph holds pixels over 20 times its 95th "
                      r"percentile \(hot pixels; up to .* times in sim_0000\.mrc\)"):
        mended = cryostream.prepare(sorted(hot.glob("*.mrc")), tmp_path / "hot.h5",
                                    config).output
    with h5py.File(mended) as f, h5py.File(clean) as g:
        assert float(f["train/target"][...].max()) <= HOT_CLIP
        assert float(f["train/input"][...].max()) < 2 * HOT_CLIP
        for key in ("noise_shot_fraction", "noise_mean"):
            np.testing.assert_allclose(f["micrographs"][key][...], g["micrographs"][key][...],
                                       rtol=0.05)


def test_prepare_refuses_micrographs_not_in_counts_for_shot_noise(tmp_path):
    """Micrographs normalised to mean 0 by another program: refused for the noise models that
    follow counts (shot noise had clipped every negative pixel, and fit's loss went NaN),
    naming the file and both ways out; gaussian noise takes them."""
    from cryostream import NoiseConfig, PrepareConfig

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(256, 256), seed=7)
    zero = tmp_path / "zero"
    zero.mkdir()
    for path in sim.micrographs:
        image = mrcfile.read(path).astype(np.float32)
        with mrcfile.new(zero / path.name) as f:
            f.set_data((image - image.mean()) / image.std())
            f.voxel_size = 0.6575
    inputs = sorted(zero.glob("*.mrc"))
    base = PrepareConfig(patch_size=64, stride=64, test_fraction=0.0)
    with pytest.raises(cryostream.InvalidMicrographError, match=r"sim_0000\.mrc: holds pixels "
                       r"far below zero .*not in electron counts.*--noise gaussian"):
        cryostream.prepare(inputs[:1], tmp_path / "a.h5", base)
    gaussian = PrepareConfig(patch_size=64, stride=64, test_fraction=0.0,
                             noise=NoiseConfig(model="gaussian"))
    assert cryostream.prepare(inputs, tmp_path / "b.h5", gaussian).output.is_file()


def test_prepare_holds_cold_pixels_at_the_percentile_and_says_so(tmp_path):
    """Dead pixels written far below zero by a gain correction (-1e5, -3e38), which denoise
    mends: prepare had refused the micrograph as not in counts (and, for a float16 store, as
    beyond float16). Now the store holds them at the percentile as it holds hot pixels, the
    matched-noise estimate is the clean micrograph's, and a warning names them; a dead area
    (more than 0.1 % of the pixels) is still refused for shot noise, writing nothing, and
    gaussian noise takes it into the same store, the area held (a float16 store had held -1e7
    as -inf)."""
    import h5py

    from cryostream import NoiseConfig, PrepareConfig
    from cryostream.preprocess import HOT_CLIP

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(512, 512), seed=6)
    cold, area = tmp_path / "cold", tmp_path / "area"
    cold.mkdir()
    area.mkdir()
    for i, path in enumerate(sim.micrographs):
        image = mrcfile.read(path).astype(np.float32)
        if i == 0:
            image[200, 300] = image[10, 20] = -1e5
            image[400, 100] = -3e38
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile's rms of -3e38 overflows
            write_mrc(cold / path.name, image, pixel_size=0.6575)
            image[:32, :32] = -1e7  # 0.39 % of the pixels
            write_mrc(area / path.name, image, pixel_size=0.6575)
    config = PrepareConfig(patch_size=128, stride=128, test_fraction=0.0, dtype="float16",
                           noise=NoiseConfig(model="matched"))
    clean = cryostream.prepare(sim.micrographs, tmp_path / "clean.h5", config).output
    with pytest.warns(DefectWarning, match=r"1 micrograph holds pixels under −20 times its 95th "
                      r"percentile \(cold pixels, written far below zero; 3 in sim_0000\.mrc\)"
                      r": the store holds the percentile in their place"):
        mended = cryostream.prepare(sorted(cold.glob("*.mrc")), tmp_path / "cold.h5",
                                    config).output
    with h5py.File(mended) as f, h5py.File(clean) as g:
        assert float(f["train/target"][...].min()) >= 0.0
        assert np.isfinite(f["train/input"][...]).all()
        assert float(f["train/input"][...].min()) > -HOT_CLIP
        for key in ("noise_shot_fraction", "noise_mean"):
            np.testing.assert_allclose(f["micrographs"][key][...], g["micrographs"][key][...],
                                       rtol=0.05)
    dead = sorted(area.glob("*.mrc"))
    with pytest.raises(cryostream.InvalidMicrographError, match=r"sim_0000\.mrc: holds pixels "
                       r"far below zero \(1026 of them, 0\.39 %: not a few dead pixels; as low as "
                       r"-3e\+38.*not in electron counts.*--noise gaussian"):
        cryostream.prepare(dead, tmp_path / "a.h5", config)
    gaussian = dataclasses.replace(config, noise=NoiseConfig(model="gaussian"))
    assert not (tmp_path / "a.h5").exists()
    with pytest.warns(DefectWarning, match=r"2 micrographs hold pixels under −20 times their .*"
                      r"1026 in sim_0000\.mrc"):
        out = cryostream.prepare(dead, tmp_path / "a.h5", gaussian).output  # the same -o
    with h5py.File(out) as f:
        assert np.isfinite(f["train/input"][...]).all()
        assert float(f["train/target"][...].min()) >= 0.0


def test_prepare_measures_the_noise_without_a_blank_border_and_says_so(tmp_path):
    """A border of zeros over two fifths of a micrograph (as some motion correction leaves)
    counted as noise-free took 43 % off its matched-noise estimate, and the network would train
    on too little noise: the estimate is now the clean micrograph's within a few per cent, and
    a warning names the lines."""
    from cryostream import NoiseConfig, PrepareConfig
    from cryostream.matched import estimate_noise, tile_for
    from cryostream.prepare_output import load_estimate, noise_file
    from cryostream.store import shard_folder

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(1024, 1024), seed=5)
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    image[:256, :] = 0
    image[:, :192] = 0
    bordered = write_mrc(tmp_path / "bordered.mrc", image, pixel_size=0.6575)
    config = PrepareConfig(patch_size=128, stride=128, test_fraction=0.0,
                           noise=NoiseConfig(model="matched"))
    clean = cryostream.prepare(sim.micrographs, tmp_path / "clean.h5", config).output
    with pytest.warns(DefectWarning, match=r"1 micrograph holds blank rows or columns .*"
                      r"bordered\.mrc: rows 0-255 and columns 0-191\): the noise is measured "
                      "without them"):
        out = cryostream.prepare([bordered], tmp_path / "bordered.h5", config).output
    want = load_estimate(noise_file(shard_folder(clean), str(sim.micrographs[0]))).radial
    got = load_estimate(noise_file(shard_folder(out), str(bordered))).radial
    unmended = estimate_noise(image, 0.6575, tile=tile_for(image.shape)).radial
    band = slice(len(want) // 8, len(want) - 2)  # above 20 Å
    assert np.median(unmended[band] / want[band]) < 0.9  # what the border did
    np.testing.assert_allclose(np.median(got[band] / want[band]), 1.0, atol=0.04)


def test_prepare_refuses_a_micrograph_mostly_blank_as_denoise_does(tmp_path):
    """A micrograph whose rows are nearly all one value each (nothing recorded): its noise
    estimate was near zero and it went into the store; now it is named and refused, or
    skipped with --permissive, as denoise does."""
    from cryostream import PrepareConfig

    sim = cryostream.simulate(tmp_path / "sim", 2, shape=(256, 256), seed=8)
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    image[:200] = image[:200, :1]  # 200 of 256 rows one value each
    blank = write_mrc(tmp_path / "blank.mrc", image, pixel_size=0.6575)
    config = PrepareConfig(patch_size=64, stride=64, test_fraction=0.0)
    with pytest.raises(cryostream.InvalidMicrographError,
                       match=r"blank\.mrc: 200 of its 256 rows are blank \(one value along each\)"
                             r"; exclude it \(--permissive skips it\)"):
        cryostream.prepare([blank, sim.micrographs[1]], tmp_path / "a.h5", config)
    assert not (tmp_path / "a.h5").exists()
    with pytest.warns(cryostream.MicrographSkippedWarning, match=r"skipping .*blank\.mrc: 200"):
        kept = cryostream.prepare([blank, sim.micrographs[1]], tmp_path / "b.h5", config,
                                  permissive=True)
    assert kept.micrographs == 1
