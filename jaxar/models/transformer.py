"""A decoder-only causal Transformer over the sub-pixels of an image (or over VQ-VAE codes).

**Tokens and order.** An event ``x`` of shape ``(H, W, C)`` with values in ``[0, L)`` is read
as ``D = H * W * C`` tokens in raster order, then channel order inside a pixel (R < G < B), the
same flat order as every other jaxar model and as :func:`jaxar.sampling.scan_sample`. The
network models ``p(x) = prod_i p(x_i | x_<i)`` with one ``L``-way softmax per token.

**The shift.** The input at position ``i`` is the embedding of the previous token ``x_{i-1}``
plus a learned positional embedding of ``i``; position 0 has no previous token and gets a
learned start embedding, plus a learned class embedding when ``num_classes > 0`` (every later
position attends to position 0, so the label reaches every conditional). With the causal mask
(position ``i`` attends to positions ``<= i``) the output at ``i`` is a function of
``x_0 .. x_{i-1}`` only, and is read as the logits of ``x_i``.

**Blocks.** Pre-norm: ``h += Attn(LN(h))``, ``h += MLP(LN(h))`` with a GELU MLP of
``mlp_ratio * embed_dim`` hidden units (LayerNorms compute in float32 and hand the compute dtype
on); then a final LayerNorm and a linear head to ``L``
logits per token, returned as ``(B, H, W, C, L)`` for :class:`~jaxar.distributions.Categorical`.
Attention is written out with einsums: the query, key and value projections are one
:class:`~jaxar.nn.dense.Dense` to ``(3, heads, head_dim)`` used by both paths, scores are scaled by
``head_dim ** -0.5`` and soft-maxed in float32 whatever the compute dtype. ``dropout`` (when
training) acts on the embeddings and on both residual branches.

**Cached decoding.** :meth:`TransformerNet.step` runs one position ``i`` for the whole batch.
Every attention layer keeps, in the flax ``cache`` collection, a key buffer and a value buffer
of fixed shape ``(B * heads, D, head_dim)`` (compute dtype; row ``b * heads + h`` is head ``h``
of example ``b``). The step writes the new position's key and value into position ``i`` with
``lax.dynamic_update_slice`` and attends its query over all ``D`` positions with those ``> i``
masked out, so a step costs ``O(D)`` attention work instead of a full ``O(D^2)`` forward pass.
The layout is what lets XLA update the buffers in place and contract them as they lie. Heads
before positions: with ``(B, D, heads, head_dim)`` buffers XLA (CPU) copied both into that
order at every step (cached sampling of 28x28 images at batch 16 was 3.7x slower). Batch and
heads merged: with ``(B, heads, D, head_dim)`` and a batch of one, XLA (CPU) dropped the unit
axis for the attention, fused the cache update twice (once per shape), each into a copy of the
whole buffer, and transposed every key buffer: 12 whole-buffer copies and 4 transposes per step
of a 4-layer model; a 32x32x3 image at batch 1 sampled 3.7x slower with the 8-layer config
(BENCHMARKS.md). The input of step ``i`` is read from ``x_{i-1}`` of the flat image the
sampler carries, so the cache only ever holds values of tokens already drawn. In bfloat16 the
step's dense layers read kernels converted once, before the sampler's loop
(:mod:`jaxar.nn.dense`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxar.distributions import Categorical
from jaxar.models.base import AutoregressiveModel
from jaxar.models.registry import register
from jaxar.nn.dense import Dense

__all__ = [
    "CausalSelfAttention",
    "Transformer",
    "TransformerBlock",
    "TransformerNet",
    "causal_mask",
]

_EMBED_INIT = nn.initializers.normal(stddev=0.02)


def causal_mask(num: int) -> np.ndarray:
    """``(num, num)`` boolean mask of the full path: query ``i`` may attend to key ``j <= i``."""
    return np.tril(np.ones((num, num), bool))


def _attend(q, k, v, mask):
    """Masked attention over the last two axes, any leading (batch, head) axes: ``q (..., Tq,
    d)``, ``k, v (..., Tk, d)``, ``mask`` broadcastable to ``(..., Tq, Tk)`` -> ``(..., Tq, d)``
    in ``v``'s dtype. Softmax in float32."""
    scale = q.shape[-1] ** -0.5
    scores = jnp.einsum("...qd,...kd->...qk", q, k).astype(jnp.float32) * scale
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("...qk,...kd->...qd", probs, v)


def _layer_norm(h, dtype, name: str):
    """LayerNorm with float32 statistics and affine, the result in the compute ``dtype``."""
    return nn.LayerNorm(dtype=jnp.float32, name=name)(h.astype(jnp.float32)).astype(dtype)


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention with a full path and a one-position decode path.

    ``__call__(h)`` with ``h (B, T, E)`` attends causally over the ``T`` positions;
    ``__call__(h, step)`` with ``h (B, 1, E)`` is position ``step`` of a cached decode over
    ``num_positions`` positions (key/value buffers in the ``cache`` collection).
    """

    num_heads: int
    num_positions: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, step=None):
        embed_dim = h.shape[-1]
        head_dim = embed_dim // self.num_heads
        decode = step is not None
        qkv = Dense((3, self.num_heads, head_dim), dtype=self.dtype, name="qkv")(h, decode)
        q = qkv[:, :, 0]
        k, v = (jnp.swapaxes(qkv[:, :, i], 1, 2) for i in (1, 2))  # (B, H, T, d)
        if decode:
            # Batch and heads merged into one axis (see the module docstring).
            rows = h.shape[0] * self.num_heads
            shape = (rows, self.num_positions, head_dim)
            keys = self.variable("cache", "key", jnp.zeros, shape, self.dtype)
            values = self.variable("cache", "value", jnp.zeros, shape, self.dtype)
            zero = jnp.zeros((), jnp.int32)
            at = (zero, jnp.asarray(step, jnp.int32), zero)
            put = lambda buf, new: lax.dynamic_update_slice(
                buf.value, new.reshape(rows, 1, head_dim).astype(self.dtype), at
            )
            keys.value, values.value = put(keys, k), put(values, v)
            mask = (jnp.arange(self.num_positions) <= step)[None, None, :]
            out = _attend(q.reshape(rows, 1, head_dim), keys.value, values.value, mask)
            out = out.reshape(h.shape[0], 1, self.num_heads, head_dim)
        else:
            out = _attend(jnp.swapaxes(q, 1, 2), k, v, causal_mask(h.shape[1]))
            out = jnp.swapaxes(out, 1, 2)  # (B, T, H, d)
        return Dense(embed_dim, axis=(-2, -1), dtype=self.dtype, name="out")(out, decode)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h + Attn(LN(h))``, then ``h + MLP(LN(h))``."""

    num_heads: int
    num_positions: int
    mlp_dim: int
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, step=None, train: bool = False):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        a = _layer_norm(h, self.dtype, "norm_attn")
        a = CausalSelfAttention(self.num_heads, self.num_positions, self.dtype, name="attn")(
            a, step
        )
        h = h + drop(a)
        m = _layer_norm(h, self.dtype, "norm_mlp")
        decode = step is not None
        m = nn.gelu(Dense(self.mlp_dim, dtype=self.dtype, name="mlp_in")(m, decode))
        m = Dense(h.shape[-1], dtype=self.dtype, name="mlp_out")(m, decode)
        return h + drop(m)


class TransformerNet(nn.Module):
    """The network: integer images ``(B, H, W, C)`` -> logits ``(B, H, W, C, L)``."""

    image_shape: tuple[int, int, int]
    num_levels: int
    num_classes: int = 0
    num_layers: int = 4
    num_heads: int = 4
    embed_dim: int = 128
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @property
    def num_positions(self) -> int:
        h, w, c = self.image_shape
        return h * w * c

    def setup(self):
        e = self.embed_dim
        self.token_embed = nn.Embed(self.num_levels, e, embedding_init=_EMBED_INIT)
        self.start = self.param("start", _EMBED_INIT, (e,), jnp.float32)
        self.pos_embed = self.param("pos_embed", _EMBED_INIT, (self.num_positions, e), jnp.float32)
        if self.num_classes:
            self.class_embed = nn.Embed(self.num_classes, e, embedding_init=_EMBED_INIT)
        self.blocks = [
            TransformerBlock(
                self.num_heads,
                self.num_positions,
                int(self.mlp_ratio * e),
                self.dropout,
                self.dtype,
                name=f"block{i}",
            )
            for i in range(self.num_layers)
        ]
        self.final_norm = nn.LayerNorm(dtype=jnp.float32)
        self.head = Dense(self.num_levels, dtype=self.dtype)
        self.embed_dropout = nn.Dropout(self.dropout)

    def _first_input(self, cond, batch: int):
        """The input embedding of position 0 (before its positional embedding): ``(B, E)``."""
        first = jnp.broadcast_to(self.start, (batch, self.embed_dim))
        if self.num_classes:
            first = first + self.class_embed(cond)
        return first

    def _trunk(self, h, step, train: bool):
        """Blocks, final norm and head, shared by both paths: ``(B, T, E)`` -> ``(B, T, L)``."""
        h = self.embed_dropout(h.astype(self.dtype), deterministic=not train)
        for block in self.blocks:
            h = block(h, step, train)
        h = self.final_norm(h.astype(jnp.float32)).astype(self.dtype)
        return self.head(h, step is not None)

    def __call__(self, x, cond=None, train: bool = False):
        b = x.shape[0]
        tokens = x.reshape(b, self.num_positions)
        previous = self.token_embed(tokens[:, :-1])  # input of position i is x_{i-1}
        h = jnp.concatenate([self._first_input(cond, b)[:, None], previous], axis=1)
        logits = self._trunk(h + self.pos_embed, None, train)
        return logits.reshape((b, *self.image_shape, self.num_levels))

    def step(self, x_flat, step, cond=None):
        """Decode position ``step``: ``x_flat (B, D)`` holds the tokens drawn so far (later ones
        are ignored) -> the logits ``(B, L)`` of token ``step``; updates the ``cache``."""
        b = x_flat.shape[0]
        prev_index = jnp.maximum(step - 1, 0)
        prev = lax.dynamic_index_in_dim(x_flat, prev_index, axis=1, keepdims=False)
        h = jnp.where(step == 0, self._first_input(cond, b), self.token_embed(prev))
        h = h + lax.dynamic_index_in_dim(self.pos_embed, step, axis=0, keepdims=False)
        return self._trunk(h[:, None], step, False)[:, 0]


class Transformer(AutoregressiveModel):
    """Causal Transformer with exact categorical likelihood, naive and KV-cached samplers."""

    sample_methods = ("cached", "naive")
    default_sample_method = "cached"

    def init_cache(self, params, batch, cond=None):
        x_flat = jnp.zeros((batch, self.num_dims), jnp.int32)
        zero = jnp.zeros((), jnp.int32)
        return self.decode_state(params, TransformerNet.step, x_flat, zero, cond)

    def cached_step(self, params, cache, x_flat, step, cond=None):
        return self.decode(params, cache, x_flat, step, cond, method=TransformerNet.step)


@register("transformer", tiny=dict(num_layers=2, num_heads=2, embed_dim=8, mlp_ratio=2.0))
def transformer(
    image_shape=(28, 28, 1),
    num_levels: int = 256,
    num_classes: int = 0,
    num_layers: int = 4,
    num_heads: int = 4,
    embed_dim: int = 128,
    mlp_ratio: float = 4.0,
    dropout: float = 0.0,
    dtype: str = "float32",
) -> Transformer:
    """A causal Transformer over images of ``image_shape = (H, W, C)`` with ``num_levels``
    levels (or a VQ-VAE code grid ``(h, w, 1)`` with ``num_levels = K``).

    ``embed_dim`` must be divisible by ``num_heads``; the MLP has ``mlp_ratio * embed_dim``
    hidden units; ``dropout`` is the training dropout rate; ``dtype`` is the compute dtype
    ("float32" or "bfloat16"); parameters and the likelihood stay float32.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) of positive sizes, got {image_shape}")
    checks = [
        (num_levels >= 2, f"num_levels must be >= 2, got {num_levels}"),
        (num_classes >= 0, f"num_classes must be >= 0, got {num_classes}"),
        (num_layers >= 1, f"num_layers must be >= 1, got {num_layers}"),
        (num_heads >= 1, f"num_heads must be >= 1, got {num_heads}"),
        (embed_dim >= 1, f"embed_dim must be >= 1, got {embed_dim}"),
        (
            embed_dim % max(num_heads, 1) == 0,
            f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})",
        ),
        (
            int(mlp_ratio * embed_dim) >= 1,
            f"mlp_ratio * embed_dim must give at least 1 hidden unit, got mlp_ratio={mlp_ratio}",
        ),
        (0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}"),
        (
            str(dtype) in ("float32", "bfloat16"),
            f"dtype must be 'float32' or 'bfloat16', got {dtype!r}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    net = TransformerNet(
        image_shape=image_shape,
        num_levels=int(num_levels),
        num_classes=int(num_classes),
        num_layers=int(num_layers),
        num_heads=int(num_heads),
        embed_dim=int(embed_dim),
        mlp_ratio=float(mlp_ratio),
        dropout=float(dropout),
        dtype=jnp.dtype(str(dtype)),
    )
    return Transformer(
        name="transformer",
        net=net,
        distribution=Categorical(num_levels),
        event_shape=image_shape,
        num_levels=num_levels,
        num_classes=num_classes,
    )
