"""Learned weights: the table's fit, its lookup, its place in a run's record and in denoise."""

from __future__ import annotations

import dataclasses
import json
import shutil

import mrcfile
import numpy as np
import pytest

from cryostream import ConfigError
from cryostream.config import DenoiseConfig
from cryostream.denoise.corrections import match_wiener_gain
from cryostream.denoise.weights import (
    BANDS,
    LearnedWeights,
    band_weights,
    fit_learned_weights,
    measured_snr,
    weight_sums,
    weights_for,
)
from cryostream.matched import estimate_noise, tile_for
from cryostream.runs import RECORD_FILE, load_record


def _scene(rng, shape=(256, 256), sigma=1.0):
    """A truth with a falling spectrum, a noisy copy (white noise ``sigma``) and a "denoiser"
    that passes half the noisy image and adds junk uncorrelated with both."""
    import scipy.ndimage

    truth = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 3, mode="wrap") * 20
    noisy = truth + rng.normal(0, sigma, shape)
    junk = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 1, mode="wrap") * 0.8
    estimate = 0.5 * noisy + junk
    return [a.astype(np.float32) for a in (truth, noisy, estimate)]


def _noise(noisy):
    return estimate_noise(noisy, 1.0, tile=tile_for(noisy.shape))


def test_fitted_weights_drop_the_junk_and_help_a_new_image():
    rng = np.random.default_rng(7)
    sums = []
    for _ in range(3):
        truth, noisy, estimate = _scene(rng)
        gained = match_wiener_gain(estimate, noisy, _noise(noisy))
        sums.append(weight_sums(estimate, gained, noisy, truth, _noise(noisy)))
    table = fit_learned_weights(sums, rows=1)
    linear, rest = (np.asarray(t[0]) for t in (table.linear, table.rest))
    assert table.micrographs == 3 and len(table.snr) == 1
    # the junk is all of the rest: its weight falls towards 0 wherever it has power
    assert np.all(rest[1:BANDS // 2] < 0.15)
    # the gain's linear response is already the Wiener filter's: kept near 1 where the truth
    # is strong
    assert np.all(np.abs(linear[1:3] - 1) < 0.2)

    truth, noisy, estimate = _scene(rng)  # a new image
    noise = _noise(noisy)
    gained = match_wiener_gain(estimate, noisy, noise)
    weighted = match_wiener_gain(estimate, noisy, noise, weights=table)
    mse = [float(np.mean((a - truth) ** 2)) for a in (gained, weighted)]
    assert mse[1] < 0.5 * mse[0]
    assert abs(float(weighted.mean()) - float(noisy.mean())) < 1e-5


@pytest.mark.parametrize("shape_of_gain", ["radial", "network_above", "ctf"])
def test_the_weights_split_each_gain_into_its_linear_response_and_the_rest(shape_of_gain):
    """``a·L + b·R``: ones give the gain's output; ``(1, 0)`` its linear response alone (the
    output less the estimate's rest); ``(0, 1)`` the rest alone."""
    import scipy.fft

    from cryostream.ctf import CTFFit
    from cryostream.denoise.corrections import NetworkAbove
    from cryostream.spectral import merge_rings, ring_regression

    rng = np.random.default_rng(11)
    truth, noisy, estimate = _scene(rng)
    noise = _noise(noisy)
    ctf = {"radial": None, "network_above": NetworkAbove(1.0),
           "ctf": CTFFit(15000.0, 14000.0, 30.0, 0.0, 1.0)}[shape_of_gain]
    gained = match_wiener_gain(estimate, noisy, noise, ctf=ctf)

    def table(a, b):
        return LearnedWeights(snr=(1.0,), linear=((a,) * (BANDS + 1),), rest=((b,) * (BANDS + 1),))

    np.testing.assert_allclose(match_wiener_gain(estimate, noisy, noise, ctf=ctf,
                                                 weights=table(1.0, 1.0)), gained, atol=1e-4)
    rings = merge_rings(noisy.shape)
    y = scipy.fft.rfft2(noisy - noisy.mean())
    e = scipy.fft.rfft2(estimate - estimate.mean())
    g, _ = ring_regression(e, y, rings.bins, rings.weight)
    rest = scipy.fft.irfft2(e - g.astype(np.float32)[rings.bins] * y, s=noisy.shape)
    linear = match_wiener_gain(estimate, noisy, noise, ctf=ctf, weights=table(1.0, 0.0))
    only_rest = match_wiener_gain(estimate, noisy, noise, ctf=ctf, weights=table(0.0, 1.0))
    np.testing.assert_allclose(linear, gained - rest, atol=1e-4)
    np.testing.assert_allclose(only_rest - noisy.mean(), rest, atol=1e-4)


def test_the_measured_ratio_rises_with_the_signal():
    import scipy.fft

    rng = np.random.default_rng(3)
    ratios = []
    for sigma in (4.0, 2.0, 1.0):
        truth, noisy, _ = _scene(rng, sigma=sigma)
        f = scipy.fft.rfft2(noisy - noisy.mean())
        ratios.append(measured_snr(f, noisy.shape, _noise(noisy)))
    assert ratios[0] < ratios[1] < ratios[2]
    # the noise is a quarter as strong at each step: the ratio near four times as large
    assert ratios[2] / ratios[1] == pytest.approx(4, rel=0.25)


def _rows(value, n=2, step=0.5):
    return tuple(tuple([value + step * i] * (BANDS + 1)) for i in range(n))


def test_the_table_interpolates_in_log_snr_and_holds_its_end_rows():
    table = LearnedWeights(snr=(0.1, 1.0), linear=_rows(0.0), rest=_rows(0.25), micrographs=4)
    for snr, expected in ((0.01, 0.0), (0.1, 0.0), (0.1**0.5, 0.25), (1.0, 0.5), (30.0, 0.5)):
        linear, rest = table.at(snr)
        assert linear.shape == (BANDS + 1,)
        assert np.allclose(linear, expected) and np.allclose(rest, expected + 0.25)


@pytest.mark.parametrize("shape", [(256, 256), (300, 256), (256, 300), (100, 100), (1900, 2000)])
def test_the_weights_change_from_ring_to_ring_between_band_centres(shape):
    from cryostream.denoise.weights import frequency_bands
    from cryostream.spectral import ring_index

    steps = np.arange(BANDS + 1, dtype=np.float64) / BANDS  # a step at every band's edge
    steps[BANDS] = 1.25  # the corners past Nyquist
    table = LearnedWeights(snr=(1.0,), linear=(tuple(steps),), rest=(tuple(steps / 2),))
    linear, rest = band_weights(table, None, shape, None, snr=1.0)
    linear = linear * BANDS  # band b's value is b
    ring = ring_index(shape, "rfft", dtype=np.float32)
    assert linear.dtype == np.float32 and linear.shape == ring.shape
    assert np.allclose(rest * 2 * BANDS, linear)
    per_band = 2 * BANDS / min(shape)  # bands per ring
    position = ring * per_band - 0.5  # each band's centre at an integer
    corner = frequency_bands(shape, ring) == BANDS  # the last entry's rings, as the fit's sums
    within = (position >= 0) & (position <= BANDS - 1)
    # the table's value at each band's centre, a straight line between: no step at an edge
    assert np.allclose(linear[within], position[within], atol=1e-5)
    assert np.allclose(linear[(position < 0)], 0.0)
    beyond = (position > BANDS - 1) & ~corner
    assert beyond.any() and np.allclose(linear[beyond], BANDS - 1)
    assert np.allclose(linear[corner], 1.25 * BANDS)
    # so neighbouring rings within Nyquist differ by one ring's share of a band, never a step
    inside = ring[0, :] <= min(shape) // 2 - 1
    assert np.max(np.abs(np.diff(linear[0, inside]))) <= per_band + 1e-4


def test_a_table_round_trips_and_bad_tables_are_refused():
    table = LearnedWeights(snr=(0.2, 0.9), linear=_rows(0.3), rest=_rows(0.1), micrographs=7)
    assert LearnedWeights.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    bad = [dict(snr=(0.9, 0.2)), dict(snr=(0.0, 1.0)), dict(linear=_rows(0.3, n=3)),
           dict(rest=((0.1,) * BANDS,) * 2), dict(rest=((np.nan,) * (BANDS + 1),) * 2),
           dict(rest=_rows(-0.1)), dict(linear=_rows(1.0)), dict(micrographs=-1),
           dict(micrographs=2.5)]
    for change in bad:
        with pytest.raises(ConfigError, match="learned weights"):
            LearnedWeights(**{"snr": (0.2, 0.9), "linear": _rows(0.3), "rest": _rows(0.1),
                              **change})
    with pytest.raises(ConfigError, match="keys"):
        LearnedWeights.from_dict({"snr": [1.0]})
    with pytest.raises(ConfigError, match="not a table of numbers"):
        LearnedWeights.from_dict({**table.to_dict(), "snr": 3.0})


def test_a_table_by_pixel_size_looks_up_both_axes_exactly():
    # pixel size 0.5 Å: two rows by ratio; 1.5 Å: one row at a ratio between them
    table = LearnedWeights(snr=(0.1, 1.0, 0.5), linear=_rows(0.0) + _rows(1.0, n=1),
                           rest=_rows(0.25) + _rows(0.75, n=1), micrographs=6,
                           pixel_size=(0.5, 0.5, 1.5))
    small = LearnedWeights(snr=(0.1, 1.0), linear=_rows(0.0), rest=_rows(0.25))
    for snr in np.geomspace(0.01, 100, 25):
        for size, w in ((0.3, 0.0), (0.5, 0.0), (0.75**0.5, 0.5), (1.5, 1.0), (4.0, 1.0)):
            linear, rest = table.at(snr, size)
            want = [(1 - w) * s + w * v for s, v in zip(small.at(snr), (1.0, 0.75), strict=True)]
            assert np.allclose(linear, want[0]) and np.allclose(rest, want[1])
    assert small.for_pixel_size(0.8) is small  # a table by ratio alone is itself
    assert table.for_pixel_size(np.float32(1.5)) == table.for_pixel_size(1.5)  # a header's type
    assert LearnedWeights.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    assert "pixel_size" not in small.to_dict()
    with pytest.raises(ConfigError, match="by pixel size"):
        table.at(0.5)
    for bad in (0, -1.0, np.nan, "1.0 Å", True):
        with pytest.raises(ConfigError, match="pixel_size="):
            table.for_pixel_size(bad)
    rows = dict(linear=_rows(0.3, n=3), rest=_rows(0.1, n=3))
    for bad in [dict(snr=(0.1, 1.0, 0.5), pixel_size=(1.5, 0.5, 0.5)),
                dict(snr=(0.1, 1.0, 0.5), pixel_size=(0.5, 1.5)),
                dict(snr=(0.1, 1.0, 0.5), pixel_size=(-0.5, 0.5, 1.5)),
                dict(snr=(1.0, 0.1, 0.5), pixel_size=(0.5, 0.5, 1.5))]:
        with pytest.raises(ConfigError, match="learned weights"):
            LearnedWeights(**rows, **bad)


def test_a_table_at_its_bounds_looks_up_every_pixel_size_between():
    # two pixel sizes with the linear part at its top: the mix between them is the top, not a
    # rounding past it that the table's own check refuses (at 0.594 Å, (1 − w)·1.25 + w·1.25
    # is 1.2500000000000002)
    from cryostream.denoise.weights import MAX_LINEAR

    table = LearnedWeights(snr=(1.0, 1.0), linear=_rows(MAX_LINEAR, n=1) * 2,
                           rest=_rows(1.0, n=1) * 2, pixel_size=(0.5, 1.5))
    for size in np.linspace(0.5, 1.5, 201):
        linear, rest = table.at(1.0, size)
        assert np.allclose(linear, MAX_LINEAR) and linear.max() <= MAX_LINEAR
        assert np.allclose(rest, 1.0) and rest.max() <= 1.0


def test_a_fit_by_pixel_size_keeps_each_sizes_weights():
    from cryostream.denoise.weights import WeightSums

    def sums(b):  # ⟨L,L⟩ = ⟨R,R⟩ = 1, ⟨L,R⟩ = 0: a = ⟨X,L⟩ = 1, b = ⟨X,R⟩
        s = np.zeros((5, BANDS + 1))
        s[0], s[1], s[2], s[3] = 1.0, b, 1.0, 1.0
        return s

    # two sizes whose rest weighs 0.2 and 0.8 at the same ratios
    made = [WeightSums(r, sums(b), size) for size, b in ((0.5, 0.2), (1.5, 0.8))
            for r in (0.5, 2.0)]
    table = fit_learned_weights(made, rows=2, pixel_groups=2)
    assert table.pixel_size == (0.5, 0.5, 1.5, 1.5) and table.micrographs == 4
    for size, b in ((0.5, 0.2), (1.5, 0.8)):
        assert np.allclose(table.at(1.0, size)[1], b) and np.allclose(table.at(1.0, size)[0], 1)
    assert np.allclose(table.at(1.0, 0.75**0.5)[1], 0.5)
    assert np.allclose(fit_learned_weights(made, rows=1).rest[0], 0.5)  # by ratio alone: pooled
    with pytest.raises(ConfigError, match="pixel_size"):
        fit_learned_weights([WeightSums(1.0, sums(0.5))] * 2, pixel_groups=2)


def test_a_scale_by_pixel_size_keeps_the_tables_mix():
    from cryostream.denoise.weights import MAX_LINEAR, WeightSums, scale_by_pixel_size

    table = LearnedWeights(snr=(1.0,), linear=_rows(1.0, n=1), rest=_rows(0.5, n=1))

    def sums(scale):  # the truth is scale·(L + R/2); ⟨L,L⟩ = ⟨R,R⟩ = 1, ⟨L,R⟩ = 0
        s = np.zeros((5, BANDS + 1))
        s[0], s[1], s[2], s[3] = scale, scale / 2, 1.0, 1.0
        return s

    made = [WeightSums(1.0, sums(k), size) for size, k in ((0.5, 0.5), (0.5, 0.5), (1.5, 2.0))]
    scaled = scale_by_pixel_size(table, made, pixel_groups=2)
    assert scaled.pixel_size == (0.5, 1.5)
    for size, linear in ((0.5, 0.5), (1.5, MAX_LINEAR)):  # 2 would pass the linear bound
        a, b = scaled.at(1.0, size)
        assert np.allclose(a, linear) and np.allclose(b, linear / 2)  # the mix stays 2 : 1
    with pytest.raises(ConfigError, match="by pixel size already"):
        scale_by_pixel_size(scaled, made, 2)
    with pytest.raises(ConfigError, match="pixel_size"):
        scale_by_pixel_size(table, [WeightSums(1.0, sums(1.0))] * 2, 2)


def test_fits_pool_equal_ratios_and_leave_a_rest_that_adds_nothing_out():
    from cryostream.denoise.weights import WeightSums

    rng = np.random.default_rng(2)
    sums = []
    for i in range(4):  # one ratio, rest weights 0.2 … 0.8 in turn: pooled, their mean
        s = np.ones((5, BANDS + 1))
        s[0], s[2], s[3], s[4] = 1.0, 1.0, 1.0, 0.0  # ⟨X,L⟩ = ⟨L,L⟩: a = 1
        s[1] = 0.2 * (i + 1)  # ⟨X,R⟩ with ⟨R,R⟩ = 1
        sums.append(WeightSums(1.0, s))
    table = fit_learned_weights(sums, rows=2)
    assert table.snr == (1.0,) and table.micrographs == 4
    assert np.allclose(table.rest[0], 0.5) and np.allclose(table.linear[0], 1.0)
    collinear = np.ones((5, BANDS + 1)) * rng.uniform(0.5, 1, (1, BANDS + 1))
    collinear[4] = collinear[2]  # ⟨L,R⟩² = ⟨L,L⟩⟨R,R⟩: R is a multiple of L
    one = fit_learned_weights([WeightSums(2.0, collinear)])
    assert np.allclose(one.rest[0], 0.0) and np.allclose(one.linear[0], 1.0)
    no_linear = np.zeros((5, BANDS + 1))
    no_linear[1], no_linear[3] = 0.7, 1.0  # ⟨X,R⟩, ⟨R,R⟩; nothing linear
    alone = fit_learned_weights([WeightSums(2.0, no_linear)])
    assert np.allclose(alone.rest[0], 0.7)


def test_a_damaged_table_in_an_exported_model_names_the_file(tmp_path):
    from cryostream import StoreError
    from cryostream.denoise.network import load_model_file, model_path

    with np.load(model_path("general")) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    meta["run"]["learned_weights"]["ensemble"]["snr"] = 3.0
    arrays["__meta__"] = np.array(json.dumps(meta))
    bad = tmp_path / "edited.npz"
    np.savez(bad, **arrays)
    with pytest.raises(StoreError, match=r"edited\.npz: its run record is not valid .*learned "
                       r"weights.*fit_learned_weights"):
        load_model_file(str(bad))


def _with_table(tiny_run, tmp_path, tables):
    """A copy of the shared run whose record holds ``tables``."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run, run)
    record = dataclasses.replace(load_record(run), learned_weights=tables)
    (run / RECORD_FILE).write_text(json.dumps(record.to_dict()))
    return run


def test_a_run_uses_its_table_by_default_and_records_the_ratio(tiny_run, tmp_path):
    from cryostream.denoise import denoise

    mics, truths = tiny_run.sim.micrographs, tiny_run.sim.truths
    denoise(tiny_run.run, mics, tmp_path / "plain", config=DenoiseConfig(ensemble=False))
    # fit a one-row table on the run's own outputs against the truth (in-sample): the
    # network's output, and the default gain's (the correction first: a fit's run)
    raw = DenoiseConfig.raw(n2n_correction=True)
    denoise(tiny_run.run, mics, tmp_path / "raw", config=raw)
    sums = []
    for mic, truth in zip(mics, truths, strict=True):
        y = mrcfile.read(mic)
        p = np.float32(np.percentile(y, load_record(tiny_run.run).percentile))
        before = mrcfile.read(tmp_path / "raw" / mic.name) / p
        after = mrcfile.read(tmp_path / "plain" / mic.name) / p
        sums.append(weight_sums(before, after, y / p, mrcfile.read(truth) / p, _noise(y / p)))
    table = fit_learned_weights(sums, rows=1).to_dict()
    run = _with_table(tiny_run, tmp_path, {"single": table})
    record = load_record(run)
    assert weights_for(record, ensemble=False) is not None and weights_for(record, True) is None
    assert DenoiseConfig(ensemble=False).for_run(record).learned_weights
    assert not DenoiseConfig(ensemble=True).for_run(record).learned_weights  # no table for it
    assert not DenoiseConfig(ensemble=False, ctf_gain=False).for_run(record).learned_weights
    assert DenoiseConfig(ensemble=False, ctf_gain=False, wiener_gain=True).for_run(
        record).learned_weights
    with pytest.raises(ConfigError, match="weighs the Wiener gain"):
        DenoiseConfig(ctf_gain=False, learned_weights=True)
    with pytest.raises(ConfigError, match="no table of learned weights for the ensemble"):
        DenoiseConfig(ensemble=True, learned_weights=True).for_run(record)

    denoise(run, mics, tmp_path / "weighted", config=DenoiseConfig(ensemble=False))
    errors = []
    for folder in ("plain", "weighted"):  # the shared run has no table: no weights by default
        made = json.loads((tmp_path / folder / mics[0].with_suffix(".json").name).read_text())
        assert made["config"]["learned_weights"] == (folder == "weighted")
        assert ("learned_weights_snr" in made["found"]) == (folder == "weighted")
        errors.append(sum(float(np.sum((mrcfile.read(tmp_path / folder / m.name)
                                        - mrcfile.read(t)) ** 2))
                          for m, t in zip(mics, truths, strict=True)))
    assert errors[1] < errors[0]


def test_a_run_takes_the_rows_of_its_micrographs_pixel_size(tiny_run, tmp_path):
    from cryostream.denoise import denoise

    mics = tiny_run.sim.micrographs[:1]
    with mrcfile.open(mics[0], permissive=True) as mrc:
        size = float(mrc.voxel_size.x)
    one = {b: LearnedWeights(snr=(1.0,), linear=_rows(1.0, n=1), rest=_rows(b, n=1)).to_dict()
           for b in (0.0, 1.0)}
    # the micrograph's size keeps none of the rest; ten times its size keeps all of it
    by_size = LearnedWeights(snr=(1.0, 1.0), linear=_rows(1.0, step=0), rest=_rows(0.0, step=1),
                             pixel_size=(size, 10 * size)).to_dict()
    outputs = {}
    for name, table in (("none", one[0.0]), ("all", one[1.0]), ("by_size", by_size)):
        run = _with_table(tiny_run, tmp_path / name, {"single": table})
        denoise(run, mics, tmp_path / name / "out", config=DenoiseConfig(ensemble=False))
        outputs[name] = mrcfile.read(tmp_path / name / "out" / mics[0].name)
    assert np.abs(outputs["none"] - outputs["all"]).max() > 1e-3 * np.ptp(outputs["all"])
    assert np.allclose(outputs["by_size"], outputs["none"], rtol=0, atol=1e-6 * np.ptp(outputs["none"]))


def test_old_records_load_and_bad_tables_name_the_record(tiny_run, tmp_path):
    data = json.loads((tiny_run.run / RECORD_FILE).read_text())
    assert "learned_weights" not in data  # runs trained on micrographs have none
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run, run)
    (run / RECORD_FILE).write_text(json.dumps({**data, "learned_weights": {"single": {"snr": []}}}))
    with pytest.raises(ConfigError, match="config.json"):
        load_record(run)


def test_a_known_defocus_keeps_the_learned_weights(tiny_run, tmp_path):
    """A STAR file's defocus (or one fitted on the sum of even/odd halves) replaces the fit,
    not the weights: the gain still weighs and records the micrograph's ratio."""
    from cryostream.denoise.sources import KnownDefocusGain
    from cryostream.denoise.steps import Micrograph

    table = LearnedWeights(snr=(1.0,), linear=((0.9,) * (BANDS + 1),),
                           rest=((0.5,) * (BANDS + 1),)).to_dict()
    record = load_record(_with_table(tiny_run, tmp_path, {"single": table}))
    image = mrcfile.read(tiny_run.sim.micrographs[0])
    image = image / np.float32(np.percentile(image, record.percentile))
    micrograph = Micrograph(image, 0.66, record)
    gain = KnownDefocusGain(ctf=True, learned="single", defocus=(15000.0, 15000.0, 0.0),
                            check=-1.0)
    state = gain.init(micrograph)
    assert state["table"] is not None and state["used"]
    assert gain.describe(state)["learned_weights_snr"] == pytest.approx(state["snr"], abs=1e-4)
    # the rows the ratio lies among, and in words where it lies beyond them (the end row)
    from cryostream.config import DenoiseConfig
    from cryostream.denoise.verbose import found_words

    found = gain.describe(state)
    assert found["learned_weights_rows"] == [1.0, 1.0]
    words = found_words(found, DenoiseConfig())
    assert f"signal-to-noise ratio {state['snr']:.3g} (the table's rows span 1–1: its " \
        f"{'last' if state['snr'] > 1 else 'first'} row is used)" in words, words
    assert "rows span" not in found_words({**found, "learned_weights_rows": [0.1, 1e3]},
                                          DenoiseConfig())
    estimate = image * 0.5
    weighted = gain.apply(estimate, image, state, micrograph)
    plain = dataclasses.replace(gain, learned=None)
    assert not np.allclose(weighted, plain.apply(estimate, image, plain.init(micrograph),
                                                 micrograph), atol=1e-4)


@pytest.mark.parametrize("shape", [(256, 256), (300, 420), (511, 350), (100, 1200)])
def test_the_measured_ratio_sums_every_ring_of_its_band(shape):
    """measured_snr reads only a window of the spectrum: it must hold every ring of the band,
    whichever side is the shorter."""
    import scipy.fft

    from cryostream.spectral import rfft_weight, ring_index

    rng = np.random.default_rng(5)
    _, noisy, _ = _scene(rng, shape=shape)
    f = scipy.fft.rfft2(noisy - noisy.mean())
    noise = _noise(noisy)
    ring = ring_index(shape, "rfft").astype(np.int64)
    weight = rfft_weight(shape)
    n = int(ring.max()) + 1
    power = np.bincount(ring.ravel(), (weight * np.abs(f) ** 2).ravel(), minlength=n)
    noise_power = np.bincount(ring.ravel(), weight.ravel(), minlength=n) \
        * noise.ring_power(shape, n)
    band = (np.arange(n) / min(shape) >= 0.004) & (np.arange(n) / min(shape) <= 0.03)
    whole = power[band].sum() / noise_power[band].sum() - 1
    assert measured_snr(f, shape, noise) == pytest.approx(whole, rel=1e-5)


def test_recorrupted_copies_take_the_micrographs_row(tiny_run, tmp_path):
    """The calibration's and scores' recorrupted copies go through the gain with the row of the
    micrograph's own ratio, not one measured on each copy (so a pipeline is one filter)."""
    import scipy.fft

    from cryostream.denoise.steps import Micrograph, WienerGain

    table = LearnedWeights(snr=(0.1, 100.0), linear=_rows(0.2, step=0.8),
                           rest=_rows(0.0, step=1.0), micrographs=2).to_dict()
    record = load_record(_with_table(tiny_run, tmp_path, {"single": table}))
    image = mrcfile.read(tiny_run.sim.micrographs[0])
    image = image / np.float32(np.percentile(image, record.percentile))
    micrograph = Micrograph(image, 0.66, record)
    gain = WienerGain(ctf=False, learned="single")
    state = gain.init(micrograph)
    copy = (image + np.random.default_rng(0).normal(0, 2 * image.std(), image.shape)
            ).astype(np.float32)
    own = measured_snr(scipy.fft.rfft2(copy - copy.mean()), copy.shape, micrograph.noise(copy))
    assert abs(np.log(own / state["snr"])) > 0.5  # the copy alone would take another row
    estimate = (0.5 * copy).astype(np.float32)
    table = weights_for(record, False)
    expected = match_wiener_gain(estimate, copy, micrograph.noise(copy), weights=table,
                                 snr=state["snr"])
    np.testing.assert_array_equal(gain.apply(estimate, copy, state, micrograph), expected)
    assert not np.allclose(expected, match_wiener_gain(estimate, copy, micrograph.noise(copy),
                                                       weights=table), atol=1e-4)


def test_micrographs_above_the_tables_last_row_are_noted_once_without_verbose(tiny_run, tmp_path,
                                                                            capsys):
    """A real EPU micrograph measured a ratio of 4.21 against the general model's last row of
    2.09 and was denoised without a word: only ``-v`` said its weights were the last row's.
    Without ``-v``, one note at the call's end counts and names those above the last row, says
    what that means and what to do; micrographs among the rows, or below the first (whose
    weights were fitted on such micrographs), leave no note. (The shared run's three simulated
    micrographs measure about 4.3, 4.1 and 1.8.)"""
    from cryostream.cli import main

    mics = [str(m) for m in tiny_run.sim.micrographs]
    said = {}
    for name, snr in (("within", (0.5, 8.0)), ("below", (5.0, 8.0)), ("above", (0.5, 2.0))):
        table = LearnedWeights(snr=snr, linear=_rows(0.9, step=0), rest=_rows(0.5, step=0))
        run = _with_table(tiny_run, tmp_path / name, {"single": table.to_dict()})
        capsys.readouterr()
        assert main(["denoise", str(run), *mics, "-o", str(tmp_path / name / "out"),
                     "--no-ensemble"]) == 0
        said[name] = [line for line in capsys.readouterr().err.splitlines()
                      if "learned weights" in line]
    assert said["within"] == said["below"] == []
    ratios = [json.loads((tmp_path / "above" / "out" / f"sim_000{i}.json").read_text())
              ["found"]["learned_weights_snr"] for i in range(3)]
    assert [r > 2.0 for r in ratios] == [True, True, False], ratios
    assert said["above"] == [
        f"cryostream: 2 of the 3 micrographs denoised here (sim_0000.mrc, sim_0001.mrc) measure "
        f"a signal-to-noise ratio of {min(ratios[:2]):.3g}–{max(ratios[:2]):.3g}, above the last "
        "row of the model's learned weights (2), where few or none of the simulated micrographs "
        "the table was fitted on lie: the last row's weights are used as they are (each one's "
        "NAME.json gives its ratio, found.learned_weights_snr). On simulated micrographs at up to "
        "8.6 times that row's ratio, the output's FRC with the truth was higher in every band "
        "than without the learned weights, and its error within 1 % of that one's up to 5 times "
        "(3.5 % more at 8.6 times): nothing needs doing; to see the difference on yours, "
        "denoise a few with --no-learned-weights"]


def test_the_note_above_the_last_row_comes_though_the_last_micrograph_fails(tiny_run, tmp_path,
                                                                           capsys):
    """A call whose last micrograph is bad (constant: the others are denoised, then one error
    names it, status 2) still notes the denoised ones above the last row, once."""
    from cryostream.cli import main
    from tests.conftest import write_mrc

    bad = write_mrc(tmp_path / "zz_flat.mrc", np.full((160, 128), 5.0, np.float32))
    table = LearnedWeights(snr=(0.5, 2.0), linear=_rows(0.9, step=0), rest=_rows(0.5, step=0))
    run = _with_table(tiny_run, tmp_path, {"single": table.to_dict()})
    assert main(["denoise", str(run), str(tiny_run.sim.micrographs[0]), str(bad), "-o",
                 str(tmp_path / "out"), "--no-ensemble", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    (note,) = [line for line in err.splitlines() if "learned weights" in line]
    assert note.startswith("cryostream: the micrograph denoised here (sim_0000.mrc) measures a "
                           "signal-to-noise ratio of "), note
    assert err.rstrip().splitlines()[-1].startswith("cryostream denoise: error: "), err


def test_micrographs_far_above_the_last_row_are_not_told_nothing_needs_doing(tiny_run, tmp_path,
                                                                            capsys):
    """The note said 'nothing needs doing' at any ratio above the last row, from simulated
    micrographs measured at 1.7 and 3 times its ratio (then): a simulated micrograph of 1000 e/Å²
    measured 29, 14 times the general model's 2.09, and was told the same. Beyond the ratios
    measured (:data:`~cryostream.denoise.verbose.MEASURED_TIMES`) it says what was measured,
    that this far above it was not, and to compare with --no-learned-weights. (The shared
    run's micrographs measure about 4.3, 4.1 and 1.8: 10.8 times a last row of 0.4.)"""
    from cryostream.cli import main
    from cryostream.denoise.verbose import MEASURED_TIMES

    table = LearnedWeights(snr=(0.2, 0.4), linear=_rows(0.9, step=0), rest=_rows(0.5, step=0))
    run = _with_table(tiny_run, tmp_path, {"single": table.to_dict()})
    assert main(["denoise", str(run), *map(str, tiny_run.sim.micrographs), "-o",
                 str(tmp_path / "out"), "--no-ensemble"]) == 0
    (note,) = [line for line in capsys.readouterr().err.splitlines() if "learned weights" in line]
    times = max(json.loads(p.read_text())["found"]["learned_weights_snr"]
                for p in (tmp_path / "out").glob("*.json")) / 0.4
    assert times > MEASURED_TIMES
    assert "nothing needs doing" not in note, note
    assert note.endswith(
        "On simulated micrographs at up to 8.6 times that row's ratio, the output's FRC with the "
        "truth was higher in every band than without the learned weights, and its error within "
        "1 % of that one's up to 5 times (3.5 % more at 8.6 times); at up to "
        f"{times:.3g} times, as here, that was not measured: "
        "denoise a few with --no-learned-weights and compare"), note
