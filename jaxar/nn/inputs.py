"""How networks read integer events."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["centered"]


def centered(x: jnp.ndarray, num_levels: int, dtype=jnp.float32) -> jnp.ndarray:
    """Map integer levels ``0 .. num_levels-1`` linearly onto ``[-1, 1]``."""
    return (x.astype(dtype) * (2.0 / (num_levels - 1)) - 1.0).astype(dtype)
