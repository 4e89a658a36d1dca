"""PixelRNN (van den Oord et al. 2016, "Pixel Recurrent Neural Networks"): Row LSTM and
Diagonal BiLSTM, registered as ``"row_lstm"`` and ``"diagonal_bilstm"``.

The network: a ``first_kernel`` x ``first_kernel`` type-A masked convolution to ``2 * hidden``
features, ``num_layers`` residual LSTM layers (each a :class:`jaxar.nn.recurrent.RowLSTM` or
:class:`jaxar.nn.recurrent.DiagonalBiLSTM` with ``hidden`` units whose output is brought back
to ``2 * hidden`` features by a masked 1x1 type-B convolution and added to its input), then
ReLU, masked 1x1 to ``output_features``, ReLU, masked 1x1 to the logits ``(B, H, W, C, L)`` of
a categorical over ``num_levels`` values (256 for 8-bit images, 2 for binarized data). Every
convolution, the LSTMs' input-to-state ones included, is masked with the RGB group rule, so the
channels of a pixel are generated R, then G given R, then B given R and G. With
``num_classes`` > 0 a learned class embedding is added after the first layer.

Cached sampling (one sub-pixel per step, :mod:`jaxar.sampling`): the first layer reads its
window from the image being generated, the 1x1 layers are per-pixel matmuls, and each LSTM
layer advances one pixel: the Row LSTM keeps the previous row's hidden and cell states and its
input-to-state window of the current row; the Diagonal BiLSTM steps its forward direction
pixel by pixel and runs the backward direction over a row once the row is complete (at the
first step of the next row), since only later rows read it. A step costs
``O(num_layers * hidden^2)`` plus, once per row, ``O(W * num_layers * hidden^2)``.
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
from jaxar.nn.recurrent import DiagonalBiLSTM, RowLSTM
from jaxar.sampling import when

__all__ = ["PixelRNN", "PixelRNNNet"]

KINDS = ("row_lstm", "diagonal_bilstm")


class PixelRNNNet(nn.Module):
    """The PixelRNN network: integer images ``(B, H, W, C)`` -> logits ``(B, H, W, C, L)``."""

    kind: str
    num_levels: int
    channels: int
    hidden: int = 16
    num_layers: int = 7
    output_features: int = 32
    first_kernel: int = 7
    kernel: int = 3
    num_classes: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        conv = lambda f, k, t="B", name=None: MaskedConv2D(
            f, k, t, color_channels=self.channels, dtype=self.dtype, name=name
        )
        self.first = conv(2 * self.hidden, self.first_kernel, "A", name="first")
        if self.kind == "row_lstm":
            lstm = lambda i: RowLSTM(
                self.hidden, self.kernel, self.channels, self.dtype, name=f"lstm{i}"
            )
        else:
            lstm = lambda i: DiagonalBiLSTM(self.hidden, self.channels, self.dtype, name=f"lstm{i}")
        self.lstms = [lstm(i) for i in range(self.num_layers)]
        self.residuals = [
            conv(2 * self.hidden, 1, name=f"residual{i}") for i in range(self.num_layers)
        ]
        self.out_hidden = conv(self.output_features, 1, name="out_hidden")
        self.out_logits = conv(self.channels * self.num_levels, 1, name="out_logits")
        if self.num_classes:
            self.class_embed = nn.Embed(self.num_classes, 2 * self.hidden, name="class_embed")

    def _layers(self, x, cond, pos=None, width=None):
        """The stack, shared by the full path (``pos`` None) and the decode path."""
        h = self.first(centered(x, self.num_levels, self.dtype), pos, width)
        if self.num_classes:
            emb = self.class_embed(cond).astype(self.dtype)
            h = h + (emb if pos is not None else emb[:, None, None, :])
        for lstm, residual in zip(self.lstms, self.residuals, strict=True):
            h = h + residual(lstm(h, pos, width), pos, width)
        relu = nn.relu
        logits = self.out_logits(relu(self.out_hidden(relu(h), pos, width)), pos, width)
        return logits.reshape((*logits.shape[:-1], self.channels, self.num_levels))

    def __call__(self, x, cond=None, train: bool = False):
        del train  # no dropout
        return self._layers(x, cond)

    def step(self, image, h, w, cond):
        """Decode path at ``(h, w)``: ``image`` ``(B, H, W, C)`` as generated so far (its
        future dimensions are ignored) -> logits ``(B, C, L)`` of the pixel."""
        return self._layers(image, cond, (h, w), image.shape[2])

    def finish_row(self):
        """Decode path: complete the row just generated (the Diagonal BiLSTM's backward
        direction); call before the first step of each row after the first."""
        if self.kind == "diagonal_bilstm":
            for lstm in self.lstms:
                lstm.finish_row()


class PixelRNN(AutoregressiveModel):
    """PixelRNN with exact categorical likelihood, cached and naive samplers."""

    sample_methods = ("cached", "naive")
    default_sample_method = "cached"

    def init_cache(self, params, batch, cond=None):
        image = jnp.zeros((batch, *self.event_shape), jnp.int32)
        zero = jnp.zeros((), jnp.int32)
        state = self.decode_state(params, PixelRNNNet.step, image, zero, zero, cond)
        if self.net.kind == "diagonal_bilstm":  # the backward direction's row completion
            state = self.with_decode_weights(params, state, PixelRNNNet.finish_row)
        return state

    def cached_step(self, params, cache, x_flat, step, cond=None):
        _, width, channels = self.event_shape
        pix, c = jnp.divmod(step, channels)
        h, w = jnp.divmod(pix, width)
        if self.net.kind == "diagonal_bilstm":

            def finish_row(cache):
                return self.decode(params, cache, method=PixelRNNNet.finish_row)[1]

            new_row = (h > 0) & (w == 0) & (c == 0)
            cache = when(new_row, finish_row, cache)
        image = x_flat.reshape((x_flat.shape[0], *self.event_shape))
        logits, cache = self.decode(params, cache, image, h, w, cond, method=PixelRNNNet.step)
        return lax.dynamic_index_in_dim(logits, c, axis=1, keepdims=False), cache


def _build(
    kind, image_shape, num_levels, hidden, num_layers, output_features, first_kernel, kernel,
    num_classes, dtype,
) -> PixelRNN:  # fmt: skip
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
    c = image_shape[-1]
    # Unset widths: 16 and 32 for grey images, rounded up to multiples of C otherwise.
    hidden, output_features = group_width(hidden, 16, c), group_width(output_features, 32, c)
    if hidden < 1 or hidden % c or output_features % c:
        raise ValueError(
            f"hidden ({hidden}) and output_features ({output_features}) must be positive "
            f"multiples of C={c}, so every layer splits into colour groups"
        )
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    for name, width in (("first_kernel", first_kernel), ("kernel", kernel)):
        if width < 1 or width % 2 == 0:  # centred masks: an odd width, the pixel in the middle
            raise ValueError(f"{name} must be odd and positive, got {width}")
    net = PixelRNNNet(
        kind=kind,
        num_levels=num_levels,
        channels=c,
        hidden=hidden,
        num_layers=num_layers,
        output_features=output_features,
        first_kernel=first_kernel,
        kernel=kernel,
        num_classes=num_classes,
        dtype=jnp.dtype(dtype),
    )
    hparams = dict(
        image_shape=image_shape, num_levels=num_levels, hidden=hidden, num_layers=num_layers,
        output_features=output_features, first_kernel=first_kernel, num_classes=num_classes,
        dtype=str(dtype),
    )  # fmt: skip
    if kind == "row_lstm":
        hparams["kernel"] = kernel
    return PixelRNN(
        name=kind,
        net=net,
        distribution=Categorical(num_levels),
        event_shape=image_shape,
        num_levels=num_levels,
        num_classes=num_classes,
        hparams=hparams,
    )


# Four hidden units per colour group before the logits: with two, a random draw can leave
# both ReLUs dead and the network constant.
_TINY = lambda c: dict(hidden=2 * c, num_layers=2, output_features=4 * c)


@register("row_lstm", tiny=_TINY)
def row_lstm(
    image_shape=(28, 28, 1),
    num_levels: int = 256,
    hidden: int | None = None,
    num_layers: int = 7,
    output_features: int | None = None,
    first_kernel: int = 7,
    kernel: int = 3,
    num_classes: int = 0,
    dtype: str = "float32",
) -> PixelRNN:
    """A Row LSTM PixelRNN over images of ``image_shape = (H, W, C)``.

    ``hidden``: LSTM units per layer (the residual stream has ``2 * hidden`` features);
    ``kernel``: width of the input-to-state and state-to-state 1-D convolutions and
    ``first_kernel`` of the first (type A masked) layer's square kernel, both odd;
    ``output_features``: features of the hidden output layer. ``hidden`` and
    ``output_features`` must be multiples of ``C`` (unset: 16 and 32, rounded up to them).
    ``dtype`` is the compute dtype ("float32" or "bfloat16"); parameters and LSTM cell states
    stay float32.
    """
    return _build(
        "row_lstm", image_shape, num_levels, hidden, num_layers, output_features, first_kernel,
        kernel, num_classes, dtype,
    )  # fmt: skip


@register("diagonal_bilstm", tiny=_TINY)
def diagonal_bilstm(
    image_shape=(28, 28, 1),
    num_levels: int = 256,
    hidden: int | None = None,
    num_layers: int = 7,
    output_features: int | None = None,
    first_kernel: int = 7,
    num_classes: int = 0,
    dtype: str = "float32",
) -> PixelRNN:
    """A Diagonal BiLSTM PixelRNN over images of ``image_shape = (H, W, C)``.

    ``hidden``: LSTM units of each direction per layer (the residual stream has
    ``2 * hidden`` features); ``output_features``: features of the hidden output layer;
    ``first_kernel``: the first (type A masked) layer's square kernel, odd.
    ``hidden`` and ``output_features`` must be multiples of ``C`` (unset: 16 and 32, rounded
    up to them). ``dtype`` is the compute dtype ("float32" or "bfloat16"); parameters and LSTM
    cell states stay float32.
    """
    return _build(
        "diagonal_bilstm", image_shape, num_levels, hidden, num_layers, output_features,
        first_kernel, 3, num_classes, dtype,
    )  # fmt: skip
