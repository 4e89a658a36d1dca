"""PixelCNN++: causality per dimension, class conditioning, dropout, weight norm, sampling."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxar import models
from jaxar.nn.shifted import (
    DownRightShiftedConv2D,
    DownRightShiftedConvTranspose2D,
    DownShiftedConv2D,
    DownShiftedConvTranspose2D,
    concat_elu,
    subpixel_conv_transpose,
)
from jaxar.testing import (
    assert_cached_matches_naive,
    assert_teacher_forced_matches_full,
    compiled_sampler,
    invariant_work,
    moved_arrays,
)

TINY = models.tiny_spec("pixelcnn_pp").hparams  # the registered tiny sizes
RGB = dict(image_shape=(4, 4, 3), num_classes=3, **TINY)
GREY = dict(image_shape=(4, 8, 1), **TINY)


# Initialising compiles the whole network: share one parameter set per architecture (the
# compute dtype and the dropout rate do not change the parameters).
@pytest.fixture(scope="module")
def rgb_params():
    return models.create("pixelcnn_pp", **RGB).init(jax.random.key(0))


@pytest.fixture(scope="module")
def grey_params():
    return models.create("pixelcnn_pp", **GREY).init(jax.random.key(0))


def _jitter(params, seed, scale=0.1):
    """Perturb every parameter (biases included) so that no dependency is zero by accident."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [
        p + scale * jax.random.normal(k, p.shape, p.dtype)
        for p, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, noisy)


@pytest.mark.parametrize("grey", [False, True])
def test_causal_per_dimension(grey, rgb_params, grey_params):
    """Perturb each dimension in turn: every earlier conditional is unchanged (up to float64
    rounding); on RGB, every later one (R < G < B inside a pixel) changes too."""
    hp, params = (GREY, grey_params) if grey else (RGB, rgb_params)
    shape = hp["image_shape"]
    with jax.enable_x64(True):
        model = models.create("pixelcnn_pp", **{**hp, "dtype": "float64"})
        params = _jitter(params, seed=1)
        d = model.num_dims
        base = np.asarray(jax.random.randint(jax.random.key(2), shape, 0, 256)).reshape(-1)
        xs = np.repeat(base[None], d + 1, axis=0)
        xs[np.arange(1, d + 1), np.arange(d)] = (base + 97) % 256  # row j+1 changes dim j
        cond = jnp.full((d + 1,), 1, jnp.int32) if model.num_classes else None
        lp = model.log_prob(params, jnp.asarray(xs.reshape(d + 1, *shape)), cond, per_dim=True)
        assert lp.dtype == jnp.float64
        lp = np.asarray(lp).reshape(d + 1, d)
    change = np.abs(lp[1:] - lp[0])  # change[j, i]: effect of dim j on conditional i
    earlier = np.tril(np.ones((d, d), bool), k=-1)  # i < j
    assert change[earlier].max() < 1e-10, np.argwhere(earlier & (change >= 1e-10))[:5]
    # Each conditional depends on its own value; on the 4x4 image on every earlier dimension.
    assert np.diag(change).min() > 1e-8
    if not grey:
        assert change[~earlier].min() > 1e-8, np.argwhere(~earlier & (change <= 1e-8))[:5]


def test_shifted_convolutions_keep_their_invariants():
    """Impulse responses. The output at (r, c) may see input (r', c') only if r' <= R (down)
    and also c' <= C (down-right), where (R, C) is (r, c) at stride 1, (2r, 2c) when down-
    sampling and (r // 2, c // 2) when up-sampling."""
    x = jnp.zeros((1, 8, 8, 1)).at[0, 4, 4, 0].set(1.0)
    last_seen = {
        1: lambda r, c: (r, c),
        "down": lambda r, c: (2 * r, 2 * c),
        "up": lambda r, c: (r // 2, c // 2),
    }
    layers = [
        (DownShiftedConv2D(1), 1, 8),
        (DownRightShiftedConv2D(1), 1, 8),
        (DownShiftedConv2D(1, strides=2), "down", 4),
        (DownRightShiftedConv2D(1, strides=2), "down", 4),
        (DownShiftedConvTranspose2D(1), "up", 16),
        (DownRightShiftedConvTranspose2D(1), "up", 16),
    ]
    for layer, kind, size in layers:
        params = _jitter(layer.init(jax.random.key(0), x), seed=3, scale=1.0)
        y = layer.apply(params, x)[0, ..., 0] - layer.apply(params, 0 * x)[0, ..., 0]
        assert y.shape == (size, size), (layer, y.shape)
        hits = np.argwhere(np.abs(np.asarray(y)) > 0)
        assert len(hits) > 0, layer
        for r, c in hits:
            big_r, big_c = last_seen[kind](r, c)
            assert big_r >= 4, (layer, r, c)
            if layer.shift == "down_right":
                assert big_c >= 4, (layer, r, c)


def test_concat_elu_and_its_gradient_equal_elu_of_both_signs():
    # The one-exp form and its hand-written derivative against flax's elu, values and
    # gradients (a vector-Jacobian product with random weights), at both signs, near and at 0.
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 5)) * 3.0
    x = x.at[0, 0, 0, :3].set(jnp.array([0.0, 1e-4, -1e-4]))
    reference = lambda a: nn.elu(jnp.concatenate([a, -a], axis=-1))
    np.testing.assert_allclose(concat_elu(x), reference(x), rtol=1e-6, atol=2e-7)
    w = jax.random.normal(jax.random.key(1), (2, 3, 4, 10))
    grad = lambda f: jax.grad(lambda a: jnp.sum(w * f(a)))(x)
    np.testing.assert_allclose(grad(concat_elu), grad(reference), rtol=1e-6, atol=2e-7)
    jvp = lambda f: jax.jvp(f, (x,), (w[..., :5],))[1]
    np.testing.assert_allclose(jvp(concat_elu), jvp(reference), rtol=1e-6, atol=2e-7)
    assert concat_elu(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
    # Undifferentiated, it is the same values (the JVP rule's primal output) in one kernel
    # before the convolution that reads it, as in the cached sampler's 2x2 windows: no
    # concatenation of two computed halves (a kernel of its own on XLA's CPU), no exp apart.
    np.testing.assert_array_equal(concat_elu(x), jax.jvp(concat_elu, (x,), (x,))[0])
    conv = lambda a, k: jnp.einsum("bijc,ijcd->bd", concat_elu(a), k)
    win, k = jnp.ones((1, 2, 2, 160)), jnp.ones((2, 2, 320, 160))
    entry = jax.jit(conv).lower(win, k).compile().as_text().split("\nENTRY")[1]
    readers = [line for line in entry.splitlines() if "(%a." in line or ", %a." in line]
    assert " concatenate(" not in entry and len(readers) == 1, entry


@pytest.mark.parametrize("chunk", [None, 16])
def test_conv2d_derivatives_equal_the_plain_convolution_and_chunk_the_kernel_gradient(
    chunk, monkeypatch
):
    # conv2d: values, reverse mode (both arguments, and the kernel alone) and forward mode
    # equal lax's convolution. By default the kernel gradient is one convolution; with
    # KERNEL_GRAD_CHUNK set (the custom JVP), on CPU one convolution per KERNEL_GRAD_CHUNK
    # outputs (3 for 48), the input gradient one, and a kernel of at most KERNEL_GRAD_CHUNK
    # outputs is left whole.
    import re

    from jax import lax

    from jaxar.nn import conv as conv_module
    from jaxar.nn.conv import conv2d

    assert conv_module.KERNEL_GRAD_CHUNK is None  # the default: XLA's one convolution
    monkeypatch.setattr(conv_module, "KERNEL_GRAD_CHUNK", chunk)
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 8))
    kernel = jax.random.normal(jax.random.key(1), (2, 3, 8, 48))
    pad, strides = ((1, 0), (1, 1)), (1, 1)
    plain = lambda x, k: lax.conv_general_dilated(
        x, k, strides, pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    ours = lambda x, k: conv2d(x, k, strides, pad)
    weights = jax.random.normal(jax.random.key(2), (2, 5, 6, 48))
    loss = lambda f: lambda x, k: jnp.sum(weights[..., : k.shape[-1]] * f(x, k))
    np.testing.assert_allclose(ours(x, kernel), plain(x, kernel), rtol=1e-6, atol=1e-5)
    for got, ref in zip(
        jax.grad(loss(ours), (0, 1))(x, kernel), jax.grad(loss(plain), (0, 1))(x, kernel)
    ):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        jax.grad(loss(ours), 1)(x, kernel),
        jax.grad(loss(plain), 1)(x, kernel),
        rtol=1e-5,
        atol=1e-4,
    )
    tangents = (0.3 * x, 0.7 * kernel)
    np.testing.assert_allclose(
        jax.jvp(ours, (x, kernel), tangents)[1], jax.jvp(plain, (x, kernel), tangents)[1],
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip

    def convs(f, argnums, k):
        hlo = jax.jit(jax.grad(loss(f), argnums)).lower(x, k).compile().as_text()
        return len(re.findall(r"\bconvolution\(", hlo))

    assert convs(ours, 1, kernel) == (3 if chunk else 1)
    assert convs(ours, 0, kernel) == 1
    assert convs(ours, 1, kernel[..., :16]) == 1


@pytest.mark.parametrize(
    "x_shape,kernel_shape,others",
    [
        ((2, 5, 6, 8), (1, 1, 8, 40), [((2, 1), ((0, 0), (0, 0))), ((1, 1), ((1, 0), (0, 0)))]),
        ((2, 2, 3, 8), (2, 3, 8, 40), [((1, 1), ((1, 0), (0, 0))), ((1, 1), ((0, 0), (1, 1)))]),
    ],
    ids=["1x1", "window"],
)
def test_conv2d_of_a_1x1_or_whole_window_kernel_is_a_matrix_product(x_shape, kernel_shape, others):
    # A 1x1 kernel at stride 1 without padding, or (on CPU) a kernel as large as the unpadded
    # input (one output: a cached sampler's window): the same values, gradients and JVP as
    # lax's convolution, compiled without any convolution (on CPU a 1x1 kernel's gradient as
    # a convolution is several times slower, and PixelCNN++'s cached sampling is faster with
    # the windows as products); padded or strided ones stay convolutions, and so does the
    # window lowered for a GPU (where XLA's cuDNN calls made fewer kernels).
    import re

    from jax import lax

    from jaxar.nn.conv import conv2d

    x = jax.random.normal(jax.random.key(0), x_shape)
    kernel = jax.random.normal(jax.random.key(1), kernel_shape)

    def both(strides, pad):
        plain = lambda x, k: lax.conv_general_dilated(
            x, k, strides, pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return lambda x, k: conv2d(x, k, strides, pad), plain

    def loss(f, weights):
        return lambda x, k: jnp.sum(weights * f(x, k))

    def convolutions(f, weights):
        grad = jax.jit(jax.grad(loss(f, weights), (0, 1)))
        return len(re.findall(r"\bconvolution\(", grad.lower(x, kernel).compile().as_text()))

    ours, plain = both((1, 1), ((0, 0), (0, 0)))
    weights = jax.random.normal(jax.random.key(2), plain(x, kernel).shape)
    np.testing.assert_allclose(ours(x, kernel), plain(x, kernel), rtol=1e-5, atol=1e-5)
    grads = [jax.grad(loss(f, weights), (0, 1))(x, kernel) for f in (ours, plain)]
    for got, ref in zip(*grads, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    tangents = (0.3 * x, 0.7 * kernel)
    np.testing.assert_allclose(
        jax.jvp(ours, (x, kernel), tangents)[1], jax.jvp(plain, (x, kernel), tangents)[1],
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip
    assert convolutions(ours, weights) == 0
    gpu = jax.jit(ours).trace(x, kernel).lower(lowering_platforms=("cuda",)).as_text()
    assert ("stablehlo.convolution" in gpu) == (kernel_shape[:2] != (1, 1))
    for strides, pad in others:
        ours, plain = both(strides, pad)
        np.testing.assert_allclose(ours(x, kernel), plain(x, kernel), rtol=1e-5, atol=1e-5)
        assert convolutions(ours, jnp.ones(plain(x, kernel).shape)) >= 1, (strides, pad)


@pytest.mark.parametrize("kh,kw,stride,h,w", [(2, 3, 2, 3, 4), (2, 2, 2, 2, 3), (3, 2, 3, 2, 2)])
def test_subpixel_conv_transpose_equals_the_dilated_convolution(kh, kw, stride, h, w):
    # Every padding that up-samples by `stride` exactly (the shifted layers use two of
    # them): values, and both gradients through a vector-Jacobian product, against XLA's
    # convolution of the zero-dilated input.
    from jax import lax

    x = jax.random.normal(jax.random.key(0), (2, h, w, 3))
    kernel = jax.random.normal(jax.random.key(1), (kh, kw, 3, 4))
    for top in range(kh):
        for left in range(kw):
            pad = ((top, stride - 1 + kh - 1 - top), (left, stride - 1 + kw - 1 - left))

            def dilated(x, k, pad=pad):
                return lax.conv_general_dilated(
                    x, k, (1, 1), pad, lhs_dilation=(stride, stride),
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )  # fmt: skip

            subpixel = lambda x, k, pad=pad: subpixel_conv_transpose(x, k, stride, pad)
            want = dilated(x, kernel)
            assert want.shape == (2, stride * h, stride * w, 4)
            np.testing.assert_allclose(subpixel(x, kernel), want, rtol=1e-5, atol=1e-5)
            g = jax.random.normal(jax.random.key(2), want.shape)
            vjp = lambda f: jax.grad(lambda x, k: jnp.sum(g * f(x, k)), (0, 1))(x, kernel)
            for got, ref in zip(vjp(subpixel), vjp(dilated)):
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected 2x the input"):
        subpixel_conv_transpose(x, kernel, 2, ((0, 0), (0, 0)))


def test_class_label_changes_the_output(rgb_params):
    model, params = models.create("pixelcnn_pp", **RGB), rgb_params
    x = jnp.broadcast_to(jax.random.randint(jax.random.key(1), (1, 4, 4, 3), 0, 256), (3, 4, 4, 3))
    lp = np.asarray(model.log_prob(params, x, jnp.arange(3, dtype=jnp.int32)))
    assert np.all(np.isfinite(lp))
    assert abs(lp[0] - lp[1]) > 1e-3 and abs(lp[1] - lp[2]) > 1e-3
    with pytest.raises(ValueError, match="cond"):
        model.log_prob(params, x)


def test_dropout_only_in_training_and_driven_by_the_rng(rgb_params):
    model, params = models.create("pixelcnn_pp", **{**RGB, "dropout": 0.5}), rgb_params
    x = jax.random.randint(jax.random.key(1), (2, 4, 4, 3), 0, 256)
    c = jnp.array([0, 2], jnp.int32)
    eval_a = model.log_prob(params, x, c)
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(model.log_prob(params, x, c)))
    train = lambda k: np.asarray(model.log_prob(params, x, c, train=True, rng=jax.random.key(k)))
    np.testing.assert_array_equal(train(5), train(5))
    assert not np.allclose(train(5), train(6))
    assert not np.allclose(train(5), np.asarray(eval_a))
    # The masks come from threefry, not XLA's RngBitGenerator (an rbg key), which drew them
    # 4.6x slower on a CPU (BENCHMARKS.md).
    step = jax.jit(lambda p, k: model.log_prob(p, x, c, train=True, rng=k))
    assert "rng_bit_generator" not in step.lower(params, jax.random.key(5)).as_text()


def test_weight_norm_with_data_dependent_init():
    model = models.create(
        "pixelcnn_pp", image_shape=(4, 4, 3), weight_norm=True, data_init=True, **TINY
    )
    x = jax.random.randint(jax.random.key(1), (16, 4, 4, 3), 0, 256)
    with pytest.raises(ValueError, match="batch"):
        model.init(jax.random.key(0))
    params = model.init(jax.random.key(0), x)
    assert "scale" in params["u_in"]
    # The first layer's pre-activations are normalised on the init batch.
    from jaxar.nn.shifted import DownShiftedConv2D as Conv

    h = jnp.concatenate([x.astype(jnp.float32) * (2.0 / 255) - 1.0, jnp.ones((16, 4, 4, 1))], -1)
    y = Conv(8, weight_norm=True).apply({"params": params["u_in"]}, h)
    np.testing.assert_allclose(np.asarray(y.mean((0, 1, 2))), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y.std((0, 1, 2))), 1.0, rtol=1e-3)
    assert np.all(np.isfinite(np.asarray(model.log_prob(params, x))))
    with pytest.raises(ValueError, match="weight_norm"):
        models.create("pixelcnn_pp", data_init=True)


def test_fan_in_init_is_pytorchs_default_draw_and_unit_init_is_unchanged():
    """``weight_init="fan_in"``: every kernel (weight-norm direction v) and bias uniform in
    +-1/sqrt(fan_in), the gain ||v|| so the effective kernel starts at v; "unit" keeps the
    unit-norm filters with gain init_scale (0.1 on a block's last convolution) and zero bias."""
    hp = dict(image_shape=(8, 8, 1), weight_norm=True, **{**TINY, "features": 16})
    fan = models.create("pixelcnn_pp", weight_init="fan_in", **hp).init(jax.random.key(0))
    unit = models.create("pixelcnn_pp", weight_init="unit", **hp).init(jax.random.key(0))
    layers = [p for p in jax.tree.leaves(fan, is_leaf=lambda d: "kernel" in d) if "scale" in p]
    assert len(layers) > 20
    for p in layers:
        v, g, b = (np.asarray(p[k]) for k in ("kernel", "scale", "bias"))
        bound = 1.0 / np.sqrt(np.prod(v.shape[:-1]))
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.9 * bound
        assert np.abs(b).max() <= bound and b.std() > 0.3 * bound  # drawn (std bound/sqrt 3)
        norms = np.sqrt(np.sum(np.square(v), axis=tuple(range(v.ndim - 1))))
        np.testing.assert_allclose(g, norms, rtol=1e-6)
    block = unit["GatedResnet_0"]
    np.testing.assert_array_equal(np.asarray(block["conv_in"]["scale"]), 1.0)
    np.testing.assert_array_equal(np.asarray(block["conv_out"]["scale"]), np.float32(0.1))
    np.testing.assert_array_equal(np.asarray(block["conv_out"]["bias"]), 0.0)
    plain = models.create("pixelcnn_pp", image_shape=(8, 8, 1), weight_init="fan_in", **TINY)
    k = np.asarray(plain.init(jax.random.key(0))["u_in"]["kernel"])
    assert np.abs(k).max() <= 1.0 / np.sqrt(np.prod(k.shape[:-1]))
    # The default is the equal-budget winner of each parametrisation: fan_in with weight
    # norm, unit without.
    default = models.create("pixelcnn_pp", **hp)
    assert default.hparams["weight_init"] == "fan_in"  # recorded resolved, as runs save it
    chex.assert_trees_all_equal(default.init(jax.random.key(0)), fan)
    plain_hp = dict(image_shape=(8, 8, 1), **TINY)
    chex.assert_trees_all_equal(
        models.create("pixelcnn_pp", **plain_hp).init(jax.random.key(0)),
        models.create("pixelcnn_pp", weight_init="unit", **plain_hp).init(jax.random.key(0)),
    )
    with pytest.raises(ValueError, match="weight_init must be one of"):
        models.create("pixelcnn_pp", weight_init="xavier")
    with pytest.raises(ValueError, match="data_init=True means weight_init='data'"):
        models.create("pixelcnn_pp", weight_norm=True, data_init=True, weight_init="fan_in")


def test_layers_without_weight_norm_scale_their_unit_init_and_refuse_a_bad_shift():
    """Without weight norm, "unit" draws a kernel of standard deviation
    init_scale / sqrt(fan_in) (a block's last convolution: 0.1); NIN is a plain dense layer by
    default; an unknown shift is refused in one line naming the choices."""
    from jaxar.nn.shifted import NIN, ShiftedConv2D

    x = jnp.ones((1, 4, 4, 64))
    for scale in (1.0, 0.1):
        conv = ShiftedConv2D(features=64, kernel_size=(2, 3), shift="down", init_scale=scale)
        k = np.asarray(conv.init(jax.random.key(0), x)["params"]["kernel"])
        np.testing.assert_allclose(k.std() * np.sqrt(2 * 3 * 64), scale, rtol=0.05)
    assert set(NIN(features=8).init(jax.random.key(0), x)["params"]) == {"kernel", "bias"}
    bad = ShiftedConv2D(features=4, shift="up")
    with pytest.raises(ValueError) as e:
        bad.init(jax.random.key(0), x)
    assert str(e.value) == "shift must be one of ('down', 'down_right'), got 'up'"


def test_bfloat16_compute_keeps_float32_params_and_likelihood(rgb_params):
    f32 = models.create("pixelcnn_pp", **RGB)
    bf16 = models.create("pixelcnn_pp", **{**RGB, "dtype": "bfloat16"})
    params = rgb_params
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    x = jax.random.randint(jax.random.key(1), (2, 4, 4, 3), 0, 256)
    c = jnp.array([0, 2], jnp.int32)
    lp32, lp16 = f32.log_prob(params, x, c), bf16.log_prob(params, x, c)
    assert lp16.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(lp16), np.asarray(lp32), rtol=2e-2)


@pytest.mark.parametrize(
    "hp",
    [RGB, dict(image_shape=(8, 8, 1), weight_norm=True, **TINY)],
    ids=["rgb-conditional", "grey-8x8-weight-norm"],
)
def test_cached_step_teacher_forced_equals_full_forward(hp):
    """Every level of the U-net (8x8 -> 4x4 -> 2x2) and both streams, against the full pass."""
    model = models.create("pixelcnn_pp", **hp)
    params = _jitter(model.init(jax.random.key(0)), seed=5)
    x = jax.random.randint(jax.random.key(1), (3, *model.event_shape), 0, 256)
    cond = jnp.array([0, 1, 2], jnp.int32) if model.num_classes else None
    assert_teacher_forced_matches_full(model, params, x, cond)


def test_weight_normalised_sampler_normalises_its_filters_before_its_loop():
    """With weight norm the cached sampler's step reads unit-norm filters built before its
    loop (it had normalised every layer's kernel at every step, in float32 too)."""
    model = models.create("pixelcnn_pp", image_shape=(8, 8, 1), weight_norm=True, **TINY)
    params = model.init(jax.random.key(0))
    assert invariant_work(model, params, 1) == []
    weights = model.init_cache(params, 1)["weights"]["u_in"]
    norms = jnp.sqrt(jnp.sum(jnp.square(weights["decode_weights"]["kernel"]), axis=(0, 1, 2)))
    np.testing.assert_allclose(np.asarray(norms), 1.0, rtol=1e-5)


def test_cached_sampling_equals_naive_and_matches_log_prob(rgb_params):
    model = models.create("pixelcnn_pp", **RGB)
    assert model.default_sample_method == "cached"
    params = _jitter(rgb_params, seed=4)
    cond = jnp.array([0, 2, 2], jnp.int32)
    x = assert_cached_matches_naive(model, params, jax.random.key(3), 3, cond)
    assert x.shape == (3, 4, 4, 3) and x.dtype == jnp.int32
    assert int(x.min()) >= 0 and int(x.max()) <= 255


def test_grey_images_and_bad_hyperparameters(grey_params):
    model, params = models.create("pixelcnn_pp", **GREY), grey_params
    assert params["out"]["kernel"].shape[-1] == 2 * 3  # 3 parameters per component (grey)
    x = jax.random.randint(jax.random.key(1), (2, 4, 8, 1), 0, 256)
    assert model.log_prob(params, x, per_dim=True).shape == (2, 4, 8, 1)
    with pytest.raises(ValueError, match="multiples of 4"):
        models.create("pixelcnn_pp", image_shape=(6, 8, 3))
    with pytest.raises(ValueError, match="dropout"):
        models.create("pixelcnn_pp", dropout=1.0)
    assert "pixelcnn_pp" in models.names()


def test_runner_initialises_weight_norm_from_the_first_training_batch(tmp_path):
    from jaxar import config as jaxar_config
    from jaxar import data, train
    from jaxar.data.pipeline import train_batches

    c = jaxar_config.default()
    c.data.name = "digits"
    c.model_name = "pixelcnn_pp"
    c.model = ml_collections.ConfigDict(
        dict(
            num_resnets=1, features=8, num_mixtures=2, dropout=0.0, weight_norm=True, data_init=True
        )
    )
    c.batch_size, c.eval_batch_size, c.num_steps = 16, 500, 2
    c.eval_every = c.checkpoint_every = 2
    c.num_samples = 0
    info = data.load("digits", "train").info
    model = train.build_model(c, info)
    first = next(iter(train_batches(data.load("digits", "train"), batch_size=16, seed=c.seed)))
    expected = model.init(jax.random.key(c.seed), jnp.asarray(first["x"]))
    state = train.create_train_state(
        model, train.make_optimizer(c)[0], jax.random.key(c.seed), False, first
    )
    chex.assert_trees_all_close(state.params, expected)

    metrics = train.train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(metrics["test/bits_per_dim"])
    _, loaded, params, *_ = train.load_run(str(tmp_path))
    assert loaded.hparams["data_init"] and np.isfinite(float(jax.tree.leaves(params)[0].sum()))


def test_cached_sampler_never_copies_a_level_cache():
    """The compiled sampler updates every level's stacked caches in place: no ``copy`` of a
    level's ``u`` stack or ``ul`` rings anywhere in its loop. Three ways to bring copies back,
    each seen here: updating a ``u`` stack block by block (an update was not ordered after
    the block's second read of its previous row: 4-5 copies per level); skipping work with a
    ``lax.cond`` (its do-nothing branch copies what it passes through: 2 per level per cache);
    a ``u`` stack that does not hold the blocks' outputs (its write was not ordered after the
    last block's read of the previous row: 1 per level)."""
    model = models.create("pixelcnn_pp", image_shape=(8, 8, 1), **{**TINY, "num_resnets": 2})
    params = model.init(jax.random.key(0))
    _, loop = compiled_sampler(model, params, 1)
    cache = model.decoder.init_cache(1)
    shapes = {a.shape for a in cache["u"] + cache["ul"]}
    text = lambda shape: f"f32[{','.join(map(str, shape))}]"
    assert len(shapes) == 6 and all(text(s) in loop for s in shapes), shapes  # 3 levels, 2 each
    copied = set(moved_arrays(loop))
    assert copied, "no copy at all: the pattern no longer matches XLA's text"
    assert not shapes & copied, shapes & copied
