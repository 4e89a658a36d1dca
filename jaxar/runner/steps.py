"""Pure steps: the jittable train step and evaluation sums, and the exact test evaluation.

Both steps take the loss and the evaluation sums from the model's objective
(:mod:`jaxar.objectives`), so they are the same code for every kind of model.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxar import parallel
from jaxar.data.pipeline import eval_batches
from jaxar.runner.state import TrainState

__all__ = ["evaluate", "make_eval_step", "make_train_step"]


def make_train_step(model, tx, *, ema_decay: float = 0.0, grad_accum_steps: int = 1, seed=0):
    """A pure step ``(state, batch) -> (state, metrics)``, to be jitted.

    With ``grad_accum_steps = k`` the batch is split into k micro-batches whose gradients are
    averaged (a ``lax.scan``), so the update equals one step on the whole batch. The
    objective's state passes through the micro-batches in turn; its metrics are averaged.
    """
    grad_fn = jax.value_and_grad(model.objective().loss, has_aux=True)

    def loss_and_grad(params, model_state, batch, rng):
        (loss, (model_state, aux)), grads = grad_fn(params, model_state, batch, rng)
        return loss, grads, model_state, aux

    def step_fn(state: TrainState, batch: dict):
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        batch = {k: v for k, v in batch.items() if k != "mask"}
        if grad_accum_steps == 1:
            loss, grads, model_state, aux = loss_and_grad(
                state.params, state.model_state, batch, rng
            )
        else:
            # Micro-batch i is rows i::k, so every device holds an equal share of each.
            micro = jax.tree.map(
                lambda v: v.reshape(
                    v.shape[0] // grad_accum_steps, grad_accum_steps, *v.shape[1:]
                ).swapaxes(0, 1),
                batch,
            )

            def acc(carry, inputs):
                i, mb = inputs
                sums, model_state = carry
                loss, grads, model_state, aux = loss_and_grad(
                    state.params, model_state, mb, jax.random.fold_in(rng, i)
                )
                return (jax.tree.map(jnp.add, sums, (loss, grads, aux)), model_state), None

            first = jax.tree.map(lambda v: v[0], micro)
            aux_shapes = jax.eval_shape(
                lambda: loss_and_grad(state.params, state.model_state, first, rng)
            )[3]
            zeros = (
                jnp.zeros((), jnp.float32),
                jax.tree.map(jnp.zeros_like, state.params),
                jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shapes),
            )
            ((loss, grads, aux), model_state), _ = jax.lax.scan(
                acc, (zeros, state.model_state), (jnp.arange(grad_accum_steps), micro)
            )
            loss, grads, aux = jax.tree.map(lambda t: t / grad_accum_steps, (loss, grads, aux))
        # optax mixes Python floats with int32 step counts (Adam's bias correction), which
        # strict dtype promotion rejects; jaxar's own code stays strict.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        ema = state.ema_params
        if ema is not None:
            ema = jax.tree.map(lambda e, p: e * ema_decay + p * (1.0 - ema_decay), ema, params)
        new = state.replace(
            step=state.step + 1,
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            ema_params=None if ema is None else keep(ema, state.ema_params),
            nonfinite_step=jnp.where(
                (state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step
            ),
            model_state=keep(model_state, state.model_state),
        )
        metrics = {**aux, "loss": loss, "grad_norm": grad_norm}
        return new, metrics

    return step_fn


def make_eval_step(model):
    """A pure step ``(params, model_state, batch) -> sums`` (a dict with ``"count"``, the real
    examples of the padded batch): the objective's evaluation sums."""
    return model.objective().eval_sums


def evaluate(
    model,
    params,
    source,
    *,
    batch_size: int,
    binarize: str = "",
    mesh=None,
    eval_step=None,
    seed: int = 0,
    model_state=None,
) -> dict:
    """Exact test metrics over every example of ``source``.

    For an autoregressive model ``{"test/bits_per_dim", "test/nll_nats"}``: bits per
    dimension and the mean negative log-likelihood of an example in nats; for others the
    metrics their objective summarises. The sums are accumulated in float64 on the host.
    """
    mesh = mesh or parallel.make_mesh()
    parallel.check_batch_size(batch_size, mesh, "eval_batch_size")
    if eval_step is None:
        eval_step = jax.jit(make_eval_step(model))
    repl = parallel.replicated(mesh)
    step = partial(eval_step, jax.device_put(params, repl), jax.device_put(model_state, repl))
    n_proc, idx = jax.process_count(), jax.process_index()
    sums = []  # dispatch every batch first; fetch the (replicated) sums after
    for batch in eval_batches(source, batch_size=batch_size, binarize=binarize, seed=seed):
        local = {key: np.array_split(v, n_proc)[idx] for key, v in batch.items()}
        sums.append(step(parallel.global_batch(local, mesh)))
    totals = jax.tree.map(lambda *v: sum(np.asarray(a, np.float64) for a in v), *sums)
    if float(totals["count"]) != len(source):
        raise RuntimeError(f"evaluated {totals['count']} examples of {len(source)}")
    return model.objective().summarize(totals)
