"""Gated PixelCNN: causality, no blind spot, exact normalisation, conditioning, cached sampler."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxar
from jaxar.models.gated_pixelcnn import GatedPixelCNN
from jaxar.nn.decode import DECODE_WEIGHTS
from jaxar.nn.gated import gate, gated_channel_mask
from jaxar.nn.masks import conv_mask
from jaxar.testing import assert_causal, invariant_work, teacher_forced_params

# Differences below this are float32 rounding (batch elements of one conv are not always summed
# bit-identically); real dependences in these tiny random networks are orders larger.
ZERO = 1e-5


def random_params(model, seed):
    """Random parameters for ``model``, every bias and embedding nonzero.

    Kernels are drawn with standard deviation ``1/sqrt(fan_in)``, everything else with 0.3. The
    shapes come from tracing ``init`` (``jax.eval_shape``), and the values from NumPy, so no
    initialiser is compiled: on a shared CPU that keeps these tests in seconds.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        std = 1.0 / math.sqrt(math.prod(leaf.shape[:-1])) if name == "kernel" else 0.3
        return jnp.asarray(rng.normal(0.0, std, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def dependence(model, params, x, cond=None):
    """``dep[d, e]``: how much perturbing flat dimension ``d`` of ``x`` (one example) changes the
    logits of the conditional of flat dimension ``e`` (max abs over levels)."""
    d = model.num_dims
    base = x.reshape(-1)
    shift = model.num_levels // 2
    perturbed = [base.at[i].set((base[i] + shift) % model.num_levels) for i in range(d)]
    xs = jnp.stack([base, *perturbed])
    if cond is not None:
        cond = jax.tree.map(lambda c: jnp.repeat(c, d + 1, axis=0), cond)
    logits = jax.jit(model.apply)(params, xs.reshape((d + 1, *model.event_shape)), cond)
    logits = logits.reshape(d + 1, d, -1)
    return np.asarray(jnp.abs(logits[1:] - logits[:1]).max(axis=-1))


def make(name="gated_pixelcnn", seed=0, **hp):
    model = jaxar.models.create(name, **hp)
    return model, random_params(model, seed)


RGB = dict(
    image_shape=(3, 4, 3),
    num_levels=4,
    features=12,
    num_layers=3,
    first_kernel=3,
    kernel=3,
    output_features=24,
)
COND = dict(RGB, num_classes=3, cond_dim=2, cond_map_channels=2, num_layers=3, features=6)


def full_cond(model, batch, key):
    k1, k2, k3 = jax.random.split(key, 3)
    h, w, _ = model.event_shape
    return {
        "label": jax.random.randint(k1, (batch,), 0, model.num_classes),
        "vector": jax.random.normal(k2, (batch, model.cond_dim)),
        "map": jax.random.normal(k3, (batch, h, w, model.cond_map_channels)),
    }


# ---------------------------------------------------------------------------- layers
def test_gate_and_channel_mask():
    x = jnp.array([[0.5, -1.0, 2.0, 0.0]])
    np.testing.assert_allclose(gate(x), jnp.tanh(x[:, :2]) * jax.nn.sigmoid(x[:, 2:]), rtol=1e-6)
    m = gated_channel_mask(3, 6, "A", 3)
    assert m.shape == (3, 12)
    np.testing.assert_array_equal(m[:, :6], m[:, 6:])  # both gate halves share the groups
    np.testing.assert_array_equal(m[:, :6], [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0] * 6])


# ---------------------------------------------------------------------------- causality
def test_causal_and_dependent_per_dimension_rgb():
    """Perturbing dimension d changes no conditional <= d and every conditional > d."""
    model, params = make(**RGB)
    x = jax.random.randint(jax.random.key(2), (1, *model.event_shape), 0, model.num_levels)
    dep = dependence(model, params, x)
    d = model.num_dims
    earlier_or_same = dep[np.tril_indices(d)]
    later = dep[np.triu_indices(d, 1)]
    assert earlier_or_same.max() < ZERO, np.argwhere(np.tril(dep) >= ZERO)
    assert later.min() > ZERO, np.argwhere(np.triu(dep, 1) + np.tril(np.ones_like(dep)) <= ZERO)


def test_causal_with_all_conditioning():
    model, params = make(**COND)
    x = jax.random.randint(jax.random.key(3), (1, *model.event_shape), 0, model.num_levels)
    dep = dependence(model, params, x, full_cond(model, 1, jax.random.key(4)))
    assert dep[np.tril_indices(model.num_dims)].max() < ZERO


def test_shared_contract_causality_check_with_all_conditioning():
    """jaxar.testing.assert_causal: no leak into earlier conditionals and no conditional
    reading its own dimension, with labels, a vector and a spatial map."""
    model, params = make(**COND)
    x = jax.random.randint(jax.random.key(9), (1, *model.event_shape), 0, model.num_levels)
    assert_causal(model, params, x, full_cond(model, 1, jax.random.key(10)))


def _unseen_earlier_pixels(model, params, x):
    """(position, earlier pixel) pairs where changing the pixel leaves the conditional."""
    h, w, _ = model.event_shape
    dep = dependence(model, params, x)
    return [(p, q) for p, q in itertools.combinations(range(h * w), 2) if dep[p, q] <= ZERO]


def test_no_blind_spot_unlike_pixelcnn():
    """Every earlier pixel reaches every conditional of the Gated PixelCNN; the plain PixelCNN
    with the same kernels and depth misses the pixels up and to the right (its blind spot)."""
    small = dict(image_shape=(4, 4, 1), num_levels=4, first_kernel=3, kernel=3)
    gated, gp = make(**small, features=8, num_layers=3, output_features=16)
    plain, pp = make("pixelcnn", **small, features=8, num_blocks=3, output_features=16)
    x = jax.random.randint(jax.random.key(5), (1, 4, 4, 1), 0, 4)
    assert _unseen_earlier_pixels(gated, gp, x) == []
    missed = _unseen_earlier_pixels(plain, pp, x)
    # (1, 3) is up-and-right of (2, 1), beyond the plain stack's reach at any depth.
    assert (1 * 4 + 3, 2 * 4 + 1) in missed


# ---------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("num_classes", [0, 2])
def test_exact_normalisation(num_classes):
    model, params = make(
        image_shape=(2, 2, 1),
        num_levels=2,
        features=4,
        num_layers=2,
        first_kernel=3,
        output_features=4,
        num_classes=num_classes,
    )
    images = jnp.array(list(itertools.product([0, 1], repeat=4)), jnp.int32).reshape(16, 2, 2, 1)
    cond = jnp.ones((16,), jnp.int32) if num_classes else None
    total = jax.nn.logsumexp(model.log_prob(params, images, cond))
    assert abs(float(total)) < 1e-5


def test_class_label_changes_logits():
    model, params = make(**dict(RGB, num_classes=3, num_layers=2))
    x = jnp.zeros((2, *model.event_shape), jnp.int32)
    logits = jax.jit(model.apply)(params, x, jnp.array([0, 2], jnp.int32))
    assert float(jnp.abs(logits[0] - logits[1]).max()) > 1e-3
    # Labels also act at the very first conditional, which sees no pixels.
    assert float(jnp.abs(logits[0, 0, 0, 0] - logits[1, 0, 0, 0]).max()) > 1e-3


def test_vector_and_map_change_logits():
    model, params = make(**COND)
    x = jnp.zeros((1, *model.event_shape), jnp.int32)
    cond = full_cond(model, 1, jax.random.key(0))
    apply = jax.jit(model.apply)
    base = apply(params, x, cond)
    for key in ("vector", "map"):
        other = dict(cond, **{key: cond[key] + 1.0})
        assert float(jnp.abs(apply(params, x, other) - base).max()) > 1e-3


def test_bfloat16_compute():
    model, params = make(**dict(RGB, dtype="bfloat16", num_layers=2))
    f32 = jaxar.models.create("gated_pixelcnn", **dict(RGB, num_layers=2))
    x = jax.random.randint(jax.random.key(3), (4, *model.event_shape), 0, model.num_levels)
    lp = model.log_prob(params, x)
    # The same likelihood as float32 compute, to bfloat16's precision (not merely finite).
    lp32 = np.asarray(f32.log_prob(params, x))
    assert lp.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(lp), lp32, rtol=0.03, atol=0.1)
    assert np.ptp(lp32) > 1.0  # the examples' likelihoods differ: a constant would not pass
    # The cached path with bfloat16 caches draws what the model scores.
    samples, slp = model.sample(params, jax.random.key(0), 4, with_log_prob=True)
    assert int(samples.min()) >= 0 and int(samples.max()) < model.num_levels
    np.testing.assert_allclose(np.asarray(slp), np.asarray(model.log_prob(params, samples)),
                               rtol=0.03, atol=0.1)  # fmt: skip


# ---------------------------------------------------------------------------- cached sampler
def test_cached_step_matches_full_forward_with_conditioning():
    model, params = make(**COND)
    x = jax.random.randint(jax.random.key(6), (2, *model.event_shape), 0, model.num_levels)
    cond = full_cond(model, 2, jax.random.key(7))
    full = jax.jit(model.apply)(params, x, cond).reshape(2, model.num_dims, -1)
    cached = teacher_forced_params(model, params, x, cond)
    rel = float(jnp.abs(cached - full).max() / jnp.abs(full).max())
    assert rel < 1e-5, rel


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sampler_computes_its_conditioning_before_its_loop(dtype):
    """With labels, a vector and a map, a sampler step does no work on its weights and its
    conditioning alone: the label's and the vector's terms are built before the loop
    (compiled for an H200, the vector's products had stayed in the loop, 2 kernels a step)."""
    model, params = make(**COND, dtype=dtype)
    cond = full_cond(model, 2, jax.random.key(7))
    assert invariant_work(model, params, 2, cond) == []


def test_sampler_step_reads_the_residual_and_skip_kernels_side_by_side():
    """A step computes each block's residual and skip outputs as one product of the two
    masked kernels side by side, built before the loop (compiled for an H200, XLA had merged
    the two products and concatenated the kernels at every step): the state holds them, and
    with them zeroed every image gets the same logits (no skip reaches the head)."""
    model, params = make(**RGB)
    state = model.init_cache(params, 2)
    weights = state[DECODE_WEIGHTS]
    blocks = sorted(k for k in weights if "res_skip_kernel" in weights[k])
    assert len(blocks) == RGB["num_layers"], sorted(weights)
    for name in blocks:
        res, skip = params[name]["res"]["kernel"], params[name]["skip"]["kernel"]
        f, c = res.shape[-1], model.event_shape[-1]
        masks = [conv_mask((1, 1), f, k.shape[-1], "B", c) for k in (res, skip)]
        want = jnp.concatenate([(k * m)[0, 0] for k, m in zip((res, skip), masks)], -1)
        np.testing.assert_array_equal(np.asarray(weights[name]["res_skip_kernel"]), want)
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, w: jnp.zeros_like(w) if "res_skip" in path[-1].key else w, weights
    )
    x = jax.random.randint(jax.random.key(1), (2, model.num_dims), 0, model.num_levels)
    step = jax.jit(model.cached_step)
    logits = [step(params, {**state, DECODE_WEIGHTS: w}, x, 5)[0] for w in (weights, zeroed)]
    assert float(jnp.abs(logits[0][0] - logits[0][1]).max()) > 1e-3
    np.testing.assert_array_equal(np.asarray(logits[1][0]), np.asarray(logits[1][1]))


def test_cached_step_matches_full_forward_grey_wide_kernels():
    model, params = make(
        image_shape=(4, 6, 1),
        num_levels=5,
        features=8,
        num_layers=3,
        first_kernel=5,
        kernel=5,
        output_features=8,
        num_classes=2,
    )
    x = jax.random.randint(jax.random.key(8), (2, 4, 6, 1), 0, 5)
    labels = jnp.array([1, 0], jnp.int32)
    full = jax.jit(model.apply)(params, x, labels).reshape(2, model.num_dims, -1)
    cached = teacher_forced_params(model, params, x, labels)
    assert float(jnp.abs(cached - full).max() / jnp.abs(full).max()) < 1e-5


def test_input_embedding_keeps_causality_and_the_cached_path():
    """A learned vector per level (for unordered symbols such as VQ-VAE codes), per channel in
    that channel's colour group: still causal per sub-pixel, and the cached step agrees."""
    model, params = make(**dict(RGB, input_embedding=4))
    assert params["input_embed"]["embedding"].shape == (4, 4)
    x = jax.random.randint(jax.random.key(12), (2, *model.event_shape), 0, model.num_levels)
    dep = dependence(model, params, x[:1])
    d = model.num_dims
    assert dep[np.tril_indices(d)].max() < ZERO
    assert dep[np.triu_indices(d, 1)].min() > ZERO
    full = jax.jit(model.apply)(params, x).reshape(2, d, -1)
    cached = teacher_forced_params(model, params, x)
    assert float(jnp.abs(cached - full).max() / jnp.abs(full).max()) < 1e-5
    with pytest.raises(ValueError, match="input_embedding"):
        jaxar.models.create("gated_pixelcnn", input_embedding=-1)


@pytest.fixture(scope="module")
def sampled():
    model, params = make(**dict(RGB, num_classes=3, num_layers=2, features=6, output_features=6))
    labels = jnp.array([0, 1, 2], jnp.int32)
    key = jax.random.key(11)
    cached, logp = model.sample(params, key, 3, labels, with_log_prob=True)
    naive = model.sample(params, key, 3, labels, method="naive")
    return model, params, labels, cached, logp, naive


def test_conditional_sampling_end_to_end(sampled):
    model, _, _, cached, logp, _ = sampled
    assert model.default_sample_method == "cached"
    assert cached.shape == (3, *model.event_shape) and cached.dtype == jnp.int32
    assert int(cached.min()) >= 0 and int(cached.max()) < model.num_levels
    assert logp.shape == (3,) and bool(jnp.all(jnp.isfinite(logp)))


def test_cached_and_naive_samples_identical(sampled):
    _, _, _, cached, _, naive = sampled
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))


def test_sample_log_prob_matches_model(sampled):
    model, params, labels, cached, logp, _ = sampled
    np.testing.assert_allclose(model.log_prob(params, cached, labels), logp, rtol=1e-5)


# ---------------------------------------------------------------------------- contract
def test_registered_and_hparams():
    assert "gated_pixelcnn" in jaxar.models.names()
    model = jaxar.models.create(
        "gated_pixelcnn", image_shape=(4, 4, 3), num_levels=8, features=6, output_features=6
    )
    assert isinstance(model, GatedPixelCNN)
    assert model.sample_methods == ("cached", "naive")
    assert model.hparams["image_shape"] == (4, 4, 3)
    assert math.prod(model.event_shape) == model.num_dims == 48


@pytest.mark.parametrize(
    "hp, match",
    [
        (dict(image_shape=(4, 4)), "image_shape"),
        (dict(image_shape=(4, 4, 3), features=16), "divisible by C=3"),
        (dict(first_kernel=1), "first_kernel"),
        (dict(kernel=4), "kernel"),
        (dict(num_layers=0), "num_layers"),
        (dict(cond_dim=-1), "cond_dim"),
    ],
)
def test_bad_hparams(hp, match):
    with pytest.raises(ValueError, match=match):
        jaxar.models.create("gated_pixelcnn", **hp)


def test_cond_forms_and_errors():
    labels_only = jaxar.models.create("gated_pixelcnn", image_shape=(2, 2, 1), num_classes=4)
    labels = jnp.array([1, 3], jnp.int32)
    labels_only.check_cond(labels, 2)  # bare labels (what `jaxar sample --class` passes)
    labels_only.check_cond({"label": labels}, 2)
    assert labels_only.cond_from_batch({"x": None, "label": labels}) is labels
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        labels_only.check_cond(jnp.array([0, 4], jnp.int32), 2)
    with pytest.raises(ValueError, match="got None"):
        labels_only.check_cond(None, 2)
    with pytest.raises(ValueError, match="lacks"):
        labels_only.cond_from_batch({"x": None})

    vec = jaxar.models.create("gated_pixelcnn", image_shape=(2, 2, 1), num_classes=4, cond_dim=3)
    good = {"label": labels, "vector": jnp.zeros((2, 3))}
    vec.check_cond(good, 2)
    assert set(vec.cond_from_batch({"x": None, "label": labels, "vector": good["vector"]})) == {
        "label",
        "vector",
    }
    with pytest.raises(ValueError, match="as a dict"):
        vec.check_cond(labels, 2)
    with pytest.raises(ValueError, match="keys"):
        vec.check_cond({"label": labels}, 2)
    with pytest.raises(ValueError, match=r"float shape \(2, 3\)"):
        vec.check_cond({"label": labels, "vector": jnp.zeros((2, 4))}, 2)
    with pytest.raises(ValueError, match="NaN"):
        vec.check_cond({"label": labels, "vector": jnp.full((2, 3), jnp.nan)}, 2)

    spatial = jaxar.models.create("gated_pixelcnn", image_shape=(2, 3, 1), cond_map_channels=2)
    spatial.check_cond({"map": jnp.zeros((2, 2, 3, 2))}, 2)
    with pytest.raises(ValueError, match=r"float shape \(2, 2, 3, 2\)"):
        spatial.check_cond({"map": jnp.zeros((2, 3, 2, 2))}, 2)

    plain = jaxar.models.create("gated_pixelcnn", image_shape=(2, 2, 1))
    assert plain.dummy_cond(2) is None and plain.cond_from_batch({"x": None, "label": 1}) is None
    with pytest.raises(ValueError, match="unconditional"):
        plain.check_cond(labels, 2)


def test_stack_convolutions_take_kernel_gradients_in_slices_on_cpu(monkeypatch):
    # Both stacks' convolutions go through jaxar.nn.conv.conv2d: with its kernel-gradient
    # slices set to 16 and 2 * 24 = 48 gate outputs, the compiled kernel gradient of each is 3
    # convolutions of 16 outputs (one if it were a plain convolution).
    import re

    from jaxar.nn import conv
    from jaxar.nn.gated import HorizontalConv, VerticalConv

    monkeypatch.setattr(conv, "KERNEL_GRAD_CHUNK", 16)

    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
    for layer in (VerticalConv(24, (3, 3)), HorizontalConv(24, 3)):
        params = layer.init(jax.random.key(1), x)
        grad = jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2))
        hlo = jax.jit(grad).lower(params).compile().as_text()
        # the forward convolution (needed for the loss's derivative) and 3 slices
        assert len(re.findall(r"\bconvolution\(", hlo)) == 4, layer


def test_stack_layers_read_exactly_their_documented_pixels_and_refuse_even_widths():
    """The horizontal convolution's output (h, w) reads row h, columns w - k//2 .. w (every
    input channel at w with mask B and one colour), the vertical one rows h - n + 1 .. h,
    columns w - k//2 .. w + k//2 (shift=False): the input pixels its Jacobian is nonzero at,
    exactly. Its parameters are a kernel of k//2 + 1 taps and a bias; an even or too small
    width is one clear error, a width of 1 is a valid layer."""
    from jaxar.nn.gated import GatedBlock, HorizontalConv, VerticalConv

    x = jax.random.normal(jax.random.key(0), (1, 6, 9, 2))
    h, w = 3, 4

    def reads(layer):
        params = layer.init(jax.random.key(1), x)
        jac = jax.jacrev(lambda x: layer.apply(params, x)[0, h, w].sum())(x)
        return {tuple(p) for p in np.argwhere(np.abs(np.asarray(jac[0])).sum(-1) > 0)}, params

    seen, params = reads(HorizontalConv(3, kernel_width=5))
    assert seen == {(h, w - 2), (h, w - 1), (h, w)}
    assert jax.tree.map(jnp.shape, params["params"]) == {"kernel": (1, 3, 2, 6), "bias": (6,)}
    seen, _ = reads(VerticalConv(3, (2, 3)))
    assert seen == {(r, c) for r in (h - 1, h) for c in (w - 1, w, w + 1)}
    seen, _ = reads(HorizontalConv(3, kernel_width=1))
    assert seen == {(h, w)}
    one = dict(image_shape=(4, 4, 1), num_levels=8, features=4, output_features=4, kernel=1)
    jaxar.models.create("gated_pixelcnn", **one).init(jax.random.key(0))  # 1-wide later layers
    for layer, message in [
        (
            HorizontalConv(3, kernel_width=4),
            "the horizontal kernel width must be odd and >= 1, got 4",
        ),
        (VerticalConv(3, (2, 4)), "the vertical kernel width must be odd and >= 1, got 4"),
        (GatedBlock(4, 1, first=True), "kernel must be odd and >= 3, got 1"),
    ]:
        with pytest.raises(ValueError) as e:
            layer.init(jax.random.key(1), x)
        assert str(e.value) == message
