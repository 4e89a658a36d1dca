import re

import numpy as np
import pytest

from jaxar.nn.masks import channel_groups, conv_mask


def test_type_a_3x3_example():
    expected = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]], np.float32)
    np.testing.assert_array_equal(conv_mask(3, 1, 1, "A")[..., 0, 0], expected)


def test_type_b_differs_only_at_centre():
    a, b = conv_mask(3, 1, 1, "A"), conv_mask(3, 1, 1, "B")
    diff = np.argwhere(a != b)
    np.testing.assert_array_equal(diff, [[1, 1, 0, 0]])
    assert b[1, 1, 0, 0] == 1


@pytest.mark.parametrize("kernel", [(1, 5), (5, 1), (7, 7), (3, 5), (1, 1)])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_spatial_rule_any_odd_kernel(kernel, mask_type):
    kh, kw = kernel
    m = conv_mask(kernel, 1, 1, mask_type)[..., 0, 0]
    assert m.shape == kernel
    for i in range(kh):
        for j in range(kw):
            di, dj = i - kh // 2, j - kw // 2
            before = di < 0 or (di == 0 and dj < 0)
            centre = di == 0 and dj == 0
            assert m[i, j] == (before or (centre and mask_type == "B"))


def test_rgb_group_rule_at_centre():
    fin, fout = 6, 9  # 2 and 3 features per colour group
    gin, gout = channel_groups(fin, 3), channel_groups(fout, 3)
    np.testing.assert_array_equal(gin, [0, 0, 1, 1, 2, 2])
    for mask_type in ("A", "B"):
        m = conv_mask(3, fin, fout, mask_type, color_channels=3)
        centre = m[1, 1]
        for i in range(fin):
            for o in range(fout):
                allowed = gin[i] < gout[o] if mask_type == "A" else gin[i] <= gout[o]
                assert centre[i, o] == allowed
        # Off-centre positions see every group (they are earlier pixels), or nothing.
        assert (m[0] == 1).all() and (m[1, 0] == 1).all()
        assert (m[2] == 0).all() and (m[1, 2] == 0).all()


def test_first_layer_on_rgb_input():
    m = conv_mask(1, 3, 3, "A", color_channels=3)[0, 0]
    np.testing.assert_array_equal(m, [[0, 1, 1], [0, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize(
    "args, message",
    [
        (((2, 3), 1, 1, "A"), "kernel_size must be odd and positive in both axes, got (2, 3)"),
        ((3, 1, 1, "C"), "mask_type must be 'A' or 'B', got 'C'"),
        ((3, 4, 3, "B", 3), "the number of features (4) must be divisible by color_channels (3)"),
        ((3, 3, 3, "B", 0), "color_channels must be >= 1, got 0"),
    ],
)
def test_bad_arguments(args, message):
    """Each refusal is its whole one-line message, what was expected and what was given."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        conv_mask(*args)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    kh=st.integers(0, 3),
    kw=st.integers(0, 3),
    groups=st.sampled_from([1, 3]),
    fin=st.integers(1, 3),
    fout=st.integers(1, 3),
    mask_type=st.sampled_from("AB"),
)
def test_mask_is_exactly_the_raster_order(kh, kw, groups, fin, fout, mask_type):
    """Property: a weight is on iff its input dimension precedes (A) or may equal (B) the
    output's in raster order with R < G < B."""
    kh, kw, fin, fout = 2 * kh + 1, 2 * kw + 1, fin * groups, fout * groups
    m = conv_mask((kh, kw), fin, fout, mask_type, groups)
    gin, gout = channel_groups(fin, groups), channel_groups(fout, groups)
    for i, j, a, b in np.ndindex(m.shape):
        src = (i - kh // 2, j - kw // 2, gin[a])
        dst = (0, 0, gout[b])
        expected = src < dst or (mask_type == "B" and src == dst)
        assert m[i, j, a, b] == expected


@pytest.mark.parametrize(
    "kernel,mask_type,groups",
    [((7, 7), "A", 3), ((3, 3), "B", 3), ((5, 3), "B", 1), ((1, 5), "A", 1)],
)
def test_masked_conv_full_path_is_the_same_convolution_of_the_whole_masked_kernel(
    kernel, mask_type, groups
):
    """The full path leaves the mask's zero rows below the centre out of the convolution; its
    values and both gradients must equal the SAME convolution of the whole masked kernel, and
    the compiled forward must read only the ``kh // 2 + 1`` rows that can be non-zero."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from jaxar.nn import MaskedConv2D

    kh, kw = kernel
    layer = MaskedConv2D(6, kernel, mask_type, color_channels=groups)
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3))
    params = layer.init(jax.random.key(1), x)
    mask = jnp.asarray(conv_mask(kernel, 3, 6, mask_type, groups))

    def reference(params, x):
        y = lax.conv_general_dilated(
            x,
            params["params"]["kernel"] * mask,
            (1, 1),
            [(kh // 2, kh // 2), (kw // 2, kw // 2)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + params["params"]["bias"]

    def loss(f):
        return lambda params, x: jnp.sum(jnp.sin(f(params, x)))

    np.testing.assert_allclose(layer.apply(params, x), reference(params, x), rtol=1e-5, atol=1e-5)
    got = jax.grad(loss(layer.apply), argnums=(0, 1))(params, x)
    want = jax.grad(loss(reference), argnums=(0, 1))(params, x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    hlo = jax.jit(layer.apply).lower(params, x).as_text()
    assert f"tensor<{kh // 2 + 1}x{kw}x3x6xf32>" in hlo, (
        "the full path convolved rows that are zero"
    )


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn"])
def test_cached_sampler_never_relays_out_a_kernel(name):
    """The decode paths' window products (``jaxar.nn.conv.window_dot``) use the kernels as
    they lie in memory: the compiled sampler neither copies nor transposes an array shaped
    like a kernel or the slice of it a decode step reads. Written as an ``einsum`` over the
    taps and inputs, XLA re-laid out every masked kernel at every step (here 6 per program)."""
    import jax

    from jaxar import models
    from jaxar.testing import compiled_sampler, moved_arrays

    model = models.create_tiny(name, "rgb", num_levels=16)
    params = jax.eval_shape(model.init, jax.random.key(0))
    shapes = set()
    for leaf in jax.tree.leaves(params):
        if leaf.ndim == 4:
            kh, kw, fin, fout = leaf.shape
            for shape in ((kh, kw, fin, fout), (kh // 2 + 1, kw, fin, fout), (kw, fin, fout)):
                shapes.add(tuple(sorted(shape)))
    program, _ = compiled_sampler(model, params, 5)  # batch 5: no clash with a kernel's sizes
    moved = moved_arrays(program, ops=("copy", "transpose"))
    assert moved, "no copy or transpose at all: the pattern no longer matches XLA's text"
    relaid = [s for s in moved if tuple(sorted(s)) in shapes]
    assert relaid == [], relaid
