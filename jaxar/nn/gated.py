"""Gated PixelCNN layers (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): the gated unit, the vertical and horizontal stack convolutions, and the gated block.

Two stacks replace the single masked convolution of PixelCNN, which removes its blind spot:

* the **vertical stack** at row ``h`` depends only on the rows above (``< h``), every column of
  them within its kernel's reach. Its first convolution reads the image shifted down by one row;
  later ones are ``(k//2 + 1) x k`` convolutions cropped so they read rows ``h - k//2 .. h`` of
  the previous vertical features (which themselves only see rows above);
* the **horizontal stack** at ``(h, w)`` sees the pixels to its left in row ``h`` and, through a
  1x1 link from the vertical stack at ``(h, w)``, the rows above. Its convolutions are ``1 x k``
  masked ones stored cropped as ``1 x (k//2 + 1)``: the ``k//2`` pixels to the left and the pixel
  itself, whose colour groups are masked as type A (first layer) or B (later layers) by the rule
  of :mod:`jaxar.nn.masks`. The vertical stack never needs a colour mask: it sees no part of the
  current row.

Every convolution outputs ``2 * features`` pre-activations, the tanh half and the sigmoid half of
the gated unit ``tanh(a) * sigmoid(b)``; the stacks' convolutions run through
:func:`jaxar.nn.conv.conv2d` (1x1 kernels as matrix products, kernel-gradient slices on CPU
when :data:`jaxar.nn.conv.KERNEL_GRAD_CHUNK` is set). Both halves use the colour-group layout
of ``features`` features, so feature ``j`` of the gate output belongs to group ``j //
(features // C)`` like its two inputs ``a_j`` and ``b_j``.

Each layer has a decode path for the cached sampler, keeping its state in the flax ``cache``
collection:

* :meth:`GatedBlock.vertical_row` computes the vertical stack for a whole row ``h`` at once (at
  the start of the row, when every row above is known). The first layer reads its window rows
  straight from the image; later layers keep a ring buffer of their last ``k//2 + 1`` input rows.
  The row of link pre-activations for the horizontal stack is stored.
* :meth:`GatedBlock.horizontal_pixel` computes the horizontal stack at one position ``(h, w)``:
  the first layer reads its window straight from the image, later layers keep a buffer of the
  current row of their input, and the stored link row is read at ``w``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxar.nn.conv import MaskedConv2D, conv2d, window_dot
from jaxar.nn.decode import cast_weight, decode_weight
from jaxar.nn.dense import Dense
from jaxar.nn.masks import channel_mask

__all__ = [
    "ConditionBias",
    "GatedBlock",
    "HorizontalConv",
    "StackLink",
    "VerticalConv",
    "gate",
    "gated_channel_mask",
]


def gate(x: jnp.ndarray) -> jnp.ndarray:
    """The gated unit: ``x`` holds ``[a, b]`` on its last axis; returns ``tanh(a) * sigmoid(b)``."""
    a, b = jnp.split(x, 2, axis=-1)
    return jnp.tanh(a) * nn.sigmoid(b)


def gated_channel_mask(
    in_features: int, features: int, mask_type: str, color_channels: int = 1
) -> np.ndarray:
    """The ``(in, 2 * features)`` centre mask of a convolution feeding a gated unit.

    Both halves (tanh and sigmoid pre-activations) have the colour-group layout of ``features``
    features, so the gate's output ``j`` reads only groups its own group may read.
    """
    m = channel_mask(in_features, features, mask_type, color_channels)
    return np.concatenate([m, m], axis=1)


def _check_odd(name: str, k: int, minimum: int = 1) -> None:
    if k < minimum or k % 2 == 0:
        raise ValueError(f"{name} must be odd and >= {minimum}, got {k}")


class VerticalConv(nn.Module):
    """The vertical-stack convolution: output row ``h`` sees only input rows above the image row.

    The kernel is ``kernel_size = (n, k)``: ``n`` rows, ``k`` (odd) columns centred on ``w``.
    Output row ``h`` reads input rows ``h - n + 1 - shift .. h - shift``. With ``shift=True``
    (the first layer, reading the image) that is the ``n`` rows strictly above; with
    ``shift=False`` (later layers, reading vertical features that already only see rows above)
    it is the row itself and the ``n - 1`` above. Outputs ``2 * features`` gate pre-activations.
    """

    features: int
    kernel_size: Sequence[int]
    shift: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _kernel(self, in_features: int, decode: bool) -> jnp.ndarray:
        n, k = (int(s) for s in self.kernel_size)
        if n < 1:
            raise ValueError(f"the vertical kernel needs at least one row, got {n}")
        _check_odd("the vertical kernel width", k)
        shape = (n, k, in_features, 2 * self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, self.param_dtype)
        return cast_weight(self, "kernel", kernel, self.dtype, decode)

    def _bias(self, decode: bool) -> jnp.ndarray:
        b = self.param("bias", nn.initializers.zeros, (2 * self.features,), self.param_dtype)
        return cast_weight(self, "bias", b, self.dtype, decode)

    @nn.compact
    def __call__(self, x: jnp.ndarray, row=None) -> jnp.ndarray:
        """Full path (``row`` None): ``x`` ``(B, H, W, in)`` -> ``(B, H, W, 2 * features)``.

        Decode path at image row ``row`` (a traced int): returns the output row ``(B, W, 2F)``.
        Either ``x`` is the whole input ``(B, H, W, in)`` whose rows the window needs are known
        (the first layer: the image being generated), read directly; or ``x`` is the input's
        row ``row`` ``(B, W, in)``, written into a ring buffer of the last ``n`` rows (rows must
        be visited in order).
        """
        n, k = (int(s) for s in self.kernel_size)
        s = int(self.shift)
        kernel, bias = self._kernel(x.shape[-1], row is not None), self._bias(row is not None)
        conv = lambda window, pad_top: conv2d(
            window.astype(self.dtype), kernel, (1, 1), ((pad_top, 0), (k // 2, k // 2))
        )
        if row is None:
            if s:  # shift down one row: output row h reads rows < h only
                x = jnp.pad(x, [(0, 0), (s, 0), (0, 0), (0, 0)])[:, : x.shape[1]]
            return conv(x, n - 1) + bias
        row_ids = row - s - n + 1 + jnp.arange(n)
        if x.ndim == 4:
            window = jnp.take(x, jnp.clip(row_ids, 0, x.shape[1] - 1), axis=1)
        else:
            batch, width, fin = x.shape
            buf = self.variable("cache", "rows", jnp.zeros, (batch, n, width, fin), self.dtype)
            buf.value = lax.dynamic_update_slice(
                buf.value, x.astype(self.dtype)[:, None], (0, row % n, 0, 0)
            )
            window = jnp.take(buf.value, row_ids % n, axis=1)
        # Rows above the image read as zeros (the full path's zero padding).
        window = window.astype(self.dtype) * (row_ids >= 0).astype(self.dtype)[None, :, None, None]
        return conv(window, 0)[:, 0] + bias


class HorizontalConv(nn.Module):
    """The horizontal-stack convolution: a ``1 x kernel_width`` masked convolution.

    Output ``(h, w)`` reads input pixels ``(h, w - kernel_width//2 .. w)``; at ``w`` itself only
    the colour groups ``mask_type`` allows (``"A"``: earlier groups, ``"B"``: earlier and own).
    The weights for the pixels right of ``w``, always masked, are not stored. Outputs
    ``2 * features`` gate pre-activations (see :func:`gated_channel_mask`).
    """

    features: int
    kernel_width: int
    mask_type: str = "B"
    color_channels: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def _taps(self) -> int:
        return self.kernel_width // 2 + 1

    def _kernel(self, in_features: int, decode: bool = False) -> jnp.ndarray:
        """The masked kernel in the compute dtype; for the decode path a
        :func:`~jaxar.nn.decode.decode_weight`, built once before the sampler's loop."""
        _check_odd("the horizontal kernel width", self.kernel_width)
        taps = self._taps
        mask = np.ones((1, taps, in_features, 2 * self.features), np.float32)
        mask[0, -1] = gated_channel_mask(
            in_features, self.features, self.mask_type, self.color_channels
        )
        kernel = self.param("kernel", nn.initializers.lecun_normal(), mask.shape, self.param_dtype)
        masked = lambda: (kernel * jnp.asarray(mask, self.param_dtype)).astype(self.dtype)
        return decode_weight(self, "kernel", masked, decode)

    @nn.compact
    def __call__(self, x: jnp.ndarray, pos=None, width: int | None = None) -> jnp.ndarray:
        """Full path (``pos`` None): ``x`` ``(B, H, W, in)`` -> ``(B, H, W, 2 * features)``.

        Decode path at ``pos = (h, w)``, returning ``(B, 2F)``: either ``x`` is the whole input
        ``(B, H, W, in)`` as generated so far (the first layer: the image), read directly; or
        ``x`` is the input at ``(h, w)``, ``(B, in)``, written into a buffer of the current row
        (``width``, static, is the image width). Positions must be visited in raster order;
        revisiting one (a step per colour channel) overwrites it.
        """
        taps = self._taps
        kernel = self._kernel(x.shape[-1], decode=pos is not None)
        bias = self.param("bias", nn.initializers.zeros, (2 * self.features,), self.param_dtype)
        bias = cast_weight(self, "bias", bias, self.dtype, pos is not None)
        if pos is None:
            y = conv2d(x.astype(self.dtype), kernel, (1, 1), ((0, 0), (taps - 1, 0)))
            return y + bias
        h, w = pos
        if x.ndim == 4:
            col_ids = w - taps + 1 + jnp.arange(taps)
            window = lax.dynamic_index_in_dim(x, h, axis=1, keepdims=False)  # (B, W, in)
            window = jnp.take(window, jnp.clip(col_ids, 0, x.shape[2] - 1), axis=1)
            window = window.astype(self.dtype) * (col_ids >= 0).astype(self.dtype)[None, :, None]
        else:
            if width is None:
                raise ValueError("the horizontal decode path needs the static image width")
            batch, fin = x.shape
            # Columns 0 .. taps-2 are the left padding: never written, always zero. The columns
            # left of w were written earlier in this row, so values of the row above never show.
            buf = self.variable(
                "cache", "row", jnp.zeros, (batch, width + taps - 1, fin), self.dtype
            )
            buf.value = lax.dynamic_update_slice(
                buf.value, x.astype(self.dtype)[:, None], (0, w + taps - 1, 0)
            )
            window = lax.dynamic_slice_in_dim(buf.value, w, taps, axis=1)  # (B, taps, in)
        return window_dot(window, kernel[0]) + bias


class StackLink(nn.Module):
    """The 1x1 link from the vertical stack's pre-activations into the horizontal stack.

    ``mode``: ``"full"`` (any shape, a dense layer on the last axis), ``"row"`` (decode: a row
    ``(B, W, in)`` whose output is stored in the ``cache`` collection and returned) or
    ``"pixel"`` (decode: the stored row read at column ``w``, ``(B, features)``).
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, v_pre=None, mode: str = "full", w=None) -> jnp.ndarray:
        if mode == "pixel":
            if not self.has_variable("cache", "row"):
                raise ValueError("StackLink: the pixel decode path needs a stored row first")
            store = self.variable("cache", "row")
            return lax.dynamic_index_in_dim(store.value, w, axis=1, keepdims=False)
        if mode not in ("full", "row"):
            raise ValueError(f"mode must be 'full', 'row' or 'pixel', got {mode!r}")
        y = Dense(self.features, dtype=self.dtype, name="dense")(v_pre, mode == "row")
        if mode == "row":
            store = self.variable("cache", "row", jnp.zeros, y.shape, self.dtype)
            store.value = y.astype(self.dtype)
        return y


class ConditionBias(nn.Module):
    """The conditioning term added to a stack's gate pre-activations (``V^T c`` in the paper).

    Sums a learned class embedding (``num_classes`` > 0), a linear map of a conditioning vector
    (``cond_dim`` > 0) and a 1x1 map of a spatial conditioning map with ``map_channels``
    channels. ``label`` ``(B,)`` and ``vector`` ``(B, cond_dim)`` are broadcast over
    ``spatial_ndim`` position axes; ``cmap`` ``(B, ..., map_channels)`` already has them.
    Returns None when the layer has no conditioning.
    """

    features: int
    num_classes: int = 0
    cond_dim: int = 0
    map_channels: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, label=None, vector=None, cmap=None, spatial_ndim: int = 0, decode=False):
        """``decode``: a sampler step's call. The label's and the vector's term is the same at
        every step: a :func:`~jaxar.nn.decode.decode_weight` built before the sampler's loop
        from the conditioning its state was made for (compiled for an H200, the vector's
        products stayed in the loop)."""
        add = lambda a, b: b if a is None else a + b

        def per_example():  # (B, features)
            out = None
            if self.num_classes:
                embed = nn.Embed(self.num_classes, self.features, name="class_embed")
                out = add(out, embed(label).astype(self.dtype))
            if self.cond_dim:
                dense = nn.Dense(self.features, use_bias=False, dtype=self.dtype, name="vector")
                out = add(out, dense(vector.astype(self.dtype)))
            return out

        out = None
        if self.num_classes or self.cond_dim:
            out = decode_weight(self, "per_example", per_example, decode)
            out = out.reshape((out.shape[0],) + (1,) * spatial_ndim + (-1,))
        if self.map_channels:
            dense = Dense(self.features, use_bias=False, dtype=self.dtype, name="map")
            out = add(out, dense(cmap.astype(self.dtype), decode))
        return out


class GatedBlock(nn.Module):
    """One Gated PixelCNN layer: both stacks, the link, gated units, residual and skip.

    ``v' = gate(V * v + c_v)``; ``g = gate(H * h + link(V * v + c_v) + c_h)``;
    ``h' = h + R g`` (``h' = R g`` in the first layer, whose input is the image); the skip
    output is ``S g``. ``V``, ``H`` are the vertical and horizontal convolutions, ``R``, ``S``
    masked 1x1 convolutions (type B), ``c_v``, ``c_h`` the conditioning terms.

    The first layer (``first=True``) reads the image: its vertical kernel is
    ``(kernel//2) x kernel`` over the rows strictly above, its horizontal one type A. Later
    layers use ``(kernel//2 + 1) x kernel`` vertical and type-B horizontal kernels.

    Attributes:
      features: gate output features (both stacks); divisible by ``color_channels``.
      kernel: odd kernel size (>= 3 for the first layer).
      skip_features: output features of the skip connection.
    """

    features: int
    kernel: int
    first: bool = False
    color_channels: int = 1
    skip_features: int = 0
    num_classes: int = 0
    cond_dim: int = 0
    map_channels: int = 0
    dtype: Any = jnp.float32

    def setup(self):
        k, f, c = self.kernel, self.features, self.color_channels
        _check_odd("kernel", k, 3 if self.first else 1)
        rows = k // 2 if self.first else k // 2 + 1
        self.vconv = VerticalConv(f, (rows, k), shift=self.first, dtype=self.dtype)
        self.hconv = HorizontalConv(
            f, k, "A" if self.first else "B", color_channels=c, dtype=self.dtype
        )
        self.link = StackLink(2 * f, dtype=self.dtype)
        if self.num_classes or self.cond_dim or self.map_channels:
            cb = lambda name: ConditionBias(
                2 * f, self.num_classes, self.cond_dim, self.map_channels, self.dtype, name=name
            )
            self.vcond, self.hcond = cb("vcond"), cb("hcond")
        self.res = MaskedConv2D(f, 1, "B", color_channels=c, dtype=self.dtype)
        self.skip = MaskedConv2D(self.skip_features, 1, "B", color_channels=c, dtype=self.dtype)

    def _cond(self, which: str, cond: dict, spatial_ndim: int, decode: bool = False):
        if not (self.num_classes or self.cond_dim or self.map_channels):
            return None
        mod = self.vcond if which == "v" else self.hcond
        return mod(cond.get("label"), cond.get("vector"), cond.get("map"), spatial_ndim, decode)

    def _residual_and_skip(self, g):
        """The 1x1 residual and skip convolutions at one position, ``g`` ``(B, F)`` -> their
        outputs, as one product of their kernels side by side, built before the sampler's
        loop. Compiled for an H200, XLA merged the two products itself and concatenated the
        two kernels at every step (6 kernels a step at batch 16)."""
        layers = (self.res, self.skip)

        def kernel():
            kernels = [m.masked_rows(m.variables["params"]["kernel"])[0, 0] for m in layers]
            return jnp.concatenate(kernels, axis=-1)

        def bias():
            return jnp.concatenate([m.variables["params"]["bias"] for m in layers]).astype(
                self.dtype
            )

        y = g.astype(self.dtype) @ decode_weight(self, "res_skip_kernel", kernel)
        y = y + decode_weight(self, "res_skip_bias", bias)
        return y[:, : self.features], y[:, self.features :]

    @staticmethod
    def _plus(x, bias):
        return x if bias is None else x + bias

    def __call__(self, v, h, cond: dict):
        """Full path: ``v``, ``h`` ``(B, H, W, in)`` (both the centred image in the first layer)
        -> ``(v', h', skip)``. ``cond``: dict with "label" ``(B,)``, "vector" ``(B, D)``,
        "map" ``(B, H, W, M)`` as configured."""
        v_pre = self._plus(self.vconv(v), self._cond("v", cond, 2))
        h_pre = self._plus(self.hconv(h) + self.link(v_pre), self._cond("h", cond, 2))
        g = gate(h_pre)
        r = self.res(g)
        return gate(v_pre), (r if self.first else h + r), self.skip(g)

    def vertical_row(self, v, row, cond: dict):
        """Decode path of the vertical stack for image row ``row``: ``v`` is the image
        ``(B, H, W, C)`` (first layer; rows ``< row`` must be final) or the previous layer's
        output row ``(B, W, F)``. Stores the link row; returns this layer's output row."""
        c = dict(cond)
        if c.get("map") is not None:
            c["map"] = lax.dynamic_index_in_dim(c["map"], row, axis=1, keepdims=False)
        v_pre = self._plus(self.vconv(v, row), self._cond("v", c, 1, decode=True))
        self.link(v_pre, "row")
        return gate(v_pre)

    def horizontal_pixel(self, h, pos, width: int, cond: dict):
        """Decode path of the horizontal stack at ``pos = (h, w)`` (after :meth:`vertical_row`
        for row ``h``): ``h`` is the image ``(B, H, W, C)`` (first layer) or the previous layer's
        output at ``pos`` ``(B, F)``. Returns ``(h', skip)`` at ``pos``."""
        c = dict(cond)
        if c.get("map") is not None:
            c["map"] = c["map"][:, pos[0], pos[1]]
        h_pre = self.hconv(h, pos, width) + self.link(None, "pixel", pos[1])
        g = gate(self._plus(h_pre, self._cond("h", c, 0, decode=True)))
        r, skip = self._residual_and_skip(g)
        return (r if self.first else h + r), skip
