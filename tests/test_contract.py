"""The model contract, checked for every registered model with no per-model test code.

Each factory registers its tiny sizes once (``jaxar.models.register(..., tiny=...)``); this
module builds every model at them and runs every check of :mod:`jaxar.testing`: causal in grey
and RGB (including no leak across the examples of a batch), normalised, cached == naive,
teacher-forced == full, and clear errors for bad input. A newly registered model is checked
here automatically. Autoencoders (not autoregressive) get the checks of their own contract.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxar import models
from jaxar.models.autoencoder import Autoencoder
from jaxar.testing import (
    assert_cached_matches_naive,
    assert_causal,
    assert_normalized,
    assert_teacher_forced_matches_full,
    compiled_sampler,
    invariant_slices,
    invariant_work,
    moved_arrays,
    randomize_params,
)

AUTOREGRESSIVE = [n for n in models.names() if not isinstance(models.create_tiny(n), Autoencoder)]
AUTOENCODERS = [n for n in models.names() if n not in AUTOREGRESSIVE]
ROLES = [
    (n, role)
    for n in AUTOREGRESSIVE
    for role in ("grey", "rgb")
    if models.tiny_shape(n, role) is not None
]


def _conditional(name) -> int:
    """Classes for the tiny conditional variant, where the model takes class labels."""
    return 3 if "num_classes" in models.hparam_names(name) else 0


def _setup(name, role="grey", num_levels=4, num_classes=0, seed=0):
    model = models.create_tiny(name, role, num_levels=num_levels, num_classes=num_classes)
    shapes = jax.eval_shape(model.init, jax.random.key(seed))  # nothing of init compiled
    params = randomize_params(shapes, jax.random.key(seed + 1), fan_in=True)
    x = jax.random.randint(jax.random.key(seed + 2), (1, *model.event_shape), 0, num_levels)
    cond = model.sample_cond(1, class_label=1) if num_classes else None
    return model, params, x, cond


def _assert_not_constant(model, params, x, cond):
    """The randomised network's output depends on its input (a constant network would pass
    most checks by construction)."""
    other = (x + 1) % model.num_levels
    a, b = (np.asarray(model.apply(params, v, cond)) for v in (x, other))
    assert np.abs(a - b).max() > 1e-3, f"{model.name}: the network ignores its input"


def test_every_registered_model_is_checked():
    assert {"pixelcnn", "gated_pixelcnn", "row_lstm", "diagonal_bilstm", "pixelcnn_pp"} <= set(
        AUTOREGRESSIVE
    )
    assert {"wavenet", "transformer"} <= set(AUTOREGRESSIVE) and AUTOENCODERS == ["vqvae"]


@pytest.mark.parametrize("name, role", ROLES)
def test_causal(name, role):
    model, params, x, cond = _setup(name, role, num_classes=_conditional(name))
    _assert_not_constant(model, params, x, cond)
    assert_causal(model, params, x[0], cond)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_normalized(name):
    shape = models.tiny_shape(name, "small")
    levels = 4 if 4 ** int(np.prod(shape)) <= 4096 else 2
    model, params, _, _ = _setup(name, "small", num_levels=levels)
    assert_normalized(model, params)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_cached_matches_naive_and_teacher_forced_matches_full(name):
    classes = _conditional(name)
    model, params, _, _ = _setup(name, num_classes=classes)
    cond = model.sample_cond(3)
    samples = assert_cached_matches_naive(model, params, jax.random.key(5), 3, cond)
    if "cached" in model.sample_methods:
        assert_teacher_forced_matches_full(model, params, samples, cond)


CACHED = [n for n in AUTOREGRESSIVE if "cached" in models.create_tiny(n).sample_methods]


@pytest.mark.parametrize("name", CACHED)
def test_cached_sampler_never_copies_the_events(name):
    """The compiled sampler updates the events being drawn in place: no ``copy`` of a
    ``(B, D)`` integer array (in any shape) anywhere in it. Written at the end of its own
    step, a step's values were not ordered after WaveNet's reads of the events that XLA fuses
    into its cache updates: 2 copies per step, ``O(D)`` each, so ``O(D ** 2)`` per sample.
    Kept flat for a step that reads an image, the write was fused twice (Gated PixelCNN and
    PixelCNN++: 4 per step), and the image models copied the result once to reshape it."""
    import math

    batch = 2
    model = models.create_tiny(name, num_levels=16)
    params = jax.eval_shape(model.init, jax.random.key(0))
    program, _ = compiled_sampler(model, params, batch, model.sample_cond(batch))
    copied = moved_arrays(program, "s32")
    events = batch * math.prod(model.event_shape)
    assert [s for s in copied if math.prod(s) == events] == [], copied


class Stepper:
    """A model whose sampler's step is ``body(state, x_flat, step)``, state ``(batch, 6)``
    (changed by every step); with ``weights``, ``body(state, x_flat, step, weights)`` and the
    weights carried in the sampler's state, passed on unchanged."""

    num_dims = 3

    def __init__(self, body, weights=None):
        self.body, self.weights = body, weights

    def cached_sampler(self, params, batch, cond=None, method="cached"):
        def step(state, x, t):
            s, w = state
            out = self.body(s, x, t) if w is None else self.body(s, x, t, w)
            return out, (s + 1.0, w)

        return (jnp.zeros((batch, 6)), self.weights), step


def test_invariant_slices_finds_what_a_step_slices_of_its_weights():
    """The checker sees a weight sliced inside a step, also under a jit and in a cond's
    branch; not a slice XLA hoists with its consumer, nor a gather, nor anything sliced of
    what changes from step to step (the state, the events)."""
    w = jnp.arange(24.0).reshape(4, 6)

    lax = jax.lax
    cases = {
        "whole": (lambda s, x, t: s @ w.T, []),
        "state": (lambda s, x, t: s[:, :2] + lax.dynamic_slice_in_dim(s, t, 2, 1), []),
        "row": (lambda s, x, t: s * w[1], [("slice", (4, 6), (1, 6))]),
        "derived": (lambda s, x, t: s * jnp.tanh(w)[1], [("slice", (4, 6), (1, 6))]),
        # hoisted with the product that reads it; a gather is hoisted alone
        "with its consumer": (lambda s, x, t: s * (w[1] * 2.0), []),
        "gather": (lambda s, x, t: s * w[jnp.array([1, 3])].sum(0), []),
        "jit": (lambda s, x, t: s * jax.jit(lambda: w[2:3])(), [("slice", (4, 6), (1, 6))]),
        "cond": (
            lambda s, x, t: lax.cond(t > 0, lambda v: v[0] * s, lambda v: s, w),
            [("slice", (4, 6), (1, 6))],
        ),
    }
    for what, (body, want) in cases.items():
        got = [(p, tuple(a), tuple(b)) for p, a, b in invariant_slices(Stepper(body), None, 2)]
        assert got == want, what


def test_invariant_work_finds_what_a_step_computes_from_its_weights():
    """The checker sees arithmetic on a weight alone, also under a jit and in a cond's branch;
    not what the step computes with its state, nor moved data, nor scalar index arithmetic."""
    w = jnp.arange(24.0).reshape(4, 6)

    lax = jax.lax
    cases = {
        "with the state": (lambda s, x, t: s @ w.T, []),
        "moved": (lambda s, x, t: s @ w.T.reshape(6, 4)[:, :2].reshape(2, 6).T, []),
        "index": (lambda s, x, t: jnp.take(s, 1, axis=1) * jnp.take(w, 2, axis=0)[1], []),
        "derived": (
            lambda s, x, t: s * jnp.tanh(w).sum(0),
            [("tanh", (4, 6)), ("reduce_sum", (6,))],
        ),
        "jit": (lambda s, x, t: s @ jax.jit(lambda: w * 2.0)().T, [("mul", (4, 6))]),
        "cond": (
            lambda s, x, t: lax.cond(t > 0, lambda v: s @ (v + 1.0).T, lambda v: s @ v.T, w),
            [("add", (4, 6))],
        ),
    }
    for what, (body, want) in cases.items():
        got = [(p, tuple(shape)) for p, shape in invariant_work(Stepper(body), None, 2)]
        assert got == want, (what, got)
    # Weights built before the loop and carried in the sampler's state are invariants too.
    carried = Stepper(lambda s, x, t, v: s * jnp.tanh(v).sum(0), weights=w)
    assert invariant_work(carried, None, 2) == [("tanh", (4, 6)), ("reduce_sum", (6,))]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_sampler_loops_compute_nothing_from_weights_alone(name, dtype):
    """No sampler's step computes from its weights alone: that work is done before the loop,
    whatever the compiler hoists. PixelCNN's, the Gated PixelCNN's and both PixelRNNs'
    masked convolutions multiplied their kernels by their masks inside the step, which the
    H200's compiler left in the loop (24 kernels a step in PixelCNN at batch 16). In bfloat16
    every model's step converted float32 weights (flax's dense layers in the Transformer: 17
    kernels a step on the H200 at batch 16)."""
    model = models.create_tiny(name, num_levels=16, dtype=dtype)
    params = model.init(jax.random.key(0))
    for method in [m for m in model.sample_methods if m != "naive"]:
        assert invariant_work(model, params, 2, model.sample_cond(2), method) == [], method


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_sampler_loops_slice_no_weight(name):
    """No sampler's step takes a slice of its weights that XLA leaves in the loop, a copy at
    every step. WaveNet's step sliced its stacked layers' kernels (31 copies a step in the
    paper model); PixelCNN's, the Row LSTM's and the Diagonal BiLSTM's masked convolutions
    sliced their masked kernels' rows (13 copies a step in a 12-block PixelCNN)."""
    model = models.create_tiny(name, num_levels=16)
    params = model.init(jax.random.key(0))
    for method in [m for m in model.sample_methods if m != "naive"]:
        assert invariant_slices(model, params, 2, model.sample_cond(2), method) == [], method


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_bad_input_is_one_clear_error(name):
    model, params, x, cond = _setup(name)
    levels, shape = model.num_levels, model.event_shape
    bad = {
        "shape": jnp.zeros((1, *shape[:-1], shape[-1] + 1), jnp.int32),
        "dtype": x.astype(jnp.float32),
        "too high": jnp.full_like(x, levels),
        "negative": jnp.full_like(x, -1),
    }
    for what, value in bad.items():
        with pytest.raises(ValueError, match=name) as err:
            model.log_prob(params, value, cond)
        assert "\n" not in str(err.value), what
    # Inside a jit, a batch closed over (so concrete) is checked the same way, and a good one
    # is scored as outside it.
    with pytest.raises(ValueError, match=f"{name}: expected values in"):
        jax.jit(lambda p: model.log_prob(p, bad["too high"], cond))(params)
    np.testing.assert_allclose(
        jax.jit(lambda p: model.log_prob(p, x, cond))(params),
        model.log_prob(params, x, cond), rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    with pytest.raises(ValueError, match="unconditional|cond"):
        model.log_prob(params, x, jnp.zeros((1,), jnp.int32))
    with pytest.raises(ValueError, match="sampling method"):
        model.sample(params, jax.random.key(0), 1, method="telepathy")


def test_assert_causal_catches_a_leak_across_the_batch():
    """A network that adds the batch mean of the input to its outputs passes the batched
    per-dimension check (every variant shares the statistic) but not the default check."""
    model, params, x, _ = _setup("pixelcnn")
    assert_causal(model, params, x[0])
    leaky_model = models.create_tiny("pixelcnn")  # a fresh instance: its own jit cache
    clean = leaky_model.apply

    def leaky(params, xs, cond=None, **kw):
        out = clean(params, xs, cond, **kw)
        levels = jnp.arange(out.shape[-1], dtype=jnp.float32)
        return out + jnp.mean(xs.astype(jnp.float32), axis=0)[..., None] * levels

    leaky_model.apply = leaky
    assert_causal(leaky_model, params, x[0], batch_check=False)  # hidden from the batched check
    with pytest.raises(AssertionError, match="leaks across the batch"):
        assert_causal(leaky_model, params, x[0])


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_autoencoder_contract(name):
    model = models.create_tiny(name)
    key = jax.random.key(0)
    params, state = model.init(key), model.objective().init_state(key)
    x = jax.random.randint(jax.random.key(1), (4, *model.event_shape), 0, model.num_levels)
    batch = {"x": x, "mask": jnp.array([1.0, 1.0, 1.0, 0.0])}
    loss, (new_state, metrics) = model.objective().loss(params, state, {"x": x}, key)
    assert np.isfinite(float(loss)) and jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    sums = model.objective().eval_sums(params, state, batch)
    assert float(sums["count"]) == 3.0
    assert model.objective().best_metric in model.objective().summarize(sums)
    variables = model.variables(params, state)
    codes = np.asarray(model.encode(variables, x))
    assert codes.shape == (4, *model.code_shape) and 0 <= codes.min() <= codes.max() < (
        model.num_codes
    )
    assert np.asarray(model.decode_mean(variables, codes)).shape == x.shape
    nll, mse = model.nll(variables, x)
    assert np.asarray(nll).shape == (4,) and np.all(np.isfinite(np.asarray(mse)))


IMAGE_MODELS = [n for n in AUTOREGRESSIVE if "image_shape" in models.hparam_names(n)]


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_defaults_fit_rgb_and_grey(name, shape):
    """Only image_shape and num_levels: the default widths split into colour groups, and a
    batch is scored (traced through the whole network; nothing compiled at full size)."""
    model = models.create(name, image_shape=shape, num_levels=256)
    params = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, *shape), jnp.int32)
    lp = jax.eval_shape(lambda p, v: model.log_prob(p, v, model.dummy_cond(2)), params, x)
    assert lp.shape == (2,) and lp.dtype == jnp.float32


@pytest.mark.parametrize("name", ["pixelcnn", "pixelcnn_pp"])
def test_equal_models_share_one_init_compilation(name):
    """``create`` builds a new model object each time (the runner, the CLI, every test); an
    equal network must reuse the compiled ``init`` (XLA takes 6-14 s for a tiny PixelCNN++),
    and a different one must not be handed it."""
    from jaxar.models import base, pixelcnn_pp

    jitted = pixelcnn_pp._jit_init if name == "pixelcnn_pp" else base._init_net
    hp = dict(image_shape=(4, 4, 1), num_levels=4, **models.tiny_spec(name).hparams_for((4, 4, 1)))
    key = jax.random.key(7)
    first = models.create(name, **hp).init(key)
    compiled = jitted._cache_size()
    again = models.create(name, **hp).init(key)
    assert jitted._cache_size() == compiled
    jax.tree.map(np.testing.assert_array_equal, again, first)
    other = {"num_mixtures": 3} if name == "pixelcnn_pp" else {"num_levels": 5}
    wider = models.create(name, **{**hp, **other}).init(key)
    assert jitted._cache_size() == compiled + 1
    assert [p.shape for p in jax.tree.leaves(wider)] != [p.shape for p in jax.tree.leaves(first)]
