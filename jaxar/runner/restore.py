"""Restoring a run: its checkpointer, and rebuilding a run's model and state from its workdir
(``config.json`` plus a checkpoint), for ``jaxar eval|sample|encode`` and resumption."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections

from jaxar.checkpointing import Checkpointer
from jaxar.runner.build import build_model, load_data
from jaxar.runner.optim import make_optimizer
from jaxar.runner.state import TrainState, new_state

__all__ = ["checkpointer", "load_run", "read_config", "restore", "restore_run", "state_shapes"]


def checkpointer(workdir: str, config, model) -> Checkpointer:
    """The run's checkpoints: the latest ``keep_checkpoints`` and the best by the objective's
    best metric."""
    best = model.objective().best_metric
    return Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=best)


def restore(ckpt: Checkpointer, target: TrainState, step=None, **kwargs) -> tuple[TrainState, int]:
    """``ckpt.restore`` (``kwargs``: e.g. ``move_skipped``), also reading checkpoints written
    before ``TrainState`` had a ``model_state`` (autoregressive runs: their trees lack the
    key)."""
    try:
        return ckpt.restore(target, step, **kwargs)
    except ValueError as e:
        if target.model_state is not None or "model_state" not in str(e):
            raise
    fields = ("step", "params", "opt_state", "ema_params", "nonfinite_step")
    old, step = ckpt.restore({f: getattr(target, f) for f in fields}, step, **kwargs)
    return TrainState(**old), step


def state_shapes(config, model) -> TrainState:
    """A zero state shaped like the run's (only shapes matter: a checkpoint's values replace
    it). Even a data-initialised model is set up from a dummy batch here."""
    tx, _ = make_optimizer(config)
    zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)
    key = jax.random.key(0)

    def init():  # the dummy batch is made inside the trace: its values are never inspected
        x = jnp.zeros((1, *model.event_shape), jnp.int32)
        return model.init_from_data(key, x, model.dummy_cond(1))

    params = zeros(jax.eval_shape(init))
    model_state = zeros(jax.eval_shape(lambda: model.objective().init_state(key)))
    return new_state(params, tx, config.ema_decay > 0, model_state)


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run was started with (``WORKDIR/config.json``)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir} holds no config.json; is it a jaxar run directory?")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def restore_run(workdir: str, checkpoint: str = "best"):
    """Rebuild a run's model and restore a checkpoint: ``"best"``, ``"latest"`` or a step.

    Returns ``(config, model, state, info, step, test_source)`` with the whole
    :class:`TrainState` (``state.eval_params`` are the weights to evaluate with).
    """
    config = read_config(workdir)
    _, test_src, info = load_data(config)
    model = build_model(config, info)
    ckpt = checkpointer(workdir, config, model)
    step = checkpoint if checkpoint in ("best", "latest") else int(checkpoint)
    state, step = restore(ckpt, state_shapes(config, model), step)
    ckpt.close()
    return config, model, state, info, step, test_src


def load_run(workdir: str, checkpoint: str = "best"):
    """Like :func:`restore_run`, with the evaluation weights in place of the state:
    ``(config, model, params, info, step, test_source)``."""
    config, model, state, info, step, test_src = restore_run(workdir, checkpoint)
    return config, model, state.eval_params, info, step, test_src
