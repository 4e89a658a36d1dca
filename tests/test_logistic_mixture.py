"""The discretized mixture of logistics: normalisation, exactness, stability, sampler fit."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxar.distributions import DiscretizedLogisticMixture


def _random_params(dist, batch, seed, scale=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, scale, (batch, dist.num_params))


def _extreme_params(dist, batch, seed):
    """Means far outside [-1, 1], log-scales from far below the clamp to huge, saturated
    coefficients and very peaked mixture weights."""
    rng = np.random.default_rng(seed)
    k, c = dist.num_mixtures, dist.channels
    logits = rng.choice([-80.0, 0.0, 60.0], (batch, k))
    means = rng.choice([-1e4, -30.0, -1.0, 0.0, 0.999, 1.0, 25.0, 3e5], (batch, c, k))
    log_scales = rng.choice([-50.0, -7.0, -3.0, 0.0, 5.0, 40.0, 300.0], (batch, c, k))
    coeffs = rng.choice([-100.0, -0.5, 0.0, 2.0, 100.0], (batch, dist.num_coeffs, k))
    rest = np.concatenate([means, log_scales, coeffs], axis=1).reshape(batch, -1)
    return np.concatenate([logits, rest], axis=1)


def _conditional_table(dist, params, channel, context):
    """``p(x_channel = v | context)`` for all v, float64: ``(batch, L)``.

    ``context`` holds the values of the other channels (only the earlier ones matter).
    """
    levels = np.arange(dist.num_levels)
    x = np.broadcast_to(np.asarray(context), (dist.num_levels, dist.channels)).copy()
    x[:, channel] = levels
    with jax.enable_x64(True):
        p = jnp.asarray(params, jnp.float64)
        per_dim = jax.jit(
            jax.vmap(
                lambda xv: dist.log_prob(p, jnp.broadcast_to(xv, (len(params), dist.channels)))
            )
        )(jnp.asarray(x, jnp.int32))  # (L, batch, C)
        assert per_dim.dtype == jnp.float64
        return np.exp(np.asarray(per_dim[..., channel])).T


def _numpy_joint(dist, params, x):
    """An independent float64 reference of ``log p(pixel)``: mixture of products of
    differences of logistic CDFs, edges to +-inf. ``params (P,)``, ``x (C,)``."""
    k, c, last = dist.num_mixtures, dist.channels, dist.num_levels - 1
    logits = params[:k]
    rest = params[k:].reshape(-1, k)
    means, log_scales, raw = rest[:c], np.maximum(rest[c : 2 * c], -7.0), np.tanh(rest[2 * c :])
    xc = 2.0 * np.asarray(x, np.float64) / last - 1.0
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))
    total = 0.0
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    for m in range(k):
        prob = weights[m]
        for ch in range(c):
            mean = means[ch, m]
            for n, (i, j) in enumerate(dist.coeff_pairs):
                if i == ch:
                    mean += raw[n, m] * xc[j]
            s = np.exp(log_scales[ch, m])
            up = 1.0 if x[ch] == last else sig((xc[ch] + 1.0 / last - mean) / s)
            lo = 0.0 if x[ch] == 0 else sig((xc[ch] - 1.0 / last - mean) / s)
            prob *= up - lo
        total += prob
    return np.log(total)


def test_parameter_layout():
    assert DiscretizedLogisticMixture(10).num_params == 100  # 10 per component for RGB
    assert DiscretizedLogisticMixture(5, channels=1).num_params == 15
    d = DiscretizedLogisticMixture(2, 256, 3)
    exactly = lambda message: f"^{re.escape(message)}$"  # the whole one-line message
    with pytest.raises(
        ValueError,
        match=exactly("expected parameters with last axis 20 (= 2 mixtures * (1 + 2*3 + 3)), "
                      "got shape (4, 21)"),
    ):  # fmt: skip
        d.log_prob(jnp.zeros((4, 21)), jnp.zeros((4, 3), jnp.int32))
    with pytest.raises(ValueError, match=exactly("num_mixtures must be >= 1, got 0")):
        DiscretizedLogisticMixture(0)
    # Its repr names it in the errors of the samplers that refuse top_p.
    name = "DiscretizedLogisticMixture(num_mixtures=2, num_levels=256, channels=3)"
    assert repr(d) == name
    noise = d.step_noise(jax.random.key(0), jnp.zeros((1, 20)))
    with pytest.raises(
        ValueError,
        match=exactly(f"top_p is for categorical outputs; {name} takes only temperature"),
    ):
        d.draw(jnp.zeros((1, 20)), noise, top_p=0.5)


def test_log_prob_refuses_a_wrong_channel_count_or_a_wrong_shape_each_alone():
    d = DiscretizedLogisticMixture(2, 256, 3)
    params = jnp.zeros((2, 3, 4, 20))
    expected = r"expected x of shape \(2, 3, 4, 3\) for parameters of shape \(2, 3, 4, 20\)"
    for x_shape in [(2, 3, 4, 1), (2, 3, 5, 3)]:  # channels alone, positions alone
        with pytest.raises(
            ValueError, match=expected + rf", got \({', '.join(map(str, x_shape))}\)"
        ):
            d.log_prob(params, jnp.zeros(x_shape, jnp.int32))


def test_the_default_is_8_bit_levels_and_sums_to_one_over_them():
    dist = DiscretizedLogisticMixture(3, channels=1)
    assert dist.num_levels == 256
    params = jnp.asarray(_random_params(dist, 4, seed=5), jnp.float32)
    x = jnp.arange(256, dtype=jnp.int32)[:, None, None]  # (256 levels, 1, C)
    lp = dist.log_prob(
        jnp.broadcast_to(params, (256, 4, dist.num_params)), jnp.broadcast_to(x, (256, 4, 1))
    )
    np.testing.assert_allclose(np.exp(np.asarray(lp, np.float64)).sum(axis=0)[:, 0], 1.0, atol=1e-5)


def test_two_levels_are_the_smallest_alphabet():
    from jaxar.distributions import Categorical

    assert Categorical(2).num_levels == 2  # binary images
    assert DiscretizedLogisticMixture(1, 2, 1).num_levels == 2
    for make in (Categorical, lambda n: DiscretizedLogisticMixture(1, n, 1)):
        with pytest.raises(ValueError, match="num_levels must be >= 2, got 1"):
            make(1)


def test_sampling_defaults_are_temperature_one_and_no_nucleus():
    """``draw``/``sample_step`` called without ``temperature``/``top_p`` draw from the model
    itself: the same values as with 1.0 given, and (power check) not those of 2.0."""
    from jaxar.distributions import Categorical

    key = jax.random.key(3)
    mix = DiscretizedLogisticMixture(4, 256, 3)
    params = jnp.asarray(_random_params(mix, 256, seed=4, scale=1.0), jnp.float32)
    noise = mix.step_noise(key, params)
    base = np.asarray(mix.draw(params, noise))
    np.testing.assert_array_equal(base, np.asarray(mix.draw(params, noise, 1.0, 1.0)))
    np.testing.assert_array_equal(base, np.asarray(mix.sample_step(key, params)))
    assert np.mean(base != np.asarray(mix.draw(params, noise, 2.0))) > 0.25

    cat = Categorical(16)
    logits = jax.random.normal(jax.random.key(5), (256, 16)) * 2.0
    np.testing.assert_array_equal(np.asarray(cat.shape_logits(logits)), np.asarray(logits))
    g = cat.step_noise(key, logits)
    want = np.asarray(jnp.argmax(g + logits, axis=-1))[:, None]
    np.testing.assert_array_equal(np.asarray(cat.draw(logits, g)), want)
    # With the defaults, sample_step is jax.random.categorical bit for bit (its docstring).
    np.testing.assert_array_equal(
        np.asarray(cat.sample_step(key, logits))[:, 0],
        np.asarray(jax.random.categorical(key, logits)),
    )
    assert np.mean(np.asarray(cat.draw(logits, g, 2.0)) != want) > 0.05


@pytest.mark.parametrize("kind", ["random", "extreme"])
@pytest.mark.parametrize("channels", [3, 1])
def test_every_conditional_sums_to_one_over_256_values(kind, channels):
    dist = DiscretizedLogisticMixture(4, 256, channels)
    make = _random_params if kind == "random" else _extreme_params
    params = make(dist, 16, seed=channels)
    rng = np.random.default_rng(0)
    for channel in range(channels):
        context = rng.integers(0, 256, channels)
        context[0] = 255 if kind == "extreme" else context[0]  # an edge value as context
        probs = _conditional_table(dist, params, channel, context)
        assert np.all(np.isfinite(probs))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_joint_over_all_pixels_sums_to_one_and_matches_reference():
    dist = DiscretizedLogisticMixture(3, num_levels=4, channels=3)
    params = _random_params(dist, 5, seed=1, scale=1.5)
    values = np.array(list(itertools.product(range(4), repeat=3)))  # all 64 pixels
    with jax.enable_x64(True):
        p = jnp.asarray(params, jnp.float64)
        per_dim = jax.jit(jax.vmap(lambda v: dist.log_prob(p, jnp.broadcast_to(v, (5, 3)))))(
            jnp.asarray(values, jnp.int32)
        )
        joint = np.asarray(per_dim.sum(-1))  # (64, 5)
    np.testing.assert_allclose(np.exp(joint).sum(0), 1.0, rtol=0, atol=1e-12)
    ref = np.array([[_numpy_joint(dist, params[b], v) for b in range(5)] for v in values])
    np.testing.assert_allclose(joint, ref, rtol=1e-9, atol=1e-12)


def test_edges_and_float32_stability_for_extreme_parameters():
    dist = DiscretizedLogisticMixture(4, 256, 3)
    params = _extreme_params(dist, 64, seed=3)
    x = np.random.default_rng(1).choice([0, 1, 127, 254, 255], (64, 3))
    with jax.enable_x64(True):
        ref = np.asarray(jax.jit(dist.log_prob)(jnp.asarray(params, jnp.float64), jnp.asarray(x)))
    p32 = jnp.asarray(params, jnp.float32)
    got = jax.jit(dist.log_prob)(p32, jnp.asarray(x, jnp.int32))
    assert got.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(got)))
    assert np.all(np.isfinite(ref))
    # float32 agrees with float64 to float32 precision (values can be as low as -1e7).
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-4)
    grads = jax.jit(jax.grad(lambda q: dist.log_prob(q, jnp.asarray(x, jnp.int32)).sum()))(p32)
    assert np.all(np.isfinite(np.asarray(grads)))


def test_edge_bins_are_exact_tails():
    # One grey component: P(0) = sigmoid((-1 + h - mu) / s), P(255) = 1 - sigmoid((1 - h - mu)/s).
    dist = DiscretizedLogisticMixture(1, 256, 1)
    mu, log_s = 0.3, -2.0
    params = np.array([[0.0, mu, log_s]])
    h = 1.0 / 255
    s = np.exp(log_s)
    with jax.enable_x64(True):
        lp = lambda v: float(
            jax.jit(dist.log_prob)(jnp.asarray(params, jnp.float64), jnp.asarray([[v]]))[0, 0]
        )
        np.testing.assert_allclose(lp(0), -np.logaddexp(0.0, -(-1.0 + h - mu) / s), rtol=1e-13)
        np.testing.assert_allclose(lp(255), -np.logaddexp(0.0, (1.0 - h - mu) / s), rtol=1e-13)


def _chi_square(counts, probs, min_expected=5.0):
    """Pearson's statistic after pooling the cells with small expected counts; and its dof."""
    n = counts.sum()
    expected = probs * n
    order = np.argsort(expected)
    small = expected[order] < min_expected
    pooled_e = [expected[order][small].sum()] if small.any() else []
    pooled_c = [counts[order][small].sum()] if small.any() else []
    e = np.concatenate([expected[order][~small], pooled_e])
    c = np.concatenate([counts[order][~small], pooled_c])
    return float(((c - e) ** 2 / e).sum()), len(e) - 1


@pytest.mark.parametrize("channels,levels", [(3, 4), (1, 256), (3, 8)])
def test_sampler_agrees_with_likelihood(channels, levels):
    """Chi-square of 40k sampled pixels against exp(log_prob) of every pixel value."""
    dist = DiscretizedLogisticMixture(3, levels, channels)
    params = _random_params(dist, 1, seed=7, scale=1.0)[0]
    params[dist.num_mixtures + channels * 3 :] *= 3.0  # strong channel coefficients
    n = 40_000
    draws = jax.jit(dist.sample_step)(
        jax.random.key(0), jnp.broadcast_to(jnp.asarray(params, jnp.float32), (n, len(params)))
    )
    assert draws.shape == (n, channels) and draws.dtype == jnp.int32
    draws = np.asarray(draws)
    values = np.array(list(itertools.product(range(levels), repeat=channels)))
    index = np.ravel_multi_index(draws.T, (levels,) * channels)
    counts = np.bincount(index, minlength=len(values)).astype(np.float64)

    def probs_of(prm):
        p = jnp.broadcast_to(jnp.asarray(prm, jnp.float32), (len(values), len(prm)))
        return np.exp(np.asarray(jax.jit(dist.log_prob)(p, jnp.asarray(values, jnp.int32)).sum(-1)))

    probs = probs_of(params)
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-4)
    stat, dof = _chi_square(counts, probs / probs.sum())
    # Under the null the statistic is ~ chi2(dof): mean dof, sd sqrt(2 dof). Bound at 6 sd.
    bound = dof + 6.0 * np.sqrt(2.0 * dof)
    assert stat < bound, (stat, dof)
    # Power: the same samples are rejected against a slightly different distribution.
    wrong = params.copy()
    wrong[dist.num_mixtures : dist.num_mixtures + channels * 3] += 0.15  # shift the means
    wrong_stat, _ = _chi_square(counts, probs_of(wrong) / probs_of(wrong).sum())
    assert wrong_stat > bound, (wrong_stat, bound)


def test_step_api_matches_log_prob():
    dist = DiscretizedLogisticMixture(2, 16, 3)
    params = jnp.asarray(_random_params(dist, 2 * 3 * 4, seed=2), jnp.float32).reshape(2, 3, 4, -1)
    x = jax.random.randint(jax.random.key(0), (2, 3, 4, 3), 0, 16)
    step = jnp.asarray(7, jnp.int32)  # pixel (1, 3)
    sp = dist.step_params(params, step)
    np.testing.assert_array_equal(np.asarray(sp), np.asarray(params[:, 1, 3]))
    np.testing.assert_allclose(
        np.asarray(jax.jit(dist.step_log_prob)(sp, x[:, 1, 3])),
        np.asarray(jax.jit(dist.log_prob)(params, x)[:, 1, 3].sum(-1)),
        rtol=1e-6,
    )
    assert dist.dims_per_step == 3
