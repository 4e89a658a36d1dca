"""A model defined outside the package: a causal 1-D convolution over the flattened event.

The worked example of the README's "Adding a model": a research fork writes a file like this,
names its module in a config's ``imports`` (``examples/causal_conv1d_config.py``), and
``jaxar train|eval|sample`` train, evaluate and sample it with no edit inside ``jaxar/``;
``tests/test_fork.py`` runs exactly that, and the contract tests (``tests/test_contract.py``)
check it like every registered model once it is imported.

The event (an image in raster order, R < G < B inside a pixel, or audio) is read as one sequence
of D dimensions. The input at position t is dimension t - 1 (a start token at t = 0), so no
output sees its own dimension; ``num_layers`` residual causal convolutions of width ``kernel``
(left-padded) follow. The decode path keeps, per layer, the ``kernel - 1`` previous inputs.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxar.distributions import Categorical
from jaxar.models import AutoregressiveModel, register

__all__ = ["CausalConv", "CausalConv1D", "CausalConv1DNet", "causal_conv1d"]


class CausalConv(nn.Module):
    """A width-``kernel`` causal convolution (a Dense over the window of the current and the
    ``kernel - 1`` previous inputs) with a ReLU, on the full sequence or, with ``decode``, on
    one position, keeping its previous inputs in the ``cache`` collection."""

    features: int
    kernel: int

    @nn.compact
    def __call__(self, h, decode: bool = False):
        dense = nn.Dense(self.features)
        k = self.kernel
        if not decode:  # h: (B, D, F)
            padded = jnp.pad(h, ((0, 0), (k - 1, 0), (0, 0)))
            windows = jnp.stack([padded[:, j : j + h.shape[1]] for j in range(k)], axis=2)
            return nn.relu(dense(windows.reshape((*h.shape[:2], -1))))
        past = self.variable("cache", "past", jnp.zeros, (h.shape[0], k - 1, h.shape[-1]))
        window = jnp.concatenate([past.value, h[:, None]], axis=1)  # (B, k, F)
        past.value = window[:, 1:]
        return nn.relu(dense(window.reshape((h.shape[0], -1))))


class CausalConv1DNet(nn.Module):
    """Integer events ``(B, *event_shape)`` -> logits ``(B, *event_shape, num_levels)``."""

    num_levels: int
    features: int = 32
    num_layers: int = 3
    kernel: int = 3

    def setup(self):
        self.embed = nn.Embed(self.num_levels + 1, self.features)  # + a start token
        self.convs = [CausalConv(self.features, self.kernel) for _ in range(self.num_layers)]
        self.out = nn.Dense(self.num_levels)

    def __call__(self, x, cond=None, train: bool = False):
        b, d = x.shape[0], x[0].size
        flat = x.reshape(b, d)
        shifted = jnp.concatenate([jnp.full((b, 1), self.num_levels), flat[:, :-1]], axis=1)
        h = self.embed(shifted)  # (B, D, F): position t sees dimensions < t
        for conv in self.convs:
            h = h + conv(h)
        return self.out(h).reshape((*x.shape, self.num_levels))

    def step(self, prev, t):
        """Decode path at position ``t``: ``prev`` ``(B,)`` is dimension t - 1 (ignored at
        t = 0) -> logits ``(B, num_levels)``. Reads and writes the ``cache`` collection."""
        h = self.embed(jnp.where(t == 0, self.num_levels, prev))  # (B, F)
        for conv in self.convs:
            h = h + conv(h, decode=True)
        return self.out(h)


class CausalConv1D(AutoregressiveModel):
    """The contract's part a model writes: the network, its distribution, the decode path."""

    sample_methods = ("cached", "naive")
    default_sample_method = "cached"

    def init_cache(self, params, batch, cond=None):
        zero = jnp.zeros((), jnp.int32)
        prev = jnp.zeros((batch,), jnp.int32)
        return self.decode_state(params, CausalConv1DNet.step, prev, zero)

    def cached_step(self, params, cache, x_flat, step, cond=None):
        prev = lax.dynamic_index_in_dim(x_flat, jnp.maximum(step - 1, 0), 1, keepdims=False)
        return self.decode(params, cache, prev, step, method=CausalConv1DNet.step)


@register("causal_conv1d", tiny=dict(features=8, num_layers=2, kernel=3))
def causal_conv1d(
    image_shape=(8, 8, 1),
    num_levels: int = 256,
    features: int = 32,
    num_layers: int = 3,
    kernel: int = 3,
) -> CausalConv1D:
    """A causal 1-D convolution over images of ``image_shape`` read in raster order."""
    image_shape = tuple(int(v) for v in image_shape)
    if len(image_shape) != 3 or kernel < 1 or num_layers < 0 or features < 1:
        raise ValueError(
            f"causal_conv1d: expected image_shape (H, W, C), kernel >= 1, num_layers >= 0 and "
            f"features >= 1, got {image_shape}, {kernel}, {num_layers}, {features}"
        )
    net = CausalConv1DNet(num_levels, features, num_layers, kernel)
    return CausalConv1D(
        name="causal_conv1d",
        net=net,
        distribution=Categorical(num_levels),
        event_shape=image_shape,
        num_levels=num_levels,
    )
