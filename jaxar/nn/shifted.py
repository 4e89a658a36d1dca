"""Shifted convolutions and the gated resnet block of PixelCNN++ (Salimans et al. 2017).

PixelCNN++ keeps causality without masks by running two streams of features:

* the **down** stream ``u``: the feature at row ``r`` depends only on pixels in rows ``< r``;
* the **down-right** stream ``ul``: the feature at ``(r, c)`` depends only on pixels before
  ``(r, c)`` in raster order (rows ``< r``, or row ``r`` and columns ``< c``).

Both are kept by padding instead of masking. A *down-shifted* convolution with a ``kh x kw``
kernel pads ``kh - 1`` rows on top, none below, and centres the kernel horizontally, so its
output at row ``r`` sees rows ``r - kh + 1 .. r`` of its input; a *down-right-shifted* one also
pads ``kw - 1`` columns on the left, none on the right, so it sees the window ending at
``(r, c)``. Applied to a stream, they keep its invariant; applied to the image, a
:func:`down_shift` (or :func:`right_shift`) of the output moves it one row down (column right)
so that it no longer sees its own pixel.

The strided versions (stride 2) halve the resolution: the coarse position ``(i, j)`` reads the
fine window ending at ``(2i, 2j)``, so it depends on fine pixels before ``(2i, 2j)`` only. The
transposed versions (up-sampling by ``stride``) are convolutions of the input dilated by
``stride`` and padded so that the fine output ``(p, q)`` reads only coarse inputs ``(i, j)``
with ``stride * i <= p`` (and ``stride * j <= q`` for the down-right stream), which keeps both
invariants across the U-net; they are computed without the inserted zeros, as one ordinary
convolution whose outputs are interleaved (:func:`subpixel_conv_transpose`).

Every convolution is NHWC with an explicit padding (one XLA convolution, nothing masked at
run time; :func:`jaxar.nn.conv.conv2d`, whose kernel gradient is faster on CPU). Weight
normalisation (``w = g v / ||v||``) is optional and off by default. Three
initialisations (``weight_init``, one of :data:`WEIGHT_INITS`):

* ``"unit"``: weight-norm directions ``v ~ N(0, 0.05^2)``, gain ``init_scale``, bias 0, so every
  filter starts at norm ``init_scale`` (without weight norm: a fan-in normal kernel of variance
  ``init_scale^2 / fan_in``);
* ``"data"``: the gain and bias are set from the statistics of the batch the network is
  initialised with, so that every layer's pre-activations start with zero mean and variance
  ``init_scale ** 2``, as in the paper's TensorFlow code (needs weight norm);
* ``"fan_in"``: PyTorch's default layer initialisation, which the public PyTorch PixelCNN++
  relies on: kernel (``v``) and bias uniform in ``+-1/sqrt(fan_in)``, and with weight norm the
  gain set to ``||v||`` so the effective kernel starts equal to ``v`` (``init_scale`` unused).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxar.nn.conv import conv2d
from jaxar.nn.decode import decode_weight

__all__ = [
    "NIN",
    "WEIGHT_INITS",
    "DownRightShiftedConv2D",
    "DownRightShiftedConvTranspose2D",
    "DownShiftedConv2D",
    "DownShiftedConvTranspose2D",
    "GatedResnet",
    "ShiftedConv2D",
    "concat_elu",
    "decode_weights",
    "down_shift",
    "right_shift",
    "subpixel_conv_transpose",
]

_SHIFTS = ("down", "down_right")
WEIGHT_INITS = ("unit", "data", "fan_in")  # see the module docstring


def down_shift(x: jnp.ndarray) -> jnp.ndarray:
    """Move NHWC features one row down, filling the top row with zeros."""
    return jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0), (0, 0)))


def right_shift(x: jnp.ndarray) -> jnp.ndarray:
    """Move NHWC features one column right, filling the left column with zeros."""
    return jnp.pad(x[:, :, :-1], ((0, 0), (0, 0), (1, 0), (0, 0)))


@jax.custom_jvp
def concat_elu(x: jnp.ndarray) -> jnp.ndarray:
    """``elu([x, -x])`` along the feature axis: doubles the features, keeps both signs.

    One of ``elu(x)``, ``elu(-x)`` is linear and the other is ``exp(-|x|) - 1``, so the pair
    costs one ``exp`` per input feature, not an ``expm1`` per output, and the derivative reuses
    it instead of evaluating ``exp`` again in the backward pass. ``exp(.) - 1`` (as PyTorch's
    ELU) rather than ``expm1``: about half the time on XLA's CPU backend, and its absolute
    error (float32 rounding, about 6e-8 near 0) is far below what the network resolves.
    """
    # Not differentiated (evaluation, sampling): one elementwise kernel, the same values as
    # the JVP rule's. The halves are elu of [x, -x] laid side by side (a broadcast, then a free
    # reshape): a concatenation of two computed halves is a kernel of its own on XLA's CPU
    # backend, and an exp per input shared by both halves another. Where v <= 0, exp(v) is
    # exp(-|x|) exactly.
    v = x[..., None, :] * jnp.array([1, -1], x.dtype)[:, None]
    y = jnp.where(v > 0, v, jnp.exp(v) - 1)
    return y.reshape(*x.shape[:-1], 2 * x.shape[-1])


def _concat_elu_and_slope(x):
    e = jnp.exp(-jnp.abs(x))
    pos = x > 0
    m = e - 1
    y = jnp.concatenate([jnp.where(pos, x, m), jnp.where(pos, m, -x)], axis=-1)
    return y, e, pos


@concat_elu.defjvp
def _concat_elu_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y, e, pos = _concat_elu_and_slope(x)
    et = e * t
    return y, jnp.concatenate([jnp.where(pos, t, et), jnp.where(pos, -et, -t)], axis=-1)


def _phase_taps(size: int, stride: int, pad_lo: int) -> tuple[np.ndarray, int, int]:
    """For one axis of a convolution of an input dilated by ``stride`` (``size`` taps,
    ``pad_lo`` zeros before): ``(table, lo, hi)``. Output ``stride * i + r`` reads input ``i +
    o`` through tap ``table[o + lo, r]`` for ``o`` in ``-lo .. hi``; the entry is ``size``
    (one past the last tap, a zero tap) where no tap of phase ``r`` reads that input."""
    offsets = {}
    for r in range(stride):
        for a in range(size):
            if (r + a - pad_lo) % stride == 0:
                offsets[(r, a)] = (r + a - pad_lo) // stride
    lo, hi = -min(offsets.values()), max(offsets.values())
    table = np.full((lo + hi + 1, stride), size, np.int32)
    for (r, a), o in offsets.items():
        table[o + lo, r] = a
    return table, lo, hi


def subpixel_conv_transpose(x, kernel, stride: int, padding) -> jnp.ndarray:
    """The convolution of ``x`` ``(B, H, W, C)`` dilated by ``stride`` (``stride - 1`` zeros
    between inputs) with ``kernel`` ``(kh, kw, C, F)`` and ``padding`` ``((top, bottom),
    (left, right))``, output ``(B, stride H, stride W, F)``, computed without the zeros.

    Output ``(stride i + r, stride j + q)`` meets inputs only through the taps whose offset
    ``(r + a - top)`` is a multiple of ``stride``; grouping each output phase ``(r, q)``'s
    taps by the input they read makes ONE undilated convolution of ``x`` with ``stride^2 F``
    outputs (a kernel gathered from ``kernel``, zero where a phase has no tap), whose
    outputs are then interleaved (depth to space). The same sums as the dilated convolution
    without its ``1 - 1/stride^2`` multiplications by zero, and its gradients are ordinary
    convolutions: XLA's CPU backend runs the kernel gradient of the dilated one as a
    convolution with a dilated 14x14 window, 24 ms for one 28x28 layer of the equal-budget
    PixelCNN++ (BENCHMARKS.md).
    """
    kh, kw, c, f = kernel.shape
    (top, bottom), (left, right) = padding
    rows, rlo, rhi = _phase_taps(kh, stride, top)
    cols, clo, chi = _phase_taps(kw, stride, left)
    out_h = (x.shape[1] - 1) * stride + 1 + top + bottom - kh + 1
    out_w = (x.shape[2] - 1) * stride + 1 + left + right - kw + 1
    if (out_h, out_w) != (stride * x.shape[1], stride * x.shape[2]):
        raise ValueError(
            f"subpixel_conv_transpose: padding {padding} gives {out_h}x{out_w}, expected "
            f"{stride}x the input {x.shape[1]}x{x.shape[2]}"
        )
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # tap (kh, kw): zeros
    # (rows, cols, r, q, C, F) -> (rows, cols, C, r, q, F)
    k = padded[rows[:, None, :, None], cols[None, :, None, :]]
    k = k.transpose(0, 1, 4, 2, 3, 5).reshape(len(rows), len(cols), c, stride * stride * f)
    y = conv2d(x, k, (1, 1), ((rlo, rhi), (clo, chi)))
    b, h, w, _ = y.shape
    y = y.reshape(b, h, w, stride, stride, f).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, stride * h, stride * w, f)


def _unit_filters(v: jnp.ndarray) -> jnp.ndarray:
    """``v`` with every output filter (last axis) scaled to unit norm."""
    return v * lax.rsqrt(jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1))) + 1e-12)


def _decode_builders(p: dict, weight_norm: bool, dtype) -> dict:
    """How a sampler step's weights derive from one layer's parameters ``p`` (``kernel``,
    ``bias`` and with weight norm ``scale``): name -> a function building it."""
    kernel = lambda: (_unit_filters(p["kernel"]) if weight_norm else p["kernel"]).astype(dtype)
    cast = lambda name: lambda: p[name].astype(dtype)
    return {"kernel": kernel, **{name: cast(name) for name in p if name != "kernel"}}


def decode_weights(p: dict, weight_norm: bool, dtype) -> dict:
    """The ``decode_weights`` collection of one :class:`ShiftedConv2D` or :class:`NIN` with
    parameters ``p``: its kernel with unit-norm filters (``weight_norm``), it and its gain and
    bias in the compute ``dtype``. A decoder that applies the layers itself (PixelCNN++'s)
    builds them with this before its sampler's loop and hands each layer its own."""
    return {name: build() for name, build in _decode_builders(p, weight_norm, dtype).items()}


class _WeightNormKernel(nn.Module):
    """Shared parameter logic: a plain kernel and bias, or a weight-normalised one."""

    def _params(self, shape, apply_fn, features, init_scale, weight_norm, init, decode=False):
        """Return ``apply_fn(kernel) * scale + bias`` for the layer's parameters.

        ``apply_fn`` maps a float kernel of ``shape`` (output features last) to the layer's
        output before bias. ``init`` is one of :data:`WEIGHT_INITS` (see the module docstring).
        ``decode``: a sampler step's call, whose weights (:func:`decode_weights`) are built
        once, before the sampler's loop (:func:`jaxar.nn.decode.decode_weight`).
        """
        if decode:
            names = ("kernel", "scale", "bias") if weight_norm else ("kernel", "bias")
            p = {name: self.get_variable("params", name) for name in names}
            builders = _decode_builders(p, weight_norm, self.dtype)
            w = {name: decode_weight(self, name, build) for name, build in builders.items()}
            y = apply_fn(w["kernel"])
            return (y * w["scale"] if weight_norm else y) + w["bias"]
        if init not in WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {init!r}")
        if init == "data" and not weight_norm:
            raise ValueError(
                "weight_init='data' initialises weight normalisation: set weight_norm=True"
            )
        pdt = self.param_dtype
        fan_in = math.prod(shape[:-1])
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default: kaiming_uniform(a=sqrt(5))
        uniform = lambda key, s, dtype=pdt: jax.random.uniform(key, s, dtype, -bound, bound)
        if init == "fan_in":
            bias_init = lambda key: uniform(key, (features,))
        else:
            bias_init = lambda key: jnp.zeros((features,), pdt)
        if not weight_norm:
            if init == "fan_in":
                kernel = self.param("kernel", uniform, shape, pdt)
            else:
                init_fn = nn.initializers.variance_scaling(init_scale**2, "fan_in", "normal")
                kernel = self.param("kernel", init_fn, shape, pdt)
            bias = self.param("bias", bias_init)
            return apply_fn(kernel) + bias.astype(self.dtype)
        v_init = uniform if init == "fan_in" else nn.initializers.normal(0.05)
        v = self.param("kernel", v_init, shape, pdt)
        sq = jnp.sum(jnp.square(v), axis=tuple(range(v.ndim - 1)))
        y = apply_fn(_unit_filters(v))
        if init == "data" and self.is_initializing():
            stats = y.astype(jnp.float32).reshape(-1, features)
            g0 = init_scale * lax.rsqrt(jnp.var(stats, axis=0) + 1e-10)
            b0 = -jnp.mean(stats, axis=0) * g0
            g = self.param("scale", lambda _: g0.astype(pdt))
            b = self.param("bias", lambda _: b0.astype(pdt))
        elif init == "fan_in":  # the effective kernel starts equal to v, as torch's weight_norm
            g = self.param("scale", lambda _: jnp.sqrt(sq).astype(pdt))
            b = self.param("bias", bias_init)
        else:
            g = self.param("scale", lambda _: jnp.full((features,), init_scale, pdt))
            b = self.param("bias", bias_init)
        return y * g.astype(self.dtype) + b.astype(self.dtype)


class ShiftedConv2D(_WeightNormKernel):
    """A down- or down-right-shifted NHWC convolution, optionally strided or transposed.

    Attributes:
      features: output features.
      kernel_size: ``(kh, kw)``; PixelCNN++ uses ``(2, 3)`` for ``shift="down"`` and
        ``(2, 2)`` for ``shift="down_right"``.
      shift: ``"down"`` (output row ``r`` sees input rows ``<= r``, columns centred) or
        ``"down_right"`` (output ``(r, c)`` sees the window ending at ``(r, c)``).
      strides: 1, or the down-sampling factor (the output is ``ceil(H / s) x ceil(W / s)``).
      transpose: up-sample by ``strides`` instead (output ``s H x s W``).
      weight_norm, weight_init, init_scale: see the module docstring; ``init_scale`` scales the
        initial output standard deviation (0.1 for the last convolution of a resnet block).
      dtype: compute dtype; parameters are kept in ``param_dtype``.
    """

    features: int
    kernel_size: tuple[int, int] = (2, 3)
    shift: str = "down"
    strides: int = 1
    transpose: bool = False
    weight_norm: bool = False
    weight_init: str = "unit"
    init_scale: float = 1.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _padding(self, decode=None):
        kh, kw = self.kernel_size
        if decode == "pixel":
            return (0, 0), (0, 0)
        s = self.strides if self.transpose else 1
        rows = (kh - 1, s - 1)  # the kernel ends at the output row
        if self.shift == "down":
            total = kw - 1 + s - 1
            cols = ((kw - 1) // 2, total - (kw - 1) // 2)
        else:
            cols = (kw - 1, s - 1)  # ... and at the output column
        if decode == "row":
            rows = (0, 0)
        return rows, cols

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, decode: str | None = None, cached: bool = False
    ) -> jnp.ndarray:
        """``x`` ``(B, H, W, in)`` -> ``(B, H', W', features)``.

        ``decode`` computes single outputs from windows the caller cut out (the cached
        sampler): ``"row"`` takes the ``kh`` input rows one output row reads (no padding of
        the rows; the columns are padded as in the full path) and gives that row, ``(B, 1,
        W', features)``; ``"pixel"`` takes the ``kh x kw`` window one output reads (no
        padding at all) and gives that output, ``(B, 1, 1, features)``. Not for transposed
        convolutions, whose full path on one coarse row (pixel) already gives the fine rows
        (pixels) it produces. Either mode, or ``cached`` (a transposed convolution's call in
        a sampler's step), reads the sampler's weights (:func:`decode_weights`).
        """
        if self.shift not in _SHIFTS:
            raise ValueError(f"shift must be one of {_SHIFTS}, got {self.shift!r}")
        if decode not in (None, "row", "pixel") or (decode and self.transpose):
            raise ValueError(
                f"decode must be None, 'row' or 'pixel' (not transposed), got {decode!r}"
            )
        if x.ndim != 4:
            raise ValueError(f"expected NHWC input (B, H, W, C), got shape {x.shape}")
        kh, kw = self.kernel_size
        s = int(self.strides)
        x = x.astype(self.dtype)

        def apply(kernel):
            if self.transpose:
                return subpixel_conv_transpose(x, kernel.astype(self.dtype), s, self._padding())
            return conv2d(x, kernel.astype(self.dtype), (s, s), self._padding(decode))

        shape = (kh, kw, x.shape[-1], self.features)
        return self._params(
            shape, apply, self.features, self.init_scale, self.weight_norm, self.weight_init,
            cached or decode is not None,
        )  # fmt: skip


class DownShiftedConv2D(ShiftedConv2D):
    """:class:`ShiftedConv2D` with ``shift="down"``, kernel ``(2, 3)`` by default."""

    shift: str = "down"


class DownRightShiftedConv2D(ShiftedConv2D):
    """:class:`ShiftedConv2D` with ``shift="down_right"``, kernel ``(2, 2)`` by default."""

    kernel_size: tuple[int, int] = (2, 2)
    shift: str = "down_right"


class DownShiftedConvTranspose2D(ShiftedConv2D):
    """Down-shifted up-sampling by ``strides`` (2 by default), kernel ``(2, 3)``."""

    shift: str = "down"
    strides: int = 2
    transpose: bool = True


class DownRightShiftedConvTranspose2D(ShiftedConv2D):
    """Down-right-shifted up-sampling by ``strides`` (2 by default), kernel ``(2, 2)``."""

    kernel_size: tuple[int, int] = (2, 2)
    shift: str = "down_right"
    strides: int = 2
    transpose: bool = True


class NIN(_WeightNormKernel):
    """A per-position dense layer ("network in network", a 1x1 convolution) on the last axis."""

    features: int
    weight_norm: bool = False
    weight_init: str = "unit"
    init_scale: float = 1.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, decode: bool = False) -> jnp.ndarray:
        """``x`` ``(..., in)`` -> ``(..., features)``; ``decode``: a sampler step's call."""
        x = x.astype(self.dtype)
        apply = lambda kernel: jnp.dot(x, kernel.astype(self.dtype))
        shape = (x.shape[-1], self.features)
        return self._params(
            shape, apply, self.features, self.init_scale, self.weight_norm, self.weight_init,
            decode,
        )  # fmt: skip


class GatedResnet(nn.Module):
    """The gated resnet block of PixelCNN++, on one stream (``shift``)::

        h = conv(concat_elu(x))            [+ nin(concat_elu(aux))]
        h = conv'(dropout(concat_elu(h)))  [+ class embedding]       (2F features)
        out = x + a * sigmoid(b),   (a, b) = split(h)

    ``conv`` is down-shifted (kernel ``(2, 3)``) or down-right-shifted (``(2, 2)``), so the
    block keeps the stream's causal invariant; ``aux`` (the other stream or a shortcut from the
    down pass, same resolution) must satisfy it too. ``conv'`` starts with ``init_scale=0.1``.
    Dropout (rate ``dropout``) uses the ``'dropout'`` rng when ``train=True``.
    """

    shift: str = "down"
    dropout: float = 0.0
    num_classes: int = 0
    weight_norm: bool = False
    weight_init: str = "unit"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, aux=None, label=None, train: bool = False):
        f = x.shape[-1]
        kernel = (2, 3) if self.shift == "down" else (2, 2)
        wn = dict(weight_norm=self.weight_norm, weight_init=self.weight_init, dtype=self.dtype)
        h = ShiftedConv2D(f, kernel, self.shift, name="conv_in", **wn)(concat_elu(x))
        if aux is not None:
            h = h + NIN(f, name="aux", **wn)(concat_elu(aux))
        h = concat_elu(h)
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = ShiftedConv2D(2 * f, kernel, self.shift, init_scale=0.1, name="conv_out", **wn)(h)
        if self.num_classes:
            if label is None:
                raise ValueError("GatedResnet: num_classes > 0 needs class labels, got None")
            embed = nn.Embed(
                self.num_classes,
                2 * f,
                embedding_init=nn.initializers.normal(0.1),
                name="class_embed",
            )
            h = h + embed(label).astype(self.dtype)[:, None, None, :]
        a, b = jnp.split(h, 2, axis=-1)
        return x + a * nn.sigmoid(b)
