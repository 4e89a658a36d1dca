"""The train state: everything a run needs to continue exactly where it stopped."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

__all__ = ["TrainState", "create_train_state", "new_state"]


@flax.struct.dataclass
class TrainState:
    """Parameters, optimizer state, EMA weights and the objective's non-gradient state.

    ``nonfinite_step`` is -1 until a step produces a non-finite loss or gradient; that step's
    update is not applied, so the parameters stay finite, and the loop stops at its next check.
    """

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema_params: Any
    nonfinite_step: jnp.ndarray
    model_state: Any = None  # the objective's non-gradient state (e.g. an EMA codebook)

    @property
    def eval_params(self):
        """The weights to evaluate and sample with: the EMA if kept, else the raw ones."""
        return self.params if self.ema_params is None else self.ema_params


def create_train_state(model, tx, rng, ema: bool, init_batch: dict | None = None) -> TrainState:
    """The initial state. ``init_batch`` (a data batch) is read by models whose parameters are
    initialised from data (``model.init_needs_data``)."""
    if init_batch is None:
        params = model.init(rng)
    else:
        x = jnp.asarray(init_batch["x"])
        cond = model.cond_from_batch(init_batch)
        params = model.init_from_data(rng, x, jax.tree.map(jnp.asarray, cond))
    return new_state(params, tx, ema, model.objective().init_state(rng))


def new_state(params, tx, ema: bool, model_state=None) -> TrainState:
    """A state at step 0 around ``params``."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        nonfinite_step=jnp.full((), -1, jnp.int32),
        model_state=model_state,
    )
