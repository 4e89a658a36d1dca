"""The runner checked against direct computations: every figure it reports is recomputed here
from ``log_prob`` and the hand-written recursions it claims to implement.

Covers: exact test bits/dim with a padded last batch; the EMA recursion, and evaluation and
samples made with the EMA; the learning rate of every schedule at chosen steps, as the optimizer
applies it; gradient clipping; gradient accumulation (loss and gradient before the optimizer)
against the full batch; a non-finite step leaving the state unchanged; bits vs nats in
``metrics.jsonl``, the curves and the CLI; ``--class`` reaching the sampler.
"""

import math
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from test_train import _cli  # the CLI in a subprocess, as a user runs it

from jaxar import config as jaxar_config
from jaxar import models, objectives, reporting, train
from jaxar.data import ArraySource, DataInfo
from jaxar.data.pipeline import train_batches
from jaxar.metrics import read_jsonl

LN2 = math.log(2.0)


def _randomise(params, key, scale=0.3):
    """Every leaf (biases included) moved off its init, so the network is far from constant."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    )


def _tiny_pixelcnn(num_classes=0):
    return models.create(
        "pixelcnn",
        image_shape=(4, 4, 1),
        num_levels=5,
        num_classes=num_classes,
        features=8,
        num_blocks=1,
        output_features=8,
        first_kernel=3,
    )


def _source(n, seed=0, levels=5, shape=(4, 4, 1), num_classes=0):
    rs = np.random.default_rng(seed)
    x = rs.integers(0, levels, (n, *shape)).astype(np.uint8)
    labels = rs.integers(0, num_classes, n) if num_classes else None
    return ArraySource(x, labels, DataInfo("random", shape, levels, num_classes))


def _not_constant(model, params, x):
    lp = np.asarray(model.log_prob(params, x, per_dim=True))
    assert np.ptp(lp) > 0.1, "the network under test is (nearly) constant"


# ---------------------------------------------------------------------------- evaluate
def test_evaluate_equals_direct_log_prob_and_excludes_padding():
    model = _tiny_pixelcnn()
    params = _randomise(model.init(jax.random.key(0)), jax.random.key(1))
    src = _source(10)  # batches of 4: the last holds 2 examples and 2 rows of zero padding
    x = jnp.asarray(src.x, jnp.int32)
    _not_constant(model, params, x)
    lp = np.asarray(model.log_prob(params, x), np.float64)
    got = train.evaluate(model, params, src, batch_size=4)
    nats = -lp.mean()
    np.testing.assert_allclose(got["test/nll_nats"], nats, rtol=1e-6)
    np.testing.assert_allclose(got["test/bits_per_dim"], nats / (16 * LN2), rtol=1e-6)
    # The padding rows are scored differently from the real examples, so counting them would
    # move the figure (this is what makes the check above sensitive to it).
    pad_lp = float(model.log_prob(params, jnp.zeros((1, 4, 4, 1), jnp.int32))[0])
    assert abs(pad_lp - lp[-2:].mean()) > 0.5


# ---------------------------------------------------------------------------- schedules
def _optim_config(schedule, warmup=10, num_steps=110, lr=0.1, clip=0.0):
    c = jaxar_config.default()
    c.num_steps = num_steps
    c.optim.schedule = schedule
    c.optim.warmup_steps = warmup
    c.optim.learning_rate = lr
    c.optim.decay_rate = 0.97
    c.optim.grad_clip = clip
    return c


def _expected_lr(schedule, t, warmup=10, num_steps=110, lr=0.1):
    if t < warmup:
        return lr * t / warmup
    after = t - warmup
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * min(after / (num_steps - warmup), 1.0)))
    return lr * 0.97**after


STEPS = (0, 1, 5, 9, 10, 11, 35, 60, 85, 109, 110, 150)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "exponential"])
def test_learning_rate_at_chosen_steps_as_the_optimizer_applies_it(schedule):
    c = _optim_config(schedule)
    tx, sched = train.make_optimizer(c)
    want = np.array([_expected_lr(schedule, t) for t in STEPS])
    np.testing.assert_allclose([float(sched(t)) for t in STEPS], want, rtol=1e-5, atol=1e-7)
    # Adam with a constant gradient g has bias-corrected moments g and g**2, so its update at
    # count t is -lr(t) * g / (|g| + eps): the schedule as the optimizer applies it.
    g = {"w": jnp.full((3,), 0.5, jnp.float32)}
    state = tx.init(g)
    seen = []
    with jax.numpy_dtype_promotion("standard"):
        for _ in range(max(STEPS) + 1):
            u, state = tx.update(g, state, g)
            seen.append(-float(u["w"][0]))
    np.testing.assert_allclose([seen[t] for t in STEPS], want, rtol=1e-4, atol=1e-7)


def test_no_warmup_starts_at_the_full_rate_and_a_one_step_cosine_ends_at_zero():
    """Edges the chosen steps above miss (mutation testing found both unchecked)."""
    for schedule in ("constant", "cosine", "exponential"):
        _, sched = train.make_optimizer(_optim_config(schedule, warmup=0))
        assert float(sched(0)) == pytest.approx(0.1), schedule
    _, sched = train.make_optimizer(_optim_config("cosine", warmup=4, num_steps=5))
    np.testing.assert_allclose(
        [float(sched(t)) for t in range(7)], [0.0, 0.025, 0.05, 0.075, 0.1, 0.0, 0.0], atol=1e-7
    )


def _adam_mu(opt_state):
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "mu"))
        if hasattr(s, "mu")
    ]
    assert len(found) == 1
    return found[0].mu


@pytest.mark.parametrize("norm", [10.0, 0.5])
def test_gradient_clipping_by_global_norm(norm):
    tx, _ = train.make_optimizer(_optim_config("constant", clip=2.0))
    g = {"a": jnp.array([3.0, 4.0], jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    g = jax.tree.map(lambda v: v * (norm / 5.0), g)
    with jax.numpy_dtype_promotion("standard"):
        _, state = tx.update(g, tx.init(g), g)
    # Adam's first moment after one step is (1 - b1) times the gradient it was given.
    clipped = jax.tree.map(lambda v: v * min(1.0, 2.0 / norm), g)
    jax.tree.map(
        lambda m, v: np.testing.assert_allclose(m, 0.1 * v, rtol=1e-5), _adam_mu(state), clipped
    )


# ---------------------------------------------------------------------------- train step
def _record_grads():
    """An 'optimizer' that passes the gradient through and stores it as its state."""
    return optax.GradientTransformation(
        lambda p: jax.tree.map(jnp.zeros_like, p), lambda g, s, p=None: (g, g)
    )


def test_grad_accumulation_loss_and_gradient_equal_the_full_batch():
    model = _tiny_pixelcnn()
    params = _randomise(model.init(jax.random.key(0)), jax.random.key(2))
    src = _source(8, seed=3)
    batch = {"x": jnp.asarray(src.x, jnp.int32)}
    _not_constant(model, params, batch["x"])

    def nll(p):
        return -jnp.mean(model.log_prob(p, batch["x"])) / model.num_dims

    loss, grads = jax.value_and_grad(nll)(params)
    tx = _record_grads()
    for k in (1, 4):
        state = train.create_train_state(model, tx, jax.random.key(0), ema=False)
        state = state.replace(params=params, opt_state=tx.init(params))
        new, metrics = jax.jit(train.make_train_step(model, tx, grad_accum_steps=k))(state, batch)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5, err_msg=f"k={k}")
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6),
            new.opt_state,
            grads,
        )
        norm = math.sqrt(sum(float(jnp.sum(g * g)) for g in jax.tree.leaves(grads)))
        np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-4)


def test_ema_recursion_by_hand():
    model = _tiny_pixelcnn()
    src = _source(8, seed=4)
    batch = {"x": jnp.asarray(src.x, jnp.int32)}
    tx = optax.sgd(0.5)
    decay = 0.75
    state = train.create_train_state(model, tx, jax.random.key(0), ema=True)
    step = jax.jit(train.make_train_step(model, tx, ema_decay=decay))
    ema = state.params
    for _ in range(3):
        state, _ = step(state, batch)
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, state.params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state.ema_params, ema
    )
    # ... and they are not the raw weights: the EMA lags behind.
    diffs = [
        float(jnp.max(jnp.abs(a - b))) for a, b in zip(*map(jax.tree.leaves, (ema, state.params)))
    ]
    assert max(diffs) > 1e-3
    assert state.eval_params is state.ema_params


def _fresh_state(params, tx, ema):
    """A train state at step 0 with ``params``, ``tx``'s initial state and EMA ``ema``."""
    return train.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=ema,
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )


class _ScaledModel:
    """A stand-in model whose loss the batch can make infinite (``scale``)."""

    num_dims = 2
    num_classes = 0

    def cond_from_batch(self, batch):
        return batch["scale"]

    def log_prob(self, params, x, cond=None, *, train=False, rng=None):
        xf = x.astype(jnp.float32)
        return -jnp.sum(jnp.square(params["w"] - xf), axis=-1) * cond

    def objective(self):
        return objectives.Likelihood(self)


def test_non_finite_step_leaves_the_state_unchanged():
    model = _ScaledModel()
    tx = optax.adam(0.1)
    params = {"w": jnp.array([0.5, -0.5], jnp.float32)}
    state = _fresh_state(params, tx, ema=params)
    step = jax.jit(train.make_train_step(model, tx, ema_decay=0.5))
    x = jnp.array([[1, 2], [3, 0]], jnp.int32)
    good = {"x": x, "scale": jnp.ones((2,), jnp.float32)}
    bad = {"x": x, "scale": jnp.array([1.0, jnp.inf], jnp.float32)}
    state, _ = step(state, good)
    before = state
    state, metrics = step(state, bad)
    assert not np.isfinite(float(metrics["loss"]))
    assert int(state.nonfinite_step) == 1
    for name in ("params", "opt_state", "ema_params"):
        jax.tree.map(np.testing.assert_array_equal, getattr(state, name), getattr(before, name))
    state, _ = step(state, good)  # a later good step moves on but keeps the first bad step
    assert int(state.nonfinite_step) == 1
    assert not np.array_equal(state.params["w"], before.params["w"])


# ---------------------------------------------------------------------------- the whole run
def _run_config(**overrides):
    c = jaxar_config.default()
    c.data.name = "digits"
    c.data.conditional = True
    c.model.features = 8
    c.model.num_blocks = 1
    c.model.output_features = 8
    c.model.first_kernel = 3
    c.batch_size = 32
    c.eval_batch_size = 100  # 297 test digits: the last batch holds 97 and 3 rows of padding
    c.num_steps = 4
    c.log_every = 1
    c.eval_every = 4
    c.checkpoint_every = 4
    c.ema_decay = 0.5
    c.optim.learning_rate = 3e-2
    c.optim.warmup_steps = 2
    c.num_samples = 2
    for key, value in overrides.items():
        c[key] = value
    return c


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ema_run"))
    c = _run_config()
    curves = []
    real = reporting.save_curves

    def spy(records, path, keys=("train/bits_per_dim", "test/bits_per_dim")):
        curves.append((records, tuple(keys)))
        return real(records, path, keys)

    reporting.save_curves = spy
    try:
        train.train_and_evaluate(c, workdir)
    finally:
        reporting.save_curves = real
    _, model, state, _, _, test_src = train.restore_run(workdir, "latest")
    return dict(workdir=workdir, c=c, model=model, state=state, test_src=test_src, curves=curves)


def test_compress_reports_the_ema_models_exact_bits_and_decompresses(ema_run, tmp_path):
    """``compress_run``'s summary against ``log_prob`` of the coded test digits (with their
    labels, under the EMA weights) and the file's size; ``decompress_file`` gives them back,
    with one PNG per digit."""
    from PIL import Image

    from jaxar import coding

    model, state, src = ema_run["model"], ema_run["state"], ema_run["test_src"]
    out = str(tmp_path / "digits.jxr")
    summary = coding.compress_run(ema_run["workdir"], out, num=8, progress=False)
    x = np.stack([src[i]["x"] for i in range(8)]).astype(np.int32)
    y = np.array([src[i]["label"] for i in range(8)], np.int32)
    bits = -float(np.sum(np.asarray(model.log_prob(state.ema_params, x, y), np.float64))) / LN2
    size, dims = os.path.getsize(out), 8 * 64
    assert summary["examples"] == 8 and summary["bytes"] == size
    np.testing.assert_allclose(summary["exact_bits_per_dim"], bits / dims, rtol=1e-5)
    np.testing.assert_allclose(summary["bits_per_dim"], 8 * size / dims, rtol=1e-12)
    np.testing.assert_allclose(summary["overhead"], 8 * size / bits - 1.0, rtol=1e-5)
    decoded = coding.decompress_file(out, ema_run["workdir"], str(tmp_path / "d"), progress=False)
    np.testing.assert_array_equal(decoded, x)
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "decoded.npy"), x)
    png = np.asarray(Image.open(tmp_path / "d" / "000003.png"))
    np.testing.assert_array_equal(png, np.round(x[3, ..., 0] * 255.0 / 16).astype(np.uint8))


def _direct_test_nats(model, params, src):
    x = np.stack([src[i]["x"] for i in range(len(src))]).astype(np.int32)
    y = np.array([src[i]["label"] for i in range(len(src))], np.int32)
    lp = [
        model.log_prob(params, jnp.asarray(x[i : i + 100]), jnp.asarray(y[i : i + 100]))
        for i in range(0, len(x), 100)
    ]
    return -float(np.concatenate([np.asarray(v, np.float64) for v in lp]).mean())


def test_run_evaluates_and_samples_with_the_ema(ema_run):
    model, state, src = ema_run["model"], ema_run["state"], ema_run["test_src"]
    records = read_jsonl(os.path.join(ema_run["workdir"], "metrics.jsonl"))
    test = [r for r in records if "test/bits_per_dim" in r]
    assert [r["step"] for r in test] == [4]
    ema_nats = _direct_test_nats(model, state.ema_params, src)
    raw_nats = _direct_test_nats(model, state.params, src)
    assert abs(ema_nats - raw_nats) > 1e-3 * abs(raw_nats)
    np.testing.assert_allclose(test[0]["test/nll_nats"], ema_nats, rtol=1e-5)
    np.testing.assert_allclose(test[0]["test/bits_per_dim"], ema_nats / (64 * LN2), rtol=1e-5)
    # The final samples: the EMA weights, key fold_in(key(seed), num_steps), classes 0, 1.
    samples = np.load(os.path.join(ema_run["workdir"], "samples.npy"))
    key = jax.random.fold_in(jax.random.key(0), 4)
    cond = jnp.arange(2, dtype=jnp.int32)
    np.testing.assert_array_equal(samples, model.sample(state.ema_params, key, 2, cond=cond))
    assert not np.array_equal(samples, model.sample(state.params, key, 2, cond=cond))


def test_run_reports_train_bits_learning_rate_and_curves_in_their_units(ema_run):
    c, model = ema_run["c"], ema_run["model"]
    records = read_jsonl(os.path.join(ema_run["workdir"], "metrics.jsonl"))
    train_recs = [r for r in records if "train/bits_per_dim" in r]
    assert [r["step"] for r in train_recs] == [1, 2, 3, 4]
    # Step 1's loss: the initial weights on the first batch, in nats per dim; logged in bits.
    load_data = getattr(train, "load_data", None) or train._load_data  # before the runner split
    train_src = load_data(c)[0]
    first = next(iter(train_batches(train_src, batch_size=32, seed=0)))
    params0 = model.init(jax.random.key(0))
    lp = model.log_prob(params0, jnp.asarray(first["x"], jnp.int32), jnp.asarray(first["label"]))
    np.testing.assert_allclose(
        train_recs[0]["train/bits_per_dim"], -float(jnp.mean(lp)) / (64 * LN2), rtol=1e-5
    )
    # Step s applied the learning rate of optimizer count s - 1 (warmup 2 of 4, cosine).
    want = [0.0, 0.015, 0.03, 0.015]
    got = [r["train/learning_rate"] for r in train_recs]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    # The curves plot those bits/dim records, not nats.
    [(plotted, keys)] = ema_run["curves"]
    assert keys == ("train/bits_per_dim", "test/bits_per_dim")
    assert plotted == records


def test_cli_eval_prints_bits_and_nats_and_sample_uses_the_class(ema_run, tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir, model, state = ema_run["workdir"], ema_run["model"], ema_run["state"]
    r = _cli("eval", f"--workdir={workdir}", "--checkpoint=latest", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"test bits/dim ([0-9.]+), ([0-9.]+) nats per example over 297", r.stdout)
    assert m, r.stdout
    nats = _direct_test_nats(model, state.ema_params, ema_run["test_src"])
    np.testing.assert_allclose(float(m.group(2)), nats, atol=1e-3)
    np.testing.assert_allclose(float(m.group(1)), nats / (64 * LN2), atol=1e-5)

    out = str(tmp_path / "s")
    args = ("sample", f"--workdir={workdir}", "--checkpoint=latest", "--num=3", "--seed=5")
    r = _cli(*args, "--class=7", f"--out={out}", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(out + ".npy")
    key = jax.random.key(5)
    want = model.sample(state.ema_params, key, 3, cond=jnp.full((3,), 7, jnp.int32))
    np.testing.assert_array_equal(got, want)
    other = model.sample(state.ema_params, key, 3, cond=jnp.full((3,), 2, jnp.int32))
    assert not np.array_equal(got, other)


def test_the_default_train_step_is_one_full_batch_step_with_the_average_at_the_weights():
    # make_train_step(model, tx) with its defaults (as benchmarks/scaling.py calls it): no
    # gradient accumulation (a batch of 3 rows cannot split into micro-batches), the update
    # of the full batch's gradient, and an EMA, where the state has one, equal to the weights.
    model = _ScaledModel()
    tx = _record_grads()
    params = {"w": jnp.array([0.5, -0.5], jnp.float32)}
    state = _fresh_state(params, tx, ema=jax.tree.map(jnp.zeros_like, params))
    x = jnp.array([[1, 2], [3, 0], [2, 2]], jnp.int32)
    batch = {"x": x, "scale": jnp.ones((3,), jnp.float32)}
    new, metrics = jax.jit(train.make_train_step(model, tx))(state, batch)
    # loss = mean over rows of sum_j (w_j - x_j)^2 / 2 dims; its gradient is mean(w - x).
    diff = np.asarray(params["w"]) - np.asarray(x, np.float32)
    np.testing.assert_allclose(metrics["loss"], np.mean(np.sum(diff**2, axis=1)) / 2, rtol=1e-6)
    want = np.mean(diff, axis=0)
    np.testing.assert_allclose(new.opt_state["w"], want, rtol=1e-6)
    np.testing.assert_allclose(new.params["w"], np.asarray(params["w"]) + want, rtol=1e-6)
    np.testing.assert_array_equal(new.ema_params["w"], new.params["w"])


class _BatchMeanModel(_ScaledModel):
    """A stand-in whose loss reads its whole batch (the batch mean of x), so one step on the
    full batch and k micro-batches differ, by an amount computed here by hand."""

    def cond_from_batch(self, batch):
        return None

    def log_prob(self, params, x, cond=None, *, train=False, rng=None):
        mean = jnp.mean(x.astype(jnp.float32), axis=0)
        return -jnp.sum(jnp.square(params["w"] - mean), axis=-1) * jnp.ones(x.shape[0])


def test_grad_accumulation_splits_the_batch_into_rows_i_mod_k():
    model = _BatchMeanModel()
    tx = _record_grads()
    params = {"w": jnp.array([0.5, -0.5], jnp.float32)}
    x = np.array([[1, 2], [3, 0], [2, 2], [0, 5]], np.float32)
    for k in (1, 2, 4):
        state = _fresh_state(params, tx, ema=None)
        step = jax.jit(train.make_train_step(model, tx, grad_accum_steps=k))
        new, metrics = step(state, {"x": jnp.asarray(x, jnp.int32)})
        # Micro-batch i is rows i, i + k, ...: its loss is sum_j (w_j - mean_j)^2 / 2.
        diffs = [np.asarray(params["w"]) - x[i::k].mean(axis=0) for i in range(k)]
        loss = np.mean([np.sum(d**2) / 2 for d in diffs])
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6, err_msg=f"k={k}")
        np.testing.assert_allclose(new.opt_state["w"], np.mean(diffs, axis=0), rtol=1e-6)


class _SqrtModel(_ScaledModel):
    """A stand-in whose loss stays finite where its gradient is not: d sqrt|u| / du is NaN at
    u = 0 (sign 0 times an infinite slope)."""

    def cond_from_batch(self, batch):
        return None

    def log_prob(self, params, x, cond=None, *, train=False, rng=None):
        return -jnp.sum(jnp.sqrt(jnp.abs(params["w"] - x.astype(jnp.float32))), axis=-1)


def test_a_finite_loss_with_a_non_finite_gradient_is_skipped_and_step_0_is_remembered():
    model = _SqrtModel()
    tx = optax.sgd(0.1)
    params = {"w": jnp.array([1.0, 2.0], jnp.float32)}
    state = _fresh_state(params, tx, ema=params)
    step = jax.jit(train.make_train_step(model, tx, ema_decay=0.5))
    bad = {"x": jnp.array([[1, 2], [3, 0]], jnp.int32)}  # row 0 sits on w: NaN gradient
    good = {"x": jnp.array([[3, 0], [0, 4]], jnp.int32)}
    state, metrics = step(state, bad)
    assert np.isfinite(float(metrics["loss"])) and not np.isfinite(float(metrics["grad_norm"]))
    assert int(state.step) == 1 and int(state.nonfinite_step) == 0
    for name in ("params", "ema_params"):
        jax.tree.map(np.testing.assert_array_equal, getattr(state, name), params)
    state, _ = step(state, bad)  # bad again at step 1: the first bad step, 0, is kept
    assert int(state.step) == 2 and int(state.nonfinite_step) == 0
    state, _ = step(state, good)  # and a good step moves on
    assert not np.array_equal(state.params["w"], params["w"])
    assert int(state.nonfinite_step) == 0


@pytest.mark.parametrize("distributed", [True, False])
def test_the_runner_joins_a_multi_host_job_when_the_config_asks(tmp_path, monkeypatch, distributed):
    # config.distributed reaches parallel.initialize before any work (the two-process test
    # starts its workers through the environment variable, so it does not read the key).
    from jaxar import parallel

    asked = []

    class _Stop(Exception):
        pass

    def initialize(enabled):
        asked.append(enabled)
        raise _Stop

    monkeypatch.setattr(parallel, "initialize", initialize)
    with pytest.raises(_Stop):
        train.train_and_evaluate(_run_config(distributed=distributed), str(tmp_path / "run"))
    assert asked == [distributed]
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_cuts_the_metrics_log_back_to_its_checkpoint(tmp_path):
    # A run logged steps 3-4 but its step-4 checkpoint is lost (preempted before it landed):
    # resumed from step 2, it logs steps 3-4 again, and each step appears once.
    import shutil

    workdir = str(tmp_path / "run")
    config = _run_config(checkpoint_every=2, eval_every=2)
    train.train_and_evaluate(config, workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
    train.train_and_evaluate(config, workdir)
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train_records = [r for r in records if "train/bits_per_dim" in r]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4], records
    assert [r["step"] for r in records if "test/bits_per_dim" in r] == [2, 4], records
    _, schedule = train.make_optimizer(config)
    for r in train_records:  # the logged rate is the one that made step r["step"]
        assert r["train/learning_rate"] == pytest.approx(float(schedule(r["step"] - 1)))
        assert r["train/examples_per_sec"] == pytest.approx(32 * r["train/steps_per_sec"])
    # TensorBoard shows the same history: the resumed attempt's event file purges the lost
    # attempt's records from step 3 (checkpoint + 1) on, so each step is shown once (the
    # first attempt, started at step 0, purges from step 1: nothing).
    view, purges = _tensorboard_view(os.path.join(workdir, "tensorboard"))
    assert purges == [1, 3], purges
    assert view["train/bits_per_dim"] == [1, 2, 3, 4], view
    assert view["test/bits_per_dim"] == [2, 4], view


def _tensorboard_view(logdir):
    """What TensorBoard shows of ``logdir``: the event files read in name order, each
    SessionLog.START at step ``s`` (a writer's ``purge_step``) hiding the records shown so
    far at step ``s`` and later. Returns ``({tag: [steps]}, [purge steps])``."""
    import struct

    from tensorboardX.proto.event_pb2 import Event, SessionLog

    shown, purges = {}, []
    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos < len(data):  # TFRecord: length (u64), its crc, the record, its crc
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                purges.append(event.step)
                shown = {t: [s for s in steps if s < event.step] for t, steps in shown.items()}
            for value in event.summary.value:
                shown.setdefault(value.tag, []).append(event.step)
    return shown, purges


def test_data_options_pass_each_set_loader_option_under_its_own_name():
    # The loader options among config.data: each one set reaches the loader under its own
    # name; unset (0 or "") ones are left to the loader's defaults.
    from jaxar.runner import build

    c = jaxar_config.default()
    assert build.data_options(c) == {"num_mels": c.data.num_mels}  # the one set by default
    c.data.num_mels = 0
    assert build.data_options(c) == {}
    values = dict(data_dir="/d", length=400, sample_rate=8000, features="log_mel", num_mels=20,
                  feature_hop=80, fft_size=256)  # fmt: skip
    for key, value in values.items():
        c.data[key] = value
    assert build.data_options(c) == values


def test_cli_completion_keeps_the_prompt_uses_the_labels_and_lays_out_the_grid(ema_run, tmp_path):
    """``jaxar sample --prompt-rows K``: the completions are the model's prompted samples of the
    first test digits with their labels and the EMA weights; the PNG holds one row per example
    (original, prompt, completions) at the grid's geometry."""
    from PIL import Image

    from jaxar.completion import run_completion

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workdir, model, state = ema_run["workdir"], ema_run["model"], ema_run["state"]
    out = str(tmp_path / "c")
    args = ("sample", f"--workdir={workdir}", "--checkpoint=latest", "--num=2", "--seed=4")
    r = _cli(*args, "--prompt-rows=3", "--completions=3", f"--out={out}", cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [out + ".npy", out + ".png"]
    got = np.load(out + ".npy")
    src = ema_run["test_src"]
    x = np.stack([src[i]["x"] for i in range(2)]).astype(np.int32)
    labels = np.array([src[i]["label"] for i in range(2)], np.int32)
    assert labels[0] != labels[1]  # so a lost or shuffled label changes the draw
    assert got.shape == (2, 3, 8, 8, 1)
    np.testing.assert_array_equal(got[:, :, :3], np.repeat(x[:, None, :3], 3, axis=1))
    prompt = np.repeat(x, 3, axis=0)  # example-major: example i's completions are rows 3i..
    direct = model.sample(state.ema_params, jax.random.key(4), 6, cond=np.repeat(labels, 3),
                          prompt=prompt, prompt_dims=24)  # fmt: skip
    np.testing.assert_array_equal(got.reshape(6, 8, 8, 1), direct)
    # The Python entry point with its defaults (temperature 1, top_p 1, no seconds) is the CLI.
    paths = run_completion(
        workdir, checkpoint="latest", rows=3, num=2, per_example=3, seed=4, out=out + "_py"
    )
    assert paths == [out + "_py.npy", out + "_py.png"]
    np.testing.assert_array_equal(np.load(paths[0]), got)
    one = np.load(run_completion(workdir, checkpoint="latest", rows=3, num=1, out=out + "_1")[0])
    assert one.shape == (1, 4, 8, 8, 1)  # --num 1 is allowed (4 completions by default)
    np.testing.assert_array_equal(one[:, :, :3], np.repeat(x[:1, None, :3], 4, axis=1))
    with pytest.raises(ValueError, match=r"expected --num in \[1, 297\] test examples, got 0"):
        run_completion(workdir, checkpoint="latest", rows=3, num=0)

    png = np.asarray(Image.open(out + ".png"))
    tile = reporting.image_grid(x[:1], model.num_levels, pad=0)  # 64 x 64 for 8 x 8 digits
    h, w = tile.shape[:2]
    assert png.shape == (2 * (h + 2) + 2, 5 * (w + 2) + 2)
    grey = model.num_levels // 2  # the middle level stands for the dimensions to complete
    row_of = [x, np.where(np.arange(64).reshape(1, 8, 8, 1) < 24, x, grey), got[:, 0], got[:, 1],
              got[:, 2]]  # fmt: skip
    padding = np.ones(png.shape, bool)
    for i in range(2):
        for j, images in enumerate(row_of):
            top, left = 2 + i * (h + 2), 2 + j * (w + 2)
            want_tile = reporting.image_grid(images[i : i + 1], model.num_levels, pad=0)
            np.testing.assert_array_equal(png[top : top + h, left : left + w], want_tile)
            padding[top : top + h, left : left + w] = False
    assert (png[padding] == 255).all()  # the padding between tiles is white


def test_completions_of_audio_are_wav_files_per_example_and_draw(tmp_path):
    import soundfile as sf

    from jaxar.completion import save_completions
    from jaxar.distributions import mu_law_decode

    info = DataInfo("wav", (40,), 256, kind="audio", sample_rate=8000)
    x = np.arange(2 * 40).reshape(2, 40) % 256
    completions = np.stack([(x + k * 7) % 256 for k in range(3)], axis=1)  # (2, 3, 40)
    stem = str(tmp_path / "new" / "c")  # the folder does not exist yet
    paths = save_completions(x, completions, 10, info, stem)
    names = [f"{stem}_{i}_{s}.wav" for i in range(2) for s in ("original", 0, 1, 2)]
    assert paths == [stem + ".npy", *names]
    np.testing.assert_array_equal(np.load(stem + ".npy"), completions)
    for i in range(2):
        clips = [x[i], *completions[i]]
        for s, clip in zip(("original", 0, 1, 2), clips, strict=True):
            audio, rate = sf.read(f"{stem}_{i}_{s}.wav")
            assert rate == 8000
            np.testing.assert_allclose(audio, np.asarray(mu_law_decode(clip, 256)), atol=1 / 32768)
    save_completions(x, completions, 10, info, stem)  # writing again into the folder is fine


def test_rgb_completions_are_a_colour_grid(tmp_path):
    from PIL import Image

    from jaxar.completion import save_completions

    info = DataInfo("rgb", (4, 4, 3), 4)
    x = np.arange(2 * 48).reshape(2, 4, 4, 3) % 4
    completions = np.stack([(x + k) % 4 for k in range(2)], axis=1)  # (2, 2, 4, 4, 3)
    paths = save_completions(x, completions, 12, info, str(tmp_path / "c"))
    png = np.asarray(Image.open(paths[1]))
    tile = reporting.image_grid(x[:1], 4, pad=0)  # (64, 64, 3)
    h, w = tile.shape[:2]
    assert png.shape == (2 * (h + 2) + 2, 4 * (w + 2) + 2, 3)
    last = reporting.image_grid(completions[1, 1][None], 4, pad=0)
    top, left = 2 + 1 * (h + 2), 2 + 3 * (w + 2)  # example 1's second completion
    np.testing.assert_array_equal(png[top : top + h, left : left + w], last)


def test_build_model_fills_what_the_data_gives_and_refuses_what_the_model_cannot_take():
    """``build_model`` from hand-made ``DataInfo``: no data is read, no model is run."""
    from jaxar.runner import build_model

    def config(name, conditional=False, **model):
        c = jaxar_config.default()
        c.model_name, c.data.conditional = name, conditional
        c.model = ml_collections.ConfigDict(model)
        return c

    image = DataInfo("img", (4, 4, 1), 5, num_classes=3)
    plain = build_model(config("pixelcnn", features=4), image)  # unconditional data
    assert (plain.event_shape, plain.num_levels, plain.num_classes) == ((4, 4, 1), 5, 0)
    vq = build_model(config("vqvae"), image)  # a model without num_classes, unconditional
    assert vq.event_shape == (4, 4, 1)
    labelled = build_model(config("pixelcnn", conditional=True, features=4), image)
    assert labelled.num_classes == 3
    same = build_model(config("pixelcnn", conditional=True, features=4, num_classes=3), image)
    assert same.num_classes == 3  # the config may repeat what the data says
    with pytest.raises(ValueError, match="num_classes=5 in the config but the data img has 3"):
        build_model(config("pixelcnn", conditional=True, features=4, num_classes=5), image)
    with pytest.raises(ValueError, match="model vqvae takes no num_classes"):
        build_model(config("vqvae", conditional=True), image)

    tiny = models.tiny_spec("wavenet").hparams_for((12,))
    clip = DataInfo("wav", (12,), 7, kind="audio", sample_rate=8000)
    wavenet = build_model(config("wavenet", **tiny), clip)  # no image_shape to fill: skipped
    assert (wavenet.event_shape, wavenet.num_levels) == ((12,), 7)
    mels = DataInfo("wav", (12,), 7, kind="audio", sample_rate=8000, feature_shape=(3, 2),
                    feature_hop=4)  # fmt: skip
    vocoder = build_model(config("wavenet", **tiny), mels)
    assert (vocoder.hparams["local_features"], vocoder.hparams["local_hop"]) == (2, 4)
    again = build_model(config("wavenet", local_features=2, local_hop=4, **tiny), mels)
    assert again.hparams["local_features"] == 2
