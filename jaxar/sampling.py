"""Autoregressive samplers: one ``lax.scan`` over sampling steps, jitted end to end.

Both samplers share :func:`scan_sample`; they differ only in the step function that produces
the distribution parameters of the next step:

* **naive**: runs the whole network on the partially generated event and reads off the
  parameters at the step's position, ``D`` full forward passes in all;
* **cached**: the model's decode path, which keeps per-layer caches and costs only a
  receptive-field-local computation per step.

Step ``i`` draws with ``jax.random.fold_in(key, i)``, so two samplers whose step parameters
agree produce the same samples from the same key. :func:`fixed_point_sample` reaches the same
samples in parallel: whole-event passes that redraw every step with that same noise until
nothing changes. All three complete a prompt (its first dimensions given) the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["StepFn", "fixed_point_sample", "naive_step_fn", "scan_sample", "when"]

# step_fn(state, x_flat, step) -> (params of the step's distribution, new state)
StepFn = Callable[[Any, jnp.ndarray, jnp.ndarray], tuple[jnp.ndarray, Any]]


def when(pred, fn: Callable[[Any], Any], state: Any) -> Any:
    """``fn(state)`` if ``pred`` else ``state``, for a decode step's work done at some steps
    only (a row's first step, a coarser level's), as a loop of zero or one trip rather than a
    ``lax.cond``: XLA copies what a conditional's do-nothing branch passes through (the Gated
    PixelCNN's caches, compiled for an H200: 13 copies at all but a row's first step), while a
    loop updates what it carries in place."""
    body = lambda carry: (jnp.bool_(False), fn(carry[1]))
    return lax.while_loop(lambda carry: carry[0], body, (jnp.asarray(pred), state))[1]


def _start(prompt, prompt_dims, batch: int, num_dims: int) -> jnp.ndarray:
    """The event the samplers start from: the prompt's first ``prompt_dims`` flat dimensions,
    zeros after them (all zeros without a prompt)."""
    x0 = jnp.zeros((batch, num_dims), jnp.int32)
    if prompt is None:
        return x0
    keep = jnp.arange(num_dims) < prompt_dims
    return jnp.where(keep[None, :], prompt.reshape(batch, num_dims).astype(jnp.int32), x0)


def scan_sample(
    step_fn: StepFn,
    init_state: Any,
    distribution: Any,
    key: jax.Array,
    batch: int,
    num_dims: int,
    num_steps: int | None = None,
    *,
    prompt: jnp.ndarray | None = None,
    prompt_dims: jnp.ndarray | int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    event_shape: tuple[int, ...] | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generate ``batch`` events of ``num_dims`` flat dimensions.

    Returns the flat samples ``(batch, num_dims)`` int32 and, for every example, the sum of the
    log-probabilities (under the model, i.e. at temperature 1 without a nucleus) of the values
    drawn at each step under the parameters the sampler saw.
    ``num_steps`` stops after that many steps (the rest stays 0): for timing a slow sampler.

    With a ``prompt`` (``(batch, ...)`` integers, ``num_dims`` per example) the first
    ``prompt_dims`` flat dimensions (a whole number of steps; may be traced) are the prompt's:
    steps before them still run ``step_fn`` (so a cached decode path fills its caches by
    teacher forcing) but take the prompt's values instead of their draws, and add nothing to
    the log-probability. Step ``i`` draws with ``fold_in(key, i)`` either way, so a completion
    is the same whichever sampler makes it. ``temperature`` and ``top_p`` (Python floats) reshape
    each step's distribution (see the distribution's ``draw``); the defaults change nothing.

    ``event_shape`` (``num_dims`` elements; a model's, the shape its step reshapes ``x`` to)
    is the shape the events are kept in between steps; ``step_fn`` still gets them flat. It
    changes no value: with it, XLA updates the events in place at every step (see ``body``).
    """
    g = distribution.dims_per_step
    if num_dims % g:
        raise ValueError(f"{num_dims} dimensions do not split into steps of {g}")
    prompt_steps = jnp.asarray(prompt_dims, jnp.int32) // g
    x0 = _start(prompt, prompt_dims, batch, num_dims)

    shape = tuple(event_shape or (num_dims,))
    if math.prod(shape) != num_dims or shape[-1] % g:
        raise ValueError(
            f"event_shape {shape} must hold {num_dims} dimensions, its last axis a multiple of "
            f"the {g} drawn per step"
        )
    flat = lambda x: x.reshape(batch, num_dims)
    x0 = x0.reshape(batch, *shape)

    def write(x, values, step):  # step's values into x (at step -1, x's own first values)
        at = jnp.unravel_index(jnp.maximum(step, 0) * g, shape)
        values = values.reshape(batch, *(1,) * (len(shape) - 1), g)
        return lax.dynamic_update_slice(x, values, (0, *at))

    # Each step first writes the previous step's values, before anything reads x, and x is
    # kept in the shape the step reads it in: then XLA updates it in place. Written at the end
    # of their own step, the values were not ordered by data dependence after reads of x that
    # XLA fuses into the cache updates (WaveNet's), and x (B x D) was copied at every step;
    # kept flat while the step reads an image, the write was fused twice, once per shape.
    def body(carry, step):
        x, last, state = carry
        x = write(x, last, step - 1)
        params, state = step_fn(state, flat(x), step)
        values = distribution.sample_step(jax.random.fold_in(key, step), params, temperature, top_p)
        logp = distribution.step_log_prob(params, values)
        if prompt is not None:
            given = step < prompt_steps
            old = lax.dynamic_slice_in_dim(flat(x), step * g, g, axis=1)
            values = jnp.where(given, old, values)
            logp = jnp.where(given, jnp.zeros_like(logp), logp)
        return (x, values.astype(x.dtype), state), logp

    steps = num_dims // g if num_steps is None else num_steps
    carry = (x0, flat(x0)[:, :g], init_state)
    (x, last, _), logps = lax.scan(body, carry, jnp.arange(steps))
    return flat(write(x, last, steps - 1)), logps.sum(axis=0)


def fixed_point_sample(
    forward: Callable[[jnp.ndarray], jnp.ndarray],
    distribution: Any,
    event_shape: tuple,
    key: jax.Array,
    batch: int,
    *,
    prompt: jnp.ndarray | None = None,
    prompt_dims: jnp.ndarray | int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Parallel sampling by fixed-point (Jacobi) iteration of whole-event forward passes.

    Every step's noise is drawn once from ``fold_in(key, step)``, as the sequential samplers
    draw it. Each pass runs ``forward`` on the current event and redraws *every* step from its
    conditional with that noise (prompt steps keep the prompt's values); the iteration stops
    at the first pass that changes nothing. After pass ``k`` the first ``k`` sampled steps are
    final (step ``s`` depends only on steps before it), so it stops after at most
    ``num_steps - prompt_steps`` passes (the last one is then not re-checked: it is final; a
    prompt of every step takes none), and its result is exactly :func:`scan_sample`'s with the
    naive step from the same key. One ``lax.while_loop``, jittable.

    Returns the flat samples ``(batch, D)`` int32, the model log-probability of the sampled
    steps ``(batch,)`` and the number of forward passes (int32 scalar).
    """
    num_dims = math.prod(event_shape)
    g = distribution.dims_per_step
    if num_dims % g:
        raise ValueError(f"{num_dims} dimensions do not split into steps of {g}")
    steps = jnp.arange(num_dims // g)
    prompt_steps = jnp.asarray(prompt_dims, jnp.int32) // g
    given = steps < prompt_steps  # (S,)
    x0 = _start(prompt, prompt_dims, batch, num_dims)

    def run(x):
        return forward(x.reshape((batch, *event_shape)))

    def step_params(out):  # (S, B, P)
        return jax.vmap(lambda s: distribution.step_params(out, s))(steps)

    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(steps)
    shape = jax.eval_shape(lambda x: step_params(run(x)), x0)  # the noise needs only this
    start = jnp.zeros(shape.shape, shape.dtype)
    noise = jax.vmap(distribution.step_noise)(keys, start)

    def redraw(params, x):
        values = jax.vmap(lambda p, n: distribution.draw(p, n, temperature, top_p))(params, noise)
        values = jnp.moveaxis(values, 0, 1).reshape(batch, num_dims)  # (S, B, g) -> (B, D)
        return jnp.where(jnp.repeat(given, g)[None, :], x, values)

    def cond(carry):
        _, _, changed, passes = carry
        return changed & (passes < steps.shape[0] - prompt_steps)

    def body(carry):
        x, _, _, passes = carry
        params = step_params(run(x))
        new = redraw(params, x)
        return new, params, jnp.any(new != x), passes + 1

    # The forward pass is traced once (in the loop body), so it compiles once.
    carry = (x0, start, jnp.bool_(True), jnp.int32(0))
    x, params, _, passes = lax.while_loop(cond, body, carry)
    values = jnp.moveaxis(x.reshape(batch, -1, g), 1, 0)  # (S, B, g)
    logps = jax.vmap(distribution.step_log_prob)(params, values)  # (S, B)
    logps = jnp.where(given[:, None], jnp.zeros_like(logps), logps)
    return x, logps.sum(axis=0), passes


def naive_step_fn(
    forward: Callable[[jnp.ndarray], jnp.ndarray], distribution: Any, event_shape: tuple
) -> StepFn:
    """The naive step: a full forward pass on the current event, read at the step's position."""

    def step_fn(state, x, step):
        out = forward(x.reshape((x.shape[0], *event_shape)))
        return distribution.step_params(out, step), state

    return step_fn
