"""PixelCNN: causality, exact normalisation, cached == naive sampling, input validation."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxar
from jaxar.testing import (
    assert_cached_matches_naive,
    assert_causal,
    assert_normalized,
    assert_teacher_forced_matches_full,
    randomize_params,
)


def tiny(image_shape, num_levels=4, **kw):
    hp = {**jaxar.models.tiny_spec("pixelcnn").hparams_for(image_shape), **kw}
    return jaxar.create("pixelcnn", image_shape=image_shape, num_levels=num_levels, **hp)


def test_causal_class_conditional(rng):
    model = tiny((3, 3, 1), num_classes=3)
    params = randomize_params(model.init(rng), jax.random.key(1))
    x = jax.random.randint(jax.random.key(2), model.event_shape, 0, 4)
    assert_causal(model, params, x, jnp.array([2], jnp.int32))


@pytest.mark.parametrize("leak", ["centre", "future"])
def test_causality_check_detects_a_leak(rng, monkeypatch, leak):
    from jaxar.nn import conv, masks

    def leaky_mask(ks, fin, fout, mask_type, color_channels=1):
        m = masks.conv_mask(ks, fin, fout, "B" if leak == "centre" else mask_type, color_channels)
        return m if leak == "centre" else np.ones_like(m)

    monkeypatch.setattr(conv, "conv_mask", leaky_mask)
    model = tiny((3, 3, 1))
    params = randomize_params(model.init(rng), jax.random.key(1))
    x = jax.random.randint(jax.random.key(2), model.event_shape, 0, 4)
    with pytest.raises(AssertionError, match="leaks" if leak == "future" else "reads x_"):
        assert_causal(model, params, x)


def test_normalised_binary_2x2(rng):
    model = tiny((2, 2, 1), num_levels=2)
    # A network whose ReLUs are all dead has a constant output, which makes the sum 1 by
    # construction whatever the masks (a type-B first layer passed): the spread is checked.
    params = randomize_params(model.init(rng), jax.random.key(6))
    xs = jnp.array(list(itertools.product([0, 1], repeat=4)), jnp.int32).reshape(16, 2, 2, 1)
    # Every later pixel's conditional p(x_i = 1 | context) changes with the context.
    p1 = np.asarray(jax.nn.log_softmax(model.apply(params, xs))).reshape(16, 4, 2)[..., 1]
    assert np.ptp(p1[:, 1:], axis=0).min() > 0.01, np.ptp(p1, axis=0)
    total = jnp.exp(model.log_prob(params, xs)).sum()
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-5)
    assert_normalized(model, params)  # the library's check agrees


def test_normalised_rgb_1x1_four_levels(rng):
    model = tiny((1, 1, 3), num_levels=4)
    params = randomize_params(model.init(rng), jax.random.key(4))
    assert_normalized(model, params)


def test_per_dim_sums_to_joint_and_bits_per_dim(rng):
    model = tiny((3, 4, 3))
    params = model.init(rng)
    x = jax.random.randint(jax.random.key(5), (2, 3, 4, 3), 0, 4)
    per_dim = model.log_prob(params, x, per_dim=True)
    assert per_dim.shape == (2, 3, 4, 3)
    joint = model.log_prob(params, x)
    np.testing.assert_allclose(per_dim.sum(axis=(1, 2, 3)), joint, rtol=1e-6)
    np.testing.assert_allclose(
        model.bits_per_dim(params, x), -joint / (36 * math.log(2)), rtol=1e-6
    )


@pytest.mark.parametrize("shape, num_classes", [((4, 5, 3), 0), ((5, 4, 1), 3)])
def test_cached_step_teacher_forced_equals_full_forward(rng, shape, num_classes):
    model = tiny(shape, first_kernel=5, kernel=3, num_classes=num_classes)
    params = randomize_params(model.init(rng), jax.random.key(6), 0.3)
    x = jax.random.randint(jax.random.key(7), (2, *shape), 0, 4)
    cond = jnp.array([0, num_classes - 1], jnp.int32) if num_classes else None
    assert_teacher_forced_matches_full(model, params, x, cond)


@pytest.mark.parametrize("shape", [(4, 4, 3), (5, 6, 1)])
def test_cached_and_naive_samples_identical(rng, shape):
    model = tiny(shape, first_kernel=5)
    params = randomize_params(model.init(rng), jax.random.key(8), 0.3)
    samples = assert_cached_matches_naive(model, params, jax.random.key(9), 3)
    assert samples.shape == (3, *shape) and samples.dtype == jnp.int32
    assert model.sample_methods == ("cached", "naive") and model.default_sample_method == "cached"


def test_different_keys_different_samples(rng):
    model = tiny((4, 4, 1))
    params = model.init(rng)
    a = model.sample(params, jax.random.key(0), 4)
    b = model.sample(params, jax.random.key(1), 4)
    assert not np.array_equal(a, b)


def test_class_label_changes_logits(rng):
    model = tiny((3, 3, 1), num_classes=4)
    params = randomize_params(model.init(rng), jax.random.key(1))
    x = jnp.zeros((2, 3, 3, 1), jnp.int32)
    out = model.apply(params, x, jnp.array([0, 3], jnp.int32))
    assert not np.allclose(out[0], out[1])
    s = model.sample(params, jax.random.key(0), 2, cond=jnp.array([1, 2], jnp.int32))
    assert s.shape == (2, 3, 3, 1)


class TestBadInput:
    model = tiny((3, 3, 1))
    params = model.init(jax.random.key(0))

    def test_wrong_shape(self):
        with pytest.raises(
            ValueError, match=r"expected x of shape \(batch, 3, 3, 1\).*\(2, 3, 3\)"
        ):
            self.model.log_prob(self.params, jnp.zeros((2, 3, 3), jnp.int32))

    def test_wrong_dtype(self):
        with pytest.raises(ValueError, match="integer.*float32"):
            self.model.log_prob(self.params, jnp.zeros((2, 3, 3, 1), jnp.float32))

    @pytest.mark.parametrize("value", [-1, 4])
    def test_values_out_of_range(self, value):
        x = jnp.zeros((2, 3, 3, 1), jnp.int32).at[1, 2, 2, 0].set(value)
        with pytest.raises(ValueError, match=r"values in \[0, 4\)"):
            self.model.log_prob(self.params, x)

    def test_cond_for_unconditional_model(self):
        with pytest.raises(ValueError, match="unconditional"):
            self.model.log_prob(self.params, jnp.zeros((1, 3, 3, 1), jnp.int32), jnp.zeros(1))

    def test_missing_and_bad_labels(self):
        model = tiny((3, 3, 1), num_classes=3)
        params = model.init(jax.random.key(0))
        x = jnp.zeros((2, 3, 3, 1), jnp.int32)
        with pytest.raises(ValueError, match="expected cond"):
            model.log_prob(params, x)
        with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
            model.log_prob(params, x, jnp.array([0, 3], jnp.int32))

    def test_unknown_model_and_hparam(self):
        with pytest.raises(ValueError, match="unknown model 'pixelcnnn'.*'pixelcnn'"):
            jaxar.create("pixelcnnn")
        with pytest.raises(ValueError, match="unknown hyperparameter.*'width'.*features"):
            jaxar.create("pixelcnn", width=3)

    def test_unknown_sampling_method(self):
        with pytest.raises(ValueError, match="unknown sampling method 'fast'"):
            self.model.sample(self.params, jax.random.key(0), 1, method="fast")

    def test_features_not_divisible_by_colour_groups(self):
        with pytest.raises(ValueError, match="divisible"):
            jaxar.create("pixelcnn", image_shape=(4, 4, 3), features=10)


def test_sampler_builds_masked_kernels_once_and_its_steps_read_them(rng):
    """The cached sampler's state carries every masked layer's kernel rows times their mask,
    built before the loop (``jaxar.nn.decode``); a step reads them (zeroed, its logits
    change) and gives what it gives without them, when it builds them itself."""
    from jaxar.nn import conv_mask
    from jaxar.nn.decode import DECODE_WEIGHTS

    model = tiny((4, 4, 3))
    params = randomize_params(model.init(rng), jax.random.key(1))
    state = model.init_cache(params, 2)
    built = state[DECODE_WEIGHTS]
    masked = {}
    for name, layer in params.items():
        if "kernel" in layer:
            k = layer["kernel"]
            m = conv_mask(k.shape[:2], k.shape[2], k.shape[3], "A" if name == "first" else "B", 3)
            rows = k.shape[0] // 2 + 1
            if rows < k.shape[0] or not m.all():
                masked[name] = k[:rows] * m[:rows]
    assert masked and set(built) == set(masked)
    for name, kernel in masked.items():
        np.testing.assert_array_equal(built[name]["kernel"], kernel)
    x = jax.random.randint(jax.random.key(2), (2, model.num_dims), 0, 4)
    step = lambda s: model.cached_step(params, s, x, jnp.int32(4))[0]
    without = {k: v for k, v in state.items() if k != DECODE_WEIGHTS}
    np.testing.assert_array_equal(step(state), step(without))
    zeroed = {**state, DECODE_WEIGHTS: jax.tree.map(jnp.zeros_like, built)}
    assert not np.allclose(step(zeroed), step(state))
