"""Autoregressive samplers: one ``lax.scan`` over sampling steps, jitted end to end.

Both samplers share :func:`scan_sample`; they differ only in the step function that produces
the distribution parameters of the next step:

* **naive**: runs the whole network on the partially generated event and reads off the
  parameters at the step's position, ``D`` full forward passes in all;
* **cached**: the model's decode path, which keeps per-layer caches and costs only a
  receptive-field-local computation per step.

Step ``i`` draws with ``jax.random.fold_in(key, i)``, so two samplers whose step parameters
agree produce the same samples from the same key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["StepFn", "naive_step_fn", "scan_sample"]

# step_fn(state, x_flat, step) -> (params of the step's distribution, new state)
StepFn = Callable[[Any, jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, Any]]


def scan_sample(
    step_fn: StepFn,
    init_state: Any,
    distribution: Any,
    key: jax.Array,
    batch: int,
    num_dims: int,
    num_steps: int | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generate ``batch`` events of ``num_dims`` flat dimensions.

    Returns the flat samples ``(batch, num_dims)`` int32 and, for every example, the sum of the
    log-probabilities of the values drawn at each step under the parameters the sampler saw.
    ``num_steps`` stops after that many steps (the rest stays 0): for timing a slow sampler.
    """
    g = distribution.dims_per_step
    if num_dims % g:
        raise ValueError(f"{num_dims} dimensions do not split into steps of {g}")

    def body(carry, step):
        x, state = carry
        params, state = step_fn(state, x, step)
        values = distribution.sample_step(jax.random.fold_in(key, step), params)
        x = lax.dynamic_update_slice(x, values.astype(x.dtype), (0, step * g))
        return (x, state), distribution.step_log_prob(params, values)

    x0 = jnp.zeros((batch, num_dims), jnp.int32)
    steps = num_dims // g if num_steps is None else num_steps
    (x, _), logps = lax.scan(body, (x0, init_state), jnp.arange(steps))
    return x, logps.sum(axis=0)


def naive_step_fn(
    forward: Callable[[jnp.ndarray], jnp.ndarray], distribution: Any, event_shape: tuple
) -> StepFn:
    """The naive step: a full forward pass on the current event, read at the step's position."""

    def step_fn(state, x, step):
        out = forward(x.reshape((x.shape[0], *event_shape)))
        return distribution.step_params(out, step), state

    return step_fn
