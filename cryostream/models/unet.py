"""U-Net denoisers in Flax NNX, with presets from CPU-sized to larger than Topaz-Denoise's.

The ``unet`` preset follows Topaz-Denoise's U-Net (Bepler et al., Nat. Commun. 2020): an
11 × 11 first convolution of 48 channels, five levels of 3 × 3 convolutions with 2 × 2 max
pooling, a decoder of two 3 × 3 convolutions per level at 96 channels fed by skip connections,
and a head of three 5 × 5 convolutions (64, 32, 1) that also sees the input; leaky ReLU (0.1)
throughout. Compute can run in bfloat16 with float32 parameters; the output can be residual
(input + correction).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from cryostream.errors import ConfigError
from cryostream.models.phases import depth_to_space, phase_conv, space_to_depth

__all__ = ["ModelConfig", "PRESETS", "UNet", "count_parameters", "macs_per_pixel"]

_DTYPES = ("bfloat16", "float32")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a U-Net.

    Parameters
    ----------
    width : int
        Channels of the encoder; the decoder uses twice as many.
    levels : int
        Number of 2 × 2 poolings; input sides must be multiples of ``2**levels``.
    first_kernel : int
        Side of the first convolution.
    head : (int, int)
        Channels of the two hidden 5 × 5 convolutions of the head.
    compute_dtype : {"bfloat16", "float32"}
        Dtype of activations and convolutions; parameters are always float32.
    residual : bool
        Predict a correction added to the input.
    growth : int
        Channels multiply by this at each pooling (1: ``width`` at every level, as Topaz's
        U-Net; 2: doubling, as the original U-Net), up to ``max_width``; the decoder block of a
        level has twice the channels of that level's skip, up to ``max_width``.
    max_width : int
        Most channels of any encoder or decoder convolution below full resolution (0: no cap).
    encoder_convs : int
        3 × 3 convolutions per encoder level (Topaz's U-Net: 1).
    """

    width: int = 48
    levels: int = 5
    first_kernel: int = 11
    head: tuple[int, int] = (64, 32)
    compute_dtype: str = "bfloat16"
    residual: bool = False
    growth: int = 1
    max_width: int = 0
    encoder_convs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", tuple(int(h) for h in self.head))
        if min(self.width, self.levels, self.first_kernel, self.growth, self.encoder_convs) < 1:
            raise ConfigError(f"model {self}: width, levels, first_kernel, growth and "
                              "encoder_convs must be ≥ 1")
        if self.max_width < 0:
            raise ConfigError(f"model {self}: max_width must be ≥ 0 (0: no cap)")
        if self.compute_dtype not in _DTYPES:
            raise ConfigError(f"compute_dtype={self.compute_dtype!r}: must be one of {_DTYPES}")

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.levels

    def channels(self) -> tuple[list[int], list[int]]:
        """Channels out of the stem and each encoder level (``levels + 1``), and out of each
        decoder block, deepest first (``levels - 1``)."""
        cap = self.max_width or None

        def capped(c: int) -> int:
            return min(c, cap) if cap else c

        encoder = [self.width] + [capped(self.width * self.growth**k)
                                  for k in range(1, self.levels + 1)]
        # the block at level L (deepest first: L = levels - 1 … 1) joins level L's skip, made by
        # encoder convolution L - 1 (the stem for L = 1)
        decoder = [capped(2 * encoder[level - 1]) for level in range(self.levels - 1, 0, -1)]
        return encoder, decoder


#: Named presets. ``unet`` ≈ Topaz-Denoise's U-Net (1.1 M parameters).
PRESETS = {
    "unet-small": ModelConfig(width=16, levels=3, first_kernel=5, head=(16, 8)),
    "unet": ModelConfig(),
    "unet-large": ModelConfig(width=96, levels=5, first_kernel=11, head=(128, 64)),
    # ``unet`` with a sixth level: twice the receptive radius (386 px against 194) for 1 % more
    # multiply-adds; input sides must be multiples of 64.
    "unet-deep": ModelConfig(levels=6),
    # ``unet``'s full-resolution stem and head, with channels doubling at each pooling up to
    # 192 and two 3 × 3 convolutions per encoder level, as the original U-Net (Ronneberger et
    # al. 2015): more of the network where particles are seen, ≈1.5 × the multiply-adds.
    "unet-pyramid": ModelConfig(growth=2, max_width=192, encoder_convs=2),
}


def _leaky(x):
    return jax.nn.leaky_relu(x, 0.1)


def _pool(x):
    return nnx.max_pool(x, (2, 2), (2, 2))


def _up(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class UNet(nnx.Module):
    """The U-Net; call it on (batch, y, x, 1) arrays, returns float32 of the same shape.

    The full-resolution stem and head are computed on pixel phases at half resolution
    (:mod:`cryostream.models.phases`): the same function of the same parameters, in shapes that
    suit tensor cores. ``phase_stem``/``phase_head`` choose the plain way instead (``None``: on
    pixel phases where the kernel allows it); see :meth:`apply`.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, phase_stem: bool | None = None,
                 phase_head: bool = True):
        self.config = config
        self.phase_stem = config.first_kernel % 2 == 1 if phase_stem is None else bool(phase_stem)
        self.phase_head = bool(phase_head)
        dtype = jnp.dtype(config.compute_dtype)

        def conv(cin: int, cout: int, k: int) -> nnx.Conv:
            return nnx.Conv(cin, cout, (k, k), padding="SAME", dtype=dtype,
                            param_dtype=jnp.float32, rngs=rngs)

        levels = config.levels
        enc, dec = config.channels()
        self.encoder = nnx.List([conv(1, enc[0], config.first_kernel)]
                                + [conv(enc[k - 1], enc[k], 3) for k in range(1, levels + 1)])
        if config.encoder_convs > 1:  # the further convolutions of each encoder level
            self.encoder_more = nnx.List([
                nnx.List([conv(enc[k], enc[k], 3) for _ in range(config.encoder_convs - 1)])
                for k in range(1, levels + 1)])
        decoder, below = [], enc[levels]
        for i, cout in enumerate(dec):
            cin = below + enc[levels - 2 - i]
            decoder.append(nnx.List([conv(cin, cout, 3), conv(cout, cout, 3)]))
            below = cout
        self.decoder = nnx.List(decoder)
        h1, h2 = config.head
        top = dec[-1] if dec else enc[levels]
        self.head = nnx.List([conv(top, h1, 5), conv(h1, h2, 5), conv(h2, 1, 5)])
        # The first head convolution sees [features, input]; it is split into a convolution of
        # the features and one of the input, summed: the same function and parameters, but the
        # GPU never convolves a misaligned (2·width + 1)-channel tensor.
        self.head_input = nnx.Conv(1, h1, (5, 5), padding="SAME", use_bias=False, dtype=dtype,
                                   param_dtype=jnp.float32, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.apply(x, phase_stem=self.phase_stem, phase_head=self.phase_head)

    def apply(self, x: jax.Array, *, phase_stem: bool, phase_head: bool) -> jax.Array:
        """The network with its full-resolution layers computed plainly or on pixel phases.

        Both ways compute the same function of the same parameters (up to rounding);
        ``__call__`` uses the model's choice. ``phase_stem`` needs an odd ``first_kernel``.
        """
        dtype = jnp.dtype(self.config.compute_dtype)
        inp = x.astype(dtype)
        phased = space_to_depth(inp) if phase_stem or phase_head else None
        stem, *encoder = self.encoder
        if phase_stem:
            y = phase_conv(phased, stem.kernel[...], dtype=dtype)
            b, hh, ww, _ = y.shape
            h = _leaky(y.reshape(b, hh, ww, 4, -1).max(axis=3) + stem.bias[...].astype(dtype))
        else:
            h = _pool(_leaky(stem(inp)))
        more = self.encoder_more if self.config.encoder_convs > 1 else [[]] * len(encoder)
        skips = [h]
        for k, (conv, further) in enumerate(zip(encoder, more, strict=True)):
            h = _leaky(conv(h))
            for extra in further:
                h = _leaky(extra(h))
            if k < len(encoder) - 1:
                h = _pool(h)
                skips.append(h)
        # decoder: from the second-deepest skip back up to the first pooled level
        for block, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            h = jnp.concatenate([_up(h), skip], axis=-1)
            h = _leaky(block[1](_leaky(block[0](h))))
        if phase_head:
            first, second, last = self.head
            h = (phase_conv(h, first.kernel[...], first.bias[...], upsampled=True, dtype=dtype)
                 + phase_conv(phased, self.head_input.kernel[...], dtype=dtype))
            h = _leaky(phase_conv(_leaky(h), second.kernel[...], second.bias[...], dtype=dtype))
            out = depth_to_space(phase_conv(h, last.kernel[...], last.bias[...], dtype=dtype))
        else:
            h = self.head[0](_up(h)) + self.head_input(inp)
            h = _leaky(self.head[1](_leaky(h)))
            out = self.head[2](h)
        out = out.astype(jnp.float32)
        return out + x.astype(jnp.float32) if self.config.residual else out


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable parameters."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def macs_per_pixel(config: ModelConfig) -> float:
    """Multiply-adds per input pixel of one forward pass, counted from the layer shapes.

    (XLA's ``cost_analysis`` under-counts convolutions on the GPU; a training step costs about
    three forward passes: forward, and the two halves of the backward pass.)
    """
    levels = config.levels
    enc, dec = config.channels()
    # the stem at full resolution; encoder level k's 3x3 convolutions at 1/4**k of the pixels
    total = config.first_kernel**2 * enc[0] + sum(
        9 * enc[k] * (enc[k - 1] + (config.encoder_convs - 1) * enc[k]) / 4**k
        for k in range(1, levels + 1))
    below = enc[levels]
    for i, cout in enumerate(dec):  # decoder blocks; block i runs at level (levels - 1 - i)
        cin = below + enc[levels - 2 - i]
        total += (9 * cin * cout + 9 * cout * cout) / 4 ** (levels - 1 - i)
        below = cout
    h1, h2 = config.head
    top = dec[-1] if dec else enc[levels]
    total += 25 * ((top + 1) * h1 + h1 * h2 + h2 * 1)
    return float(total)
