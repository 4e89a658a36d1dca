"""Training and evaluation: pure jitted steps and the loop that drives them.

``train_and_evaluate(config, workdir)`` is the whole runner: it builds the data and the model
from the config (the model only through ``jaxar.models.create``), resumes from the workdir's
latest checkpoint if there is one, trains with one jitted data-parallel step, logs train and exact
test bits/dim, keeps checkpoints (latest N and the best), and ends with a sample grid and a
learning curve.

Models that are not autoregressive (autoencoders such as the VQ-VAE, see
:class:`jaxar.models.autoencoder.Autoencoder`) bring their own objective: the runner takes the
loss, the non-gradient state (``TrainState.model_state``, checkpointed with the rest) and the
test metrics from the model, and ends with inputs beside reconstructions instead of samples.

The loss is the exact negative log-likelihood per dimension in nats; reported as bits/dim
(``nats / ln 2``) and, for the test split, also as nats per example (the figure quoted for
binary data).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from functools import partial
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxar import models, parallel, reporting
from jaxar.checkpointing import Checkpointer
from jaxar.data import load
from jaxar.data.pipeline import binarized_info, eval_batches, train_batches
from jaxar.metrics import MetricWriter, read_jsonl
from jaxar.models.autoencoder import Autoencoder

__all__ = [
    "TrainState",
    "build_model",
    "create_train_state",
    "evaluate",
    "is_autoencoder",
    "load_run",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "restore_run",
    "train_and_evaluate",
]

log = logging.getLogger("jaxar")


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped.

    ``nonfinite_step`` is -1 until a step produces a non-finite loss or gradient; that step's
    update is not applied, so the parameters stay finite, and the loop stops at its next check.
    """

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema_params: Any
    nonfinite_step: jnp.ndarray
    model_state: Any = None  # an autoencoder's non-gradient state (e.g. EMA codebook)

    @property
    def eval_params(self):
        """The weights to evaluate and sample with: the EMA if kept, else the raw ones."""
        return self.params if self.ema_params is None else self.ema_params


def is_autoencoder(model) -> bool:
    """Whether the runner trains ``model`` by its own objective rather than by its NLL."""
    return isinstance(model, Autoencoder)


# ---------------------------------------------------------------------------- building
def data_options(config) -> dict:
    opts = {}
    if config.data.get("data_dir"):
        opts["data_dir"] = config.data.data_dir
    for key in ("length", "sample_rate", "features", "num_mels", "feature_hop", "fft_size"):
        if config.data.get(key):
            opts[key] = config.data[key]
    return opts


def build_model(config: ml_collections.ConfigDict, info) -> models.AutoregressiveModel:
    """The model named by the config, its data-dependent hyperparameters filled from ``info``."""
    hparams = dict(config.model.to_dict()) if config.get("model") else {}
    accepted = models.hparam_names(config.model_name)
    filled = {
        "image_shape": tuple(info.event_shape),
        "length": info.event_shape[0],
        "num_levels": info.num_levels,
        "dtype": config.get("compute_dtype", "float32"),
    }
    if config.data.get("conditional"):
        if not info.num_classes:
            raise ValueError(f"data.conditional is set but {info.name} has no labels")
        filled["num_classes"] = info.num_classes
    if info.feature_shape:
        if "local_features" not in accepted:
            raise ValueError(
                f"the data {info.name} has local conditioning features but model "
                f"{config.model_name} takes none; unset config.data.features"
            )
        filled["local_features"] = info.feature_shape[-1]
        filled["local_hop"] = info.feature_hop
    elif hparams.get("local_features"):
        raise ValueError(
            f"model {config.model_name} is conditioned on local features "
            f"(model.local_features={hparams['local_features']}) but the data {info.name} has "
            "none; set config.data.features (e.g. 'log_mel') and config.data.feature_hop"
        )
    for key, value in filled.items():
        if key in accepted and key not in hparams:
            if key == "image_shape" and len(info.event_shape) != 3:
                continue
            if key == "length" and len(info.event_shape) != 1:
                continue
            hparams[key] = value
    model = models.create(config.model_name, **hparams)
    if model.event_shape != tuple(info.event_shape) or model.num_levels != info.num_levels:
        raise ValueError(
            f"model {config.model_name} models events {model.event_shape} with "
            f"{model.num_levels} levels but the data {info.name} has {tuple(info.event_shape)} "
            f"with {info.num_levels} levels"
        )
    if info.feature_shape:
        got = (model.hparams.get("local_features"), model.hparams.get("local_hop"))
        if got != (info.feature_shape[-1], info.feature_hop):
            raise ValueError(
                f"model {config.model_name} has local_features={got[0]}, local_hop={got[1]} "
                f"but the data {info.name} has {info.feature_shape[-1]} features per frame, "
                f"one frame per {info.feature_hop} samples"
            )
    return model


def make_schedule(config) -> optax.Schedule:
    """Linear warmup from 0, then constant, cosine (to 0 at ``num_steps``) or exponential decay.

    Written out (rather than composed from optax's schedules) so that it runs under strict
    dtype promotion.
    """
    o = config.optim
    if o.schedule not in ("constant", "cosine", "exponential"):
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


def create_train_state(model, tx, rng, ema: bool, init_batch: dict | None = None) -> TrainState:
    """The initial state. ``init_batch`` (a data batch) is given to models whose parameters are
    initialised from data (weight normalisation with ``data_init``)."""
    if init_batch is None:
        params = model.init(rng)
    else:
        x = jnp.asarray(init_batch["x"])
        cond = model.cond_from_batch(init_batch)
        params = model.init(rng, x, None if cond is None else jnp.asarray(cond))
    model_state = model.init_state(rng) if is_autoencoder(model) else None
    return _new_state(params, tx, ema, model_state)


def _new_state(params, tx, ema: bool, model_state=None) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        nonfinite_step=jnp.full((), -1, jnp.int32),
        model_state=model_state,
    )


# ---------------------------------------------------------------------------- steps
def _nll_per_dim(model, params, batch, rng, train: bool):
    """Mean over the batch of the negative log-likelihood per dimension, in nats."""
    lp = model.log_prob(params, batch["x"], model.cond_from_batch(batch), train=train, rng=rng)
    return -jnp.mean(lp) / model.num_dims


def _objective(model):
    """``(params, model_state, batch, rng) -> (loss, (new model_state, metrics))``: an
    autoencoder's own loss, or the NLL per dimension (state untouched, no extra metrics)."""
    if is_autoencoder(model):

        def autoencoder_loss(params, model_state, batch, rng):
            loss, new_state, metrics = model.loss(params, model_state, batch, rng)
            return loss, (new_state, metrics)

        return autoencoder_loss
    return lambda params, model_state, batch, rng: (
        _nll_per_dim(model, params, batch, rng, True),
        (model_state, {}),
    )


def make_train_step(model, tx, *, ema_decay: float = 0.0, grad_accum_steps: int = 1, seed=0):
    """A pure step ``(state, batch) -> (state, metrics)``, to be jitted.

    With ``grad_accum_steps = k`` the batch is split into k micro-batches whose gradients are
    averaged (a ``lax.scan``), so the update equals one step on the whole batch. An
    autoencoder's state passes through the micro-batches in turn; its metrics are averaged.
    """
    grad_fn = jax.value_and_grad(_objective(model), has_aux=True)

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
    """A pure step ``(params, batch) -> (sum of NLL in nats, number of examples)``; for an
    autoencoder ``(params, model_state, batch) -> model.eval_sums(...)``."""
    if is_autoencoder(model):
        return model.eval_sums

    def eval_fn(params, batch):
        lp = model.log_prob(params, batch["x"], model.cond_from_batch(batch))
        mask = batch["mask"]
        return -jnp.sum(lp * mask), jnp.sum(mask)

    return eval_fn


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
    """Exact test-set likelihood over every example of ``source``.

    Returns ``{"test/bits_per_dim", "test/nll_nats"}``: bits per dimension and the mean
    negative log-likelihood of an example in nats. For an autoencoder (with its
    ``model_state``), the metrics of ``model.summarize`` over the sums of every example.
    """
    mesh = mesh or parallel.make_mesh()
    parallel.check_batch_size(batch_size, mesh, "eval_batch_size")
    if eval_step is None:
        eval_step = jax.jit(make_eval_step(model))
    params = jax.device_put(params, parallel.replicated(mesh))
    if is_autoencoder(model):
        state = jax.device_put(model_state, parallel.replicated(mesh))
        eval_step = partial(eval_step, params, state)
    else:
        eval_step = partial(eval_step, params)
    total, count = 0.0, 0.0
    n_proc, idx = jax.process_count(), jax.process_index()
    sums = []  # dispatch every batch first; fetch the (replicated) scalars after, in float64
    for batch in eval_batches(source, batch_size=batch_size, binarize=binarize, seed=seed):
        local = {key: np.array_split(v, n_proc)[idx] for key, v in batch.items()}
        sums.append(eval_step(parallel.global_batch(local, mesh)))
    if is_autoencoder(model):
        totals = jax.tree.map(lambda *v: sum(np.asarray(a, np.float64) for a in v), *sums)
        if float(totals["count"]) != len(source):
            raise RuntimeError(f"evaluated {totals['count']} examples of {len(source)}")
        return model.summarize(totals)
    for nll, n in sums:
        total, count = total + float(nll), count + float(n)
    if count != len(source):
        raise RuntimeError(f"evaluated {count} examples of {len(source)}")
    nats = total / count
    return {"test/bits_per_dim": nats / (model.num_dims * math.log(2.0)), "test/nll_nats": nats}


# ---------------------------------------------------------------------------- the loop
def _save_config(config, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)


def _load_data(config):
    opts = data_options(config)
    train_src = load(config.data.name, "train", **opts)
    test_src = load(config.data.name, "test", **opts)
    return train_src, test_src, binarized_info(train_src.info, config.data.binarize)


def sample_cond(model, num: int, class_label: int | None = None, examples: dict | None = None):
    """Conditioning for ``num`` samples.

    Labels: the given class, else the labels of ``examples`` when the model also takes local
    features (a vocoder resynthesises those examples), else classes 0, 1, ... in turn. Local
    features (a model with ``local_features``) come from ``examples`` (see
    :func:`conditioning_examples`), which is then required.
    """
    local = getattr(model, "local_features", 0)
    if class_label is not None:
        if not model.num_classes:
            raise ValueError(f"{model.name} is unconditional; --class needs a conditional model")
        if not 0 <= class_label < model.num_classes:
            raise ValueError(f"class must be in [0, {model.num_classes}), got {class_label}")
        labels = jnp.full((num,), class_label, jnp.int32)
    elif model.num_classes and local and examples is not None:
        labels = jnp.asarray(examples["label"], jnp.int32)
    elif model.num_classes:
        labels = jnp.arange(num, dtype=jnp.int32) % model.num_classes
    else:
        labels = None
    if not local:
        return labels
    if examples is None:
        raise ValueError(f"{model.name} is conditioned on local features: pass examples")
    cond = {"features": jnp.asarray(examples["features"], jnp.float32)}
    if labels is not None:
        cond["label"] = labels
    return cond


def conditioning_examples(model, source, num: int) -> dict | None:
    """The first ``num`` examples of ``source`` as one batch, for a model whose samples are
    conditioned on per-example data (local features); None for any other model."""
    if not getattr(model, "local_features", 0):
        return None
    if len(source) < num:
        raise ValueError(
            f"{num} samples need the local features of {num} examples, but "
            f"{source.info.name} has {len(source)}"
        )
    elements = [source[i] for i in range(num)]
    return {k: np.stack([e[k] for e in elements]) for k in elements[0]}


def _data_init_batch(config, model, train_src) -> dict | None:
    """The batch a data-dependent initialisation sees: the first training batch, the same on
    every process (so every host computes the same parameters); None for other models."""
    if not model.hparams.get("data_init"):
        return None
    batches = train_batches(
        train_src, batch_size=config.batch_size, seed=config.seed, binarize=config.data.binarize
    )
    return next(iter(batches))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
    """Train the configured model, resuming from ``workdir`` if it holds a checkpoint.

    ``devices`` (default: every device of the job) form the data-parallel mesh. Returns the
    last evaluation's metrics.
    """
    parallel.initialize(config.get("distributed", False))
    is_main = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    mesh = parallel.make_mesh(devices)
    parallel.check_batch_size(config.batch_size, mesh)
    k = config.grad_accum_steps
    if k < 1 or config.batch_size % k or (config.batch_size // k) % mesh.size:
        raise ValueError(
            f"batch_size={config.batch_size} must split into grad_accum_steps={k} "
            f"micro-batches that each divide over the {mesh.size} devices"
        )
    train_src, test_src, info = _load_data(config)
    model = build_model(config, info)
    tx, schedule = make_optimizer(config)
    rng = jax.random.key(config.seed)
    repl = parallel.replicated(mesh)
    init_batch = _data_init_batch(config, model, train_src)
    state = create_train_state(model, tx, rng, config.ema_decay > 0, init_batch)
    state = jax.device_put(state, repl)
    ckpt = _checkpointer(workdir, config, model)
    start = 0
    if ckpt.latest_step() is not None:
        state, start = _restore(ckpt, state)
        log.info("resumed from %s at step %d", workdir, start)
    if is_main:
        _save_config(config, workdir)
    writer = MetricWriter(workdir, enabled=is_main)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    log.info("%r: %d parameters; %d devices; data %s", model, n_params, mesh.size, info)

    train_step = jax.jit(
        make_train_step(
            model,
            tx,
            ema_decay=config.ema_decay,
            grad_accum_steps=config.grad_accum_steps,
            seed=config.seed,
        ),
        in_shardings=(repl, parallel.batch_sharding(mesh)),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    eval_step = jax.jit(make_eval_step(model))
    autoencoder = is_autoencoder(model)
    batches = train_batches(
        train_src,
        batch_size=config.batch_size,
        seed=config.seed,
        start_step=start,
        binarize=config.data.binarize,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    def check_finite(state):
        bad = int(state.nonfinite_step)
        if bad >= 0:
            last = ckpt.latest_step()
            raise FloatingPointError(
                f"non-finite loss or gradient at step {bad}; training stopped. The last good "
                f"checkpoint (step {last}) in {workdir} is intact; lower the learning rate or "
                "check the data, then resume"
            )

    eval_metrics: dict = {}
    pending: list = []
    t_last, s_last = time.perf_counter(), start
    pbar = tqdm(
        total=config.num_steps, initial=start, disable=not is_main, unit="step", dynamic_ncols=True
    )
    try:
        for step in range(start + 1, config.num_steps + 1):
            batch = parallel.global_batch(next(batches), mesh)
            state, metrics = train_step(state, batch)
            pending.append(metrics["loss"])
            pbar.update(1)
            last = step == config.num_steps
            if step % config.log_every == 0 or last:
                check_finite(state)
                nats = float(jnp.mean(jnp.stack(pending)))
                now = time.perf_counter()
                rate = (step - s_last) / (now - t_last)
                t_last, s_last, pending = now, step, []
                record = {
                    "train/bits_per_dim": nats / math.log(2.0),
                    "train/grad_norm": float(metrics["grad_norm"]),
                    "train/learning_rate": float(schedule(step - 1)),
                    "train/steps_per_sec": rate,
                    "train/examples_per_sec": rate * config.batch_size,
                }
                if autoencoder:  # its loss is no bits/dim; log it and the model's metrics
                    del record["train/bits_per_dim"]
                    record["train/loss"] = nats
                    extra = {k: v for k, v in metrics.items() if k not in ("loss", "grad_norm")}
                    record.update({f"train/{k}": float(v) for k, v in extra.items()})
                writer.write(step, record)
                shown = {"loss": nats} if autoencoder else {"bpd": record["train/bits_per_dim"]}
                shown = {k: f"{v:.4f}" for k, v in shown.items()}
                pbar.set_postfix(**shown, steps_s=f"{rate:.1f}", refresh=False)
            if step % config.eval_every == 0 or last:
                eval_metrics = evaluate(
                    model,
                    state.eval_params,
                    test_src,
                    batch_size=config.eval_batch_size,
                    binarize=config.data.binarize,
                    mesh=mesh,
                    eval_step=eval_step,
                    seed=config.seed,
                    model_state=state.model_state,
                )
                writer.write(step, eval_metrics)
                pbar.write(f"step {step}: {format_metrics(eval_metrics)}")
            if step % config.checkpoint_every == 0 or last:
                check_finite(state)
                fresh = eval_metrics if step % config.eval_every == 0 or last else None
                ckpt.save(step, state, fresh)
    finally:
        pbar.close()
        ckpt.wait()
        writer.close()

    if is_main:
        # Replicated weights: every process holds a whole copy; sample from the local one.
        local_params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state.eval_params)
        records = read_jsonl(writer.path)
        curves = ("train/bits_per_dim", "test/bits_per_dim")
        if autoencoder:
            curves = (model.train_curve, model.test_curve)
        reporting.save_curves(records, os.path.join(workdir, "curves.png"), curves)
        if config.num_samples and autoencoder:
            from jaxar import two_stage

            local = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), state.model_state)
            two_stage.save_reconstructions(
                model,
                {"params": local_params, "vq": local},
                test_src,
                config.num_samples,
                os.path.join(workdir, "reconstructions"),
            )
        elif config.num_samples:
            key = jax.random.fold_in(rng, config.num_steps)
            examples = conditioning_examples(model, test_src, config.num_samples)
            samples = model.sample(
                local_params,
                key,
                config.num_samples,
                cond=sample_cond(model, config.num_samples, examples=examples),
                method=config.sample_method or None,
            )
            reporting.save_samples(np.asarray(samples), info, os.path.join(workdir, "samples"))
            if examples is not None:  # what the samples were conditioned on, to compare
                reporting.save_samples(examples["x"], info, os.path.join(workdir, "reference"))
    ckpt.close()
    return eval_metrics


def format_metrics(metrics: dict) -> str:
    """One line for a test evaluation: bits/dim and nats, or an autoencoder's metrics."""
    if "test/bits_per_dim" in metrics:
        return (
            f"test bits/dim {metrics['test/bits_per_dim']:.4f}"
            f" ({metrics['test/nll_nats']:.2f} nats per example)"
        )
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _checkpointer(workdir: str, config, model) -> Checkpointer:
    best = model.best_metric if is_autoencoder(model) else "test/bits_per_dim"
    return Checkpointer(workdir, keep=config.keep_checkpoints, best_metric=best)


def _restore(ckpt: Checkpointer, target: TrainState, step=None) -> tuple[TrainState, int]:
    """``ckpt.restore``, also reading checkpoints written before ``TrainState`` had a
    ``model_state`` (autoregressive runs: their trees lack the key)."""
    try:
        return ckpt.restore(target, step)
    except ValueError as e:
        if target.model_state is not None or "model_state" not in str(e):
            raise
    fields = ("step", "params", "opt_state", "ema_params", "nonfinite_step")
    old, step = ckpt.restore({f: getattr(target, f) for f in fields}, step)
    return TrainState(**old), step


def _dummy_params(model):
    if not model.hparams.get("data_init"):
        return model.init(jax.random.key(0))
    x = jnp.zeros((1, *model.event_shape), jnp.int32)
    return model.init(jax.random.key(0), x, model.dummy_cond(1))


def load_run(workdir: str, checkpoint: str = "best"):
    """Rebuild a run's model and restore its evaluation weights.

    ``checkpoint`` is ``"best"``, ``"latest"`` or a step number. Returns
    ``(config, model, params, info, step, test_source)``.
    """
    config, model, state, info, step, test_src = restore_run(workdir, checkpoint)
    return config, model, state.eval_params, info, step, test_src


def restore_run(workdir: str, checkpoint: str = "best"):
    """Like :func:`load_run`, with the whole :class:`TrainState` in place of the weights
    (an autoencoder needs its ``model_state`` too)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir} holds no config.json; is it a jaxar run directory?")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    _, test_src, info = _load_data(config)
    model = build_model(config, info)
    tx, _ = make_optimizer(config)
    # Only the shapes matter here (the checkpoint's values replace them), so even a
    # data-initialised model is set up from a dummy batch.
    shapes = jax.eval_shape(lambda: _dummy_params(model))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    model_state = None
    if is_autoencoder(model):
        model_state = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype),
            jax.eval_shape(lambda: model.init_state(jax.random.key(0))),
        )
    target = _new_state(params, tx, config.ema_decay > 0, model_state)
    ckpt = _checkpointer(workdir, config, model)
    step = checkpoint if checkpoint in ("best", "latest") else int(checkpoint)
    state, step = _restore(ckpt, target, step)
    ckpt.close()
    return config, model, state, info, step, test_src
