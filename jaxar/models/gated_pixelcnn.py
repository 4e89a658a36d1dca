"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders").

``num_layers`` gated blocks (:class:`jaxar.nn.gated.GatedBlock`): a vertical stack that sees only
the rows above and a horizontal stack that sees the pixels to the left in the same row, linked
by a 1x1 convolution from vertical to horizontal, with gated units ``tanh(a) * sigmoid(b)``, a
residual connection in the horizontal stack and a skip connection from every layer. The summed
skips go through ReLU, a masked 1x1 to ``output_features``, ReLU and a masked 1x1 to the logits
``(B, H, W, C, num_levels)`` of a categorical per sub-pixel. The first layer has
``first_kernel`` x ``first_kernel`` reach, later ones ``kernel`` x ``kernel``. After enough
layers every earlier pixel is in the receptive field: there is no blind spot. Colour channels
are generated R, then G given R, then B given R and G, with the colour-group masks of
:mod:`jaxar.nn.masks` in the horizontal stack and the 1x1 convolutions.

Conditioning (added to both gates' pre-activations of both stacks in every layer):

* ``num_classes`` > 0: a class label, through a learned embedding per layer and stack;
* ``cond_dim`` > 0: a conditioning vector ``(B, cond_dim)`` (e.g. a latent embedding), through a
  linear map per layer and stack;
* ``cond_map_channels`` > 0: a spatial conditioning map ``(B, H, W, M)`` at the image's
  resolution, through a 1x1 convolution per layer and stack.

``cond`` is None for an unconditional model. A model conditioned on class labels only takes the
labels themselves, int ``(B,)`` (what ``jaxar sample --class`` passes), or ``{"label": ...}``.
Otherwise ``cond`` is a dict with exactly the enabled keys ``"label"``, ``"vector"``, ``"map"``.
:meth:`GatedPixelCNN.cond_from_batch` builds it from a data batch, whose entries of the same
names it reads.

The cached sampler computes the vertical stack once per row (at the row's first sub-pixel,
when every row above is known) and the horizontal stack once per sub-pixel, each reading only
a kernel-sized window: ``O(L k^2 F^2 W)`` per row plus ``O(L k F^2)`` per sub-pixel, instead of
a full forward pass (``O(L k^2 F^2 H W)``) per sub-pixel.
The first layer reads its windows straight from the image the sampler carries, so no cache ever
holds a value computed from a not-yet-sampled dimension (with RGB, no feature of a pixel depends
on its own last channel, so after the pixel's last step its cached features are final).

At equal budget on Fashion-MNIST against anordertoreclaim/PixelCNN (PyTorch) at the same
shape, this model with its default initialisation reached 3.384 test bits/dim against 4.284,
ahead on each of 3 seeds (``benchmarks/equal_budget_gated.py``; README, "Results").
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxar.distributions import Categorical
from jaxar.models.base import AutoregressiveModel, _is_concrete
from jaxar.models.registry import register
from jaxar.nn import MaskedConv2D, centered, group_width
from jaxar.nn.gated import GatedBlock
from jaxar.sampling import when

__all__ = ["GatedPixelCNN", "GatedPixelCNNNet"]

COND_KEYS = ("label", "vector", "map")


def _cond_dict(cond) -> dict:
    """``cond`` as a dict: None -> {}, bare labels -> {"label": labels}."""
    if cond is None:
        return {}
    if isinstance(cond, dict):
        return cond
    return {"label": cond}


class GatedPixelCNNNet(nn.Module):
    """The Gated PixelCNN network: integer images ``(B, H, W, C)`` -> logits
    ``(B, H, W, C, L)``."""

    num_levels: int
    channels: int
    features: int = 64
    num_layers: int = 8
    first_kernel: int = 7
    kernel: int = 3
    output_features: int = 256
    num_classes: int = 0
    cond_dim: int = 0
    cond_map_channels: int = 0
    input_embedding: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        if self.input_embedding:
            self.input_embed = nn.Embed(
                self.num_levels, self.input_embedding, dtype=self.dtype, name="input_embed"
            )
        self.blocks = [
            GatedBlock(
                self.features,
                self.first_kernel if i == 0 else self.kernel,
                first=i == 0,
                color_channels=self.channels,
                skip_features=self.output_features,
                num_classes=self.num_classes,
                cond_dim=self.cond_dim,
                map_channels=self.cond_map_channels,
                dtype=self.dtype,
                name=f"block{i}",
            )
            for i in range(self.num_layers)
        ]
        conv = lambda f, name: MaskedConv2D(
            f, 1, "B", color_channels=self.channels, dtype=self.dtype, name=name
        )
        self.out_hidden = conv(self.output_features, "out_hidden")
        self.out_logits = conv(self.channels * self.num_levels, "out_logits")

    def _input(self, x):
        """The first layer's input: each channel's level centred to ``[-1, 1]``, or (with
        ``input_embedding``) a learned vector per level, channel c's vector in feature block
        c so that the colour masks see it as group c: ``(B, H, W, C)`` or ``(B, H, W, C E)``."""
        if not self.input_embedding:
            return centered(x, self.num_levels, self.dtype)
        e = self.input_embed(x)
        return e.reshape(*x.shape[:-1], x.shape[-1] * self.input_embedding)

    def _head(self, skip, pos=None, width=None):
        h = self.out_hidden(nn.relu(skip), pos, width)
        logits = self.out_logits(nn.relu(h), pos, width)
        return logits.reshape((*logits.shape[:-1], self.channels, self.num_levels))

    def __call__(self, x, cond=None, train: bool = False):
        del train  # no dropout
        cond = _cond_dict(cond)
        v = h = self._input(x)
        skip = 0.0
        for block in self.blocks:
            v, h, s = block(v, h, cond)
            skip = skip + s
        return self._head(skip)

    def vertical_row(self, image, row, cond=None):
        """Decode path: the vertical stack of every layer for image row ``row`` (whose rows
        above must be final in ``image``); stores each layer's link row in the cache."""
        cond = _cond_dict(cond)
        v = self._input(image)
        for block in self.blocks:
            v = block.vertical_row(v, row, cond)

    def horizontal_pixel(self, image, h, w, cond=None):
        """Decode path at ``(h, w)`` (after :meth:`vertical_row` for row ``h``): ``image`` as
        generated so far -> logits ``(B, C, L)`` of the pixel; a channel's logits are exact once
        the channels before it are in ``image``."""
        cond = _cond_dict(cond)
        x = self._input(image)
        skip = 0.0
        for block in self.blocks:
            x, s = block.horizontal_pixel(x, (h, w), image.shape[2], cond)
            skip = skip + s
        return self._head(skip, (h, w), image.shape[2])

    def decode_all(self, image, cond=None):
        """Both decode paths at ``(0, 0)``; used to create the cache."""
        zero = jnp.zeros((), jnp.int32)
        self.vertical_row(image, zero, cond)
        return self.horizontal_pixel(image, zero, zero, cond)


class GatedPixelCNN(AutoregressiveModel):
    """Gated PixelCNN with exact categorical likelihood, cached and naive samplers, and class,
    vector and spatial conditioning (see the module docstring for the form of ``cond``)."""

    sample_methods = ("cached", "naive")
    default_sample_method = "cached"

    # ----------------------------------------------------------------- conditioning
    @property
    def cond_dim(self) -> int:
        return self.net.cond_dim

    @property
    def cond_map_channels(self) -> int:
        return self.net.cond_map_channels

    def _cond_spec(self, batch: int) -> dict[str, str]:
        h, w, _ = self.event_shape
        spec = {}
        if self.num_classes:
            spec["label"] = f"int ({batch},) in [0, {self.num_classes})"
        if self.cond_dim:
            spec["vector"] = f"float ({batch}, {self.cond_dim})"
        if self.cond_map_channels:
            spec["map"] = f"float ({batch}, {h}, {w}, {self.cond_map_channels})"
        return spec

    def check_cond(self, cond, batch: int) -> None:
        """Validate ``cond``: None (unconditional), labels ``(B,)`` (labels only), or a dict with
        exactly the enabled keys "label", "vector", "map"."""
        spec = self._cond_spec(batch)
        desc = "{" + ", ".join(f'"{k}": {v}' for k, v in spec.items()) + "}"
        if not spec:
            if cond is not None:
                raise ValueError(
                    f"{self.name}: this model is unconditional (num_classes=0, cond_dim=0, "
                    f"cond_map_channels=0) but got cond"
                )
            return
        if cond is None:
            raise ValueError(f"{self.name}: expected cond {desc}, got None")
        if not isinstance(cond, dict):
            if set(spec) != {"label"}:
                raise ValueError(
                    f"{self.name}: expected cond as a dict {desc}, got {type(cond).__name__}; "
                    f"bare labels are accepted only when class labels are the only conditioning"
                )
            cond = {"label": cond}
        if set(cond) != set(spec):
            raise ValueError(
                f"{self.name}: expected cond keys {sorted(spec)} {desc}, got keys {sorted(cond)}"
            )
        if self.num_classes:
            super().check_cond(cond["label"], batch)
        h, w, _ = self.event_shape
        for key, want in (
            ("vector", (batch, self.cond_dim)),
            ("map", (batch, h, w, self.cond_map_channels)),
        ):
            if key not in spec:
                continue
            value = cond[key]
            shape, dtype = tuple(getattr(value, "shape", ())), getattr(value, "dtype", None)
            if shape != want or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
                raise ValueError(
                    f"{self.name}: expected cond[{key!r}] of float shape {want}, "
                    f"got shape {shape} dtype {dtype}"
                )
            if _is_concrete(value) and batch > 0 and not np.all(np.isfinite(np.asarray(value))):
                raise ValueError(f"{self.name}: cond[{key!r}] holds NaN or inf")

    def dummy_cond(self, batch: int):
        h, w, _ = self.event_shape
        cond = {}
        if self.num_classes:
            cond["label"] = jnp.zeros((batch,), jnp.int32)
        if self.cond_dim:
            cond["vector"] = jnp.zeros((batch, self.cond_dim), jnp.float32)
        if self.cond_map_channels:
            cond["map"] = jnp.zeros((batch, h, w, self.cond_map_channels), jnp.float32)
        if not cond:
            return None
        return cond["label"] if set(cond) == {"label"} else cond

    def cond_from_batch(self, batch: dict):
        """The conditioning for a data batch ``{"x", "label", ...}``: its "label" (bare, when
        labels are the only conditioning), "vector" and "map" entries as the model needs them."""
        needed = [k for k in self._cond_spec(1)]
        if not needed:
            return None
        missing = [k for k in needed if k not in batch]
        if missing:
            raise ValueError(
                f"{self.name}: the model is conditioned on {needed} but the data batch lacks "
                f"{missing} (it has keys {sorted(batch)})"
            )
        if needed == ["label"]:
            return batch["label"]
        return {k: batch[k] for k in needed}

    # ----------------------------------------------------------------- cached sampler
    def init_cache(self, params, batch, cond=None):
        image = jnp.zeros((batch, *self.event_shape), jnp.int32)
        return self.decode_state(params, GatedPixelCNNNet.decode_all, image, cond)

    def cached_step(self, params, cache, x_flat, step, cond=None):
        _, width, channels = self.event_shape
        pix, c = jnp.divmod(step, channels)
        h, w = jnp.divmod(pix, width)
        image = x_flat.reshape((x_flat.shape[0], *self.event_shape))

        def new_row(cache):
            return self.decode(params, cache, image, h, cond, method=GatedPixelCNNNet.vertical_row)[
                1
            ]

        # The vertical stack runs once per row, at the row's first sub-pixel.
        cache = when((w == 0) & (c == 0), new_row, cache)
        logits, cache = self.decode(
            params, cache, image, h, w, cond, method=GatedPixelCNNNet.horizontal_pixel
        )
        return lax.dynamic_index_in_dim(logits, c, axis=1, keepdims=False), cache


@register(
    "gated_pixelcnn",
    tiny=lambda c: dict(features=4 * c, num_layers=3, first_kernel=3, output_features=8 * c),
)
def gated_pixelcnn(
    image_shape=(28, 28, 1),
    num_levels: int = 256,
    num_classes: int = 0,
    cond_dim: int = 0,
    cond_map_channels: int = 0,
    features: int | None = None,
    num_layers: int = 8,
    first_kernel: int = 7,
    kernel: int = 3,
    output_features: int | None = None,
    input_embedding: int = 0,
    dtype: str = "float32",
) -> GatedPixelCNN:
    """A Gated PixelCNN over images of ``image_shape = (H, W, C)`` with ``num_levels`` levels.

    ``features`` and ``output_features`` must be divisible by ``C`` (colour groups); left unset
    they are 64 and 256 for grey images, rounded up to multiples of ``C`` otherwise (66, 258);
    ``first_kernel`` is odd and >= 3, ``kernel`` odd; ``dtype`` is the compute dtype
    ("float32" or "bfloat16"); parameters stay float32. See the module docstring for the
    conditioning hyperparameters. ``input_embedding > 0`` feeds the first layer a learned
    vector of that size per level instead of the level's value centred to ``[-1, 1]``: for
    unordered symbols such as VQ-VAE codes, where nearby indices mean nothing alike.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) of positive sizes, got {image_shape}")
    c = image_shape[-1]
    features = group_width(features, 64, c)
    output_features = group_width(output_features, 256, c)
    if features < 1 or output_features < 1 or features % c or output_features % c:
        raise ValueError(
            f"features ({features}) and output_features ({output_features}) must be positive "
            f"and divisible by C={c}, so every layer splits into colour groups"
        )
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if first_kernel < 3 or first_kernel % 2 == 0 or kernel < 1 or kernel % 2 == 0:
        raise ValueError(
            f"first_kernel must be odd and >= 3 and kernel odd and >= 1, got first_kernel="
            f"{first_kernel}, kernel={kernel}"
        )
    for name, value in (
        ("input_embedding", input_embedding),
        ("num_classes", num_classes),
        ("cond_dim", cond_dim),
        ("cond_map_channels", cond_map_channels),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    net = GatedPixelCNNNet(
        num_levels=num_levels,
        channels=c,
        features=features,
        num_layers=num_layers,
        first_kernel=first_kernel,
        kernel=kernel,
        output_features=output_features,
        num_classes=num_classes,
        cond_dim=cond_dim,
        cond_map_channels=cond_map_channels,
        input_embedding=input_embedding,
        dtype=jnp.dtype(dtype),
    )
    return GatedPixelCNN(
        name="gated_pixelcnn",
        net=net,
        distribution=Categorical(num_levels),
        event_shape=image_shape,
        num_levels=num_levels,
        num_classes=num_classes,
        hparams=dict(features=features, output_features=output_features),
    )
