"""WaveNet: receptive field, causality, exact likelihood, fast generation agreeing with the full
model, conditioning validation, mu-law."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxar
from jaxar.distributions import mu_law_decode, mu_law_encode
from jaxar.nn.wavenet import CausalConv1D, layers_to_cover, receptive_field
from jaxar.testing import (
    assert_teacher_forced_matches_full,
    invariant_slices,
    randomize_params,
)

# The registered tiny sizes, over a longer clip with more levels.
TINY = dict(length=24, num_levels=16, **jaxar.models.tiny_spec("wavenet").hparams)


def _model(**kw):
    return jaxar.create("wavenet", **{**TINY, **kw})


def _params(model, scale=0.5):
    """Random weights, biases included (init's zero biases would hide a decode path that drops
    one); the network they give is far from constant."""
    p = randomize_params(model.init(jax.random.key(0)), jax.random.key(9), scale)
    x = jax.random.randint(jax.random.key(3), (2, model.event_shape[0]), 0, model.num_levels)
    logp = np.asarray(jax.nn.log_softmax(model.apply(p, x, _cond(model, 2))))
    assert np.ptp(logp, axis=(0, 1)).max() > 0.5, "the network under test is (nearly) constant"
    return p


def _cond(model, batch, seed=7):
    cond = {}
    if model.num_classes:
        cond["label"] = jnp.arange(batch, dtype=jnp.int32) % model.num_classes
    if model.local_features:
        shape = (batch, model.num_frames, model.local_features)
        cond["features"] = jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    return cond or None


CONDITIONINGS = [
    dict(),
    dict(num_classes=3),
    dict(local_features=5, local_hop=4),
    dict(num_classes=3, local_features=5, local_hop=4, upsample="transposed", local_channels=6),
]


# ------------------------------------------------------------------ receptive field
def test_receptive_field_of_one_cycle_of_ten():
    assert receptive_field(3, [2**i for i in range(10)]) == 2047
    assert receptive_field(2, [1, 2, 4]) == 8
    assert receptive_field(3, []) == 1


def test_layers_to_cover():
    assert layers_to_cover(2047, 3) == 10
    assert layers_to_cover(2048, 3) == 11
    assert layers_to_cover(16000, 3) == 13  # one second at 16 kHz
    assert layers_to_cover(1, 3) == 0
    for span in range(1, 300):
        n = layers_to_cover(span, 2)
        assert receptive_field(2, [2**i for i in range(n)]) >= span
        assert n == 0 or receptive_field(2, [2**i for i in range(n - 1)]) < span


def test_receptive_field_bad_input():
    with pytest.raises(ValueError, match="kernel_size"):
        layers_to_cover(100, 1)
    with pytest.raises(ValueError, match="span"):
        layers_to_cover(0, 3)
    with pytest.raises(ValueError, match="dilations"):
        receptive_field(3, [1, 0])


def test_model_receptive_field_matches_measured_dependence():
    """The logit at t depends on exactly the receptive_field samples x_{t-rf} .. x_{t-1}."""
    m = _model(length=20, num_cycles=1, layers_per_cycle=3, kernel_size=2)
    rf = m.receptive_field
    assert rf == 8
    p = _params(m)
    x = np.asarray(jax.random.randint(jax.random.key(1), (20,), 0, 16), np.int32)
    xs = np.repeat(x[None], 21, axis=0)  # row j + 1 changes position j
    xs[np.arange(1, 21), np.arange(20)] = (x + 5) % 16
    last = np.asarray(m.apply(p, jnp.asarray(xs))[:, -1])
    seen = np.flatnonzero(np.abs(last[1:] - last[0]).max(axis=-1) > 0)
    np.testing.assert_array_equal(seen, np.arange(19 - rf, 19))


# ------------------------------------------------------------------ causal conv
@pytest.mark.parametrize("k, d", [(3, 4), (2, 1), (2, 3), (1, 1)])
def test_causal_conv_step_path_equals_full_path(k, d):
    """The full path against the taps written out, and the decode path (its own tap lines)
    against the full one; kernel 2 is the layer's default, 1 a 1x1 convolution without lines."""
    conv = CausalConv1D(5, kernel_size=k, dilation=d)
    x = jax.random.normal(jax.random.key(0), (2, 30, 3), jnp.float32)
    params = conv.init(jax.random.key(1), x)["params"]
    full = conv.apply({"params": params}, x)
    # The left padding: the output at t reads x_t, x_{t-d}, ..., x_{t-(k-1)d} only.
    kernel, want = params["kernel"], params["bias"]
    for j in range(k):  # tap j multiplies x_{t-(k-1-j)d}
        shift = (k - 1 - j) * d
        want = want + jnp.pad(x, ((0, 0), (shift, 0), (0, 0)))[:, :30] @ kernel[j]
    np.testing.assert_allclose(full, want, rtol=1e-5, atol=1e-5)

    assert conv.cache_length == d * (k - 1)  # past inputs
    for xb in (x, x[:1]):
        _, cache = conv.apply({"params": params}, xb[:, 0], jnp.int32(0), mutable=["cache"])
        if k == 1:
            assert not cache.get("cache")
        else:
            assert cache["cache"]["lines"].shape == (d, len(xb), (k - 1) * 3)  # (d, B, (k-1) C)
        cache = jax.tree.map(jnp.zeros_like, cache.get("cache", {}))

        def body(cache, t, xb=xb):
            y, v = conv.apply({"params": params, "cache": cache}, xb[:, t], t, mutable=["cache"])
            return v.get("cache", {}), y

        _, ys = lax.scan(body, cache, jnp.arange(30))
        np.testing.assert_allclose(jnp.moveaxis(ys, 0, 1), full[: len(xb)], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ causality, likelihood
@pytest.mark.parametrize("kw", CONDITIONINGS[::3])
def test_causality(kw):
    """Changing x_t changes no logit at t' <= t (and does change a later one)."""
    m = _model(**kw)
    p = _params(m)
    cond = _cond(m, 1)
    x = jax.random.randint(jax.random.key(1), (1, 24), 0, 16).astype(jnp.int32)
    base = m.apply(p, x, cond)
    for t in (0, 5, 23):
        x2 = x.at[0, t].set((x[0, t] + 7) % 16)
        out = m.apply(p, x2, cond)
        np.testing.assert_array_equal(out[:, : t + 1], base[:, : t + 1])
        if t < 23:
            assert not np.allclose(out[:, t + 1], base[:, t + 1])


def test_exact_normalisation_on_a_tiny_case():
    """sum_x p(x) = 1 over all 3^4 sequences (with conditioning)."""
    m = _model(length=4, num_levels=3, num_classes=2, local_features=2, local_hop=2)
    p = _params(m)
    xs = jnp.asarray(list(itertools.product(range(3), repeat=4)), jnp.int32)
    cond = {
        "label": jnp.ones((len(xs),), jnp.int32),
        "features": jnp.broadcast_to(jnp.asarray([[0.5, -1.0], [2.0, 0.3]]), (len(xs), 2, 2)),
    }
    total = np.exp(np.asarray(m.log_prob(p, xs, cond), np.float64)).sum()
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-5)
    bpd = m.bits_per_dim(p, xs[:2], jax.tree.map(lambda a: a[:2], cond))
    assert bpd.shape == (2,) and np.all(np.asarray(bpd) > 0)


# ------------------------------------------------------------------ fast generation
@pytest.mark.parametrize("kw", CONDITIONINGS)
def test_cached_step_equals_teacher_forced_forward(kw):
    """The fast generator fed the true previous samples gives the full model's logits."""
    m = _model(**kw)
    p = _params(m)
    cond = _cond(m, 2)
    x = jax.random.randint(jax.random.key(1), (2, 24), 0, 16).astype(jnp.int32)
    assert_teacher_forced_matches_full(m, p, x, cond)


@pytest.mark.parametrize("kw", CONDITIONINGS[::3])
def test_naive_and_cached_sampling_agree(kw):
    m = _model(**kw)
    p = _params(m)
    cond = _cond(m, 3)
    a, la = m.sample(p, jax.random.key(5), 3, cond, method="cached", with_log_prob=True)
    b, lb = m.sample(p, jax.random.key(5), 3, cond, method="naive", with_log_prob=True)
    assert a.shape == (3, 24) and a.dtype == jnp.int32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    # The sampler's log-probability is the model's likelihood of what it drew.
    np.testing.assert_allclose(la, m.log_prob(p, a, cond), rtol=1e-5)
    assert m.default_sample_method == "cached"


@pytest.mark.parametrize("kw", CONDITIONINGS[::3])
@pytest.mark.parametrize("method", ["cached", "pallas"])
def test_sampler_step_slices_no_weight(kw, method):
    """Both samplers' loop bodies read every weight, and the label's conditioning, whole:
    their layouts are built before the loop. XLA leaves a slice that the step's products read
    inside the loop; on the paper WaveNet the weights sliced inside the step were 2 MB copied
    per step, about half of a batch-1 step on CPU (BENCHMARKS.md)."""
    m = _model(**kw)
    assert invariant_slices(m, m.init(jax.random.key(0)), 2, _cond(m, 2), method) == []


# ------------------------------------------------------------------ conditioning checks
def test_cond_validation():
    m = _model(num_classes=3, local_features=5, local_hop=4)
    good = _cond(m, 2)
    x = jnp.zeros((2, 24), jnp.int32)
    m.check_input(x, good)
    with pytest.raises(ValueError, match="got None"):
        m.check_input(x, None)
    with pytest.raises(ValueError, match="keys"):
        m.check_input(x, {"label": good["label"]})
    with pytest.raises(ValueError, match=r"\(2, 6, 5\)"):
        m.check_input(x, {**good, "features": jnp.zeros((2, 5, 5), jnp.float32)})
    with pytest.raises(ValueError, match="float"):
        m.check_input(x, {**good, "features": jnp.zeros((2, 6, 5), jnp.int32)})
    with pytest.raises(ValueError, match="class labels"):
        m.check_input(x, {**good, "label": jnp.asarray([0, 3], jnp.int32)})
    with pytest.raises(ValueError, match="dict"):
        m.check_input(x, good["label"])
    with pytest.raises(ValueError, match="unconditional"):
        _model().check_input(x, good)
    # Global conditioning only: a bare label array is accepted too.
    _model(num_classes=3).check_input(x, good["label"])


def test_cond_from_batch():
    m = _model(num_classes=3, local_features=5, local_hop=4)
    batch = {"x": 0, "label": 1, "features": 2, "mask": 3}
    assert m.cond_from_batch(batch) == {"label": 1, "features": 2}
    assert _model().cond_from_batch(batch) is None
    with pytest.raises(ValueError, match="features"):
        m.cond_from_batch({"x": 0, "label": 1})


def test_factory_validation():
    with pytest.raises(ValueError, match="multiple of local_hop"):
        _model(local_features=4, local_hop=5)
    with pytest.raises(ValueError, match="gate_channels"):
        _model(gate_channels=7)
    with pytest.raises(ValueError, match="upsample"):
        _model(local_features=4, local_hop=4, upsample="linear")
    with pytest.raises(ValueError, match=r"shape \(batch, 24\)"):
        _model().log_prob(_model().init(jax.random.key(0)), jnp.zeros((2, 23), jnp.int32))


# ------------------------------------------------------------------ mu-law
def test_mu_law_round_trip():
    levels = jnp.arange(256, dtype=jnp.int32)
    np.testing.assert_array_equal(mu_law_encode(mu_law_decode(levels)), levels)
    audio = jnp.linspace(-1.0, 1.0, 1001, dtype=jnp.float32)
    back = mu_law_decode(mu_law_encode(audio))
    # Quantisation error is at most half a level of the companded scale.
    step = jnp.abs(mu_law_decode(mu_law_encode(audio) + 1) - back)
    assert bool(jnp.all(jnp.abs(back - audio) <= step + 1e-6))
    assert int(mu_law_encode(jnp.float32(0.0))) in (127, 128)
    assert (
        int(mu_law_encode(jnp.float32(-1.0))) == 0 and int(mu_law_encode(jnp.float32(1.0))) == 255
    )


def test_inverse_cdf_sampling_draws_the_softmax():
    from jaxar.models.wavenet import InverseCdfCategorical

    dist = InverseCdfCategorical(5)
    logits = jnp.log(jnp.asarray([[0.1, 0.0, 0.6, 0.25, 0.05]] * 4000, jnp.float32))
    draws = np.concatenate(
        [np.asarray(dist.sample_step(jax.random.key(s), logits))[:, 0] for s in range(5)]
    )
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[1] == 0.0  # a zero-probability level is never drawn
    np.testing.assert_allclose(freq, [0.1, 0.0, 0.6, 0.25, 0.05], atol=0.01)


@pytest.mark.parametrize("n", [2, 5, 9, 10, 256, 257])
def test_inverse_cdf_two_level_cumsum(n):
    """The blocked CDF equals a plain cumulative sum, whether or not n is a square."""
    from jaxar.models.wavenet import InverseCdfCategorical

    probs = jax.random.uniform(jax.random.key(n), (3, n), jnp.float32)
    cdf = InverseCdfCategorical(n).cdf(probs)
    assert cdf.shape == (3, n)
    np.testing.assert_allclose(cdf, np.cumsum(np.asarray(probs, np.float64), -1), rtol=1e-5)
