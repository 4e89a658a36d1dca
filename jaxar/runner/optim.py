"""The optimizer: Adam (AdamW with weight decay), optional global-norm clipping, and the
learning-rate schedule."""

from __future__ import annotations

import jax.numpy as jnp
import optax

__all__ = ["make_optimizer", "make_schedule"]

SCHEDULES = ("constant", "cosine", "exponential")


def make_schedule(config) -> optax.Schedule:
    """Linear warmup from 0, then constant, cosine (to 0 at ``num_steps``) or exponential decay.

    Written out (rather than composed from optax's schedules) so that it runs under strict
    dtype promotion.
    """
    o = config.optim
    if o.schedule not in SCHEDULES:
        raise ValueError(
            f"unknown optim.schedule {o.schedule!r}; expected constant, cosine or exponential"
        )
    lr, warmup = float(o.learning_rate), max(int(o.warmup_steps), 0)
    span = float(max(int(config.num_steps) - warmup, 1))

    def schedule(count):
        t = jnp.asarray(count).astype(jnp.float32)
        after = jnp.maximum(t - warmup, 0.0)
        if o.schedule == "constant":
            value = jnp.full_like(t, lr)
        elif o.schedule == "cosine":
            value = lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(after / span, 1.0)))
        else:
            value = lr * jnp.power(jnp.float32(o.decay_rate), after)
        if warmup:
            value = jnp.where(t < warmup, lr * t / warmup, value)
        return value

    return schedule


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam (AdamW with weight decay) with the schedule of :func:`make_schedule`."""
    o = config.optim
    schedule = make_schedule(config)
    chain = []
    if o.grad_clip:
        chain.append(optax.clip_by_global_norm(o.grad_clip))
    chain.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay))
    return optax.chain(*chain), schedule
