"""The training loop: ``train_and_evaluate(config, workdir)`` is the whole runner.

It builds the data and the model from the config (the model only through
``jaxar.models.create``), resumes from the workdir's latest checkpoint if there is one, trains
with one jitted data-parallel step, logs training figures and exact test figures, keeps
checkpoints (latest N and the best), and ends with the objective's artefacts (samples, or
reconstructions) and a learning curve. Everything that differs between kinds of model comes
from ``model.objective()`` (:mod:`jaxar.objectives`); the loop names none of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from jaxar import config as jaxar_config
from jaxar import parallel, reporting
from jaxar.data.pipeline import train_batches
from jaxar.metrics import MetricWriter, read_jsonl, truncate_jsonl
from jaxar.preemption import Preempted, PreemptionGuard
from jaxar.runlock import RunLock
from jaxar.runner.build import build_model, import_modules, load_data
from jaxar.runner.optim import make_optimizer
from jaxar.runner.restore import checkpointer, restore
from jaxar.runner.state import create_train_state
from jaxar.runner.steps import evaluate, make_eval_step, make_train_step
from jaxar.validation import ConfigError, compare_configs, flatten, validate_config

__all__ = ["train_and_evaluate"]

log = logging.getLogger("jaxar")


def _has_checkpoint(workdir: str) -> bool:
    folder = os.path.join(workdir, "checkpoints")
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def _resume_changes(config, workdir: str) -> list[str]:
    """The keys a resumed run changes (a warning lists them); a change of shapes or data is a
    :class:`ConfigError` naming the keys. Nothing to compare for a run without checkpoints."""
    path = os.path.join(workdir, "config.json")
    if not (_has_checkpoint(workdir) and os.path.exists(path)):
        return []
    with open(path) as f:
        saved = json.load(f)
    refused, changed = compare_configs(saved, config, defaults=jaxar_config.default())
    if refused:
        old, new = flatten(saved), flatten(config)
        diffs = ", ".join(f"{k} ({old.get(k, '-')} -> {new.get(k, '-')})" for k in refused)
        raise ConfigError(
            f"the config differs from the run's config ({path}) in keys that change the "
            f"model's shapes or the data: {diffs}; use a new workdir, or the saved values"
        )
    if changed:
        old, new = flatten(saved), flatten(config)
        log.warning(
            "resuming %s with a changed config: %s",
            workdir,
            ", ".join(f"{k} ({old.get(k, '-')} -> {new.get(k, '-')})" for k in changed),
        )
    return changed


def _check_workdir(workdir: str) -> bool:
    """Create ``workdir`` (True if it did not exist); one clear error if it cannot be used."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir} exists and is not a directory")
    created = not os.path.exists(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"workdir {workdir} cannot be created: {e.strerror}") from None
    # Write a file rather than ask os.access, which says yes to root on any permission bits.
    try:
        tempfile.TemporaryFile(dir=workdir).close()
    except OSError as e:
        raise PermissionError(f"workdir {workdir} is not writable: {e.strerror}") from None
    return created


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices=None) -> dict:
    """Train the configured model, resuming from ``workdir`` if it holds a checkpoint.

    ``devices`` (default: every device of the job) form the data-parallel mesh. Returns the
    last evaluation's metrics.

    Before any work the whole config is validated (:func:`jaxar.validation.validate_config`)
    and, on resume, compared with the saved one (a change of shapes or data is refused; other
    changes are listed in a warning and the old config is kept as ``config.STEP.json``).
    One run per workdir (:class:`jaxar.runlock.RunLock`, process 0). SIGTERM / SIGINT stop the
    run at the next step boundary with a checkpoint of that step and raise
    :class:`jaxar.preemption.Preempted` (the CLI exits 75); a second signal exits at once.
    """
    import_modules(config)
    validate_config(config)
    parallel.initialize(config.get("distributed", False))
    is_main = jax.process_index() == 0
    mesh = parallel.make_mesh(devices)
    parallel.check_batch_size(config.batch_size, mesh)
    parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    k = config.grad_accum_steps
    if config.batch_size % k or (config.batch_size // k) % mesh.size:
        raise ValueError(
            f"batch_size={config.batch_size} must split into grad_accum_steps={k} "
            f"micro-batches that each divide over the {mesh.size} devices"
        )
    created = _check_workdir(workdir)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(RunLock(workdir, enabled=is_main))
            changed = _resume_changes(config, workdir)
            guard = stack.enter_context(PreemptionGuard())
            return _train(config, workdir, mesh, guard, changed)
    finally:
        if created and is_main and os.path.isdir(workdir) and not os.listdir(workdir):
            os.rmdir(workdir)  # refused before anything was written: leave no trace


def _save_config(config, workdir: str, step: int = 0, changed=()) -> None:
    path = os.path.join(workdir, "config.json")
    if changed and os.path.exists(path):  # keep the config the run had until now
        shutil.copyfile(path, os.path.join(workdir, f"config.{step}.json"))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)


def _init_batch(config, model, train_src) -> dict | None:
    """The batch a data-dependent initialisation reads: the first training batch, the same on
    every process (so every host computes the same parameters); None for other models."""
    if not model.init_needs_data:
        return None
    batches = train_batches(
        train_src, batch_size=config.batch_size, seed=config.seed, binarize=config.data.binarize
    )
    return next(iter(batches))


def _local(tree):
    """A host copy of replicated arrays (every process holds a whole copy)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def _train(config, workdir: str, mesh, guard: PreemptionGuard, changed) -> dict:
    """The run itself, the workdir locked and the config checked."""
    is_main = jax.process_index() == 0
    train_src, test_src, info = load_data(config)
    model = build_model(config, info)
    objective = model.objective()
    tx, schedule = make_optimizer(config)
    rng = jax.random.key(config.seed)
    repl = parallel.replicated(mesh)
    init_batch = _init_batch(config, model, train_src)
    state = create_train_state(model, tx, rng, config.ema_decay > 0, init_batch)
    state = jax.device_put(state, repl)
    ckpt = checkpointer(workdir, config, model)
    start = 0
    if ckpt.latest_step() is not None:
        state, start = restore(ckpt, state, move_skipped=True)
        log.info("resumed from %s at step %d", workdir, start)
    if is_main:
        _save_config(config, workdir, start, changed)
        truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), start)
    writer = MetricWriter(workdir, enabled=is_main, purge_step=start + 1)
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
    batches = train_batches(
        train_src,
        batch_size=config.batch_size,
        seed=config.seed,
        start_step=start,
        binarize=config.data.binarize,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    # The next global batches are sent to the devices while the current step runs.
    device_batches = parallel.prefetch_to_device(batches, config.get("prefetch", 2), mesh)

    def check_finite(state):
        bad = int(state.nonfinite_step)
        if bad >= 0:
            last = ckpt.latest_step()
            kept = (
                f"The last good checkpoint (step {last}) in {workdir} is intact"
                if last is not None
                else f"No checkpoint was saved in {workdir} yet"
            )
            raise FloatingPointError(
                f"non-finite loss or gradient at step {bad}; training stopped. {kept}; lower "
                "the learning rate or check the data, then resume"
            )

    eval_metrics: dict = {}
    pending: list = []
    t_last, s_last = time.perf_counter(), start
    pbar = tqdm(
        total=config.num_steps, initial=start, disable=not is_main, unit="step", dynamic_ncols=True
    )
    try:
        for step in range(start + 1, config.num_steps + 1):
            batch = next(device_batches)
            state, metrics = train_step(state, batch)
            pending.append(metrics["loss"])
            pbar.update(1)
            last = step == config.num_steps
            if step % config.log_every == 0 or last:
                check_finite(state)
                mean_loss = float(jnp.mean(jnp.stack(pending)))
                now = time.perf_counter()
                rate = (step - s_last) / (now - t_last)
                t_last, s_last, pending = now, step, []
                extra = {k: v for k, v in metrics.items() if k not in ("loss", "grad_norm")}
                record = {
                    **objective.train_record(mean_loss, extra),
                    "train/grad_norm": float(metrics["grad_norm"]),
                    "train/learning_rate": float(schedule(step - 1)),
                    "train/steps_per_sec": rate,
                    "train/examples_per_sec": rate * config.batch_size,
                }
                writer.write(step, record)
                pbar.set_postfix(**objective.progress(record), steps_s=f"{rate:.1f}", refresh=False)
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
                pbar.write(f"step {step}: {objective.format(eval_metrics)}")
            if step % config.checkpoint_every == 0 or last:
                check_finite(state)
                fresh = eval_metrics if step % config.eval_every == 0 or last else None
                ckpt.save(step, state, fresh)
            if not last and guard.should_stop(step):
                check_finite(state)
                ckpt.save(step, state)
                ckpt.wait()
                raise Preempted(guard.signal_name, step, workdir)
    finally:
        pbar.close()
        ckpt.wait()
        writer.close()

    if is_main:
        reporting.save_curves(
            read_jsonl(writer.path), os.path.join(workdir, "curves.png"), objective.curves
        )
        if config.num_samples:
            objective.write_artefacts(
                _local(state.eval_params),
                _local(state.model_state),
                os.path.join(workdir, objective.artefact_stem),
                rng=jax.random.fold_in(rng, config.num_steps),
                num=config.num_samples,
                source=test_src,
                info=info,
                method=config.sample_method or None,
            )
    ckpt.close()
    return eval_metrics
