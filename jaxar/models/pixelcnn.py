"""PixelCNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", section 3.5).

A ``first_kernel`` x ``first_kernel`` type-A masked convolution, ``num_blocks`` residual blocks
(ReLU, 1x1 to ``features/2``, ReLU, masked ``kernel`` x ``kernel`` type B, ReLU, 1x1 back to
``features``), then ReLU, masked 1x1 to ``output_features``, ReLU, masked 1x1 to the logits of
shape ``(B, H, W, C, num_levels)``. Every convolution is masked with the RGB group rule, so the
channels of a pixel are generated R, then G given R, then B given R and G. With ``num_classes``
> 0 a learned class embedding is added to the features after the first layer.

The cached sampler runs each layer's decode path at one sub-pixel per step: the first layer reads
its window straight from the image being generated, the 1x1 layers are per-pixel matmuls, and
each later k x k layer keeps a ring buffer of its last ``k//2 + 1`` input rows.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxar.distributions import Categorical
from jaxar.models.base import AutoregressiveModel
from jaxar.models.registry import register
from jaxar.nn import MaskedConv2D, centered, group_width

__all__ = ["PixelCNN", "PixelCNNNet"]


class PixelCNNNet(nn.Module):
    """The PixelCNN network: integer images ``(B, H, W, C)`` -> logits ``(B, H, W, C, L)``."""

    num_levels: int
    channels: int
    features: int = 64
    num_blocks: int = 7
    output_features: int = 256
    first_kernel: int = 7
    kernel: int = 3
    num_classes: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        conv = lambda f, k, t="B", name=None: MaskedConv2D(
            f, k, t, color_channels=self.channels, dtype=self.dtype, name=name
        )
        self.first = conv(self.features, self.first_kernel, "A", name="first")
        self.blocks = [
            (
                conv(self.features // 2, 1, name=f"block{i}_in"),
                conv(self.features // 2, self.kernel, name=f"block{i}_conv"),
                conv(self.features, 1, name=f"block{i}_out"),
            )
            for i in range(self.num_blocks)
        ]
        self.out_hidden = conv(self.output_features, 1, name="out_hidden")
        self.out_logits = conv(self.channels * self.num_levels, 1, name="out_logits")
        if self.num_classes:
            self.class_embed = nn.Embed(self.num_classes, self.features, name="class_embed")

    def _layers(self, x, cond, pos=None, width=None):
        """The stack, shared by the full path (``pos`` None) and the decode path."""
        relu = nn.relu
        h = self.first(centered(x, self.num_levels, self.dtype), pos, width)
        if self.num_classes:
            emb = self.class_embed(cond).astype(self.dtype)
            h = h + (emb if pos is not None else emb[:, None, None, :])
        for c_in, c_mid, c_out in self.blocks:
            r = c_in(relu(h), pos, width)
            r = c_mid(relu(r), pos, width)
            h = h + c_out(relu(r), pos, width)
        logits = self.out_logits(relu(self.out_hidden(relu(h), pos, width)), pos, width)
        return logits.reshape((*logits.shape[:-1], self.channels, self.num_levels))

    def __call__(self, x, cond=None, train: bool = False):
        del train  # no dropout
        return self._layers(x, cond)

    def step(self, image, h, w, cond):
        """Decode path at ``(h, w)``: ``image`` ``(B, H, W, C)`` as generated so far (its
        future dimensions are ignored) -> logits ``(B, C, L)`` of the pixel."""
        return self._layers(image, cond, (h, w), image.shape[2])


class PixelCNN(AutoregressiveModel):
    """PixelCNN with exact categorical likelihood, naive and cached samplers."""

    sample_methods = ("cached", "naive")
    default_sample_method = "cached"

    def init_cache(self, params, batch, cond=None):
        image = jnp.zeros((batch, *self.event_shape), jnp.int32)
        zero = jnp.zeros((), jnp.int32)
        return self.decode_state(params, PixelCNNNet.step, image, zero, zero, cond)

    def cached_step(self, params, cache, x_flat, step, cond=None):
        _, width, channels = self.event_shape
        pix, c = jnp.divmod(step, channels)
        h, w = jnp.divmod(pix, width)
        image = x_flat.reshape((x_flat.shape[0], *self.event_shape))
        logits, cache = self.decode(params, cache, image, h, w, cond, method=PixelCNNNet.step)
        return lax.dynamic_index_in_dim(logits, c, axis=1, keepdims=False), cache


@register(
    "pixelcnn",
    tiny=lambda c: dict(features=4 * c, num_blocks=2, output_features=4 * c, first_kernel=3),
)
def pixelcnn(
    image_shape=(28, 28, 1),
    num_levels: int = 256,
    features: int | None = None,
    num_blocks: int = 7,
    output_features: int | None = None,
    first_kernel: int = 7,
    kernel: int = 3,
    num_classes: int = 0,
    dtype: str = "float32",
) -> PixelCNN:
    """A PixelCNN over images of ``image_shape = (H, W, C)`` with ``num_levels`` levels.

    ``features`` and ``output_features`` must be divisible by ``2 * C`` and ``C``; left unset
    they are 64 and 256 for grey images, rounded up to such multiples otherwise (66 and 258
    for RGB). ``dtype`` is the compute dtype ("float32" or "bfloat16"); parameters stay float32.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
    c = image_shape[-1]
    features = group_width(features, 64, 2 * c)
    output_features = group_width(output_features, 256, c)
    if features % (2 * c) or output_features % c:
        raise ValueError(
            f"features ({features}) must be divisible by 2*C={2 * c} and output_features "
            f"({output_features}) by C={c}, so every layer splits into colour groups"
        )
    net = PixelCNNNet(
        num_levels=num_levels,
        channels=c,
        features=features,
        num_blocks=num_blocks,
        output_features=output_features,
        first_kernel=first_kernel,
        kernel=kernel,
        num_classes=num_classes,
        dtype=jnp.dtype(dtype),
    )
    return PixelCNN(
        name="pixelcnn",
        net=net,
        distribution=Categorical(num_levels),
        event_shape=image_shape,
        num_levels=num_levels,
        num_classes=num_classes,
        hparams=dict(features=features, output_features=output_features),
    )
