"""Causal Transformer: causality, exact normalisation, KV-cached decode == full forward,
cached == naive sampling, conditioning, bfloat16, hparam validation, a short run of the runner."""

import itertools
import math
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxar
from jaxar import config as jaxar_config
from jaxar import train
from jaxar.models import transformer as transformer_module
from jaxar.models.transformer import Transformer
from jaxar.nn import Dense
from jaxar.nn.decode import DECODE_WEIGHTS
from jaxar.testing import (
    assert_cached_matches_naive,
    assert_causal,
    assert_normalized,
    assert_teacher_forced_matches_full,
)


def tiny(image_shape, num_levels=4, **kw):
    hp = {**jaxar.models.tiny_spec("transformer").hparams, **kw}
    return jaxar.create("transformer", image_shape=image_shape, num_levels=num_levels, **hp)


def make(image_shape, num_levels=4, seed=0, scale=0.5, **kw):
    """A tiny model and random parameters, every bias, norm and embedding nonzero (normal with
    standard deviation ``scale``). The shapes come from tracing ``init`` and the values from
    NumPy, so no initialiser is compiled: on the shared CPU that keeps these tests in seconds."""
    model = tiny(image_shape, num_levels, **kw)
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, scale, s.shape), s.dtype), shapes)
    return model, params


# ---------------------------------------------------------------------------- causality
def test_causal_every_dimension_rgb():
    model, params = make((2, 2, 3))
    x = jax.random.randint(jax.random.key(2), model.event_shape, 0, 4)
    assert_causal(model, params, x)


def test_causal_grey_class_conditional():
    model, params = make((3, 3, 1), num_classes=3)
    x = jax.random.randint(jax.random.key(3), model.event_shape, 0, 4)
    assert_causal(model, params, x, jnp.array([2], jnp.int32))


def test_causality_check_detects_an_unmasked_attention(monkeypatch):
    monkeypatch.setattr(transformer_module, "causal_mask", lambda n: np.ones((n, n), bool))
    model, params = make((2, 2, 1))
    x = jax.random.randint(jax.random.key(4), model.event_shape, 0, 4)
    with pytest.raises(AssertionError, match="leaks"):
        assert_causal(model, params, x)


# ---------------------------------------------------------------------------- likelihood
def test_normalised_binary_2x2():
    model, params = make((2, 2, 1), num_levels=2)
    xs = jnp.array(list(itertools.product([0, 1], repeat=4)), jnp.int32).reshape(16, 2, 2, 1)
    assert abs(float(jax.nn.logsumexp(model.log_prob(params, xs)))) < 1e-5
    assert_normalized(model, params)


def test_normalised_rgb_pixel_and_class_conditional():
    model, params = make((1, 1, 3), num_levels=4)
    assert_normalized(model, params)
    model, params = make((1, 2, 1), num_levels=5, num_classes=3)
    assert_normalized(model, params, jnp.array([1], jnp.int32))


def test_per_dim_sums_to_joint_and_bits_per_dim():
    model, params = make((2, 3, 3))
    x = jax.random.randint(jax.random.key(5), (2, 2, 3, 3), 0, 4)
    per_dim = model.log_prob(params, x, per_dim=True)
    assert per_dim.shape == (2, 2, 3, 3) and per_dim.dtype == jnp.float32
    joint = model.log_prob(params, x)
    np.testing.assert_allclose(per_dim.sum(axis=(1, 2, 3)), joint, rtol=1e-6)
    np.testing.assert_allclose(
        model.bits_per_dim(params, x), -joint / (18 * math.log(2)), rtol=1e-6
    )


# ---------------------------------------------------------------------------- cached decode
@pytest.mark.parametrize(
    "shape, levels, num_classes", [((2, 3, 3), 5, 0), ((3, 4, 1), 16, 3)], ids=["rgb", "codes"]
)
def test_cached_step_teacher_forced_equals_full_forward(shape, levels, num_classes):
    model, params = make(shape, levels, num_layers=3, num_classes=num_classes, scale=0.3)
    x = jax.random.randint(jax.random.key(7), (2, *shape), 0, levels)
    cond = jnp.array([0, num_classes - 1], jnp.int32) if num_classes else None
    # Every position of both examples, within 1e-5 of the largest logit.
    assert_teacher_forced_matches_full(model, params, x, cond)


def test_cache_layout():
    model, params = make((2, 3, 3), num_layers=2, num_heads=2, embed_dim=8)
    cache = model.init_cache(params, 5)
    assert set(cache) == {"cache"}  # no weights built before the loop: none derived
    assert set(cache["cache"]) == {"block0", "block1"}
    for layer in cache["cache"].values():
        assert set(layer["attn"]) == {"key", "value"}
        for buf in layer["attn"].values():
            assert buf.shape == (10, 18, 4) and buf.dtype == jnp.float32  # (B * heads, D, d)
            assert not bool(jnp.any(buf))
    # One step writes its own row of every buffer and no other.
    x_flat = jnp.ones((5, 18), jnp.int32)
    _, cache = jax.jit(model.cached_step)(params, cache, x_flat, jnp.int32(3))
    for buf in jax.tree.leaves(cache):
        written = np.flatnonzero(np.abs(np.asarray(buf)).sum(axis=(0, 2)))
        np.testing.assert_array_equal(written, [3])


def test_decode_step_attends_one_query_not_the_full_square():
    """The step's program has no (D, D) score matrix (the full forward's does): one query
    against the D cached keys, O(D) attention per step."""
    model, params = make((2, 3, 3))
    d = model.num_dims
    cache = model.init_cache(params, 2)
    step = str(jax.make_jaxpr(model.cached_step)(params, cache, jnp.zeros((2, d), jnp.int32), 5))
    full = str(jax.make_jaxpr(model.apply)(params, jnp.zeros((2, *model.event_shape), jnp.int32)))
    square = re.compile(rf"\[[0-9,]*\b{d},{d}\]")
    assert square.search(full) and not square.search(step)
    assert re.search(rf"f32\[4,1,{d}\]", step)  # (batch * heads, 1 query, D keys)


@pytest.mark.parametrize("batch", [1, 3])
def test_sampler_updates_the_caches_in_place(batch):
    """Inside the sampler's loop no instruction copies or transposes a whole key or value
    buffer: each step writes its position in place and reads the buffers as they lie (with a
    (B, heads, D, d) layout and a batch of one, XLA copied whole buffers at every step)."""
    model, params = make((2, 3, 3), num_layers=2, num_heads=2, embed_dim=8)
    sample = jax.jit(lambda p, key: model.sample(p, key, batch))
    hlo = sample.lower(params, jax.random.key(0)).compile().as_text()
    body = hlo[: hlo.index("\nENTRY")]  # every computation but the entry (which zeroes them)
    whole = re.compile(r"= f32\[[0-9,]*\b18,4\]\{[0-9,]*\} (\S+)\(")
    ops = [m.group(1) for m in whole.finditer(body)]
    assert "fusion" in ops, ops  # the in-place updates: the check sees whole buffers
    assert "copy" not in ops and "transpose" not in ops, ops
    assert not re.search(r"= f32\[[0-9,]*\b4,18\]\{", body)  # no key buffer transposed


@pytest.mark.parametrize(
    "shape, levels, num_classes", [((2, 2, 3), 4, 0), ((3, 3, 1), 32, 4)], ids=["rgb", "codes"]
)
def test_cached_and_naive_samples_identical(shape, levels, num_classes):
    model, params = make(shape, levels, num_classes=num_classes, scale=0.3)
    cond = jnp.array([0, 3, 1], jnp.int32) if num_classes else None
    # Same samples from the same key, and log_prob(samples) == the drawn log-probabilities.
    samples = assert_cached_matches_naive(model, params, jax.random.key(9), 3, cond)
    assert samples.shape == (3, *shape) and samples.dtype == jnp.int32
    assert int(samples.min()) >= 0 and int(samples.max()) < levels
    assert model.sample_methods == ("cached", "naive") and model.default_sample_method == "cached"


def test_sampled_log_prob_matches_log_prob_and_keys_differ():
    model, params = make((3, 3, 1), scale=0.3)
    a, logp = model.sample(params, jax.random.key(0), 4, with_log_prob=True)
    assert logp.shape == (4,) and logp.dtype == jnp.float32
    np.testing.assert_allclose(model.log_prob(params, a), logp, rtol=1e-5)
    b = model.sample(params, jax.random.key(1), 4)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------------------- conditioning
def test_class_label_changes_logits_from_the_first_position():
    model, params = make((2, 2, 1), num_classes=4)
    x = jnp.zeros((2, 2, 2, 1), jnp.int32)
    logits = jax.jit(model.apply)(params, x, jnp.array([0, 3], jnp.int32)).reshape(2, 4, 4)
    diff = jnp.abs(logits[0] - logits[1]).max(axis=-1)
    assert float(diff.min()) > 1e-3, diff  # every position, position 0 (no pixels seen) too


# ---------------------------------------------------------------------------- dtypes, dropout
def test_bfloat16_compute_float32_params_and_likelihood():
    model, params = make((2, 2, 3), dtype="bfloat16", scale=0.3)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    x = jax.random.randint(jax.random.key(1), (2, 2, 2, 3), 0, 4)
    assert jax.jit(model.apply)(params, x).dtype == jnp.bfloat16
    lp = model.log_prob(params, x)
    assert lp.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(lp)))
    f32 = jaxar.create("transformer", **dict(model.hparams, dtype="float32"))
    np.testing.assert_allclose(lp, f32.log_prob(params, x), rtol=0.05)
    cache = model.init_cache(params, 2)
    assert all(buf.dtype == jnp.bfloat16 for buf in jax.tree.leaves(cache))
    samples, logp = model.sample(params, jax.random.key(0), 2, with_log_prob=True)
    assert int(samples.min()) >= 0 and int(samples.max()) < 4
    assert logp.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logp)))


def test_dropout_only_when_training():
    model, params = make((2, 2, 1), dropout=0.5)
    x = jax.random.randint(jax.random.key(1), (2, 2, 2, 1), 0, 4)
    evaluated = model.log_prob(params, x)
    np.testing.assert_array_equal(evaluated, model.log_prob(params, x))
    train_lp = jax.jit(lambda x, rng: model.log_prob(params, x, train=True, rng=rng))
    a, b = train_lp(x, jax.random.key(2)), train_lp(x, jax.random.key(3))
    assert not np.allclose(a, evaluated) and not np.allclose(a, b)


# ---------------------------------------------------------------------------- contract
def test_registered_with_every_hparam():
    assert "transformer" in jaxar.models.names()
    model = jaxar.create("transformer", image_shape=(4, 4, 3), num_levels=8)
    assert isinstance(model, Transformer) and model.num_dims == 48
    assert model.hparams["image_shape"] == (4, 4, 3)
    assert set(model.hparams) == {
        "image_shape",
        "num_levels",
        "num_classes",
        "num_layers",
        "num_heads",
        "embed_dim",
        "mlp_ratio",
        "dropout",
        "dtype",
    }


@pytest.mark.parametrize(
    "hp, match",
    [
        (dict(image_shape=(4, 4)), "image_shape"),
        (dict(image_shape=(0, 4, 1)), "image_shape"),
        (dict(embed_dim=10, num_heads=4), r"embed_dim \(10\) must be divisible by num_heads"),
        (dict(num_heads=0), "num_heads"),
        (dict(num_layers=0), "num_layers"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(num_levels=1), "num_levels"),
        (dict(num_classes=-1), "num_classes"),
        (dict(mlp_ratio=0.0), "mlp_ratio"),
        (dict(dropout=1.0), "dropout"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_bad_hparams(hp, match):
    with pytest.raises(ValueError, match=match):
        jaxar.create("transformer", **hp)


def test_bad_input():
    model, params = make((2, 2, 1), num_classes=3)
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, 2, 2, 1\)"):
        model.log_prob(params, jnp.zeros((1, 2, 2), jnp.int32), jnp.zeros((1,), jnp.int32))
    with pytest.raises(ValueError, match="expected cond"):
        model.log_prob(params, jnp.zeros((1, 2, 2, 1), jnp.int32))


# ---------------------------------------------------------------------------- runner
def test_short_run_on_digits(tmp_path):
    c = jaxar_config.default()
    c.data.name = "digits"
    c.model_name = "transformer"
    c.model = jaxar_config.ml_collections.ConfigDict(
        dict(num_layers=1, num_heads=2, embed_dim=16, mlp_ratio=2.0)
    )
    c.batch_size = 16
    c.eval_batch_size = 100  # divides over the 4 fake devices; 297 test images
    c.num_steps = 4
    c.log_every = 2
    c.eval_every = 4
    c.checkpoint_every = 4
    c.optim.warmup_steps = 1
    c.optim.learning_rate = 1e-2
    c.num_samples = 2  # the final sample grid, through the cached sampler
    metrics = train.train_and_evaluate(c, str(tmp_path))
    bpd = metrics["test/bits_per_dim"]
    # Better than the uniform model over 17 levels (log2 17 = 4.09 bits/dim): it learned.
    assert 0.0 < bpd < math.log2(17) - 0.3, metrics


def test_dense_has_flax_parameters_and_values_and_reads_its_decode_weights():
    """jaxar's Dense has flax's Dense's and DenseGeneral's parameters (names, shapes, initial
    values: checkpoints load either way) and outputs; its decode path reads the weights of
    the decode_weights collection, converted before a sampler's loop."""
    key = jax.random.key(3)
    x3, x4 = jax.random.normal(key, (2, 5, 8)), jax.random.normal(key, (2, 5, 2, 4))
    bf16 = jnp.bfloat16
    cases = [
        (Dense(16), nn.Dense(16), x3),
        (Dense((3, 2, 4)), nn.DenseGeneral((3, 2, 4)), x3),
        (Dense(8, axis=(-2, -1)), nn.DenseGeneral(8, axis=(-2, -1)), x4),
        (Dense(8, dtype=bf16), nn.Dense(8, dtype=bf16), x3),
        (Dense(8, use_bias=False, dtype=bf16), nn.Dense(8, use_bias=False, dtype=bf16), x3),
    ]
    for ours, flax_layer, x in cases:
        variables = flax_layer.init(key, x)
        chex.assert_trees_all_equal(ours.init(key, x), variables)
        want = flax_layer.apply(variables, x)
        for decode in (False, True):
            got = ours.apply(variables, x, decode)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
    layer = Dense(4, dtype=bf16)
    variables = layer.init(key, x3)
    _, built = layer.apply(variables, x3, True, mutable=[DECODE_WEIGHTS])
    assert {k: v.dtype for k, v in built[DECODE_WEIGHTS].items()} == {"kernel": bf16, "bias": bf16}
    stored = {"kernel": jnp.zeros((8, 4), bf16), "bias": jnp.ones((4,), bf16)}
    got = layer.apply({**variables, DECODE_WEIGHTS: stored}, x3, True)
    np.testing.assert_array_equal(np.asarray(got, np.float32), 1.0)  # read, not rebuilt
    full = layer.apply({**variables, DECODE_WEIGHTS: stored}, x3)  # the full path ignores them
    np.testing.assert_array_equal(np.asarray(full), np.asarray(layer.apply(variables, x3)))
