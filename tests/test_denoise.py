"""Whole-micrograph denoising: tiles equal the whole image, steps compose as their maths,
MRC output that records how it was made, truth-free ranking."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import scipy.ndimage
from conftest import TINY_TRAIN, write_mrc

import cryostream
from cryostream import PrepareConfig
from cryostream.baselines import wiener_measured
from cryostream.cli import main
from cryostream.config import DenoiseConfig
from cryostream.denoise import denoise, rank_runs
from cryostream.denoise.corrections import (
    clamp_negative_rings,
    dihedral_mean,
    keep_input_mean,
    match_wiener_gain,
    n2n_alpha2,
    n2n_correct,
)
from cryostream.denoise.network import load_network
from cryostream.denoise.scores import calibrate_rings, recorruption_score
from cryostream.denoise.tiling import (
    MAX_BATCH_PIXELS,
    auto_tile,
    backend,
    count_windows,
    default_halo,
    denoise_array,
    device_batch,
    network_pass,
    receptive_radius,
    reused_windows,
    tile_cores,
)
from cryostream.matched import estimate_noise, matched_noise_image, tile_for
from cryostream.metrics import wiener_oracle
from cryostream.runs import load_record
from cryostream.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The shared run (conftest.py) and the simulation its store was made of: three
    160 × 128 px micrographs."""
    return tiny_run.run, tiny_run.sim


def test_tile_cores_cover_the_axis_once():
    for length in (64, 100, 129, 500):
        cores = tile_cores(length, 64, 8)
        assert cores[0][1] == 0 and cores[-1][2] == length
        assert all(a[2] == b[1] for a, b in zip(cores, cores[1:], strict=False))
        assert all(w % 8 == 0 and w <= c0 and c1 <= w + 64 + 8 for w, c0, c1 in cores)


def test_auto_tile_sends_the_fewest_pixels_through_the_network():
    config = TrainConfig(model="unet").model_config()
    halo = default_halo(config)
    m = config.multiple
    for shape, window in (((7676, 7420), 4352), ((7676, 7420), 1536), ((4096, 3000), 2048)):
        tile = auto_tile(shape, config, max_window=window)
        assert tile % m == 0 and tile + 2 * halo <= window
        cost = count_windows(shape, tile, m) * (tile + 2 * halo) ** 2
        for other in range(m, min(*shape, window - 2 * halo) + 1, m):  # every allowed tile
            assert count_windows(shape, other, m) * (other + 2 * halo) ** 2 >= cost
        # the window count agrees with the bands and cores denoise_array really runs
        bands = [tile] * (shape[0] // tile - 1) + [shape[0] - tile * (shape[0] // tile - 1)]
        assert count_windows(shape, tile, m) == sum(len(tile_cores(b, tile, m)) for b in bands) * len(
            tile_cores(shape[1], tile, m))
    assert auto_tile((7676, 7420), config, max_window=4352) == 3840  # 4 windows of 4352²


def test_tiles_match_the_whole_micrograph(trained):
    run, sim = trained
    network = load_network(str(run))
    apply, params, config = network.apply, network.params, network.config
    halo = default_halo(config)
    assert halo >= receptive_radius(config) and halo % config.multiple == 0
    stack = cryostream.open_micrographs(sim.micrographs[:2], chunks=37)
    image = stack.values
    p = np.percentile(image, 95, axis=(1, 2))
    tiled = denoise_array(stack.data, run, p, tile=64, halo=halo, batch_size=3).compute()
    auto = denoise_array(stack.data, run, p).compute()  # tile chosen for the backend
    np.testing.assert_allclose(auto, tiled, rtol=1e-4, atol=1e-4 * np.abs(tiled).max())
    for i in range(2):
        norm = image[i] / np.float32(p[i])
        padded = np.pad(norm, halo, mode="symmetric")
        m = config.multiple
        extra = [(-s) % m for s in padded.shape]
        padded = np.pad(padded, ((0, extra[0]), (0, extra[1])))
        whole = np.asarray(apply(params, padded[None, ..., None]))[0, ..., 0]
        whole = whole[halo : halo + image.shape[1], halo : halo + image.shape[2]]
        np.testing.assert_allclose(tiled[i], whole, rtol=1e-4, atol=1e-4 * np.abs(whole).max())


def test_windows_are_cut_as_from_the_mirror_padded_micrograph(monkeypatch):
    from cryostream.denoise import copies as tiling

    monkeypatch.setattr(tiling, "_COPY_MIN", 4096)  # most pieces on the copy threads
    monkeypatch.setattr(tiling, "COPY_THREADS", 3)
    monkeypatch.setattr(tiling, "_pool", [])  # a pool of 3 for this test alone
    for n in range(1, 13):  # every piece list, against NumPy's mirror padding, on one axis
        axis = np.arange(n)
        for pad in range(n + 1):
            padded = np.pad(axis, pad, mode="symmetric")
            for start in range(-pad, n + pad):
                for length in range(0, n + pad - start + 1):
                    got = np.full(length, -1)
                    for to, source in tiling.mirrored(start, length, n):
                        got[to] = axis[source]
                    np.testing.assert_array_equal(got, padded[start + pad : start + pad + length])
    rng = np.random.default_rng(3)
    for shape, side, pad in (((37, 53), 24, 20), ((2100, 1100), 1400, 300)):  # the large one
        image = rng.normal(size=shape).astype(np.float32)  # goes in blocks on threads
        padded = np.pad(image, pad, mode="symmetric")
        for row in (-pad, -pad + 5, -1, 0, 3, shape[0] - side, shape[0] + pad - side):
            for col in (-pad, -7, 0, shape[1] - side + 4, shape[1] + pad - side):
                window = np.full((side, side), np.nan, np.float32)
                tiling.cut_mirrored(image, row, col, window)
                np.testing.assert_array_equal(
                    window, padded[row + pad : row + pad + side, col + pad : col + pad + side])


def test_a_micrograph_in_memory_goes_through_the_network_as_a_dask_stack_does(trained):
    run, sim = trained
    stack = cryostream.open_micrographs(sim.micrographs[:2], chunks=37)
    p = np.percentile(stack.values, 95, axis=(1, 2))
    lazy = denoise_array(stack.data, run, p, tile=64, batch_size=3).compute()
    for i in range(2):
        here = network_pass(str(run), stack.values[i] * np.float32(1.0 / p[i]), tile=64,
                            batch_size=3)
        np.testing.assert_array_equal(here, lazy[i])


def test_reused_window_buffers_give_the_same_output_and_are_released(trained):
    """Two host buffers per thread, alternating between batches (several per pass here: 3 × 3
    windows of 64² in batches of 2), across passes over different micrographs and Dask threads."""
    from cryostream.denoise import copies as tiling

    run, sim = trained
    stack = cryostream.open_micrographs(sim.micrographs, chunks=37)
    p = np.percentile(stack.values, 95, axis=(1, 2))
    images = [stack.values[i] * np.float32(1.0 / p[i]) for i in range(3)]
    fresh = [network_pass(str(run), im, tile=64, batch_size=2) for im in images]
    lazy = denoise_array(stack.data, run, p, tile=64, batch_size=2).compute()
    with reused_windows():
        for _ in range(2):
            for im, want in zip(images, fresh, strict=True):
                np.testing.assert_array_equal(network_pass(str(run), im, tile=64, batch_size=2),
                                              want)
        with reused_windows():  # nested: the outer one keeps the buffers
            kept = denoise_array(stack.data, run, p, tile=64, batch_size=2).compute(
                scheduler="threads", num_workers=3)
        assert tiling._reuse["buffers"]
    np.testing.assert_array_equal(kept, lazy)
    assert not tiling._reuse["buffers"] and not tiling._reuse["depth"]


def test_denoise_writes_mrc_and_restores_scale(trained, tmp_path):
    run, sim = trained
    out = denoise(run, sim.micrographs, tmp_path / "den", config=DenoiseConfig.raw(tile=64))
    assert out.dims == ("micrograph", "y", "x") and out.shape == (3, 160, 128)
    with mrcfile.open(tmp_path / "den" / "sim_0000.mrc") as m:
        assert m.data.dtype == np.float32 and m.data.shape == (160, 128)
        assert float(m.voxel_size.x) == pytest.approx(0.6575)
        assert any("cryostream denoise run" in label for label in m.get_labels())
        noisy = mrcfile.read(sim.micrographs[0])
        p95 = np.percentile(noisy, 95)
        stack = cryostream.open_micrographs(sim.micrographs[:1])
        normalised = denoise_array(stack.data, run, [p95], tile=64).compute()[0]
        np.testing.assert_allclose(m.data, normalised * np.float32(p95), rtol=1e-5)  # own scale
    record = json.loads((tmp_path / "den" / "sim_0000.json").read_text())
    assert record["config"] == {**{f: getattr(DenoiseConfig.raw(), f) for f in record["config"]},
                                "tile": 64, "binned_pass": False}  # decided for the run: off
    assert record["run"] == str(run.absolute()) and record["input"] == str(sim.micrographs[0])
    # no files; the same result
    again = denoise(run, sim.micrographs, config=DenoiseConfig.raw(tile=64), workers=1)
    np.testing.assert_allclose(again.values, out.values, rtol=1e-5)


def test_micrographs_given_as_links_are_named_after_the_links_in_memory_too(trained, tmp_path):
    """A folder of symbolic links denoised without an output folder: the stack's micrographs
    are named as the files written would be (``mic_A``, after the link; not ``sim_0000``,
    its target's name)."""
    run, sim = trained
    (tmp_path / "links").mkdir()
    for i, name in enumerate(("mic_A", "mic_B")):
        (tmp_path / "links" / f"{name}.mrc").symlink_to(sim.micrographs[i])
    config = DenoiseConfig.raw(tile=64)
    written = denoise(run, tmp_path / "links", tmp_path / "den", config=config)
    in_memory = denoise(run, tmp_path / "links", config=config)
    assert list(written.micrograph.values) == ["mic_A", "mic_B"]
    assert list(in_memory.micrograph.values) == ["mic_A", "mic_B"]
    np.testing.assert_allclose(in_memory.values, written.values, rtol=1e-5)


def test_a_micrograph_not_in_counts_is_denoised_with_a_warning(trained, tmp_path):
    """A micrograph normalised to mean 0 by another program: the network learned counts, and a
    newcomer measured it denoised less well (correlation with the truth 0.720 against 0.739),
    so a warning names it and the way out; it is still denoised."""
    import mrcfile

    from cryostream.denoise.micrograph import CountsWarning

    run, sim = trained
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    zero = write_mrc(tmp_path / "zero.mrc", image - image.mean(), pixel_size=0.6575)
    with pytest.warns(CountsWarning, match=r"zero\.mrc: holds pixels far below zero .*so it is "
                      r"not in electron counts \(normalised by another program\?\)"):
        out = denoise(run, [zero], tmp_path / "den", config=DenoiseConfig.raw(tile=64),
                      workers=1)
    assert out.shape[0] == 1 and (tmp_path / "den" / "zero.mrc").is_file()


def test_a_rerun_keeps_finished_outputs_and_remakes_one_whose_input_changed(trained, tmp_path,
                                                                           caplog):
    """Motion correction run again rewrites a micrograph under the same name: the rerun
    notices (its size or time of modification), says so and denoises it again; the others
    are kept as they were. An output recorded before inputs were stamped is kept too."""
    import logging
    import os
    import shutil

    run, sim = trained
    inputs = []
    for i, source in enumerate(sim.micrographs[:2]):
        inputs.append(tmp_path / f"mic_{i}.mrc")
        shutil.copy(source, inputs[-1])
    out = tmp_path / "den"
    config = DenoiseConfig.raw(tile=64)
    denoise(run, inputs, out, config=config, workers=1)
    before = {p.name: p.read_bytes() for p in out.glob("mic_*.mrc")}
    # the first micrograph remade: other pixels, a later time
    write_mrc(inputs[0], mrcfile.read(sim.micrographs[2]), pixel_size=0.6575)
    stat = inputs[0].stat()
    os.utime(inputs[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO, logger="cryostream"):
        again = denoise(run, inputs, out, config=config, workers=1)
    assert "mic_0.mrc: the input or the model changed" in caplog.text
    assert again.attrs["kept"] == 1
    assert (out / "mic_0.mrc").read_bytes() != before["mic_0.mrc"]
    assert (out / "mic_1.mrc").read_bytes() == before["mic_1.mrc"]
    fresh = denoise(run, inputs[:1], config=config, workers=1)
    np.testing.assert_array_equal(mrcfile.read(out / "mic_0.mrc"), fresh.values[0])
    # a record without stamps (an older cryostream) still counts as finished
    sidecar = out / "mic_1.json"
    record = json.loads(sidecar.read_text())
    del record["input_files"]
    sidecar.write_text(json.dumps(record))
    assert denoise(run, inputs, out, config=config, workers=1).attrs["kept"] == 2
    # and one written before the precision was an option: computed in float32, as its
    # record says, it is the default's output
    del record["config"]["precision"]
    sidecar.write_text(json.dumps(record))
    assert denoise(run, inputs, out, config=config, workers=1).attrs["kept"] == 2


def test_a_rerun_after_the_run_was_trained_further_denoises_again(trained, tmp_path, caplog):
    """Training a run further (cryostream fit or train again) gives it a new last checkpoint:
    outputs of the older one are made again, with a note, not kept as if current. Each
    output's record says which checkpoint made it."""
    import logging
    import shutil

    from cryostream.denoise.network import load_network

    source_run, sim = trained
    run = tmp_path / "run"
    shutil.copytree(source_run, run)
    out = tmp_path / "den"
    config = DenoiseConfig.raw(tile=64)
    denoise(run, sim.micrographs[:1], out, config=config, workers=1)
    record = json.loads(next(out.glob("*.json")).read_text())
    last = record["model_files"]["checkpoint"]
    assert isinstance(last, int) and (run / "checkpoints" / str(last)).is_dir()
    assert denoise(run, sim.micrographs[:1], out, config=config, workers=1).attrs["kept"] == 1
    # a later checkpoint (here the same parameters under a later step)
    shutil.copytree(run / "checkpoints" / str(last), run / "checkpoints" / str(last + 1))
    load_network.cache_clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        again = denoise(run, sim.micrographs[:1], out, config=config, workers=1)
    assert "the input or the model changed" in caplog.text and again.attrs["kept"] == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["model_files"]["checkpoint"] == last + 1


def test_n2n_correction_recovers_the_clean_conditional_mean():
    # x ~ N(0, s²) clean, y = x + n (the "target"), z = y + m with var(m) = α² var(n).
    s2, n2, alpha2 = 2.0, 1.0, 0.5
    z = np.linspace(-3, 3, 7)
    f = z * (s2 + n2) / (s2 + n2 + alpha2 * n2)  # E[y | z], what the network learns
    clean = z * s2 / (s2 + n2 + alpha2 * n2)  # E[x | z]
    np.testing.assert_allclose(n2n_correct(f, z, alpha2), clean)
    with pytest.raises(cryostream.ConfigError):
        n2n_correct(f, z, 0)


def test_n2n_correction_keeps_the_input_mean():
    rng = np.random.default_rng(5)
    clean = 0.8 + 0.02 * rng.standard_normal((128, 128)).astype(np.float32)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
    output = (noisy + 0.25 * clean) / 1.25 + np.float32(0.002)  # E[y | y] with an offset of 0.002
    free = n2n_correct(output, noisy, 0.25)
    kept = keep_input_mean(free, noisy)
    assert free.mean() - clean.mean() == pytest.approx(0.01, abs=1e-5)  # offset × (1 + α²) / α²
    assert kept.mean(dtype=np.float64) == pytest.approx(noisy.mean(dtype=np.float64), abs=1e-6)
    assert kept.dtype == np.float32
    assert np.mean((kept - clean) ** 2) < np.mean((free - clean) ** 2) - 0.9e-4
    np.testing.assert_allclose(kept - kept.mean(), free - free.mean(), atol=1e-5)


def _field_and_noise(seed: int, shape=(512, 512), sigma: float = 0.1):
    """A smooth clean field (std 0.05 around 1) and the same plus white noise of ``sigma``."""
    rng = np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    clean = np.fft.ifft2(np.fft.fft2(rng.normal(size=shape)) * np.exp(-(k / 0.03) ** 2)).real
    clean = (1 + clean / clean.std() * 0.05).astype(np.float32)
    return clean, (clean + rng.normal(0, sigma, shape)).astype(np.float32)


def test_wiener_gain_fixes_the_linear_response_and_keeps_the_rest():
    clean, noisy = _field_and_noise(6)
    noise = estimate_noise(noisy, 1.0)

    def mse(a):
        return float(np.mean((a - clean) ** 2))

    wiener = mse(wiener_oracle(noisy, clean))
    measured = mse(wiener_measured(noisy, noise))  # 1.24 × the oracle's here (no truth)
    # a mis-scaled linear output: only its linear response is wrong, and that is replaced
    blurred = (0.5 * scipy.ndimage.gaussian_filter(noisy - 1, 3) + 1).astype(np.float32)
    fixed = match_wiener_gain(blurred, noisy, noise)
    assert mse(fixed) < 1.02 * measured < 0.2 * mse(blurred)
    assert float(fixed.mean()) == pytest.approx(float(noisy.mean()), abs=1e-6)
    # an output that knows the truth beyond any linear filter keeps that knowledge
    knowing = clean + 0.3 * (noisy - clean)
    assert mse(match_wiener_gain(knowing, noisy, noise)) < 0.5 * wiener  # 0.32 × here


def test_calibration_drops_what_is_beyond_linear_only_when_it_is_error():
    clean, noisy = _field_and_noise(7)
    noise = estimate_noise(noisy, 1.0)

    def mse(a):
        return float(np.mean((a - clean) ** 2))

    def linear(img):
        return wiener_measured(img, estimate_noise(img, 1.0))

    # an output whose part beyond the linear filter is pure error (a fixed pattern times the
    # input's own fine structure): recorruption finds its weight near zero
    pattern = np.random.default_rng(8).standard_normal(noisy.shape).astype(np.float32)

    def harmful(img):
        return linear(img) + 0.5 * (img - scipy.ndimage.gaussian_filter(img, 1.0)) * pattern

    out, weights = calibrate_rings(harmful, noisy, noise, draws=3)
    assert mse(out) < 0.5 * mse(harmful(noisy))
    assert weights[0] == 1.0 and np.all((weights >= 0) & (weights <= 3.0))
    assert float(out.mean()) == pytest.approx(float(harmful(noisy).mean()), abs=1e-6)

    # an output that holds the truth beyond the linear filter keeps it
    def knowing(img):
        return 0.3 * linear(img) + 0.7 * clean

    kept, weights = calibrate_rings(knowing, noisy, noise, draws=3)
    assert mse(kept) < 1.1 * mse(knowing(noisy))
    with pytest.raises(cryostream.ConfigError):
        calibrate_rings(linear, noisy, noise, draws=0)


def test_ring_clamp_removes_anti_correlated_rings():
    rng = np.random.default_rng(4)
    k = np.hypot(np.fft.fftfreq(256)[:, None], np.fft.fftfreq(256)[None, :])
    clean = np.fft.ifft2(np.fft.fft2(rng.normal(size=(256, 256))) * np.exp(-(k / 0.05) ** 2)).real
    clean = 1 + clean / clean.std() * 0.1
    noisy = clean + rng.normal(0, 0.1, clean.shape)
    # a network whose transfer dips under 1/2 at high frequency: the corrected gain goes negative
    transfer = np.where(k < 0.1, 0.9, 0.4)
    output = np.fft.ifft2(np.fft.fft2(noisy - 1) * transfer).real + 1
    plain = n2n_correct(output, noisy, 1.0)
    clamped = clamp_negative_rings(plain, noisy)

    def mse(a):
        return float(np.mean((a - clean) ** 2))

    assert mse(clamped) < 0.7 * mse(plain)  # 0.61e-3 against 1.00e-3 here
    assert clamped.mean() == pytest.approx(plain.mean(), abs=1e-5)
    # every ring positively correlated: nothing changes
    np.testing.assert_allclose(clamp_negative_rings(noisy, noisy), noisy, atol=1e-5)


def test_cli_denoise(trained, tmp_path, capsys):
    run, sim = trained
    assert main(["denoise", str(run), str(sim.micrographs[0]), "-o", str(tmp_path / "d"),
                 "--tile", "64", "--raw", "--n2n-correction", "--n2n-clamp", "--wiener-gain",
                 "--calibrate", "1"]) == 0
    assert "denoised 1 micrograph into" in capsys.readouterr().out
    assert (tmp_path / "d" / "sim_0000.mrc").exists()


def test_the_network_computes_in_float32_unless_bf16_is_asked(trained, tmp_path, capsys):
    """``--precision bf16`` is recorded in each output's NAME.json; a CPU computes it in
    float32 (no bfloat16 arithmetic), so the output is the default's, and one model read
    serves both. A precision that is neither is refused before anything is written."""
    run, sim = trained
    outputs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["denoise", str(run), str(sim.micrographs[0]), "-o", str(out), "--tile",
                     "64", "--raw", "--precision", precision]) == 0
        record = json.loads((out / "sim_0000.json").read_text())
        assert record["config"]["precision"] == precision
        assert record["computed"] == {"backend": "cpu", "dtype": "float32"}
        outputs[precision] = mrcfile.read(out / "sim_0000.mrc")
    np.testing.assert_array_equal(outputs["fp32"], outputs["bf16"])
    assert load_network(str(run), "bf16") is load_network(str(run))
    with pytest.raises(SystemExit, match="2"):
        main(["denoise", str(run), str(sim.micrographs[0]), "-o", str(tmp_path / "x"),
              "--precision", "fp16"])
    assert "--precision" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(cryostream.ConfigError, match=r"precision='fp16' \(--precision\): "
                       "must be fp32 or bf16"):
        DenoiseConfig(precision="fp16")
    with pytest.raises(cryostream.ConfigError, match="precision='fp16': one of bf16, fp32"):
        load_network(str(run), "fp16")


def test_bf16_reaches_the_network_where_a_gpu_computes_it(trained, monkeypatch):
    """Where JAX runs on a GPU (its backend faked here: XLA on the CPU computes bfloat16 too,
    slowly), ``precision="bf16"`` computes every pass of ``denoise``'s pipeline in bfloat16
    and takes twice the windows per device call; the default stays float32, as on a CPU."""
    import jax

    from cryostream.denoise.micrograph import network_fn
    from cryostream.denoise.tiling import window_layout

    run, sim = trained
    image = np.asarray(mrcfile.read(sim.micrographs[0]), np.float32)[:128, :128]
    image /= np.percentile(image, 95)
    plain = network_fn(str(run), DenoiseConfig.raw(tile=64))(image)
    load_network.cache_clear()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    try:
        assert load_network(str(run)).compute_dtype == "float32"
        assert load_network(str(run), "bf16").compute_dtype == "bfloat16"
        out = {p: network_fn(str(run), DenoiseConfig.raw(tile=64, precision=p))(image)
               for p in ("fp32", "bf16")}
        np.testing.assert_allclose(out["fp32"], plain, rtol=1e-5, atol=1e-6)
        assert 1e-4 < np.abs(out["bf16"] - out["fp32"]).max() < 0.05 * np.abs(plain).max()
        side = 64 + 2 * default_halo(load_network(str(run)).config)
        monkeypatch.setitem(MAX_BATCH_PIXELS, "gpu", side**2)  # one float32 window per call
        batch = {p: window_layout(str(run), (512, 512), 64, None, 8, p)[2]
                 for p in ("fp32", "bf16")}
        assert batch == {"fp32": 1, "bf16": 2}
    finally:
        load_network.cache_clear()  # no network built for the fake GPU outlives the test


def test_a_bfloat16_network_takes_twice_the_pixels_per_device_call():
    """The memory cap per device call counts float32 activations; bfloat16's take half the
    bytes, so twice the windows fit (on a GPU 4352² in float32, two in bfloat16: about 12 GB
    at the peak per micrograph either way)."""
    side = 1536
    assert device_batch(64, 64, side) == MAX_BATCH_PIXELS[backend()] // side**2
    assert device_batch(64, 64, side, "bfloat16") == 2 * device_batch(64, 64, side)
    assert device_batch(64, 1, side, "bfloat16") == 1  # never more windows than there are


def test_dihedral_mean_is_the_mean_of_the_eight_passes():
    """The ensemble's mean: each of the 8 rotations and flips through the network and back."""
    image = np.random.default_rng(3).normal(1, 0.1, (40, 30)).astype(np.float32)
    calls = []
    mean = dihedral_mean(lambda t: calls.append(t.shape) or t * 2, image)
    np.testing.assert_allclose(mean, image * 2, rtol=1e-6)
    assert calls.count((40, 30)) == 4 and calls.count((30, 40)) == 4

    # a network that is not equivariant: it adds its input's top-left pixel everywhere; the 8
    # orientations bring each corner of the image to the top left twice
    def corner(t):
        return t + t[0, 0]

    corners = image[0, 0] + image[0, -1] + image[-1, 0] + image[-1, -1]
    np.testing.assert_allclose(dihedral_mean(corner, image), image + corners / 4, rtol=1e-6)


@pytest.mark.slow
def test_ensemble_is_the_dihedral_mean_and_equivariant(trained, tmp_path):
    """``--ensemble``: the mean of the 8 rotated and flipped passes, so rotating the input
    rotates the output (one pass alone need not)."""
    from cryostream.io.mrc import write_micrograph

    run, sim = trained
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    turned = tmp_path / "turned.mrc"
    write_micrograph(turned, np.ascontiguousarray(np.rot90(image)), 1.0)
    def out(source, **options):
        return denoise(run, [source], config=DenoiseConfig.raw(tile=64, **options)).values[0]

    np.testing.assert_allclose(np.rot90(out(sim.micrographs[0], ensemble=True)),
                               out(turned, ensemble=True), atol=1e-5)
    assert np.abs(np.rot90(out(sim.micrographs[0])) - out(turned)).max() > 1e-3


def test_evaluation_report_of_the_test_split(tiny_run, tmp_path, capsys):
    """``cryostream evaluate RUN STORE``: the test split's numbers in report.md and
    report.json, the noisy input's PSNR that of the store's patches, and the training curve."""
    import h5py

    assert main(["evaluate", str(tiny_run.run), str(tiny_run.store), "-o", str(tmp_path / "rep"),
                 "--patches", "6"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'rep'}/report.md")
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    split = report["test_split"]
    with h5py.File(tiny_run.store) as f:
        noisy = f["test"]["input"][:6].astype(np.float64)
        clean = f["test"]["target"][:6].astype(np.float64)
    assert split["patches"] == 6
    assert split["noisy_psnr"] == pytest.approx(10 * np.log10(1 / np.mean((noisy - clean) ** 2)),
                                                abs=1e-4)
    assert split["gaussian_psnr"] > split["noisy_psnr"] + 3  # σ > 0 here
    text = (tmp_path / "rep" / "report.md").read_text()
    assert f"| noisy input | {split['noisy_psnr']:.2f} |" in text
    assert f"| cryostream model | {split['model_psnr']:.2f} |" in text
    import matplotlib.image  # the run's loss.png, marked as the report's (its PNG text)

    np.testing.assert_array_equal(matplotlib.image.imread(tmp_path / "rep" / "training.png"),
                                  matplotlib.image.imread(tiny_run.run / "loss.png"))
    assert "simulated" not in report and "residual" not in report


@pytest.mark.slow
def test_evaluation_report(trained, tmp_path, capsys):
    run, sim = trained
    store = run.parent / "data.h5"
    assert main(["evaluate", str(run), str(store), "-o", str(tmp_path / "rep"), "--truth",
                 str(sim.root), "--micrographs", "1", "--tile", "64", "--patches", "8",
                 "--residual", str(sim.micrographs[0])]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'rep'}/report.md")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "best Gaussian low-pass" in text and "model + N2N correction" in text
    assert "## Residual of the denoised micrographs" in text
    assert (tmp_path / "rep" / "residual_0.png").read_bytes()[:4] == b"\x89PNG"
    for figure in ("crops.png", "frc.png", "spectra.png", "training.png"):
        assert (tmp_path / "rep" / figure).read_bytes()[:4] == b"\x89PNG"
    import json

    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    row = report["simulated"][0]
    assert row["noisy"]["psnr"] < row[next(k for k in row if k.startswith("Gaussian"))]["psnr"]
    assert row["oracle Wiener"]["psnr"] > row["noisy"]["psnr"]


@pytest.mark.slow
def test_denoise_on_a_local_cluster(trained, tmp_path, notes, monkeypatch):
    run, sim = trained
    tiled = DenoiseConfig.raw(tile=64)
    here = denoise(run, sim.micrographs[:2], tmp_path / "a", config=tiled)
    notes.clear()
    there = denoise(run, sim.micrographs[:2], tmp_path / "b", config=tiled, cluster_workers=2)
    np.testing.assert_allclose(there.values, here.values, rtol=1e-5)
    said = next(n for n in notes if n.startswith("denoising 2 micrographs"))
    assert "in flight" not in said  # the cluster's workers, not threads here
    # a bad micrograph does not stop the others on the cluster either: all of them named last
    bad = tmp_path / "nan.mrc"
    with mrcfile.new(bad) as f:
        f.set_data(np.full((160, 128), np.nan, np.float32))
        f.voxel_size = 0.66
    with pytest.raises(cryostream.InvalidMicrographError, match=r"1 of 2 micrographs.*nan\.mrc"):
        denoise(run, [bad, sim.micrographs[2]], tmp_path / "c", config=tiled, cluster_workers=2)
    assert (tmp_path / "c" / sim.micrographs[2].name).is_file()
    # memory that holds no window, in the workers: one error, the queue dropped, no folder
    from cryostream.denoise.memory import ENV

    monkeypatch.setenv(ENV, "0.001")  # the workers started now inherit it
    with pytest.raises(cryostream.ConfigError, match=f"set the environment variable {ENV} higher"):
        denoise(run, sim.micrographs[:3], tmp_path / "d", config=tiled, cluster_workers=1)
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_a_run_refused_on_a_scheduler_waits_for_the_micrographs_under_way(trained, tmp_path,
                                                                          notes):
    """An error every micrograph would meet, raised on a worker while another micrograph is
    under way on another thread: denoise drops the queue and waits for that one, whose output
    is whole when the error comes here, with no lock file or partial record left. Cancelling
    alone had returned at once: the folder, empty, was removed, and the worker then made it
    again and wrote its output after the call had failed."""
    import os
    import time

    from distributed import LocalCluster

    run, _ = trained
    rng = np.random.default_rng(4)
    big = write_mrc(tmp_path / "big.mrc", rng.normal(1, 0.1, (768, 768)).astype(np.float32))
    loud = write_mrc(tmp_path / "loud.mrc", rng.normal(1e6, 1e5, (96, 96)).astype(np.float32))
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        with pytest.raises(cryostream.ConfigError, match=r"loud\.mrc: its denoised pixels reach"):
            denoise(run, [big, loud], out, scheduler=cluster.scheduler_address,
                    config=DenoiseConfig.raw(tile=64, output_dtype="float16"))
        at_the_error = sorted(os.listdir(out)) if out.exists() else None
        time.sleep(3)
    assert at_the_error == ["big.json", "big.mrc"]  # whole, as it finished
    assert sorted(os.listdir(out)) == at_the_error  # nothing written after the call failed
    assert "stopping: waiting for 1 micrograph under way on the cluster to finish" in notes


def test_on_a_scheduler_warnings_and_notes_come_back_and_a_lost_one_is_one_error(
        trained, tmp_path, notes):
    """A scheduler given by address: a micrograph skipped on a worker (its warning raised in
    the worker's process) is warned of here, as without the cluster, and each micrograph done
    is noted with its time on the worker; a scheduler that goes away mid-run is one
    ClusterError saying what to do, not distributed's FutureCancelledError."""
    import re
    import threading
    import time

    from distributed import LocalCluster

    from cryostream.io.stack import MicrographSkippedWarning

    run, sim = trained
    bad = tmp_path / "nan.mrc"
    with mrcfile.new(bad) as f:
        f.set_data(np.full((160, 128), np.nan, np.float32))
        f.voxel_size = 0.66
    tiled = DenoiseConfig.raw(tile=64)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:
        skipping = r"skipping .*nan\.mrc: holds NaN"
        with pytest.warns(MicrographSkippedWarning, match=skipping) as caught:
            denoise(run, [sim.micrographs[0], bad], tmp_path / "a", config=tiled,
                    scheduler=cluster.scheduler_address, permissive=True)
            for _ in range(50):  # the worker's event comes beside the result, not before it
                if any(re.search(skipping, str(w.message)) for w in caught):
                    break
                time.sleep(0.1)
    # each micrograph done is noted as here: its time on the worker, or skipped and why
    done = sorted(n.split(" ", 2)[2] for n in notes if n.startswith("denoised "))
    assert len(done) == 1
    assert re.fullmatch(rf"{sim.micrographs[0].name}: \d+\.\d s(; .* left)?", done[0])
    skipped = [n for n in notes if "nan.mrc: skipped" in n]
    assert len(skipped) == 1
    assert re.fullmatch(r"[12]/2 nan\.mrc: skipped \(holds NaN or Inf pixels\)(; .* left)?",
                        skipped[0])
    assert (tmp_path / "a" / sim.micrographs[0].name).is_file()
    empty = LocalCluster(n_workers=0, dashboard_address=None, host="127.0.0.1")  # never runs
    threading.Timer(2.0, empty.close).start()
    with pytest.raises(cryostream.ClusterError, match=r"the Dask cluster at tcp://127\.0\.0\.1:"
                       r"[0-9]+ went away during denoise \(scheduler-connection-lost\): call "
                       r"denoise again with the same arguments once the scheduler is back \(or "
                       r"without scheduler=, to run on this machine\); denoise keeps the "
                       r"micrographs it wrote"):
        denoise(run, sim.micrographs[:2], tmp_path / "b", config=tiled,
                scheduler=empty.scheduler_address)


def test_denoise_on_a_scheduler_gives_its_dashboard_link_only_where_it_serves_one(
        trained, tmp_path, capsys):
    """``cryostream denoise --scheduler``: a scheduler started without its dashboard still
    serves HTTP on the dashboard's port, so ``client.dashboard_link`` named a /status page that
    is not there ('Dask dashboard: http://127.0.0.1:8787/status'); now a note says it serves
    none, and the last line no longer sends to the dashboard for the workers' peak memory. A
    scheduler with a dashboard gets its link, a page that answers."""
    import urllib.request

    from distributed import LocalCluster

    run, sim = trained
    for served in (None, "127.0.0.1:0"):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                          host="127.0.0.1", dashboard_address=served) as cluster:
            assert main(["denoise", str(sim.micrographs[0]), "-o", str(tmp_path / str(served)),
                         "-m", str(run), "--raw", "--tile", "64",
                         "--scheduler", cluster.scheduler_address]) == 0
            out, err = capsys.readouterr()
            links = [line for line in err.splitlines() if "Dask dashboard" in line]
            last = out.splitlines()[-1]  # the peak memory: the workers' on the dashboard, if any
            assert last.endswith(" here (the workers': see the dashboard)" if served else
                                 " here (the workers' is not seen from here: the scheduler "
                                 "serves no dashboard; without --no-dashboard it serves one "
                                 "that shows it)"), last
            if served is None:
                assert links == [f"cryostream: no Dask dashboard: the scheduler at "
                                 f"{cluster.scheduler_address} serves none (a scheduler started "
                                 "with --no-dashboard); without that flag it serves one, to "
                                 "watch the tasks under way"]
                assert "http://" not in err
            else:
                assert links == [f"cryostream: Dask dashboard: {cluster.dashboard_link}"]
                assert urllib.request.urlopen(cluster.dashboard_link, timeout=30).status == 200


def test_on_a_cluster_each_micrograph_done_is_noted_with_its_time_and_the_time_left(
        trained, tmp_path, notes):
    """On a Dask cluster the notes of a micrograph's network passes stay on its worker (the
    dashboard shows the tasks under way), but each micrograph done is noted here as without
    one (it had been 'denoised 1/3 on the cluster: /full/path/sim_0000.mrc' alone): its
    number, its output's name, its seconds on the worker, and while some are left, about how
    long they take over the cluster's threads."""
    import re

    from distributed import LocalCluster

    run, sim = trained
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        denoise(run, sim.micrographs, tmp_path / "den", config=DenoiseConfig.raw(tile=64),
                scheduler=cluster.scheduler_address)
    done = [n for n in notes if n.startswith("denoised ")]
    assert sorted(n.split(" ")[2] for n in done) == [f"{p.name}:" for p in sim.micrographs]
    assert [n.split(" ")[1] for n in done] == ["1/3", "2/3", "3/3"]
    assert all(re.search(r": \d+\.\d s; (about \d+ s|under 1 s) left$", n) for n in done[:2])
    assert re.search(r": \d+\.\d s$", done[2])


def test_a_scheduler_that_is_gone_is_refused_before_any_note(tmp_path, notes):
    """``denoise(scheduler=ADDRESS)`` where nothing answers: refused at once, as ``prepare``
    refuses it, with the same check; it had loaded the model, read the inputs and noted
    'denoising 1 micrograph ...' first (2–6 s on two cores)."""
    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(128, 128), seed=0)
    with pytest.raises(cryostream.ConfigError, match=r"^scheduler='tcp://127\.0\.0\.1:1' "
                       r"\(--scheduler\): no scheduler reachable at 127\.0\.0\.1:1"):
        denoise("general", sim.micrographs, tmp_path / "out", config=DenoiseConfig.raw(),
                scheduler="tcp://127.0.0.1:1")
    assert notes == [] and not (tmp_path / "out").exists()


def test_a_cluster_needs_an_output_folder(trained):
    run, sim = trained
    with pytest.raises(cryostream.ConfigError, match="needs an output folder"):
        denoise(run, sim.micrographs[:1], config=DenoiseConfig.raw(tile=64), cluster_workers=1)


def test_topaz_baseline_in_the_report(trained, tmp_path):
    pytest.importorskip("topaz.denoise")
    pytest.importorskip("torch")
    from cryostream.baselines import topaz_denoise
    from cryostream.evaluate import evaluate

    run, sim = trained
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    out = topaz_denoise(image)
    assert out.shape == image.shape and abs(out.mean() / image.mean() - 1) < 0.2
    report = evaluate(run, run.parent / "data.h5", tmp_path / "rep", truth=sim.root,
                      micrographs=1, tile=64, patches=4)
    assert "topaz_psnr" in report["test_split"]
    assert "Topaz-Denoise" in report["simulated"][0]
    assert "Topaz-Denoise pretrained U-Net" in (tmp_path / "rep" / "report.md").read_text()


def test_recorruption_score_ranks_denoisers_as_the_truth_does():
    clean, noisy = _field_and_noise(9)
    noise = estimate_noise(noisy, 1.0)
    beta, draws = 0.5, 3
    pipelines = {
        "identity": lambda img: img,
        "wiener": lambda img: wiener_measured(img, estimate_noise(img, 1.0)),
        "gaussian 1": lambda img: scipy.ndimage.gaussian_filter(img, 1.0),
        "gaussian 4": lambda img: scipy.ndimage.gaussian_filter(img, 4.0),
    }
    scores, errors = {}, {}
    for name, f in pipelines.items():
        scores[name] = recorruption_score(f, noisy, noise, draws=draws, beta=beta)
        # the error each makes on the same recorrupted inputs, against the truth
        errors[name] = float(np.mean([np.mean((f(noisy + beta * matched_noise_image(
            noisy, noise, seed=k)) - clean) ** 2) for k in range(draws)]))
        assert scores[name] > errors[name]  # the score holds the variance of ỹ's noise too
    assert sorted(scores, key=scores.get) == sorted(errors, key=errors.get)
    # differences of scores are differences of error (within 0.4 % of the largest gap here)
    gap = max(errors.values()) - min(errors.values())
    for name in pipelines:
        assert (scores[name] - scores["wiener"]) == pytest.approx(
            errors[name] - errors["wiener"], abs=0.02 * gap)
    with pytest.raises(cryostream.ConfigError):
        recorruption_score(pipelines["identity"], noisy, noise, beta=0)


def test_rank_runs_scores_every_run_on_the_same_draws(trained, tmp_path):
    import shutil

    run, sim = trained
    twin = tmp_path / "twin"  # the same network in another folder
    shutil.copytree(run, twin)
    config = DenoiseConfig.raw(tile=64, n2n_correction=True, wiener_gain=True)
    ranked = rank_runs([run, twin, run], sim.micrographs[:1], config=config)
    assert [r["run"] for r in ranked if r["run"] == str(run.absolute())] == [str(run.absolute())]
    assert {r["run"] for r in ranked} == {str(run.absolute()), str(twin.absolute())}
    assert all(set(r["scores"]) == {"sim_0000"} for r in ranked)
    # every run is scored on the same noise draws: equal networks, equal scores
    assert ranked[0]["scores"] == ranked[1]["scores"] and ranked[0]["score"] == ranked[1]["score"]
    alone = rank_runs([run], sim.micrographs[:1], config=config)[0]
    assert alone == next(r for r in ranked if r["run"] == str(run.absolute()))
    # the score by hand: the network, the correction, the input's mean and the Wiener gain on
    # two recorrupted copies, against the down-corrupted ones, in the micrograph's own units
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    p = float(np.percentile(image, 95))
    noisy = image / np.float32(p)
    alpha2 = n2n_alpha2(load_record(run), noisy)
    noise = estimate_noise(noisy, 0.6575, tile=tile_for(noisy.shape))
    errors = []
    for k in range(2):
        m = matched_noise_image(noisy, noise, seed=k)
        up, down = noisy + np.float32(0.5) * m, noisy - m / np.float32(0.5)
        out = n2n_correct(network_pass(str(run.absolute()), up, tile=64), up, alpha2)
        out = keep_input_mean(out, up)
        out = match_wiener_gain(out, up, estimate_noise(up, 0.6575, tile=tile_for(up.shape)))
        errors.append(float(np.mean((out - down).astype(np.float64) ** 2)))
    assert alone["scores"]["sim_0000"] == pytest.approx(np.mean(errors) * p**2, rel=1e-6)
    with pytest.raises(cryostream.ConfigError):
        DenoiseConfig(n2n_clamp=True, n2n_correction=False)


@pytest.mark.slow
def test_rank_runs_orders_differently_trained_runs(trained, tmp_path, capsys):
    run, sim = trained
    # a second run: the same store, a different seed
    cfg = TrainConfig(model="unet-small", precision="fp32", steps=3, batch_size=4, eval_every=3,
                      eval_batches=1, checkpoint_every=3, warmup_steps=1, threads=2, seed=5)
    other = tmp_path / "other"
    train(run.parent / "data.h5", other, cfg, log=lambda *_: None)
    config = DenoiseConfig.raw(tile=64, n2n_correction=True, wiener_gain=True)
    ranked = rank_runs([run, other, run], sim.micrographs[:2], config=config)
    assert [r["run"] for r in ranked if r["run"] == str(run.absolute())] == [str(run.absolute())]
    assert [r["score"] for r in ranked] == sorted(r["score"] for r in ranked)
    assert ranked[0]["score"] < ranked[1]["score"]  # different networks score differently
    assert all(set(r["scores"]) == {"sim_0000", "sim_0001"} for r in ranked)
    alone = rank_runs([other], sim.micrographs[:2], config=config)[0]
    assert alone == next(r for r in ranked if r["run"] == str(other.absolute()))
    out = tmp_path / "rank.json"
    assert main(["rank", str(run), str(other), "-i", str(sim.micrographs[0]), "--tile", "64",
                 "--raw", "--n2n-correction", "--draws", "1", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run") and lines[0].endswith("behind it on") and len(lines) == 4
    assert lines[1].endswith("+0  —") and lines[2].endswith("1 of 1 micrograph")
    assert lines[3].startswith("(one micrograph: give several")
    assert {r["run"] for r in json.loads(out.read_text())} == {str(run.absolute()),
                                                             str(other.absolute())}


def test_rank_says_on_how_many_micrographs_each_run_is_behind_the_best():
    """The order of the mean alone hides a near-tie: each line says how far above the best a
    run is and on how many micrographs it scored above the best's."""
    from cryostream.cli.rank import ranking_lines

    ranked = [{"run": "a", "score": 1.0, "scores": {"x": 1.0, "y": 1.0, "z": 1.0}},
              {"run": "runs/b", "score": 1.1, "scores": {"x": 1.1, "y": 0.9, "z": 1.3}},
              {"run": "c", "score": 1.5, "scores": {"x": 1.5, "y": 1.5, "z": 1.5}}]
    assert ranking_lines(ranked) == [
        "run     score (lower is better)  above the best  behind it on",
        "a       1  +0  —",
        "runs/b  1.1  +0.1  2 of 3 micrographs",
        "c       1.5  +0.5  3 of 3 micrographs"]


def test_a_folder_that_is_not_a_run_gets_a_clear_error(trained, tmp_path, capsys):
    _, sim = trained
    mic = str(sim.micrographs[0])
    assert main(["denoise", "--model", str(tmp_path / "nothing"), mic, "-o",
                 str(tmp_path / "out")]) == 2
    assert "nothing: does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing made before the check
    (tmp_path / "empty").mkdir()  # a folder that exists but is no run
    assert main(["denoise", "--model", str(tmp_path / "empty"), mic, "-o",
                 str(tmp_path / "out")]) == 2
    assert "not a run folder (no config.json)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["rank", str(tmp_path), "-i", mic]) == 2
    assert f"{tmp_path}: not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("n2n, clamp, wiener", [(False, False, True), (True, False, False),
                                                (True, True, False), (True, True, True),
                                                (True, False, True)])
def test_the_pipeline_is_its_steps_in_order(trained, n2n, clamp, wiener):
    """A config's pipeline applies the correction, the clamp, the input's mean and the Wiener
    gain in that order, each as its function alone would."""
    from cryostream.denoise.steps import Micrograph

    run, sim = trained
    image = mrcfile.read(sim.micrographs[1]).astype(np.float32)
    noisy = image / np.float32(np.percentile(image, 95))
    record = load_record(run)

    def network(img):  # any function stands for the network here
        return scipy.ndimage.gaussian_filter(img, 1.5)

    config = DenoiseConfig.raw(n2n_correction=n2n, n2n_clamp=clamp, wiener_gain=wiener)
    got, found = config.pipeline().run(Micrograph(noisy, 0.6575, record), network)
    expected = network(noisy)
    if n2n:
        expected = n2n_correct(expected, noisy, n2n_alpha2(record, noisy))
        if clamp:
            expected = clamp_negative_rings(expected, noisy)
        expected = keep_input_mean(expected, noisy)
        assert found["alpha2"] == pytest.approx(n2n_alpha2(record, noisy))
    if wiener:
        expected = match_wiener_gain(expected, noisy, estimate_noise(noisy, 0.6575,
                                                                     tile=tile_for(noisy.shape)))
    np.testing.assert_array_equal(got, expected)


def test_the_default_is_the_recipe_the_run_was_trained_for(trained, tmp_path):
    """No options: the correction for a run trained on added noise, the CTF-shaped gain and
    the ensemble; the output's record says so; --raw turns every step off."""
    from cryostream.runs import RunRecord

    run, sim = trained
    record = load_record(run)
    assert record.noise.model == "poisson-gaussian"
    decided = DenoiseConfig(tile=64).for_run(record)
    assert (decided.n2n_correction, decided.ctf_gain, decided.ensemble) == (True, True, True)
    assert DenoiseConfig(n2n_correction=False).for_run(record).n2n_correction is False
    for other in (PrepareConfig(noise=cryostream.NoiseConfig(model="none")),
                  PrepareConfig(noise=cryostream.NoiseConfig(model="matched"))):
        recorrupt = other.noise.model == "matched"
        paired = RunRecord(path=run, train=TrainConfig(recorrupt=recorrupt), prepare=other,
                           store="s.h5")
        assert DenoiseConfig().for_run(paired).n2n_correction is False
    with pytest.raises(cryostream.ConfigError, match="needs|for_run"):
        DenoiseConfig().pipeline()  # undecided options need the run
    assert main(["denoise", str(sim.micrographs[0]), "-o", str(tmp_path / "d"), "--model",
                 str(run), "--raw", "--tile", "64"]) == 0
    saved = json.loads((tmp_path / "d" / "sim_0000.json").read_text())["config"]
    assert (saved["n2n_correction"], saved["ctf_gain"], saved["ensemble"]) == (False,) * 3


def test_a_run_that_scored_under_its_noisy_input_is_named_when_it_denoises(trained, tmp_path):
    """A run whose training ended with its network under the noisy input on the held-out
    patches (a fit of a few steps) denoises with one warning line saying so and what to do;
    a run above the input gets none, and so does one trained on recorrupted targets (its
    output estimates the clean micrograph, compared there with a noisy target)."""
    import dataclasses
    import shutil

    from cryostream.denoise.api import ModelWarning
    from cryostream.runs import load_record, save_record

    run, sim = trained
    for name, psnr in (("under", 15.93), ("above", 17.2), ("recorrupted", 15.93),
                       ("fitted", 15.93)):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        if name in ("recorrupted", "fitted"):  # fitted: started from the general model
            record = load_record(copy)
            save_record(copy, dataclasses.replace(record, train=dataclasses.replace(
                record.train, **({"recorrupt": True} if name == "recorrupted" else
                                 {"init": "general"}))))
        if name == "fitted":  # a fit's run folder holds its request beside the run
            (copy / "fit.json").write_text(json.dumps({"kind": "FitRecord"}))
        with open(copy / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 20, "loss": 0.1, "eval_psnr": psnr,
                                "eval_noisy_psnr": 16.20}) + "\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["denoise", str(sim.micrographs[0]), "-o", str(tmp_path / f"d_{name}"),
                         "--model", str(copy), "--raw", "--tile", "64"]) == 0
        warned = [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]
        if name == "under":
            assert len(warned) == 1 and warned[0].startswith(
                "under: its network scored under the noisy input when its training stopped "
                "(test PSNR 15.93 against 16.20 dB, step 20)")
            assert "leave out --model" in warned[0]
            assert "or fit the general model (cryostream fit's default)" in warned[0]
            # a run of cryostream train, whose folder fit refuses: train goes on with it
            assert "its cryostream train command again with --resume and more --steps than " \
                   f"its {load_record(copy).train.steps} (Python: resume=True)" in warned[0]
            assert "--budget" not in warned[0]
        elif name == "fitted":  # fitted from the general model already: not told to do so
            assert len(warned) == 1 and "larger --budget" in warned[0]
            assert "fit the general model" not in warned[0]
        else:
            assert warned == []


def test_a_run_stopped_before_it_was_ever_evaluated_is_named_when_it_denoises(tiny_run,
                                                                               tmp_path):
    """A fit stopped by Ctrl-C before its first evaluation (or, before the step a training
    stops at was scored too, whose budget ran out at step 1 of 1000) was never evaluated, so
    nothing warned, and a newcomer's output correlated with the truth at 0.074 against the
    micrograph's 0.150: denoising with it now says it stopped short, and how to go on."""
    import dataclasses
    import json

    from cryostream.denoise.api import ModelWarning
    from cryostream.training import train

    config = dataclasses.replace(TINY_TRAIN, steps=50, eval_every=100)
    run = tmp_path / "short"
    train(tiny_run.store, run, config, stop_at=2, log=lambda *_: None)
    metrics = run / "metrics.jsonl"  # its rows as a Ctrl-C at step 2 leaves them: not scored
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert any("eval_psnr" in row for row in rows)  # (where it stopped, it is scored now)
    metrics.write_text("".join(json.dumps({k: v for k, v in row.items()
                                           if not k.startswith("eval_")}) + "\n" for row in rows))
    with pytest.warns(ModelWarning, match=r"short: its training stopped at step 2 of 50 \(its "
                      r"budget ran out, or Ctrl-C\) before it was ever evaluated: .*its "
                      r"cryostream train command again with --resume \(Python: resume=True\)"):
        denoise(run, tiny_run.sim.micrographs[:1], tmp_path / "out",
                config=DenoiseConfig.raw(tile=64), workers=1)


def test_an_output_given_again_as_input_is_refused_naming_its_raw_micrograph(trained, tmp_path,
                                                                            capsys):
    """``cryostream denoise den1 -o den_again`` on outputs of an earlier denoise denoised them
    again for minutes after one warning that scrolled away: it is refused before any work, in
    one line naming the first output, how many, and the raw micrograph its NAME.json records;
    --permissive skips none when all inputs are outputs. The originals are taken as before."""
    run, sim = trained
    args = ["--model", str(run), "--raw", "--tile", "64"]
    den1, again = tmp_path / "den1", tmp_path / "den_again"
    assert main(["denoise", *map(str, sim.micrographs[:2]), "-o", str(den1), *args]) == 0
    assert "written by cryostream denoise" not in capsys.readouterr().err
    for extra in ([], ["--permissive"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["denoise", str(den1), "-o", str(again), *args, *extra]) == 2
        assert not [w for w in caught if "written by cryostream denoise" in str(w.message)]
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"cryostream denoise: error: {den1 / 'sim_0000.mrc'}: written by "
                                 "cryostream denoise (its MRC label: 'cryostream denoise "), err
        assert ", as were all 2 inputs, so it would be denoised as if it were a raw micrograph; " \
            f"give the raw micrographs instead of them (this one's is " \
            f"{Path(sim.micrographs[0]).absolute()}, as its record sim_0000.json says)" in err[0]
        assert ("(--permissive skips them only beside raw micrographs)" in err[0]) == bool(extra)
        assert not again.exists()  # nothing made, not even the folder


def test_outputs_among_raw_micrographs_are_refused_or_skipped_with_permissive(trained, tmp_path,
                                                                             capsys):
    """An output of denoise among raw micrographs is refused with the way out: --permissive,
    which skips it with a warning (it is not denoised) and denoises the raw ones. An output
    without its record is still told by its MRC label."""
    from cryostream.io.stack import MicrographSkippedWarning

    run, sim = trained
    args = ["--model", str(run), "--raw", "--tile", "64"]
    den1, again = tmp_path / "den1", tmp_path / "again"
    assert main(["denoise", *map(str, sim.micrographs[:2]), "-o", str(den1), *args]) == 0
    (den1 / "sim_0001.json").unlink()  # an output without its record
    given = [str(den1 / "sim_0000.mrc"), str(den1 / "sim_0001.mrc"), str(sim.micrographs[2])]
    capsys.readouterr()
    assert main(["denoise", *given, "-o", str(again), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"cryostream denoise: error: {den1 / 'sim_0000.mrc'}: written by cryostream denoise"), err
    assert ", as were 2 of the 3 inputs, so it would be denoised" in err[0]
    assert err[0].endswith("as its record sim_0000.json says), or pass --permissive to skip them")
    assert not again.exists()
    with pytest.warns(MicrographSkippedWarning) as caught:
        assert main(["denoise", *given, "-o", str(again), *args, "--permissive"]) == 0
    said = sorted(str(w.message) for w in caught if w.category is MicrographSkippedWarning)
    assert said == [
        f"skipping {den1 / 'sim_0000.mrc'}: written by cryostream denoise, not a raw micrograph "
        f"(its raw micrograph, as its record says: {Path(sim.micrographs[0]).absolute()})",
        f"skipping {den1 / 'sim_0001.mrc'}: written by cryostream denoise, not a raw micrograph"]
    assert sorted(p.name for p in again.glob("*.mrc")) == ["sim_0002.mrc"]
    assert "(2 skipped: see the warnings)" in capsys.readouterr().out
    (den1 / "sim_0000.json").unlink()
    assert main(["denoise", str(den1 / "sim_0000.mrc"), "-o", str(tmp_path / "x"), *args]) == 2
    assert "give its raw micrograph instead (no sim_0000.json beside it names its own)" \
        in capsys.readouterr().err


def test_a_glob_of_a_folder_holding_outputs_beside_their_inputs_leaves_the_outputs_out(
        trained, tmp_path, capsys):
    """Outputs written beside their inputs (-o the input folder, --suffix) are left out of a
    folder given again; the shell's glob of that folder (FOLDER/*.mrc) lists them too, each
    with its raw micrograph, and had been refused: they are left out so, with a note."""
    import shutil

    run, sim = trained
    folder = tmp_path / "mics"
    folder.mkdir()
    for path in sim.micrographs[:2]:
        shutil.copy(path, folder)
    args = ["--model", str(run), "--raw", "--tile", "64", "--suffix", "_den"]
    assert main(["denoise", str(folder), "-o", str(folder), *args]) == 0
    capsys.readouterr()
    given = sorted(str(p) for p in folder.glob("*.mrc"))
    assert len(given) == 4
    assert main(["denoise", *given, "-o", str(folder), *args]) == 0
    err = capsys.readouterr().err
    assert "left out 2 outputs of cryostream denoise among the inputs, each given with its raw " \
        "micrograph (sim_0000_den.mrc, sim_0001_den.mrc)" in err, err
    assert sorted(p.name for p in folder.glob("*.mrc")) == [
        "sim_0000.mrc", "sim_0000_den.mrc", "sim_0001.mrc", "sim_0001_den.mrc"]


def test_arrays_are_denoised_in_memory_with_their_pixel_size(trained):
    """A NumPy array, 2-D or a stack, gives an xarray with the pixel size; equal to the file's."""
    run, sim = trained
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    raw = DenoiseConfig.raw(tile=64)
    one = cryostream.denoise(run, image, config=raw, pixel_size_angstrom=0.6575)
    assert one.dims == ("y", "x") and one.attrs["pixel_size_angstrom"] == 0.6575
    from_file = cryostream.denoise(run, [sim.micrographs[0]], config=raw).values[0]
    np.testing.assert_array_equal(one.values, from_file)
    many = cryostream.denoise(run, np.stack([image, image]), config=raw,
                              pixel_size_angstrom=0.6575)
    assert many.dims == ("micrograph", "y", "x") and many.shape == (2, 160, 128)
    # what NAME.json's "found" says for a file, per micrograph
    assert json.loads(one.attrs["found"])["pixel_size_angstrom"] == 0.6575
    assert [json.loads(f) for f in many.attrs["found"]] == [json.loads(one.attrs["found"])] * 2
    with pytest.raises(cryostream.ConfigError, match="pixel size"):
        cryostream.denoise(run, image, config=raw)


def test_an_arrays_pixel_size_outside_the_models_range_is_warned_as_a_files(tmp_path):
    """A pixel size in nm (6.6 for 0.66 Å) given with an array was used without a word, while
    the same given with a file is a PixelSizeWarning: its network sees the particles at a
    tenth of their size. The array's is said as the file's, at the script's line."""
    from cryostream.denoise.pixels import PixelSizeWarning

    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(256, 256), seed=3)
    image = mrcfile.read(sim.micrographs[0])
    with pytest.warns(PixelSizeWarning, match=r"^1 micrograph has a pixel size outside the "
                      r"0\.47–1\.62 Å that the model \(general\) was trained and calibrated on "
                      r"\(6\.6 Å, from pixel_size_angstrom=, for array\[0\]\): its network sees "
                      r"the particles at another scale; check the pixel size, or fit") as said:
        out = cryostream.denoise("general", image, config=DenoiseConfig.raw(),
                                 pixel_size_angstrom=6.6)
    assert said[0].filename == __file__  # the script's call, as for a file
    assert out.shape == image.shape and out.attrs["pixel_size_angstrom"] == 6.6


def test_an_xarray_stack_without_dim_names_is_denoised_as_a_numpy_stack(trained):
    """``xr.DataArray(stack)`` (dims dim_0, dim_1, dim_2) stopped with xarray's ValueError
    'Dimensions {'micrograph'} do not exist'. Its first dim is the micrographs, as a NumPy
    stack's first axis; its pixel size attribute is checked and named as the argument is."""
    import xarray as xr

    run, sim = trained
    images = np.stack([mrcfile.read(m) for m in sim.micrographs[:2]])
    raw = DenoiseConfig.raw(tile=64)
    unnamed = xr.DataArray(images, attrs={"pixel_size_angstrom": 0.6575})
    out = cryostream.denoise(run, unnamed, config=raw)
    assert out.dims == ("micrograph", "dim_1", "dim_2") and out.shape == (2, 160, 128)
    as_numpy = cryostream.denoise(run, images, config=raw, pixel_size_angstrom=0.6575)
    np.testing.assert_array_equal(out.values, as_numpy.values)
    assert out.attrs["pixel_size_angstrom"] == 0.6575 and "pixel_size_from" not in out.attrs
    from cryostream.denoise.arrays import array_micrographs, array_stack
    from cryostream.denoise.network import model_path
    from cryostream.denoise.pixels import PixelSizeWarning, warn_outside_model

    # a stack (y, x, frame) by name: the dim other than y and x is the micrographs
    by_name = xr.DataArray(images.transpose(1, 2, 0), dims=("y", "x", "frame"),
                           attrs={"pixel_size_angstrom": 0.6575})
    assert array_stack(by_name, None).dims == ("micrograph", "y", "x")
    in_nm = unnamed.assign_attrs(pixel_size_angstrom=0.6575 * 10)
    with pytest.warns(PixelSizeWarning, match=r"\(6\.575 Å, from its xarray's pixel_size_angstrom "
                      r"attribute, for array\[0\]\): .*check the pixel size \(pixel_size_angstrom= "
                      r"corrects a wrong one\)"):
        warn_outside_model(str(model_path("general")), array_micrographs(array_stack(in_nm, None)))


def test_a_result_of_denoise_given_back_as_an_array_is_refused(trained, tmp_path):
    """A notebook cell ``image = cryostream.denoise(run, image, ...)`` run twice denoised the
    denoised image again as if it were raw, with no word (files written by denoise are refused
    so). The result in memory, and a stack over written outputs (denoise's result with a
    folder, or open_micrographs of it; files denoised in memory carry their config in their
    attrs now, as an array's result), are refused in one line naming the fix; raw
    micrographs opened lazily are denoised as before."""
    from cryostream.errors import DenoisedInputError

    run, sim = trained
    raw = DenoiseConfig.raw(tile=64)
    image = mrcfile.read(sim.micrographs[0])
    image = cryostream.denoise(run, image, config=raw, pixel_size_angstrom=0.6575)
    with pytest.raises(DenoisedInputError, match=r"^inputs: an xarray that cryostream\.denoise "
                       r"returned \(its attrs hold the denoise_config it was made with\), so it "
                       r"would be denoised as if it were raw micrographs; give the raw micrographs "
                       r"\(a notebook cell such as x = cryostream\.denoise\(run, x\), run again, "
                       r"gives denoise its own result: keep the result under another name\)$"):
        cryostream.denoise(run, image, config=raw, pixel_size_angstrom=0.6575)
    from_files = cryostream.denoise(run, sim.micrographs[:1], config=raw)  # in memory: its attrs
    assert json.loads(from_files.attrs["denoise_config"]) == json.loads(image.attrs["denoise_config"])
    with pytest.raises(DenoisedInputError, match=r"^inputs: an xarray that cryostream\.denoise "):
        cryostream.denoise(run, from_files, config=raw)
    stack = cryostream.open_micrographs(sim.micrographs[:2])
    assert cryostream.denoise(run, stack, config=raw).shape == (2, 160, 128)  # raw: taken
    written = cryostream.denoise(run, sim.micrographs[:2], tmp_path / "out", config=raw)
    for again in (written, cryostream.open_micrographs(tmp_path / "out")):
        with pytest.raises(DenoisedInputError, match=r"^inputs: an xarray of outputs of "
                           r"cryostream denoise \(.*sim_0000\.mrc, its MRC label: 'cryostream "
                           r"denoise .*'\), .*; this one's raw micrograph, as its record says: "
                           f".*{sim.micrographs[0].name}$"):
            cryostream.denoise(run, again, config=raw)


def test_the_general_model_ships_inside_the_package():
    """``general``: one file of at most 20 MB in the package, with the record that says how it
    was trained (paired simulated targets: no Noisier2Noise correction)."""
    from pathlib import Path

    from cryostream.denoise.network import DEFAULT_MODEL, model_path, model_record

    path = Path(model_path(DEFAULT_MODEL))
    assert path.is_file() and path.parent.name == "data" and path.stat().st_size <= 20 * 2**20
    record = model_record(DEFAULT_MODEL)
    assert record.noise.model == "none" and record.preset == "unet"
    decided = DenoiseConfig().for_run(record)
    assert (decided.n2n_correction, decided.ctf_gain, decided.ensemble) == (False, True, True)


@pytest.mark.slow
def test_denoise_with_no_model_uses_the_general_model(tmp_path):
    """``cryostream denoise MIC -o OUT``: no run needed; the output beats the noisy input
    against the truth and records the shipped model."""
    sim = cryostream.simulate(tmp_path / "sim", 1, shape=(512, 512), seed=2)
    assert main(["denoise", str(sim.micrographs[0]), "-o", str(tmp_path / "g"),
                 "--no-ensemble"]) == 0
    record = json.loads((tmp_path / "g" / "sim_0000.json").read_text())
    assert record["run"].endswith("general_model.npz")
    out = mrcfile.read(tmp_path / "g" / "sim_0000.mrc")
    noisy, truth = mrcfile.read(sim.micrographs[0]), mrcfile.read(sim.truths[0])
    assert np.mean((out - truth) ** 2) < 0.2 * np.mean((noisy - truth) ** 2)


def test_a_slow_micrograph_gets_notes_while_its_network_passes_run(trained, tmp_path,
                                                                   monkeypatch, caplog):
    """Minutes per micrograph on a CPU: a note at most every NOTE_EVERY_S seconds says which
    network pass of how many is done and about how long the micrograph's others take (here
    every pass: the interval set to zero)."""
    import importlib
    import logging
    import re

    api = importlib.import_module("cryostream.denoise.micrograph")
    run, sim = trained
    monkeypatch.setattr(api, "NOTE_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="cryostream"):
        denoise(run, sim.micrographs[:1], tmp_path / "den",
                config=DenoiseConfig.raw(tile=64, ensemble=True), workers=1)
    passes = [r.getMessage() for r in caplog.records if "network pass" in r.getMessage()]
    assert [m.split(": ")[1].split(" done")[0] for m in passes] == [
        f"network pass {i} of 8" for i in range(1, 9)]
    assert all(m.startswith("sim_0000.mrc: ") for m in passes)
    # the time left for the micrograph at its pace so far, on every note but the last
    assert all(re.search(r" s so far, about \d+ seconds? left for it$", m) for m in passes[:-1])
    assert passes[-1].endswith(" s so far")


def test_a_pairs_pass_notes_say_the_half_and_the_time_left_for_both(trained, tmp_path,
                                                                    monkeypatch, notes):
    """An even/odd pair is one micrograph of two halves: each pass note says which half is
    under way, and the time left counts the passes of both (it had counted the half under way
    alone: '1 second left for it' at the end of the even half, then as long again for the odd
    one, and no time left at all once the even half's passes were done)."""
    import importlib
    import re

    monkeypatch.setattr(importlib.import_module("cryostream.denoise.micrograph"),
                        "NOTE_EVERY_S", 0.0)
    sim = cryostream.simulate(tmp_path / "sim", 1, config=cryostream.SimulateConfig(
        shape=(160, 128), seed=7, even_odd=True))
    denoise(trained[0], sim.evens, tmp_path / "den", odd=sim.odds, workers=1,
            config=DenoiseConfig.raw(tile=64, calibrate=1))  # two passes a half
    passes = [n for n in notes if "network pass" in n]
    even, odd = sim.evens[0].name, sim.odds[0].name
    assert [n.split(", ")[0] for n in passes] == [
        f"{even}: network pass 1 of 2 done on half 1 of 2",
        f"{even}: network pass 2 of 2 done on half 1 of 2",
        f"{odd}: network pass 1 of 2 done on half 2 of 2",
        f"{odd}: network pass 2 of 2 done on half 2 of 2"]
    # the time left for the pair on every note but the last (the even half's last too)
    assert all(re.search(r", \d+ s so far, about \d+ seconds? left for the pair$", n)
               for n in passes[:-1])
    assert re.search(r", \d+ s so far$", passes[-1])
    assert [n for n in notes if n.startswith("denoised 1/1 ")]


def test_each_micrograph_noted_says_how_long_the_rest_take(trained, tmp_path, caplog):
    """A run of many micrographs says after each one about how long those left take at its
    pace so far (the ones finished earlier, kept, do not count); the last says nothing more."""
    import importlib
    import logging
    import re

    run, sim = trained
    config = DenoiseConfig.raw(tile=64)
    denoise(run, sim.micrographs[:1], tmp_path / "den", config=config, workers=1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        denoise(run, sim.micrographs, tmp_path / "den", config=config, workers=1)
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("denoised ")]
    assert [n.split(" ")[1] for n in notes] == ["2/3", "3/3"]
    assert re.search(r"^denoised 2/3 sim_0001\.mrc: .*; (about \d+ s|under 1 s) left$", notes[0])
    assert "left" not in notes[1]
    # two at once, 177 s each: the first's note counts what is left of the second, which began
    # with it, and those not started, over the two; after Ctrl-C no time left is said
    progress = importlib.import_module("cryostream.denoise.micrograph").Progress(5, 0, workers=2)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        for key in ("a", "b"):
            progress.begin(key)
        progress.running["b"] -= 177.0  # it began with a, 177 s ago
        progress.note("a.mrc", 177.0, None, key="a")
        progress.stop()
        progress.note("b.mrc", 177.0, None, key="b")
    assert [r.getMessage() for r in caplog.records] == [
        "1/5 a.mrc: skipped; about 4 min left",  # 3 not started × 177 s / 2
        "2/5 b.mrc: skipped"]
    # a micrograph that fails (its error says why) is done: the last note promises nothing
    progress = importlib.import_module("cryostream.denoise.micrograph").Progress(2, 0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        progress.begin("bad")
        progress.failed("bad")
        progress.note("good.mrc", 3.0, {"skipped": "is constant"}, key="good")
    assert [r.getMessage() for r in caplog.records] == ["2/2 good.mrc: skipped (is constant)"]


def test_micrographs_of_one_name_in_two_folders_are_told_apart_in_the_notes(trained, tmp_path,
                                                                           caplog):
    """Two jobs' micrographs of one name (``job002/Movies/sim_0000.mrc``, ``job005/…``) were
    both noted as 'denoised 1/2 sim_0000.mrc': each note now names as many of its folders as
    tell them apart; a call whose names differ keeps the file names alone."""
    import logging
    import shutil

    from cryostream.io.paths import name_depth, short_name

    run, sim = trained
    given = []
    for job in ("job002", "job005"):
        folder = tmp_path / "MotionCorr" / job / "Movies"
        folder.mkdir(parents=True)
        given.append(shutil.copy(sim.micrographs[0], folder / "sim_0000.mrc"))
    with caplog.at_level(logging.INFO, logger="cryostream"):
        denoise(run, given, tmp_path / "den", config=DenoiseConfig.raw(tile=64), workers=1)
    notes = sorted(r.getMessage().split(":")[0] for r in caplog.records
                   if r.getMessage().startswith("denoised "))
    assert [n.split(" ", 2)[2] for n in notes] == sorted(
        ["job002/Movies/sim_0000.mrc", "job005/Movies/sim_0000.mrc"]), notes
    # one in a folder inside the other's: their inputs' folders, not the output folder's name
    inner = tmp_path / "MotionCorr/job002/Movies/B"
    inner.mkdir()
    given[1] = shutil.copy(sim.micrographs[0], inner / "sim_0000.mrc")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryostream"):
        denoise(run, given, tmp_path / "den2", config=DenoiseConfig.raw(tile=64), workers=1)
    notes = sorted(r.getMessage().split(":")[0].split(" ", 2)[2] for r in caplog.records
                   if r.getMessage().startswith("denoised "))
    assert notes == ["B/sim_0000.mrc", "Movies/sim_0000.mrc"], notes
    assert name_depth(["a/x.mrc", "b/y.mrc"]) == 1 and name_depth([]) == 1
    # the empty folder a failed call made goes; one gone already does not hide the call's error
    from cryostream.io.paths import drop_empty

    empty, kept = tmp_path / "empty", tmp_path / "den"
    empty.mkdir()
    drop_empty(empty)
    drop_empty(empty)  # gone: let be (it raised FileNotFoundError over the call's own error)
    drop_empty(kept)
    drop_empty(None)
    assert not empty.exists() and any(kept.iterdir())
    assert name_depth(["p/a/x.mrc", "q/a/x.mrc", "q/b/x.mrc"]) == 3
    assert short_name("/d/p/a/x.mrc", 2) == "a/x.mrc"


def test_pass_notes_of_one_name_in_two_grid_squares_name_the_folders_of_their_outputs(
        trained, tmp_path, monkeypatch, capsys):
    """EPU's grid squares hold files of one name (``GridSquare_1/Data/FoilHole_5_Data_1.mrc``
    and ``GridSquare_2/Data/…``): the notes of their network passes had both been
    'FoilHole_5_Data_1.mrc: network pass 3 of 8 …', not to be told apart. Through the command
    line, each now names the folders its output is told apart by (its output's name in -o)."""
    import importlib
    import shutil

    monkeypatch.setattr(importlib.import_module("cryostream.denoise.micrograph"),
                        "NOTE_EVERY_S", 0.0)  # a note after every pass
    given = []
    for square in ("GridSquare_1", "GridSquare_2"):
        folder = tmp_path / "Images-Disc1" / square / "Data"
        folder.mkdir(parents=True)
        given.append(shutil.copy(trained[1].micrographs[0], folder / "FoilHole_5_Data_1.mrc"))
    out = tmp_path / "den"
    assert main(["denoise", str(trained[0]), *map(str, given), "-o", str(out), "--raw",
                 "--ensemble", "--tile", "64", "--workers", "1"]) == 0
    passes = [n for n in capsys.readouterr().err.splitlines() if "network pass" in n]
    names = [f"{square}/Data/FoilHole_5_Data_1.mrc" for square in ("GridSquare_1",
                                                                    "GridSquare_2")]
    assert all((out / name).is_file() for name in names)
    assert sorted(n.split(": ")[1] for n in passes) == sorted(names * 8), passes
    for name in names:
        assert [n.split(": ")[2].split(" done")[0] for n in passes
                if n.split(": ")[1] == name] == [f"network pass {i} of 8" for i in range(1, 9)]


def test_ctrl_c_drops_the_micrographs_not_started_and_a_rerun_finishes(trained, tmp_path):
    """A real SIGINT once the first micrograph is done: the micrographs not yet started are
    dropped (not all denoised before the interrupt goes on), whole outputs stay, and the same
    call again keeps them and denoises the rest."""
    import logging
    import os
    import signal

    run, sim = trained
    config = DenoiseConfig.raw(tile=64)

    class InterruptAfterFirst(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("denoised 1/"):
                os.kill(os.getpid(), signal.SIGINT)

    handler = InterruptAfterFirst(logging.INFO)
    log = logging.getLogger("cryostream")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            denoise(run, sim.micrographs, tmp_path / "den", config=config, workers=1)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    out = tmp_path / "den"
    assert (out / "sim_0000.mrc").exists() and not (out / "sim_0002.mrc").exists()
    assert not (out / "denoised_micrographs.star").exists()
    again = denoise(run, sim.micrographs, out, config=config, workers=1)
    assert again.attrs["kept"] >= 1 and (out / "denoised_micrographs.star").exists()
    whole = denoise(run, sim.micrographs, tmp_path / "whole", config=config, workers=1)
    for name in ("sim_0000.mrc", "sim_0002.mrc"):
        np.testing.assert_array_equal(mrcfile.read(out / name), mrcfile.read(tmp_path / "whole" / name))
    assert whole.attrs["kept"] == 0


def test_an_input_remade_while_it_is_denoised_is_made_again_next_time(trained, tmp_path):
    """The record holds the input's size and time of modification from before its pixels
    were read: an input remade during the run is seen as changed by the next one."""
    import os
    import shutil

    from cryostream.denoise import micrograph as per_micrograph

    run, sim = trained
    source = tmp_path / "mic.mrc"
    shutil.copy(sim.micrographs[0], source)
    out = tmp_path / "den"
    config = DenoiseConfig.raw(tile=64)
    real = per_micrograph.read_micrograph

    def read_then_remake(path):  # motion correction writes the file again meanwhile
        read = real(path)
        write_mrc(source, mrcfile.read(sim.micrographs[1]), pixel_size=0.6575)
        stat = source.stat()
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        return read

    per_micrograph.read_micrograph = read_then_remake
    try:
        denoise(run, [source], out, config=config, workers=1)
    finally:
        per_micrograph.read_micrograph = real
    again = denoise(run, [source], out, config=config, workers=1)
    assert again.attrs["kept"] == 0  # made again, from the remade input
    fresh = denoise(run, [source], config=config, workers=1)
    np.testing.assert_array_equal(mrcfile.read(out / "mic.mrc"), fresh.values[0])


def test_denoise_refusals_give_the_python_spelling_beside_the_flag():
    """A script is told the config field, the command line only the flag."""
    from cryostream.cli.common import for_the_command_line
    from cryostream.denoise.tiling import tile_cores

    with pytest.raises(cryostream.ConfigError) as info:
        tile_cores(100, 128, 32)
    assert str(info.value).endswith("use a smaller --tile (Python: the DenoiseConfig's tile)")
    assert for_the_command_line(info.value).endswith("use a smaller --tile")


def test_outputs_written_beside_their_inputs_are_left_out_of_the_folder(trained, tmp_path,
                                                                      notes):
    """Denoising a folder into itself (``-o`` the same folder, ``--suffix``), then the folder
    again: the outputs are left out with a note, and only the micrographs are denoised."""
    import shutil

    run, sim = trained
    folder = tmp_path / "mics"
    folder.mkdir()
    for path in sim.micrographs[:2]:
        shutil.copy(path, folder)
    raw = DenoiseConfig.raw(tile=64, output_suffix="_dn")
    denoise(run, folder, folder, config=raw, workers=1)
    notes.clear()
    again = denoise(run, folder, folder, config=DenoiseConfig.raw(tile=64, output_suffix="_v2"),
                    workers=1)
    assert sorted(p.name for p in folder.glob("*_v2.mrc")) == ["sim_0000_v2.mrc",
                                                                "sim_0001_v2.mrc"]
    assert len(again.attrs["sources"]) == 2
    assert any("left out 2 outputs of cryostream denoise (sim_0000_dn.mrc, sim_0001_dn.mrc"
               in n for n in notes)


def test_an_array_is_noted_as_a_file_is_with_the_gain_it_took(trained, tmp_path, notes):
    """An array too small for a CTF fit took the radial gain without a word, where the same
    micrograph as a file is noted with it ("too small for a CTF fit: radial Wiener gain"):
    each micrograph of an array is noted as a file's is, 2-D or a stack."""
    run, sim = trained
    image = mrcfile.read(sim.micrographs[0]).astype(np.float32)
    config = DenoiseConfig(tile=64, ensemble=False, binned_pass=False)
    cryostream.denoise(run, [sim.micrographs[0]], tmp_path / "out", config=config)
    from_file = [n for n in notes if n.startswith("denoised 1/1 sim_0000.mrc: ")]
    assert len(from_file) == 1 and from_file[0].endswith("s; too small for a CTF fit: radial "
                                                         "Wiener gain"), notes
    notes.clear()
    one = cryostream.denoise(run, image, config=config, pixel_size_angstrom=0.6575)
    assert one.dims == ("y", "x")
    said = [n for n in notes if n.startswith("denoised ")]
    assert len(said) == 1 and said[0].startswith("denoised 1/1 array[0]: ")
    assert said[0].endswith("s; too small for a CTF fit: radial Wiener gain"), said
    notes.clear()
    cryostream.denoise(run, np.stack([image, image]), config=config, pixel_size_angstrom=0.6575)
    said = [n for n in notes if n.startswith("denoised ")]
    assert [n.split(":")[0] for n in said] == ["denoised 1/2 array[0]", "denoised 2/2 array[1]"]
    assert all(n.split("; ")[1] == "too small for a CTF fit: radial Wiener gain" for n in said)


def test_the_lazy_pass_takes_one_micrograph_and_gives_it_back_2d(trained):
    """``denoise_array`` of one micrograph ``(y, x)``, as ``denoise`` takes one: it was a
    ValueError from inside ("not enough values to unpack"); its result is 2-D, the stack's
    own; an array of other dimensions is refused by name."""
    import dask.array as da

    run, sim = trained
    image = da.from_array(mrcfile.read(sim.micrographs[0]).astype(np.float32))
    one = denoise_array(image, run, 20.0, tile=64)
    assert one.shape == image.shape
    np.testing.assert_array_equal(one.compute(), denoise_array(image[None], run, [20.0],
                                                               tile=64).compute()[0])
    with pytest.raises(cryostream.ConfigError, match=r"^stack: a 1-D array; give one "
                       r"micrograph \(y, x\) or a stack \(micrograph, y, x\)$"):
        denoise_array(image[0], run, 20.0, tile=64)


def test_a_relative_output_folder_on_a_scheduler_is_the_callers(trained, tmp_path, monkeypatch):
    """``denoise(..., "den", scheduler=ADDRESS)`` from a script whose working folder is not the
    workers' (a scheduler started elsewhere, or before the script changed folder): the outputs
    go to ``den`` in the script's folder, where its STAR file lists them. The workers had
    written them into their own working folder, and the call then failed on the STAR file's
    first row ('den/sim_0000.mrc: no such file')."""
    from distributed import LocalCluster

    run, sim = trained
    (tmp_path / "workers").mkdir()
    (tmp_path / "script").mkdir()
    monkeypatch.chdir(tmp_path / "workers")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster:  # its worker process works in workers/
        monkeypatch.chdir(tmp_path / "script")
        out = denoise(run, sim.micrographs, "den", config=DenoiseConfig.raw(tile=64),
                      scheduler=cluster.scheduler_address)
        assert out.sizes["micrograph"] == len(sim.micrographs)
    assert not (tmp_path / "workers" / "den").exists()
    written = sorted(p.name for p in (tmp_path / "script" / "den").iterdir())
    assert written == sorted([f"{p.stem}.{e}" for p in sim.micrographs for e in ("json", "mrc")]
                             + ["denoised_micrographs.star"])


def test_a_simulation_stopped_short_is_refused_by_denoise(tiny_run, tmp_path, capsys):
    """`denoise` of a set whose simulate was stopped (Ctrl-C) denoised the micrographs made so
    far, with an earlier set's left beside them after a stopped --overwrite, as if they were the
    set. Its simulate.unfinished now makes denoise refuse it in one line, as prepare, fit and
    evaluate do, whether given the set's folder, its micrographs folder or a micrograph of it,
    before any output is written."""
    from tests.faults_support import assert_user_error, cli, simulate_stopped

    sim, out = tmp_path / "sim", tmp_path / "out"
    simulate_stopped(sim)
    written = len(list((sim / "micrographs").glob("sim_*.mrc")))
    for given in (sim / "micrographs", sim / "micrographs" / "sim_0000.mrc"):
        line = assert_user_error(cli(capsys, "denoise", tiny_run.run, given, "-o", out))
        assert line == (
            f"cryostream denoise: error: {sim}: cryostream simulate did not finish this set "
            f"({written} of 500 micrographs written, no simulate.json; simulate.unfinished says "
            "so), so it is only part of the set; run the same cryostream simulate command again, "
            "which simulates the whole set into it (the same micrographs again for the same "
            "seed), then give it again")
        assert not out.exists()
