"""Sample grids and reconstruction pairs against hand-computed pixels."""

import numpy as np
import pytest
from PIL import Image

from jaxar import reporting


def test_image_grid_default_scale_layout_and_levels():
    # Five 4x7 grey images with 3 levels: scaled by 64 // 7 = 9 to 36x63, three columns and two
    # rows of tiles with 1-pixel white borders; level 1 of 3 is grey 128 (127.5 rounded).
    images = np.zeros((5, 4, 7, 1), np.int32)
    images[1] = 1
    images[2, 0, 0] = 2
    grid = reporting.image_grid(images, num_levels=3)
    assert grid.shape == (2 * (36 + 1) + 1, 3 * (63 + 1) + 1) and grid.dtype == np.uint8

    def tile(i):
        r, q = divmod(i, 3)
        return grid[1 + r * 37 : 1 + r * 37 + 36, 1 + q * 64 : 1 + q * 64 + 63]

    assert (tile(0) == 0).all() and (tile(1) == 128).all()
    assert (tile(2)[:9, :9] == 255).all() and (tile(2)[9:] == 0).all()  # one scaled pixel
    blank = grid[38:, 129:]  # the sixth cell, unused
    assert (blank == 255).all()
    border = np.ones(grid.shape, bool)
    for i in range(5):
        r, q = divmod(i, 3)
        border[1 + r * 37 : 1 + r * 37 + 36, 1 + q * 64 : 1 + q * 64 + 63] = False
    assert (grid[border] == 255).all()
    assert reporting.image_grid(images, 3, scale=2).shape == (2 * 9 + 1, 3 * 15 + 1)
    big = np.zeros((1, 80, 70, 1), np.int32)
    assert reporting.image_grid(big, 2).shape == (82, 72)  # never scaled below 1


def test_save_pairs_grey_and_rgb(tmp_path):
    for channels in (1, 3):
        left = np.zeros((2, 8, 8, channels), np.int32)
        right = np.full((2, 8, 8, channels), 3, np.int32)
        stem = str(tmp_path / f"pairs{channels}")
        assert reporting.save_pairs(left, right, 4, stem) == [stem + ".npy", stem + ".png"]
        np.testing.assert_array_equal(np.load(stem + ".npy"), np.stack([left, right]))
        png = np.asarray(Image.open(stem + ".png"))
        a = reporting.image_grid(left, 4)
        assert png.shape == (a.shape[0], 2 * a.shape[1] + 8, *a.shape[2:])
        np.testing.assert_array_equal(png[:, : a.shape[1]], a)
        assert (png[:, a.shape[1] : a.shape[1] + 8] == 255).all()  # the white gap
        np.testing.assert_array_equal(png[:, a.shape[1] + 8 :], reporting.image_grid(right, 4))


def test_image_grid_refuses_other_shapes_in_one_line():
    with pytest.raises(ValueError, match=r"expected images \(N, H, W, 1 or 3\), got shape"):
        reporting.image_grid(np.zeros((2, 4, 4, 2)), 2)
