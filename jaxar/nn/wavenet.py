"""WaveNet building blocks: dilated causal 1-D convolutions with a cached single-step path.

A causal convolution of kernel ``k`` and dilation ``d`` computes, with zero left padding only,

    y_t = sum_{j=0}^{k-1} W_j x_{t - (k-1-j) d},

so ``y_t`` reads ``x_t`` and the ``k - 1`` inputs ``d, 2d, ..., (k-1)d`` steps back. A stack of
such layers with dilations ``d_l`` sees ``receptive_field(k, d) = 1 + (k-1) sum_l d_l`` samples.

Fast generation (Paine et al. 2016, "Fast Wavenet Generation Algorithm"): at one time step a
layer needs only its own past inputs at ``t - d, ..., t - (k-1)d``, all of the same phase
``t mod d``. The decode path keeps them in the ``cache`` collection as ``lines``, shape
``(d, B, (k-1) C)``: row ``p`` holds the ``k - 1`` latest inputs of phase ``p``, oldest first. A
step reads row ``t mod d`` (``x_{t-(k-1)d}, ..., x_{t-d}``), appends ``x_t`` to get the ``k`` taps
``(B, k C)``, runs one matmul over them, ``taps @ W.reshape(k C, out)``, and writes the last
``k - 1`` taps back as the row's new content. The zero-initialised cache is the zero left
padding, so the step computes what the full path does; each step costs ``O(k C out)`` per
layer, independent of the dilation and of the length, and keeps ``(k-1) d`` inputs.

The write depends on the read, so XLA orders the two and updates the cache in place inside
``lax.scan``. This layout reads the taps with one slice and one concatenation at every batch
size; it replaced a ring buffer of single inputs read by ``k - 1`` slices (measured in
BENCHMARKS.md).

A whole stack decodes with fewer kernels per step (:func:`decode_layers`, what
:class:`jaxar.models.wavenet.WaveNetNet` runs): every layer's tap lines live in ONE buffer of
``sum_l d_l`` rows (layer ``l`` owns rows ``offset_l .. offset_l + d_l - 1``,
:func:`line_offsets`), so one gather reads the past taps of all layers and one scatter writes
them back; the past taps' share of every layer's dilated conv, with its bias and
conditioning, is one batched matmul before the layers run, because it does not depend on the
current step's activations. What remains per layer is the chain that does: the current tap's
matmul, the gate, the residual/skip matmul and the residual add (4 kernels instead of ~13).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "CausalConv1D",
    "ResidualBlock",
    "decode_layers",
    "decode_weights",
    "layers_to_cover",
    "line_offsets",
    "line_rows",
    "receptive_field",
    "stack_blocks",
]


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """Samples seen by one output of a stack of causal convolutions: ``1 + (k-1) sum(d)``.

    E.g. kernel 3 with dilations 1, 2, ..., 512 sees 2047 samples.
    """
    if int(kernel_size) < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    dilations = [int(d) for d in dilations]
    if any(d < 1 for d in dilations):
        raise ValueError(f"dilations must be >= 1, got {dilations}")
    return 1 + (int(kernel_size) - 1) * sum(dilations)


def layers_to_cover(span: int, kernel_size: int) -> int:
    """The fewest layers of dilations 1, 2, 4, ... whose receptive field covers ``span`` samples.

    The smallest ``L`` with ``1 + (k-1)(2^L - 1) >= span``; e.g. one second at 16 kHz (16000
    samples) with kernel 3 needs 13 layers.
    """
    span, k = int(span), int(kernel_size)
    if k < 2:
        raise ValueError(f"kernel_size must be >= 2 for the receptive field to grow, got {k}")
    if span < 1:
        raise ValueError(f"span must be a positive number of samples, got {span}")
    layers = 0
    while receptive_field(k, [2**i for i in range(layers)]) < span:
        layers += 1
    return layers


class CausalConv1D(nn.Module):
    """A dilated causal convolution over ``(B, T, C)`` with a cached single-step path.

    Attributes:
      features: output channels.
      kernel_size: taps ``k``.
      dilation: spacing ``d`` between taps.
      dtype: compute dtype; parameters are kept in ``param_dtype``.

    The kernel is stored as ``(k, C, features)``: tap ``j`` multiplies ``x_{t - (k-1-j) d}``.
    """

    features: int
    kernel_size: int = 2
    dilation: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @property
    def cache_length(self) -> int:
        """Past inputs the decode path keeps: ``dilation * (kernel_size - 1)`` (0 for a 1x1
        convolution)."""
        return self.dilation * (self.kernel_size - 1)

    @nn.compact
    def __call__(self, x: jnp.ndarray, step: jnp.ndarray | None = None) -> jnp.ndarray:
        """Full path (``step`` None): ``x`` ``(B, T, C)`` -> ``(B, T, features)``.

        Decode path: ``x`` ``(B, C)`` is the input at time ``step`` (an int32 scalar; steps
        must be visited in order 0, 1, 2, ...) -> the output at that time, ``(B, features)``.
        """
        k, d = self.kernel_size, self.dilation
        c = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, c, self.features), self.param_dtype)
        kernel = kernel.astype(self.dtype)
        if step is None:
            y = lax.conv_general_dilated(
                x.astype(self.dtype),
                kernel,
                window_strides=(1,),
                padding=[((k - 1) * d, 0)],
                rhs_dilation=(d,),
                dimension_numbers=("NWC", "WIO", "NWC"),
            )
        else:
            y = self._decode(x.astype(self.dtype), kernel, step)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y

    def _decode(self, x, kernel, step):
        k, d = self.kernel_size, self.dilation
        batch, c = x.shape
        if k == 1:
            return x @ kernel[0]
        # See the module docstring: row p = t mod d holds x_{t-(k-1)d}, ..., x_{t-d}.
        lines = self.variable("cache", "lines", jnp.zeros, (d, batch, (k - 1) * c), self.dtype)
        phase = lax.rem(step, jnp.int32(d))  # steps are >= 0: no sign fix-up
        past = lax.dynamic_index_in_dim(lines.value, phase, keepdims=False)
        taps = jnp.concatenate([past, x], axis=-1)  # x_{t-(k-1)d}, ..., x_{t-d}, x_t
        lines.value = lax.dynamic_update_index_in_dim(lines.value, taps[:, c:], phase, 0)
        return taps @ kernel.reshape(k * c, self.features)


class ResidualBlock(nn.Module):
    """One WaveNet layer: dilated causal conv -> tanh * sigmoid -> 1x1 residual and 1x1 skip.

    ``x`` ``(..., residual_channels)`` -> ``(x + residual, skip)``. The dilated conv outputs
    ``gate_channels`` (the tanh half and the sigmoid half); ``cond`` (broadcastable to
    ``(..., gate_channels)``) is the conditioning already projected for this layer and is added
    before the gate. The residual and skip 1x1 convolutions run as one matmul.
    """

    residual_channels: int
    gate_channels: int
    skip_channels: int
    kernel_size: int
    dilation: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond=None, step=None):
        if self.gate_channels % 2:
            raise ValueError(f"gate_channels must be even, got {self.gate_channels}")
        h = CausalConv1D(
            self.gate_channels, self.kernel_size, self.dilation, dtype=self.dtype, name="conv"
        )(x, step)
        if cond is not None:
            h = h + cond.astype(self.dtype)
        a, b = jnp.split(h, 2, axis=-1)
        z = jnp.tanh(a) * nn.sigmoid(b)
        out = nn.Dense(self.residual_channels + self.skip_channels, dtype=self.dtype, name="out")(z)
        return x + out[..., : self.residual_channels], out[..., self.residual_channels :]


def line_offsets(dilations: Sequence[int]) -> np.ndarray:
    """First row of each layer's tap lines in the shared buffer of ``sum(dilations)`` rows."""
    d = np.asarray([int(v) for v in dilations], np.int64)
    if d.size == 0 or (d < 1).any():
        raise ValueError(f"dilations must be a non-empty list of ints >= 1, got {list(dilations)}")
    return np.concatenate([[0], np.cumsum(d)[:-1]]).astype(np.int32)


def line_rows(step: jnp.ndarray, dilations: Sequence[int]) -> jnp.ndarray:
    """``(L,)`` int32: the row each layer reads and writes at ``step``, ``offset_l + step mod
    d_l`` (steps are >= 0)."""
    d = jnp.asarray(np.asarray(dilations, np.int32))
    return jnp.asarray(line_offsets(dilations)) + lax.rem(jnp.int32(step), d)


def stack_blocks(params: dict, num_layers: int, dtype: Any = jnp.float32) -> dict:
    """The residual blocks' parameters ``block0 .. block{L-1}`` stacked along a layer axis and
    cast to the compute ``dtype``: ``conv_kernel`` ``(L, k, C, G)``, ``conv_bias`` ``(L, G)``,
    ``out_kernel`` ``(L, G/2, R+S)``, ``out_bias`` ``(L, R+S)``."""
    blocks = [params[f"block{i}"] for i in range(num_layers)]

    def stack(f):
        return jnp.stack([f(b) for b in blocks]).astype(dtype)

    return {
        "conv_kernel": stack(lambda b: b["conv"]["kernel"]),
        "conv_bias": stack(lambda b: b["conv"]["bias"]),
        "out_kernel": stack(lambda b: b["out"]["kernel"]),
        "out_bias": stack(lambda b: b["out"]["bias"]),
    }


def decode_weights(params: dict, num_layers: int, dtype: Any = jnp.float32) -> dict:
    """The residual blocks' parameters ``block0 .. block{L-1}`` in the layout
    :func:`decode_layers` reads, cast to the compute ``dtype``: ``past_kernel``
    ``(L, (k-1) C, G)`` (the past taps' share of the dilated convs, stacked for one batched
    matmul) and ``conv_bias`` ``(L, G)``; per layer, a tuple of L: ``cur_kernel`` ``(C, G)``
    (the current tap's share), ``out_kernel`` ``(G/2, R+S)`` and ``out_bias`` ``(R+S,)``.

    Build it once, outside the sampler's loop, and close the loop over it. XLA does not hoist
    a slice out of a while loop (its loop-invariant code motion deems one not worth hoisting
    alone), so a layer's weights sliced out of a stacked array inside the loop are copied at
    every step: on the paper WaveNet that was 2 MB and 31 copy kernels a step, about half of a
    batch-1 step on CPU (BENCHMARKS.md). Here each layer's arrays are separate operands."""
    blocks = [params[f"block{i}"] for i in range(num_layers)]
    k, c, g = blocks[0]["conv"]["kernel"].shape
    cast = lambda a: jnp.asarray(a).astype(dtype)
    return {
        "past_kernel": cast(
            jnp.stack([b["conv"]["kernel"][: k - 1].reshape((k - 1) * c, g) for b in blocks])
        ),
        "conv_bias": cast(jnp.stack([b["conv"]["bias"] for b in blocks])),
        "cur_kernel": tuple(cast(b["conv"]["kernel"][k - 1]) for b in blocks),
        "out_kernel": tuple(cast(b["out"]["kernel"]) for b in blocks),
        "out_bias": tuple(cast(b["out"]["bias"]) for b in blocks),
    }


def decode_layers(h, lines, rows, w: dict, cond=None):
    """One time step of a stack of :class:`ResidualBlock` s on the shared tap-line buffer.

    ``h`` ``(B, C)``: the stack's input at this step; ``lines`` ``(sum d_l, B, (k-1) C)``: the
    buffer (module doc); ``rows`` ``(L,)``: :func:`line_rows` of the step; ``w``:
    :func:`decode_weights`; ``cond`` ``(B, L G)`` or None: the per-layer conditioning. Returns
    ``(h_out, skip_sum, new_lines)``, what the blocks' decode paths return, summed skips.
    """
    num_layers = len(w["cur_kernel"])
    c, g = w["cur_kernel"][0].shape
    dtype = w["past_kernel"].dtype
    h = h.astype(dtype)
    # Every layer's past taps, one gather: (L, B, (k-1) C).
    past = jnp.take(lines, rows, axis=0, indices_are_sorted=True, unique_indices=True)
    pre = jnp.einsum("lbi,lio->lbo", past, w["past_kernel"]) + w["conv_bias"][:, None, :]
    if cond is not None:
        pre = pre + jnp.moveaxis(cond.astype(dtype).reshape(h.shape[0], num_layers, g), 1, 0)
    inputs, skip = [], None
    for i in range(num_layers):  # the layers' chain; time steps are scanned by the caller
        inputs.append(h)
        a, b = jnp.split(h @ w["cur_kernel"][i] + pre[i], 2, axis=-1)
        out = (jnp.tanh(a) * nn.sigmoid(b)) @ w["out_kernel"][i] + w["out_bias"][i]
        h = h + out[:, :c]
        skip = out[:, c:] if skip is None else skip + out[:, c:]
    new = jnp.concatenate([past[:, :, c:], jnp.stack(inputs)], axis=-1)
    lines = lines.at[rows].set(new, indices_are_sorted=True, unique_indices=True)
    return h, skip, lines
