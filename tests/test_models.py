import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cryostream.config import NoiseConfig
from cryostream.models import PRESETS, UNet, count_parameters, macs_per_pixel
from cryostream.noise import add_noise, add_noise_jax


def test_unet_preset_is_topaz_sized():
    model = UNet(PRESETS["unet"], rngs=nnx.Rngs(0))
    assert count_parameters(model) == pytest.approx(1.1e6, rel=0.02)
    assert model.encoder[0].kernel.shape == (11, 11, 1, 48)
    assert macs_per_pixel(PRESETS["unet"]) == pytest.approx(2.886e5, rel=0.01)
    small, large = (count_parameters(UNet(PRESETS[k], rngs=nnx.Rngs(0)))
                    for k in ("unet-small", "unet-large"))
    assert small < 1e5 < 1.1e6 < large


def test_forward_shapes_dtypes_and_residual():
    import dataclasses

    cfg = PRESETS["unet-small"]
    x = jax.random.normal(jax.random.key(0), (2, 64, 48, 1))
    out = UNet(cfg, rngs=nnx.Rngs(0))(x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    plain = UNet(dataclasses.replace(cfg, compute_dtype="float32"), rngs=nnx.Rngs(1))
    resid = UNet(dataclasses.replace(cfg, compute_dtype="float32", residual=True),
                 rngs=nnx.Rngs(1))
    np.testing.assert_allclose(resid(x), plain(x) + x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["gaussian", "poisson", "poisson-gaussian"])
def test_device_noise_has_the_numpy_distribution(model):
    noise = NoiseConfig(model=model, sigma=0.2, dose=8)
    target = np.linspace(0, 2, 200_000, dtype=np.float32)
    a = add_noise(target, noise, np.random.default_rng(0)) - target
    b = np.asarray(add_noise_jax(target, noise, jax.random.key(0))) - target
    for lo, hi in ((0, 0.5), (0.5, 1.5), (1.5, 2.01)):
        sel = (target >= lo) & (target < hi)
        assert a[sel].mean() == pytest.approx(b[sel].mean(), abs=0.01)
        assert a[sel].var() == pytest.approx(b[sel].var(), rel=0.05)
    # whole distributions agree (two-sample Kolmogorov–Smirnov statistic)
    grid = np.sort(np.concatenate([a, b]))
    ks = np.abs(np.searchsorted(np.sort(a), grid) - np.searchsorted(np.sort(b), grid)).max() / a.size
    assert ks < 0.01


def test_config_knows_every_preset():
    from cryostream.config import MODEL_PRESETS

    assert tuple(PRESETS) == MODEL_PRESETS
