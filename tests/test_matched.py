"""Matched noise: estimation against known spectra, one definition in NumPy and JAX, the store."""

from __future__ import annotations

import h5py
import jax
import mrcfile
import numpy as np
import pytest

import cryostream
from cryostream import NoiseConfig, PrepareConfig
from cryostream.baselines import wiener_measured
from cryostream.config import DenoiseConfig, SimulateConfig
from cryostream.denoise.corrections import n2n_alpha2
from cryostream.errors import ConfigError
from cryostream.matched import (
    estimate_noise,
    matched_noise,
    matched_noise_jax,
    modulation,
    noise_kernel,
)
from cryostream.metrics import best_gaussian, psnr, wiener_oracle
from cryostream.prepare import prepare
from cryostream.preprocess import matched_noise_rows
from cryostream.runs import load_record
from cryostream.simulate.micrograph import detector_nps
from cryostream.spectral import radial_mean, ring_index
from cryostream.training import TrainConfig, train


@pytest.fixture(scope="module")
def coloured(tmp_path_factory):
    """One 1024² simulated micrograph whose shot noise falls tenfold to Nyquist."""
    root = tmp_path_factory.mktemp("coloured")
    config = SimulateConfig(shape=(1024, 1024), seed=5, detector_nps_nyquist=0.1)
    sim = cryostream.simulate(root, 1, config=config)
    return mrcfile.read(sim.micrographs[0]), mrcfile.read(sim.truths[0])


def _rings(tile: int) -> np.ndarray:
    return np.arange(tile // 2) / tile


def test_simulated_noise_has_the_detector_spectrum(coloured):
    noisy, truth = coloured
    e = estimate_noise(noisy - truth, 1.0)  # the noise alone: its whole spectrum
    expected = truth.mean() * detector_nps(_rings(256), 0.1)
    ratio = e.total_radial[8:] / expected[8:]  # few bins per ring below: sampling noise
    assert np.all(np.abs(ratio - 1) < 0.1), ratio


def test_estimate_finds_the_noise_under_the_signal(coloured):
    noisy, truth = coloured
    e = estimate_noise(noisy, 0.6575)
    expected = truth.mean() * detector_nps(_rings(256), 0.1)
    ratio = e.radial[2:] / expected[2:]
    # Particles, ice and Thon rings sit on top of the noise below the high band; the floor of
    # the measured power alone read up to 17 % high there, the carried-down series reads ≤ 6 %.
    assert np.all(np.abs(ratio - 1) < 0.08), ratio
    assert e.radial[-1] < e.radial[10] / 5  # the fall to Nyquist is seen
    assert e.shot_fraction > 0.8  # Poisson noise, ice thickness varying over tiles
    assert e.anisotropy < 0.1
    assert abs(e.variance - e.psd.mean()) < 1e-6 * e.variance
    assert e.equivalent_dose == pytest.approx(e.mean**2 / (e.shot_fraction * e.variance))


def test_wiener_from_the_measured_noise_nears_the_oracle(coloured):
    noisy, truth = coloured
    scale = np.percentile(noisy, 95)
    y, x = noisy / scale, truth / scale
    measured = psnr(wiener_measured(y, pixel_size_angstrom=0.6575), x)
    oracle = psnr(wiener_oracle(y, x), x)
    # no truth used: 35.05 dB against the oracle's 35.34 and the best Gaussian's 34.71 here
    assert oracle - 0.5 < measured <= oracle + 0.05
    assert measured > best_gaussian(y, x)[0] + 0.2
    out = wiener_measured(y, estimate_noise(y, 0.6575))
    assert out.dtype == np.float32 and out.shape == y.shape
    assert float(out.mean()) == pytest.approx(float(y.mean()), abs=1e-6)


def test_white_noise_reads_flat():
    rng = np.random.default_rng(0)
    e = estimate_noise(rng.normal(10, 2, (1024, 1024)).astype(np.float32), 1.0)
    assert np.allclose(e.radial[2:], 4.0, rtol=0.1)
    assert e.variance == pytest.approx(4.0, rel=0.05)
    assert not e.shot_fitted and e.shot_fraction == 1.0  # tile means do not spread: the default


def test_scaled_estimate():
    rng = np.random.default_rng(1)
    e = estimate_noise(rng.normal(10, 2, (256, 256)).astype(np.float32), 1.0)
    s = e.scaled(0.5)
    assert s.variance == pytest.approx(e.variance / 4) and s.mean == pytest.approx(e.mean / 2)
    assert np.allclose(s.psd, e.psd / 4)


def test_kernel_energy_and_symmetry(coloured):
    e = estimate_noise(coloured[0], 0.6575)
    k = noise_kernel(e.psd, 16)
    assert k.shape == (33, 33)
    assert np.array_equal(k, k[::-1, ::-1])
    assert float((k.astype(np.float64) ** 2).sum()) == pytest.approx(e.variance, rel=1e-4)
    with pytest.raises(ValueError, match="radius"):
        noise_kernel(e.psd, 200)


def _spectrum(images: np.ndarray) -> np.ndarray:
    """Radial power (variance per bin) averaged over a stack of square images."""
    n = images.shape[-1]
    p = np.mean([np.abs(np.fft.fft2(i - i.mean())) ** 2 for i in images], axis=0) / n**2
    return radial_mean(p, ring_index(p.shape, "fft"), n // 2)


def test_numpy_and_jax_give_the_same_spectrum(coloured):
    noisy, _ = coloured
    e = estimate_noise(noisy, 0.6575).scaled(1 / noisy.mean())
    k = noise_kernel(e.psd, 16)
    target = np.ones((16, 128 + 32, 128 + 32), np.float32)  # flat target: modulation 1
    rng = np.random.default_rng(2)
    numpy_noise = np.stack([
        matched_noise(t, rng.standard_normal(t.shape, dtype=np.float32), k, alpha=1.0,
                      shot_fraction=1.0, mean=1.0) for t in target])
    jax_noise = np.asarray(matched_noise_jax(
        jax.numpy.asarray(target[:, 16:-16, 16:-16]), jax.numpy.asarray(np.stack([k] * 16)),
        jax.numpy.ones(16), jax.numpy.ones(16), 1.0, jax.random.key(0)))
    a, b = _spectrum(numpy_noise), _spectrum(jax_noise)
    target = np.abs(np.fft.fft2(k, s=(128, 128))) ** 2
    target_spectrum = radial_mean(target, ring_index(target.shape, "fft"), 64)
    assert np.all(np.abs(a[2:] / b[2:] - 1) < 0.15)
    assert np.all(np.abs(a[2:] / target_spectrum[2:] - 1) < 0.15)
    assert numpy_noise.var() == pytest.approx(e.variance, rel=0.05)
    assert jax_noise.var() == pytest.approx(e.variance, rel=0.05)


def test_shot_noise_follows_the_intensity():
    target = np.concatenate([np.full((64, 128), 0.5), np.full((64, 128), 2.0)]).astype(np.float32)
    k = np.zeros((3, 3), np.float32)
    k[1, 1] = 0.1  # white, σ 0.1 at the mean intensity
    padded = np.pad(target, 1, mode="edge")
    noise = matched_noise(padded, np.random.default_rng(3).standard_normal(padded.shape,
                          dtype=np.float32), k, alpha=2.0, shot_fraction=1.0, mean=1.0)
    assert noise[:60].var() == pytest.approx(4 * 0.01 * 0.5, rel=0.1)
    assert noise[68:].var() == pytest.approx(4 * 0.01 * 2.0, rel=0.1)
    assert np.allclose(modulation(np.array([-1.0, 1.0]), 0.0, 1.0), 1.0)  # no shot share: flat


@pytest.fixture(scope="module")
def matched_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("matched")
    sim = cryostream.simulate(root / "sim", 3, config=SimulateConfig(shape=(192, 160), seed=4,
                                                                     detector_nps_nyquist=0.2))
    cfg = PrepareConfig(patch_size=64, stride=32, test_fraction=0.34,
                        noise=NoiseConfig(model="matched", alpha=0.8, radius=8))
    return sim, prepare(sim.micrographs, root / "data.h5", cfg).output, cfg


def test_store_holds_the_estimates_and_matched_inputs(matched_store):
    sim, store, cfg = matched_store
    with h5py.File(store) as f:
        table = f["micrographs"]
        assert table["noise_psd"].shape == (3, 128, 128)
        assert table["noise_kernel"].shape == (3, 17, 17)
        m = 0
        source = table["source"][m].decode()
        p = float(table["percentile"][m])
        kernel, shot, mean = (table[k][m] for k in ("noise_kernel", "noise_shot_fraction", "noise_mean"))
        uid = int(table["uid"][m])
        split = table["split"][m].decode()
        index = f[split]["index"][:]
        rows = np.flatnonzero(index[:, 0] == m)
        inputs, targets = f[split]["input"][rows], f[split]["target"][rows]
    # the whole micrograph as one band: the noise must be the stored noise, byte for byte
    image = mrcfile.read(source).astype(np.float32) * np.float32(1 / p)
    padded = np.pad(image, cfg.noise.radius, mode="reflect")
    noise = matched_noise_rows(padded, 0, uid, cfg, kernel, float(shot), float(mean))
    noisy = image + noise
    for (_, y, x), inp, tgt in zip(index[rows], inputs, targets, strict=True):
        assert np.array_equal(tgt, image[y : y + 64, x : x + 64])
        assert np.array_equal(inp, noisy[y : y + 64, x : x + 64])
    with h5py.File(store) as f:
        variance = float(f["micrographs/noise_variance"][m])
    assert noise.var() == pytest.approx(0.8**2 * variance, rel=0.2)


def _noisy_psnr(store, alpha: float) -> float:
    """The PSNR of the test split's micrograph plus α·m, from its stored noise variance."""
    with h5py.File(store) as f:
        table = f["micrographs"]
        test = [m for m, split in enumerate(table["split"][:]) if split == b"test"]
        return float(np.mean([10 * np.log10(1 / (alpha**2 * table["noise_variance"][m]))
                              for m in test]))


def _zero_loss_and_noise(store) -> tuple[float, float]:
    """The loss of a network that outputs 0 on the training targets, and the micrographs'
    mean noise variance."""
    with h5py.File(store) as f:
        return (float(np.mean(f["train/target"][:].astype(np.float64) ** 2)),
                float(np.mean(f["micrographs/noise_variance"][:])))


@pytest.mark.slow
def test_matched_noise_trains_on_the_device_and_corrects_with_alpha(matched_store, tmp_path):
    sim, _, cfg = matched_store
    on_device = PrepareConfig(patch_size=64, stride=32, test_fraction=0.34,
                              noise=NoiseConfig(model="matched", alpha=0.8, radius=8, mode="on-device"))
    store = prepare(sim.micrographs, tmp_path / "d.h5", on_device).output
    config = TrainConfig(model="unet-small", precision="fp32", steps=4, batch_size=4, eval_every=4,
                         eval_batches=1, checkpoint_every=4, warmup_steps=1, threads=2)
    result = train(store, tmp_path / "run", config, log=lambda *_: None)
    # the test inputs carry α·m drawn on the device like the micrograph's own noise: their
    # PSNR is that of α² × its measured variance (21.3 dB here)
    assert result.eval["noisy_psnr"] == pytest.approx(_noisy_psnr(store, 0.8), abs=0.3)
    # 4 steps learn: below half the loss of a network that outputs 0 (0.14 against 0.67 here),
    # above the noise that no network can predict (α²σ²/(1 + α²) ≈ 0.004)
    zero, sigma2 = _zero_loss_and_noise(store)
    assert 0.64 * sigma2 / 1.64 < result.final_loss < 0.5 * zero
    assert n2n_alpha2(load_record(result.run), np.zeros((4, 4), np.float32)) == pytest.approx(0.64)


def _ring_correlation(a: np.ndarray, b: np.ndarray, bands: int = 8) -> np.ndarray:
    """Correlation of two images' spectra over ``bands`` equal bands of radius (mean excluded)."""
    fa, fb = np.fft.rfft2(a - a.mean()), np.fft.rfft2(b - b.mean())
    fy, fx = np.fft.fftfreq(a.shape[0]), np.fft.rfftfreq(a.shape[1])
    band = np.minimum((np.hypot(fy[:, None], fx[None, :]) * 2 * bands).astype(int), bands)
    def per_band(v):
        return np.bincount(band.ravel(), v.ravel(), minlength=bands + 1)[:bands]
    return per_band((fa * np.conj(fb)).real) / np.sqrt(per_band(np.abs(fa) ** 2)
                                                        * per_band(np.abs(fb) ** 2))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_recorrupted_target_noise_is_independent_of_the_input(coloured, alpha):
    """y + α·m and y − m/α carry uncorrelated noise at every frequency when m is drawn like
    the micrograph's own noise (measured, not known); the Noisier2Noise pair (y + α·m, y) does not."""
    from cryostream.matched import matched_noise_image
    from cryostream.training import model_input

    noisy, truth = coloured
    scale = np.percentile(noisy, 95)
    y, x = noisy / scale, truth / scale
    m = matched_noise_image(y, estimate_noise(y, 0.6575), alpha=alpha, seed=3)
    batch = {"input": (y + m)[None], "target": y[None]}
    inp, target = (np.asarray(v)[0, ..., 0] for v in model_input(batch, None, 0, 0, None, alpha**2))
    assert np.allclose(target, y - m / alpha**2, atol=1e-5)
    recorrupted = _ring_correlation(inp - x, target - x)
    noisier = _ring_correlation(inp - x, y - x)
    assert np.all(np.abs(recorrupted) < 0.05), recorrupted
    assert np.all(noisier > 1 / np.sqrt(1 + alpha**2) - 0.05), noisier


RECORRUPT = TrainConfig(model="unet-small", precision="fp32", steps=2, batch_size=4, eval_every=2,
                        eval_batches=1, checkpoint_every=2, warmup_steps=1, threads=2,
                        recorrupt=True)


def test_recorrupted_training_needs_matched_noise(small_mrcs, tmp_path):
    white = prepare(small_mrcs[:2], tmp_path / "w.h5",
                    PrepareConfig(patch_size=64, stride=64, test_fraction=0.0,
                                  noise=NoiseConfig(model="gaussian"))).output
    with pytest.raises(ConfigError, match="recorrupt.*noise='matched'"):
        train(white, tmp_path / "white_run", RECORRUPT, log=lambda *_: None)
    assert not (tmp_path / "white_run").exists()


@pytest.mark.slow
def test_recorrupted_training_denoises_without_the_correction(matched_store, tmp_path):
    from cryostream.denoise import denoise

    sim, store, _ = matched_store
    result = train(store, tmp_path / "run", RECORRUPT, log=lambda *_: None)
    assert result.eval["noisy_psnr"] == pytest.approx(_noisy_psnr(store, 0.8), abs=0.3)
    # 2 steps learn (0.23 against 0.67 here); the target y − m/α carries noise of variance
    # σ²(1 + 1/α²) independent of the input's, which no network can predict
    zero, sigma2 = _zero_loss_and_noise(store)
    assert sigma2 * (1 + 1 / 0.64) < result.final_loss < 0.5 * zero
    assert load_record(result.run).recorrupt is True
    with pytest.raises(ConfigError, match="recorrupted targets.*drop --n2n-correction"):
        denoise(result.run, [sim.micrographs[2]], tmp_path / "out",
                config=DenoiseConfig(n2n_correction=True))
    assert not (tmp_path / "out").exists()
    out = denoise(result.run, [sim.micrographs[2]], tmp_path / "out",
                  config=DenoiseConfig.raw(wiener_gain=True)).values[0]
    image = mrcfile.read(sim.micrographs[2]).astype(np.float32)
    assert out.shape == image.shape
    assert float(out.mean()) == pytest.approx(float(image.mean()), rel=1e-4)  # the gain keeps it
    assert 0 < out.std() < image.std()  # smoother than the micrograph, not flat


def test_matched_config_errors(small_mrcs, tmp_path):
    with pytest.raises(ConfigError, match="shot"):
        NoiseConfig(model="matched", shot=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        NoiseConfig(model="matched", alpha=0)
    cfg = PrepareConfig(patch_size=32, stride=16, noise=NoiseConfig(model="matched", radius=40))
    with pytest.raises(ConfigError, match="noise-radius"):  # micrographs of positive values
        prepare(small_mrcs[2:], tmp_path / "x.h5", cfg)
    assert not (tmp_path / "x.h5").exists()


def test_noise_figure(matched_store, tmp_path):
    from cryostream.cli import main

    _, store, _ = matched_store
    assert main(["show", str(store), "--noise", "-o", str(tmp_path / "n.png")]) == 0
    assert (tmp_path / "n.png").stat().st_size > 10_000


@pytest.mark.parametrize("pixel", [0.0, 1.3])
def test_noise_figure_of_micrographs_without_a_pixel_size_is_in_cycles_per_pixel(pixel, tmp_path):
    """Headers with pixel size 0: the noise figure had labelled its frequencies 1/Å as if the
    pixels were 1 Å; it labels them cycles/px and says the pixel size is missing."""
    import matplotlib

    from cryostream.cli import main
    from tests.conftest import write_mrc

    rng = np.random.default_rng(0)
    for i in range(2):
        write_mrc(tmp_path / f"m{i}.mrc", rng.poisson(20, (128, 128)).astype(np.float32), pixel)
    store = prepare([str(tmp_path / "m0.mrc"), str(tmp_path / "m1.mrc")], tmp_path / "s.h5",
                    PrepareConfig(patch_size=64)).output
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # the labels as text in the SVG
        assert main(["show", str(store), "--noise", "-o", str(tmp_path / "n.svg")]) == 0
    text = (tmp_path / "n.svg").read_text()
    if pixel:
        assert "spatial frequency (1/Å)" in text and "cycles/px" not in text
    else:
        assert "1/Å" not in text and "/ Å" not in text
        assert "cycles/px; the headers give no pixel size" in text


def test_paired_targets_store_the_truth(tmp_path):
    sim = cryostream.simulate(tmp_path / "sim", 2, config=SimulateConfig(shape=(160, 128), seed=6))
    cfg = PrepareConfig(patch_size=32, stride=32, test_fraction=0.0, noise=NoiseConfig(model="none"))
    store = prepare(sim.micrographs, tmp_path / "p.h5", cfg, targets=sim.root / "truth").output
    with h5py.File(store) as f:
        index, p = f["train/index"][:], f["micrographs/percentile"][:]
        inputs, targets = f["train/input"][:], f["train/target"][:]
    for (m, y, x), inp, tgt in zip(index, inputs, targets, strict=True):
        scale = np.float32(1 / p[m])
        noisy, truth = mrcfile.read(sim.micrographs[m]), mrcfile.read(sim.truths[m])
        assert np.array_equal(inp, (noisy * scale)[y : y + 32, x : x + 32])
        assert np.array_equal(tgt, (truth * scale)[y : y + 32, x : x + 32])


def test_paired_targets_errors(tmp_path):
    sim = cryostream.simulate(tmp_path / "sim", 2, config=SimulateConfig(shape=(96, 96), seed=6))
    none = PrepareConfig(patch_size=32, stride=32, noise=NoiseConfig(model="none"))
    with pytest.raises(ConfigError, match="give the targets"):
        prepare(sim.micrographs, tmp_path / "a.h5", none)
    with pytest.raises(ConfigError, match="use --noise none"):
        prepare(sim.micrographs, tmp_path / "b.h5", PrepareConfig(patch_size=32, stride=32),
                targets=sim.truths)
    with pytest.raises(ConfigError, match="1 images for 2 micrographs"):
        prepare(sim.micrographs, tmp_path / "c.h5", none, targets=sim.truths[:1])
    with pytest.raises(ConfigError, match=r"use mode='stored' \(--noise-mode\)"):
        NoiseConfig(model="none", mode="on-device")
    with pytest.raises(ConfigError, match=r"sim_0000 would be paired with sim_0001 \(pairs are "
                       r"taken in order\); give the targets in the micrographs' order"):
        prepare(sim.micrographs, tmp_path / "d.h5", none, targets=sim.truths[::-1])
    with pytest.raises(ConfigError, match="sim_0000 would be paired with sim_0001"):  # swapped
        prepare(sim.micrographs, tmp_path / "d.h5", none, targets=sim.micrographs[::-1])
    with pytest.raises(ConfigError, match="sim_0000.mrc is its own target .*2 of 2 pairs"):
        prepare(sim.micrographs, tmp_path / "e.h5", none, targets=sim.micrographs)
    with pytest.raises(ConfigError, match="is given as both its even and its odd half"):
        prepare(sim.micrographs, tmp_path / "f.h5", none,
                odd=sim.root / "micrographs")
    with pytest.raises(ConfigError, match=r"sigma=0 \(--sigma\) with noise='gaussian' .*adds no"):
        NoiseConfig(model="gaussian", sigma=0.0)
    for name in "abcdef":
        assert not (tmp_path / f"{name}.h5").exists()
    from cryostream.runs import RunRecord

    record = RunRecord(path=tmp_path, train=TrainConfig(), store="s.h5",
                       prepare=PrepareConfig(noise=NoiseConfig(model="none")))
    with pytest.raises(ConfigError, match="n2n-correction"):
        n2n_alpha2(record, np.zeros((4, 4), np.float32))


def test_method_noise_tells_a_perfect_denoiser_from_a_bad_one(coloured):
    from scipy.ndimage import gaussian_filter

    from cryostream.evaluate import method_noise

    noisy, truth = coloured
    scale = np.percentile(noisy, 95)
    y, x = noisy / scale, truth / scale
    perfect = method_noise(y, x, 0.6575)  # the residual is exactly the noise
    assert abs(perfect["spectrum_ratio_mean"] - 1) < 0.1
    assert abs(perfect["correlation_with_lowpass"] - perfect["correlation_if_pure_noise"]) < 0.02
    weak = method_noise(y, gaussian_filter(y, 1), 0.6575)  # removes only the highest frequencies
    assert weak["spectrum_ratio_mean"] < 0.7
    wipe = method_noise(y, np.full_like(y, y.mean()), 0.6575)  # removes the particles too
    assert wipe["correlation_with_lowpass"] == pytest.approx(wipe["correlation_if_everything"])
    assert wipe["correlation_with_lowpass"] > 3 * perfect["correlation_if_pure_noise"]


def test_whole_image_noise_on_every_core_is_the_same_as_on_one():
    """matched_noise_image runs its convolution's transforms on every core: the numbers are
    those of one core, bit for bit (a recorruption score must not depend on the machine)."""
    import scipy.fft

    from cryostream.matched import matched_noise, matched_noise_image, noise_kernel

    rng = np.random.default_rng(5)
    y = rng.poisson(20.0, size=(600, 520)).astype(np.float32)
    estimate = estimate_noise(y, 0.6575)
    padded = np.pad(y, 16, mode="reflect")
    driver = np.random.default_rng(3).standard_normal(padded.shape, dtype=np.float32)
    with scipy.fft.set_workers(1):
        one = matched_noise(padded, driver, noise_kernel(estimate.psd, 16), alpha=1.0,
                            shot_fraction=estimate.shot_fraction, mean=estimate.mean)
    np.testing.assert_array_equal(matched_noise_image(y, estimate, seed=3), one)
