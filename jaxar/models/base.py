"""The model contract every autoregressive model in jaxar implements.

An :class:`AutoregressiveModel` pairs a Flax network (integer event in, distribution parameters
out) with an output distribution from :mod:`jaxar.distributions`. It gives exact
log-likelihoods by the chain rule, bits per dimension, and samples through the samplers of
:mod:`jaxar.sampling`. The trainer, evaluator, samplers and CLI use nothing else.

Public methods validate their inputs (shape, dtype, value range, conditioning) and raise
``ValueError`` naming what was expected and what was given. Value ranges are only checked on
concrete arrays, so the methods can also be called inside ``jax.jit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxar import sampling

__all__ = ["AutoregressiveModel"]

Params = Any


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class AutoregressiveModel:
    """An autoregressive model over integer events of shape ``event_shape``.

    Subclasses set the network and distribution, and may provide a cached decode path by
    overriding :meth:`init_cache` and :meth:`cached_step`.

    Attributes:
      name: the registry name.
      event_shape: shape of one example, e.g. ``(H, W, C)`` or ``(T,)``.
      num_levels: number of values each dimension takes, ``0 .. num_levels - 1``.
      num_classes: number of class labels for class conditioning (0: unconditional).
      hparams: the hyperparameters the model was created with.
    """

    sample_methods: tuple[str, ...] = ("naive",)
    default_sample_method = "naive"

    def __init__(
        self,
        *,
        name: str,
        net: nn.Module,
        distribution: Any,
        event_shape: Sequence[int],
        num_levels: int,
        num_classes: int = 0,
        hparams: dict | None = None,
    ):
        self.name = name
        self.net = net
        self.distribution = distribution
        self.event_shape = tuple(int(d) for d in event_shape)
        self.num_levels = int(num_levels)
        self.num_classes = int(num_classes)
        self.hparams = dict(hparams or {})
        self._log_prob_jit = jax.jit(self._log_prob, static_argnames=("per_dim",))
        self._sample_jit = jax.jit(self._sample, static_argnames=("num", "method", "with_log_prob"))

    # ----------------------------------------------------------------- properties
    @property
    def num_dims(self) -> int:
        """D, the number of dimensions of one example."""
        return math.prod(self.event_shape)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in sorted(self.hparams.items()))
        return f"{type(self).__name__}({self.name!r}, {hp})"

    # ----------------------------------------------------------------- validation
    def check_input(self, x, cond=None) -> None:
        """Raise ValueError unless ``x`` is a batch of valid events and ``cond`` fits it."""
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != len(self.event_shape) + 1 or shape[1:] != self.event_shape:
            raise ValueError(
                f"{self.name}: expected x of shape (batch, {', '.join(map(str, self.event_shape))})"
                f", got shape {shape}"
            )
        dtype = getattr(x, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                f"{self.name}: expected integer x with values in [0, {self.num_levels}), "
                f"got dtype {dtype}"
            )
        if _is_concrete(x) and shape[0] > 0:
            lo, hi = int(np.min(x)), int(np.max(x))
            if lo < 0 or hi >= self.num_levels:
                raise ValueError(
                    f"{self.name}: expected values in [0, {self.num_levels}), "
                    f"got values in [{lo}, {hi}]"
                )
        self.check_cond(cond, shape[0])

    def check_cond(self, cond, batch: int) -> None:
        """Validate the conditioning for a batch of ``batch`` examples (class labels here)."""
        if self.num_classes == 0:
            if cond is not None:
                raise ValueError(
                    f"{self.name}: this model is unconditional (num_classes=0) but got cond"
                )
            return
        if cond is None:
            raise ValueError(
                f"{self.name}: expected cond, integer class labels of shape ({batch},) "
                f"in [0, {self.num_classes}), got None"
            )
        shape = tuple(getattr(cond, "shape", ()))
        dtype = getattr(cond, "dtype", None)
        if shape != (batch,) or dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                f"{self.name}: expected cond of integer class labels with shape ({batch},), "
                f"got shape {shape} dtype {dtype}"
            )
        if _is_concrete(cond) and batch > 0:
            lo, hi = int(np.min(cond)), int(np.max(cond))
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(
                    f"{self.name}: expected class labels in [0, {self.num_classes}), "
                    f"got values in [{lo}, {hi}]"
                )

    def cond_from_batch(self, batch: dict):
        """The conditioning for a data batch (``{"x", "label", ...}``): labels if conditional."""
        return batch["label"] if self.num_classes else None

    # ----------------------------------------------------------------- network
    def dummy_cond(self, batch: int):
        """A valid conditioning input for ``batch`` examples (used to initialise)."""
        return jnp.zeros((batch,), jnp.int32) if self.num_classes else None

    def init(self, rng: jax.Array) -> Params:
        """Initialise the parameters (a pytree) from a PRNG key."""
        x = jnp.zeros((1, *self.event_shape), jnp.int32)
        p_rng, d_rng = jax.random.split(rng)
        variables = self.net.init({"params": p_rng, "dropout": d_rng}, x, self.dummy_cond(1))
        return variables["params"]

    def apply(self, params: Params, x, cond=None, *, train: bool = False, rng=None):
        """Run the network: the distribution parameters for every dimension of ``x``.

        ``train=True`` enables dropout (where a model has it) and needs ``rng``.
        """
        rngs = {"dropout": rng} if rng is not None else None
        return self.net.apply({"params": params}, x, cond, train=train, rngs=rngs)

    # ----------------------------------------------------------------- likelihood
    def _log_prob(self, params, x, cond=None, per_dim=False, train=False, rng=None):
        out = self.apply(params, x, cond, train=train, rng=rng)
        lp = self.distribution.log_prob(out, x)
        if per_dim:
            return lp
        return lp.reshape(lp.shape[0], -1).sum(axis=-1)

    def log_prob(
        self, params: Params, x, cond=None, per_dim: bool = False, *, train=False, rng=None
    ) -> jnp.ndarray:
        """Exact log-likelihood in nats.

        Returns ``log p(x)`` of shape ``(B,)``, or with ``per_dim=True`` the conditionals
        ``log p(x_i | x_<i)`` of shape ``(B, *event_shape)``. ``x`` holds integers in
        ``[0, num_levels)``. ``train=True`` (with ``rng``) applies dropout, for training.
        """
        self.check_input(x, cond)
        if not _is_concrete(x) or train:
            return self._log_prob(params, x, cond, per_dim=per_dim, train=train, rng=rng)
        return self._log_prob_jit(params, jnp.asarray(x), cond, per_dim=per_dim)

    def bits_per_dim(self, params: Params, x, cond=None) -> jnp.ndarray:
        """``-log2 p(x) / D`` for every example, shape ``(B,)``."""
        return -self.log_prob(params, x, cond) / (self.num_dims * math.log(2.0))

    # ----------------------------------------------------------------- sampling
    def init_cache(self, params: Params, batch: int, cond=None) -> Any:
        """The initial decode state of the cached sampler (models with one override this)."""
        raise ValueError(f"{self.name} has no cached sampler; methods: {self.sample_methods}")

    def zero_cache(self, params: Params, method, *args) -> Any:
        """Zeros shaped like the ``cache`` collection that ``self.net.apply(..., method=method)``
        writes on ``args``: the empty cache of a decode path (shapes from ``jax.eval_shape``,
        nothing is computed)."""
        shapes = jax.eval_shape(
            lambda p, a: self.net.apply({"params": p}, *a, method=method, mutable=["cache"])[1][
                "cache"
            ],
            params,
            args,
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def cached_step(self, params, cache, x_flat, step, cond=None):
        """One cached decode step: ``(params of step's distribution, new cache)``."""
        raise ValueError(f"{self.name} has no cached sampler; methods: {self.sample_methods}")

    def _sample(self, params, rng, cond, *, num, method, with_log_prob):
        if method == "naive":
            forward = partial(self.apply, params, cond=cond)
            step_fn = sampling.naive_step_fn(forward, self.distribution, self.event_shape)
            state = ()
        else:
            state = self.init_cache(params, num, cond)
            step_fn = partial(self._cached_step_fn, params, cond)
        x, logp = sampling.scan_sample(step_fn, state, self.distribution, rng, num, self.num_dims)
        x = x.reshape((num, *self.event_shape))
        return (x, logp) if with_log_prob else x

    def _cached_step_fn(self, params, cond, cache, x_flat, step):
        return self.cached_step(params, cache, x_flat, step, cond)

    def sample(
        self,
        params: Params,
        rng: jax.Array,
        num: int,
        cond=None,
        method: str | None = None,
        *,
        with_log_prob: bool = False,
    ):
        """Draw ``num`` samples, shape ``(num, *event_shape)`` int32.

        ``method`` is one of :attr:`sample_methods` (default :attr:`default_sample_method`).
        All methods draw step ``i`` with ``fold_in(rng, i)``, so they agree sample for sample.
        ``with_log_prob=True`` also returns the sum of the log-probabilities the sampler drew
        with, shape ``(num,)``.
        """
        method = method or self.default_sample_method
        if method not in self.sample_methods:
            raise ValueError(
                f"{self.name}: unknown sampling method {method!r}; expected one of "
                f"{list(self.sample_methods)}"
            )
        if int(num) < 1:
            raise ValueError(f"num must be a positive number of samples, got {num}")
        self.check_cond(cond, int(num))
        return self._sample_jit(
            params, rng, cond, num=int(num), method=method, with_log_prob=with_log_prob
        )
