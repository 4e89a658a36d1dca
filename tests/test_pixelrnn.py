"""PixelRNN (Row LSTM, Diagonal BiLSTM): skew, scanned layers == unrolled references,
causality per dimension, exact normalisation, cached == full forward, cached == naive samples,
input validation, and a few training steps on digits."""

import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxar
from jaxar import config as jaxar_config
from jaxar import testing as jaxar_testing
from jaxar import train
from jaxar.nn.masks import conv_mask
from jaxar.nn.recurrent import DiagonalBiLSTM, DiagonalLSTM, RowLSTM, skew, unskew

KINDS = ("row_lstm", "diagonal_bilstm")


def random_params(init, *args, seed=0, scale=1.0):
    """Random values for every parameter, biases included, so nothing is zero by accident:
    kernels ``N(0, scale^2 / fan_in)`` (pre-activations of order one, so no gate saturates),
    vectors ``N(0, (scale / 2)^2)``. Only the shapes come from ``init`` (through
    ``jax.eval_shape``): compiling the real initialisers costs seconds these tests do not need.
    """
    shapes = jax.eval_shape(init, *args)
    gen = np.random.default_rng(seed)

    def draw(s):
        std = scale / math.sqrt(math.prod(s.shape[:-1])) if len(s.shape) > 1 else scale / 2
        return jnp.asarray(std * gen.normal(size=s.shape), s.dtype)

    return jax.tree.map(draw, shapes)


def tiny(kind, image_shape, num_levels=4, **kw):
    hp = {**jaxar.models.tiny_spec(kind).hparams_for(image_shape), **kw}
    return jaxar.create(kind, image_shape=image_shape, num_levels=num_levels, **hp)


# ------------------------------------------------------------------------------ skew
def test_skew_places_pixel_ij_at_column_i_plus_j():
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))
    s = np.asarray(skew(x))
    assert s.shape == (2, 3, 7, 4)
    expected = np.zeros_like(s)
    for i in range(3):
        expected[:, i, i : i + 5] = np.asarray(x[:, i])
    np.testing.assert_array_equal(s, expected)
    np.testing.assert_array_equal(np.asarray(unskew(skew(x), 5)), np.asarray(x))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 4, 2, 3), (2, 2, 6, 1), (1, 5, 5, 2)])
def test_skew_unskew_round_trip(shape):
    x = jax.random.normal(jax.random.key(1), shape)
    np.testing.assert_array_equal(np.asarray(unskew(skew(x), shape[2])), np.asarray(x))


def test_unskew_rejects_wrong_width():
    with pytest.raises(ValueError, match="skewed map of width"):
        unskew(jnp.zeros((1, 3, 5, 2)), 5)


# ------------------------------------------------------------ unrolled references
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _cell(z, c_prev, groups):
    """The LSTM cell on the colour-major gate layout (C, 4, hidden / C), gates i, f, o, g."""
    b, n = z.shape
    hid = n // 4
    zz = z.reshape(b, groups, 4, hid // groups)
    i, f, o = _sigmoid(zz[:, :, 0]), _sigmoid(zz[:, :, 1]), _sigmoid(zz[:, :, 2])
    c = f * c_prev.reshape(b, groups, -1) + i * np.tanh(zz[:, :, 3])
    return (o * np.tanh(c)).reshape(b, hid), c.reshape(b, hid)


def _masked(p, kh, kw, fin, groups):
    kernel = np.asarray(p["input_to_state"]["kernel"], np.float64)
    mask = conv_mask((kh, kw), fin, kernel.shape[-1], "B", groups)
    return kernel * mask, np.asarray(p["input_to_state"]["bias"], np.float64)


def row_lstm_reference(p, x, groups, k):
    """Row LSTM pixel by pixel with Python loops (test only)."""
    x = np.asarray(x, np.float64)
    b, height, width, fin = x.shape
    km, bias = _masked(p, 1, k, fin, groups)
    wss = np.asarray(p["state_to_state"], np.float64)
    hid = wss.shape[1]
    h = np.zeros((b, height, width, hid))
    c = np.zeros((b, height, width, hid))
    for i in range(height):
        for j in range(width):
            z = np.broadcast_to(bias, (b, 4 * hid)).copy()
            for d in range(k):
                jj = j + d - k // 2
                if 0 <= jj < width:
                    z += x[:, i, jj] @ km[0, d]
                    if i > 0:
                        z += h[:, i - 1, jj] @ wss[d]
            c_up = c[:, i - 1, j] if i > 0 else np.zeros((b, hid))
            h[:, i, j], c[:, i, j] = _cell(z, c_up, groups)
    return h


def diagonal_lstm_reference(p, x, groups, reverse=False):
    """One Diagonal LSTM direction pixel by pixel (test only): the state at (i, j) reads the
    states above and to the left (to the right with ``reverse``); the cell carries along the
    row."""
    x = np.asarray(x, np.float64)
    b, height, width, fin = x.shape
    km, bias = _masked(p, 1, 1, fin, groups)
    wss = np.asarray(p["state_to_state"], np.float64)
    hid = wss.shape[1]
    h = np.zeros((b, height, width, hid))
    c = np.zeros((b, height, width, hid))
    step = -1 if reverse else 1
    for i in range(height):
        for j in range(width)[::step]:
            z = bias + x[:, i, j] @ km[0, 0]
            if i > 0:
                z = z + h[:, i - 1, j] @ wss[0]
            c_side = np.zeros((b, hid))
            if 0 <= j - step < width:
                z = z + h[:, i, j - step] @ wss[1]
                c_side = c[:, i, j - step]
            h[:, i, j], c[:, i, j] = _cell(z, c_side, groups)
    return h


@pytest.mark.parametrize("groups, kernel", [(1, 3), (3, 3), (1, 1), (3, 5)])
def test_row_lstm_scan_equals_unrolled_reference(groups, kernel):
    layer = RowLSTM(hidden=6, kernel=kernel, color_channels=groups)
    x = jax.random.normal(jax.random.key(0), (2, 4, 5, 6))
    params = random_params(layer.init, jax.random.key(1), x)["params"]
    got = layer.apply({"params": params}, x)
    want = row_lstm_reference(params, x, groups, kernel)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 5])
def test_row_lstm_decode_path_at_other_widths(kernel):
    """The cached step reads a window of ``kernel`` states of the row above, centred (the
    models' other tests use width 3 only)."""
    model = tiny("row_lstm", (3, 6, 3), kernel=kernel)
    params = random_params(model.init, jax.random.key(0))
    x = jax.random.randint(jax.random.key(2), (2, 3, 6, 3), 0, 4)
    jaxar_testing.assert_teacher_forced_matches_full(model, params, x)


@pytest.mark.parametrize(
    "kind, name, width",
    [("row_lstm", "kernel", 2), ("row_lstm", "kernel", 0)]  # the Diagonal BiLSTM has none
    + [(kind, "first_kernel", 4) for kind in KINDS],
)
def test_even_or_empty_kernels_are_refused_at_create(kind, name, width):
    with pytest.raises(ValueError, match=f"^{name} must be odd and positive, got {width}$"):
        jaxar.create(kind, image_shape=(4, 4, 1), **{name: width})
    message = f"RowLSTM kernel must be odd and positive, got {width}"
    if name == "kernel":  # the layer alone refuses it too (JAX adds a note on a new line)
        with pytest.raises(ValueError, match=f"^{message}(\n|$)"):
            RowLSTM(hidden=6, kernel=width).init(jax.random.key(0), jnp.zeros((1, 2, 3, 6)))


@pytest.mark.parametrize("groups", [1, 3])
def test_diagonal_lstm_scan_equals_unrolled_reference(groups):
    layer = DiagonalLSTM(hidden=6, color_channels=groups)
    x = jax.random.normal(jax.random.key(0), (2, 4, 5, 6))
    params = random_params(layer.init, jax.random.key(1), x)["params"]
    got = layer.apply({"params": params}, x)
    want = diagonal_lstm_reference(params, x, groups)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_diagonal_bilstm_equals_unrolled_reference():
    layer = DiagonalBiLSTM(hidden=6, color_channels=3)
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 6))
    params = random_params(layer.init, jax.random.key(1), x)["params"]
    got = np.asarray(layer.apply({"params": params}, x))
    fwd = diagonal_lstm_reference(params["forward_lstm"], x, 3)
    bwd = diagonal_lstm_reference(params["backward_lstm"], x, 3, reverse=True)
    want = fwd.copy()
    want[:, 1:] += bwd[:, :-1]  # the backward direction, shifted down one row
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- causality
def _dependence(model, params, x):
    """changed[j, i]: does changing dimension j (raster, R<G<B) change conditional i?

    Batched evaluation can differ from row to row by float32 rounding (~1e-7), so a change is
    a difference above 1e-6; a real leak with these random parameters is orders larger."""
    flat = np.asarray(x).reshape(-1)
    d = flat.size
    variants = np.repeat(flat[None], d + 1, axis=0)  # row d: the unperturbed image
    variants[np.arange(d), np.arange(d)] = (flat + 1) % model.num_levels
    xs = jnp.asarray(variants.reshape((d + 1, *model.event_shape)), jnp.int32)
    lp = np.asarray(model.log_prob(params, xs, per_dim=True)).reshape(d + 1, d)
    return np.abs(lp[:d] - lp[d][None]) > 1e-6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("first_kernel", [3, 7])
def test_causal_every_dimension_rgb(kind, first_kernel):
    model = tiny(kind, (4, 4, 3), first_kernel=first_kernel, hidden=12, output_features=24)
    params = random_params(model.init, jax.random.key(0), seed=3)
    x = jax.random.randint(jax.random.key(2), model.event_shape, 0, 4)
    changed = _dependence(model, params, x)
    d = changed.shape[0]
    for j in range(d):
        assert not changed[j, :j].any(), (
            f"dimension {j} leaks into {np.flatnonzero(changed[j, :j])}"
        )
    # The test can fail: every dimension changes its own conditional and some later one.
    assert changed[np.arange(d), np.arange(d)].all()
    assert all(changed[j, j + 1 :].any() for j in range(d - 1))
    later = changed[np.triu_indices(d, 1)]
    if first_kernel == 7:
        # Through the 7x7 first layer both models see the whole past of a 4x4 image.
        assert later.all()
    # Pixel (0, 3) (dimensions 9..11) against pixel (1, 0) (dimensions 12..14): outside the
    # Row LSTM's triangle with a 3x3 first layer; the Diagonal BiLSTM's backward direction
    # sees all of row 0 (but for the last channel of (0, 3), which a type-A first layer
    # only passes on to the right and below).
    if kind == "row_lstm" and first_kernel == 3:
        assert not changed[9:12, 12:15].any()
    else:
        assert changed[9:11, 12:15].any(axis=1).all()


def test_row_lstm_receptive_field_is_the_triangle_above():
    """One Row LSTM layer after a 3x3 type-A first layer: the dimensions pixel (i, j) depends
    on are exactly those the recursion h(i, j) <- first(i, j-1..j), h(i-1, j-1..j+1) reaches."""
    height, width = 3, 6
    model = tiny(
        "row_lstm", (height, width, 1), first_kernel=3, num_layers=1, hidden=8,
        output_features=16,
    )  # fmt: skip
    params = random_params(model.init, jax.random.key(0))
    x = jax.random.randint(jax.random.key(2), model.event_shape, 0, 4)
    changed = _dependence(model, params, x).reshape(height, width, height, width)

    def first(a, b):  # what the 3x3 type-A first layer at (a, b) reads
        window = [(a - 1, b - 1), (a - 1, b), (a - 1, b + 1), (a, b - 1)]
        return {(r, s) for r, s in window if 0 <= r < height and 0 <= s < width}

    reach = {}
    for i in range(height):
        for j in range(width):
            seen = set().union(*(first(i, s) for s in (j - 1, j) if 0 <= s < width))
            if i > 0:
                for s in (j - 1, j, j + 1):
                    if 0 <= s < width:
                        seen |= reach[i - 1, s]
            reach[i, j] = seen
    for i in range(height):
        for j in range(width):
            want = np.zeros((height, width), bool)
            for r, s in reach[i, j] | {(i, j)}:  # (i, j) itself: its own conditional
                want[r, s] = True
            np.testing.assert_array_equal(changed[:, :, i, j], want, err_msg=f"pixel {(i, j)}")


def test_causal_class_conditional():
    model = tiny("diagonal_bilstm", (3, 3, 1), num_classes=3)
    params = random_params(model.init, jax.random.key(0))
    x = jax.random.randint(jax.random.key(2), (2, 3, 3, 1), 0, 4)
    a = model.log_prob(params, x, jnp.array([0, 0], jnp.int32))
    b = model.log_prob(params, x, jnp.array([2, 2], jnp.int32))
    assert np.all(np.asarray(a) != np.asarray(b))


@pytest.mark.parametrize("kind", KINDS)
def test_shared_contract_checks(kind):
    """jaxar.testing's model-agnostic checks: no leak into earlier conditionals, no
    conditional reads its own dimension (every value of it tried)."""
    model = tiny(kind, (3, 3, 3), hidden=6, output_features=12)
    params = random_params(model.init, jax.random.key(0), seed=3)
    x = jax.random.randint(jax.random.key(2), model.event_shape, 0, 4)
    jaxar_testing.assert_causal(model, params, x, atol=1e-6)


# ------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(2, 2, 1), (1, 2, 3)])
def test_exact_normalisation_over_all_binary_images(kind, shape):
    model = tiny(kind, shape, num_levels=2)
    params = random_params(model.init, jax.random.key(0))
    d = math.prod(shape)
    xs = jnp.asarray(list(itertools.product([0, 1], repeat=d)), jnp.int32).reshape(-1, *shape)
    total = float(jnp.exp(model.log_prob(params, xs)).sum())
    assert abs(total - 1.0) < 1e-5, total
    # bits/dim is the same quantity in base 2 per dimension
    np.testing.assert_allclose(
        np.asarray(model.bits_per_dim(params, xs)),
        -np.asarray(model.log_prob(params, xs)) / (d * math.log(2.0)),
        rtol=1e-6,
    )


# ----------------------------------------------------------------- cached sampling
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_classes", [0, 3])
def test_cached_teacher_forcing_equals_full_forward(kind, num_classes):
    model = tiny(kind, (3, 4, 3), num_classes=num_classes)
    params = random_params(model.init, jax.random.key(0))
    x = jax.random.randint(jax.random.key(2), (2, 3, 4, 3), 0, 4)
    cond = jnp.array([1, 2], jnp.int32) if num_classes else None
    assert float(jnp.abs(model.apply(params, x, cond)).max()) > 0.1
    jaxar_testing.assert_teacher_forced_matches_full(model, params, x, cond)


@pytest.mark.parametrize("kind", KINDS)
def test_cached_samples_equal_naive_samples(kind):
    model = tiny(kind, (3, 3, 3))
    assert model.sample_methods == ("cached", "naive")
    assert model.default_sample_method == "cached"
    params = random_params(model.init, jax.random.key(0))
    key = jax.random.key(7)
    cached, lp_cached = model.sample(params, key, 3, with_log_prob=True)
    naive = model.sample(params, key, 3, method="naive")
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(naive))
    assert len(np.unique(np.asarray(cached))) > 1
    np.testing.assert_allclose(
        np.asarray(lp_cached), np.asarray(model.log_prob(params, cached)), rtol=1e-5
    )


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize("kind", KINDS)
def test_registered_with_defaults(kind):
    assert kind in jaxar.models.names()
    model = jaxar.create(kind)
    assert model.event_shape == (28, 28, 1) and model.num_levels == 256
    assert model.hparams["hidden"] == 16 and model.hparams["num_layers"] == 7


@pytest.mark.parametrize("kind", KINDS)
def test_bad_hparams_raise(kind):
    with pytest.raises(ValueError, match="multiples of C=3"):
        jaxar.create(kind, image_shape=(4, 4, 3), hidden=8)
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, C\)"):
        jaxar.create(kind, image_shape=(4, 4))
    with pytest.raises(ValueError, match="num_layers"):
        jaxar.create(kind, image_shape=(4, 4, 1), num_layers=0)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        jaxar.create(kind, features=3)


def test_bad_input_raises():
    model = tiny("row_lstm", (3, 3, 1))
    params = random_params(model.init, jax.random.key(0))
    with pytest.raises(ValueError, match="expected x of shape"):
        model.log_prob(params, jnp.zeros((1, 3, 4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"expected values in \[0, 4\)"):
        model.log_prob(params, jnp.full((1, 3, 3, 1), 4, jnp.int32))


def test_bfloat16_compute():
    model = tiny("diagonal_bilstm", (3, 3, 3), dtype="bfloat16")
    params = random_params(model.init, jax.random.key(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    x = jax.random.randint(jax.random.key(2), (2, 3, 3, 3), 0, 4)
    lp = model.log_prob(params, x)
    assert lp.dtype == jnp.float32
    # The same likelihood as float32 compute, to bfloat16's precision (not merely finite).
    f32 = tiny("diagonal_bilstm", (3, 3, 3))
    np.testing.assert_allclose(np.asarray(lp), np.asarray(f32.log_prob(params, x)), atol=0.2)
    per_dim = np.asarray(model.log_prob(params, x, per_dim=True))
    per_dim32 = np.asarray(f32.log_prob(params, x, per_dim=True))
    np.testing.assert_allclose(per_dim, per_dim32, atol=0.03)
    assert np.ptp(per_dim32) > 0.5  # the conditionals differ: a constant would not pass


# ------------------------------------------------------------------------ training
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_training_on_digits_lowers_test_bits_per_dim(kind, tmp_path):
    """A few steps of the runner (jaxar.train) on the 8x8 digits lower the exact test bits/dim."""
    c = jaxar_config.default()
    c.data.name = "digits"
    c.model_name = kind
    c.model = ml_collections.ConfigDict(dict(hidden=8, num_layers=2, output_features=16))
    c.batch_size = 32
    c.eval_batch_size = 100
    c.num_steps = 40
    c.log_every = 20
    c.eval_every = 40
    c.checkpoint_every = 40
    c.optim.learning_rate = 1e-2
    c.optim.warmup_steps = 2
    c.num_samples = 0
    _, test, info = train.load_data(c)
    model = train.build_model(c, info)
    before = train.evaluate(model, model.init(jax.random.key(c.seed)), test, batch_size=100)
    after = train.train_and_evaluate(c, str(tmp_path))
    assert after["test/bits_per_dim"] < before["test/bits_per_dim"] - 0.5, (before, after)


@pytest.mark.parametrize("kind", ["row_lstm", "diagonal_bilstm"])
def test_sampler_never_copies_its_row_states(kind):
    """Each LSTM's decode keeps a layer's hidden and cell states of the last two rows in one
    buffer written once per step, so the compiled sampler's loop copies no state buffer
    (``(B, 2, columns, ...)``, or the Diagonal BiLSTM's old ``(B, W + 1, hidden)`` cell row).
    With the cell states in a buffer apart, the write of the new cell state was not ordered
    after a read of the previous one that XLA fuses into the hidden state's computation: here
    4 copies per step (Row LSTM), 2 (Diagonal BiLSTM)."""
    batch = 5
    model = jaxar.models.create_tiny(kind, "rgb", num_levels=16)
    width = model.event_shape[1]
    params = jax.eval_shape(model.init, jax.random.key(0))
    program, loop = jaxar_testing.compiled_sampler(model, params, batch)

    def states(text):  # (B, 2, columns, n) or (B, W + 1, n)
        moved = jaxar_testing.moved_arrays(text)
        return [s for s in moved if s[0] == batch and (s[1], len(s)) in ((2, 4), (width + 1, 3))]

    assert states(program), "no state buffer copied even once (in the set-up): a stale check"
    assert states(loop) == []


def test_bfloat16_row_lstm_step_reads_its_weights_converted_before_the_loop():
    """In bfloat16 compute the Row LSTM's float32 weights (the state-to-state matrix, the
    unmasked 1x1 kernels, every bias) are converted once, before the sampler's loop, and its
    state holds them in bfloat16 (the H200's compiler had left 7 kernel conversions a step)."""
    model = tiny("row_lstm", (3, 3, 1), dtype="bfloat16")
    params = model.init(jax.random.key(0))
    assert jaxar_testing.invariant_work(model, params, 2) == []
    weights = model.init_cache(params, 2)["decode_weights"]
    names = {path[-1].key for path, _ in jax.tree_util.tree_leaves_with_path(weights)}
    assert names == {"kernel", "bias", "state_to_state"}, names
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(weights)}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}, dtypes
