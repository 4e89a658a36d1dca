"""Weights a layer's decode path derives from its parameters alone, built once per sampler.

A masked kernel (``kernel * mask``), computed inside a decode step, is computed again at every
step of the sampler's loop unless XLA hoists it out of the loop, and not every backend does:
compiled for an H200, PixelCNN's step multiplied each masked kernel by its mask at every
step (BENCHMARKS.md). A layer writes such a weight with :func:`decode_weight` instead; the
model's :meth:`~jaxar.models.base.AutoregressiveModel.decode_state` builds every one of them in
the :data:`DECODE_WEIGHTS` collection before the loop, and each step reads them from there.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["DECODE_WEIGHTS", "cast_weight", "decode_weight"]

#: The flax collection of the weights decode paths derive from their parameters.
DECODE_WEIGHTS = "decode_weights"


def decode_weight(
    module: nn.Module, name: str, build: Callable[[], jax.Array], decode: bool = True
) -> jax.Array:
    """``build()``, a function of ``module``'s parameters alone (or of them and of the
    conditioning, which is the same at every step of a sampler), for ``module``'s decode path
    (``decode``; the full path just builds it).

    Read from the :data:`DECODE_WEIGHTS` collection when it holds ``name`` (every step of a
    sampler); built and stored there when the collection is mutable (the sampler's set-up,
    before its loop); built in place otherwise (a decode step applied without the
    collection: the same value)."""
    if not decode:
        return build()
    if module.has_variable(DECODE_WEIGHTS, name):
        return module.get_variable(DECODE_WEIGHTS, name)
    value = build()
    if module.is_mutable_collection(DECODE_WEIGHTS):
        module.put_variable(DECODE_WEIGHTS, name, value)
    return value


def cast_weight(module: nn.Module, name: str, weight: jax.Array, dtype, decode: bool) -> jax.Array:
    """``weight`` in the compute ``dtype``: as it is when it has that dtype already; for a
    decode path (``decode``) a :func:`decode_weight` when it is a conversion (bfloat16
    compute, float32 parameters), which the H200's compiler had left in the sampler's loop."""
    if weight.dtype == jnp.dtype(dtype):
        return weight
    return decode_weight(module, name, lambda: weight.astype(dtype), decode)
