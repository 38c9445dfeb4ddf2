import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cryostream.config import NoiseConfig
from cryostream.models import PRESETS, UNet, count_parameters, macs_per_pixel
from cryostream.noise import add_noise, add_noise_jax


def _abstract(preset: str) -> UNet:
    """The preset's network with shapes but no values (nothing initialised or compiled)."""
    return nnx.eval_shape(lambda: UNet(PRESETS[preset], rngs=nnx.Rngs(0)))


def test_unet_preset_is_topaz_sized():
    model = _abstract("unet")
    assert count_parameters(model) == pytest.approx(1.1e6, rel=0.02)
    assert model.encoder[0].kernel.shape == (11, 11, 1, 48)
    assert macs_per_pixel(PRESETS["unet"]) == pytest.approx(2.886e5, rel=0.01)
    small, large = (count_parameters(_abstract(k)) for k in ("unet-small", "unet-large"))
    assert small < 1e5 < 1.1e6 < large


def test_pyramid_preset_widens_the_coarse_levels_alone():
    """``unet-pyramid`` keeps ``unet``'s full-resolution stem and head and doubles the channels
    at each pooling up to 192, with two convolutions per encoder level; ``unet``'s parameters
    are as they were (the shipped model loads into it)."""
    config = PRESETS["unet-pyramid"]
    assert config.channels() == ([48, 96, 192, 192, 192, 192], [192, 192, 192, 96])
    model, plain = _abstract("unet-pyramid"), _abstract("unet")
    assert model.encoder[0].kernel.shape == plain.encoder[0].kernel.shape == (11, 11, 1, 48)
    assert [c.kernel.shape for c in model.head] == [c.kernel.shape for c in plain.head]
    assert [c.kernel.shape[-1] for c in model.encoder] == [48, 96, 192, 192, 192, 192]
    assert [len(more) for more in model.encoder_more] == [1] * 5
    assert not hasattr(plain, "encoder_more")
    assert count_parameters(model) == pytest.approx(5.94e6, rel=0.01)
    # the multiply-adds counted from the layers: 1.5 × unet's, most of it at full resolution
    assert macs_per_pixel(config) == pytest.approx(1.5 * macs_per_pixel(PRESETS["unet"]), rel=0.01)
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 1))
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == x.shape
    # a network of another shape is described by every field that sets it apart
    from cryostream.warm_start import describe_network

    assert describe_network(config) == "unet-pyramid, not residual"
    assert describe_network(dataclasses.replace(config, max_width=128)) == (
        "a U-Net of width 48, 5 levels, first kernel 11, head (64, 32), channels ×2 per level, "
        "at most 128 channels, 2 convolutions per encoder level, not residual")


def _random(config, seed: int) -> UNet:
    """A network of ``config`` with random parameters drawn by NumPy (no initialiser to
    compile: fast on two cores)."""
    graphdef, shapes = nnx.split(nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0))), nnx.Param)
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0, 0.05, s.shape), s.dtype), shapes))


@nnx.jit
def _forward(model, x):
    return model(x)  # one compilation per network, not one per layer


def test_forward_shapes_dtypes_and_residual():
    import dataclasses

    cfg = PRESETS["unet-small"]
    x = jax.random.normal(jax.random.key(0), (2, 64, 48, 1))
    # the preset computes in bfloat16 and returns float32 (shapes and dtypes: nothing compiled)
    out = nnx.eval_shape(lambda m, x: m(x), _random(cfg, 0), x)
    assert cfg.compute_dtype == "bfloat16" and out.shape == x.shape and out.dtype == jnp.float32
    plain = _random(dataclasses.replace(cfg, compute_dtype="float32"), 1)
    resid = _random(dataclasses.replace(cfg, compute_dtype="float32", residual=True), 1)
    np.testing.assert_allclose(_forward(resid, x), _forward(plain, x) + x, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(_forward(plain, x)).mean()) > 1e-3  # not a network that outputs 0


@pytest.mark.parametrize("model", [pytest.param("gaussian", marks=pytest.mark.slow),
                                   pytest.param("poisson", marks=pytest.mark.slow),
                                   "poisson-gaussian"])  # both parts
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


@pytest.mark.parametrize("preset", ["unet", "unet-deep", "unet-pyramid"])
def test_receptive_radius_bounds_what_one_pixel_changes(preset):
    """A change at one pixel moves outputs up to the receptive radius away and none beyond it
    (the halo of tiled denoising rests on this), the sixth level of ``unet-deep`` doubles
    how far that reaches, and ``unet-pyramid``'s second convolution per encoder level adds
    2 + 4 + … + 32 px."""
    from cryostream.denoise.tiling import receptive_radius

    config = dataclasses.replace(PRESETS[preset], compute_dtype="float32")
    model = UNet(config, rngs=nnx.Rngs(0))
    m, radius = config.multiple, receptive_radius(config)
    width = 2 * m * ((radius + m) // m + 1)
    x = np.random.default_rng(1).standard_normal((1, m, width, 1)).astype(np.float32)
    centre = width // 2
    bumped = x.copy()
    bumped[0, m // 2, centre, 0] += 10.0
    change = np.abs(np.asarray(model(jnp.asarray(bumped)) - model(jnp.asarray(x))))[0, :, :, 0].max(axis=0)
    reached = np.flatnonzero(change > 1e-6 * change.max())
    assert reached.min() >= centre - radius and reached.max() <= centre + radius
    assert centre - reached.min() > radius // 2  # the bound is not loose by more than twice
    assert {"unet": 194, "unet-deep": 386, "unet-pyramid": 256}[preset] == radius
