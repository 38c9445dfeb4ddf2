"""Full-resolution convolutions on pixel phases compute what the plain convolutions compute."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cryostream.models.phases import depth_to_space, phase_conv, space_to_depth
from cryostream.models.unet import PRESETS, UNet


def _plain_conv(x, kernel, bias):
    """A "same" full-resolution convolution written out with NumPy (cross-correlation)."""
    k = kernel.shape[0]
    r = k // 2
    b, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    out = np.zeros((b, h, w, kernel.shape[-1]))
    for dy in range(k):
        for dx in range(k):
            out += padded[:, dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
    return out + bias


def test_space_to_depth_puts_each_pixel_in_its_phase_and_back():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    s = np.asarray(space_to_depth(jnp.asarray(x)))
    assert s.shape == (2, 2, 3, 12)
    # pixel (2i + p, 2j + q), channel c → pixel (i, j), channel (p·2 + q)·3 + c
    assert s[1, 1, 2, (1 * 2 + 0) * 3 + 2] == x[1, 3, 4, 2]
    assert s[0, 0, 1, (0 * 2 + 1) * 3 + 1] == x[0, 0, 3, 1]
    assert np.array_equal(np.asarray(depth_to_space(jnp.asarray(s))), x)


@pytest.mark.parametrize("k", [3, 5, 7, 11])
@pytest.mark.parametrize("upsampled", [False, True])
def test_phase_conv_equals_the_full_resolution_convolution(k, upsampled):
    rng = np.random.default_rng(k)
    kernel = rng.normal(size=(k, k, 2, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    low = rng.normal(size=(2, 6, 8, 2)).astype(np.float32)
    full = np.repeat(np.repeat(low, 2, axis=1), 2, axis=2) if upsampled else (
        rng.normal(size=(2, 12, 16, 2)).astype(np.float32))
    expected = _plain_conv(full.astype(np.float64), kernel.astype(np.float64), bias)
    given = jnp.asarray(low) if upsampled else space_to_depth(jnp.asarray(full))
    got = depth_to_space(phase_conv(given, jnp.asarray(kernel), jnp.asarray(bias),
                                    upsampled=upsampled))
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_phase_conv_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        phase_conv(jnp.zeros((1, 4, 4, 4)), jnp.zeros((4, 4, 1, 1)))


@pytest.mark.parametrize("preset", ["unet-small", pytest.param("unet", marks=pytest.mark.slow)])
def test_the_unet_on_phases_is_the_plain_unet(preset):
    config = dataclasses.replace(PRESETS[preset], compute_dtype="float32", residual=True)
    model = UNet(config, rngs=nnx.Rngs(3))
    params = nnx.state(model, nnx.Param)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    # biases start at zero: give them values so that their place on the phases is checked too
    leaves = [v + 0.1 * jax.random.normal(key, v.shape) if v.ndim == 1 else v
              for v, key in zip(leaves, keys, strict=True)]
    nnx.update(model, jax.tree.unflatten(tree, leaves))
    x = jax.random.normal(jax.random.key(0), (2, 64, 96, 1))
    plain = np.asarray(model.apply(x, phase_stem=False, phase_head=False))
    for stem, head in [(True, False), (False, True), (True, True)]:
        got = np.asarray(model.apply(x, phase_stem=stem, phase_head=head))
        np.testing.assert_allclose(got, plain, rtol=1e-5, atol=1e-5)
    assert model.phase_stem and model.phase_head  # the default computes on phases
    np.testing.assert_allclose(np.asarray(model(x)), plain, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_training_gradients_on_phases_are_the_plain_ones():
    """Training goes through the phases: the loss's gradient with respect to every parameter
    is the plain network's."""
    config = dataclasses.replace(PRESETS["unet-small"], compute_dtype="float32", residual=True)
    model = UNet(config, rngs=nnx.Rngs(4))
    graphdef, params = nnx.split(model, nnx.Param)
    x = jax.random.normal(jax.random.key(2), (2, 32, 48, 1))
    target = jax.random.normal(jax.random.key(3), (2, 32, 48, 1))

    def grads(stem, head):
        def loss(p):
            out = nnx.merge(graphdef, p).apply(x, phase_stem=stem, phase_head=head)
            return jnp.mean((out - target) ** 2)
        return jax.tree.leaves(jax.grad(loss)(params))

    plain = grads(False, False)
    for got, want in zip(grads(True, True), plain, strict=True):
        scale = float(np.abs(want).max()) or 1.0
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5 * scale)
