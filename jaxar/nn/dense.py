"""A dense layer whose decode path reads its weights in the compute dtype, converted once.

Flax's ``nn.Dense`` and ``nn.DenseGeneral`` convert their float32 parameters to a bfloat16
compute dtype inside every call; in a sampler's step that is a conversion of every kernel at
every step, and compiled for an H200 the Transformer's bfloat16 sampler kept 17 of them in
its loop at batch 16 (BENCHMARKS.md). :class:`Dense` has the same parameters (names, shapes,
initialisation: checkpoints of either load into the other) and computes the same values; its
decode path (``decode=True``) takes the converted weights from
:func:`jaxar.nn.decode.cast_weight`, built before the sampler's loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxar.nn.decode import cast_weight

__all__ = ["Dense"]


class Dense(nn.Module):
    """``x @ kernel + bias`` over the input axes ``axis`` to output features ``features``
    (an int or a tuple, as ``nn.DenseGeneral``), computed in ``dtype``.

    The parameters are flax's: ``kernel`` of shape ``(*x.shape[axis], *features)`` drawn by
    ``kernel_init`` on its ``(fan_in, fan_out)`` flattening, ``bias`` of shape ``features``
    (zeros), both ``param_dtype``.
    """

    features: int | Sequence[int]
    axis: int | Sequence[int] = -1
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jnp.ndarray, decode: bool = False) -> jnp.ndarray:
        """``x`` ``(..., *in)`` -> ``(..., *features)``; ``decode``: a sampler step's call."""
        features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        axis = tuple(sorted(a % x.ndim for a in axis))
        shape = tuple(x.shape[a] for a in axis) + features

        def kernel_init(key, shape, dtype):
            flat = (math.prod(shape[: len(axis)]), math.prod(features))
            return self.kernel_init(key, flat, dtype).reshape(shape)

        kernel = self.param("kernel", kernel_init, shape, self.param_dtype)
        kernel = cast_weight(self, "kernel", kernel, self.dtype, decode)
        dims = ((axis, tuple(range(len(axis)))), ((), ()))
        y = lax.dot_general(x.astype(self.dtype), kernel, dims)
        if not self.use_bias:
            return y
        bias = self.param("bias", nn.initializers.zeros, features, self.param_dtype)
        return y + cast_weight(self, "bias", bias, self.dtype, decode)
