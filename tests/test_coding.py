"""Lossless coding (jaxar.coding): exact round trips for every registered autoregressive model,
a coded size within 1% of the model's -log2 p(x), and clear errors for damaged streams."""

import math
import os
import struct
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxar import coding, models, testing
from jaxar.distributions import Categorical

AR_MODELS = [
    n
    for n in models.names()
    if isinstance(
        models.create_tiny(n, "small" if models.tiny_shape(n, "small") else "grey"),
        models.AutoregressiveModel,
    )
]
FASHION = "/usr/share/datasets/fashion-mnist"


def _model(name, num_classes=0, role=None):
    role = role or ("rgb" if models.tiny_shape(name, "rgb") else "grey")
    m = models.create_tiny(name, role, num_levels=4, num_classes=num_classes)
    params = testing.randomize_params(m.init(jax.random.key(0)), jax.random.key(1))
    return m, params


def _ideal_bits(m, params, x, cond=None) -> float:
    return -float(np.sum(np.asarray(m.log_prob(params, x, cond), np.float64))) / math.log(2.0)


def test_every_autoregressive_model_is_listed():
    assert "vqvae" not in AR_MODELS
    assert {"pixelcnn", "pixelcnn_pp", "wavenet", "transformer"} <= set(AR_MODELS)


@pytest.mark.parametrize("name", AR_MODELS)
def test_round_trip_and_size(name):
    """Class-conditional (the unconditional path: the tests below), RGB where the model has it;
    97 examples in lanes of 4, so the last chunk is padded."""
    m, params = _model(name, num_classes=3)
    n = 97
    cond = jnp.arange(n, dtype=jnp.int32) % 3
    if isinstance(m.distribution, Categorical):
        x = jax.random.randint(jax.random.key(3), (n, *m.event_shape), 0, m.num_levels)
    else:  # random weights make the mixture so sharp that uniform events are beyond 2**-16
        x = m.sample(params, jax.random.key(3), n, cond)
    x = np.asarray(x)
    data = coding.encode(m, params, x, cond, lanes=4)
    np.testing.assert_array_equal(coding.decode(m, params, data, cond), x)
    info = coding.read_header(data)
    ideal = _ideal_bits(m, params, x, cond)
    coded = 8 * len(data)
    # Within 1% plus the header (lane states included: 4 bytes per lane, paid once per stream).
    assert coded <= 1.01 * ideal + 8 * info["header_bytes"], (coded, ideal, info["header_bytes"])
    assert 8 * 2 * info["words"] >= 0.97 * ideal - 32 * info["lanes"]
    with pytest.raises(ValueError, match="other conditioning"):
        coding.decode(m, params, data, (cond + 1) % 3)


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="Debian's dataset-fashion-mnist")
def test_round_trip_real_fashion_mnist():
    from jaxar.data import load

    x = np.stack([load(f"idx:{FASHION}", "test")[i]["x"] for i in range(6)]).astype(np.int32)
    m = models.create(
        "gated_pixelcnn", image_shape=(28, 28, 1), num_levels=256, features=8, num_layers=2
    )
    params = testing.randomize_params(m.init(jax.random.key(0)), jax.random.key(1), 0.1)
    data = coding.encode(m, params, x, lanes=3)
    np.testing.assert_array_equal(coding.decode(m, params, data), x)


def test_tables_keep_every_value_and_sum_to_the_total():
    logp = jnp.asarray([[0.0, -1e9, -1e9, -1e9], [50.0, -50.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    freq = np.asarray(coding.quantize(jax.nn.log_softmax(logp)))
    assert freq.min() >= 1
    np.testing.assert_array_equal(freq.sum(axis=1), 1 << coding.PRECISION)
    np.testing.assert_array_equal(freq[2], (1 << coding.PRECISION) // 4)


def test_mixture_sub_pixel_tables_match_the_likelihood():
    m, _ = _model("pixelcnn_pp")
    # small weights: broad components, so every level's log-probability is moderate
    params = testing.randomize_params(m.init(jax.random.key(0)), jax.random.key(1), 0.1)
    x = np.asarray(jax.random.randint(jax.random.key(4), (2, *m.event_shape), 0, m.num_levels))
    out = testing.teacher_forced_params(m, params, jnp.asarray(x))  # (B, steps, P)
    pix = jnp.asarray(x.reshape(2, -1, 3)[:, 1])  # the second pixel
    want = np.asarray(m.log_prob(params, jnp.asarray(x), per_dim=True)).reshape(2, -1, 3)[:, 1]
    for c in range(3):
        lp = coding.sub_step_log_probs(m.distribution, out[:, 1], pix, c)
        np.testing.assert_allclose(
            np.take_along_axis(np.asarray(lp), x.reshape(2, -1, 3)[:, 1, c, None], 1)[:, 0],
            want[:, c],
            atol=1e-3,
        )


@pytest.fixture(scope="module")
def coded():
    m, params = _model("pixelcnn")
    x = np.asarray(jax.random.randint(jax.random.key(5), (6, *m.event_shape), 0, m.num_levels))
    return m, params, x, coding.encode(m, params, x, lanes=2)


def test_flipped_byte_is_reported(coded):
    m, params, _, data = coded
    for pos in (2, 20, len(data) - 10, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(ValueError, match="damaged|not a jaxar|truncated"):
            coding.decode(m, params, bytes(bad))


def test_truncated_stream_is_reported(coded):
    m, params, _, data = coded
    for cut in (3, 40, len(data) - 1):
        with pytest.raises(ValueError, match="truncated|expected at least"):
            coding.decode(m, params, data[:cut])


def test_damage_behind_a_valid_checksum_is_still_reported(coded):
    """Words changed and the CRC recomputed: the decoder's own checks catch it."""
    m, params, _, data = coded
    bad = bytearray(data[:-4])
    bad[-3] ^= 0x40  # a word of the payload
    bad = bytes(bad) + struct.pack("<I", zlib.crc32(bytes(bad)))
    with pytest.raises(ValueError, match="does not decode|checksum"):
        coding.decode(m, params, bad)


def test_wrong_model_or_parameters_are_reported(coded):
    m, params, _, data = coded
    other, other_params = _model("gated_pixelcnn")
    with pytest.raises(ValueError, match="coded with model 'pixelcnn', got model 'gated_pixelcnn'"):
        coding.decode(other, other_params, data)
    wider = models.create_tiny("pixelcnn", "rgb", num_levels=5)
    with pytest.raises(ValueError, match="hyperparameters or parameter shapes differ"):
        coding.decode(wider, wider.init(jax.random.key(0)), data)
    with pytest.raises(ValueError, match="other pixelcnn parameters"):
        coding.decode(m, jax.tree.map(lambda p: p * 1.5, params), data)


def test_bad_input_is_reported_before_any_work():
    m, params = _model("pixelcnn")
    with pytest.raises(ValueError, match="expected values in"):
        coding.encode(m, params, np.full((2, *m.event_shape), 9, np.int32))
    with pytest.raises(ValueError, match="lanes must be a positive"):
        coding.encode(m, params, np.zeros((2, *m.event_shape), np.int32), lanes=0)
    vq = models.create_tiny("vqvae", "grey")
    with pytest.raises(ValueError, match="expected an autoregressive model"):
        coding.encode(vq, None, np.zeros((1, *vq.event_shape), np.int32))
    with pytest.raises(ValueError, match="not a jaxar stream"):
        coding.decode(m, params, b"PNG\x00" * 10)
