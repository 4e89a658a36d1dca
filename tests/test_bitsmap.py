"""Bits maps (jaxar.bitsmap): per-position bits averaged over a split, written as PNGs."""

import math

import jax
import numpy as np
import pytest
from PIL import Image

from jaxar import bitsmap, models, testing
from jaxar.data import ArraySource, DataInfo


def _setup(name, n=10):
    m = models.create_tiny(name, "grey", num_levels=4)
    params = testing.randomize_params(m.init(jax.random.key(0)), jax.random.key(1))
    x = np.asarray(jax.random.randint(jax.random.key(2), (n, *m.event_shape), 0, 4), np.int32)
    kind = "audio" if len(m.event_shape) == 1 else "image"
    info = DataInfo("test", m.event_shape, 4, kind=kind, sample_rate=800 if kind == "audio" else 0)
    return m, params, x, ArraySource(x, None, info), info


def test_mean_map_is_the_average_of_the_exact_conditionals():
    m, params, x, source, _ = _setup("pixelcnn")
    # batch 4 over 10 examples: the last batch is padded, and padding must not count
    mean, kept, kept_bits = bitsmap.mean_bits_map(m, params, source, batch_size=4, keep=3)
    lp = np.asarray(m.log_prob(params, x, per_dim=True), np.float64)
    np.testing.assert_allclose(mean, (-lp / math.log(2.0)).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(mean.mean(), np.asarray(m.bits_per_dim(params, x)).mean(), rtol=1e-5)
    np.testing.assert_array_equal(kept, x[:3])
    np.testing.assert_allclose(kept_bits, -lp[:3] / math.log(2.0), rtol=1e-5)


def test_image_maps_are_written(tmp_path):
    m, params, _, source, info = _setup("gated_pixelcnn")
    paths = bitsmap.write_bits_maps(
        m, params, source, info, str(tmp_path), batch_size=4, num_examples=3
    )
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "bits_map.npz",
        "bits_map_mean.png",
        "bits_map_examples.png",
    ]
    for p in paths[1:]:
        assert min(Image.open(p).size) > 50
    saved = np.load(paths[0])
    assert saved["mean"].shape == m.event_shape and saved["examples"].shape == (3, *m.event_shape)


def test_audio_plot_is_written(tmp_path):
    m, params, _, source, info = _setup("wavenet")
    paths = bitsmap.write_bits_maps(m, params, source, info, str(tmp_path), batch_size=8)
    assert paths[1].endswith("bits_map_audio.png") and Image.open(paths[1]).size[0] > 300


def test_bad_input_is_reported():
    m, params, _, source, _ = _setup("pixelcnn")
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        bitsmap.mean_bits_map(m, params, source, batch_size=0)
    with pytest.raises(ValueError, match="expected levels and bits of one shape"):
        bitsmap.save_audio_bits_plot("/tmp/x.png", np.zeros(5), np.zeros(6), 4, 800)
    with pytest.raises(ValueError, match="expected a mean map"):
        bitsmap.save_image_bits_maps("/tmp", np.zeros((3, 3)), np.zeros((1, 3, 3, 1)), None, 4)
