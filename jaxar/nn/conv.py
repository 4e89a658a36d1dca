"""Masked 2-D convolutions with a full-image path and a single-position decode path.

The full path is a SAME convolution whose kernel is multiplied by a fixed 0/1 mask
(:func:`jaxar.nn.masks.conv_mask`); the mask's all-zero rows below the centre are left out of
the convolution (the image is padded above only), which computes the same sums. The decode
path computes the output at one position ``(h, w)`` from a ring buffer of the last
``kh // 2 + 1`` input rows kept in the ``cache`` collection: the rows below the centre are
masked out, so they are never stored. Writing the input at ``(h, w)`` and reading the
``(kh // 2 + 1) x kw`` window costs ``O(kh * kw * in * out)``, independent of the image size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxar.nn.decode import cast_weight, decode_weight
from jaxar.nn.masks import conv_mask

__all__ = ["KERNEL_GRAD_CHUNK", "MaskedConv2D", "conv2d", "conv_general_dilated", "window_dot"]

#: Output features per kernel-gradient convolution on CPU (:func:`conv2d`); ``None`` (the
#: default): one convolution. Read when a function is traced, so set it before the first trace.
#: Processor-dependent (BENCHMARKS.md): slices of 16 made the PixelCNN++ CPU train step 15%
#: faster on the AMD EPYC of 2026-12-01; on the AVX-512 one of 2026-12-02 (family 25, model
#: 17) they made single kernel gradients 1.7-2.2x slower, the Gated PixelCNN and PixelCNN++
#: train steps 1.04-3.4x slower (3.4x: PixelCNN++ at the paper's size), PixelCNN's no faster.
KERNEL_GRAD_CHUNK: int | None = None


def _conv(x, kernel, strides, padding):
    return lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def window_dot(window, kernel):
    """One output of a convolution from the window it reads: ``window`` ``(B, *taps, in)`` times
    ``kernel`` ``(*taps, in, out)``, summed over the taps and inputs -> ``(B, out)``.

    One matrix product of the two flattened as they lie in memory. Written as the einsum
    ``"brkc,rkco->bo"``, the contracting axes reached XLA in the order of their letters (c, k,
    r), not of memory, so it transposed the kernel and the window at every call: in a
    sampler's loop, every layer's weights re-laid out at every step."""
    return window.reshape(window.shape[0], -1) @ kernel.reshape(-1, kernel.shape[-1])


def conv2d(x, kernel, strides, padding):
    """``lax.conv_general_dilated`` of NHWC ``x`` and an HWIO ``kernel`` (``strides`` and
    ``padding`` are tuples of ints / of ``(low, high)`` pairs as there), with faster gradients
    on CPU.

    The same values (up to the order of the sums) and derivatives as the plain convolution,
    forward and reverse mode:

    * a ``1 x 1`` kernel at stride 1 without padding is a matrix product over the feature
      axis, whose gradients are matrix products too: XLA's CPU backend runs the kernel
      gradient of a ``1 x 1`` convolution several times slower than the same sums as one
      matrix product (BENCHMARKS.md: the PixelCNN family's CPU train steps 2.1-3.1x faster;
      a matrix product on every platform, unmeasured on accelerators);
    * on CPU, a kernel as large as the unpadded input (one output: a cached sampler's
      window) is a matrix product of the flattened window and kernel (PixelCNN++'s cached
      sampling 25% faster on CPU, BENCHMARKS.md); on other platforms it stays a
      convolution (compiled for an H200 the products were 8-12% more kernels per sampling
      step than XLA's cuDNN calls, under XLA's GEMM heuristics, nothing autotuned; not timed
      on a GPU);
    * any other kernel is one convolution, whose kernel gradient is computed in output slices
      of :data:`KERNEL_GRAD_CHUNK` on CPU when that is set (:func:`_sliced_conv`).
    """
    strides = tuple(int(s) for s in strides)
    padding = tuple(tuple(int(v) for v in p) for p in padding)
    unpadded = strides == (1, 1) and padding == ((0, 0), (0, 0))
    if kernel.shape[:2] == (1, 1) and unpadded:
        return lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)), ((), ())))
    if KERNEL_GRAD_CHUNK is None or kernel.shape[-1] <= KERNEL_GRAD_CHUNK:
        conv = functools.partial(_conv, strides=strides, padding=padding)
    else:
        conv = functools.partial(_sliced_conv, strides=strides, padding=padding)
    if unpadded and x.shape[1:3] == kernel.shape[:2]:
        return lax.platform_dependent(x, kernel, cpu=_window_product, default=conv)
    return conv(x, kernel)


def _window_product(x, kernel):
    """:func:`window_dot` as the ``(B, 1, 1, out)`` output of an unpadded convolution."""
    return window_dot(x, kernel)[:, None, None, :]


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """A drop-in for ``lax.conv_general_dilated`` (flax's ``nn.Conv(...,
    conv_general_dilated=...)``) that sends the 2-D channels-last convolutions flax makes,
    undilated and ungrouped, through :func:`conv2d`; anything else goes to lax unchanged."""
    nd = lhs.ndim
    channels_last = lax.ConvDimensionNumbers(
        (0, nd - 1, *range(1, nd - 1)),
        (nd - 1, nd - 2, *range(nd - 2)),
        (0, nd - 1, *range(1, nd - 1)),
    )
    plain = lambda v: v is None or all(int(d) == 1 for d in v)
    if (
        nd == 4
        and plain(lhs_dilation)
        and plain(rhs_dilation)
        and feature_group_count == 1
        and precision is None
        and not kwargs
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == channels_last
    ):
        if isinstance(padding, str):
            padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
        return conv2d(lhs, rhs, window_strides, padding)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, precision=precision, **kwargs,
    )  # fmt: skip


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _sliced_conv(x, kernel, strides, padding):
    """The convolution of :func:`conv2d` with its kernel gradient in slices (opt-in).

    Its JVP writes the kernel's term as separate convolutions of at most
    :data:`KERNEL_GRAD_CHUNK` output features each, concatenated, when it runs on a CPU
    (``lax.platform_dependent``; one convolution elsewhere), so reverse mode computes the
    kernel gradient in output slices. On the processor of 2026-12-01, XLA's CPU backend ran
    slices of 16 1.3-2.3x faster than one kernel-gradient convolution of 32-128 outputs at
    the PixelCNN++ sizes; on the AVX-512 one of 2026-12-02, 1.7-2.2x slower (BENCHMARKS.md).
    """
    return _conv(x, kernel, strides, padding)


def _kernel_term(x, dk, strides, padding):
    out = dk.shape[-1]

    def chunked(x, dk):
        n = KERNEL_GRAD_CHUNK
        parts = [_conv(x, dk[..., i : i + n], strides, padding) for i in range(0, out, n)]
        return jnp.concatenate(parts, axis=-1)

    def whole(x, dk):
        return _conv(x, dk, strides, padding)

    return lax.platform_dependent(x, dk, cpu=chunked, default=whole)


@functools.partial(_sliced_conv.defjvp, symbolic_zeros=True)
def _conv2d_jvp(strides, padding, primals, tangents):
    x, kernel = primals
    dx, dk = tangents
    y = _conv(x, kernel, strides, padding)
    dy = None
    if not isinstance(dx, SymbolicZero):
        dy = _conv(dx, kernel, strides, padding)
    if not isinstance(dk, SymbolicZero):
        t = _kernel_term(x, dk, strides, padding)
        dy = t if dy is None else dy + t
    return y, jnp.zeros_like(y) if dy is None else dy


class MaskedConv2D(nn.Module):
    """A masked NHWC convolution (stride 1, SAME padding) for raster-order models.

    Attributes:
      features: output features.
      kernel_size: odd ``k`` or ``(kh, kw)``.
      mask_type: ``"A"`` or ``"B"``; see :func:`jaxar.nn.masks.conv_mask`.
      color_channels: colour groups the features are split into (1 or 3).
      dtype: compute dtype; ``param_dtype`` is the dtype the parameters are kept in.
    """

    features: int
    kernel_size: int | Sequence[int]
    mask_type: str = "B"
    color_channels: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @property
    def _ks(self) -> tuple[int, int]:
        ks = self.kernel_size
        return (ks, ks) if isinstance(ks, int) else (int(ks[0]), int(ks[1]))

    def masked_rows(self, kernel: jnp.ndarray) -> jnp.ndarray:
        """``kernel``'s rows above and at the centre, times their mask, in the compute dtype:
        what the layer convolves with (the rows below are all masked out). A function of the
        kernel alone, which a parent layer may call on this layer's parameters (the Gated
        PixelCNN joins two 1x1 layers' kernels for its sampler)."""
        mask = conv_mask(
            self._ks, kernel.shape[2], self.features, self.mask_type, self.color_channels
        )
        rows = self._ks[0] // 2 + 1
        if rows == mask.shape[0] and mask.all():  # nothing masked (a 1x1 type-B kernel, say)
            return kernel.astype(self.dtype)
        return (kernel[:rows] * jnp.asarray(mask[:rows], kernel.dtype)).astype(self.dtype)

    def _masked_kernel(self, in_features: int, decode: bool = False) -> jnp.ndarray:
        """:meth:`masked_rows` of the layer's kernel. Sliced before the product: a slice of the
        product is not hoisted out of a sampler's loop (alone, XLA deems one not worth it)
        and was a copy of every layer's kernel at every step. For the decode path it is a
        :func:`~jaxar.nn.decode.decode_weight`, built once before the sampler's loop."""
        mask = conv_mask(self._ks, in_features, self.features, self.mask_type, self.color_channels)
        kernel = self.param("kernel", self.kernel_init, mask.shape, self.param_dtype)
        if self._ks[0] // 2 + 1 == mask.shape[0] and mask.all():  # nothing masked: no product
            return cast_weight(self, "kernel", kernel, self.dtype, decode)
        return decode_weight(self, "kernel", lambda: self.masked_rows(kernel), decode)

    def _bias(self, decode: bool = False) -> jnp.ndarray | None:
        if not self.use_bias:
            return None
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return cast_weight(self, "bias", bias, self.dtype, decode)

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, pos=None, width: int | None = None, decode: bool = False
    ) -> jnp.ndarray:
        """Full path when ``pos`` is None: ``x`` is ``(B, H, W, in)``, returns ``(B, H, W, out)``
        (``decode``: called by a sampler's step, which reads the weights built before its loop).

        Decode path when ``pos = (h, w)`` is given; returns the output at ``(h, w)``, shape
        ``(B, out)``. Either ``x`` is the input at that position, shape ``(B, in)``: it is
        written into the row cache (``width``, static, is the image width), positions must be
        visited in raster order, and revisiting one (a step per colour channel) overwrites it.
        Or ``x`` is the whole input ``(B, H, W, in)`` as generated so far (the first layer, whose
        input is the image the sampler carries): the window is read from it and nothing is
        cached.
        """
        kh, kw = self._ks
        decode = decode or pos is not None
        kernel = self._masked_kernel(x.shape[-1], decode)
        if pos is None:
            # The mask zeroes every kernel row below the centre, so only rows 0..kh//2 are
            # convolved (the kernel has only those), with the image padded above only: the
            # same sums as the SAME convolution of the whole masked kernel, without its zero
            # rows' work.
            padding = ((kh // 2, 0), (kw // 2, kw // 2))
            y = conv2d(x.astype(self.dtype), kernel, (1, 1), padding)
        else:
            y = self._decode(x, kernel, pos, width)
        bias = self._bias(decode)
        return y if bias is None else y + bias

    def _decode(self, x, kernel, pos, width):
        kh, kw = self._ks
        ch, cw = kh // 2, kw // 2
        rows = ch + 1  # the rows a masked kernel reads: those above the centre and its own
        h, w = pos
        row_ids = h - ch + jnp.arange(rows)
        if x.ndim == 4:
            # The whole (partially generated) input is given: read the window from it directly.
            col_ids = w - cw + jnp.arange(kw)
            valid = (row_ids >= 0)[:, None] & (col_ids >= 0)[None, :] & (col_ids < x.shape[2])
            window = jnp.take(x, jnp.clip(row_ids, 0, x.shape[1] - 1), axis=1)
            window = jnp.take(window, jnp.clip(col_ids, 0, x.shape[2] - 1), axis=2)
            window = window.astype(self.dtype) * valid.astype(self.dtype)[None, :, :, None]
            return window_dot(window, kernel)
        if kh == kw == 1:
            return x.astype(self.dtype) @ kernel[0, 0]
        if width is None:
            raise ValueError("the cached decode path needs the static image width")
        batch, fin = x.shape
        buf = self.variable(
            "cache", "rows", jnp.zeros, (batch, rows, width + 2 * cw, fin), self.dtype
        )
        buf.value = lax.dynamic_update_slice(
            buf.value, x.astype(self.dtype)[:, None, None, :], (0, h % rows, w + cw, 0)
        )
        # Rows h-ch..h in order; rows above the image read as zeros (SAME padding).
        window = lax.dynamic_slice_in_dim(buf.value, w, kw, axis=2)  # (B, rows, kw, in)
        window = jnp.take(window, row_ids % rows, axis=1)
        window = window * (row_ids >= 0).astype(self.dtype)[None, :, None, None]
        return window_dot(window, kernel)
