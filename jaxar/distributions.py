"""Output distributions of the autoregressive models, kept apart from the networks that use them.

A distribution object turns a network's raw output (its *parameters*) into exact per-dimension
log-probabilities, and draws one sampling step. A sampling step covers ``dims_per_step``
consecutive dimensions of the flattened event: 1 for a categorical (every sub-pixel or audio
sample is drawn on its own), the colour channels of a pixel for a distribution that draws them
jointly. Randomness is explicit: the sampler passes the key of each step.

Also here: mu-law companding for audio.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["Categorical", "mu_law_decode", "mu_law_encode"]


class Categorical:
    """A categorical over ``num_levels`` values for every dimension.

    Parameters are logits of shape ``(B, *event_shape, num_levels)``; the arithmetic is float32
    whatever the dtype the network computed in.
    """

    dims_per_step = 1

    def __init__(self, num_levels: int):
        if num_levels < 2:
            raise ValueError(f"num_levels must be >= 2, got {num_levels}")
        self.num_levels = int(num_levels)

    def log_prob(self, logits: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
        """``log p(x_i | x_<i)`` for every dimension: logits ``(..., L)``, x ``(...)``."""
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        return jnp.take_along_axis(logp, x[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def step_params(self, logits: jnp.ndarray, step: jnp.ndarray) -> jnp.ndarray:
        """The logits of sampling step ``step`` (a flat dimension index): ``(B, L)``."""
        flat = logits.reshape(logits.shape[0], -1, logits.shape[-1])
        return jax.lax.dynamic_index_in_dim(flat, step, axis=1, keepdims=False)

    def sample_step(self, key: jax.Array, logits: jnp.ndarray) -> jnp.ndarray:
        """Draw one step: logits ``(B, L)`` -> values ``(B, 1)`` int32."""
        return jax.random.categorical(key, logits.astype(jnp.float32), axis=-1)[:, None].astype(
            jnp.int32
        )

    def step_log_prob(self, logits: jnp.ndarray, values: jnp.ndarray) -> jnp.ndarray:
        """Log-probability of the values ``(B, 1)`` drawn at one step: ``(B,)``."""
        return self.log_prob(logits, values[:, 0])


def mu_law_encode(audio: jnp.ndarray, num_levels: int = 256) -> jnp.ndarray:
    """Quantise audio in [-1, 1] to ``num_levels`` integer levels by mu-law companding.

    ``mu = num_levels - 1``; ``f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` is mapped from
    [-1, 1] to {0, ..., mu} by rounding. Values outside [-1, 1] are clipped.
    """
    mu = num_levels - 1
    x = jnp.clip(jnp.asarray(audio, jnp.float32), -1.0, 1.0)
    y = jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / jnp.log1p(jnp.float32(mu))
    return jnp.clip(jnp.round((y + 1.0) / 2.0 * mu), 0, mu).astype(jnp.int32)


def mu_law_decode(levels: jnp.ndarray, num_levels: int = 256) -> jnp.ndarray:
    """The inverse of :func:`mu_law_encode`: integer levels -> audio in [-1, 1] (float32)."""
    mu = num_levels - 1
    y = 2.0 * jnp.asarray(levels, jnp.float32) / mu - 1.0
    return jnp.sign(y) * jnp.expm1(jnp.abs(y) * jnp.log1p(jnp.float32(mu))) / mu
