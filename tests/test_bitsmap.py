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


def test_image_maps_draw_the_channel_means_and_the_images(tmp_path, monkeypatch):
    """What each panel shows, read at ``imshow``: RGB 2x3 maps averaged over channels, the
    images scaled to [0, 1], one colour scale for the examples' maps."""
    import matplotlib.axes

    shown, imshow = [], matplotlib.axes.Axes.imshow
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "imshow",
        lambda ax, data, **kw: shown.append((np.asarray(data), kw)) or imshow(ax, data, **kw),
    )
    rs = np.random.default_rng(0)
    mean_map, maps = rs.uniform(0, 8, (2, 3, 3)), rs.uniform(0, 8, (2, 2, 3, 3))
    images = rs.integers(0, 4, (2, 2, 3, 3))
    bitsmap.save_image_bits_maps(str(tmp_path), mean_map, images, maps, num_levels=4)
    assert len(shown) == 1 + 2 * 2
    np.testing.assert_allclose(shown[0][0], mean_map.mean(axis=-1))
    vmax = maps.mean(axis=-1).max()
    for i in range(2):
        (pix, _), (drawn, kw) = shown[1 + 2 * i], shown[2 + 2 * i]
        np.testing.assert_allclose(pix, images[i] / 3.0)
        np.testing.assert_allclose(drawn, maps[i].mean(axis=-1))
        assert kw["vmin"] == 0 and kw["vmax"] == pytest.approx(vmax)


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
