"""Samplers draw from the model's distribution: a chi-square test of joint sample frequencies
against the exact probabilities ``exp(log_prob)`` of every event of a tiny event space, for every
autoregressive family and each of its sampling methods, with a fixed seed; and a power check
that the same test rejects wrong samplers (one PRNG key for every step; each step drawn from the
previous step's distribution).

Cached == naive (same key, same samples) is tested per model through ``jaxar.testing``; this
file checks what both are meant to equal.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxar import models, sampling

NUM_SAMPLES = 4000
P_MIN = 1e-4  # a correct sampler at the fixed seed must not be rejected at this level


def _families():
    out = []
    for name in models.names():
        role = "small" if models.tiny_shape(name, "small") else "grey"
        if isinstance(models.create_tiny(name, role), models.AutoregressiveModel):
            out.append((name, "small"))
    return out


# Tiny event spaces: every event of (shape, levels) is enumerated.
# PixelCNN++'s U-net needs 4x4 images: its test counts the joint of the first 5 dimensions
# (the first row and the first pixel of the next), whose probabilities are exact too: the
# product of their conditionals, which no later dimension changes.
SHAPES = {
    "small": {
        "wavenet": {"length": 4},
        "pixelcnn_pp": {"image_shape": (4, 4, 1)},
        None: {"image_shape": (2, 2, 1)},
    }
}
LEVELS = 3
PREFIX = 5


def _tiny(name, role):
    overrides = SHAPES[role].get(name, SHAPES[role][None])
    return models.create_tiny(name, role, num_levels=LEVELS, **overrides)


def _randomise(params, key, scale):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    )


def _setup(name, role):
    model = _tiny(name, role)
    params = _randomise(model.init(jax.random.key(0)), jax.random.key(1), 0.5)
    k = min(model.num_dims, PREFIX)
    events = np.array(list(itertools.product(range(LEVELS), repeat=k)), np.int32)
    full = np.zeros((len(events), model.num_dims), np.int32)
    full[:, :k] = events
    x = jnp.asarray(full.reshape(len(events), *model.event_shape))
    lp = np.asarray(model.log_prob(params, x, per_dim=True), np.float64)
    probs = np.exp(lp.reshape(len(events), -1)[:, :k].sum(axis=1))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-4)
    # The network is not (nearly) constant: the conditionals depend on the context, so a sampler
    # that ignores or misreads it is wrong in a way the frequencies show.
    assert probs.max() > 3.0 / len(probs), f"{name}: a near-uniform model tests no sampler"
    return model, params, probs


def _chi_square_p(samples, probs):
    """p-value of the samples' event frequencies under ``probs`` (events with an expected count
    under 5 pooled into one cell)."""
    flat = np.asarray(samples).reshape(len(samples), -1)
    flat = flat[:, : round(math.log(len(probs), LEVELS))]
    index = flat @ (LEVELS ** np.arange(flat.shape[1] - 1, -1, -1))
    counts = np.bincount(index, minlength=len(probs)).astype(np.float64)
    expected = probs / probs.sum() * len(flat)
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = float(np.sum((obs - exp) ** 2 / exp))
    return float(stats.chi2.sf(stat, len(obs) - 1))


@pytest.mark.parametrize("name,role", _families())
def test_samples_follow_the_exact_probabilities(name, role):
    model, params, probs = _setup(name, role)
    # The default sampler (cached where the model has one); the others are tested to give the
    # same samples from the same key (jaxar.testing.assert_cached_matches_naive).
    samples = model.sample(params, jax.random.key(7), NUM_SAMPLES)
    p = _chi_square_p(samples, probs)
    assert p > P_MIN, f"{name} {model.default_sample_method}: chi-square p = {p:.2e}"


class _SameKeyEveryStep:
    """A broken sampler: every step draws with the key of step 0."""

    def __init__(self, dist):
        self.dist = dist

    def __getattr__(self, name):
        return getattr(self.dist, name)

    def sample_step(self, key, params, *args):
        del key
        return self.dist.sample_step(jax.random.fold_in(jax.random.key(7), 0), params, *args)


class _PreviousStepParams(_SameKeyEveryStep):
    """A broken sampler: step i draws from the distribution of step i - 1 (off by one)."""

    def sample_step(self, key, params, *args):
        return self.dist.sample_step(key, params, *args)

    def step_params(self, out, step):
        return self.dist.step_params(out, jnp.maximum(step - 1, 0))


@pytest.mark.parametrize("broken", [_SameKeyEveryStep, _PreviousStepParams])
def test_the_frequency_test_rejects_a_wrong_sampler(broken):
    model, params, probs = _setup("pixelcnn", "small")
    dist = broken(model.distribution)
    forward = lambda x: model.apply(params, x)
    step_fn = sampling.naive_step_fn(forward, dist, model.event_shape)
    run = jax.jit(
        lambda key: sampling.scan_sample(step_fn, (), dist, key, NUM_SAMPLES, model.num_dims)[0]
    )
    p = _chi_square_p(run(jax.random.key(7)), probs)
    assert p < 1e-8, f"{broken.__name__}: chi-square p = {p:.2e}"


def test_when_is_fn_or_identity_and_compiles_to_a_loop_not_a_conditional():
    """``jaxar.sampling.when``: ``fn(state)`` where ``pred`` holds, else ``state`` unchanged,
    traced and jitted, as a while loop (XLA copies what a conditional's identity branch
    passes through)."""
    from jaxar.sampling import when

    state = {"a": jnp.arange(4.0), "b": jnp.int32(3)}
    fn = lambda s: {"a": s["a"] * 2, "b": s["b"] + 1}
    run = jax.jit(lambda pred, s: when(pred, fn, s))
    for pred, want in [(True, fn(state)), (False, state)]:
        got = run(jnp.bool_(pred), state)
        np.testing.assert_array_equal(got["a"], want["a"])
        assert int(got["b"]) == int(want["b"])
    text = run.lower(jnp.bool_(True), state).compile().as_text()
    assert " while(" in text and " conditional(" not in text
