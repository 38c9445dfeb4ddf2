"""The binned pass: binning and back, its place in the pipeline, its weights' fit, its option."""

from __future__ import annotations

import dataclasses
import json
import shutil

import mrcfile
import numpy as np
import pytest

from cryostream import ConfigError
from cryostream.config import DenoiseConfig
from cryostream.denoise.binned import OFFSETS, bin2, binned_estimate, upsample2
from cryostream.denoise.weights import BANDS, LearnedWeights, WeightSums, fit_learned_weights
from cryostream.denoise.weights_fit import least_squares, scale_by_pixel_size
from cryostream.runs import RECORD_FILE, load_record


def _waves(shape):
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    return np.sin(2 * np.pi * x / 16 + 0.4) + np.cos(2 * np.pi * y / 32)


def test_binning_and_back_keeps_smooth_detail_in_place():
    image = _waves((64, 64))  # periodic on the grid: no edge to blur
    back = upsample2(bin2(image), image.shape)
    # all that is lost is the 2×2 mean's attenuation, cos(π f) along each axis; a value put
    # half a pixel off would leave an error of about 2π f · 0.5 ≈ 0.2 here
    y, x = np.mgrid[:64, :64].astype(np.float32)
    expected = np.cos(np.pi / 16) * np.sin(2 * np.pi * x / 16 + 0.4) \
        + np.cos(np.pi / 32) * np.cos(2 * np.pi * y / 32)
    np.testing.assert_allclose(back, expected, atol=1e-5)
    assert bin2(np.ones((65, 67), np.float32)).shape == (33, 34)
    odd = _waves((65, 67))
    assert upsample2(bin2(odd), odd.shape).shape == odd.shape
    with pytest.raises(ValueError, match="larger than twice"):
        upsample2(bin2(image), (130, 64))


def test_each_start_of_the_blocks_keeps_smooth_detail_in_place():
    """Binned from any of the four starts, and brought back each to its own blocks' centres,
    the image is the same (the 2×2 mean's attenuation alone), and so is the mean of the four;
    a start put back at another's place is half a pixel off."""
    image = _waves((64, 64))
    y, x = np.mgrid[:64, :64].astype(np.float32)
    expected = np.cos(np.pi / 16) * np.sin(2 * np.pi * x / 16 + 0.4) \
        + np.cos(np.pi / 32) * np.cos(2 * np.pi * y / 32)
    binned = [bin2(image, offset) for offset in OFFSETS]
    for offset, small in zip(OFFSETS, binned, strict=True):
        assert small.shape == (32, 32)
        np.testing.assert_allclose(upsample2([small], image.shape, [offset]), expected, atol=1e-5)
    np.testing.assert_allclose(upsample2(binned, image.shape, OFFSETS), expected, atol=1e-5)
    assert np.abs(upsample2(binned[1], image.shape) - expected).max() > 0.1  # at (0, 0)'s
    # an odd size: ⌈n / 2⌉ blocks from either start
    assert bin2(np.ones((65, 67), np.float32), (1, 1)).shape == (33, 34)
    with pytest.raises(ValueError, match="one offset per binned image"):
        upsample2(binned, image.shape, OFFSETS[:2])
    with pytest.raises(ValueError, match="offset"):
        bin2(image, (2, 0))


def test_the_binned_pass_at_four_starts_is_their_mean():
    image = (_waves((64, 48)) + 3).astype(np.float32)
    seen = []

    def network(x):
        seen.append(x)
        return x * x

    out = binned_estimate(network, image, offsets=4)
    assert len(seen) == 4 and all(x.shape == (32, 24) for x in seen)
    scale = np.float32(np.percentile(bin2(image), 95))  # the first start's, for all four
    expected = upsample2([(bin2(image, o) / scale) ** 2 * scale for o in OFFSETS], image.shape,
                         OFFSETS)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    seen.clear()
    binned_estimate(network, image, ensemble=True, offsets=4)
    assert len(seen) == 32  # the 8-fold ensemble at each start
    with pytest.raises(ValueError, match="1 or 4"):
        binned_estimate(network, image, offsets=2)


def test_the_binned_pass_runs_the_network_on_the_binned_image():
    image = (_waves((64, 48)) + 3).astype(np.float32)
    seen = []

    def network(x):
        seen.append(x)
        return x

    np.testing.assert_allclose(binned_estimate(network, image),
                               upsample2(bin2(image), image.shape), rtol=1e-5, atol=1e-5)
    # the network sees the binned image over its own 95th percentile, at half the size
    assert seen[0].shape == (32, 24) and np.percentile(seen[0], 95) == pytest.approx(1, rel=1e-5)
    np.testing.assert_allclose(binned_estimate(network, image, ensemble=True),
                               binned_estimate(network, image), atol=1e-5)
    assert len(seen) == 1 + 8 + 1


def _parts(rng, n=4000):
    """Three correlated parts, as the linear part, the rest and the binned pass are."""
    common = rng.normal(size=n) + 1j * rng.normal(size=n)
    return [common + s * (rng.normal(size=n) + 1j * rng.normal(size=n)) for s in (0.3, 1.0, 0.5)]


def _sums(parts, truth):
    """WeightSums of one band (every band the same) from the parts and the truth."""
    def dot(p, q):
        return float(np.sum((p * np.conj(q)).real))

    rows = [dot(truth, p) for p in parts] + [dot(p, p) for p in parts] \
        + [dot(parts[0], parts[1]), dot(parts[0], parts[2]), dot(parts[1], parts[2])]
    return np.repeat(np.asarray(rows)[:, None], BANDS + 1, axis=1)


def test_three_parts_are_fitted_within_their_bounds():
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(3)
    parts = _parts(rng)
    a = np.stack([np.concatenate([p.real, p.imag]) for p in parts], axis=1)
    for weights in ((0.8, 0.2, 0.5), (0.0, 0.4, 1.0), (-0.5, 0.3, 2.0), (1.0, 1.5, -0.2)):
        truth = sum(w * p for w, p in zip(weights, parts, strict=True)) \
            + 0.1 * (rng.normal(size=parts[0].size) + 1j * rng.normal(size=parts[0].size))
        got = np.asarray(least_squares(WeightSums(1.0, _sums(parts, truth))))[:, 0]
        target = np.concatenate([truth.real, truth.imag])
        best = lsq_linear(a, target, bounds=([0, 0, 0], [1.25, 1.0, 1.25])).x
        np.testing.assert_allclose(got, best, atol=1e-6)
        if all(0 <= w <= 1 for w in weights):  # inside the bounds: the weights themselves
            np.testing.assert_allclose(got, weights, atol=0.02)


def test_a_table_with_the_binned_pass_fits_scales_and_round_trips():
    rng = np.random.default_rng(4)
    sums = []
    for i in range(8):
        parts = _parts(rng)
        truth = 0.6 * parts[0] + 0.1 * parts[1] + 0.4 * parts[2]
        sums.append(WeightSums(0.1 * (i + 1), _sums(parts, truth), pixel_size=(0.5, 1.0)[i % 2]))
    table = fit_learned_weights(sums, rows=2)
    assert table.parts == ("linear", "rest", "binned") and len(table.snr) == 2
    np.testing.assert_allclose(np.asarray(table.at(0.3)), [[0.6] * 33, [0.1] * 33, [0.4] * 33],
                               atol=0.02)
    assert LearnedWeights.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    scaled = scale_by_pixel_size(table, sums, 2)
    for size in (0.5, 1.0):  # the mix of the three stays, only the amplitude follows the size
        a, b, c = scaled.at(0.3, size)
        a0, b0, c0 = table.at(0.3)
        np.testing.assert_allclose(np.stack([a / a0, b / b0, c / c0]), np.stack([a / a0] * 3),
                                   rtol=1e-9)
    with pytest.raises(ConfigError, match="different parts"):
        fit_learned_weights([sums[0], WeightSums(1.0, sums[0].sums[:5])])
    with pytest.raises(ConfigError, match="binned"):
        LearnedWeights(snr=(1.0,), linear=((1.0,) * 33,), rest=((1.0,) * 33,),
                       binned=((2.0,) * 33,))
    # which binned pass the table was fitted with: kept through its record, checked
    four = dataclasses.replace(table, binned_offsets=4)
    assert four.to_dict()["binned_offsets"] == 4 and "binned_offsets" not in table.to_dict()
    assert LearnedWeights.from_dict(json.loads(json.dumps(four.to_dict()))) == four
    assert four.for_pixel_size(1.0).binned_offsets == 4
    # … and through a table scaled per pixel-size group
    assert scale_by_pixel_size(four, sums, 2).binned_offsets == 4
    for bad, kind in ((2, None), (4, "no binned part"), (True, None), (4.0, None)):
        with pytest.raises(ConfigError, match="binned_offsets"):
            LearnedWeights(snr=(1.0,), linear=_ones(1.0), rest=_ones(1.0),
                           binned=None if kind else _ones(0.5), binned_offsets=bad)


def _ones(value):
    return ((float(value),) * (BANDS + 1),)


def _run_with(tiny_run, tmp_path, binned, offsets=1):
    """A copy of the shared run whose record holds a one-row table for one pass: all of the
    linear part and the rest, and ``binned`` of the binned pass (None: no such part), at
    ``offsets`` starts of its blocks."""
    run = tmp_path / ("r" if binned is None else f"r{binned:g}_{offsets}")
    shutil.copytree(tiny_run.run, run)
    table = LearnedWeights(snr=(1.0,), linear=_ones(1.0), rest=_ones(1.0),
                           binned=None if binned is None else _ones(binned),
                           binned_offsets=offsets)
    record = dataclasses.replace(load_record(run), learned_weights={"single": table.to_dict()})
    (run / RECORD_FILE).write_text(json.dumps(record.to_dict()))
    return run


def test_the_run_decides_the_binned_pass_from_its_table(tiny_run, tmp_path):
    with_pass, without = (load_record(_run_with(tiny_run, tmp_path, b)) for b in (0.5, None))
    assert DenoiseConfig(ensemble=False).for_run(with_pass).binned_pass
    assert not DenoiseConfig(ensemble=False).for_run(without).binned_pass
    assert not DenoiseConfig.raw().for_run(with_pass).binned_pass
    # --raw with the weights turned back on takes the pass with them
    assert DenoiseConfig.raw(wiener_gain=True, learned_weights=True).for_run(with_pass).binned_pass
    assert not DenoiseConfig(ensemble=False, learned_weights=False).for_run(with_pass).binned_pass
    with pytest.raises(ConfigError, match="--no-binned-pass.*--no-learned-weights"):
        DenoiseConfig(ensemble=False, binned_pass=False).for_run(with_pass)
    with pytest.raises(ConfigError, match="no learned weights for the binned pass"):
        DenoiseConfig(ensemble=False, binned_pass=True).for_run(without)
    with pytest.raises(ConfigError, match="keep learned_weights"):
        DenoiseConfig(binned_pass=True, learned_weights=False)
    # without the learned weights there is no binned pass to decide; with them, the run decides
    assert DenoiseConfig(n2n_correction=False, ctf_gain=True, ensemble=True,
                         learned_weights=False).resolved
    decided = DenoiseConfig(n2n_correction=False, ctf_gain=True, ensemble=False,
                            learned_weights=True)
    with pytest.raises(ConfigError, match="binned_pass left to the run"):
        decided.pipeline()
    assert decided.for_run(with_pass).pipeline().binned


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_small_images_and_large_tiles_go_through_the_network_mirrored():
    """The binned pass of a micrograph not much larger than the network's context (or under a
    --tile chosen for the full size) is smaller than both: it is mirrored out and cut back."""
    from cryostream.denoise.network import load_network, model_path
    from cryostream.denoise.tiling import auto_tile, default_halo, network_pass

    run = str(model_path("general"))
    config = load_network(run).config
    halo = default_halo(config)
    # a micrograph of 300² takes a tile no smaller than the halo
    assert auto_tile((300, 300), config) >= halo
    image = np.random.default_rng(1).random((150, 170), dtype=np.float32)  # 300² binned
    out = network_pass(run, image)
    padded = np.pad(image, ((0, halo - 150), (0, halo - 170)), mode="symmetric")
    np.testing.assert_array_equal(out, network_pass(run, padded)[:150, :170])
    assert network_pass(run, image, tile=288).shape == image.shape


def test_denoise_mixes_the_binned_pass_in_by_the_table(tiny_run, tmp_path):
    from cryostream.denoise import denoise
    from cryostream.denoise.tiling import network_pass

    mic = tiny_run.sim.micrographs[0]
    outputs = {}
    for binned in (None, 0.0, 0.5):
        run = _run_with(tiny_run, tmp_path, binned)
        out = tmp_path / f"out_{binned}"
        denoise(run, [mic], out, config=DenoiseConfig(ensemble=False, ctf_gain=False,
                                                      wiener_gain=True))
        outputs[binned] = mrcfile.read(out / mic.name)
        made = json.loads((out / mic.with_suffix(".json").name).read_text())
        assert made["config"]["binned_pass"] == (binned is not None)
        with mrcfile.open(out / mic.name) as mrc:
            labels = b" ".join(bytes(label) for label in mrc.header.label).decode()
        assert ("binned_pass" in labels) == (binned is not None)
    # a weight of 0 adds nothing; 0.5 of the binned pass changes the output
    np.testing.assert_array_equal(outputs[0.0], outputs[None])
    change = outputs[0.5] - outputs[None]
    # … by half the binned pass's output (its mean removed): the network on the binned image
    y = mrcfile.read(mic).astype(np.float32)
    p = np.float32(np.percentile(y, load_record(tiny_run.run).percentile))
    expected = binned_estimate(lambda im: network_pass(str(tiny_run.run), im), y / p)
    expected = 0.5 * (expected - expected.mean()) * p
    np.testing.assert_allclose(change, expected, atol=1e-4 * float(np.ptp(expected)))
    # a table fitted with the pass at the blocks' four starts gets that pass
    denoise(_run_with(tiny_run, tmp_path, 0.5, offsets=4), [mic], tmp_path / "out_4",
            config=DenoiseConfig(ensemble=False, ctf_gain=False, wiener_gain=True))
    change = mrcfile.read(tmp_path / "out_4" / mic.name) - outputs[None]
    four = binned_estimate(lambda im: network_pass(str(tiny_run.run), im), y / p, offsets=4)
    four = 0.5 * (four - four.mean()) * p
    np.testing.assert_allclose(change, four, atol=1e-4 * float(np.ptp(four)))
    assert np.abs(four - expected).max() > 0.01 * float(np.ptp(expected))


def test_an_output_made_before_the_binned_pass_is_still_finished(tmp_path):
    """A ``NAME.json`` written before the option existed has no ``binned_pass``: it reads as
    made without it, so a run again resumes instead of asking for --overwrite."""
    from cryostream.denoise.outputs import same_record

    record = {"run": "r", "input": "i.mrc", "given": None,
              "config": {"ensemble": True, "binned_pass": False}}
    (tmp_path / "old.json").write_text(json.dumps({**record, "config": {"ensemble": True}}))
    assert same_record(tmp_path / "old.json", record)
    assert not same_record(tmp_path / "old.json",
                           {**record, "config": {"ensemble": True, "binned_pass": True}})
