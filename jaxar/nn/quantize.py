"""Vector quantisation (van den Oord et al. 2017, "Neural Discrete Representation Learning").

:class:`VectorQuantizer` maps every vector ``z`` of an encoder's output to its nearest code
``e_k`` of a codebook of ``K`` vectors (squared Euclidean distance, ties to the lowest index)
and passes gradients straight through: the forward value is ``e_k``, the backward value is the
identity on ``z`` (``z + stop_gradient(e_k - z)``). The codebook is learned either

* by the *codebook loss* ``mean (sg[z] - e_k)^2`` (``ema_decay = 0``; the codebook is a
  parameter), or
* by exponential moving averages of the assignment counts and of the sums of the vectors
  assigned to each code (``ema_decay > 0``; the codebook is state, not a parameter):
  ``N_k <- d N_k + (1 - d) n_k``, ``m_k <- d m_k + (1 - d) sum_{z -> k} z``,
  ``e_k = m_k / N~_k`` with Laplace-smoothed counts ``N~_k``.

Both add the *commitment loss* ``beta * mean (z - sg[e_k])^2`` (``beta = 0.25`` in the paper),
which keeps the encoder near its codes. The losses are means over every element (vector and
coordinate), so their scale does not depend on the code grid's size.

**Dead-code restarts.** The share of the vectors assigned to each code is tracked as a moving
average (``usage``, initially ``1 / K``). With ``restart_threshold = t > 0``, a training step
moves every code whose usage fell below ``t / K`` onto an encoder output of the current batch
drawn at random, and resets its usage to ``1 / K``. With the codebook loss the restart is kept
in a non-gradient ``offset`` (the effective codebook is ``parameter + offset``), so parameters
and optimizer state are untouched; with EMA the code's statistics restart as one assignment.

All statistics are sums over the whole (global) batch, so under ``jax.jit`` with the batch
sharded over devices they are exact all-reduced values. The non-gradient state lives in the flax
collection ``"vq"``; apply the module with ``mutable=["vq"]`` and ``rngs={"restart": key}`` to
train. :func:`code_counts` and :func:`perplexity` summarise assignments (perplexity ``exp(H)``
of the code distribution: ``K`` when every code is used equally, 1 when one code takes all).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["VectorQuantizer", "code_counts", "perplexity"]


def code_counts(indices: jnp.ndarray, num_codes: int, weights=None) -> jnp.ndarray:
    """How often each code occurs in ``indices``: float32 ``(num_codes,)``.

    ``weights`` (broadcastable to ``indices``, e.g. a padding mask per example) weighs each.
    """
    one_hot = jax.nn.one_hot(indices, num_codes, dtype=jnp.float32)
    if weights is not None:
        one_hot = (
            one_hot
            * jnp.broadcast_to(
                jnp.asarray(weights, jnp.float32).reshape(
                    weights.shape + (1,) * (indices.ndim - weights.ndim)
                ),
                indices.shape,
            )[..., None]
        )
    return one_hot.reshape(-1, num_codes).sum(axis=0)


def perplexity(counts: jnp.ndarray) -> jnp.ndarray:
    """``exp(-sum_k p_k log p_k)`` of the code distribution ``p = counts / sum(counts)``."""
    p = counts / jnp.maximum(jnp.sum(counts), 1e-12)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.exp(entropy)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation of ``(..., code_dim)`` vectors with a ``num_codes`` codebook.

    Attributes:
      num_codes: K, the codebook size.
      code_dim: the dimension of each code (the last axis of the input).
      beta: weight of the commitment loss.
      ema_decay: 0 learns the codebook by the codebook loss; in (0, 1) by EMA updates.
      usage_decay: decay of the moving average of each code's share of the assignments.
      restart_threshold: restart codes whose usage is below ``restart_threshold / K``; 0: never.
      epsilon: Laplace smoothing of the EMA counts.
    """

    num_codes: int
    code_dim: int
    beta: float = 0.25
    ema_decay: float = 0.0
    usage_decay: float = 0.99
    restart_threshold: float = 0.0
    epsilon: float = 1e-5

    def setup(self):
        k, d = self.num_codes, self.code_dim
        init = nn.initializers.variance_scaling(1.0, "fan_out", "uniform")
        self.usage = self.variable("vq", "usage", lambda: jnp.full((k,), 1.0 / k, jnp.float32))
        if self.ema_decay > 0:
            self.codebook_var = self.variable(
                "vq", "codebook", lambda: init(self.make_rng("params"), (k, d), jnp.float32)
            )
            self.cluster_size = self.variable("vq", "cluster_size", lambda: jnp.ones((k,)))
            self.embed_sum = self.variable(  # a copy: donated state must not alias buffers
                "vq", "embed_sum", lambda: jnp.array(self.codebook_var.value, copy=True)
            )
        else:
            self.codebook_param = self.param("codebook", init, (k, d), jnp.float32)
            self.offset = self.variable("vq", "offset", lambda: jnp.zeros((k, d), jnp.float32))

    def codebook(self) -> jnp.ndarray:
        """The effective codebook ``(K, code_dim)``."""
        if self.ema_decay > 0:
            return self.codebook_var.value
        return self.codebook_param + self.offset.value

    def embed(self, indices: jnp.ndarray) -> jnp.ndarray:
        """The codes of integer ``indices`` ``(...)``: ``(..., code_dim)`` float32."""
        return jnp.take(self.codebook(), indices.astype(jnp.int32), axis=0)

    def nearest(self, z: jnp.ndarray) -> jnp.ndarray:
        """Index of the nearest code of every vector of ``z (..., code_dim)``: int32 ``(...)``."""
        codebook = self.codebook()
        flat = z.reshape(-1, self.code_dim).astype(jnp.float32)
        dist = (
            jnp.sum(flat**2, axis=1, keepdims=True)
            - 2.0 * flat @ codebook.T
            + jnp.sum(codebook**2, axis=1)[None, :]
        )
        return jnp.argmin(dist, axis=1).astype(jnp.int32).reshape(z.shape[:-1])

    def __call__(self, z: jnp.ndarray, *, train: bool = False) -> dict:
        """Quantise ``z (..., code_dim)``.

        Returns a dict: ``quantized`` (straight-through, same shape as ``z``), ``indices``
        ``(...)``, the scalar ``codebook_loss`` (0 with EMA) and ``commitment_loss`` (already
        times ``beta``), and batch ``perplexity``, ``usage`` (share of codes used) and
        ``restarts`` (codes restarted by this call). ``train=True`` updates the ``"vq"`` state.
        """
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"expected vectors of size {self.code_dim}, got shape {z.shape}")
        z = z.astype(jnp.float32)
        indices = self.nearest(z)
        q = self.embed(indices)
        codebook_loss = (
            jnp.zeros((), jnp.float32)
            if self.ema_decay > 0
            else jnp.mean((jax.lax.stop_gradient(z) - q) ** 2)
        )
        commitment_loss = self.beta * jnp.mean((z - jax.lax.stop_gradient(q)) ** 2)
        counts = code_counts(indices, self.num_codes)
        restarts = jnp.zeros((), jnp.float32)
        if train and not self.is_initializing():
            restarts = self._update(jax.lax.stop_gradient(z), indices, counts)
        return {
            "quantized": z + jax.lax.stop_gradient(q - z),
            "indices": indices,
            "codebook_loss": codebook_loss,
            "commitment_loss": commitment_loss,
            "perplexity": perplexity(counts),
            "usage": jnp.mean((counts > 0).astype(jnp.float32)),
            "restarts": restarts,
        }

    def _update(self, z, indices, counts) -> jnp.ndarray:
        """EMA codebook statistics, usage, and dead-code restarts; returns the restart count."""
        k, d = self.num_codes, self.code_dim
        flat = z.reshape(-1, d)
        n = flat.shape[0]
        if self.ema_decay > 0:
            decay = self.ema_decay
            one_hot = jax.nn.one_hot(indices.reshape(-1), k, dtype=jnp.float32)
            size = decay * self.cluster_size.value + (1.0 - decay) * counts
            sums = decay * self.embed_sum.value + (1.0 - decay) * one_hot.T @ flat
            total = jnp.sum(size)
            smoothed = (size + self.epsilon) / (total + k * self.epsilon) * total
            self.cluster_size.value, self.embed_sum.value = size, sums
            self.codebook_var.value = sums / smoothed[:, None]
        usage = self.usage_decay * self.usage.value + (1.0 - self.usage_decay) * counts / n
        if self.restart_threshold <= 0:
            self.usage.value = usage
            return jnp.zeros((), jnp.float32)
        dead = usage < self.restart_threshold / k
        picks = jax.random.randint(self.make_rng("restart"), (k,), 0, n)
        fresh = flat[picks]
        if self.ema_decay > 0:
            self.codebook_var.value = jnp.where(dead[:, None], fresh, self.codebook_var.value)
            self.embed_sum.value = jnp.where(dead[:, None], fresh, self.embed_sum.value)
            self.cluster_size.value = jnp.where(dead, 1.0, self.cluster_size.value)
        else:
            offset = fresh - jax.lax.stop_gradient(self.codebook_param)
            self.offset.value = jnp.where(dead[:, None], offset, self.offset.value)
        self.usage.value = jnp.where(dead, 1.0 / k, usage)
        return jnp.sum(dead.astype(jnp.float32))
